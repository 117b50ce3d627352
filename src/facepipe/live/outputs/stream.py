"""A stream or a file, encoded by ffmpeg (H.264 at the zero-latency settings, AAC): a
network address (udp://, srt:// as MPEG-TS; rtmp:// as FLV, as streaming services
take it; rtsp://) or a file (a container by its suffix, written under a temporary name
and renamed when it ends, as convert's videos are).

Frames go out at the source's constant rate: a frame that was dropped is filled by the
one before it, so the picture keeps its timeline. The input's audio, when it has some,
goes along on a second pipe, placed in time by the frame it starts with: in sync, and
out no earlier than its picture."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ...errors import FacepipeError
from ...media import FFMPEG
from ..sources import AUDIO_BYTES_PER_SECOND, AUDIO_CHANNELS, AUDIO_RATE
from . import Status

NETWORK_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv",
                   "rtmps": "flv", "rtsp": "rtsp"}
AUDIO_FRAME = 4  # bytes per sample frame: 2 channels of s16le
AUDIO_NEED = 0.1  # seconds of audio ffmpeg needs ahead of the picture to go on (AAC holds back 43 ms)
# Frames waiting to be encoded: ffmpeg takes the next frame only once the audio up to
# it has come, which a live source gives at its own pace.
QUEUE = 15


def audio_bytes(seconds: float) -> int:
    """Bytes of the PCM pipe's audio in `seconds`, whole sample frames."""
    return int(seconds * AUDIO_BYTES_PER_SECOND) // AUDIO_FRAME * AUDIO_FRAME


class Stream:
    def __init__(self, target: str, width: int, height: int, fps: Fraction, *, audio: bool, tags: dict,
                 audio_offset: float = 0.0):
        scheme = target.split("://", 1)[0].lower() if "://" in target else None
        if scheme is not None and scheme not in NETWORK_FORMATS:
            raise FacepipeError(f"--stream {target}: unknown scheme {scheme}://; give {', '.join(NETWORK_FORMATS)} "
                                "or a file name")
        self.target, self.fps, self.audio_offset = target, fps, audio_offset
        self.file = None if scheme else Path(target)
        if self.file is not None:
            if not self.file.suffix:
                raise FacepipeError(f"--stream {target}: a file needs a suffix (.mp4, .mkv, .ts) for its format")
            self.file.parent.mkdir(parents=True, exist_ok=True)
            out = str(self.file.with_name(f".{self.file.stem}.partial{self.file.suffix}"))
            # MP4 keeps only its own keys unless told to keep ours (the synthetic-media tags).
            out_format = ["-movflags", "use_metadata_tags"] if self.file.suffix.lower() in (".mp4", ".mov", ".m4v") else []
        else:
            out, out_format = target, ["-f", NETWORK_FORMATS[scheme]]
        self.yuv = width % 2 == 0 and height % 2 == 0  # cv2 converts faster than ffmpeg
        rate = f"{fps.numerator}/{fps.denominator}"
        # Both inputs are raw with their format given: nothing to probe. (Probing reads
        # seconds of each input before the first frame is encoded, and the audio only
        # comes as the picture goes on.)
        raw = ["-probesize", "32", "-analyzeduration", "0"]
        command = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", *raw, "-f", "rawvideo",
                   "-pix_fmt", "yuv420p" if self.yuv else "rgb24", "-s", f"{width}x{height}", "-framerate", rate,
                   "-i", "pipe:0"]
        pass_fds = ()
        self.audio = audio
        if audio:
            audio_read, audio_write = os.pipe()
            command += [*raw, "-f", "s16le", "-ar", str(AUDIO_RATE), "-ac", str(AUDIO_CHANNELS), "-i", f"pipe:{audio_read}",
                        "-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
            pass_fds = (audio_read,)
        command += ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                    "-pix_fmt", "yuv420p", "-g", str(max(1, round(2 * fps)))]
        for key, value in tags.items():
            command += ["-metadata", f"{key}={value}"]
        command += [*out_format, "-y", out]
        self.partial = out
        self.messages = tempfile.TemporaryFile()  # not a pipe nobody reads: it could fill and stall ffmpeg
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self.messages, pass_fds=pass_fds)
        if audio:
            os.close(audio_read)
            self.audio_pipe = os.fdopen(audio_write, "wb", buffering=0)
        self.error: str | None = None
        self.frames: queue.Queue = queue.Queue(maxsize=QUEUE)
        self._audio_data = bytearray()  # the source's audio not yet written, from _audio_start bytes
        self._audio_start = 0
        self._audio_done = False  # the source's audio has ended
        self._audio_lock = threading.Condition()
        self._first: int | None = None  # source index of the first frame: the stream's time 0
        self._released = 0  # source audio bytes the picture has reached
        self._ended = False
        self._threads = [threading.Thread(target=self._write_video, name="live-stream-video", daemon=True)]
        if audio:
            self._threads.append(threading.Thread(target=self._write_audio, name="live-stream-audio", daemon=True))
        for thread in self._threads:
            thread.start()

    def hear(self, position: int, chunk: bytes) -> None:
        """Audio from the source (a listener of sources.Source), from `position` bytes."""
        with self._audio_lock:
            if not chunk:
                self._audio_done = True
                self._audio_lock.notify_all()
                return
            if not self._audio_data:
                self._audio_start = position
            gap = position - (self._audio_start + len(self._audio_data))
            self._audio_data += bytes(max(0, gap)) + chunk[max(0, -gap):]
            self._audio_lock.notify_all()

    def send(self, index: int, frame: np.ndarray, status: Status) -> None:
        if self.error:
            raise FacepipeError(f"--stream {self.target}: ffmpeg stopped ({self.error})")
        try:
            self.frames.put_nowait((index, frame))
        except queue.Full:  # the encoder is behind: the frame before fills this one's place
            pass

    def _write_video(self) -> None:
        written, previous = 0, None
        try:
            while (item := self.frames.get()) is not None:
                index, frame = item
                if self._first is None:
                    with self._audio_lock:
                        self._first = index
                data = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420) if self.yuv else np.ascontiguousarray(frame)
                while previous is not None and written < index - self._first:  # dropped frames: the one before
                    self.proc.stdin.write(previous)
                    written += 1
                self.proc.stdin.write(memoryview(data).cast("B"))
                written += 1
                previous = memoryview(data).cast("B")
                with self._audio_lock:
                    self._released = self._audio_position(self._first + written)
                    self._audio_lock.notify_all()
        except (BrokenPipeError, ValueError):
            self.error = self._message()

    def _audio_position(self, frame: int) -> int:
        """Bytes of the source's audio up to the start of source frame `frame`."""
        return audio_bytes(max(0.0, frame / self.fps + self.audio_offset))

    def _write_audio(self) -> None:
        """The source's audio from the first frame's time on, as it comes: its place in
        time (samples from that frame) keeps it in sync, and ffmpeg muxes sound and
        picture in time order, so the sound goes out as late as its picture. ffmpeg
        reads whichever input is behind (and its AAC encoder holds back 43 ms), so
        audio the source has not given once the picture has passed it (a gap, a track
        shorter than the picture) goes as silence, after a wait for it: else both
        would stall."""
        need = audio_bytes(AUDIO_NEED)
        written = None  # source position written up to
        try:
            if self.audio_offset < 0:  # the sound starts after the picture
                self.audio_pipe.write(bytes(audio_bytes(-self.audio_offset)))
            while True:
                with self._audio_lock:
                    while not self._ended and (self._first is None or written is not None and written >= max(
                            self._have(), self._released + need) and not self._audio_done):
                        self._audio_lock.wait()
                    if self._first is None:  # ended before any picture
                        break
                    if written is None:
                        written = self._audio_position(self._first)
                    if self._have() < self._released + need and not (self._ended or self._audio_done):
                        self._audio_lock.wait(timeout=0.5)  # needed but not here: it may still come
                    end = self._have() if self._audio_done else max(self._have(), self._released + need)
                    if self._ended:
                        end = min(end, self._released)  # the picture's end is the stream's end
                    end = min(end, written + need // 2)  # small writes: one in flight ends near the picture's end
                    chunk = self._take(written, end)
                    written = max(written, end)
                    last = self._ended or self._audio_done and written >= self._have()
                if chunk:
                    self.audio_pipe.write(chunk)
                if last:  # closing the pipe tells ffmpeg the sound has ended
                    break
        except (BrokenPipeError, ValueError):
            self.error = self._message()
        finally:
            self.audio_pipe.close()

    def _have(self) -> int:
        return self._audio_start + len(self._audio_data)

    def _take(self, start: int, end: int) -> bytes:
        """The source's audio from `start` to `end` (bytes from its start), silence
        where it has none, and forget what comes before `end`."""
        if end <= start:
            return b""
        offset = start - self._audio_start
        chunk = bytes(max(0, min(-offset, end - start)))  # before the first audio it gave
        chunk += bytes(self._audio_data[max(0, offset):max(0, min(end, self._have()) - self._audio_start)])
        chunk += bytes(end - start - len(chunk))
        del self._audio_data[:max(0, end - self._audio_start)]
        self._audio_start = max(self._audio_start, end)
        return chunk

    def _message(self) -> str:
        if self.proc.poll() is None:
            return "the pipe closed"
        self.messages.seek(0)
        text = self.messages.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else f"exit status {self.proc.returncode}"

    def close(self) -> None:
        self.frames.put(None)
        self._threads[0].join()
        # The picture's end first: ffmpeg reads no more sound while the picture is behind it.
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        with self._audio_lock:
            self._ended = True
            self._audio_lock.notify_all()
        for thread in self._threads[1:]:
            thread.join()
        code = self.proc.wait()
        if code != 0 or self.error:
            if self.file is not None:
                Path(self.partial).unlink(missing_ok=True)
            raise FacepipeError(f"--stream {self.target}: ffmpeg failed ({self.error or self._message()})")
        if self.file is not None:
            os.replace(self.partial, self.file)
