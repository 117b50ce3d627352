"""`make setup` installs the CUDA build of JAX when nvidia-smi lists a GPU (or ACCEL says
so) and the CPU build otherwise, and says which and why; every build installs from uv.lock.

The Makefile is run as `make -n setup` with a throwaway VENV, so nothing is installed: its
GPU detection runs for real (it runs while make reads the Makefile) against a fake
nvidia-smi, and the dry run shows the line it would print and the extras uv would sync.
That `uv sync` line then runs for real with --dry-run, against the lock, into a throwaway
venv: what each build would install, with no network and no downloads."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from venv import create as create_venv

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
# What the Makefile runs while it is read (GPU detection, the stamp), besides nvidia-smi.
TOOLS = ("sh", "sed", "awk", "head", "wc", "tr", "cat", "printf")
H200 = "NVIDIA H200"
# The files whose change makes `make setup` reinstall.
STAMP_INPUTS = ("pyproject.toml", "uv.lock", "workflow/envs/bootstrap.txt")
# `make setup` installs uv into the venv, from the lock.
UV = Path(sys.executable).parent / "uv"
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


def sync_command(proc: subprocess.CompletedProcess) -> str:
    """The `uv sync` line of a `make -n setup`."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    syncs = re.findall(r"^\S*/bin/uv sync .*$", proc.stdout, re.MULTILINE)
    assert len(syncs) == 1, proc.stdout
    return syncs[0]


def choice(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """The line `make setup` would print, and the extras it would install (comma-separated)."""
    said = re.findall(r'^echo "(setup: .*)"$', proc.stdout, re.MULTILINE)
    extras = re.findall(r"--extra (\S+)", sync_command(proc))
    assert len(said) == 1, proc.stdout
    return said[0], ",".join(extras)


CUDA = f"setup: installing the CUDA build of JAX (nvidia-smi found: {H200})"
CPU = "setup: installing the CPU build of JAX (no GPU found; ACCEL=cuda to force)"


def test_gpu_selects_cuda(tmp_path, tools):
    fake = fake_nvidia_smi(tmp_path / "fake", [(H200, "9.0")])
    proc = dry_setup(tmp_path / "venv", f"{fake}:{tools}")
    assert choice(proc) == (CUDA, "test,cuda")
    assert not (tmp_path / "venv").exists()


def test_no_nvidia_smi_selects_cpu(tmp_path, tools):
    assert choice(dry_setup(tmp_path / "venv", str(tools))) == (CPU, "test")


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
    newer = max((ROOT / name).stat().st_mtime for name in STAMP_INPUTS) + 60
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


def dry_sync(tmp_path, accel: str, leftovers: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """{package: (version, action)}: what the `uv sync` of `make setup ACCEL=accel` would do
    to a fresh venv holding `leftovers` ("name==version" each, as an earlier build would
    leave them). The sync runs for real with --dry-run: from the lock, offline."""
    venv = tmp_path / "venv"
    create_venv(venv)
    site = next(venv.glob("lib/python*/site-packages"))
    for leftover in leftovers:
        name, version = leftover.split("==")
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    plan = subprocess.run([MAKE, "-n", "setup", f"VENV={venv}", f"ACCEL={accel}"], cwd=ROOT,
                          env=make_env(os.environ["PATH"]), capture_output=True, text=True, timeout=60)
    command = shlex.split(sync_command(plan))
    assert command[0] == f"{venv}/bin/uv", command
    proc = subprocess.run([str(UV), *command[1:], "--dry-run", "--offline", "--output-format", "json"], cwd=ROOT,
                          env=os.environ | {"UV_PROJECT_ENVIRONMENT": str(venv)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # (No version for facepipe itself when uv has not built it yet.)
    return {change["name"]: (change.get("version"), change["action"])
            for change in json.loads(proc.stdout)["sync"]["changes"]}


@pytest.mark.parametrize("accel, cuda", [("cpu", None), ("cuda", "13"), ("cuda12", "12")])
def test_build_installs_from_the_lock(tmp_path, accel, cuda):
    """Each build's packages come from uv.lock: the CUDA builds get JAX's CUDA plugin of the
    same version as jax and jaxlib, and NVIDIA's CUDA libraries (only the driver comes from
    the system); the CPU build gets neither. No build installs the benchmarks' torch."""
    plan = dry_sync(tmp_path, accel)
    assert plan["facepipe"][1] == "installed" and "pytest" in plan and "uv" in plan
    assert "torch" not in plan
    jax = plan["jax"]
    assert jax[1] == "installed" and plan["jaxlib"] == jax
    plugins = sorted(name for name in plan if re.fullmatch(r"jax-cuda\d+-(plugin|pjrt)", name))
    if cuda is None:
        assert plugins == [] and not any(name.startswith("nvidia-") for name in plan), sorted(plan)
    else:
        assert plugins == [f"jax-cuda{cuda}-pjrt", f"jax-cuda{cuda}-plugin"]
        assert plan[f"jax-cuda{cuda}-plugin"] == plan[f"jax-cuda{cuda}-pjrt"] == jax
        assert f"nvidia-cudnn-cu{cuda}" in plan, sorted(plan)


@pytest.mark.parametrize("accel, leftover", [("cuda", "12"), ("cuda12", "13"), ("cpu", "13")])
def test_setup_removes_another_builds_plugin(tmp_path, accel, leftover):
    """The sync is exact: a CUDA plugin left by a setup of another build, which would still
    claim the GPU, is uninstalled."""
    plugins = (f"jax-cuda{leftover}-plugin==0.10.2", f"jax-cuda{leftover}-pjrt==0.10.2")
    plan = dry_sync(tmp_path, accel, plugins)
    for plugin in plugins:
        name, version = plugin.split("==")
        assert plan[name] == (version, "uninstalled"), plan.get(name)


def test_every_installed_module_comes_compiled():
    """`make setup` compiles the venv's bytecode once: where Python may not write it
    (PYTHONDONTWRITEBYTECODE, as on the test machines and in many containers) every
    stage's process and every `snakemake` would compile its imports again, 2-3 s each
    (README, Development). Checked on what a Snakemake run and training import."""
    code = ("import sys, snakemake.cli, facepipe.train; "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    files = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    site = Path(sys.executable).parent.parent / "lib"
    sources = [Path(f) for f in files if f.endswith(".py") and Path(f).resolve().is_relative_to(site.resolve())]
    missing = [str(f) for f in sources if not Path(importlib.util.cache_from_source(str(f))).is_file()]
    assert len(sources) > 500 and not missing, f"{len(missing)} of {len(sources)} not compiled: {missing[:5]}"
