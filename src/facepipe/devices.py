"""Which devices a JAX stage computes on, and at which precision.

`train.precision` is `auto`, `float32` or `bfloat16` (parameters and optimizer state stay
float32 either way; bfloat16 is the precision of convolutions and matrix products).
`auto` is bfloat16 on a GPU, whose matrix units run it several times faster, and
float32 on a CPU, where XLA's bfloat16 convolutions are slower (measured on AMD EPYC, 2
cores, batch 16: a training step of the original model 3.2 s in float32 against 3.5 s
in bfloat16, of lite 0.74 s against 0.87 s; benchmarks/train_throughput.py
--precision)."""

from __future__ import annotations

import platform
from pathlib import Path

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def precision(setting: str) -> str:
    """The precision `setting` means on this machine's devices."""
    if setting != "auto":
        return setting
    return "bfloat16" if jax.default_backend() == "gpu" else "float32"


def cpu_model() -> str:
    """The processor's model name, as lscpu gives it (speed figures depend on it)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe() -> str:
    """e.g. "1 x NVIDIA H200" or "1 x cpu (AMD EPYC)"."""
    devices = jax.devices()
    kind = devices[0].device_kind
    return f"{len(devices)} x {kind}" + (f" ({cpu_model()})" if devices[0].platform == "cpu" else "")


def announce(stage: str, setting: str) -> str:
    """Log once which devices `stage` uses and at which precision; returns the precision."""
    resolved = precision(setting)
    print(f"{stage}: {describe()}, {resolved}", flush=True)
    return resolved
