"""Training faces/s as facepipe trains now against as it trained before, on whatever
device JAX finds (run by hand: `python benchmarks/device_throughput.py`; made for a GPU).

Three ways to run the same training step (params.yaml's train section: its preset,
recipe and coverage; both people's batches in one step), side by side in one run, in
alternating rounds, at each batch size of `--batches`:

  bf16_device: facepipe's Trainer at bfloat16 (what `train.precision: auto` picks on a
               GPU), its batches drawn and augmented on the device inside the jitted step;
  f32_device:  the same at float32;
  f32_host:    float32, the batches augmented by OpenCV in one host thread (the original
               DeepFakes augmentation, benchmarks/opencv_augment.py) and sent to the device
               as float32 arrays each step, as facepipe trained before.

Steps are dispatched back to back and waited for at the end, as the train stage does
between two loss readings. Also the achieved FLOP/s of the model's arithmetic
(convolutions and dense layers, 3x the forward pass) against this device's measured
bfloat16 matrix-product rate. The device and CPU model are printed with every figure.
The last line is one JSON object; comparisons are under keys ending in `_ratio`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facepipe import devices, train
from facepipe.config import load_params
from facepipe.models import FaceSwapModel, ModelSettings
from facepipe.settings import TrainSettings, section
from opencv_augment import opencv_batch
from train_throughput import forward_flops

ROOT = Path(__file__).resolve().parents[1]
FACES_PER_PERSON = 256


class HostFedTrainer:
    """The training step fed as before: a host thread augments with OpenCV and queues
    float32 batches; each step sends one pair of batches to the device."""

    def __init__(self, faces_a: np.ndarray, faces_b: np.ndarray, settings: TrainSettings, precision: str):
        recipe, ms = train.RECIPES[settings.recipe], ModelSettings.from_preset(settings.preset)
        model = FaceSwapModel(ms, dtype=devices.DTYPES[precision], rngs=nnx.Rngs(settings.seed))
        optimizer = nnx.Optimizer(model, train.optimizer_for(settings), wrt=nnx.Param)
        graphdef, self.state = nnx.split((model, optimizer))
        batch = settings.batch_size

        def step(state, batch_a, batch_b):
            model, optimizer = nnx.merge(graphdef, state)
            loss_a, loss_b = train.learn(model, optimizer, recipe, batch_a, batch_b)
            return nnx.state((model, optimizer)), loss_a, loss_b

        self._step = jax.jit(step, donate_argnums=0)
        self.batches: queue.Queue = queue.Queue(maxsize=2)
        rng = np.random.default_rng(settings.seed)

        def produce():
            while True:
                self.batches.put([opencv_batch(faces, batch, ms.resolution, settings.coverage, rng)
                                  for faces in (faces_a, faces_b)])
        threading.Thread(target=produce, daemon=True).start()

    def step(self) -> tuple[jax.Array, jax.Array]:
        self.state, loss_a, loss_b = self._step(self.state, *self.batches.get())
        return loss_a, loss_b


def timed(step, count: int) -> float:
    """Seconds a step, `count` steps dispatched back to back."""
    start = time.perf_counter()
    losses = [step() for _ in range(count)]
    jax.block_until_ready(losses)
    return (time.perf_counter() - start) / count


def matmul_flops_per_s(dtype) -> float:
    """Median bf16 (or `dtype`) matrix-product rate of this device over several inputs."""
    n = 8192 if jax.default_backend() == "gpu" else 1024
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    inputs = [jax.random.normal(k, (n, n), dtype) for k in keys]  # rotated: no cache effects, no zeros
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(inputs[0], inputs[1]))
    rates = []
    for i in range(12):
        start = time.perf_counter()
        jax.block_until_ready(dot(inputs[i % 4], inputs[(i + 1) % 4]))
        rates.append(2 * n ** 3 / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="16,64,256", help="faces per person per step, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and arm")
    parser.add_argument("--preset", help="instead of params.yaml's train.preset")
    args = parser.parse_args()

    base = section(load_params(ROOT / "params.yaml"), "train")
    if args.preset:
        base = dataclasses.replace(base, preset=args.preset)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (FACES_PER_PERSON, 256, 256, 4), np.uint8) for _ in range(2)]
    for f in faces:
        f[..., 3] %= 4  # region labels
    peak = matmul_flops_per_s(jnp.bfloat16)
    result = {"device": devices.describe(), "cpu": devices.cpu_model(), "jax_version": jax.__version__,
              "preset": base.preset, "recipe": base.recipe, "coverage": base.coverage,
              "bf16_matmul_tflop_per_s": round(peak / 1e12, 2), "batches": {}}
    print(f"{result['device']}, CPU {result['cpu']}: bf16 matmul {peak / 1e12:.1f} TFLOP/s", file=sys.stderr)
    for batch in (int(b) for b in args.batches.split(",")):
        settings = dataclasses.replace(base, batch_size=batch, seed=0)
        arms = {"bf16_device": train.Trainer(*faces, settings, "bfloat16").step,
                "f32_device": train.Trainer(*faces, settings, "float32").step,
                "f32_host": HostFedTrainer(*faces, settings, "float32").step}
        for step in arms.values():
            timed(step, 3)  # compile and warm up
        times = {name: [] for name in arms}
        for _ in range(args.rounds):
            for name, step in arms.items():
                times[name].append(timed(step, args.steps))
        step_flops = 3 * forward_flops(ModelSettings.from_preset(settings.preset)) * 2 * batch
        record = {"step_gflop": round(step_flops / 1e9, 2)}
        for name, runs in times.items():
            seconds = statistics.median(runs)
            record[name] = {"faces_per_s": round(2 * batch / seconds, 1), "step_ms": round(seconds * 1e3, 3),
                            "step_ms_runs": [round(t * 1e3, 3) for t in runs],
                            "share_of_bf16_matmul_peak": round(step_flops / seconds / peak, 4)}
            print(f"batch {batch} {name}: {record[name]}", file=sys.stderr, flush=True)
        fps = {name: record[name]["faces_per_s"] for name in arms}
        record["bf16_device_vs_f32_host_faces_per_s_ratio"] = round(fps["bf16_device"] / fps["f32_host"], 2)
        record["bf16_vs_f32_on_device_faces_per_s_ratio"] = round(fps["bf16_device"] / fps["f32_device"], 2)
        record["device_vs_host_augmentation_at_f32_faces_per_s_ratio"] = round(fps["f32_device"] / fps["f32_host"], 2)
        record["bf16_device_share_of_bf16_matmul_peak_ratio"] = record["bf16_device"]["share_of_bf16_matmul_peak"]
        result["batches"][str(batch)] = record
    print(json.dumps(result))


if __name__ == "__main__":
    main()
