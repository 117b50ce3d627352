"""Following faces live: RetinaFace on a downscaled frame every few frames, dlib's 68
landmarks on every frame inside a box followed from the face's own landmarks in
between, track ids as detect gives them, and a causal smoother (no future frames exist
live): the one-euro filter (Casiez, Roussel and Vogel, CHI 2012), which smooths hard
when the face is still, where jitter shows, and little when it moves, where lag would.
The alignment is detect's (umeyama to the mean face)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .. import align, faces, tracking


class OneEuroFilter:
    """One-euro filter over a face's landmarks. Speeds are in face widths per second,
    so the same settings suit any resolution and distance from the camera."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self.value: np.ndarray | None = None
        self.speed = 0.0
        self.time = 0.0

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def __call__(self, points: np.ndarray, t: float, face_width: float) -> np.ndarray:
        if self.value is None or t <= self.time:
            self.value, self.time = points.astype(np.float64), t
            return self.value
        dt = t - self.time
        speed = float(np.linalg.norm(points - self.value, axis=1).mean()) / max(face_width, 1.0) / dt
        self.speed += self._alpha(self.derivative_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * self.speed
        self.value = self.value + self._alpha(cutoff, dt) * (points - self.value)
        self.time = t
        return self.value


@dataclass
class LiveFace:
    track: int
    box: np.ndarray  # x0, y0, x1, y1, frame pixels
    landmarks: np.ndarray  # smoothed, (68, 2)
    matrix: np.ndarray  # frame -> aligned crop (2x3)

    def as_record(self) -> dict:
        """The face as an alignments.json record, which compositing reads."""
        return {"box": self.box, "landmarks": self.landmarks, "matrix": self.matrix}


class _Track:
    def __init__(self, box: np.ndarray, smoother: OneEuroFilter):
        self.box = box
        self.smoother = smoother
        self.box_offsets: np.ndarray | None = None  # detector box - landmarks' box, in landmark-box sizes


def _points_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    low, high = points.min(0), points.max(0)
    return np.concatenate([low, high]), float(max(high - low))


def _landmarks(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's landmarks, given only the part of the frame around the box (dlib copies
    the whole image it is given: 3 ms of a 720p frame's 5)."""
    height, width = rgb.shape[:2]
    margin = 0.5 * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = max(0, int(box[0] - margin)), max(0, int(box[1] - margin))
    x1, y1 = min(width, int(box[2] + margin) + 1), min(height, int(box[3] + margin) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return faces.landmarks(rgb, box)
    offset = np.array([x0, y0], np.float64)
    return faces.landmarks(np.ascontiguousarray(rgb[y0:y1, x0:x1]), box - np.tile(offset, 2)) + offset


class Follower:
    def __init__(self, *, min_score: float, crop_size: int, detect_every: int, detect_width: int,
                 min_cutoff: float, beta: float):
        self.detector = faces.Detector(min_score)
        faces.shape_predictor()  # 100 MB of weights, half a second: loaded now, not on the first frame
        self.crop_size = crop_size
        self.detect_every = detect_every
        self.detect_width = detect_width
        self.min_cutoff, self.beta = min_cutoff, beta
        # A track lives through one detection that misses it.
        self.tracker = tracking.Tracker(max_gap=detect_every)
        self.tracks: dict[int, _Track] = {}
        self.last_detection: int | None = None

    def _detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.detect_width / width)
        small = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else rgb
        return [box / scale for box, _ in self.detector(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))]

    def __call__(self, rgb: np.ndarray, index: int, t: float) -> list[LiveFace]:
        """The faces of frame `index` (source time `t`, seconds)."""
        detected = set()
        if self.last_detection is None or index - self.last_detection >= self.detect_every or not self.tracks:
            self.last_detection = index
            boxes = self._detect(rgb)
            ids = self.tracker.assign(index, boxes)
            alive = {track.id for track in self.tracker.active}
            self.tracks = {i: track for i, track in self.tracks.items() if i in alive}
            for track_id, box in zip(ids, boxes):
                track = self.tracks.get(track_id)
                if track is None:
                    track = self.tracks[track_id] = _Track(box, OneEuroFilter(self.min_cutoff, self.beta))
                track.box = box
                detected.add(track_id)
        found = []
        for track_id, track in self.tracks.items():
            points = _landmarks(rgb, track.box)
            landmark_box, size = _points_box(points)
            if track_id in detected:  # how this face's detector box sits around its landmarks
                track.box_offsets = (track.box - landmark_box) / max(size, 1.0)
            smoothed = track.smoother(points, t, size)
            found.append(LiveFace(track_id, track.box.copy(), smoothed, align.crop_matrix(smoothed, self.crop_size)))
            # The next frame's box: the detector's box, carried along by the landmarks.
            track.box = landmark_box + track.box_offsets * size
        return found
