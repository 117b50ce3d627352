"""Long training with and without the fast recipe's gradient clipping (run by hand:
`python benchmarks/long_training.py --work DIR`; made for a GPU, where tens of thousands
of steps take minutes).

Trains woman_a <-> woman_b (the datasets benchmarks/quality_vs_time.py builds in
--work) with params.yaml's train section, once as it is and once with the recipe's
clipping taken out, one after the other, for --steps steps each: the mean loss every
1,000 steps and the held-out MAE every 5,000. An unclipped run that collapses ends with
a held-out MAE near 0.37 (the model draws one flat colour). Measured on an H200 at
bfloat16 and batch 16: unclipped, collapsed near step 3,000 (0.36 at 38k steps); clipped,
0.028 at 38k. The last line is one JSON object; the comparison is under a key ending in
`_ratio`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from facepipe import devices, train
from facepipe.config import load_params
from facepipe.input_pipeline import center_faces, load_faces
from facepipe.models import ModelSettings, reconstruct
from facepipe.settings import section

ROOT = Path(__file__).resolve().parents[1]
PAIR = ("woman_a", "woman_b")


def held_out_mae(trainer: train.Trainer, held_out: list[np.ndarray]) -> float:
    trainer.sync()
    return round(float(np.mean([np.abs(np.asarray(reconstruct(trainer.model, faces, side)) - faces).mean()
                                for faces, side in zip(held_out, "ab")])), 5)


def run(settings, precision: str, steps: int, faces: list, held_out: list, label: str) -> dict:
    trainer, log, losses = train.Trainer(*faces, settings, precision, people=PAIR), [], []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        losses.append(trainer.step())
        if step % 1000 == 0 or step == steps:
            point = {"step": step, "loss": round(float(np.asarray(jax.device_get(losses)).sum(1).mean()), 5)}
            losses = []
            if step % 5000 == 0 or step == steps:
                point["held_out_mae"] = held_out_mae(trainer, held_out)
            log.append(point)
            print(f"{label}: {point}, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {"steps": steps, "held_out_mae": log[-1]["held_out_mae"], "seconds": round(time.perf_counter() - started),
            "log": log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/facepipe-quality-vs-time"),
                        help="a folder where benchmarks/quality_vs_time.py built its data")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--preset", help="instead of params.yaml's train.preset")
    args = parser.parse_args()

    base = dataclasses.replace(section(load_params(args.work / "params.yaml"), "train"), seed=0)
    if args.preset:
        base = dataclasses.replace(base, preset=args.preset)
    recipe = train.RECIPES[base.recipe]
    if recipe.clip_norm is None:
        sys.exit(f"long_training: recipe {base.recipe} has no clipping to compare")
    train.RECIPES["unclipped"] = dataclasses.replace(recipe, clip_norm=None)
    datasets = [args.work / f"results/datasets/{p}" for p in PAIR]
    faces = [load_faces([d]) for d in datasets]
    resolution = ModelSettings.from_preset(base.preset).resolution
    held_out = [center_faces(load_faces([d], "holdout"), resolution, base.coverage) for d in datasets]
    precision = devices.announce("long_training", base.precision)
    result = {"device": devices.describe(), "cpu": devices.cpu_model(), "precision": precision,
              "preset": base.preset, "recipe": base.recipe, "clip_norm": recipe.clip_norm,
              "batch_size": base.batch_size}
    for label, settings in (("clipped", base), ("unclipped", dataclasses.replace(base, recipe="unclipped"))):
        result[label] = run(settings, precision, args.steps, faces, held_out, label)
    result["unclipped_vs_clipped_held_out_mae_ratio"] = round(
        result["unclipped"]["held_out_mae"] / result["clipped"]["held_out_mae"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
