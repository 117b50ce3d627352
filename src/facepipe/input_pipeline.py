"""Training batches: aligned face crops, random transform + random warp (as the original
DeepFakes trainer), made in a background thread so the training step rarely waits."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from . import align, media
from .errors import FacepipeError

ROTATION, ZOOM, SHIFT, FLIP = 10.0, 0.05, 0.05, 0.4  # the original random_transform_args


def load_dataset(dataset_dir: str | Path, split: str = "train") -> np.ndarray:
    """A person's kept faces of one split ("train" or "holdout") as uint8 (N, S, S, 3)."""
    dataset_dir = Path(dataset_dir)
    index_file = dataset_dir / "faces.json"
    if not index_file.is_file():
        raise FacepipeError(f"{dataset_dir}: no faces.json; run the filter stage first")
    index = json.loads(index_file.read_text())
    faces = [face for face in index["faces"] if face.get("split", "train") == split]
    if not faces:
        raise FacepipeError(f"{dataset_dir}: the dataset has no {split} faces; add sources for this person")
    return np.stack([media.read_image(dataset_dir / face["file"]) for face in faces])


def random_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    rotation = rng.uniform(-ROTATION, ROTATION)
    scale = rng.uniform(1 - ZOOM, 1 + ZOOM)
    tx, ty = rng.uniform(-SHIFT, SHIFT) * w, rng.uniform(-SHIFT, SHIFT) * h
    mat = cv2.getRotationMatrix2D((w // 2, h // 2), rotation, scale)
    mat[:, 2] += (tx, ty)
    out = cv2.warpAffine(image, mat, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return out[:, ::-1] if rng.random() < FLIP else out


def random_warp(image: np.ndarray, resolution: int, coverage: float, rng: np.random.Generator):
    """A smoothly distorted input and its undistorted target, both `resolution` px,
    taken from the central `coverage` of the crop (the original's 160 of 256 px)."""
    size = image.shape[0]
    half = coverage * size / 2
    grid = np.linspace(size / 2 - half, size / 2 + half, 5)
    mapx = np.broadcast_to(grid, (5, 5))
    mapy = mapx.T
    noise = 5 * size / 256
    mapx = mapx + rng.normal(size=(5, 5), scale=noise)
    mapy = mapy + rng.normal(size=(5, 5), scale=noise)
    big, edge = resolution * 5 // 4, resolution // 8
    interp_x = cv2.resize(mapx, (big, big))[edge:edge + resolution, edge:edge + resolution].astype(np.float32)
    interp_y = cv2.resize(mapy, (big, big))[edge:edge + resolution, edge:edge + resolution].astype(np.float32)
    warped = cv2.remap(image, interp_x, interp_y, cv2.INTER_LINEAR)
    src = np.stack([mapx.ravel(), mapy.ravel()], axis=-1)
    dst = np.mgrid[0:resolution + 1:resolution // 4, 0:resolution + 1:resolution // 4].T.reshape(-1, 2)
    mat = align.umeyama(src, dst)[:2]
    target = cv2.warpAffine(image, mat, (resolution, resolution))
    return warped, target


def center_faces(faces: np.ndarray, resolution: int, coverage: float) -> np.ndarray:
    """The model's view of crops without augmentation, as float32 in [0, 1]."""
    size = faces.shape[1]
    pad = int(round(size * (1 - coverage) / 2))
    out = [cv2.resize(f[pad:size - pad, pad:size - pad], (resolution, resolution), interpolation=cv2.INTER_AREA)
           for f in faces]
    return np.stack(out).astype(np.float32) / 255.0


class BatchStream:
    """Endless augmented batches of one person's faces, made ahead in a thread.

    The generator's state is part of the checkpoint, so a resumed run draws the same
    batches as an uninterrupted one."""

    def __init__(self, faces: np.ndarray, batch_size: int, resolution: int, coverage: float,
                 rng: np.random.Generator, resume_after: dict | None = None, prefetch: int = 4):
        self.faces, self.batch_size = faces, batch_size
        self.resolution, self.coverage = resolution, coverage
        self.rng = rng
        if resume_after is not None:  # replay the last batch drawn before the checkpoint
            self.rng.bit_generator.state = resume_after
            self.make_batch()
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def make_batch(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.choice(len(self.faces), self.batch_size, replace=len(self.faces) < self.batch_size)
        warped, target = zip(*(random_warp(random_transform(self.faces[i], self.rng), self.resolution,
                                           self.coverage, self.rng) for i in idx))
        return np.stack(warped).astype(np.float32) / 255.0, np.stack(target).astype(np.float32) / 255.0

    def _fill(self):
        while not self._stop.is_set():
            state = self.rng.bit_generator.state  # state *before* this batch
            try:
                item = (state, self.make_batch())
            except Exception as exc:  # handed to next(), which raises it in the training loop
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def next(self) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
        """The next batch and the generator state that reproduces it."""
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join()
