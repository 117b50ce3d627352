"""The same Snakefile on a cluster: a real one-node Slurm (tests/servers/slurm.py) runs
two builds at once through Snakemake's Slurm executor (workflow/profiles/slurm): the
tiny build's swap and its evaluation, which come out byte for byte as the laptop
build's, and a training with train.hosts=2, whose job starts its two processes with
srun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def slurm_build(project, slurm, logs, *args: str) -> subprocess.Popen:
    """Snakemake with the Slurm profile, asking squeue for job states (this cluster has no
    accounting) soon after each submission, bounded in time (the executor would wait for
    ever on a cluster that stopped answering)."""
    command = ["timeout", "-s", "INT", "600", str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm",
               "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
               "--slurm-logdir", str(logs), *args]
    return subprocess.Popen(command, cwd=project, env={**env(), "SLURM_CONF": str(slurm.conf)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_build_and_a_two_host_training_on_slurm_at_once(built, slurm, tmp_path):
    """Two builds on the cluster at once, as a team's would be:
    - the swap and its evaluation rebuilt through Slurm (two jobs, one level of the DAG
      after the other: each level costs the executor's polling, so the DAG is short)
      come out byte for byte as the laptop build's;
    - with train.hosts=2, one training job whose command starts two processes with
      srun; they find each other in Slurm's environment and train one model. The one
      node plays both hosts (nodes=1), has one fake GPU (so the training asks for none:
      gpu=0) and 2 CPUs a build (one a training process)."""
    swap, training = copy_project(built, tmp_path / "swap"), copy_project(built, tmp_path / "training")
    shutil.rmtree(training / "results/checkpoints")  # so train really trains, on the cluster
    edit_yaml(training, "params.yaml", lambda params: params["train"].update(hosts=2, steps=10))
    started = time.monotonic()
    builds = {
        "swap": slurm_build(swap, slurm, tmp_path / "logs-swap", "--forcerun", "convert"),
        "training": slurm_build(training, slurm, tmp_path / "logs-training", "results/models/wa_wb/weights.msgpack",
                                "--set-resources", "train:nodes=1", "train:gpu=0", "--set-threads", "train=1"),
    }
    outputs = {name: proc.communicate()[0] for name, proc in builds.items()}
    seconds = time.monotonic() - started
    for name, proc in builds.items():
        assert proc.returncode == 0, (name, outputs[name][-4000:])
    assert rules_run(subprocess.CompletedProcess([], 0, outputs["swap"], "")) == {"convert", "evaluate", "all"}
    assert rules_run(subprocess.CompletedProcess([], 0, outputs["training"], "")) == {"train"}

    jobs = slurm.finished_jobs()
    print(f"cluster builds: {seconds:.0f} s, {len(jobs)} Slurm jobs")
    assert len(jobs) == 3 and {job["JobState"] for job in jobs} == {"COMPLETED"}, jobs
    convert, evaluate = sorted((job for job in jobs if job["WorkDir"] == str(swap)), key=lambda job: int(job["JobId"]))
    (train,) = [job for job in jobs if job["WorkDir"] == str(training)]
    asked = {job["JobId"]: slurm.job(job["JobId"]) for job in jobs}
    # Each job got its rule's resources: 2 CPUs, its memory and time, and convert a GPU.
    assert "cpu=2,mem=4000M" in convert["Tres"] and convert["TimeLimit"] == "120"
    assert asked[convert["JobId"]].get("TresPerJob") == "gres:gpu:1" and "TresPerJob" not in asked[evaluate["JobId"]]
    assert "cpu=2,mem=4000M" in evaluate["Tres"] and evaluate["TimeLimit"] == "60"
    assert asked[train["JobId"]]["NumTasks"] == "2" and asked[train["JobId"]]["NumNodes"] == "1", asked[train["JobId"]]

    laptop, cluster = dvc_outputs(built), dvc_outputs(swap)
    assert laptop.keys() == cluster.keys()
    assert {path for path in laptop if laptop[path] != cluster[path]} == set()
    compared = ["results/swaps/wa_as_wb.mp4", "results/swaps/wa_as_wb.json", "results/metrics/swaps/wa_as_wb.json"]
    assert all((swap / path).read_bytes() == (built / path).read_bytes() for path in compared)
    print(f"cluster builds: {sum((swap / path).stat().st_size for path in compared)} bytes compared")

    log = (training / "logs/train/wa_wb.log").read_text()
    assert "train: data parallel over 2 devices (cpu) in 2 processes" in log
    assert json.loads((training / "results/models/wa_wb/metrics.json").read_text())["steps"] == 10


def test_train_asks_the_cluster_for_time_by_its_steps_and_for_a_gpu(built, tmp_path):
    """What train's job would ask Slurm for, from params.yaml (a dry run, no cluster)."""
    project = copy_project(built, tmp_path / "p")
    planned = run([str(BIN / "snakemake"), "-n", "--forcerun", "train", "--cores", "2"], project).stdout
    train = planned[planned.index("rule train:"):].split("\n\n", 1)[0]
    assert "runtime=32" in train and "gpu=1" in train and "mem_mb=8000" in train, train  # 30 min + 300 x 0.25 s
