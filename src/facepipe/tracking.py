"""Following faces through a video: shot cuts, track ids, and landmark smoothing along
each track.

Tracking links each frame's faces to the tracks of the frames before (Hungarian
assignment on how far the box centre moved, relative to the box size, among boxes of
similar size); a track survives a few frames without a detection, and every track ends
at a shot cut, so one track is one person in one shot.

Smoothing fits a local quadratic to each landmark's path over a centred Gaussian window
(a Savitzky-Golay-style local regression): it removes the detector's frame-to-frame
jitter but follows steady and accelerating motion without lag, since a quadratic
reproduces such motion exactly, and it needs only a few frames of look-ahead, never the
whole video."""

from __future__ import annotations

import collections
import dataclasses
import functools
import math

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

# Bhattacharyya distance between colour histograms of consecutive frames above which
# the frames belong to different shots.
CUT_DISTANCE = 0.3
# Landmark smoothing: the narrow fit's half-width (frames), and the distance between the
# wide and narrow fits' centroids (a share of the eye-to-eye distance) above which the
# result moves from the wide fit to the narrow one (fully at twice this). Measured on
# still talking heads: under 0.006 in 90% of frames; at abrupt starts and stops of a
# 5-10 px/frame motion: 0.015-0.024.
NARROW_REACH = 3
CORNER = 0.006
# A face continues a track if its centre is within this many track-box sizes of the
# track's last centre and its size is within this factor of the track's.
MAX_SHIFT = 0.7
MAX_SCALE = 1.6


def frame_signature(bgr: np.ndarray) -> np.ndarray:
    """A small hue-saturation histogram of the frame, for shot-cut detection."""
    step = max(1, min(bgr.shape[:2]) // 36)
    hsv = cv2.cvtColor(np.ascontiguousarray(bgr[::step, ::step]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, None).flatten()


def is_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    if previous is None:
        return False
    return cv2.compareHist(previous, current, cv2.HISTCMP_BHATTACHARYYA) > CUT_DISTANCE


@dataclasses.dataclass
class _Track:
    id: int
    box: np.ndarray
    last_frame: int


class Tracker:
    """Assigns a stable track id to every face, frame after frame."""

    def __init__(self, max_gap: int):
        self.max_gap = max_gap
        self.active: list[_Track] = []
        self.next_id = 0

    def cut(self) -> None:
        self.active = []

    def assign(self, frame: int, boxes: list[np.ndarray]) -> list[int]:
        self.active = [t for t in self.active if frame - t.last_frame <= self.max_gap + 1]
        ids = [-1] * len(boxes)
        if self.active and boxes:
            cost = np.array([[self._cost(t.box, box) for box in boxes] for t in self.active])
            for row, col in zip(*linear_sum_assignment(cost)):
                if cost[row, col] < 1.0:
                    track = self.active[row]
                    track.box, track.last_frame = boxes[col], frame
                    ids[col] = track.id
        for col, box in enumerate(boxes):
            if ids[col] < 0:
                ids[col] = self.next_id
                self.active.append(_Track(self.next_id, box, frame))
                self.next_id += 1
        return ids

    @staticmethod
    def _cost(track_box: np.ndarray, box: np.ndarray) -> float:
        """Centre shift in track-box sizes over MAX_SHIFT (>= 1: no match)."""
        size = math.sqrt(max((track_box[2] - track_box[0]) * (track_box[3] - track_box[1]), 1.0))
        new_size = math.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0))
        if not 1 / MAX_SCALE <= new_size / size <= MAX_SCALE:
            return 1.0
        shift = np.hypot(*((box[:2] + box[2:]) / 2 - (track_box[:2] + track_box[2:]) / 2)) / size
        return float(shift / MAX_SHIFT)


@functools.lru_cache(maxsize=1024)
def smoothing_weights(offsets: tuple[int, ...], sigma: float) -> np.ndarray:
    """Weights h with sum(h * x[offsets]) = the value at offset 0 of the Gaussian-weighted
    least-squares quadratic through the samples x (a linear fit with fewer than 4 samples,
    the sample itself with fewer than 2). Cached: inside a track the offsets repeat."""
    offsets = np.asarray(offsets, np.float64)
    degree = 2 if len(offsets) >= 4 else 1 if len(offsets) >= 2 else 0
    design = np.vander(offsets, degree + 1, increasing=True)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    weighted = design * w[:, None]
    # Row 0 of (A^T W A)^-1 A^T W: the fitted value at offset 0.
    return np.linalg.solve(design.T @ weighted, weighted.T)[0]


class LandmarkSmoother:
    """Smooths each track's landmarks once `reach` frames after it are known.

    Holds only the last 2 * reach + 1 frames of each track, so memory stays flat however
    long the video."""

    def __init__(self, sigma_frames: float):
        self.sigma = sigma_frames
        self.reach = max(1, math.ceil(3 * sigma_frames))
        self.history: dict[int, collections.deque] = {}

    def add(self, track: int, frame: int, points: np.ndarray) -> None:
        self.history.setdefault(track, collections.deque()).append((frame, points))

    def smoothed(self, track: int, frame: int) -> np.ndarray:
        """The smoothed landmarks of `track` at `frame` (all frames up to frame + reach
        must have been added).

        Where the motion changes abruptly (a head that starts or stops turning), the wide
        fit would round the corner by a few pixels; there the result blends over to a
        narrow fit (sigma one frame), judged by how far the two disagree relative to the
        size of the face."""
        history = self.history[track]
        while history and history[0][0] < frame - self.reach:
            history.popleft()
        window = [(f - frame, p) for f, p in history if abs(f - frame) <= self.reach]
        points = np.stack([p for _, p in window])
        wide = np.tensordot(smoothing_weights(tuple(o for o, _ in window), self.sigma), points, axes=1)
        near = [(o, p) for o, p in window if abs(o) <= NARROW_REACH]
        narrow = np.tensordot(smoothing_weights(tuple(o for o, _ in near), 1.0), np.stack([p for _, p in near]), axes=1)
        eyes = np.linalg.norm(narrow[45] - narrow[36])  # outer eye corners: the face's scale
        # The centroids: the landmarks' own jitter mostly averages out there, motion does not.
        disagreement = np.linalg.norm(narrow.mean(0) - wide.mean(0)) / max(eyes, 1.0)
        blend = min(max(disagreement / CORNER - 1.0, 0.0), 1.0)
        return wide + blend * (narrow - wide)

    def forget(self, before: int) -> None:
        """Drop tracks last seen before frame `before`."""
        for track in [t for t, h in self.history.items() if not h or h[-1][0] < before]:
            del self.history[track]
