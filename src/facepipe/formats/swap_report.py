"""The convert stage's summary of a swap, `results/swaps/<swap>.json`:

    {"version": 1, "frames": N, "fps": "30/1" | null, "frames_with_faces", "faces_swapped",
     "faces_left", "swapped_tracks", "swapped_runs", "frame_ranges", "side_by_side", "size",
     "mask": {"kind", "erode", "blur"} (so evaluate finds the mask's edge), "coverage",
     "source", "target", "synthetic_tag"}

History: 1, the first versioned format (before it, the same without "version")."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import FacepipeError
from ..fsutil import write_json

VERSION = 1


def write(path: str | Path, report: dict) -> None:
    write_json(path, {"version": VERSION, **report})


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FacepipeError(f"{path}: convert's report is missing; run convert first")
    report = json.loads(path.read_text())
    if report.get("version") != VERSION:
        raise FacepipeError(f"{path}: made by another facepipe (version {report.get('version')}, this one reads "
                            f"{VERSION}); rerun convert")
    return report
