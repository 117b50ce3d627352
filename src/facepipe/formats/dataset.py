"""The dataset format: one person's kept faces, as the filter stage writes them.

A dataset folder holds `faces/` (aligned crops, JPEG) and `faces.json`:

    {"version": 2, "person": "alice",
     "faces": [{"file": "faces/<clip>_000012_0.jpg", "clip": ..., "frame": 12, "face": 0, "track": 3,
                "split": "train" | "holdout",
                "landmarks": [[x, y], ... 68 points in crop pixels]}],
     "identity": {"embedding": [128 floats] | null, "samples": 40,
                  "spread": {"p50": 0.31, "p90": 0.42} | null}}

`identity.spread` is the distribution of the distances of the person's sampled faces to
their mean embedding: how far this person's own faces stray from themselves. A pool of
many people's faces (for pretraining) has no identity (null).

History: 1, crops, splits and the identity embedding; 2, `landmarks` (the face region
for training losses) and `spread`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import media
from ..errors import FacepipeError
from . import read_versioned

VERSION = 2


def write_index(folder: Path, person: str, records: list[dict], embedding: np.ndarray | None, samples: int,
                spread: dict | None) -> None:
    index = {"version": VERSION, "person": person, "faces": records,
             "identity": {"embedding": None if embedding is None else np.asarray(embedding).round(5).tolist(),
                          "samples": samples, "spread": spread}}
    (folder / "faces.json").write_text(json.dumps(index, indent=1) + "\n")


def read_index(dataset_dir: str | Path) -> dict:
    return read_versioned(Path(dataset_dir) / "faces.json", VERSION, "filter")


def read_faces(dataset_dir: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """A person's kept faces of one split ("train" or "holdout"): crops as uint8
    (N, S, S, 3) and their 68 landmarks in crop pixels (N, 68, 2)."""
    faces = [face for face in read_index(dataset_dir)["faces"] if face["split"] == split]
    if not faces:
        raise FacepipeError(f"{dataset_dir}: the dataset has no {split} faces; add sources for this person")
    images = np.stack([media.read_image(Path(dataset_dir) / face["file"]) for face in faces])
    return images, np.asarray([face["landmarks"] for face in faces], np.float32)


def person_embedding(dataset_dir: str | Path) -> np.ndarray:
    """A person's mean embedding, as the filter stage measured it on their dataset."""
    embedding = read_index(dataset_dir)["identity"]["embedding"]
    if embedding is None:
        raise FacepipeError(f"{dataset_dir}/faces.json: no identity embedding (a pool of many people's faces); "
                            "name a person's dataset")
    return np.asarray(embedding)


def identity_spread(dataset_dir: str | Path) -> dict:
    """Percentiles of the distances of the person's own faces to their mean embedding."""
    spread = read_index(dataset_dir)["identity"]["spread"]
    if spread is None:
        raise FacepipeError(f"{dataset_dir}/faces.json: no identity spread; rerun the filter stage")
    return spread
