"""The detect stage's folder: `alignments.json` (format in README.md) and `crops.zip`,
one aligned crop (JPEG) per face, named by the face's `crop`.

History: 1, faces with boxes, landmarks and matrices, a crop file each; 2, tracks (each
face's "track", the clip's "tracks" and "cuts"), smoothing, and the crops in one zip."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from ..errors import FacepipeError
from . import read_versioned

VERSION = 2
ALIGNMENTS = "alignments.json"
# Crops go into one uncompressed zip (JPEGs do not compress): creating a file per face
# cost more CPU than finding the face's landmarks (measured here: 0.5-0.8 ms each).
CROPS = "crops.zip"
CROP_QUALITY = 95


def crop_name(frame: int, face: int) -> str:
    return f"{frame:06d}_{face}.jpg"


def encode_crop(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, CROP_QUALITY])[1].tobytes()


class CropsWriter:
    """crops.zip, written a crop at a time."""

    def __init__(self, folder: Path):
        self.zip = zipfile.ZipFile(folder / CROPS, "w", zipfile.ZIP_STORED)

    def add(self, name: str, data: bytes) -> None:
        # A fixed date keeps the archive byte-identical across reruns.
        self.zip.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)

    def close(self) -> None:
        self.zip.close()


def write(folder: Path, header: dict, faces: TextIO) -> None:
    """alignments.json: `header` (everything but the faces) and the faces, one JSON
    record per line of `faces`, each but the first starting with a comma. The faces are
    copied from that file: a long video's records are never all in memory at once."""
    with (folder / ALIGNMENTS).open("w") as out:
        out.write(json.dumps({"version": VERSION, **header})[:-1] + ', "faces": [\n')
        shutil.copyfileobj(faces, out)
        out.write("]}\n")


def read(faces_dir: str | Path) -> dict:
    """alignments.json, refused when another facepipe wrote it."""
    return read_versioned(Path(faces_dir) / ALIGNMENTS, VERSION, "detect")


def open_crops(faces_dir: str | Path) -> zipfile.ZipFile:
    """The aligned crops of a detect output, by the names in its alignments.json."""
    path = Path(faces_dir) / CROPS
    if not path.is_file():
        raise FacepipeError(f"{faces_dir}: no {CROPS}; run the detect stage first")
    return zipfile.ZipFile(path)


def read_crop(crops: zipfile.ZipFile, name: str) -> np.ndarray:
    """One aligned crop as RGB."""
    bgr = cv2.imdecode(np.frombuffer(crops.read(name), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
