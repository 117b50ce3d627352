"""Face alignment geometry: the DeepFakes mean face, umeyama similarity estimation,
and the crop transform shared by detection, training and conversion."""

from __future__ import annotations

import cv2
import numpy as np

# Landmarks 17..67 (brows, nose, eyes, mouth) of dlib's 68-point model on a unit
# square: the mean face of the original DeepFakes alignment.
MEAN_FACE = np.stack([
    [0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
     0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
     0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
     0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
     0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
     0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
     0.553364, 0.490127, 0.42689],
    [0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
     0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
     0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
     0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
     0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
     0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
     0.784792, 0.824182, 0.831803, 0.824182],
], axis=1)

# The mean face fills the middle 160 px of a 256 px crop, as in the original tool; the
# training "coverage" of 0.625 is exactly that region.
PADDING_FRACTION = 48 / 256


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (3x3) taking 2-D points `src` onto `dst`
    (Umeyama 1991, "Least-squares estimation of transformation parameters"). In 2-D,
    with points as complex numbers, the rotation and scale reduce to one complex
    division of centred sums, which is exact and ten times faster than the SVD."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    p = src[:, 0] + 1j * src[:, 1]
    q = dst[:, 0] + 1j * dst[:, 1]
    p_mean, q_mean = p.mean(), q.mean()
    p, q = p - p_mean, q - q_mean
    norm = float(np.vdot(p, p).real)
    if norm == 0:
        return np.full((3, 3), np.nan)
    c = np.vdot(p, q) / norm  # scale * e^(i angle)
    shift = q_mean - c * p_mean
    return np.array([[c.real, -c.imag, shift.real], [c.imag, c.real, shift.imag], [0.0, 0.0, 1.0]])


def crop_matrix(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """2x3 affine matrix taking frame pixels to an aligned `crop_size` square crop."""
    unit = umeyama(np.asarray(landmarks)[17:], MEAN_FACE)[:2]
    padding = PADDING_FRACTION * crop_size
    matrix = unit * (crop_size - 2 * padding)
    matrix[:, 2] += padding
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def cut_face(frame: np.ndarray, face: dict, crop_size: int) -> np.ndarray:
    """The face's aligned crop of `frame` (its alignment's `matrix`)."""
    return cv2.warpAffine(frame, np.asarray(face["matrix"], np.float64), (crop_size, crop_size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
