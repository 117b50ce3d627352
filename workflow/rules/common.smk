# Config checking and every input function of the workflow. The facepipe package does
# the real work (facepipe.config, facepipe.plan), so the CLI and the rules agree.

import math
import os
import shlex
from pathlib import Path
import sys

from facepipe import stage_code
from facepipe.config import check_config, check_start, load_params
from facepipe.errors import FacepipeError
from facepipe.plan import Plan
from facepipe.settings import dependency, output_keys


def _config_name():
    files = workflow.config_settings.configfiles or []
    return os.path.relpath(files[-1]) if files else "config/config.yaml"


def _load():
    try:
        check_config(config, _config_name())
        params = load_params("params.yaml")
        check_start(params, config, _config_name())
        return params, Plan(config, _config_name())
    except FacepipeError as exc:
        # One line, before any job starts: the file, the key, what to do.
        sys.exit(f"facepipe: error: {exc}")


PARAMS, PLAN = _load()

# Jobs run the facepipe of the environment Snakemake itself runs in, activated or not
# (`.venv/bin/snakemake`); under --use-conda, the rule's environment comes first.
envvars:
    "PATH",


os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

# What each stage's code computes (facepipe.stage_code): a rule parameter, so a real change
# to a stage's code reruns it and its dependents; the files are DVC's dependencies.
CODE = stage_code.fingerprints()
stage_code.write_fingerprints()


wildcard_constraints:
    source=r"[A-Za-z0-9_-]+",
    person=r"[A-Za-z0-9_-]+",
    pair=r"[A-Za-z0-9_-]+",
    swap=r"[A-Za-z0-9_-]+",
    clip=r"people/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+|pool/[A-Za-z0-9_-]+|swaps/[A-Za-z0-9_-]+",
    target=r"pairs/[A-Za-z0-9_-]+|swaps/[A-Za-z0-9_-]+",


def all_targets():
    targets = [f"results/reports/filter/{person}.{ext}" for person in PLAN.person_sources for ext in ("json", "jpg")]
    models = list(config["pairs"]) + (["pretrain"] if "pretrain" in config else [])
    targets += [f"results/models/{model}/{name}" for model in models for name in ("weights.msgpack", "loss.png")]
    targets += [swap_output(swap) for swap in config["swaps"]]
    evaluated = (("pairs", config["pairs"]), ("swaps", [s for s in config["swaps"] if not PLAN.swap_is_photos(s)]))
    targets += [f"results/metrics/{kind}/{name}.{ext}" for kind, names in evaluated for name in names
                for ext in ("json", "html", "jpg")]
    return targets


# download
def source_location(wildcards):
    return PLAN.sources[wildcards.source].location


def source_input(wildcards):
    """A local file or folder is an input (its changes rerun the download); a URL is not."""
    source = PLAN.sources[wildcards.source]
    return [] if source.kind == "url" else [source.location]


def source_kind(wildcards):
    return PLAN.sources[wildcards.source].kind


# frames
def clip_download(wildcards):
    return f"results/download/{PLAN.clips[wildcards.clip].source}"


def clip_settings(wildcards):
    """The frames settings this clip really uses, so that only a change to them reruns it:
    a swap's clip keeps every frame of its own range (in the command)."""
    return dependency(PARAMS, "frames", ["jpeg_quality"] if PLAN.clips[wildcards.clip].native_fps else None)


def clip_args(wildcards):
    clip = PLAN.clips[wildcards.clip]
    if not clip.native_fps:
        return ""
    args = ["--native-fps"]
    if clip.start is not None:
        args += ["--start", str(clip.start)]
    if clip.duration is not None:
        args += ["--duration", str(clip.duration)]
    return shlex.join(args)


# filter
def person_faces(wildcards):
    return [f"results/faces/{clip}" for clip in PLAN.person_clips(wildcards.person)]


def person_reference(wildcards):
    reference = config["people"][wildcards.person].get("reference")
    return [reference] if reference else []


def person_args(wildcards):
    return shlex.join(["--person", wildcards.person] + (["--reference"] + person_reference(wildcards)
                                                        if person_reference(wildcards) else []))


def pool_faces(wildcards):
    return [f"results/faces/{clip}" for clip in PLAN.pool]


# train
START_KEYS = ("init_from", "init_parts")


def start_model(pair):
    """The model folder a pair starts from (train.init_from), or None. The pair that
    init_from names starts from scratch, as does the pretrained model."""
    start = PARAMS["train"]["init_from"]
    if start is None or start == pair:
        return None
    return f"results/models/{start}" if start == "pretrain" or start in config["pairs"] else start


def pair_names():
    """A regex of the config's pairs: rule train makes only their models, so a model folder
    of any other name (results/models/<pair> of another config, pulled with dvc) is a
    plain input to start from."""
    return "|".join(config["pairs"]) or "(?!)"


def train_inputs(wildcards):
    pair = PLAN.pair(wildcards.pair)
    inputs = {"a": f"results/datasets/{pair['a']}", "b": f"results/datasets/{pair['b']}"}
    start = start_model(wildcards.pair)
    if start:  # a DAG input: the model trains first, and a new version of it reruns this pair
        inputs.update(start_weights=f"{start}/weights.msgpack", start_model=f"{start}/model.json")
    return inputs


def train_settings(wildcards):
    """The train settings this pair's job depends on: how it starts only if it does."""
    keys = output_keys("train")
    return dependency(PARAMS, "train", keys if start_model(wildcards.pair) else [k for k in keys if k not in START_KEYS])


def start_args(wildcards):
    start = start_model(wildcards.pair)
    return shlex.join(["--init-from", start]) if start else ""


def model_folder(wildcards, output):
    return os.path.dirname(output.weights)


def pair_people(wildcards):
    pair = PLAN.pair(wildcards.pair)
    return shlex.join(["--people", pair["a"], pair["b"]])


def pretrain_datasets(wildcards):
    """The pool: every pretraining person's dataset and the faces of the pretraining sources."""
    return [f"results/datasets/{person}" for person in PLAN.pretrain_people] + (
        ["results/pretrain/faces"] if PLAN.pool else [])


def pretrain_settings(wildcards):
    keys = [key for key in output_keys("train") if key not in START_KEYS + ("steps",)]
    return {**dependency(PARAMS, "train", keys), **dependency(PARAMS, "pretrain")}


# convert
def swap_output(swap):
    """A video swap gives results/swaps/<swap>.<convert.format>; a photo swap a folder."""
    return f"results/swaps/{swap}" if PLAN.swap_is_photos(swap) else f"results/swaps/{swap}.{PARAMS['convert']['format']}"


def swap_names(kind):
    """A regex of the swaps of one kind ("video" or "photos"), so each has one convert rule."""
    names = [swap for swap in config["swaps"] if PLAN.swap_is_photos(swap) == (kind == "photos")]
    return "|".join(names) if names else "(?!)"


def swap_model(wildcards):
    model_dir = swap_model_dir(wildcards)
    return {"weights": f"{model_dir}/weights.msgpack", "model": f"{model_dir}/model.json"}


def swap_model_dir(wildcards):
    return f"results/models/{PLAN.swap(wildcards.swap)['pair']}"


def swap_download(wildcards):
    clip = PLAN.clips[f"swaps/{wildcards.swap}"]
    return f"results/download/{clip.source}"


def swap_from(wildcards):
    return PLAN.swap(wildcards.swap)["from"]


def swap_source_dataset(wildcards):
    return f"results/datasets/{swap_from(wildcards)}"


# evaluate
def evaluate_inputs(wildcards):
    kind, name = wildcards.target.split("/")
    if kind == "pairs":
        pair = PLAN.pair(name)
        return {"model": f"results/models/{name}/model.json", "weights": f"results/models/{name}/weights.msgpack",
                "a": f"results/datasets/{pair['a']}", "b": f"results/datasets/{pair['b']}"}
    swap = PLAN.swap(name)
    pair = PLAN.pair(swap["pair"])
    target = pair["b"] if swap["from"] == pair["a"] else pair["a"]
    # The model's resolution and coverage; every person, to tell whom the output looks like.
    return {"video": swap_output(name), "swap_report": f"results/swaps/{name}.json",
            "frames": f"results/frames/swaps/{name}",
            "faces": f"results/faces/swaps/{name}", "model": f"results/models/{swap['pair']}/model.json",
            "source": f"results/datasets/{swap['from']}", "target": f"results/datasets/{target}",
            "other_people": [f"results/datasets/{person}" for person in config["people"]
                             if person not in (swap["from"], target)]}


def evaluate_settings(wildcards):
    """Only a swap's evaluation reads the evaluate section."""
    return dependency(PARAMS, "evaluate") if wildcards.target.startswith("swaps/") else {}


def evaluate_args(wildcards):
    kind, name = wildcards.target.split("/")
    paths = evaluate_inputs(wildcards)
    if kind == "pairs":
        return shlex.join(["pair", "--model", f"results/models/{name}", "--a", paths["a"], "--b", paths["b"]])
    model_dir = os.path.dirname(paths["model"])
    return shlex.join(["swap", "--model", model_dir]
                      + [arg for key in ("video", "swap_report", "frames", "faces", "source", "target")
                         for arg in (f"--{key.replace('_', '-')}", paths[key])]
                      + ["--people"] + [f"results/datasets/{person}" for person in config["people"]])


# resources: what a job asks a cluster's scheduler for (Slurm: --cpus-per-task from the
# rule's threads, --mem from mem_mb, --time from runtime in minutes, --gpus from gpu);
# a laptop build counts only threads (and `downloads`, one at a time).
# A training step takes at most this long on a GPU of the V100 class or newer (the
# original preset at batch 16; lite and tiny take less): train's time limit follows
# train.steps (pretrain.steps), with half an hour for loading and writing.
TRAIN_STEP_SECONDS = 0.25


def train_runtime(section):
    return 30 + math.ceil(PARAMS[section]["steps"] * TRAIN_STEP_SECONDS / 60)


# train.hosts > 1: one training process a node, each with the rule's threads, memory and
# a GPU (facepipe.hosts). An MPI job to the Slurm executor (the `mpi` resource): it
# leaves starting the tasks to the command, which starts them with srun (`launcher`).
def train_resources(section):
    hosts = PARAMS["train"]["hosts"]
    resources = {"mem_mb": 8000, "runtime": train_runtime(section), "gpu": 1, "launcher": ""}
    if hosts > 1:
        resources.update(nodes=hosts, tasks=hosts, tasks_per_gpu=1, gpu=hosts, mpi="srun",
                         launcher=f"srun --ntasks={hosts}")
    return resources


# versioning
def version_with_dvc():
    """In a DVC repository, regenerate dvc.yaml from this DAG and record every output in
    dvc.lock and the DVC cache, so `dvc push` can share this build and `facepipe
    restore` can bring it back. A run for some outputs (`snakemake
    results/models/<pair>/model.json`) records those and what they were built from: the
    rest may be missing or stale."""
    if not Path(".dvc").is_dir() or workflow.dryrun or workflow.touch:
        return
    import subprocess

    from facepipe import dvcstages

    configfiles = workflow.config_settings.configfiles or []
    args = ["--configfile", os.path.relpath(configfiles[-1])] if configfiles else []
    # Another process: the generator builds a Snakemake workflow of its own.
    subprocess.run([sys.executable, "-m", "facepipe", "dvc-yaml", *args], check=True)
    targets = [os.path.relpath(target) for target in workflow.dag_settings.targets]
    scope = ["--with-deps", *targets] if targets and set(targets) <= dvcstages.outputs() else []
    with dvcstages.kept_mtimes("results"):  # dvc commit relinks files; Snakemake compares mtimes
        subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *scope], check=True)
