"""Pictures and tables for people to look at (the Snakemake report): loss curves, contact
sheets of kept and dropped faces, before/after strips, metric tables. Drawn with OpenCV
so the project needs no plotting library."""

from __future__ import annotations

import html

import cv2
import numpy as np

WHITE, GREY, BLACK = (255, 255, 255), (200, 200, 200), (30, 30, 30)
CURVE_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def _text(image, text, org, scale=0.45, colour=BLACK):
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def line_plot(xs, series: dict[str, list[float]], x_label: str, title: str = "", size=(720, 360)) -> np.ndarray:
    """Line plot (RGB) of each named series against `xs` (one list for all, or one per
    series), with value ticks on the left and the x range below."""
    w, h = size
    left, right, top, bottom = 60, 20, 30 + 16 * bool(title), 40
    image = np.full((h, w, 3), 255, np.uint8)
    xs = {name: xs.get(name) if isinstance(xs, dict) else xs for name in series}
    values = np.concatenate([np.asarray(v, float) for v in series.values()])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    x_max = max(max(max(x) for x in xs.values()), 1e-9)

    def point(x, value):
        px = left + (w - left - right) * x / x_max
        py = top + (h - top - bottom) * (1 - (value - lo) / (hi - lo))
        return int(round(px)), int(round(py))

    cv2.rectangle(image, (left, top), (w - right, h - bottom), GREY, 1)
    if title:
        _text(image, title, (left, 16))
    for frac in (0, 0.5, 1):
        value = lo + frac * (hi - lo)
        _text(image, f"{value:.3f}", (4, point(0, value)[1] + 4))
    _text(image, "0", (left - 4, h - bottom + 18))
    _text(image, f"{x_max:g} {x_label}", (w - right - 110, h - bottom + 18))
    for i, (name, ys) in enumerate(series.items()):
        colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
        pts = np.array([point(x, y) for x, y in zip(xs[name], ys) if np.isfinite(y)], np.int32)
        if len(pts):
            cv2.polylines(image, [pts], False, colour, 1, cv2.LINE_AA)
        _text(image, name, (left + 10 + 170 * i, top - 10), colour=colour)
    return image


def loss_plot(steps, series: dict[str, list[float]], size=(720, 360)) -> np.ndarray:
    """Training losses (RGB) against steps."""
    return line_plot(list(steps), series, "steps", size=size)


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
