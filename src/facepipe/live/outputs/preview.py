"""A preview page in the browser (`--serve PORT`): the picture as an MJPEG stream in an
HTML page with the frame rate, latency and dropped frames, and a switch that turns the
swap on and off. Bound to 127.0.0.1 unless told otherwise: the page controls the swap,
and the picture is someone's face.

Each frame is JPEG-encoded once, and only while someone watches; a watcher that falls
behind gets the newest frame, never a backlog."""

from __future__ import annotations

import errno
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from ...errors import FacepipeError
from . import Control, Status

BOUNDARY = "facepipe-frame"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facepipe live</title>
<style>
body { font-family: sans-serif; background: #111; color: #eee; margin: 1em; }
#picture { max-width: 100%; display: block; margin-top: .5em; }
#status { font-variant-numeric: tabular-nums; }
label { margin-left: 1.5em; }
</style></head>
<body>
<span id="status">starting</span>
<label><input type="checkbox" id="swap" checked> swap faces</label>
<img id="picture" src="/stream.mjpg" alt="live picture">
<script>
const status = document.getElementById("status"), swap = document.getElementById("swap");
async function poll() {
  try {
    const s = await (await fetch("/status")).json();
    status.textContent = `${s.fps.toFixed(1)} fps, latency ${s.latency_ms.toFixed(0)} ms, dropped ${s.dropped}`;
    if (document.activeElement !== swap) swap.checked = s.swap;
  } catch (e) { status.textContent = "stopped"; }
}
swap.addEventListener("change", () => fetch("/swap", {method: "POST", body: swap.checked ? "on" : "off"}));
setInterval(poll, 500); poll();
</script></body></html>
"""


class Preview:
    def __init__(self, port: int, host: str, control: Control, quality: int = 80):
        self.control, self.quality = control, quality
        self._lock = threading.Condition()
        self._frame: np.ndarray | None = None
        self._version = 0
        self._jpeg: tuple[int, bytes] = (-1, b"")
        self.status = Status(0.0, 0.0, 0, control.swap)
        self.closed = False
        try:
            self.server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise FacepipeError(f"--serve {port}: port {port} on {host} is in use; choose another port") from None
            raise FacepipeError(f"--serve {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, name="live-preview", daemon=True).start()

    def send(self, index: int, frame: np.ndarray, status: Status) -> None:
        with self._lock:
            self._frame, self.status = frame, status
            self._version += 1
            self._lock.notify_all()

    def jpeg(self, seen: int) -> tuple[int, bytes] | None:
        """The newest frame after version `seen`, as JPEG (encoded once for every watcher)."""
        with self._lock:
            while self._version == seen and not self.closed:
                self._lock.wait(timeout=1.0)
            if self.closed:
                return None
            if self._jpeg[0] != self._version:
                bgr = cv2.cvtColor(self._frame, cv2.COLOR_RGB2BGR)
                self._jpeg = (self._version, cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])[1]
                              .tobytes())
            return self._jpeg

    def _handler(self):
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # the console shows the live status instead
                pass

            def _reply(self, body: bytes, content_type: str) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/":
                    self._reply(PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/status":
                    status = preview.status
                    self._reply(json.dumps({"fps": status.fps, "latency_ms": status.latency_ms,
                                            "dropped": status.dropped, "swap": preview.control.swap}).encode(),
                                "application/json")
                elif self.path == "/stream.mjpg":
                    self._stream()
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)

            def _stream(self):
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = 0
                try:
                    while (item := preview.jpeg(seen)) is not None:
                        seen, data = item
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                if self.path != "/swap":
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode().strip()
                if body not in ("on", "off"):
                    self.send_error(HTTPStatus.BAD_REQUEST, "send on or off")
                    return
                preview.control.swap = body == "on"
                self._reply(b"", "text/plain")

        return Handler

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
