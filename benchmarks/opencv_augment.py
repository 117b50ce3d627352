"""The original DeepFakes augmentation in OpenCV, one face at a time, as facepipe ran it
on the host before its batches were made on the device (input_pipeline.augment): the
yardstick the device version is tested against (tests/test_training_step.py) and timed
against (benchmarks/device_throughput.py)."""

from __future__ import annotations

import cv2
import numpy as np

from facepipe import align
from facepipe.input_pipeline import FLIP, ROTATION, SHIFT, ZOOM


def opencv_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    rotation = rng.uniform(-ROTATION, ROTATION)
    scale = rng.uniform(1 - ZOOM, 1 + ZOOM)
    tx, ty = rng.uniform(-SHIFT, SHIFT) * w, rng.uniform(-SHIFT, SHIFT) * h
    mat = cv2.getRotationMatrix2D((w // 2, h // 2), rotation, scale)
    mat[:, 2] += (tx, ty)
    out = cv2.warpAffine(image, mat, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return out[:, ::-1] if rng.random() < FLIP else out


def opencv_warp(image: np.ndarray, resolution: int, coverage: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
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
    target = cv2.warpAffine(image, align.umeyama(src, dst)[:2], (resolution, resolution))
    return warped, target


def opencv_batch(faces: np.ndarray, batch: int, resolution: int, coverage: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batch` random faces of `faces` (uint8 N x S x S x 4: RGB and region labels)
    augmented as the training step takes them: warped input and target (float32 in [0, 1])
    and the target's labels. The labels are warped with the colours (bilinear), which
    costs what a separate nearest-pixel warp would."""
    pairs = [opencv_warp(opencv_transform(faces[i], rng), resolution, coverage, rng)
             for i in rng.integers(0, len(faces), batch)]
    warped = np.stack([w[..., :3] for w, _ in pairs]).astype(np.float32) / 255
    target = np.stack([t[..., :3] for _, t in pairs]).astype(np.float32) / 255
    return warped, target, np.stack([t[..., 3] for _, t in pairs])
