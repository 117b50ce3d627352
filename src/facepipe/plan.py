"""What a config asks to build: every source with a stable id, every clip (a stretch of
video that gets frames and face alignments), and the final targets. The Snakefile's
input functions and the CLI both read this, so the two never disagree."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .errors import FacepipeError
from .media import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclasses.dataclass(frozen=True)
class Source:
    id: str
    location: str  # URL, video file, or folder of photos, as written in the config
    kind: str  # "url", "video" or "photos"


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str  # "people/<person>/<source id>", "pool/<source id>" (pretraining faces) or "swaps/<swap>"
    source: str  # source id
    native_fps: bool  # swaps keep every frame; training clips are sampled at frames.fps
    start: float | None = None
    duration: float | None = None


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def _slug(text: str) -> str:
    # Never a leading "-": ids are passed as command-line values.
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")[:40] or "source"


def source_id(location: str) -> str:
    """A readable, stable id: the video's name plus a short hash of where it came from."""
    digest = hashlib.sha1(location.encode()).hexdigest()[:6]
    if is_url(location):
        url = urlparse(location)
        video = parse_qs(url.query).get("v", [None])[0]
        stem = video or (url.path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] if url.path.strip("/") else url.netloc)
    else:
        stem = Path(location).stem
    return f"{_slug(stem)}-{digest}"


def expand_location(location: str, where: str) -> list[Source]:
    """One config entry to sources: a URL or file is one; a folder gives each of its
    videos, plus one photo set if it has photos."""
    if is_url(location):
        return [Source(source_id(location), location, "url")]
    path = Path(location)
    if path.is_file():
        return [Source(source_id(location), location, "photos" if path.suffix.lower() in IMAGE_SUFFIXES else "video")]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        sources = [Source(source_id(str(p)), str(p), "video") for p in videos]
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
            sources.append(Source(source_id(location), location, "photos"))
        if not sources:
            raise FacepipeError(f"{where}: folder {location} has no videos or photos "
                                f"(looked for {', '.join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))})")
        return sources
    raise FacepipeError(f"{where}: {location} not found; give an existing file, folder or an http(s) URL")


class Plan:
    """Sources, clips and targets of one validated config."""

    def __init__(self, config: dict, filename: str = "config"):
        self.config = config
        self.sources: dict[str, Source] = {}
        self.person_sources: dict[str, list[str]] = {}
        self.clips: dict[str, Clip] = {}
        for person, spec in config["people"].items():
            ids = []
            for i, location in enumerate(spec["sources"]):
                for source in expand_location(location, f"{filename}: people.{person}.sources[{i}]"):
                    self.sources[source.id] = source
                    ids.append(source.id)
                    name = f"people/{person}/{source.id}"
                    self.clips[name] = Clip(name, source.id, native_fps=False)
            self.person_sources[person] = ids
            reference = spec.get("reference")
            if reference is not None and not Path(reference).is_file():
                raise FacepipeError(f"{filename}: people.{person}.reference: {reference} not found; "
                                    "give a photo of this person")
        pretrain = config.get("pretrain")
        self.pool: list[str] = []  # clips of the pretraining sources
        self.pretrain_people: list[str] = []
        if pretrain is not None:
            self.pretrain_people = list(pretrain.get("people", config["people"]))
            for i, location in enumerate(pretrain.get("sources", [])):
                for source in expand_location(location, f"{filename}: pretrain.sources[{i}]"):
                    self.sources[source.id] = source
                    name = f"pool/{source.id}"
                    self.clips[name] = Clip(name, source.id, native_fps=False)
                    self.pool.append(name)
            if not self.pretrain_people and not self.pool:
                raise FacepipeError(f"{filename}: pretrain: neither people nor sources; name the people and footage "
                                    "to pretrain on")
        for swap, spec in config["swaps"].items():
            sources = expand_location(spec["video"], f"{filename}: swaps.{swap}.video")
            if len(sources) != 1:
                raise FacepipeError(f"{filename}: swaps.{swap}.video: {spec['video']} holds {len(sources)} sources; "
                                    "give one video file or URL, one photo, or a folder of photos only")
            self.sources.setdefault(sources[0].id, sources[0])
            name = f"swaps/{swap}"
            self.clips[name] = Clip(name, sources[0].id, native_fps=True,
                                    start=spec.get("start"), duration=spec.get("duration"))

    def swap_is_photos(self, name: str) -> bool:
        return self.sources[self.clips[f"swaps/{name}"].source].kind == "photos"

    def person_clips(self, person: str) -> list[str]:
        return [f"people/{person}/{sid}" for sid in self.person_sources[person]]

    def swap(self, name: str) -> dict:
        return self.config["swaps"][name]

    def pair(self, name: str) -> dict:
        return self.config["pairs"][name]
