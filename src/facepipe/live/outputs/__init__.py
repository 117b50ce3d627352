"""Where live frames go, one module each, behind one shape: an output is made before
the first frame (so a bad setting is one line before anything starts), is `send` each
finished frame (RGB, with the frame's source index and the status) and is `close`d at
the end. `send` must not wait on anything slow: a frame it cannot take now is dropped
there, so a slow output never holds the others back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Status:
    fps: float  # frames delivered per second, lately
    latency_ms: float  # capture to output, median of the last frames
    dropped: int  # frames of the source not delivered
    swap: bool  # whether faces are being swapped

    def line(self) -> str:
        return (f"{self.fps:.1f} fps  latency {self.latency_ms:.0f} ms  dropped {self.dropped}  "
                f"swap {'on' if self.swap else 'off'}")


class Control:
    """What a user can change while it runs (the window's keys, the preview page's switch)."""

    def __init__(self, swap: bool = True):
        self.swap = swap
        self.quit = False
