"""The fault campaign's media part: media people really have, through the real product.

`media_part(work, media, project, small, seed)` makes each faulty medium with ffmpeg
(seeded where random) in `work`, names each as a swap's video in `project` (a copy of
a built facepipe project with the trained woman_a <-> woman_b model),
runs real `snakemake` for all their outputs at once (the 10-hour video in a run of its
own, to time it), and judges each case:

- worked: the output is there and right, by a measurement (below);
- refused_one_line: no output, nothing half-written left, and exactly one line of
  facepipe's ("facepipe ... error: ...") names the file and gives the true reason
  (each refused case says which) and what to do;
- wrong: anything else, with the reason: a case that should work refused or wrong, a
  refusal in several lines or for a wrong reason, a Python traceback in its logs.

Clips show woman_a on a moving test pattern (which tells up from down and left from
right), with a white flash and a 1 kHz beep together near their end. "Right" is:

- phone-like clips (`make_phone`, `check_phone`): the swap is the clip as a player shows
  it: its size, and outside the faces a PSNR against the upright clip far above that
  against it turned over or mirrored; as long as the clip, within a frame; the flash's
  frame and the beep's start (as a player times the sound) within a frame of each other;
  every audio track kept, in order. They are: phone (portrait by a display rotation,
  variable rate, two audio tracks; 5 s in the small run, 10 s in the full one), and in
  the full run rotated_phone (rotate=90, as phones write), rotated_phone_270, vfr (30 s
  of 30, 24, 20 and 15 fps stretches, seeded) and multi_audio.
- audio_only (.m4a), audio_with_cover_art (.mp3 with a picture), zero_byte, truncated
  (an mp4 cut short: no index), random_bytes (named .mp4), tiny_1x1: refused.
- mixed_size_photos: photos of three sizes (two odd) come out under their names at their
  own sizes, every face swapped, unchanged outside the faces (JPEGs: as facepipe writes
  them, quality 95).
- full run only: truncated_faststart (an mp4 with its index in front, cut short: the
  swap keeps every frame that decodes); eight_k (7680x4320, 1 s: 8K out, every face
  swapped, PSNR outside the faces); ten_hour_first_minute (a 10-hour Matroska file, the
  swap of its first minute checked as a phone clip, flash and beep at 59 s; timed).

The small run (seeded, ~30 s on 2 cores) leaves out the cases that take minutes.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import yaml

from facepipe.media import FFMPEG, probe, read_frames
from facepipe.plan import source_id

BIN = Path(sys.executable).parent
PAIR, PERSON = "wa_wb", "woman_a"
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
# A phone's variable rate: stretches at these rates (every k-th frame of a 120 fps clip).
VFR_STEPS = {30: 4, 24: 5, 20: 6, 15: 8}
BEEP_HZ = 1000


@dataclass
class Case:
    name: str
    path: Path  # the medium, named in the config as the swap's video
    works: bool  # what it should do: work, or be refused in one line
    start: float | None = None
    duration: float | None = None
    check: object = None  # (project, case) -> (ok, reason, figures), for a case that works
    says: str = ""  # for a refused case: what its line must say (a regex), the reason that is true
    data: dict = field(default_factory=dict)  # what the check needs to know of the medium


def ffmpeg(*args) -> None:
    proc = subprocess.run([FFMPEG, "-nostdin", "-y", "-loglevel", "error", *map(str, args)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))}: {proc.stderr.strip()[-500:]}")


def frames_of(path: Path, start: float | None = None, duration: float | None = None) -> list[np.ndarray]:
    return list(read_frames(probe(path), start, duration))


def audio_of(path: Path, track: int = 0) -> np.ndarray:
    """A track's sound as a player plays it, mono at 48 kHz, -1..1: from time 0, by its
    timestamps (silence where they leave gaps)."""
    proc = subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(path), "-map", f"0:a:{track}",
                           "-af", "aresample=async=1:first_pts=0", "-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:"],
                          capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.int16).astype(np.float64) / 32768


def audio_tracks(path: Path) -> int:
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return len(re.findall(r"^ *Stream #\d+:\d+.*?: Audio:", text, re.MULTILINE))


def peak_hz(sound: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(sound * np.hanning(len(sound))))
    return float(np.argmax(spectrum) * 48000 / len(sound))


def face_mask(shape, boxes, grow: float = 0.3) -> np.ndarray:
    """True outside the faces (each box grown by `grow` of its size on every side)."""
    outside = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        outside[max(0, int(y0 - grow * h)):int(y1 + grow * h) + 1, max(0, int(x0 - grow * w)):int(x1 + grow * w) + 1] = False
    return outside


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float | None:
    """PSNR over the pixels `where` is true (None: there are none)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        if not where.any():
            return None
        diff = diff[where]
    return float(10 * np.log10(255 ** 2 / max(np.mean(diff ** 2), 1e-10)))


def swap_boxes(project: Path, name: str) -> dict[int, list]:
    faces = json.loads((project / f"results/faces/swaps/{name}/alignments.json").read_text())["faces"]
    boxes: dict[int, list] = {}
    for face in faces:
        boxes.setdefault(face["frame"], []).append(face["box"])
    return boxes


def report_of(project: Path, name: str) -> dict:
    return json.loads((project / f"results/swaps/{name}.json").read_text())


def outside_psnr(project: Path, name: str, output: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean PSNR of the output against the reference, frame by frame, outside the faces
    (0 when the frames differ in size or number, by more than the last one that a
    variable-rate video's end may add, or the faces leave nothing to compare)."""
    boxes = swap_boxes(project, name)
    values = [psnr(out, ref, face_mask(ref.shape, boxes.get(i, []))) if out.shape == ref.shape else 0.0
              for i, (out, ref) in enumerate(zip(output, reference))]
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 2) if values and abs(len(output) - len(reference)) <= 1 else 0.0


# The media and their checks.

def on_pattern(media: Path, width: int, height: int, face: int, seconds: float, start: float = 0) -> list:
    """ffmpeg's inputs and filters for woman_a, `face` px square, in the middle of a
    moving test pattern `width`x`height` (which tells up from down and left from right)."""
    even = f"{width + width % 2}x{height + height % 2}"  # testsrc2's sizes are even; odd ones are cropped
    return ["-f", "lavfi", "-i", f"testsrc2=s={even}:r=30:d={seconds}", "-ss", start, "-i", media / "woman_a.mp4",
            "-filter_complex", f"[1:v]scale={face}:{face}[face];[0:v][face]overlay=(W-w)/2:(H-h)/2:shortest=1,"
                               f"format=rgb24,crop={width}:{height}:0:0[v]",
            "-map", "[v]", "-map", "1:a?", "-t", seconds]


def make_phone(work: Path, media: Path, name: str, seconds: float, rng: random.Random, display: int | None = None,
               vfr: bool = False, tracks: int = 1, size: tuple[int, int] = (360, 640), mark: float | None = None) -> Case:
    """A clip as a phone records it: woman_a on a test pattern, a white flash and a
    1 kHz beep together at `mark` s, by default 1 s before the end (on the first audio track; a second one
    holds an 880 Hz tone); with `vfr`, stretches of 30, 24, 20 and 15 fps (seeded, a
    phone in changing light; the last 2 s at 30); with `display`, stored as landscape
    pixels that a player turns upright (-90: a phone's rotate=90, the usual; 90: held
    the other way round)."""
    width, height = size
    mark = seconds - 1.0 if mark is None else mark
    select = "not(mod(n,4))"  # 30 of the 120 fps
    if vfr:
        edges, t = [], 0.0
        while t < seconds - 2:
            t = min(seconds - 2, t + rng.uniform(1, 3))
            edges.append((t, rng.choice(list(VFR_STEPS))))
        for edge, rate in reversed(edges):
            select = f"if(lt(t,{edge:.3f}),not(mod(n,{VFR_STEPS[rate]})),{select})"
    beep = f"if(between(t,{mark},{mark + 0.2}),0.5*sin(2*PI*{BEEP_HZ}*t),0)"
    sounds = ["-f", "lavfi", "-i", f"aevalsrc='{beep}':s=48000:d={seconds}"]
    if tracks == 2:
        sounds += ["-f", "lavfi", "-i", f"sine=f=880:d={seconds}:sample_rate=48000"]
    upright = work / f"{name}_upright.mp4"
    face = min(width, height)
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r=120:d={seconds}", "-stream_loop", "-1",
           "-i", media / "woman_a.mp4", *sounds, "-t", seconds,
           "-filter_complex", f"[1:v]fps=120,scale={face}:{face}[face];[0:v][face]overlay=(W-w)/2:(H-h)/2,"
                              f"drawbox=c=white:t=fill:enable='between(t,{mark},{mark + 0.1})',select='{select}'[v]",
           "-map", "[v]", *[arg for k in range(tracks) for arg in ("-map", f"{k + 2}:a")],
           "-fps_mode", "vfr", *X264, "-c:a", "aac", upright)
    path = upright
    if display is not None:  # the same picture, stored turned the other way, and turned back on playing
        stored, path = work / f"{name}_stored.mp4", work / f"{name}.mp4"
        ffmpeg("-i", upright, "-map", "0", "-vf", "transpose=2" if display < 0 else "transpose=1", "-fps_mode",
               "passthrough", *X264, "-c:a", "copy", stored)
        ffmpeg("-display_rotation", display, "-i", stored, "-map", "0", "-c", "copy", path)
    return Case(name, path, True, check=check_phone,
                data={"upright": upright, "mark": mark, "seconds": seconds, "tracks": tracks})


def check_phone(project: Path, case: Case):
    """Upright and the same way round, the sound in sync at its end, every track kept."""
    out = project / f"results/swaps/{case.name}.mp4"
    fps = Fraction(report_of(project, case.name)["fps"])
    frame_s = 1 / float(fps)
    output = frames_of(out)
    upright = list(read_frames(probe(case.data["upright"]), case.start, case.duration, fps))  # the swap's timeline
    figures = {"fps": round(float(fps), 3), "frames": len(output), "video_s": round(len(output) * frame_s, 3)}
    if output[0].shape != upright[0].shape:
        return False, f"the swap is {output[0].shape[1]}x{output[0].shape[0]}, the video as shown " \
                      f"{upright[0].shape[1]}x{upright[0].shape[0]}", figures
    if abs(len(output) * frame_s - case.data["seconds"]) > frame_s:
        return False, f"the swap is {len(output) * frame_s:.2f} s long, the video {case.data['seconds']} s", figures
    right = outside_psnr(project, case.name, output, upright)
    wrong = max(outside_psnr(project, case.name, output, [f[::-1, ::-1] for f in upright]),
                outside_psnr(project, case.name, output, [f[:, ::-1] for f in upright]))
    figures.update(psnr_db=right, psnr_wrong_way_db=wrong)
    if right < 30 or right < wrong + 10:
        return False, f"not the video as shown: PSNR outside the faces {right} dB, turned over or mirrored " \
                      f"{wrong} dB", figures
    flashes = [i for i, frame in enumerate(output) if frame.mean() > 200]
    sound = audio_of(out)
    loud = np.flatnonzero(np.abs(sound) > 0.1)
    figures["audio_s"] = round(len(sound) / 48000, 3)
    if not flashes or not len(loud):
        return False, f"no {'flash' if not flashes else 'beep'} in the swap", figures
    offset = loud[0] / 48000 - flashes[0] * frame_s
    figures["av_offset_ms"] = round(float(offset) * 1000, 1)
    if abs(offset) > frame_s:
        return False, f"sound {offset * 1000:+.0f} ms off the picture at {case.data['mark']} s (a frame is " \
                      f"{frame_s * 1000:.0f} ms)", figures
    tracks = audio_tracks(out)
    if tracks != case.data["tracks"]:
        return False, f"the swap has {tracks} audio tracks, the video {case.data['tracks']}", figures
    figures["track_hz"] = [round(peak_hz(audio_of(out, k))) for k in range(tracks)]
    if figures["track_hz"] != [BEEP_HZ, 880][:tracks]:
        return False, f"the swap's tracks peak at {figures['track_hz']} Hz, the video's at " \
                      f"{[BEEP_HZ, 880][:tracks]}", figures
    return True, "", figures


def make_refused(work: Path, media: Path, rng: random.Random) -> list[Case]:
    audio, song, cover = work / "audio_only.m4a", work / "audio_with_cover_art.mp3", work / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=2", "-c:a", "aac", audio)
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=300x300:d=1", "-frames:v", "1", cover)
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=2", "-i", cover, "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame",
           "-c:v", "png", "-disposition:v", "attached_pic", song)
    zero = work / "zero_byte.mp4"
    zero.write_bytes(b"")
    whole, truncated = work / "whole.mp4", work / "truncated.mp4"
    ffmpeg("-i", media / "woman_a.mp4", "-t", 2, *X264, "-c:a", "aac", whole)  # the index (moov) last, as usual
    data = whole.read_bytes()
    truncated.write_bytes(data[:int(len(data) * rng.uniform(0.3, 0.9))])
    noise = work / "random_bytes.mp4"
    noise.write_bytes(rng.randbytes(64 * 1024))
    tiny = work / "tiny_1x1.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=1x1:r=30:d=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", tiny)
    says = {audio: r"no picture", song: r"no picture", zero: r"empty file", truncated: r"incomplete",
            noise: r"not a readable video", tiny: r"1x1 px, too small"}
    return [Case(path.stem, path, False, says=says[path]) for path in (audio, song, zero, truncated, noise, tiny)]


def make_truncated_faststart(work: Path, media: Path, rng: random.Random) -> Case:
    whole, path = work / "faststart.mp4", work / "truncated_faststart.mp4"
    ffmpeg("-i", media / "woman_a.mp4", "-t", 6, *X264, "-c:a", "aac", "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    path.write_bytes(data[:int(len(data) * rng.uniform(0.4, 0.8))])
    return Case("truncated_faststart", path, True, check=check_truncated)


def check_truncated(project: Path, case: Case):
    output = frames_of(project / "results/swaps/truncated_faststart.mp4")
    readable = frames_of(case.path)  # every frame that decodes, on the video's timeline
    if not output or len(output) != len(readable):
        return False, f"the swap has {len(output)} frames, the damaged video {len(readable)} that decode", {}
    return True, "", {"kept_s": round(len(output) / 30, 2)}


def make_eight_k(work: Path, media: Path) -> Case:
    """7680x4320, 1 s: woman_a at 2160 px in the middle of a test pattern (her face
    ~1700 px tall, a close-up)."""
    path, seconds = work / "eight_k.mp4", 1
    ffmpeg(*on_pattern(media, 7680, 4320, 2160, seconds), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
           "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    return Case("eight_k", path, True, check=check_eight_k)


def check_eight_k(project: Path, case: Case):
    out = project / "results/swaps/eight_k.mp4"
    info, report = probe(out), report_of(project, "eight_k")
    if (info.width, info.height) != (7680, 4320):
        return False, f"the swap is {info.width}x{info.height}", {}
    if report["faces_swapped"] != report["frames"]:
        return False, f"{report['faces_swapped']} faces swapped in {report['frames']} frames", {}
    value = outside_psnr(project, "eight_k", frames_of(out), frames_of(case.path))
    if value < 30:
        return False, f"PSNR outside the faces {value} dB", {"psnr_db": value}
    return True, "", {"psnr_db": value, "frames": report["frames"]}


def make_ten_hour(work: Path, media: Path, rng: random.Random) -> Case:
    """10 hours: a first 70 s as a phone clip (a flash and a beep at 59 s), then a still
    grey picture with silence, joined without re-encoding (Matroska, as OBS records).
    Its first minute is swapped, and checked as a phone clip."""
    head = make_phone(work, media, "ten_hour_head", 70, rng, size=(512, 512), mark=59).path
    still, minutes, path = work / "ten_hour_still.mp4", work / "ten_hour_list.txt", work / "ten_hour.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=512x512:r=30:d=60", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono",
           "-t", 60, *X264, "-c:a", "aac", still)
    minutes.write_text("\n".join([f"file '{head}'"] + [f"file '{still}'"] * (10 * 60 - 1)) + "\n")
    ffmpeg("-f", "concat", "-safe", "0", "-i", minutes, "-c", "copy", path)
    return Case("ten_hour_first_minute", path, True, start=0, duration=60, check=check_ten_hour,
                data={"upright": head, "mark": 59, "seconds": 60, "tracks": 1})


def check_ten_hour(project: Path, case: Case):
    hours = probe(case.path).duration / 3600
    if hours < 10:
        return False, f"the long video is {hours:.2f} h, not 10 h", {}
    ok, reason, figures = check_phone(project, case)
    return ok, reason, {"hours": round(hours, 2), **figures}


def make_photos(work: Path, media: Path) -> Case:
    folder = work / "mixed_size_photos"
    folder.mkdir()
    for name, width, height, face, at in (("a_640x480.png", 640, 480, 320, 1), ("b_301x451.jpg", 301, 451, 240, 2),
                                          ("c_1001x799.jpg", 1001, 799, 480, 3)):
        ffmpeg(*on_pattern(media, width, height, face, 1, at), "-an", "-frames:v", 1, "-q:v", 2, folder / name)
    return Case("mixed_size_photos", folder, True, check=check_photos)


def check_photos(project: Path, case: Case):
    out = project / "results/swaps/mixed_size_photos"
    boxes, report = swap_boxes(project, case.name), report_of(project, case.name)
    names = json.loads((project / f"results/frames/swaps/{case.name}/frames.json").read_text())["photos"]
    values = []
    for i, name in enumerate(names):
        original, swapped = cv2.imread(str(case.path / name)), cv2.imread(str(out / name))
        if swapped is None or swapped.shape != original.shape:
            return False, f"{name}: {'missing' if swapped is None else swapped.shape[1::-1]} (it is " \
                          f"{original.shape[1::-1]})", {}
        if Path(name).suffix.lower() in (".jpg", ".jpeg"):  # as facepipe writes JPEG photos (quality 95)
            original = cv2.imdecode(cv2.imencode(".jpg", original, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
        values.append(psnr(swapped, original, face_mask(original.shape, boxes.get(i, []))) or 0.0)
    if report["faces_swapped"] != len(names) or min(values) < 30:
        return False, f"{report['faces_swapped']} of {len(names)} faces swapped, PSNR outside them " \
                      f"{min(values):.1f} dB", {}
    return True, "", {"psnr_db": round(min(values), 2)}


# Running and judging.

def snakemake(project: Path, targets: list[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    # Only the swaps' outputs, and only what is missing: the model was built by the
    # reference's facepipe, maybe an earlier version than this one.
    proc = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--keep-going", "--rerun-triggers", "mtime",
                           "--", *targets], cwd=project, capture_output=True, text=True, errors="replace")
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def output_path(case: Case) -> str:
    return f"results/swaps/{case.name}" + ("" if case.path.is_dir() else ".mp4")


def case_logs(project: Path, case: Case) -> str:
    logs = [project / f"logs/download/{source_id(str(case.path))}.log"] + [
        project / f"logs/{stage}/swaps/{case.name}.log" for stage in ("frames", "detect")] + [
        project / f"logs/convert/{case.name}.log"]
    return "".join(log.read_text(errors="replace") for log in logs if log.is_file())


def leftovers(project: Path, case: Case) -> list[str]:
    """Half-written outputs of the case (atomic outputs leave none)."""
    return [str(p.relative_to(project)) for folder in ("results/download", "results/frames/swaps",
                                                       "results/faces/swaps", "results/swaps")
            if (project / folder).is_dir() for p in (project / folder).iterdir()
            if p.name.startswith(".") and (case.name in p.name or source_id(str(case.path)) in p.name)]


def judge(project: Path, case: Case, output: str) -> tuple[str, str, dict]:
    logs = case_logs(project, case)
    lines = [line for line in (output + "\n" + logs).splitlines()
             if line.startswith("facepipe") and "error:" in line and str(case.path) in line]
    lines = list(dict.fromkeys(lines))  # a job's line is in its log and in Snakemake's output
    if "Traceback (most recent call last)" in logs:
        return "wrong", "traceback: " + logs[logs.index("Traceback"):][-600:], {}
    if left := leftovers(project, case):
        return "wrong", f"half-written outputs left: {left}", {}
    done = (project / output_path(case)).exists()
    if not done:
        if len(lines) != 1:
            return "wrong", f"no output and {len(lines)} error lines naming the file: {lines[:3]}", {}
        if case.works:
            return "wrong", f"refused, but it should work: {lines[0]}", {}
        if not re.search(case.says, lines[0]):
            return "wrong", f"refused, but not saying {case.says!r}: {lines[0]}", {}
        return "refused_one_line", lines[0], {}
    if not case.works:
        return "wrong", "accepted, but it cannot work", {}
    ok, reason, figures = case.check(project, case)
    return ("worked" if ok else "wrong"), reason, figures


def media_part(work: Path, media: Path, project: Path, small: bool, seed: int) -> dict:
    """`project`: a copy of the reference build to add the swaps to (faults.copy_reference)."""
    started = time.monotonic()
    rng = random.Random(seed)
    made = work / "media"
    made.mkdir(parents=True)
    # A phone's own video: portrait by its rotation, at a variable rate, with two tracks.
    cases = [make_phone(made, media, "phone", 5 if small else 10, rng, display=-90, vfr=True, tracks=2),
             *make_refused(made, media, rng), make_photos(made, media)]
    long_case = None
    if not small:  # each fault by itself, the long ones full length
        cases += [make_phone(made, media, "rotated_phone", 3, rng, display=-90),
                  make_phone(made, media, "rotated_phone_270", 3, rng, display=90),
                  make_phone(made, media, "vfr", 30, rng, vfr=True, size=(512, 512)),
                  make_phone(made, media, "multi_audio", 3, rng, tracks=2),
                  make_truncated_faststart(made, media, rng), make_eight_k(made, media)]
        long_case = make_ten_hour(made, media, rng)
    media_s = time.monotonic() - started

    config = yaml.safe_load((project / "config/config.yaml").read_text())
    for case in cases + [long_case] * (long_case is not None):
        swap = {"pair": PAIR, "video": str(case.path), "from": PERSON}
        swap.update({key: value for key, value in (("start", case.start), ("duration", case.duration))
                     if value is not None})
        config["swaps"][case.name] = swap
    (project / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    code, output, run_s = snakemake(project, [output_path(case) for case in cases])
    results = {case.name: judge(project, case, output) for case in cases}
    long_output, long_s = "", None
    if long_case is not None:  # by itself, to time it
        _, long_output, long_s = snakemake(project, [output_path(long_case)])
        results[long_case.name] = judge(project, long_case, long_output)
    tracebacks = sum("Traceback (most recent call last)" in text for text in (output, long_output))

    verdicts = {name: verdict for name, (verdict, _, _) in results.items()}
    figures = {name: figs for name, (_, _, figs) in results.items() if figs}
    summary = {
        "cases": len(results), "worked": sum(v == "worked" for v in verdicts.values()),
        "refused_one_line": sum(v == "refused_one_line" for v in verdicts.values()),
        "wrong": sum(v == "wrong" for v in verdicts.values()), "tracebacks": tracebacks,
        "per_case": verdicts,
        "wrong_reasons": {name: reason for name, (verdict, reason, _) in results.items() if verdict == "wrong"},
        "refusals": {name: reason for name, (verdict, reason, _) in results.items() if verdict == "refused_one_line"},
        "figures": figures,
        "rotated_psnr_db": figures.get("rotated_phone" if long_case else "phone", {}).get("psnr_db"),
        "vfr_av_offset_ms": figures.get("vfr" if long_case else "phone", {}).get("av_offset_ms"),
        "vfr_seconds": 30 if long_case else 5,
        "ten_hour_first_minute_s": long_s and round(long_s, 1),
        "ten_hour_hours": figures.get("ten_hour_first_minute", {}).get("hours"),
        "media_s": round(media_s, 1), "snakemake_s": round(run_s, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    if summary["wrong"] or tracebacks:
        summary["snakemake_tail"] = (output + long_output)[-3000:]
    return summary
