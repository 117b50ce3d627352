"""Shared fixtures: the test media, and real facepipe projects built with Snakemake."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # facepipe, snakemake and dvc live beside this python, called by path


def media_dir() -> Path:
    return Path(os.environ.get("FACEPIPE_MEDIA", ROOT / ".." / "shared" / "media")).resolve()


@pytest.fixture(scope="session")
def media() -> Path:
    path = media_dir()
    if not (path / "woman_a.mp4").is_file():
        message = f"test media not found in {path}; set FACEPIPE_MEDIA"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def env() -> dict:
    """The environment of every command a test runs: as a user's who did not activate
    .venv (tools are called by path), so nothing relies on its bin folder on PATH."""
    e = dict(os.environ)
    e["PATH"] = os.pathsep.join(p for p in e.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN)
    e.setdefault("JAX_PLATFORMS", "cpu")
    return e


def run(cmd: list[str], cwd: Path, check: bool = True, environment: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=environment or env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def snakemake(cwd: Path, *args: str, check: bool = True, environment: dict | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), "--cores", "2", *args], cwd, check, environment)


# save_every: a training killed in the fault campaign's test redoes at most 50 steps.
TINY_PARAMS = {
    "frames": {"fps": 5, "duration": 8},
    "train": {"preset": "tiny", "steps": 300, "batch_size": 8, "learning_rate": 5e-4,
              "save_every": 50, "preview_every": 100},
}


def make_project(path: Path, config: dict, params: dict | None = None) -> Path:
    """A fresh facepipe project: this repo's workflow, a config and tiny params. Its
    `media` links to the test media, so configs name them by the same relative paths on
    every machine: source ids, face file names, held-out faces and the batches drawn,
    and so every figure a test checks, do not depend on where the media are."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "media").symlink_to(media_dir(), target_is_directory=True)
    shutil.copy(ROOT / "Snakefile", path)
    shutil.copytree(ROOT / "workflow", path / "workflow")
    shutil.copy(ROOT / ".gitignore", path)
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())
    for overrides in (TINY_PARAMS, params or {}):
        for stage, values in overrides.items():
            settings[stage].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (path / "config").mkdir(exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pair_config() -> dict:
    """woman_a <-> woman_b, by their paths in a `make_project` project."""
    return {
        "people": {"woman_a": {"sources": ["media/woman_a.mp4"]},
                   "woman_b": {"sources": ["media/woman_b.mp4"]}},
        "pairs": {"wa_wb": {"a": "woman_a", "b": "woman_b"}},
        "swaps": {"wa_as_wb": {"pair": "wa_wb", "video": "media/woman_a.mp4", "from": "woman_a",
                               "start": 0, "duration": 2}},
    }


def made_once(tmp_path_factory, worker_id: str, name: str, make) -> Path:
    """The folder `name`, filled by `make(folder)` once per session and shared by the
    pytest-xdist workers (`make test` runs two): the first to ask makes it, the others
    wait for it; after a failure (its error is in that worker's test) the next one tries
    again. Tests copy what they change."""
    # Workers' temporary folders are inside the session's.
    root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    folder, made = root / name, root / f"{name}.made"
    with FileLock(root / f"{name}.lock"):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session")
def built(media, tmp_path_factory, worker_id) -> Path:
    """woman_a <-> woman_b built end to end by `snakemake`, versioned by DVC."""
    def build(folder: Path) -> None:
        project = make_project(folder / "project", pair_config())
        run(["git", "init", "-q"], project)
        run([str(BIN / "dvc"), "init", "-q"], project)
        shutil.copy(ROOT / ".dvcignore", project)
        snakemake(project)

    return made_once(tmp_path_factory, worker_id, "built", build) / "project"


def copy_project(src: Path, dst: Path) -> Path:
    """A copy keeping modification times, as Snakemake compares them."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    return dst


def edit_yaml(project: Path, path: str, change) -> None:
    """Apply `change` (a function that edits the loaded data in place) to a YAML file of `project`."""
    data = yaml.safe_load((project / path).read_text())
    change(data)
    (project / path).write_text(yaml.safe_dump(data, sort_keys=False))


def rules_run(proc: subprocess.CompletedProcess) -> set[str]:
    """The rules a `snakemake` run ran, from its log."""
    return set(re.findall(r"^(?:local)?rule (\w+):$", proc.stdout + proc.stderr, re.MULTILINE))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def pytest_configure(config):
    """One compile cache for the session, empty at its start (so a run's time does not
    depend on earlier runs): every facepipe command a test starts, and the tests' own
    in-process JAX code, compile each program once (cli.use_compile_cache)."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its controller set it up
        return
    config.compile_cache = tempfile.mkdtemp(prefix="facepipe-test-compile-cache-")
    os.environ["FACEPIPE_COMPILE_CACHE"] = config.compile_cache
    from facepipe.cli import use_compile_cache

    use_compile_cache()  # for this process's JAX too, before anything imports it


def pytest_unconfigure(config):
    if hasattr(config, "compile_cache"):
        shutil.rmtree(config.compile_cache, ignore_errors=True)


# Fixtures that are whole Snakemake builds: a test using one is an end-to-end test.
BUILDS = {"built", "stage_build"}


def pytest_collection_modifyitems(items):
    """`slow` marks the end-to-end builds (`make test-fast` leaves them out).

    The order is the one `make test`'s two workers take tests (or files) in
    (pytest-xdist): the first test that needs the shared build (its worker builds it),
    then every test that needs none (the other worker runs them meanwhile), then the
    rest."""
    def needs_build(item) -> bool:
        return "built" in getattr(item, "fixturenames", ())

    for item in items:
        if BUILDS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    first = next((i for i, item in enumerate(items) if needs_build(item)), None)
    rank = {id(item): (0 if i == first else 2 if needs_build(item) else 1, i) for i, item in enumerate(items)}
    items.sort(key=lambda item: rank[id(item)])


def earlier_output(path: Path, folder: bool = False):
    """Put an earlier build's output at `path` (a file, or a folder with a file); returns
    a check, for after a refused or failed run, that it is still there untouched and that
    nothing else (a half-written copy) appeared beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = path / "earlier.txt" if folder else path
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("an earlier build's output\n")
    siblings = sorted(p.name for p in path.parent.iterdir())

    def check():
        assert marker.read_text() == "an earlier build's output\n", f"{path} was damaged"
        assert not folder or sorted(p.name for p in path.iterdir()) == ["earlier.txt"], f"{path} was changed"
        assert sorted(p.name for p in path.parent.iterdir()) == siblings, f"left beside {path}"
    return check
