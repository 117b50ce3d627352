"""Live inputs: a camera, a network stream or a video file, decoded by ffmpeg into RGB
frames (and, when there is audio, 48 kHz stereo PCM on a second pipe, for the stream
outputs). A camera or a stream runs at its own pace: frames the swapper did not take
within a frame or two are dropped, never queued, so latency stays bounded. A file is
played at its own rate (`realtime`, like a camera) or as fast as the swapper goes
(every frame)."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import FacepipeError
from ..media import FFMPEG, parse_fps

AUDIO_RATE = 48000
AUDIO_CHANNELS = 2
AUDIO_BYTES_PER_SECOND = AUDIO_RATE * AUDIO_CHANNELS * 2  # s16le
AUDIO_BACKLOG = 10  # seconds of audio kept for outputs that start listening later


@dataclass
class Frame:
    index: int  # frame number of the source (gaps: dropped frames)
    captured: float  # time.monotonic() when it came out of the decoder
    rgb: np.ndarray


def input_args(location: str, loop: bool) -> tuple[list[str], str, bool]:
    """ffmpeg's input options, the input name and whether it is a file, for a source as
    the user gave it: a camera (/dev/videoN, or N), a URL, or a video file; a missing
    camera or file is one line before anything starts."""
    if re.fullmatch(r"\d+", location):
        location = f"/dev/video{location}"
    if location.startswith("/dev/video"):
        if not Path(location).exists():
            cameras = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise FacepipeError(f"no camera at {location} (cameras here: {', '.join(cameras) or 'none'}); give "
                                "another /dev/videoN, a stream URL or a video file")
        return ["-f", "v4l2"], location, False
    if "://" in location:
        # ffmpeg's own I/O timeout (microseconds), so a stream that stops answering ends the run.
        return ["-rw_timeout", "5000000"], location, False
    if not Path(location).is_file():
        raise FacepipeError(f"{location}: no such video file, camera (/dev/videoN) or URL (scheme://...)")
    return ["-stream_loop", "-1"] if loop else [], location, True


class Source:
    """One ffmpeg process decoding `location`. `next()` gives the newest frame (drop
    mode) or the next one (every frame), None at the end."""

    def __init__(self, location: str, *, realtime: bool = False, loop: bool = False, timeout: float = 5.0):
        args, self.location, is_file = input_args(location, loop)
        self.drop = realtime or not is_file
        # A file played as a camera: frame i comes at i / fps after the first was taken,
        # paced here (ffmpeg's -re gave some files' first dozen frames at once).
        self.paced = realtime and is_file
        self._taken = threading.Event()
        audio_read, audio_write = os.pipe()
        command = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *args, "-i", self.location,
                   # The frames as decoded: at a constant rate ffmpeg would make up copies
                   # (all at once) where the picture starts after the sound or has gaps.
                   "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
                   "-map", "0:a:0?", "-f", "s16le", "-ac", str(AUDIO_CHANNELS), "-ar", str(AUDIO_RATE),
                   f"pipe:{audio_write}"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(audio_write,))
        os.close(audio_write)
        self.audio_pipe = os.fdopen(audio_read, "rb", buffering=0)
        self.messages: collections.deque[str] = collections.deque(maxlen=20)
        self.audio_offset = 0.0  # seconds of audio before the first frame
        self._header = threading.Event()
        self._header_text: list[str] = []
        self._listeners: list = []
        self._audio_lock = threading.Lock()
        self._audio_backlog: collections.deque[tuple[int, bytes]] = collections.deque()
        threading.Thread(target=self._read_messages, name="live-ffmpeg-messages", daemon=True).start()
        # Audio is read from the start: ffmpeg may decode it before the first picture
        # (which can start later), and would wait on a full pipe.
        threading.Thread(target=self._read_audio, name="live-audio", daemon=True).start()
        if not self._header.wait(timeout):
            self.close()
            raise FacepipeError(f"{location}: no picture within {timeout:g} s; check the address and that the "
                                "stream is running")
        self.width, self.height, self.fps, self.has_audio = self._parse_header(location)
        self.frame_bytes = self.width * self.height * 3
        # A frame may wait this long for the swapper: a decoder that was held up on a
        # busy CPU gives two frames at once, and both can still go out in time.
        self.max_wait = 2.5 / float(self.fps)
        self._lock = threading.Condition()
        self._queue: collections.deque[Frame | None] = collections.deque()
        self._ended = False
        self.read = 0  # frames decoded
        # Reading starts now: a live source's frames go on arriving (and are dropped)
        # while the rest starts, instead of piling up to be played in a burst after.
        threading.Thread(target=self._read_frames, name="live-capture", daemon=True).start()

    def _read_messages(self) -> None:
        """ffmpeg's messages: the header (what it opened and will write) first, then
        anything it says, kept for the error message should it stop."""
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.messages.append(line)
            if not self._header.is_set():
                self._header_text.append(line)
                # The decoded picture's line (a camera's own input may be rawvideo too).
                if "Output #0" in "\n".join(self._header_text) and re.search(r"Stream #0:\d+.*: Video: rawvideo", line):
                    self._header.set()
        self._header.set()  # ended before the header: _parse_header reports why

    def _parse_header(self, location: str) -> tuple[int, int, Fraction, bool]:
        text = "\n".join(self._header_text)
        output = text.split("Output #0", 1)[1] if "Output #0" in text else ""
        video = re.search(r"Video: rawvideo.*?, (\d+)x(\d+)[, \[]", output)
        if not video:
            self.close()
            reason = self._last_error() or "no video stream"
            raise FacepipeError(f"{location}: ffmpeg could not read it ({reason}); check the camera, address or file")
        line = output[video.start(): output.find("\n", video.start())]
        rate = re.search(r"([\d.]+k?) fps", line) or re.search(r"([\d.]+k?) tbr", line)
        has_audio = "-> pcm_s16le" in text  # "Stream mapping:": the input's audio goes to the PCM pipe
        # Where the picture starts in the audio (the two can start apart: the PCM pipe
        # begins with the first sound, the picture with the first frame).
        source = text.split("Output #", 1)[0]
        starts = {kind: re.search(rf"Stream #0:\d+.*: {kind}: .*, start (-?[\d.]+)", source) for kind in ("Video", "Audio")}
        if has_audio and starts["Video"] and starts["Audio"]:
            self.audio_offset = float(starts["Video"].group(1)) - float(starts["Audio"].group(1))
        return int(video.group(1)), int(video.group(2)), parse_fps(rate.group(1)) if rate else Fraction(30), has_audio

    def _read_frames(self) -> None:
        start = None
        while True:
            frame = np.empty((self.height, self.width, 3), np.uint8)
            if self.proc.stdout.readinto(memoryview(frame).cast("B")) < self.frame_bytes:
                break
            if self.paced:
                if start is None:
                    self._taken.wait()
                    start = time.monotonic()
                time.sleep(max(0.0, start + self.read / float(self.fps) - time.monotonic()))
            item = Frame(self.read, time.monotonic(), frame)
            self.read += 1
            with self._lock:
                while not self.drop and len(self._queue) >= 2 and not self._ended:  # every frame: wait for it
                    self._lock.wait()
                self._queue.append(item)
                self._forget_old()
                self._lock.notify_all()
        with self._lock:
            self._ended = True
            self._lock.notify_all()

    def _read_audio(self) -> None:
        """Audio goes to the outputs that carry it; read even when none does, or ffmpeg
        would block on a full pipe."""
        position = 0  # bytes from the source's start
        while chunk := self.audio_pipe.read(AUDIO_BYTES_PER_SECOND // 25):
            with self._audio_lock:
                self._audio_backlog.append((position, chunk))
                while self._audio_backlog[0][0] < position - AUDIO_BACKLOG * AUDIO_BYTES_PER_SECOND:
                    self._audio_backlog.popleft()
                for listener in self._listeners:
                    listener(position, chunk)
            position += len(chunk)
        with self._audio_lock:
            self._audio_backlog.append((position, b""))
            for listener in self._listeners:
                listener(position, b"")  # the end of the audio

    def listen(self, listener) -> None:
        """Have `listener(position, chunk)` hear the audio (position: bytes from the
        source's start; an empty chunk: the audio ended), from the last few seconds
        already decoded on: ffmpeg may decode the audio ahead of the picture."""
        with self._audio_lock:
            for position, chunk in self._audio_backlog:
                listener(position, chunk)
            self._listeners.append(listener)

    def _forget_old(self) -> None:
        """Live: drop frames that waited longer than `max_wait`, but for the newest."""
        if self.drop:
            now = time.monotonic()
            while len(self._queue) > 1 and now - self._queue[0].captured > self.max_wait:
                self._queue.popleft()

    def next(self) -> Frame | None:
        self._taken.set()
        with self._lock:
            while True:
                self._forget_old()
                if self._queue:
                    item = self._queue.popleft()
                    self._lock.notify_all()
                    return item
                if self._ended:
                    return None
                self._lock.wait()

    def error(self) -> str | None:
        """Why ffmpeg stopped, if it failed (after `next()` returned None)."""
        code = self.proc.wait()
        if code == 0:
            return None
        return self._last_error() or f"ffmpeg exited with {code}"

    def _last_error(self) -> str | None:
        """ffmpeg's last message that is not part of its stream listing."""
        return next((m for m in reversed(self.messages) if m and not m.startswith(" ")), None)

    def close(self) -> None:
        self._taken.set()  # a reader waiting for the first frame to be taken ends
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.audio_pipe.close()
