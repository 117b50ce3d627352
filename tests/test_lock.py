"""uv.lock pins every package that pyproject.toml asks for, in every build (the extras test,
bench, cuda and cuda12, and the `setup` group: uv itself), with their hashes; `make lock`
writes it and `make setup` installs from it, refusing a lock that disagrees with
pyproject.toml. The check is uv's own, `uv lock --check`, run offline: it accepts a current
lock without the network or a cache; a lock that disagrees it rejects, saying it needs
updating (or, when its cache cannot answer the new resolution, that it cannot resolve).
Which requirement disagrees it does not say, so `lock_disagreements` adds that, from the
requirements of facepipe that uv recorded in the lock when it wrote it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# `make setup` installs uv into the venv, from the lock.
UV = Path(sys.executable).parent / "uv"
BOOTSTRAP = ROOT / "workflow" / "envs" / "bootstrap.txt"


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def declared_requirements(pyproject: Path) -> dict[tuple[str, str], Requirement]:
    """What pyproject.toml asks for: its dependencies, each extra's and each dependency group's,
    by (list, package): the list is "dependencies", "[extra]" or "group name"."""
    data = tomllib.loads(pyproject.read_text())
    lists = {"dependencies": data["project"]["dependencies"]}
    lists |= {f"[{extra}]": items for extra, items in data["project"].get("optional-dependencies", {}).items()}
    lists |= {f"group {group}": items for group, items in data.get("dependency-groups", {}).items()}
    return {(label, canonicalize_name(Requirement(item).name)): Requirement(item)
            for label, items in lists.items() for item in items}


def locked_requirements(lock: Path) -> dict[tuple[str, str], Requirement]:
    """The same, as uv recorded them for facepipe in uv.lock (requires-dist: dependencies,
    with `extra == '...'` markers for the extras'; requires-dev: the groups')."""
    facepipe, = (package for package in tomllib.loads(lock.read_text())["package"] if package["name"] == "facepipe")
    metadata = facepipe["metadata"]
    entries = []
    for entry in metadata["requires-dist"]:
        extra = re.fullmatch(r"extra == '([^']+)'", entry.get("marker", ""))
        entries.append((f"[{extra[1]}]" if extra else "dependencies", entry, "" if extra else entry.get("marker", "")))
    entries += [(f"group {group}", entry, entry.get("marker", ""))
                for group, items in metadata.get("requires-dev", {}).items() for entry in items]
    requirements = {}
    for label, entry, marker in entries:
        extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
        requirement = Requirement(f"{entry['name']}{extras}{entry.get('specifier', '')}{'; ' + marker if marker else ''}")
        requirements[label, canonicalize_name(requirement.name)] = requirement
    return requirements


def lock_disagreements(project: Path) -> str:
    """Empty when uv.lock in `project` agrees with its pyproject.toml; otherwise uv's verdict
    and one line per requirement that differs."""
    check = uv("lock", "--check", "--offline", cwd=project)
    if check.returncode == 0:
        return ""
    declared = declared_requirements(project / "pyproject.toml")
    locked = locked_requirements(project / "uv.lock")
    lines = [(check.stdout + check.stderr).strip()]
    for key in sorted(declared.keys() | locked.keys()):
        if declared.get(key) != locked.get(key):
            lines.append(f"{key[0]}: pyproject.toml asks for {declared.get(key, 'nothing')}, "
                         f"uv.lock has {locked.get(key, 'nothing')}")
    return "\n".join(lines)


def test_lock_agrees_with_pyproject():
    assert lock_disagreements(ROOT) == "", "run `make lock`"


def test_recorded_requirements_are_read_as_declared():
    """The comparison reads both files alike: it finds no difference in the current lock."""
    assert locked_requirements(ROOT / "uv.lock") == declared_requirements(ROOT / "pyproject.toml")


@pytest.mark.parametrize("old, new, disagreement", [
    # A dependency added to pyproject.toml only.
    ('    "numpy>=1.26",\n', '    "numpy>=1.26",\n    "rich>=13",\n',
     "dependencies: pyproject.toml asks for rich>=13, uv.lock has nothing"),
    # A dependency dropped from pyproject.toml only.
    ('    "tqdm>=4.66",\n', "", "dependencies: pyproject.toml asks for nothing, uv.lock has tqdm>=4.66"),
    # An extra's pin changed.
    ('bench = ["torch==2.13.0"]', 'bench = ["torch==2.14.0"]',
     "[bench]: pyproject.toml asks for torch==2.14.0, uv.lock has torch==2.13.0"),
    # uv's own pin, in the setup group.
    ('"uv==0.13.9"', '"uv==0.13.8"', "group setup: pyproject.toml asks for uv==0.13.8, uv.lock has uv==0.13.9"),
])
def test_check_names_what_pyproject_changed(tmp_path, old, new, disagreement):
    """pyproject.toml and uv.lock copied, pyproject.toml edited, the lock not: the check fails
    and names the requirement."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert pyproject.count(old) == 1, old
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(old, new))
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    assert lock_disagreements(tmp_path).splitlines()[-1] == disagreement


def test_every_file_in_the_lock_has_a_hash():
    """Every wheel and source archive of every package of every build, for every platform."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    files = unhashed = 0
    for package in lock["package"]:
        if package["name"] == "facepipe":  # the project itself, installed editable
            continue
        assert "registry" in package["source"], (package["name"], package["source"])
        for file in package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else []):
            files += 1
            unhashed += not file.get("hash", "").startswith("sha256:")
    assert files > 1000 and unhashed == 0, (files, unhashed)


def test_extras_are_locked():
    """Every extra pyproject.toml lists (test, cluster, bench, cuda, cuda12), with the two
    CUDA builds resolved apart (they conflict: one JAX plugin at a time)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    facepipe, = (package for package in lock["package"] if package["name"] == "facepipe")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(facepipe["optional-dependencies"]) == sorted(extras) == ["bench", "cluster", "cuda", "cuda12", "test"]
    assert sorted(facepipe["dev-dependencies"]) == ["setup"]
    versions = {package["name"]: package["version"] for package in lock["package"]}
    assert versions["torch"] == "2.13.0"
    assert {"jax-cuda13-plugin", "jax-cuda12-plugin", "snakemake-executor-plugin-slurm", "dvc-ssh"} <= versions.keys()


def test_bootstrap_is_the_locked_uv():
    """pip installs uv (and setuptools) from workflow/envs/bootstrap.txt before uv takes over:
    it must be what `make lock` exports from the lock, pins and hashes."""
    export = uv("export", "--frozen", "--quiet", "--only-group", "setup", "--no-header", cwd=ROOT)
    assert export.returncode == 0, export.stderr
    requirements = [line for line in BOOTSTRAP.read_text().splitlines() if not line.startswith("#")]
    assert requirements == export.stdout.splitlines(), "run `make lock`"
    assert re.search(r"^uv==\S+ \\\n +--hash=sha256:", BOOTSTRAP.read_text(), re.MULTILINE)
