"""The files stages hand each other: one module owns reading and writing each format,
with its version and a short history. Stage modules import these (and `media`,
`models`), never each other, so a stage can be replaced as long as its files keep
their format."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import FacepipeError


def read_versioned(path: Path, version: int, stage: str) -> dict:
    """A stage's JSON file, refused in one line when it is missing, unreadable or of
    another version than `version` (older files have none: version 1)."""
    if not path.is_file():
        raise FacepipeError(f"{path.parent}: no {path.name}; run the {stage} stage first")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise FacepipeError(f"{path}: not readable ({exc}); rerun the {stage} stage") from None
    if data.get("version", 1) != version:
        raise FacepipeError(f"{path}: made by another facepipe (version {data.get('version', 1)}, this one reads "
                            f"{version}); rerun the {stage} stage")
    return data
