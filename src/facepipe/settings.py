"""Typed stage settings: one frozen dataclass per section of params.yaml, built after
the schema check (config.load_params), so a stage reads `settings.crf`, not a dict.

A field marked `SPEED_ONLY` changes how fast a stage runs, never what it writes: a change
to it reruns nothing (`output_keys`, which the rules and dvc.yaml depend on)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SPEED_ONLY = {"speed_only": True}


@dataclass(frozen=True)
class DownloadSettings:
    max_height: int
    retries: int = field(metadata=SPEED_ONLY)  # another try gives the same file or none


@dataclass(frozen=True)
class FramesSettings:
    fps: float
    start: float
    duration: float | None
    jpeg_quality: int


@dataclass(frozen=True)
class DetectSettings:
    min_score: float
    crop_size: int
    smooth: bool
    smooth_sigma: float
    track_gap: float


@dataclass(frozen=True)
class FilterSettings:
    min_score: float
    min_size: int
    min_sharpness: float
    max_yaw: float
    max_distance: float
    identity_interval: float
    min_difference: float
    holdout: float


@dataclass(frozen=True)
class TrainSettings:
    recipe: str
    preset: str
    precision: str
    steps: int
    batch_size: int
    learning_rate: float | None
    coverage: float
    init_from: str | None
    init_parts: str
    save_every: int = field(metadata=SPEED_ONLY)  # how much a crash can lose, not what is learnt
    preview_every: int
    seed: int
    # Processes sharing each step, one a host (hosts.py): the same training summed in
    # another order, as with more devices in one machine, which no setting tracks either.
    hosts: int = field(metadata=SPEED_ONLY)


@dataclass(frozen=True)
class PretrainSettings:
    steps: int


@dataclass(frozen=True)
class ConvertSettings:
    mask: str
    mask_erode: float
    mask_blur: float
    color_match: str
    sharpen: str
    sharpen_amount: float
    sharpen_radius: float
    face_scale: float
    max_distance: float | None
    identity_interval: float
    frame_ranges: tuple[tuple[int, int], ...] | None
    output_scale: float
    side_by_side: bool
    format: str
    codec: str
    crf: int
    preset: str
    batch_size: int = field(metadata=SPEED_ONLY)  # faces per model call: the same faces come out
    tag_synthetic: bool


@dataclass(frozen=True)
class EvaluateSettings:
    dilate: float


SECTIONS = {"download": DownloadSettings, "frames": FramesSettings, "detect": DetectSettings,
            "filter": FilterSettings, "train": TrainSettings, "pretrain": PretrainSettings,
            "convert": ConvertSettings, "evaluate": EvaluateSettings}


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def section(params: dict, name: str):
    """The typed settings of one section of schema-checked params."""
    return SECTIONS[name](**{key: _frozen(value) for key, value in params[name].items()})


def output_keys(name: str) -> list[str]:
    """The keys of a section that change what its stage writes (all but speed-only ones)."""
    return [f.name for f in dataclasses.fields(SECTIONS[name]) if not f.metadata.get("speed_only")]


def dependency(params: dict, name: str, keys: list[str] | None = None) -> dict[str, Any]:
    """`{"convert.mask": "hull", ...}`: the params.yaml keys (of `keys`, default every
    output key of the section) a job depends on, with their values. A rule's parameter:
    Snakemake reruns the job when a value changes, and dvc.yaml lists the same keys."""
    return {f"{name}.{key}": params[name][key] for key in (keys if keys is not None else output_keys(name))}
