"""The frames stage's folder: JPEG frames `frame_000000.jpg`, ... and `frames.json`:

    {"version": 2, "source": ..., "kind": "video" | "photos", "files": [...], "count": N,
     video: "video": "<the downloaded file>", "fps": "30/1" (of the frames), "source_fps",
            "start", "duration", "width", "height", "has_audio", "decode_errors"
     photos: "fps": null, "photos_dir": "<the downloaded photos>", "photos": [...]
             (frame i is photo photos[i])}

History: 1, unversioned; 2, "version", and "photos_dir" so convert draws on the photos
themselves rather than on the JPEG frames."""

from __future__ import annotations

import json
from pathlib import Path

from . import read_versioned

VERSION = 2
INDEX = "frames.json"


def frame_name(i: int) -> str:
    return f"frame_{i:06d}.jpg"


def write(folder: Path, index: dict) -> None:
    (folder / INDEX).write_text(json.dumps({"version": VERSION, **index}, indent=2) + "\n")


def read(frames_dir: str | Path) -> dict:
    return read_versioned(Path(frames_dir) / INDEX, VERSION, "frames")
