"""The fault campaign's seeded small version (benchmarks/faults.py --small), run as the
benchmark runs it, each part on its own: every count that must be zero is zero. The
parts that interrupt a build start from the session's woman_a <-> woman_b build."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import yaml

from conftest import BIN, ROOT, env, make_project, pair_config, run, snakemake


def campaign(media, part: str, *args: str) -> tuple[dict, str]:
    proc = run([sys.executable, "benchmarks/faults.py", "--small", "--parts", part, "--media", str(media), *args],
               ROOT)
    return json.loads(proc.stdout.splitlines()[-1])[part], proc.stderr


def test_fuzzed_configs_and_params_are_planned_or_refused_in_one_line(media):
    counts, problems = campaign(media, "fuzz")
    assert counts["mutations"] == counts["accepted"] + counts["refused_one_line"] + counts["refused_unclear"] \
        + counts["tracebacks"] + counts["hung"] == 8
    assert all(count == 1 for count in counts["kinds"].values()) and len(counts["kinds"]) == 8  # one of each kind
    assert counts["refused_unclear"] == counts["tracebacks"] == counts["hung"] == counts["injections"] == 0, problems


def test_a_killed_training_loses_at_most_a_checkpoint_interval_and_ends_bit_identical(media, built):
    """kill -9 of a training job at a seeded step; the rerun resumes from the latest
    checkpoint and makes the uninterrupted build's bytes."""
    counts, trials = campaign(media, "kills", "--reference", str(built))
    assert counts["trials"] == counts["landed"] == counts["training_kills"] == 1, trials
    assert counts["completed"] == counts["identical"] == 1, trials
    assert counts["half_written"] == counts["processes_left"] == counts["tracebacks"] == 0, trials
    assert counts["training_steps_lost_max"] <= counts["save_every"], trials
    assert counts["training_resumed_from_latest"] == 1, trials


def test_a_full_disk_is_one_line_keeps_what_was_built_and_a_rerun_completes(media, built):
    counts, trials = campaign(media, "disk", "--reference", str(built))
    assert counts["stages"] == counts["refused_one_line"] == counts["rerun_completed"] == 1, trials
    assert counts["rerun_identical"] == 1 and counts["earlier_damaged"] == counts["tracebacks"] == 0, trials


def test_a_second_build_in_the_same_folder_is_refused_and_the_first_finishes(media, built):
    counts, _ = campaign(media, "two_runs", "--reference", str(built))
    assert counts["second_refused_one_line"], counts
    assert counts["first_completed"] and counts["first_identical"] and counts["tracebacks"] == 0, counts


def test_snakemakes_lock_left_by_a_killed_build_is_removed_by_the_next(media, tmp_path):
    """A build killed with -9 leaves Snakemake's lock files (which would refuse every later
    run until `--unlock`); no build holds the folder, so the next run removes them."""
    project = make_project(tmp_path / "project", pair_config())
    locks = project / ".snakemake/locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text(str(project / "media/woman_a.mp4"))
    (locks / "0.output.lock").write_text(str(project / "results/frames"))
    proc = snakemake(project, "results/download/woman_a-d517e9")
    assert "removed Snakemake's lock left by a build that was killed" in proc.stderr
    assert not (locks.exists() and list(locks.iterdir())) and (project / "results/download/woman_a-d517e9").is_dir()


def test_media_people_really_have_work_or_are_refused_in_one_line(media, built):
    """A phone clip (turned by metadata, variable frame rate, two audio tracks) and photos
    of mixed sizes come out right; sound only, empty, cut short, random bytes and 1x1 are
    refused in one line naming the file (benchmarks/fault_media.py)."""
    counts, problems = campaign(media, "media", "--reference", str(built))
    assert counts["wrong"] == counts["tracebacks"] == 0, (counts, problems)
    assert (counts["worked"], counts["refused_one_line"]) == (2, 6), counts


def test_a_killed_detect_says_nothing_more_and_its_leftovers_go_with_the_next_run(built, tmp_path):
    """Found by the campaign: kill -9 of detect made its worker processes print
    tracebacks (their pipe to it broken), and left its temporary folder beside the output
    for ever. Now the workers leave quietly and the next run of the stage removes what a
    dead writer left."""
    frames = built / "results/frames/people/woman_a/woman_a-d517e9"
    command = [str(BIN / "facepipe"), "detect", "--frames", str(frames), "--out", str(tmp_path / "faces"),
               "--threads", "2"]
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=built, stdout=out, stderr=subprocess.STDOUT, env=env())
    while not re.search(r" [1-9]\d*/\d+ \[", log.read_text()):
        assert proc.poll() is None, log.read_text()
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    time.sleep(2)  # the workers notice
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".faces.")]
    assert left and "Traceback" not in log.read_text(), (left, log.read_text()[-2000:])
    run(command, built)
    assert (tmp_path / "faces/alignments.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".faces.")]


def test_a_disk_too_full_for_the_next_checkpoint_is_one_line_without_tracebacks(built, tmp_path):
    """Found by the campaign: a checkpoint save meeting a full disk was one line after
    some 80 tracebacks from orbax's writer threads. The space a checkpoint needs is now
    checked before it is written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        params = yaml.safe_load((built / "params.yaml").read_text())
        params["train"].update(steps=10, save_every=5)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        proc = run([str(BIN / "facepipe"), "train", "--params", str(tmp_path / "params.yaml"),
                    "--a", str(built / "results/datasets/woman_a"), "--b", str(built / "results/datasets/woman_b"),
                    "--out", str(disk / "model"), "--checkpoints", str(disk / "checkpoints")], tmp_path, check=False)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    output = proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert last.startswith(f"facepipe train: error: {disk}/checkpoints: no space left on the file system at {disk}")
    assert re.search(r"needs about \d+\.\d MB there", last), last
