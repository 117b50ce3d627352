"""The same Snakefile on a cluster: a real one-node Slurm (tests/servers/slurm.py) runs
the training, the swap and their evaluations of the tiny build through Snakemake's Slurm
executor (workflow/profiles/slurm), and they come out byte for byte as the laptop
build's."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import BIN, copy_project, env, rules_run, run
from servers.slurm import SlurmCluster
from test_pipeline import dvc_outputs


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


def test_a_build_on_slurm_gives_the_laptop_builds_bytes(built, slurm, tmp_path):
    project = copy_project(built, tmp_path / "p")
    shutil.rmtree(project / "results/checkpoints")  # so train really trains, on the cluster
    command = ["timeout", "-s", "INT", "900", str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm",
               "--forcerun", "train", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "2", "--slurm-logdir", str(tmp_path / "slurm-logs")]
    started = time.monotonic()
    proc = run(command, project, environment={**env(), "SLURM_CONF": str(slurm.conf)})
    seconds = time.monotonic() - started
    assert rules_run(proc) == {"train", "convert", "evaluate", "all"}

    jobs = slurm.finished_jobs()
    print(f"cluster build: {seconds:.0f} s, {len(jobs)} Slurm jobs")
    assert len(jobs) == 4 and {job["JobState"] for job in jobs} == {"COMPLETED"}, jobs
    # Each job got its rule's resources: 2 CPUs, its memory, and the GPU train and convert ask for.
    assert all("cpu=2" in job["Tres"] for job in jobs), jobs
    assert sum("gres/gpu=1" in job["Tres"] for job in jobs) == 2 and sum("mem=8000M" in job["Tres"] for job in jobs) == 1

    laptop, cluster = dvc_outputs(built), dvc_outputs(project)
    timed = "results/models/wa_wb/metrics.json"
    assert laptop.keys() == cluster.keys()
    assert {path for path in laptop if laptop[path] != cluster[path] and path != timed} == set()
    assert json.loads((project / timed).read_text())["steps_this_run"] == 300  # trained from scratch
