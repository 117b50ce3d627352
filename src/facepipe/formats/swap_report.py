"""The convert stage's summary of a swap, `results/swaps/<swap>.json`:

    {"version": 1, "frames": N, "fps": "30/1" | null, "frames_with_faces", "faces_swapped",
     "faces_left", "swapped_tracks", "swapped_runs", "frame_ranges", "side_by_side", "size",
     "mask": {"kind", "erode", "blur"} (so evaluate finds the mask's edge), "coverage",
     "source", "target", "synthetic_tag"}

History: 1, the first versioned format (before it, the same without "version")."""

from __future__ import annotations

from pathlib import Path

from ..fsutil import write_json
from . import read_versioned

VERSION = 1


def write(path: str | Path, report: dict) -> None:
    write_json(path, {"version": VERSION, **report})


def read(path: str | Path) -> dict:
    return read_versioned(Path(path), VERSION, "convert")
