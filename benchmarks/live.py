"""Live swapping in real time (run by hand: `python benchmarks/live.py`).

`facepipe live --realtime` plays each clip at its own rate, as a camera would, with a
64 px `original` preset model (by default untrained weights: the time a face takes does
not depend on their values; `--model` takes a trained one), swapping every face, in two
set-ups: `preview` hands each frame to the preview page with nobody watching (the
swapping alone), `stream` also encodes every frame to an H.264 file with the audio (as
streaming or recording would). Each run gives the delivered frames over the source's
frames in the same time (`..._delivered_ratio`), the capture-to-output latency p50 and
p95, dropped frames, and how many faces a second the model drew (the picture keeps the
source's rate; between two faces drawn, the newest one is placed by each frame's own
landmarks, and `face_age` says how old it was). The last line is one JSON object."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
from flax import nnx

from facepipe import config
from facepipe.formats import model_folder
from facepipe.models import FaceSwapModel, ModelSettings
from facepipe.settings import section
from facepipe.train import model_info

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {"720p": "woman_scene_720p.mp4", "360p": "two_faces_360p.mp4"}


def cpu_model() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")


def untrained_model(folder: Path, preset: str) -> Path:
    """A model folder of `preset` with its initial weights."""
    train = dataclasses.replace(section(config.load_params(ROOT / "params.yaml"), "train"), preset=preset)
    model = FaceSwapModel(ModelSettings.from_preset(preset), rngs=nnx.Rngs(0))
    model_folder.write(folder, model, model_info(train, ("person_a", "person_b"), "float32", 256, 0, None))
    return folder


def live(clip: Path, model: Path, person: str, work: Path, name: str, stream: bool) -> dict:
    report = work / f"{name}.json"
    command = [sys.executable, "-m", "facepipe", "live", "--params", str(ROOT / "params.yaml"), str(clip),
               "--model", str(model), "--as", person, "--every-face", "--realtime", "--serve", "0",
               "--report", str(report)]
    if stream:
        command += ["--stream", str(work / f"{name}.mp4")]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path(os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media")))
    parser.add_argument("--model", type=Path, help="a trained model folder (default: an untrained original model)")
    parser.add_argument("--preset", default="original", help="preset of the untrained model (default original)")
    args = parser.parse_args()
    results = {"cpu": cpu_model(), "cores": os.cpu_count(), "jax_device": jax.devices()[0].device_kind}
    with tempfile.TemporaryDirectory(prefix="facepipe-live-bench-") as tmp:
        work = Path(tmp)
        model = args.model or untrained_model(work / "model", args.preset)
        info = model_folder.read_info(model)
        results["model"] = {"preset": info["preset"], "resolution": info["model"]["resolution"],
                            "trained_steps": info["steps"]}
        for label, clip in CLIPS.items():
            for setup in ("preview", "stream"):
                figures = live(args.media / clip, model, info["people"]["b"], work, f"{label}_{setup}",
                               setup == "stream")
                print(f"{label} {setup}: {json.dumps(figures)}", flush=True)
                results[f"{label}_{setup}"] = figures
                results[f"{label}_{setup}_delivered_ratio"] = figures["delivered_ratio"]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
