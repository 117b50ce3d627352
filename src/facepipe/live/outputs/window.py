"""A window on the screen (OpenCV's): the picture with its status line; keys: space or
s switches the swap on and off, q or Esc quits."""

from __future__ import annotations

import os

import cv2
import numpy as np

from ...errors import FacepipeError
from ..marks import draw_status
from . import Control, Status

TITLE = "facepipe live"


class Window:
    def __init__(self, control: Control):
        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise FacepipeError("--window needs a display (DISPLAY is not set); use --serve PORT to watch in a "
                                "browser, or --stream")
        self.control = control
        try:
            cv2.namedWindow(TITLE, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise FacepipeError(f"--window: OpenCV cannot open a window ({str(exc).strip().splitlines()[-1]}); "
                                "use --serve PORT to watch in a browser") from None

    def send(self, index: int, frame: np.ndarray, status: Status) -> None:
        shown = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        draw_status(shown, status.line())
        cv2.imshow(TITLE, shown)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord(" "), ord("s")):
            self.control.swap = not self.control.swap
        elif key in (ord("q"), 27):
            self.control.quit = True

    def close(self) -> None:
        cv2.destroyWindow(TITLE)
