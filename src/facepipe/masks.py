"""The face mask: which pixels of an aligned crop take the new face, and how softly.

convert blends the model's face into the frame through it; evaluate reads the same
mask (from the settings convert's report records) to find the edge of the pasted
region."""

from __future__ import annotations

import cv2
import numpy as np


def mask_points(landmarks_crop: np.ndarray, kind: str) -> np.ndarray:
    """The points whose hull is the mask: the 68 landmarks, and for `extended` the brows
    lifted towards the hairline (by 40% of the brow-to-chin distance)."""
    if kind == "hull":
        return landmarks_crop
    brows = landmarks_crop[17:27]
    up = brows.mean(0) - landmarks_crop[8]  # chin to brows
    return np.concatenate([landmarks_crop, brows + 0.4 * up])


def fit_inside(points: np.ndarray, low: float, high: float) -> np.ndarray:
    """The outline squeezed towards the face's centre (the nose), each of the four
    directions by its own factor, just enough to lie within [low, high] on both axes.
    A side that fits is left alone, so the outline keeps its curves: where the landmark
    hull runs past the region the model drew, the mask's edge now follows the face a
    little further in instead of the straight edge of that region (the "box" on the
    cheeks)."""
    centre = points[27:36].mean(0)
    fitted = points.astype(np.float64).copy()
    for axis in (0, 1):
        offset = fitted[:, axis] - centre[axis]
        for side, bound in ((1, high), (-1, low)):
            reach = (offset * side).max()
            room = (bound - centre[axis]) * side
            if reach > room > 0:
                part = offset * side > 0
                fitted[part, axis] = centre[axis] + offset[part] * room / reach
    return fitted


def face_mask(landmarks_crop: np.ndarray, size: int, coverage: float, erode: float, blur: float,
              kind: str = "hull") -> np.ndarray:
    """Blurred mask in crop space, float32 in [0, 1]. `erode` (negative: dilate) and
    `blur` are fractions of the crop size, so the look does not depend on resolution.
    The mask, its feathering and any growing stay inside the region the model drew
    (`coverage` of the crop), which it reaches only by the face's own outline."""
    pad = size * (1 - coverage) / 2
    feather = max(1, int(round(blur * size))) | 1 if blur > 0 else 0
    margin = feather // 2 + 1 + max(0.0, -erode * size)  # room for the blur and any growing
    points = fit_inside(mask_points(landmarks_crop, kind), pad + margin, size - pad - margin)
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.round().astype(np.int32)), 1.0)
    if erode:
        k = max(1, int(round(abs(erode) * size)))
        mask = (cv2.erode if erode > 0 else cv2.dilate)(mask, np.ones((k, k), np.uint8))
    if feather:
        mask = cv2.GaussianBlur(mask, (feather, feather), 0)
    limit = np.zeros_like(mask)
    inside = int(round(pad))
    limit[inside:size - inside, inside:size - inside] = 1.0  # the model drew nothing else
    return mask * limit
