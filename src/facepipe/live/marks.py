"""What live draws on the picture: the "synthetic" mark, which every output carries by
default (a call or a stream has no metadata to say so), and the status line of the
window (frame rate, latency, dropped frames, swap on or off)."""

from __future__ import annotations

import cv2
import numpy as np

LABEL = "SYNTHETIC"


def _text(frame: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    thickness = max(1, round(2 * scale))
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def label_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the mark goes: the bottom right corner, x0, y0, x1, y1."""
    scale = max(0.35, height / 1440)
    (w, h), base = cv2.getTextSize(LABEL, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(2 * scale)))
    pad = max(3, round(6 * scale))
    return width - w - 3 * pad, height - h - base - 3 * pad, width - pad, height - pad


def draw_label(frame: np.ndarray) -> None:
    """The mark, in place: white on a dark box, readable on any picture."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = label_box(width, height)
    frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] // 3
    scale = max(0.35, height / 1440)
    pad = max(3, round(6 * scale))
    _text(frame, LABEL, (x0 + pad, y1 - pad - max(1, round(3 * scale))), scale)


def draw_status(frame: np.ndarray, status: str) -> None:
    """The window's status line, top left."""
    scale = max(0.4, frame.shape[0] / 1200)
    _text(frame, status, (round(10 * scale), round(28 * scale)), scale)
