"""Quality against training time (run by hand: `python benchmarks/quality_vs_time.py`).

The pair is woman_a <-> woman_b of ../shared/media (FACEPIPE_MEDIA); the swap is the
first 6 s of woman_b's clip as woman_a (woman_b talks with her mouth: its opening varies
2.5x more than woman_a's, so the expression measure has a signal to follow). Three arms train for the same wall-clock budget
on this machine, one after the other:

  (a) the 2017 recipe from scratch: its model (preset original), loss, optimizer and
      coverage (recipe original, coverage 0.625);
  (b) facepipe's recipe from scratch: params.yaml's train section as it is;
  (c) the same from a model pretrained on other people only: man_a, man_b, the green
      screen man, the 720p scene, the people of more/ as persons, and the two-face clip
      and more/photos as a pool of anyone's faces: none of the pair's faces. Its
      pretraining is timed apart (--pretrain-minutes).

Training time is counted from the first step (its compilation included); the clock
stops while a model is measured, at fixed points of the budget: on held-out faces
(evaluate's pair measures: MAE and SSIM over the face and over the model's view) and on
the swap, rendered by the convert stage and scored by the evaluate stage (expression,
pose, sharpness at the model's resolution, identity, seam, flicker, background).

The data are built first by the real workflow (snakemake: download, frames, detect,
filter) in --work. Prints the curves, writes them as a PNG (curves.png) and a
before/after strip of the swap at the end of each arm (strip.png) into --work, and as
ratios, budget / minutes each arm needs to reach what (a) reaches at the end of the
budget, to stay (per measure; 0 where never reached; none for a measure (a) did not
improve). The last line is one JSON object;
comparisons are under keys ending in `_ratio`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import jax
import numpy as np
import yaml

from facepipe import convert, devices, evaluate, figures, media, train
from facepipe.config import load_params
from facepipe.formats import model_folder
from facepipe.input_pipeline import load_faces
from facepipe.settings import TrainSettings, section

ROOT = Path(__file__).resolve().parents[1]
PAIR = ("woman_a", "woman_b")
SWAP = {"video": "media/woman_b.mp4", "from": "woman_b", "start": 0, "duration": 6}
SWAP_TO = next(p for p in PAIR if p != SWAP["from"])
OTHERS = {"man_a": "man_a.mp4", "man_b": "man_b.mp4", "man_green": "man_greenscreen_noaudio.mp4",
          "woman_scene": "woman_scene_720p.mp4", "person_c": "more/person_c_fullbody.mp4",
          "person_d": "more/person_d.mp4", "person_e": "more/person_e.mp4", "person_f": "more/person_f.mp4",
          "child_a": "more/child_a.mp4"}
POOL = ["media/two_faces_360p.mp4", "media/more/photos"]
ARMS = {
    "a": ("2017 recipe, from scratch", {"recipe": "original", "preset": "original", "coverage": 0.625,
                                       "learning_rate": None}, False),
    "b": ("facepipe recipe, from scratch", {}, False),
    "c": ("facepipe recipe, pretrained on others", {}, True),
}
EVAL_AT = (0, 1 / 30, 2 / 30, 4 / 30, 7 / 30, 10 / 30, 15 / 30, 20 / 30, 25 / 30, 1)  # shares of the budget
# (key, better: +1 higher, -1 lower): the measures whose time to reach (a)'s end is a ratio.
RATIO_MEASURES = (("held_out_face_mae", -1), ("held_out_face_ssim", 1), ("sharpness", 1),
                  ("expression_mouth_correlation", 1), ("identity_within_spread", 1))


def prepare(work: Path, media_dir: Path, fps: float) -> None:
    """Builds every dataset and the swap clip's frames and faces with the real workflow."""
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "media").exists():
        (work / "media").symlink_to(media_dir, target_is_directory=True)
    for name in ("Snakefile", "workflow"):
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, target)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["frames"]["fps"] = fps
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    config = {"people": {**{p: {"sources": [f"media/{p}.mp4"]} for p in PAIR},
                         **{p: {"sources": [f"media/{f}"]} for p, f in OTHERS.items()}},
              "pairs": {"pair": {"a": PAIR[0], "b": PAIR[1]}},
              "pretrain": {"people": list(OTHERS), "sources": POOL},
              "swaps": {"swap": {"pair": "pair", **SWAP}}}
    (work / "config").mkdir(exist_ok=True)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/datasets/{p}" for p in (*PAIR, *OTHERS)] + [
        "results/pretrain/faces", "results/frames/swaps/swap", "results/faces/swaps/swap"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(work / "snakemake.log", "w") as log:
        build = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--cores", str(os.cpu_count()),
                                *targets], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    if build.returncode:
        sys.exit(f"quality_vs_time: building the data failed; see {work / 'snakemake.log'}")


def built_data(work: Path) -> dict:
    """Where `prepare` put the data in `work`, and the params it built them with."""
    os.chdir(work)  # stage outputs name their inputs relative to the project, as Snakemake runs them
    results = work / "results"
    return {"datasets": {p: results / f"datasets/{p}" for p in (*PAIR, *OTHERS)}, "pool": results / "pretrain/faces",
            "frames": results / "frames/swaps/swap", "faces": results / "faces/swaps/swap",
            "params": yaml.safe_load((work / "params.yaml").read_text())}


class Measure:
    """Writes a trained model as the train stage would, then scores it as the evaluate
    stage does: held-out faces, and unless `held_out_only`, the swap rendered by the
    convert stage (which needs ffmpeg and dlib's models on the machine)."""

    def __init__(self, data: dict, folder: Path, crop_size: int, held_out_only: bool):
        self.data, self.folder, self.crop_size, self.held_out_only = data, folder, crop_size, held_out_only
        self.convert_settings = dataclasses.replace(section(data["params"], "convert"), max_distance=None)

    def __call__(self, trainer: train.Trainer, settings: TrainSettings, precision: str, step: int) -> tuple[dict, list]:
        model_dir = self.folder / "model"
        train.write_model(model_dir, trainer, train.model_info(settings, PAIR, precision, self.crop_size, step, None))
        return self.score(model_dir)

    def score(self, model_dir: Path) -> tuple[dict, list]:
        video, report = self.folder / "swap.mp4", self.folder / "swap.json"
        datasets = self.data["datasets"]
        pair, _ = evaluate.evaluate_pair(model_dir, datasets[PAIR[0]], datasets[PAIR[1]])
        held_out = {f"held_out_{k}": round(float(np.mean([pair[s][k] for s in "ab"])), 5)
                    for k in ("face_mae", "face_ssim", "mae", "ssim")}
        if self.held_out_only:
            return held_out, []
        convert.run(frames_dir=self.data["frames"], faces_dir=self.data["faces"], model_dir=model_dir,
                    source_dataset=datasets[SWAP["from"]], out=video, report_path=report,
                    settings=self.convert_settings, swap_from=SWAP["from"])
        swap, stills = evaluate.evaluate_swap(video, self.data["frames"], self.data["faces"], model_dir,
                                              datasets[SWAP["from"]], datasets[SWAP_TO], list(datasets.values()),
                                              section(self.data["params"], "evaluate"), json.loads(report.read_text()))
        return {**held_out, **{k: v for k, v in swap.items() if k not in ("frames", "frames_scored")}}, stills


def train_for(label: str, trainer: train.Trainer, settings: TrainSettings, precision: str, seconds: float,
              measure: Measure | None) -> tuple[list[dict], list]:
    """Steps `trainer` for `seconds` of training time, measuring at EVAL_AT of it."""
    curve, elapsed, step, stills = [], 0.0, 0, []
    marks = [share * seconds for share in EVAL_AT] if measure else []
    while True:
        if marks and elapsed >= marks[0]:
            marks.pop(0)
            point, stills = measure(trainer, settings, precision, step)
            curve.append({"minutes": round(elapsed / 60, 2), "step": step, **point})
            print(f"{label}: {elapsed / 60:5.1f} min, step {step}: " + ", ".join(
                f"{k} {point[k]}" for k, _ in RATIO_MEASURES if k in point), file=sys.stderr, flush=True)
        if elapsed >= seconds:
            return curve, stills
        started = time.perf_counter()
        jax.block_until_ready(trainer.step())
        elapsed += time.perf_counter() - started
        step += 1


def minutes_to_reach(curve: list[dict], key: str, goal: float, better: int) -> float | None:
    """When the curve reaches `goal` to stay (linear between measured points): a passing
    spike, such as the noise of a fresh model counting as detail, does not count."""
    reached = [p.get(key) is not None and better * (p[key] - goal) >= 0 for p in curve]
    if not reached[-1]:
        return None
    first = len(reached) - reached[::-1].index(False) if False in reached else 0
    if first == 0:
        return curve[0]["minutes"]
    before, after = curve[first - 1], curve[first]
    if before[key] is None:
        return after["minutes"]
    share = (goal - before[key]) / (after[key] - before[key])
    return before["minutes"] + share * (after["minutes"] - before["minutes"])


def ratios(result: dict, budget: float) -> None:
    """Adds, per arm and measure, the minutes it takes to reach what (a) reaches at the
    end of the budget, and for (b) and (c) budget / those minutes as `_ratio` keys. A
    measure (a) did not improve over its budget has no ratio: its end is no goal."""
    a_curve = result["arms"]["a"]["curve"]
    for key, better in RATIO_MEASURES:
        goal, start = a_curve[-1].get(key), a_curve[0].get(key)
        if goal is None or start is None or better * (goal - start) <= 0:
            result.setdefault("no_ratio", []).append(key)
            continue
        for arm, record in result["arms"].items():
            minutes = minutes_to_reach(record["curve"], key, goal, better)
            record[f"minutes_to_reach_a_{key}"] = minutes
            if arm != "a":
                # Reached at the first measurement (0 minutes): bounded by the next one.
                bound = max(minutes, record["curve"][1]["minutes"]) if minutes is not None else None
                result[f"{arm}_vs_a_{key}_ratio"] = round(budget / bound, 2) if bound else 0.0


def strip(stills_by_arm: dict[str, list]) -> np.ndarray:
    """Rows: the input frames, then each arm's swap at the end of its budget."""
    rows = [np.concatenate([original for original, _ in next(iter(stills_by_arm.values()))], axis=1)]
    rows += [np.concatenate([swapped for _, swapped in stills], axis=1) for stills in stills_by_arm.values()]
    image = np.concatenate(rows, axis=0)
    return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="training budget per arm")
    parser.add_argument("--pretrain-minutes", type=float, default=60, help="pretraining budget for arm (c)")
    parser.add_argument("--arms", default="abc")
    parser.add_argument("--fps", type=float, default=10, help="frames a second taken from each training video")
    parser.add_argument("--work", type=Path, default=Path("/tmp/facepipe-quality-vs-time"))
    parser.add_argument("--media", type=Path, default=Path(os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media")))
    parser.add_argument("--reuse-pretrained", action="store_true", help="keep a pretrained model of an earlier run")
    parser.add_argument("--no-build", action="store_true",
                        help="use the data an earlier run built in --work (copied to a machine without the workflow)")
    parser.add_argument("--held-out-only", action="store_true",
                        help="measure held-out faces only, not the swap (a machine without ffmpeg or dlib's models)")
    parser.add_argument("--score", action="store_true",
                        help="train nothing: score the swap of each arm's last model in --work (trained elsewhere)")
    args = parser.parse_args()

    if not args.no_build:
        prepare(args.work, args.media.resolve(), args.fps)
    data = built_data(args.work)
    base = section(load_params(args.work / "params.yaml"), "train")
    faces = [load_faces([data["datasets"][p]]) for p in PAIR]
    if args.score:
        scores = {}
        for arm in args.arms:
            measure = Measure(data, args.work / f"arm_{arm}", faces[0].shape[1], held_out_only=False)
            scores[arm], _ = measure.score(measure.folder / "model")
            scores[arm]["steps"] = model_folder.read_info(measure.folder / "model")["steps"]
            print(f"({arm}): {scores[arm]}", file=sys.stderr)
        print(json.dumps({"cpu": devices.cpu_model(), "scored_on": str(jax.devices()[0]), "arms": scores}))
        return
    pretrained = args.work / "pretrained"
    result = {"cpu": devices.cpu_model(), "cores": os.cpu_count(), "device": str(jax.devices()[0]), "pair": "/".join(PAIR),
              "swap": f"{SWAP['from']} as {SWAP_TO}, {SWAP['duration']} s", "budget_minutes": args.minutes,
              "faces": {p: len(f) for p, f in zip(PAIR, faces)}, "arms": {}}
    if "c" in args.arms:
        pool = load_faces([*[data["datasets"][p] for p in OTHERS], data["pool"]])
        if not (args.reuse_pretrained and (pretrained / "model.json").is_file()):
            precision = devices.precision(base.precision)
            trainer = train.Trainer(pool, pool, base, precision, people=("pretrain", "pretrain"))
            started = time.perf_counter()
            steps = 0
            while time.perf_counter() - started < args.pretrain_minutes * 60:
                jax.block_until_ready(trainer.step())
                steps += 1
            train.write_model(pretrained, trainer, train.model_info(base, ("pretrain", "pretrain"), precision,
                                                                    pool.shape[1], steps, None))
            print(f"pretrained on {len(pool)} faces: {steps} steps in {args.pretrain_minutes} min", file=sys.stderr)
        info = json.loads((pretrained / "model.json").read_text())
        result["pretrain"] = {"minutes": args.pretrain_minutes, "steps": info["steps"], "faces": len(pool)}
    stills = {}
    for arm in args.arms:
        label, overrides, from_pretrained = ARMS[arm]
        settings = dataclasses.replace(base, **overrides)
        precision = devices.precision(settings.precision)
        start = None
        if from_pretrained:
            start_info, weights = train.read_start(pretrained, settings)
            start = (start_info, weights, "both")
        trainer = train.Trainer(*faces, settings, precision, start, people=PAIR)
        measure = Measure(data, args.work / f"arm_{arm}", faces[0].shape[1], args.held_out_only)
        curve, stills[arm] = train_for(f"({arm}) {label}", trainer, settings, precision, args.minutes * 60, measure)
        result["arms"][arm] = {"label": label, "preset": settings.preset, "recipe": settings.recipe,
                               "coverage": settings.coverage, "pretrained": from_pretrained,
                               "final": curve[-1], "curve": curve}
    if "a" in result["arms"]:
        ratios(result, args.minutes)
    panels = []
    for key, _ in RATIO_MEASURES + (("seam", -1),):
        if key not in result["arms"][args.arms[0]]["final"]:
            continue  # a swap measure, not taken (--held-out-only)
        series = {f"({arm})": [p[key] if p[key] is not None else np.nan for p in r["curve"]]
                  for arm, r in result["arms"].items()}
        xs = {f"({arm})": [p["minutes"] for p in r["curve"]] for arm, r in result["arms"].items()}
        panels.append(figures.line_plot(xs, series, "minutes", key, size=(720, 240)))
    with open(args.work / "curves.png", "wb") as f:
        f.write(cv2.imencode(".png", cv2.cvtColor(np.concatenate(panels), cv2.COLOR_RGB2BGR))[1].tobytes())
    if not args.held_out_only:
        media.write_image(args.work / "strip.png", strip(stills))
    for arm, r in result["arms"].items():
        print(f"({arm}) {r['label']}:", file=sys.stderr)
        for point in r["curve"]:
            print("   " + " ".join(f"{k}={v}" for k, v in point.items()), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
