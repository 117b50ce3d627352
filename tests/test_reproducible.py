"""Reproducible for real: code is an input of the stages it computes, a rebuild from
nothing gives the same bytes, and `dvc repro` alone builds what `snakemake` builds."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import BIN, ROOT, copy_project, env, run
from test_pipeline import dvc_outputs, planned_jobs

pytestmark = pytest.mark.slow

# What a change to each stage's own module reruns in the woman_a <-> woman_b build: the
# stage and everything downstream (2 sources, 3 clips, 2 people, 1 pair, 1 swap).
RERUN_BY_CODE = {
    "download": {"download": 2, "frames": 3, "detect": 3, "filter": 2, "train": 1, "convert": 1, "evaluate": 2},
    "frames": {"frames": 3, "detect": 3, "filter": 2, "train": 1, "convert": 1, "evaluate": 2},
    "detect": {"detect": 3, "filter": 2, "train": 1, "convert": 1, "evaluate": 2},
    "filter": {"filter": 2, "train": 1, "convert": 1, "evaluate": 2},
    "train": {"train": 1, "convert": 1, "evaluate": 2},
    "convert": {"convert": 1, "evaluate": 1},
    "evaluate": {"evaluate": 2},
}
# A new statement changes what the module does (as the issue's own probe did).
REAL_CHANGE = "\n_REPRODUCIBILITY_PROBE = 1\n"


def comment_only_change(source: str) -> str:
    """Comments, a docstring and formatting changed; nothing the code computes."""
    docstring_end = source.index('"""', 3) + 3
    return ('"""This docstring was reworded."""' + source[docstring_end:]).replace(
        "\n\n\n", "\n\n\n# a comment between definitions\n\n", 1) + "\n\n# a comment at the end\n"


class ProjectWithItsOwnCode:
    """A copy of the built project that runs its own copy of the package (PYTHONPATH),
    so a test can change the code without touching this checkout's."""

    def __init__(self, built, path):
        self.path = copy_project(built, path)
        shutil.copytree(ROOT / "src", self.path / "src", ignore=shutil.ignore_patterns("__pycache__"))
        self.env = {**env(), "PYTHONPATH": str(self.path / "src")}
        self.originals = {}

    def module(self, stage: str):
        return self.path / "src" / "facepipe" / f"{stage}.py"

    def change(self, stage: str, edit) -> None:
        path = self.module(stage)
        self.originals.setdefault(stage, path.read_text())
        path.write_text(edit(self.originals[stage]))

    def restore(self) -> None:
        for stage, text in self.originals.items():
            self.module(stage).write_text(text)

    def run(self, *cmd: str, check: bool = True):
        return run(list(cmd), self.path, check, environment=self.env)

    def planned(self) -> dict[str, int]:
        jobs = planned_jobs(self.path, environment=self.env)
        jobs.pop("all", None)
        return jobs

    def dvc_changed(self) -> set[str]:
        """The stages `dvc status` reports as changed."""
        return set(json.loads(self.run(str(BIN / "dvc"), "status", "--json").stdout or "{}"))


def test_a_change_to_a_stages_code_reruns_it_and_its_dependents_and_a_comment_nothing(built, tmp_path):
    project = ProjectWithItsOwnCode(built, tmp_path / "p")
    assert project.planned() == {}  # the same code, copied: nothing to do

    for stage, expected in RERUN_BY_CODE.items():
        project.change(stage, lambda source: source + REAL_CHANGE)
        assert project.planned() == expected, stage
        project.restore()
    for stage in RERUN_BY_CODE:
        project.change(stage, comment_only_change)
    assert project.planned() == {}
    project.restore()

    # DVC: the `code` stage rewrites the fingerprint files; a stage whose fingerprint
    # changed is then changed for DVC, and `dvc repro` reruns it (and what follows, as
    # far as its outputs change: DVC compares contents).
    python = str(BIN / "python")
    project.run(python, "-m", "facepipe", "dvc-yaml")  # the code is now this project's src/
    project.run(python, "-m", "dvc", "commit", "--force", "--quiet")
    assert project.dvc_changed() == set()
    for stage in RERUN_BY_CODE:
        project.change(stage, comment_only_change)
    assert project.dvc_changed() == {"code"}
    project.run(python, "-m", "dvc", "repro", "--single-item", "code")
    assert project.dvc_changed() == set()  # the comments changed no fingerprint
    project.restore()
    project.change("convert", lambda source: source + REAL_CHANGE)
    assert project.dvc_changed() == {"code"}
    project.run(python, "-m", "dvc", "repro", "--single-item", "code")
    assert project.dvc_changed() == {"convert-wa_as_wb"}
    dry = project.run(python, "-m", "dvc", "repro", "--dry").stdout
    ran = set(re.findall(r"^Running stage '([^']+)'", dry, re.M))
    assert ran == {"convert-wa_as_wb"}, dry  # evaluate follows if convert's output changes


def test_the_build_ran_without_an_activated_environment(built):
    """The tests run `.venv/bin/snakemake` with no .venv/bin on PATH (conftest.env), as a
    user who never activated it: the jobs still found facepipe."""
    assert shutil.which("facepipe", path=env()["PATH"]) is None
    assert (built / "results/swaps/wa_as_wb.mp4").is_file()


def _metrics_without_time(path):
    metrics = json.loads(path.read_text())
    metrics.pop("seconds_this_run")
    return metrics


def test_dvc_repro_in_a_fresh_clone_rebuilds_the_same_bytes(built, tmp_path):
    """From the same inputs and nothing else (no results, no checkpoints, no DVC cache),
    `dvc repro` alone rebuilds every output Snakemake built, byte for byte: frames, faces,
    datasets, weights, the swap video, the reports and metrics (training time aside)."""
    project = copy_project(built, tmp_path / "p")
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "build"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "results/checkpoints").exists() and not (clone / ".dvc/cache").exists()
    assert not (clone / "results/models/wa_wb/weights.msgpack").exists()

    run([str(BIN / "python"), "-m", "dvc", "repro", "--quiet"], clone)
    first, rebuilt = dvc_outputs(project), dvc_outputs(clone)
    assert first.keys() == rebuilt.keys() and len(first) >= 25, sorted(first)
    assert "results/models/wa_wb/weights.msgpack" in first and "results/metrics/swaps/wa_as_wb.json" in first
    timed = "results/models/wa_wb/metrics.json"
    assert _metrics_without_time(clone / timed) == _metrics_without_time(project / timed)
    assert {path for path in first if first[path] != rebuilt[path] and path != timed} == set()
