"""Pictures and tables for people to look at (the Snakemake report): loss curves, contact
sheets of kept and dropped faces, before/after strips, metric tables. Drawn with OpenCV
so the project needs no plotting library."""

from __future__ import annotations

import html

import cv2
import numpy as np

WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (30, 30, 30)
CURVE_COLOURS = [(31, 119, 180), (214, 39, 40)]


def _text(image, text, org, scale=0.45, colour=BLACK):
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def loss_plot(steps, series: dict[str, list[float]], size=(720, 360)) -> np.ndarray:
    """Line plot (RGB) of each named series against `steps`."""
    w, h = size
    left, right, top, bottom = 60, 20, 30, 40
    image = np.full((h, w, 3), 255, np.uint8)
    values = np.concatenate([np.asarray(v, float) for v in series.values()])
    lo, hi = float(values.min()), float(values.max())
    hi = hi if hi > lo else lo + 1e-6
    x_max = max(steps[-1], 1)

    def point(step, value):
        x = left + (w - left - right) * step / x_max
        y = top + (h - top - bottom) * (1 - (value - lo) / (hi - lo))
        return int(round(x)), int(round(y))

    cv2.rectangle(image, (left, top), (w - right, h - bottom), GREY, 1)
    for frac in (0, 0.5, 1):
        value = lo + frac * (hi - lo)
        _text(image, f"{value:.3f}", (4, point(0, value)[1] + 4))
    _text(image, "0", (left - 4, h - bottom + 18))
    _text(image, f"{steps[-1]} steps", (w - right - 80, h - bottom + 18))
    for i, (name, ys) in enumerate(series.items()):
        pts = np.array([point(s, y) for s, y in zip(steps, ys)], np.int32)
        cv2.polylines(image, [pts], False, CURVE_COLOURS[i % 2], 1, cv2.LINE_AA)
        _text(image, name, (left + 10 + 200 * i, top - 10), colour=CURVE_COLOURS[i % 2])
    return image


def contact_sheet(rows: list[tuple[str, list[np.ndarray]]], thumb=64, per_row=12) -> np.ndarray:
    """A titled row of thumbnails per group (e.g. "kept", "dropped: blur")."""
    blocks = []
    width = per_row * thumb
    for title, images in rows:
        header = np.full((22, width, 3), 255, np.uint8)
        _text(header, title, (4, 16))
        blocks.append(header)
        shown = images[:per_row * 2]
        if not shown:
            blocks.append(np.full((thumb // 2, width, 3), 240, np.uint8))
            continue
        for start in range(0, len(shown), per_row):
            line = np.full((thumb, width, 3), 240, np.uint8)
            for j, image in enumerate(shown[start:start + per_row]):
                line[:, j * thumb:(j + 1) * thumb] = cv2.resize(image, (thumb, thumb), interpolation=cv2.INTER_AREA)
            blocks.append(line)
    return np.concatenate(blocks)


def before_after_strip(pairs: list[tuple[np.ndarray, np.ndarray]], height=200) -> np.ndarray:
    """Input frames on the top row, the swapped frames below them."""
    def fit(image):
        return cv2.resize(image, (int(round(image.shape[1] * height / image.shape[0])), height),
                          interpolation=cv2.INTER_AREA)

    top = np.concatenate([fit(a) for a, _ in pairs], axis=1)
    bottom = np.concatenate([fit(b) for _, b in pairs], axis=1)
    bottom = cv2.resize(bottom, (top.shape[1], height)) if bottom.shape[1] != top.shape[1] else bottom
    strip = np.concatenate([top, bottom])
    _text(strip, "input", (6, 18), 0.6, WHITE)
    _text(strip, "swapped", (6, height + 18), 0.6, WHITE)
    return strip


def metrics_table(title: str, rows: list[tuple[str, object]]) -> str:
    """A small self-contained HTML table."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return (f"<!doctype html><html><body><h3>{html.escape(title)}</h3>"
            f"<table border='1' cellpadding='4' style='border-collapse:collapse'>{body}</table></body></html>\n")
