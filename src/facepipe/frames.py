"""frames: split a clip into still frames (ffmpeg) at a chosen rate and range.

Training clips are sampled at `frames.fps` from `frames.start` for `frames.duration`;
a swap's clip keeps the source rate and the swap's own start and duration, so that
frame i of the clip is frame i of the swapped video. Writes JPEG frames and
`frames.json` (source, rate, range, count, size)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from . import media
from .errors import FacepipeError
from .formats import download_info, frames_index
from .fsutil import atomic_dir
from .settings import FramesSettings


def run(*, download_dir: str | Path, out_dir: str | Path, settings: FramesSettings) -> dict:
    """Extract frames; `settings.fps` None keeps every frame at the source rate (a swap's clip)."""
    fps, start, duration, jpeg_quality = settings.fps, settings.start, settings.duration, settings.jpeg_quality
    info, path = download_info.read(download_dir)
    with atomic_dir(out_dir) as tmp:
        files = []
        if info["kind"] == "photos":
            photos = []  # frame i is photo photos[i]: unreadable ones are left out of both
            for name in info["photos"]:
                try:
                    image = media.read_image(path / name)
                except FacepipeError as exc:
                    print(f"frames: skipped {exc}")
                    continue
                files.append(frames_index.frame_name(len(files)))
                photos.append(name)
                media.write_image(tmp / files[-1], image, jpeg_quality)
            # convert draws on the photos themselves, not these JPEG copies: a PNG stays lossless.
            index = {"source": info["source"], "kind": "photos", "fps": None, "photos_dir": str(path),
                     "photos": photos}
        else:
            video = media.probe(path)
            rate = video.fps if fps is None else Fraction(fps).limit_denominator(1001)
            expected = (duration or max(video.duration - (start or 0), 0)) * float(rate)
            problems: list[str] = []
            for frame in tqdm(media.read_frames(video, start, duration, rate, problems),
                              total=round(expected) or None, desc=f"frames {Path(out_dir).name}", unit="frame"):
                files.append(frames_index.frame_name(len(files)))
                media.write_image(tmp / files[-1], frame, jpeg_quality)
            if problems:
                print(f"frames: warning: {info['source']} is damaged: the decoder reported {len(problems)} errors "
                      f"(first: {problems[0].split('] ', 1)[-1]}); all {len(files)} frames were kept, damaged ones "
                      "as far as the decoder could repair them, and detect skips what shows no face")
            index = {"source": info["source"], "kind": "video", "video": str(path),
                     "fps": f"{rate.numerator}/{rate.denominator}", "source_fps": video.fps_text,
                     "start": start or 0.0, "duration": duration, "width": video.width, "height": video.height,
                     "has_audio": video.has_audio, "decode_errors": len(problems)}
            if not files:
                raise FacepipeError(f"frames: {info['source']}: no frames from {start or 0:g} s for "
                                    f"{duration if duration else 'the rest'} s (the video is {video.duration:g} s long); "
                                    "adjust start/duration")
        if not files:
            raise FacepipeError(f"frames: {info['source']}: no readable photos")
        index["files"] = files
        index["count"] = len(files)
        frames_index.write(tmp, index)
    return index
