"""The model drawing faces: the shared encoder and one person's decoder over aligned
faces, in batches. convert renders clips with it, live draws camera frames."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from .models import FaceSwapModel


class Swapper:
    """Batched encoder + target decoder over aligned faces. `submit` only queues the
    work (JAX dispatches asynchronously), so the caller can go on decoding and
    compositing while the model runs; `collect` waits for the result."""

    def __init__(self, model: FaceSwapModel, side: str, batch_size: int):
        self.batch_size = batch_size
        graphdef, state = nnx.split(model)

        @jax.jit
        def swap(state, faces):
            m = nnx.merge(graphdef, state)
            return m(faces, side)

        self._swap, self._state = swap, state

    def submit(self, faces: np.ndarray) -> list:
        pending = []
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start:start + self.batch_size]
            padded = np.zeros((self.batch_size,) + chunk.shape[1:], np.float32)  # one shape: one compile
            padded[:len(chunk)] = chunk
            pending.append((self._swap(self._state, padded), len(chunk)))
        return pending

    @staticmethod
    def collect(pending: list) -> np.ndarray:
        return np.concatenate([np.asarray(out)[:n] for out, n in pending])

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        if not len(faces):
            return np.zeros((0,) + faces.shape[1:], np.float32)
        return self.collect(self.submit(faces))
