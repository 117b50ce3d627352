"""Conversion speed (run by hand: `python benchmarks/convert.py`).

Per clip (woman_scene_720p.mp4, one face a frame; two_faces_360p.mp4, two), with the
original 64 px model (82M parameters; the weights are a fresh initialisation, which
costs the same as trained ones):

- end to end: frames/s of the whole convert stage as `facepipe convert` runs it
  (decode, crop, batched model, mask, colour match, blend, encode with audio), with
  the params.yaml defaults except `convert.max_distance: null` (every face is swapped,
  so the identity check, a fixed cost per track, is left out);
- model alone: faces/s of the same batched model call on the same faces, already cut
  and in memory.

They are measured alternately, `--repeats` times each, in one process, after a warm-up
run (compiling and loading are not counted). The last line is one JSON object;
comparisons are under keys ending in `_ratio` (end-to-end frames/s over model-alone
faces/s, so 1.0 would mean the rest of the work were free)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from facepipe import align, config, convert, detect, download, frames, media, train
from facepipe.formats import model_folder
from facepipe.input_pipeline import center_faces
from facepipe.models import FaceSwapModel, ModelSettings
from facepipe.settings import ConvertSettings, TrainSettings, section
from facepipe.swapper import Swapper
from figures import median_and_runs

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("woman_scene_720p.mp4", "two_faces_360p.mp4")


def make_model(out: Path, settings: TrainSettings) -> tuple[FaceSwapModel, dict]:
    """An untrained original model, saved as the train stage would save it."""
    settings = dataclasses.replace(settings, preset="original", precision="float32")
    model = FaceSwapModel(ModelSettings.from_preset("original"), rngs=nnx.Rngs(0))
    model_folder.write(out, model, train.model_info(settings, ("a", "b"), "float32", PARAMS["detect"]["crop_size"], 0,
                                                    None))
    return model, model_folder.read_info(out)


def prepare(video: Path, work: Path) -> tuple[Path, Path]:
    """download, frames (every frame) and detect of one clip; returns both folders."""
    name = video.stem
    download.run(location=str(video), kind="video", source_id=name, out_dir=work / "download" / name,
                 settings=section(PARAMS, "download"))
    frames_dir, faces_dir = work / "frames" / name, work / "faces" / name
    frames.run(download_dir=work / "download" / name, out_dir=frames_dir,
               settings=dataclasses.replace(section(PARAMS, "frames"), fps=None, start=0, duration=None))
    detect.run(frames_dir=frames_dir, out_dir=faces_dir, settings=section(PARAMS, "detect"), threads=2)
    return frames_dir, faces_dir


def model_inputs(frames_dir: Path, faces_dir: Path, info: dict) -> np.ndarray:
    alignments = json.loads((faces_dir / "alignments.json").read_text())
    index = json.loads((frames_dir / "frames.json").read_text())
    crops = [align.cut_face(media.read_image(frames_dir / index["files"][face["frame"]]), face,
                              alignments["crop_size"]) for face in alignments["faces"]]
    return center_faces(np.stack(crops), info["model"]["resolution"], info["coverage"])


def model_alone(swapper: Swapper, faces: np.ndarray) -> float:
    start = time.perf_counter()
    swapper(faces)
    return len(faces) / (time.perf_counter() - start)


def end_to_end(frames_dir: Path, faces_dir: Path, model_dir: Path, out: Path, settings: ConvertSettings) -> float:
    count = json.loads((frames_dir / "frames.json").read_text())["count"]
    start = time.perf_counter()
    convert.run(frames_dir=frames_dir, faces_dir=faces_dir, model_dir=model_dir, source_dataset=model_dir, out=out,
                settings=settings, swap_from="a")
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", default=os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media"), type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = dataclasses.replace(section(PARAMS, "convert"), max_distance=None)
    result = {"device": str(jax.devices()[0]), "cpus": os.cpu_count(), "batch_size": settings.batch_size,
              "preset": "original", "codec": settings.codec, "encoder_preset": settings.preset,
              "color_match": settings.color_match}
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-") as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        model, info = make_model(work / "model", section(PARAMS, "train"))
        swapper = Swapper(model, "b", settings.batch_size)
        for clip in CLIPS:
            frames_dir, faces_dir = prepare(args.media / clip, work)
            faces = model_inputs(frames_dir, faces_dir, info)
            out = work / f"{Path(clip).stem}.mp4"
            end_to_end(frames_dir, faces_dir, work / "model", out, settings)  # warm-up: compile, caches
            model_alone(swapper, faces[:settings.batch_size])
            alone, full = [], []
            for _ in range(args.repeats):
                alone.append(model_alone(swapper, faces))
                full.append(end_to_end(frames_dir, faces_dir, work / "model", out, settings))
            name = Path(clip).stem
            frame_count = json.loads((frames_dir / "frames.json").read_text())["count"]
            result[name] = {"frames": frame_count, "faces": len(faces), **median_and_runs("end_to_end_fps", full, 1),
                            **median_and_runs("model_alone_faces_per_s", alone, 1)}
            result[f"{name}_end_to_end_vs_model_ratio"] = round(statistics.median(full) / statistics.median(alone), 3)
            print(f"{name}: {result[name]}", file=sys.stderr)
    print(json.dumps(result))


PARAMS = config.load_params(ROOT / "params.yaml")

if __name__ == "__main__":
    main()
