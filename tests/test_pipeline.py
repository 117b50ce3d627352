"""End to end: real videos through real ffmpeg, RetinaFace, training and Snakemake."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import yaml

from conftest import BIN, copy_project, run, snakemake
from facepipe.media import audio_duration, probe, read_frames


def planned_jobs(project, *args: str, environment: dict | None = None) -> dict[str, int]:
    """Rule -> job count that `snakemake -n` plans."""
    out = snakemake(project, "-n", *args, environment=environment).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, re.M))
    return {rule: int(n) for rule, n in jobs.items() if rule != "total"}


def test_swap_video_matches_its_source(built, media):
    out = built / "results/swaps/wa_as_wb.mp4"
    original = probe(media / "woman_a.mp4")
    trimmed = list(read_frames(original, None, 2.0))
    swapped_info = probe(out)
    swapped = list(read_frames(swapped_info))
    assert len(swapped) == len(trimmed) == 60
    assert swapped_info.fps == original.fps
    assert (swapped_info.width, swapped_info.height) == (original.width, original.height)
    assert swapped_info.has_audio
    assert abs(audio_duration(out) - len(swapped) / float(swapped_info.fps)) < 0.1
    assert "synthetic" in swapped_info.tags.get("comment", "").lower()

    alignments = json.loads((built / "results/faces/swaps/wa_as_wb/alignments.json").read_text())
    boxes = {f["frame"]: f["box"] for f in alignments["faces"]}
    assert len(boxes) == 60
    inside, outside = [], []
    for i, (a, b) in enumerate(zip(trimmed, swapped)):
        x0, y0, x1, y1 = boxes[i]
        w, h = x1 - x0, y1 - y0
        face = np.zeros(a.shape[:2], bool)
        face[int(y0 + 0.2 * h):int(y1 - 0.2 * h), int(x0 + 0.2 * w):int(x1 - 0.2 * w)] = True
        near = np.zeros(a.shape[:2], bool)  # the box dilated by a quarter of its size each way
        near[max(0, int(y0 - h / 4)):int(y1 + h / 4), max(0, int(x0 - w / 4)):int(x1 + w / 4)] = True
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
        inside.append(diff[face].mean())
        outside.append((diff[~near] ** 2).sum() / max(1, 3 * (~near).sum()))
    assert np.mean(inside) > 10, f"face region barely changed: mean |diff| {np.mean(inside):.1f}"
    psnr_outside = 10 * np.log10(255 ** 2 / max(np.mean(outside), 1e-9))
    assert psnr_outside > 38, f"pixels outside the face changed: PSNR {psnr_outside:.1f} dB"


def test_training_loss_falls(built):
    with open(built / "results/models/wa_wb/loss.csv") as f:
        rows = [(float(r["loss_a"]), float(r["loss_b"])) for r in csv.DictReader(f)]
    assert len(rows) == 300
    first, last = np.mean(rows[:30], axis=0), np.mean(rows[-30:], axis=0)
    assert (last < 0.8 * first).all(), (first, last)
    model = json.loads((built / "results/models/wa_wb/model.json").read_text())
    assert model["steps"] == 300 and model["people"] == {"a": "woman_a", "b": "woman_b"}


def dvc_outputs(project) -> dict[str, str]:
    """Every output DVC versions -> its hash, from dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def test_outputs_are_versioned_by_dvc(built):
    outs = dvc_outputs(built)
    assert "results/models/wa_wb/weights.msgpack" in outs
    assert "results/swaps/wa_as_wb.mp4" in outs
    assert run([str(BIN / "dvc"), "status", "--json"], built).stdout.strip() in ("{}", "")


def test_param_changes_rerun_exactly_their_stages(built, tmp_path):
    project = copy_project(built, tmp_path / "p")
    assert planned_jobs(project) == {}

    def edit(stage, key, value):
        params = yaml.safe_load((project / "params.yaml").read_text())
        original = params[stage][key]
        params[stage][key] = value
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return original

    crf = edit("convert", "crf", 20)
    assert planned_jobs(project) == {"convert": 1, "evaluate": 1, "all": 1}
    edit("convert", "crf", crf)
    assert planned_jobs(project) == {}

    # Speed-only settings rerun nothing; evaluate.dilate only the swap's evaluation.
    for stage, key, value in (("convert", "batch_size", 3), ("train", "save_every", 100), ("train", "hosts", 2),
                               ("download", "retries", 9)):
        original = edit(stage, key, value)
        assert planned_jobs(project) == {}, key
        edit(stage, key, original)
    edit("evaluate", "dilate", 0.5)
    assert planned_jobs(project) == {"evaluate": 1, "all": 1}
    edit("evaluate", "dilate", 0.25)

    edit("train", "steps", 400)
    assert planned_jobs(project) == {"train": 1, "convert": 1, "evaluate": 2, "all": 1}
    edit("train", "steps", 300)

    edit("detect", "min_score", 0.8)
    assert planned_jobs(project) == {"detect": 3, "filter": 2, "train": 1, "convert": 1, "evaluate": 2, "all": 1}


def test_dvc_push_then_pull_in_a_fresh_clone_restores_the_build(built, tmp_path):
    project = copy_project(built, tmp_path / "p")
    remote = tmp_path / "remote"
    dvc = str(BIN / "dvc")
    run([dvc, "remote", "add", "-d", "local", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "build"], project)
    run([dvc, "push", "-q"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "results/models/wa_wb/weights.msgpack").exists()
    run([str(BIN / "facepipe"), "restore"], clone)
    for path in ("results/models/wa_wb/weights.msgpack", "results/swaps/wa_as_wb.mp4"):
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert planned_jobs(clone) == {}


def test_a_config_given_on_the_command_line_replaces_the_default(built, media, tmp_path):
    """`--configfile mine.yaml` builds what mine.yaml asks for, not that plus the
    default config's people and swaps (Snakemake would merge the two)."""
    project = copy_project(built, tmp_path / "p")
    mine = {"people": {"man_a": {"sources": ["media/man_a.mp4"]}, "man_b": {"sources": ["media/man_b.mp4"]}},
            "pairs": {"ma_mb": {"a": "man_a", "b": "man_b"}},
            "swaps": {"ma_as_mb": {"pair": "ma_mb", "video": "media/man_a.mp4", "from": "man_a"}}}
    (project / "mine.yaml").write_text(yaml.safe_dump(mine))
    jobs = planned_jobs(project, "--configfile", "mine.yaml")
    assert jobs["train"] == 1 and jobs["download"] == 2 and jobs["convert"] == 1, jobs  # nothing of woman_a/_b
    assert planned_jobs(project) == {}  # and the project's own config is still built
