"""Start-up with and without the compile cache (run by hand: `python benchmarks/compile_cache.py`).

`facepipe train` of woman_a <-> woman_b (4 s of each at 5 frames/s, detected and
filtered first), 10 steps, for each preset in `--presets`: the wall time of the whole
command (start, load, compile, train, write) with an empty compile cache (cold) and with
the cache a previous run filled (warm), alternately, `--repeats` times each, in one run.
`same_weights` says whether every run's weights are the first's: a cached program must
give the same bytes. The last line is one JSON object; `<preset>_warm_over_cold_ratio` is the warm
median over the cold one (below 1: the cache saves that share)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from facepipe import config, detect, download, frames
from facepipe import filter as face_filter
from facepipe.settings import section
from figures import median_and_runs

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ("woman_a", "woman_b")
STEPS = 10


def prepare(media: Path, work: Path) -> list[Path]:
    """Each person's dataset, as the stages before train make it."""
    datasets = []
    for person in PEOPLE:
        download.run(location=str(media / f"{person}.mp4"), kind="video", source_id=person,
                     out_dir=work / "download" / person, settings=section(PARAMS, "download"))
        frames.run(download_dir=work / "download" / person, out_dir=work / "frames" / person,
                   settings=dataclasses.replace(section(PARAMS, "frames"), fps=5, duration=4))
        detect.run(frames_dir=work / "frames" / person, out_dir=work / "faces" / person,
                   settings=section(PARAMS, "detect"), threads=2)
        face_filter.run(faces_dirs=[work / "faces" / person], reference=None, out_dir=work / "datasets" / person,
                        report_path=work / "reports" / f"{person}.json", sheet_path=None,
                        settings=section(PARAMS, "filter"), person=person)
        datasets.append(work / "datasets" / person)
    return datasets


def train(datasets: list[Path], params: Path, out: Path, cache: Path) -> float:
    command = [sys.executable, "-m", "facepipe", "train", "--params", str(params), "--a", str(datasets[0]),
               "--b", str(datasets[1]), "--out", str(out / "model"), "--checkpoints", str(out / "checkpoints")]
    start = time.perf_counter()
    subprocess.run(command, env={**os.environ, "FACEPIPE_COMPILE_CACHE": str(cache)}, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", default=os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media"), type=Path)
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = {"cpus": os.cpu_count(), "steps": STEPS}
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-") as tmp:
        work = Path(tmp)
        datasets = prepare(args.media, work)
        for preset in args.presets:
            params = yaml.safe_load((ROOT / "params.yaml").read_text())
            params["train"].update(preset=preset, steps=STEPS, batch_size=8, save_every=STEPS, preview_every=STEPS)
            params_file = work / f"params-{preset}.yaml"
            params_file.write_text(yaml.safe_dump(params))
            warm_cache = work / f"cache-{preset}-warm"
            weights = []

            def timed(cache: Path) -> float:
                out = work / f"run-{preset}-{len(weights)}"
                seconds = train(datasets, params_file, out, cache)
                weights.append((out / "model" / "weights.msgpack").read_bytes())
                return seconds

            timed(warm_cache)  # fills the warm cache
            cold, warm = [], []
            for repeat in range(args.repeats):
                cold.append(timed(work / f"cache-{preset}-cold-{repeat}"))
                warm.append(timed(warm_cache))
            result[preset] = {**median_and_runs("cold_s", cold, 2), **median_and_runs("warm_s", warm, 2),
                              "same_weights": all(w == weights[0] for w in weights)}
            result[f"{preset}_warm_over_cold_ratio"] = round(statistics.median(warm) / statistics.median(cold), 3)
            print(f"{preset}: {result[preset]}", file=sys.stderr)
    print(json.dumps(result))


PARAMS = config.load_params(ROOT / "params.yaml")

if __name__ == "__main__":
    main()
