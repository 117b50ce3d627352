"""The download stage's folder: the media (`video.<ext>`, or `photos/`) and `info.json`:

    {"version": 1, "source": "<URL or path>", "kind": "url" | "video" | "photos",
     "id": ..., "title": ..., "path" or "url": ...,
     video: "file": "video.mp4", "width", "height", "fps", "has_audio", "duration"
     photos: "photos": ["a.jpg", ...] (the photos kept, in order)}

History: 1, the first versioned format (before it, the same without "version")."""

from __future__ import annotations

import json
from pathlib import Path

from . import read_versioned

VERSION = 1
INFO = "info.json"


def write(folder: Path, info: dict) -> None:
    (folder / INFO).write_text(json.dumps({"version": VERSION, **info}, indent=2) + "\n")


def read(download_dir: str | Path) -> tuple[dict, Path]:
    """info.json and the path of the media: the video file, or the photos folder."""
    download_dir = Path(download_dir)
    info = read_versioned(download_dir / INFO, VERSION, "download")
    return info, download_dir / (info["file"] if info["kind"] != "photos" else "photos")
