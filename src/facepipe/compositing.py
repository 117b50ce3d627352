"""Compositing: a new face into a frame. Mask, colour match, sharpen, warp back and blend,
as pure array code (NumPy and OpenCV, no files), so any front end can reuse it: the
convert stage renders clips with it, a live swapper could draw camera frames."""

from __future__ import annotations

import cv2
import numpy as np

from . import align
from .align import cut_face
from .masks import face_mask
from .settings import ConvertSettings


def match_colour(new: np.ndarray, original: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Recolour the model's face (float RGB, 0-255) to the original's, judged under the
    mask: `avg-color` moves the mean; `color-transfer` matches mean and spread per channel
    in Lab (Reinhard et al. 2001); `match-hist` matches each channel's histogram."""
    weights = mask.ravel() / mask.sum()
    if method == "avg-color":
        return new + (original.reshape(-1, 3).T @ weights - new.reshape(-1, 3).T @ weights)
    if method == "color-transfer":
        lab_new = cv2.cvtColor(np.clip(new / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
        lab_old = cv2.cvtColor(np.clip(original / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
        mean_new, mean_old = weights @ lab_new, weights @ lab_old
        std_new = np.sqrt(weights @ (lab_new - mean_new) ** 2)
        std_old = np.sqrt(weights @ (lab_old - mean_old) ** 2)
        lab = (lab_new - mean_new) * (std_old / np.maximum(std_new, 1e-3)) + mean_old
        return cv2.cvtColor(lab.reshape(new.shape).astype(np.float32), cv2.COLOR_Lab2RGB) * 255
    if method == "match-hist":
        out = np.empty_like(new)
        bins = np.arange(257)
        for c in range(3):
            source, reference = new[..., c].ravel(), original[..., c].ravel()
            cdf_new = np.cumsum(np.histogram(source, bins, weights=weights)[0])
            cdf_old = np.cumsum(np.histogram(reference, bins, weights=weights)[0])
            levels = np.interp(cdf_new, cdf_old, bins[:-1])  # new level -> original level of equal rank
            out[..., c] = np.interp(source, bins[:-1], levels).reshape(new.shape[:2])
        return out
    return new


def composite(frame: np.ndarray, face: dict, swapped: np.ndarray, crop_size: int, coverage: float,
              settings: ConvertSettings, crop: np.ndarray | None = None) -> None:
    """Blend one swapped face (model output, float [0,1]) into `frame` in place. `crop`
    is the face's aligned crop of the frame, when the caller has already cut it."""
    matrix = np.asarray(face["matrix"], np.float64)
    region = int(round(crop_size * coverage))
    pad = (crop_size - region) // 2
    original = (cut_face(frame, face, crop_size) if crop is None else crop).astype(np.float32)
    new = original.copy()
    new[pad:pad + region, pad:pad + region] = cv2.resize(swapped * 255.0, (region, region),
                                                         interpolation=cv2.INTER_CUBIC)
    mask = face_mask(align.transform_points(face["landmarks"], matrix), crop_size, coverage,
                     settings.mask_erode, settings.mask_blur, settings.mask)
    if mask.sum() > 1:
        new = match_colour(new, original, mask, settings.color_match)
    new = np.clip(sharpen(new, settings.sharpen, settings.sharpen_amount, settings.sharpen_radius * region), 0, 255)
    # Warp back only into the face's bounding region of the frame: same result, less work.
    inverse = cv2.invertAffineTransform(matrix)
    if settings.face_scale != 1.0:  # grow or shrink the new face (and its mask) about the crop centre
        scale = cv2.getRotationMatrix2D((crop_size / 2, crop_size / 2), 0, settings.face_scale)
        inverse = inverse @ np.vstack([scale, [0, 0, 1]])
    corners = align.transform_points([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], inverse)
    h, w = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    to_roi = inverse.copy()
    to_roi[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    new_roi = cv2.warpAffine(new, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask_roi = cv2.warpAffine(mask, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    roi = frame[y0:y1, x0:x1]
    if settings.color_match == "seamless-clone":
        new_roi = seamless_clone(new_roi, roi, mask_roi[..., 0])
    blended = roi.astype(np.float32) * (1 - mask_roi) + new_roi * mask_roi
    frame[y0:y1, x0:x1] = np.clip(blended, 0, 255).round().astype(np.uint8)


UNSHARP_THRESHOLD = 4.0  # levels of 255: changes smaller than this are noise, not edges


def sharpen(face: np.ndarray, method: str, amount: float, radius: float) -> np.ndarray:
    """Restore the detail the 64 px model loses when its face is scaled up: add back
    `amount` times the difference to a blurred copy (box or Gaussian of `radius` px);
    `unsharp` does so only where that difference exceeds a threshold, so flat skin keeps
    its smoothness and only edges get crisper."""
    if method == "none" or amount <= 0:
        return face
    k = max(1, round(radius)) * 2 + 1
    blurred = cv2.blur(face, (k, k)) if method == "box" else cv2.GaussianBlur(face, (k, k), 0)
    detail = face - blurred
    if method == "unsharp":
        detail = np.where(np.abs(detail) > UNSHARP_THRESHOLD, detail, 0)
    return face + amount * detail


def seamless_clone(new: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson blending (cv2.seamlessClone) of the new face into the frame region: the
    face keeps its own detail but takes its colour and light from the frame around it."""
    binary = (mask > 0.5).astype(np.uint8) * 255
    if not binary.any():
        return new
    # Margins, so the solver never meets the region's border; then the mask's box centre
    # is where OpenCV puts the clone, which keeps the face where it was.
    pad = 8
    src = cv2.copyMakeBorder(np.clip(new, 0, 255).astype(np.uint8), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    dst = cv2.copyMakeBorder(background, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    binary = cv2.copyMakeBorder(binary, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(binary)
    cloned = cv2.seamlessClone(src, dst, binary, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return cloned[pad:-pad, pad:-pad].astype(np.float32)
