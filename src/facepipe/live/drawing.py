"""The model's side of live swapping, on its own thread: it takes the newest faces the
frame loop offers (older offers are replaced, never queued), checks new faces' identity
when only one person is to be swapped, and draws them with the target's decoder.

The frame loop composites every frame with the newest face drawn for each track, placed
by that frame's own landmarks. So the picture keeps the source's frame rate and the
face follows the head on every frame even where the model cannot draw a face per frame
(a 64 px original model takes ~40 ms a face on one CPU core); what lags is only the
expression, by the model's time (`face_age` in the stats)."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np

from .. import faces
from ..input_pipeline import center_faces

MODEL_NICENESS = 5


class Drawer:
    def __init__(self, swappers: dict, *, resolution: int, coverage: float, person_embedding: np.ndarray | None,
                 max_distance: float | None, identity_interval: float):
        self.swappers = swappers  # faces in one call -> a Swapper compiled for that many
        self.batch = max(swappers)
        self.resolution, self.coverage = resolution, coverage
        self.person_embedding, self.max_distance = person_embedding, max_distance
        self.identity_interval = identity_interval
        self.embedder = faces.Embedder() if person_embedding is not None else None
        self._lock = threading.Condition()
        self._offer: list | None = None
        self._stopped = False
        self.drawn: dict[int, tuple[np.ndarray, float]] = {}  # track -> (face drawn, capture time of its frame)
        self.is_source: dict[int, bool] = {}  # track -> is the person to replace (identity checked)
        self._checked: dict[int, float] = {}  # track -> when its identity was last checked
        self.faces_drawn = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-model", daemon=True)
        self._thread.start()

    def offer(self, jobs: list[tuple[int, np.ndarray, np.ndarray]], captured: float) -> None:
        """The faces of the newest frame: (track, aligned crop, landmarks in the crop)."""
        with self._lock:
            self._offer = (jobs, captured)
            self._lock.notify()

    def wanted(self, track: int) -> bool:
        return self.person_embedding is None or self.is_source.get(track, False)

    def latest(self, track: int) -> tuple[np.ndarray, float] | None:
        return self.drawn.get(track) if self.wanted(track) else None

    def forget(self, alive: set[int]) -> None:
        """Drop what is kept for tracks that ended (or all, when the swap is switched off)."""
        for kept in (self.drawn, self.is_source, self._checked):
            for track in [t for t in list(kept) if t not in alive]:
                kept.pop(track, None)

    def _run(self) -> None:
        # The frame loop and the decoder come first: they keep the picture's rate, the
        # model gets the rest (Linux sets a thread's priority through its own id).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MODEL_NICENESS)
        try:
            while True:
                with self._lock:
                    while self._offer is None and not self._stopped:
                        self._lock.wait()
                    if self._stopped:
                        return
                    (jobs, captured), self._offer = self._offer, None
                self._check_identities(jobs)
                jobs = [job for job in jobs if self.wanted(job[0])]
                if not jobs:
                    continue
                for start in range(0, len(jobs), self.batch):
                    batch = jobs[start:start + self.batch]
                    crops = center_faces(np.stack([crop for _, crop, _ in batch]), self.resolution, self.coverage)
                    for (track, _, _), face in zip(batch, self.swappers[len(batch)](crops)):
                        self.drawn[track] = (face, captured)
                    self.faces_drawn += len(batch)
        except BaseException as exc:  # the frame loop reports it
            self.error = exc

    def _check_identities(self, jobs: list) -> None:
        """Whether each face is the person to replace: its dlib embedding against the
        person's mean (their dataset's), when new and then every `identity_interval` s."""
        if self.embedder is None:
            return
        now = time.monotonic()
        for track, crop, points in jobs:
            if now - self._checked.get(track, -np.inf) >= self.identity_interval:
                embedding = self.embedder(crop, points)
                self.is_source[track] = float(np.linalg.norm(embedding - self.person_embedding)) <= self.max_distance
                self._checked[track] = now

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join()
