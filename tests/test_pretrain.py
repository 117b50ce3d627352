"""Start from a trained model: a pretrained model of many people's faces, another pair,
or a model folder, as real Snakemake and DVC dependencies."""

from __future__ import annotations

import json
import shutil

import yaml

from conftest import BIN, copy_project, edit_yaml, rules_run, run, snakemake
from test_pipeline import planned_jobs

PAIR_MODEL = "results/models/wa_wb/model.json"


def _dvc_stage(project, name):
    run([str(BIN / "facepipe"), "dvc-yaml"], project)
    return yaml.safe_load((project / "dvc.yaml").read_text())["stages"][name]


def test_pairs_start_from_the_pretrained_model_and_follow_its_changes(built, tmp_path):
    project = copy_project(built, tmp_path / "p")

    def add_pretrain(config):
        config["people"]["man_a"] = {"sources": ["media/man_a.mp4"]}
        config["pretrain"] = {"people": ["man_a"], "sources": ["media/more/photos"]}

    def start_from_it(params):
        params["train"].update(init_from="pretrain", steps=60)
        params["pretrain"]["steps"] = 30

    edit_yaml(project, "config/config.yaml", add_pretrain)
    edit_yaml(project, "params.yaml", start_from_it)
    jobs = planned_jobs(project)
    assert jobs["pretrain"] == 1 and jobs["filter_pool"] == 1 and jobs["train"] == 1, jobs
    assert "filter" in jobs and jobs["filter"] == 1  # man_a only: woman_a and woman_b are built
    shell = snakemake(project, "-n", "-p").stdout
    assert "--init-from results/models/pretrain" in shell and "--pretrain" in shell
    stage = _dvc_stage(project, "train-wa_wb")
    assert {"results/models/pretrain/weights.msgpack", "results/models/pretrain/model.json"} <= set(stage["deps"])
    assert "results/pretrain/faces" in _dvc_stage(project, "pretrain")["deps"]

    proc = snakemake(project, PAIR_MODEL)  # the pair's model; its swap follows it as any other's does
    log = proc.stdout + proc.stderr
    assert "train: starting from results/models/pretrain (both)" in log
    pretrained = json.loads((project / "results/models/pretrain/model.json").read_text())
    assert pretrained["people"] == {"a": "pretrain", "b": "pretrain"} and pretrained["steps"] == 30
    started = json.loads((project / "results/models/wa_wb/model.json").read_text())["started_from"]
    assert started["model"] == "results/models/pretrain" and started["parts"] == "both"
    pool = json.loads((project / "results/reports/pretrain/faces.json").read_text())
    assert pool["kept"] >= 10 and pool["dropped"]["identity"] == 0  # anyone's faces, 15 people's photos
    assert planned_jobs(project, PAIR_MODEL) == {}

    # A new pretrained model reruns the pairs that start from it, and nothing upstream.
    edit_yaml(project, "params.yaml", lambda params: params["pretrain"].update(steps=40))
    assert planned_jobs(project, PAIR_MODEL) == {"pretrain": 1, "train": 1}
    proc = snakemake(project, PAIR_MODEL)
    assert rules_run(proc) == {"pretrain", "train"}
    assert "holds another run" in proc.stdout + proc.stderr  # the pair's checkpoint was of the old start
    assert json.loads((project / "results/models/wa_wb/model.json").read_text())["started_from"]["weights_sha256"] \
        != started["weights_sha256"]


def test_a_pair_or_a_model_folder_to_start_from_is_an_input(built, tmp_path):
    project = copy_project(built, tmp_path / "p")

    def second_pair(config):
        config["pairs"]["wb_wa"] = {"a": "woman_b", "b": "woman_a"}

    edit_yaml(project, "config/config.yaml", second_pair)
    edit_yaml(project, "params.yaml", lambda params: params["train"].update(init_from="wa_wb", init_parts="encoder"))
    # wa_wb itself starts from scratch, as before: its settings did not change for it.
    assert planned_jobs(project) == {"train": 1, "evaluate": 1, "all": 1}
    assert "--init-from results/models/wa_wb" in snakemake(project, "-n", "-p").stdout
    assert "results/models/wa_wb/weights.msgpack" in _dvc_stage(project, "train-wb_wa")["deps"]

    shutil.copytree(project / "results/models/wa_wb", project / "team_model")
    edit_yaml(project, "params.yaml", lambda params: params["train"].update(init_from="team_model"))
    jobs = planned_jobs(project)
    assert jobs["train"] == 2, jobs  # now both pairs start from the folder
    assert "team_model/weights.msgpack" in _dvc_stage(project, "train-wa_wb")["deps"]

    edit_yaml(project, "params.yaml", lambda params: params["train"].update(init_from="no_such_model"))
    proc = snakemake(project, "-n", check=False)
    assert proc.returncode != 0
    line = next(line for line in (proc.stdout + proc.stderr).splitlines() if "init_from" in line)
    assert line.startswith("facepipe: error: params.yaml: train.init_from: 'no_such_model' is not a pair")
