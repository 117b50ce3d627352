"""The same Snakefile on a cluster: a real one-node Slurm (tests/servers/slurm.py) runs
the training, the swap and their evaluations of the tiny build through Snakemake's Slurm
executor (workflow/profiles/slurm), and they come out byte for byte as the laptop
build's; with train.hosts=2, srun starts the training processes of one job."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import BIN, copy_project, edit_yaml, env, rules_run, run
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
    """The swap and its evaluation rebuilt through Slurm (two jobs, one level of the DAG
    after another: each level costs the executor's polling, so the test keeps it short)."""
    project = copy_project(built, tmp_path / "p")
    command = ["timeout", "-s", "INT", "600", str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm",
               "--forcerun", "convert", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "2", "--slurm-logdir", str(tmp_path / "slurm-logs")]
    started = time.monotonic()
    proc = run(command, project, environment={**env(), "SLURM_CONF": str(slurm.conf)})
    seconds = time.monotonic() - started
    assert rules_run(proc) == {"convert", "evaluate", "all"}

    jobs = slurm.finished_jobs()
    print(f"cluster build: {seconds:.0f} s, {len(jobs)} Slurm jobs")
    assert len(jobs) == 2 and {job["JobState"] for job in jobs} == {"COMPLETED"}, jobs
    # Each job got its rule's resources: 2 CPUs, its memory and time, and convert a GPU.
    asked = {job["JobId"]: slurm.job(job["JobId"]) for job in jobs}
    convert, evaluate = sorted(jobs, key=lambda job: int(job["JobId"]))
    assert "cpu=2,mem=4000M" in convert["Tres"] and convert["TimeLimit"] == "120"
    assert asked[convert["JobId"]].get("TresPerJob") == "gres:gpu:1" and "TresPerJob" not in asked[evaluate["JobId"]]
    assert "cpu=2,mem=4000M" in evaluate["Tres"] and evaluate["TimeLimit"] == "60"

    laptop, cluster = dvc_outputs(built), dvc_outputs(project)
    assert laptop.keys() == cluster.keys()
    assert {path for path in laptop if laptop[path] != cluster[path]} == set()
    compared = ["results/swaps/wa_as_wb.mp4", "results/swaps/wa_as_wb.json", "results/metrics/swaps/wa_as_wb.json"]
    assert all((project / path).read_bytes() == (built / path).read_bytes() for path in compared)


def test_train_asks_the_cluster_for_time_by_its_steps_and_for_a_gpu(built, tmp_path):
    """What train's job would ask Slurm for, from params.yaml (a dry run, no cluster)."""
    project = copy_project(built, tmp_path / "p")
    planned = run([str(BIN / "snakemake"), "-n", "--forcerun", "train", "--cores", "2"], project).stdout
    train = planned[planned.index("rule train:"):].split("\n\n", 1)[0]
    assert "runtime=32" in train and "gpu=1" in train and "mem_mb=8000" in train, train  # 30 min + 300 x 0.25 s


def test_train_hosts_starts_the_training_processes_with_srun(built, slurm, tmp_path):
    """train.hosts=2: one Slurm job whose command starts two training processes with
    srun; they find each other in Slurm's environment and train one model. This cluster
    has one node, which plays both hosts (nodes=1), one fake GPU (so none: gpu=0) and 2
    CPUs (one a process)."""
    project = copy_project(built, tmp_path / "p")
    shutil.rmtree(project / "results/checkpoints")  # so train really trains, on the cluster
    edit_yaml(project, "params.yaml", lambda params: params["train"].update(hosts=2, steps=10))
    earlier = len(slurm.finished_jobs())
    command = ["timeout", "-s", "INT", "600", str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm",
               "results/models/wa_wb/weights.msgpack", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "2", "--slurm-logdir", str(tmp_path / "slurm-logs"),
               "--set-resources", "train:nodes=1", "train:gpu=0", "--set-threads", "train=1"]
    started = time.monotonic()
    proc = run(command, project, environment={**env(), "SLURM_CONF": str(slurm.conf)})
    print(f"train on 2 Slurm tasks: {time.monotonic() - started:.0f} s")
    assert rules_run(proc) == {"train"}
    (job,) = slurm.finished_jobs()[earlier:]
    asked = slurm.job(job["JobId"])
    assert job["JobState"] == "COMPLETED" and asked["NumTasks"] == "2" and asked["NumNodes"] == "1", asked
    log = (project / "logs/train/wa_wb.log").read_text()
    assert "train: data parallel over 2 devices (cpu) in 2 processes" in log
    assert json.loads((project / "results/models/wa_wb/metrics.json").read_text())["steps"] == 10
