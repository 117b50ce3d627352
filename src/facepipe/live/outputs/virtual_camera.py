"""A virtual camera that video-call and streaming programs can choose like a webcam
(pyvirtualcam: v4l2loopback on Linux, OBS's virtual camera on Windows and macOS; set-up
in the README)."""

from __future__ import annotations

import numpy as np

from ...errors import FacepipeError
from . import Status


class VirtualCamera:
    def __init__(self, width: int, height: int, fps: float, device: str | None = None):
        import pyvirtualcam

        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device)
        except (RuntimeError, ValueError) as exc:
            raise FacepipeError(f"--virtual-camera: {str(exc).splitlines()[0]} (README, Live: the virtual camera's "
                                "set-up)") from None

    def send(self, index: int, frame: np.ndarray, status: Status) -> None:
        self.camera.send(frame)

    def close(self) -> None:
        self.camera.close()
