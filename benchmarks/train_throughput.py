"""Training throughput (run by hand: `python benchmarks/train_throughput.py`).

faces/s of facepipe's jitted training step (Flax NNX, XLA) against a PyTorch
implementation of the same original 64 px model (82,062,470 parameters, MAE loss, Adam
b1=0.5, both decoders in one step), same batch, same precision (`--precision`: float32,
or bfloat16 convolutions and matrix products for both: XLA's mixed precision, PyTorch's
CPU autocast), same machine, same process, measured alternately in rounds (each round:
one untimed step, then `--steps` timed ones). facepipe's step also draws and augments its
batch on the device (the 2017 recipe's transform and warp); PyTorch's gets ready-made
batches. Also the achieved FLOP/s of each (the model's own arithmetic: convolutions and
dense layers, 3x the forward pass for a training step) against the machine's measured
matmul FLOP/s at that precision. The CPU model is printed with every figure. Needs `pip
install torch==2.13.0` (CPU build).

The last line is one JSON object; comparisons are under keys ending in `_ratio`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from facepipe import devices, train
from facepipe.config import load_params
from facepipe.models import ModelSettings
from facepipe.settings import section

ROOT = Path(__file__).resolve().parents[1]


def forward_flops(s: ModelSettings) -> int:
    """Multiply-adds x 2 of one face through the encoder and one decoder."""
    flops, side, channels = 0, s.resolution, 3
    for width in s.encoder_widths:  # 5x5 stride 2
        side //= 2
        flops += 2 * side * side * 25 * channels * width
        channels = width
    flat = side * side * channels
    flops += 2 * flat * s.latent + 2 * s.latent * s.dense_side ** 2 * s.dense_channels
    side, channels = s.dense_side, s.dense_channels
    for width in (s.dense_channels // 2,) + tuple(s.decoder_widths):  # 3x3 conv to 4x, then 2x side
        flops += 2 * side * side * 9 * channels * width * 4
        side, channels = side * 2, width
    return flops + 2 * side * side * 25 * channels * 3


def matmul_flops_per_s(precision: str) -> float:
    """Best matmul rate of this machine at `precision`, through XLA and through PyTorch."""
    import torch

    n, best = 2048, 0.0
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(size=(n, n)), devices.DTYPES[precision])
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    ta = torch.from_numpy(rng.uniform(size=(n, n)).astype(np.float32)).to(getattr(torch, precision))
    for _ in range(5):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start))
        start = time.perf_counter()
        torch.mm(ta, ta)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start))
    return best


def torch_model():
    from torch import nn

    s = ModelSettings.from_preset("original")

    class Upscale(nn.Module):
        def __init__(self, cin, filters):
            super().__init__()
            self.conv = nn.Conv2d(cin, filters * 4, 3, padding=1)

        def forward(self, x):
            return nn.functional.pixel_shuffle(nn.functional.leaky_relu(self.conv(x), 0.1), 2)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (3,) + s.encoder_widths
            self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, stride=2, padding=2) for a, b in zip(widths, widths[1:]))
            self.dense_in = nn.Linear(s.conv_side ** 2 * s.encoder_widths[-1], s.latent)
            self.dense_out = nn.Linear(s.latent, s.dense_side ** 2 * s.dense_channels)
            self.upscale = Upscale(s.dense_channels, s.dense_channels // 2)
            dec = (s.dense_channels // 2,) + s.decoder_widths
            self.decoders = nn.ModuleList(nn.Sequential(*[Upscale(a, b) for a, b in zip(dec, dec[1:])],
                                                        nn.Conv2d(dec[-1], 3, 5, padding=2), nn.Sigmoid())
                                          for _ in range(2))

        def forward(self, x, side):
            for conv in self.convs:
                x = nn.functional.leaky_relu(conv(x), 0.1)
            x = self.dense_out(self.dense_in(x.flatten(1)))
            x = self.upscale(x.view(-1, s.dense_channels, s.dense_side, s.dense_side))
            return self.decoders[side](x)

    model = Model()
    assert sum(p.numel() for p in model.parameters()) == 82_062_470
    return model


def torch_stepper(batch: int, channels_last: bool, precision: str):
    import torch

    model = torch_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.5, 0.999))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    data = [torch.rand(batch, 3, 64, 64).contiguous(memory_format=fmt) for _ in range(4)]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            loss = (model(data[0], 0).float() - data[1]).abs().mean() + (model(data[2], 1).float() - data[3]).abs().mean()
        loss.backward()
        optimizer.step()
        return float(loss)
    return step


def jax_stepper(batch: int, precision: str):
    """facepipe's training step, with the 2017 recipe, on 64 random faces a person."""
    settings = dataclasses.replace(section(load_params(ROOT / "params.yaml"), "train"), recipe="original",
                                   preset="original", coverage=0.625, learning_rate=None, batch_size=batch, seed=0)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (64, 256, 256, 4), np.uint8) for _ in range(2)]
    for f in faces:
        f[..., 3] %= 4  # region labels
    trainer = train.Trainer(*faces, settings, precision)

    def step():
        loss_a, loss_b = trainer.step()
        return float(loss_a) + float(loss_b)
    return step


def seconds(step, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="faces per person per step")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per round and framework")
    parser.add_argument("--precision", choices=sorted(devices.DTYPES), default="float32")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    steppers = {"jax": jax_stepper(args.batch, args.precision)}
    layouts = {}
    for channels_last in (False, True):  # give PyTorch its faster memory layout
        step = torch_stepper(args.batch, channels_last, args.precision)
        step()
        layouts[channels_last] = seconds(step, 2)
    steppers["torch"] = torch_stepper(args.batch, min(layouts, key=layouts.get), args.precision)
    for step in steppers.values():
        step()  # compile / warm up
    times = {name: [] for name in steppers}
    for _ in range(args.rounds):
        for name, step in steppers.items():
            # Training runs step after step: after the other framework ran, let its worker
            # threads stop spinning and take one untimed step to warm caches and memory.
            time.sleep(1)
            step()
            times[name].append(seconds(step, args.steps))
    faces = 2 * args.batch
    step_flops = 3 * forward_flops(ModelSettings.from_preset("original")) * faces
    peak = matmul_flops_per_s(args.precision)
    result = {"cpu": devices.cpu_model(), "machine": f"{os.cpu_count()} cores, {jax.devices()[0].device_kind}",
              "precision": args.precision, "batch_per_person": args.batch,
              "torch_version": torch.__version__, "jax_version": jax.__version__,
              "torch_channels_last": min(layouts, key=layouts.get),
              "step_gflop": round(step_flops / 1e9, 1), "matmul_gflop_per_s": round(peak / 1e9, 1)}
    for name, runs in times.items():
        median = statistics.median(runs)
        result[name] = {"faces_per_s": round(faces / median, 2), "step_seconds": round(median, 3),
                        "step_seconds_runs": [round(t, 3) for t in runs],
                        "gflop_per_s": round(step_flops / median / 1e9, 1)}
        result[f"{name}_share_of_matmul_peak_ratio"] = round(step_flops / median / peak, 3)
        print(f"{name}: {result[name]}", file=sys.stderr)
    result["jax_vs_torch_faces_per_s_ratio"] = round(result["jax"]["faces_per_s"] / result["torch"]["faces_per_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
