"""`make setup` installs the CUDA build of JAX when nvidia-smi lists a GPU (or ACCEL says
so) and the CPU build otherwise, and says which and why; the CUDA extras resolve for real.

The Makefile is run as `make -n setup` with a throwaway VENV, so nothing is installed: its
GPU detection runs for real (it runs while make reads the Makefile) against a fake
nvidia-smi, and the dry run shows the line it would print and the extra pip would get."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
# What the Makefile runs while it is read (GPU detection, the stamp), besides nvidia-smi.
TOOLS = ("sh", "sed", "awk", "head", "wc", "tr", "cat", "printf")
H200 = "NVIDIA H200"
NEW_DRIVER = "580.95.05"

pytestmark = pytest.mark.skipif(MAKE is None, reason="make not found")


@pytest.fixture
def tools(tmp_path) -> Path:
    """A PATH folder with the tools the Makefile needs and no nvidia-smi, even on a
    machine that has one (it is usually in /usr/bin beside sed and awk)."""
    path = tmp_path / "tools"
    path.mkdir()
    for tool in TOOLS:
        if found := shutil.which(tool):
            (path / tool).symlink_to(found)
    assert shutil.which("nvidia-smi", path=str(path)) is None
    return path


def fake_nvidia_smi(folder: Path, gpus: list[tuple[str, str]] | None = None, driver: str = NEW_DRIVER,
                    failure: str | None = None) -> Path:
    """An nvidia-smi answering `-L` and the driver/compute capability query as the real one
    does for `gpus` ((name, compute capability) each), or failing with `failure`."""
    folder.mkdir(exist_ok=True)
    if failure is not None:
        body = f"echo '{failure}'\nexit 9\n"
    else:
        listing = "\n".join(f"GPU {i}: {name} (UUID: GPU-3f9c1e2a-7b4d-4c1e-9a0f-2d6b8e5c1a3{i})"
                            for i, (name, _) in enumerate(gpus))
        query = "\n".join(f"{driver}, {cap}" for _, cap in gpus)
        body = (f'case "$*" in\n'
                f"  -L) cat <<'EOF'\n{listing}\nEOF\n  ;;\n"
                f"  *--query-gpu=driver_version,compute_cap*) cat <<'EOF'\n{query}\nEOF\n  ;;\n"
                f"  *) exit 2 ;;\nesac\n")
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return folder


def make_env(path: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "GNUMAKEFLAGS", "ACCEL", "VENV")}
    env["PATH"] = path
    env["LC_ALL"] = "C"
    return env


def dry_setup(venv: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    """`make -n setup` into the throwaway `venv`, with `path` as PATH."""
    return subprocess.run([MAKE, "-n", "setup", f"VENV={venv}", *args], cwd=ROOT, env=make_env(path),
                          capture_output=True, text=True, timeout=60)


def choice(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """The line `make setup` would print, and the extras it would install."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = re.findall(r'^echo "(setup: .*)"$', proc.stdout, re.MULTILINE)
    extras = re.findall(r"pip install --quiet -e '\.\[(.*)\]'$", proc.stdout, re.MULTILINE)
    assert len(said) == 1 and len(extras) == 1, proc.stdout
    return said[0], extras[0]


CUDA = f"setup: installing the CUDA build of JAX (nvidia-smi found: {H200})"
CPU = "setup: installing the CPU build of JAX (no GPU found; ACCEL=cuda to force)"


def test_gpu_selects_cuda(tmp_path, tools):
    fake = fake_nvidia_smi(tmp_path / "fake", [(H200, "9.0")])
    proc = dry_setup(tmp_path / "venv", f"{fake}:{tools}")
    assert choice(proc) == (CUDA, "test,cuda")
    # Switching to CUDA removes a CUDA 12 plugin left by an earlier setup.
    assert re.search(r"pip uninstall .* jax-cuda12-plugin jax-cuda12-pjrt$", proc.stdout, re.MULTILINE)
    assert not (tmp_path / "venv").exists()


def test_no_nvidia_smi_selects_cpu(tmp_path, tools):
    proc = dry_setup(tmp_path / "venv", str(tools))
    assert choice(proc) == (CPU, "test")
    assert re.search(r"pip uninstall .* jax-cuda13-plugin jax-cuda13-pjrt jax-cuda12-plugin jax-cuda12-pjrt$",
                     proc.stdout, re.MULTILINE)


@pytest.mark.parametrize("failure", [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.",
    "No devices were found",
])
def test_nvidia_smi_without_gpu_selects_cpu(tmp_path, tools, failure):
    fake = fake_nvidia_smi(tmp_path / "fake", failure=failure)
    assert choice(dry_setup(tmp_path / "venv", f"{fake}:{tools}")) == (CPU, "test")


@pytest.mark.parametrize("gpus, driver, why", [
    ([(H200, "9.0")], "550.54.15", f"{H200}, driver 550.54.15, compute capability 9.0"),
    ([("Tesla V100-SXM2-16GB", "7.0")], NEW_DRIVER, f"Tesla V100-SXM2-16GB, driver {NEW_DRIVER}, compute capability 7.0"),
    ([(H200, "9.0"), ("Tesla V100-SXM2-16GB", "7.0")], NEW_DRIVER, f"2 x {H200}, driver {NEW_DRIVER}, compute capability 7.0"),
])
def test_old_driver_or_gpu_selects_cuda12(tmp_path, tools, gpus, driver, why):
    """CUDA 13 needs driver 580+ and compute capability 7.5+; below, the CUDA 13 build would
    leave JAX on the CPU, so setup takes CUDA 12."""
    fake = fake_nvidia_smi(tmp_path / "fake", gpus, driver=driver)
    said, extras = choice(dry_setup(tmp_path / "venv", f"{fake}:{tools}"))
    assert said == (f"setup: installing the CUDA 12 build of JAX (nvidia-smi found: {why}; "
                    "CUDA 13 needs driver 580+ and 7.5+)")
    assert extras == "test,cuda12"


def test_several_gpus(tmp_path, tools):
    fake = fake_nvidia_smi(tmp_path / "fake", [(H200, "9.0")] * 8)
    assert choice(dry_setup(tmp_path / "venv", f"{fake}:{tools}")) == (
        f"setup: installing the CUDA build of JAX (nvidia-smi found: 8 x {H200})", "test,cuda")


@pytest.mark.parametrize("gpu, accel, said, extras", [
    (True, "cpu", "setup: installing the CPU build of JAX (ACCEL=cpu)", "test"),
    (False, "cuda", "setup: installing the CUDA build of JAX (ACCEL=cuda)", "test,cuda"),
    (False, "cuda12", "setup: installing the CUDA 12 build of JAX (ACCEL=cuda12)", "test,cuda12"),
    (True, "auto", CUDA, "test,cuda"),
    (False, "auto", CPU, "test"),
])
def test_accel_overrides_detection(tmp_path, tools, gpu, accel, said, extras):
    path = f"{fake_nvidia_smi(tmp_path / 'fake', [(H200, '9.0')])}:{tools}" if gpu else str(tools)
    assert choice(dry_setup(tmp_path / "venv", path, f"ACCEL={accel}")) == (said, extras)


def test_accel_from_environment(tmp_path, tools):
    fake = fake_nvidia_smi(tmp_path / "fake", [(H200, "9.0")])
    env = make_env(f"{fake}:{tools}") | {"ACCEL": "cpu"}
    proc = subprocess.run([MAKE, "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert choice(proc) == ("setup: installing the CPU build of JAX (ACCEL=cpu)", "test")


@pytest.mark.parametrize("accel", ["rocm", "gpu", "CUDA", "", "cpu cuda"])
def test_unknown_accel_is_one_line_error(tmp_path, tools, accel):
    proc = dry_setup(tmp_path / "venv", str(tools), f"ACCEL={accel}")
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"ACCEL={accel} is not a known accelerator; use ACCEL=auto, cpu, cuda or cuda12" in lines[0]
    # Every target refuses it, not only setup.
    proc = subprocess.run([MAKE, "-n", "test", f"VENV={tmp_path / 'venv'}", f"ACCEL={accel}"], cwd=ROOT,
                          env=make_env(str(tools)), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and f"ACCEL={accel} is not" in proc.stderr


@pytest.mark.parametrize("installed, gpu, accel, reinstall", [
    ("cpu", False, None, None),                   # up to date: nothing to do
    ("", False, None, None),                      # a stamp from before ACCEL: the CPU build
    ("", True, None, "test,cuda"),                # ... on a GPU machine: now the CUDA build
    ("cpu", False, "cuda", "test,cuda"),          # switching really reinstalls
    ("cpu", True, None, "test,cuda"),
    ("cuda", True, None, None),
    ("cuda", True, "cpu", "test"),
    ("cuda", False, None, "test"),
    ("cuda", True, "cuda12", "test,cuda12"),
])
def test_stamp_records_the_build(tmp_path, tools, installed, gpu, accel, reinstall):
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".installed"
    stamp.write_text(f"{installed}\n" if installed else "")
    newer = (ROOT / "pyproject.toml").stat().st_mtime + 60
    os.utime(stamp, (newer, newer))
    path = f"{fake_nvidia_smi(tmp_path / 'fake', [(H200, '9.0')])}:{tools}" if gpu else str(tools)
    proc = dry_setup(venv, path, *([f"ACCEL={accel}"] if accel else []))
    if reinstall is None:
        assert proc.returncode == 0 and "Nothing to be done for 'setup'" in proc.stdout, proc.stdout + proc.stderr
    else:
        assert choice(proc)[1] == reinstall
        build = {"test": "cpu", "test,cuda": "cuda", "test,cuda12": "cuda12"}[reinstall]
        assert re.search(rf"^echo {build} > {re.escape(str(stamp))}$", proc.stdout, re.MULTILINE), proc.stdout


def test_this_machine(tmp_path):
    """With the real PATH: the CUDA build exactly when the real nvidia-smi lists a GPU (on
    a machine without one, as the test machine, `make setup` installs the CPU build)."""
    smi = shutil.which("nvidia-smi")
    listing = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    has_gpu = re.search(r"^GPU \d+: .* \(UUID: ", listing, re.MULTILINE) is not None
    said, extras = choice(dry_setup(tmp_path / "venv", os.environ["PATH"]))
    if has_gpu:
        assert said.startswith("setup: installing the CUDA") and extras in ("test,cuda", "test,cuda12")
    else:
        assert (said, extras) == (CPU, "test")


# A network problem, as opposed to a resolution that fails.
NETWORK_ERRORS = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
                            r"resolution|Name or service not known|Network is unreachable|ConnectTimeoutError|"
                            r"ReadTimeoutError|ProxyError|Max retries exceeded|Could not fetch URL")
# pip logs a full download as "Downloading <url> (124.3 MB)"; metadata is kB.
DOWNLOAD = re.compile(r"^\s*Downloading (\S+) \(([\d.]+) (kB|MB|GB)\)", re.MULTILINE)


@pytest.mark.parametrize("extra, cuda", [("cuda", "13"), ("cuda12", "12")])
def test_cuda_extra_resolves(tmp_path, extra, cuda):
    """pip resolves `.[cuda]` / `.[cuda12]` on the package index, into this venv: JAX's CUDA
    plugin of the same version as the installed jax, and NVIDIA's CUDA libraries.
    Metadata only: PyPI serves wheels' metadata alone (PEP 658), and fast-deps reads it
    with range requests from indexes that do not (otherwise the NVIDIA wheels, 2.5 GB,
    would be downloaded just to read it)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--report", str(report), "--retries", "1",
           "--timeout", "30", "--progress-bar", "off", "--use-feature=fast-deps", f".[{extra}]"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "fast-deps" in proc.stderr and "invalid choice" in proc.stderr:
        cmd.remove("--use-feature=fast-deps")  # a pip without it: PEP 658 metadata alone
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 and NETWORK_ERRORS.search(log):
        message = f"package index unreachable, cannot resolve .[{extra}]:\n{log[-3000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert proc.returncode == 0, log[-6000:]
    big = [(url, size, unit) for url, size, unit in DOWNLOAD.findall(log)
           if unit == "GB" or (unit == "MB" and float(size) > 20)]
    assert not big, f"pip downloaded whole wheels to resolve: {big}"

    resolved = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()}
    resolved |= {item["metadata"]["name"].lower(): item["metadata"]["version"]
                 for item in json.loads(report.read_text())["install"]}
    jax = importlib.metadata.version("jax")
    assert resolved.get(f"jax-cuda{cuda}-plugin") == jax, (jax, sorted(resolved))
    assert resolved.get(f"jax-cuda{cuda}-pjrt") == jax
    assert resolved.get("jaxlib") == jax
    cudnn = f"nvidia-cudnn-cu{cuda}"
    assert cudnn in resolved, f"no CUDA libraries ({cudnn}) resolved: {sorted(resolved)}"
    print(f".[{extra}] resolved in {seconds:.1f} s: jax-cuda{cuda}-plugin {jax}, {cudnn} {resolved[cudnn]}")
