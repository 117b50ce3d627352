"""Training batches, made on the device inside the jitted training step.

Each person's aligned crops are uploaded once as uint8, with a fourth channel that
labels the face's regions (background, face, mouth, eyes; from the landmarks carried in
the dataset), so the region-weighted losses cost nothing extra to warp. Every step draws
faces and applies the original DeepFakes augmentation as JAX ops: the random transform
(rotation ±10°, zoom ±5%, shift ±5%, flip with p 0.4, about the crop centre) and the
random warp (a 5x5 grid over the central `coverage` of the crop, jittered by 5/256 of
the side and smoothly interpolated) give the input, and the similarity fitted (umeyama)
from the jittered grid to a regular one gives its undistorted target.

The transform and the warp are composed into one bilinear sampling of the uint8 crop
per output pixel (OpenCV warps twice), so no full-size intermediate image exists. On
this project's 2-core CPU (AMD EPYC) a batch of 16 takes 6.7 ms this way against 22 ms
for the OpenCV version in a host thread, and on a GPU the host never limits the step.
The RNG key is part of the training state, so a resumed run draws the same batches."""

from __future__ import annotations

from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from .formats import dataset

ROTATION, ZOOM, SHIFT, FLIP = 10.0, 0.05, 0.05, 0.4  # the original random_transform_args
WARP_NOISE = 5 / 256  # the original's jitter of the warp grid: 5 px of a 256 px crop

# Region labels of the fourth channel, nested: eyes and mouth lie inside the face.
BACKGROUND, FACE, MOUTH, EYES = 0, 1, 2, 3
# Grown by these shares of the crop side: the face region then covers the feathered edge
# of convert's mask (mask_blur 0.06 spreads about 3% outwards), the eyes their lids and
# lashes, the mouth its lips.
FACE_GROW, EYES_GROW, MOUTH_GROW = 0.04, 0.03, 0.02


def _hull(points: np.ndarray, size: int, grow: float) -> np.ndarray:
    region = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    k = int(round(grow * size)) * 2 + 1
    return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) if k > 1 else region


def face_regions(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Region labels (uint8, size x size) of one aligned crop from its 68 landmarks."""
    labels = _hull(landmarks, size, FACE_GROW) * FACE
    labels[_hull(landmarks[48:60], size, MOUTH_GROW) > 0] = MOUTH
    labels[(_hull(landmarks[36:42], size, EYES_GROW) | _hull(landmarks[42:48], size, EYES_GROW)) > 0] = EYES
    return labels


def load_faces(dataset_dirs: list[str | Path], split: str = "train") -> np.ndarray:
    """The faces of one or more datasets (one person's, or a pool for pretraining) as
    uint8 (N, S, S, 4): RGB and the region labels."""
    blocks = []
    for directory in dataset_dirs:
        images, landmarks = dataset.read_faces(directory, split)
        labels = np.stack([face_regions(points, images.shape[1]) for points in landmarks])
        blocks.append(np.concatenate([images, labels[..., None]], axis=-1))
    return np.concatenate(blocks)


def _grid_weights(resolution: int) -> np.ndarray:
    """(resolution, 5) weights that interpolate the 5-point warp grid as the original
    does: cv2.resize (bilinear) to 5/4 of the resolution, of which the centre is kept."""
    big, edge = resolution * 5 // 4, resolution // 8
    u = (np.arange(edge, edge + resolution) + 0.5) * 5 / big - 0.5
    low = np.clip(np.floor(u).astype(int), 0, 3)
    weights = np.zeros((resolution, 5), np.float32)
    weights[np.arange(resolution), low] = 1 - (u - low)
    weights[np.arange(resolution), low + 1] = u - low
    return weights


def _sample(faces: jax.Array, index: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Bilinear samples (B, H, W, C) of faces[index] at pixel coordinates x, y (B, H, W),
    the border replicated; the region labels (last channel) are taken from the nearest
    pixel, since labels do not blend."""
    size = faces.shape[1]
    x, y = jnp.clip(x, 0, size - 1), jnp.clip(y, 0, size - 1)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, size - 1), jnp.minimum(y0 + 1, size - 1)
    b = index[:, None, None]
    rgb = faces[..., :3]

    def at(yy, xx):
        return rgb[b, yy, xx].astype(jnp.float32)

    colour = (at(y0, x0) * (1 - fx) + at(y0, x1) * fx) * (1 - fy) + (at(y1, x0) * (1 - fx) + at(y1, x1) * fx) * fy
    labels = faces[b, jnp.round(y).astype(jnp.int32), jnp.round(x).astype(jnp.int32), 3]
    return colour / 255.0, labels


def augment(key: jax.Array, faces: jax.Array, batch: int, resolution: int, coverage: float
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`batch` random faces of `faces` (uint8 N x S x S x 4), transformed and warped:
    the warped input and its target (float32 in [0, 1], B x R x R x 3) and the target's
    region labels (B x R x R)."""
    size = faces.shape[1]
    keys = jax.random.split(key, 6)
    index = jax.random.randint(keys[0], (batch,), 0, faces.shape[0])
    angle = jnp.deg2rad(jax.random.uniform(keys[1], (batch,), minval=-ROTATION, maxval=ROTATION))
    scale = jax.random.uniform(keys[2], (batch,), minval=1 - ZOOM, maxval=1 + ZOOM)
    shift = jax.random.uniform(keys[3], (batch, 2), minval=-SHIFT, maxval=SHIFT) * size
    flip = (jax.random.uniform(keys[4], (batch,)) < FLIP)[:, None, None]

    # The random transform as cv2.getRotationMatrix2D about (S//2, S//2) plus the shift;
    # its inverse and the flip take a point of the transformed crop back to the crop.
    centre = size // 2
    a, b = (scale * jnp.cos(angle))[:, None, None], (scale * jnp.sin(angle))[:, None, None]
    tx = (1 - a) * centre - b * centre + shift[:, 0, None, None]
    ty = b * centre + (1 - a) * centre + shift[:, 1, None, None]

    def to_crop(x, y):
        x = jnp.where(flip, size - 1 - x, x) - tx
        y = y - ty
        det = a * a + b * b
        return (a * x - b * y) / det, (b * x + a * y) / det

    # The random warp: a jittered 5x5 grid over the covered region, interpolated.
    half = coverage * size / 2
    grid = jnp.linspace(size / 2 - half, size / 2 + half, 5)
    noise = jax.random.normal(keys[5], (batch, 2, 5, 5)) * (WARP_NOISE * size)
    grid_x, grid_y = grid[None, None, :] + noise[:, 0], grid[None, :, None] + noise[:, 1]
    weights = jnp.asarray(_grid_weights(resolution))
    map_x = jnp.einsum("ik,bkl,jl->bij", weights, grid_x, weights)
    map_y = jnp.einsum("ik,bkl,jl->bij", weights, grid_y, weights)
    warped, _ = _sample(faces, index, *to_crop(map_x, map_y))

    # The target: the similarity (umeyama, as complex numbers) taking the jittered grid
    # onto a regular one over the output, applied backwards to every output pixel.
    p = (grid_x + 1j * grid_y).reshape(batch, 25)
    regular = np.mgrid[0:resolution + 1:resolution // 4, 0:resolution + 1:resolution // 4].T.reshape(-1, 2)
    q = jnp.asarray(regular[:, 0] + 1j * regular[:, 1])
    p_mean, q_mean = p.mean(1, keepdims=True), q.mean()
    c = (jnp.conj(p - p_mean) * (q - q_mean)).sum(1) / (jnp.abs(p - p_mean) ** 2).sum(1)
    offset = q_mean - c * p_mean[:, 0]
    out_y, out_x = np.mgrid[0:resolution, 0:resolution]
    source = ((out_x + 1j * out_y)[None] - offset[:, None, None]) / c[:, None, None]
    target, labels = _sample(faces, index, *to_crop(source.real, source.imag))
    return warped, target, labels


def center_faces(faces: np.ndarray, resolution: int, coverage: float) -> np.ndarray:
    """The model's view of crops without augmentation, as float32 in [0, 1]."""
    size = faces.shape[1]
    pad = int(round(size * (1 - coverage) / 2))
    out = [cv2.resize(f[pad:size - pad, pad:size - pad, :3], (resolution, resolution), interpolation=cv2.INTER_AREA)
           for f in faces]
    return np.stack(out).astype(np.float32) / 255.0


def center_regions(faces: np.ndarray, resolution: int, coverage: float) -> np.ndarray:
    """The region labels of `load_faces` crops as the model sees them (nearest pixel)."""
    size = faces.shape[1]
    pad = int(round(size * (1 - coverage) / 2))
    return np.stack([cv2.resize(f[pad:size - pad, pad:size - pad, 3], (resolution, resolution),
                                interpolation=cv2.INTER_NEAREST) for f in faces])
