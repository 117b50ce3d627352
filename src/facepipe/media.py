"""Video and image I/O through ffmpeg (the static binary of imageio-ffmpeg, driven by
ffmpeg-python: arguments are lists, never a shell string)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import ffmpeg
import imageio_ffmpeg
import numpy as np

from . import tagging
from .errors import FacepipeError

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".flv"}


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool
    tags: dict

    @property
    def fps_text(self) -> str:
        return f"{self.fps.numerator}/{self.fps.denominator}"


def parse_fps(text: str) -> Fraction:
    """ffmpeg prints rates rounded to two decimals; recover NTSC rates such as 30000/1001."""
    value = float(text[:-1]) * 1000 if text.endswith("k") else float(text)
    if abs(value - round(value)) < 1e-6:
        return Fraction(round(value))
    ntsc = round(value * 1.001)
    if abs(value - ntsc / 1.001) < 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1000)


def frame_rate(text: str | None) -> float | None:
    """Frames per second from a stage's "30000/1001" rate text (None for photos)."""
    return float(Fraction(text)) if text else None


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, rate, duration, audio presence and container tags."""
    path = str(path)
    if not Path(path).is_file():
        raise FacepipeError(f"{path}: file not found")
    if Path(path).stat().st_size == 0:
        raise FacepipeError(f"{path}: empty file (0 bytes), as a failed copy or download leaves; copy or download "
                            "it again")
    proc = subprocess.run([FFMPEG, "-hide_banner", "-i", path], capture_output=True, text=True, errors="replace")
    text = proc.stderr
    # The first picture stream: any size (a 1x1 video too), not an audio file's cover art.
    video = re.search(r"^ *Stream #\d+:\d+.*?: Video: (?!.*\(attached pic\)).*?, (\d+)x(\d+)[, \[]", text,
                      re.MULTILINE)
    if not video:
        _refuse_unreadable(path, text)
    width, height = int(video.group(1)), int(video.group(2))
    stream_line = text[video.start(): text.find("\n", video.start())]
    average, nominal = (re.search(rf"([\d.]+k?) {unit}", stream_line) for unit in ("fps", "tbr"))
    fps = _reading_rate(average and parse_fps(average.group(1)), nominal and parse_fps(nominal.group(1)))
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", text)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio:", text) is not None
    tags = {}
    header = text.split("Duration:", 1)[0]
    if "Metadata:" in header:
        for line in header.split("Metadata:", 1)[1].splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip():
                tags[key.strip()] = value.strip()
    return VideoInfo(path, width, height, fps, duration, has_audio, tags)


def _reading_rate(average: Fraction | None, nominal: Fraction | None) -> Fraction:
    """The rate a video is read at (`read_frames`): its nominal rate (ffmpeg's tbr),
    unless that is well above its average (frames over duration), as a variable-rate
    video's is (a phone's stretches of 30, 24 and 15 fps average 21 fps; its tbr is its
    time base's 120): then its average. A constant-rate video whose average is off (a
    short last frame: 30.25 fps; a damaged stretch; a GIF's centisecond delays: 33.33)
    keeps its nominal rate."""
    if nominal and (not average or nominal <= average * Fraction(6, 5)):
        return nominal
    return average or nominal or Fraction(25)


def _refuse_unreadable(path: str, text: str) -> None:
    """Say why ffmpeg found no picture in `path` (its messages `text`), and what to do."""
    if re.search(r"^ *Stream #\d+:\d+.*?: Audio:", text, re.MULTILINE):
        art = " with cover art" if "attached pic" in text else ""
        raise FacepipeError(f"{path}: sound only, no picture (an audio file{art}); give a video file such as mp4")
    if "misdetection possible" in text:  # ffmpeg's best guess at a format was a wild one
        raise FacepipeError(f"{path}: not a readable video: ffmpeg recognises no format in it; give a video file such as "
                            "mp4")
    if "moov atom not found" in text:
        raise FacepipeError(f"{path}: incomplete video (its index, the moov atom, is missing), as a download or "
                            "recording cut short leaves it; download or copy it again, or record it to the end")
    lines = [line.split("] ", 1)[-1] for line in text.strip().splitlines() if "At least one output file" not in line]
    reason = lines[-1] if lines else "unreadable"
    raise FacepipeError(f"{path}: not a readable video ({reason}); give a video file such as mp4")


def _trimmed_input(path: str, start: float | None, duration: float | None):
    kwargs = {}
    if start:
        kwargs["ss"] = f"{start:.6f}"
    if duration is not None:
        kwargs["t"] = f"{duration:.6f}"
    return ffmpeg.input(path, **kwargs)


def read_frames(info: VideoInfo, start: float | None = None, duration: float | None = None,
                fps: float | Fraction | None = None, problems: list[str] | None = None) -> Iterator[np.ndarray]:
    """Decode RGB frames of `info.path`, optionally trimmed, on the constant-rate
    timeline of `fps` (default: the video's own rate, `info.fps`): frame i is the
    picture shown at time i / fps, so it stays in sync with the sound. A
    variable-rate video (a phone's) has its frames repeated or dropped to that rate;
    left to itself, ffmpeg would resample it to its time base's rate (120 fps for a
    phone's 30 fps video that dropped to 24 and 15 in places).

    Damaged data that ffmpeg can conceal does not stop decoding (the timeline, and so
    the sync with the audio, stays whole); its error messages go to `problems`."""
    stream = _trimmed_input(info.path, start, duration).video
    stream = stream.filter("fps", fps=str(info.fps if fps is None else fps))
    args = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24").compile(cmd=FFMPEG)
    # ffmpeg's messages go to a file: a pipe nobody reads while frames flow would fill
    # up on a badly damaged video and stall both processes.
    messages = tempfile.TemporaryFile()
    proc = subprocess.Popen(args[:1] + ["-nostdin", "-loglevel", "error"] + args[1:],
                            stdout=subprocess.PIPE, stderr=messages)
    complete = False
    try:
        while True:
            # Each frame is read straight into its own writable array: no copies.
            frame = np.empty((info.height, info.width, 3), np.uint8)
            if proc.stdout.readinto(memoryview(frame).cast("B")) < frame.nbytes:
                complete = True
                break
            yield frame
    finally:
        if not complete:  # the caller stopped early: no error to report
            proc.kill()
        proc.stdout.close()
        returncode = proc.wait()
        err = _read_messages(messages)
        if returncode != 0 and complete and err:
            raise FacepipeError(f"{info.path}: ffmpeg could not decode it ({err.splitlines()[-1]})")
        if problems is not None and err:
            problems += err.splitlines()


def _read_messages(messages) -> str:
    """What ffmpeg wrote to its messages file, which is then closed (and so deleted)."""
    messages.seek(0)
    text = messages.read().decode(errors="replace").strip()
    messages.close()
    return text


CODECS = {  # convert.codec: encoder and the options that make its output play everywhere
    "h264": {"vcodec": "libx264", "pix_fmt": "yuv420p"},
    "h265": {"vcodec": "libx265", "pix_fmt": "yuv420p", "tag:v": "hvc1", "x265-params": "log-level=error"},
}


class VideoWriter:
    """Encode RGB frames to a video (mp4 with `codec`, or an animated GIF) at a fixed
    rate, muxing audio from a source range.

    The file is written under a temporary name and renamed by `close()`, so an
    interrupted encode never leaves a playable-looking partial video."""

    def __init__(self, target: str | Path, width: int, height: int, fps: Fraction,
                 audio_from: VideoInfo | None = None, audio_start: float | None = None,
                 audio_duration: float | None = None, codec: str = "h264", crf: int = 18, preset: str = "medium",
                 tags: dict | None = None, keyframes: list[int] = ()):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.target.with_name(f".{self.target.stem}.partial{self.target.suffix}")
        self.gif = self.target.suffix.lower() == ".gif"
        self.tags = tags or {}
        # Frames go to x264/x265 already as yuv420p (what they encode; cv2 converts ~6x faster
        # than ffmpeg's swscale, to within 0.02 levels, and the pipe carries half the bytes).
        # GIFs and odd sizes, which yuv420p cannot hold, go as RGB.
        self.yuv = not self.gif and width % 2 == 0 and height % 2 == 0
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p" if self.yuv else "rgb24",
                             s=f"{width}x{height}", framerate=f"{fps.numerator}/{fps.denominator}")
        if self.gif:
            # A palette per frame: nothing is buffered, so memory stays flat however long the clip.
            split = video.filter_multi_output("split")
            palette = split[1].filter("palettegen", stats_mode="single")
            streams = [ffmpeg.filter([split[0], palette], "paletteuse", new=1)]
            out_kwargs = {"format": "gif"}
        else:
            streams = [video]
            out_kwargs = dict(CODECS[codec], crf=crf, preset=preset, movflags="use_metadata_tags")
            if keyframes:  # half a frame early, so rounding cannot push one to the next frame
                out_kwargs["force_key_frames"] = ",".join(f"{float((i - 0.5) / fps):.6f}" for i in keyframes if i > 0)
            if audio_from is not None and audio_from.has_audio:
                streams.append(_trimmed_input(audio_from.path, audio_start, audio_duration).audio)
                out_kwargs.update(acodec="aac", audio_bitrate="160k")
        args = ffmpeg.output(*streams, str(self.tmp), **out_kwargs).overwrite_output().compile(cmd=FFMPEG)
        meta = []
        for key, value in ({} if self.gif else self.tags).items():
            meta += ["-metadata", f"{key}={value}"]
        at = args.index(str(self.tmp))  # options must precede the output name
        args = args[:1] + ["-nostdin", "-loglevel", "error"] + args[1:at] + meta + args[at:]
        self.messages = tempfile.TemporaryFile()  # not a pipe: see read_frames
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=self.messages)
        self.shape = (height, width, 3)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        assert frame.shape == self.shape, (frame.shape, self.shape)
        data = np.ascontiguousarray(frame, np.uint8)
        if self.yuv:
            data = cv2.cvtColor(data, cv2.COLOR_RGB2YUV_I420)
        try:
            self.proc.stdin.write(memoryview(data).cast("B"))
        except BrokenPipeError:  # the encoder stopped: say why
            self.proc.wait()
            err = _read_messages(self.messages)
            raise FacepipeError(f"{self.target}: ffmpeg stopped encoding "
                                f"({err.splitlines()[-1] if err else 'no message'})") from None
        self.frames += 1

    def close(self) -> None:
        self.proc.stdin.close()
        returncode = self.proc.wait()
        err = _read_messages(self.messages)
        if returncode != 0:
            self.tmp.unlink(missing_ok=True)
            raise FacepipeError(f"{self.target}: ffmpeg failed to encode ({err.splitlines()[-1] if err else 'no message'})")
        if self.gif and self.tags:  # ffmpeg writes no metadata into GIFs: add a comment block
            self.tmp.write_bytes(tagging.gif_with_comment(self.tmp.read_bytes(), self.tags["comment"]))
        self.tmp.replace(self.target)

    def abort(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.messages.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_image(path: str | Path) -> np.ndarray:
    """Read a photo as RGB, honouring EXIF orientation."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FacepipeError(f"{path}: not a readable image; give a JPEG or PNG photo")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray, quality: int = 95, comment: str | None = None) -> None:
    """Write a photo in the format its suffix names. `comment` goes into a JPEG's COM
    segment, a PNG's tEXt chunk or a WebP's XMP; other formats cannot take it (see
    `tagging.COMMENT_SUFFIXES`)."""
    suffix = Path(path).suffix.lower()
    if comment and suffix not in tagging.COMMENT_SUFFIXES:
        raise FacepipeError(f"{path}: a {suffix} file cannot carry a comment; write "
                            f"{', '.join(tagging.COMMENT_SUFFIXES)}")
    quality_flag = {".jpg": cv2.IMWRITE_JPEG_QUALITY, ".jpeg": cv2.IMWRITE_JPEG_QUALITY,
                    ".webp": cv2.IMWRITE_WEBP_QUALITY}.get(suffix)
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [quality_flag, quality] if quality_flag is not None else [])
    if not ok:
        raise FacepipeError(f"{path}: could not encode image")
    data = buf.tobytes()
    if comment:
        data = tagging.image_with_comment(data, suffix, comment, rgb.shape[1], rgb.shape[0])
    Path(path).write_bytes(data)


def audio_duration(path: str | Path) -> float | None:
    """Seconds of decoded audio in `path` (None when it has no audio stream)."""
    if not probe(path).has_audio:
        return None
    args = [FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
            "-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:"]
    pcm = subprocess.run(args, capture_output=True, check=True).stdout
    return len(pcm) / 2 / 48000
