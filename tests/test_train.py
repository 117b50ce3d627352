"""Training never loses progress: resume after kill -9, and more steps continue; on
several devices or processes it trains as on one."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml

from conftest import BIN, ROOT, earlier_output, env, run


def _params(tmp_path, steps: int, **overrides):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update({"preset": "tiny", "steps": steps, "batch_size": 8, "learning_rate": 5e-4,
                            "save_every": 10, "preview_every": 1000, "seed": 3, **overrides})
    path = tmp_path / f"params_{steps}_{'_'.join(f'{k}-{v}' for k, v in overrides.items())}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _train(built, tmp_path, name, steps, **overrides):
    return [str(BIN / "facepipe"), "train", "--params", str(_params(tmp_path, steps, **overrides)),
            "--a", str(built / "results/datasets/woman_a"), "--b", str(built / "results/datasets/woman_b"),
            "--out", str(tmp_path / name / "model"), "--checkpoints", str(tmp_path / name / "ckpt")]


def _losses(model_dir) -> np.ndarray:
    with open(model_dir / "loss.csv") as f:
        return np.array([[float(r["loss_a"]), float(r["loss_b"])] for r in csv.DictReader(f)])


def _cache_reads(cache: Path) -> dict[str, bytes]:
    """When each program of a compile cache was last read (JAX's LRU bookkeeping: a read
    rewrites its `-atime` file; a compile of a program already there writes nothing)."""
    return {p.name: p.read_bytes() for p in cache.glob("*-atime")}


def test_training_resumes_where_it_stopped_and_ends_bit_identical(built, tmp_path):
    """More steps continue a finished training; kill -9 loses at most one checkpoint
    interval; the resumed model is the one an uninterrupted training makes, byte for
    byte. The resumed run takes its training step from the compile cache the first run
    filled (cli.use_compile_cache), and a cached program gives a fresh compile's bytes."""
    cache = tmp_path / "compile-cache"
    cached = {**env(), "FACEPIPE_COMPILE_CACHE": str(cache)}
    run(_train(built, tmp_path, "straight", 60), tmp_path)

    run(_train(built, tmp_path, "grow", 30), tmp_path, environment=cached)
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_train(built, tmp_path, "grow", 60), cwd=tmp_path, env=cached, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (tmp_path / "grow/ckpt/steps/50").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the checkpoint at step 50"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "resuming from step 30 of 60" in log.read_text()
    before = _cache_reads(cache)
    steps = [name for name in before if name.startswith("jit_step-")]
    assert steps, f"no training step in the compile cache {cache}: {sorted(before)}"
    resumed = run(_train(built, tmp_path, "grow", 60), tmp_path, environment=cached)
    assert "resuming from step 50 of 60" in resumed.stdout + resumed.stderr
    assert json.loads((tmp_path / "grow/model/metrics.json").read_text())["steps_this_run"] == 10
    assert (tmp_path / "grow/model/weights.msgpack").read_bytes() == \
        (tmp_path / "straight/model/weights.msgpack").read_bytes()
    after = _cache_reads(cache)
    assert all(after[name] != before[name] for name in steps), "the training step was compiled again"

    # Ctrl-C stops between two steps and saves there: the rerun still ends on the same bytes.
    log = tmp_path / "interrupted.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_train(built, tmp_path, "ctrl_c", 60), cwd=tmp_path, env=cached, stdout=out,
                                stderr=subprocess.STDOUT)
    while not re.search(r" (4[1-9]|5[0-8])/60 \[", log.read_text()):
        assert proc.poll() is None and time.time() < deadline, "training ended before step 41"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait() == 130
    stopped = int(re.search(r"interrupted at step (\d+); checkpoint saved", log.read_text())[1])
    resumed = run(_train(built, tmp_path, "ctrl_c", 60), tmp_path, environment=cached)
    assert f"resuming from step {stopped} of 60" in resumed.stdout + resumed.stderr
    for name in ("weights.msgpack", "loss.csv"):
        assert (tmp_path / "ctrl_c/model" / name).read_bytes() == (tmp_path / "straight/model" / name).read_bytes()


def test_fewer_faces_than_the_batch_is_a_one_line_error(built, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(preset="tiny", batch_size=512)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    untouched = earlier_output(tmp_path / "m" / "weights.msgpack")
    proc = run([str(BIN / "facepipe"), "train", "--params", str(path), "--a", str(built / "results/datasets/woman_a"),
                "--b", str(built / "results/datasets/woman_b"), "--out", str(tmp_path / "m"),
                "--checkpoints", str(tmp_path / "c")], tmp_path, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("facepipe train: error:") and "fewer than train.batch_size=512" in last
    assert "results/datasets/woman_a" in last
    untouched()


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous(built, tmp_path):
    run(_train(built, tmp_path, "c", 20), tmp_path)
    latest = tmp_path / "c/ckpt/steps/20"
    for f in (latest / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(b"\0" * 10)
    proc = run(_train(built, tmp_path, "c", 30), tmp_path)
    out = proc.stdout + proc.stderr
    assert "steps/20 is unreadable" in out and "resuming from step 10 of 30" in out
    assert (tmp_path / "c/model/weights.msgpack").is_file()
    assert sorted(int(p.name) for p in (tmp_path / "c/ckpt/steps").iterdir() if p.name.isdigit()) == [20, 30]


def test_a_checkpoint_of_another_resolution_is_refused(built, tmp_path):
    run(_train(built, tmp_path, "res", 10), tmp_path)
    proc = run(_train(built, tmp_path, "res", 20, preset="original-128"), tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("facepipe train: error:")
    assert "holds a checkpoint of a 64 px tiny" in last and "asks for a 128 px original-128" in last
    assert (tmp_path / "res/ckpt/steps/10").is_dir()  # nothing was deleted


def test_an_unreadable_checkpoint_folder_is_a_one_line_error(built, tmp_path):
    run(_train(built, tmp_path, "bad", 10), tmp_path)
    (tmp_path / "bad/ckpt/run.json").write_text("{ not json")
    proc = run(_train(built, tmp_path, "bad", 20), tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "run.json is missing or unreadable" in last and "delete that folder" in last


def test_timelapse_and_previews_follow_training(built):
    from facepipe.media import probe, read_frames

    model = built / "results/models/wa_wb"
    timelapse = list(read_frames(probe(model / "timelapse.mp4")))
    assert len(timelapse) == 3  # previews at steps 100, 200 and 300
    first, last = (frame.astype(float) for frame in (timelapse[0], timelapse[-1]))
    assert np.abs(first - last).mean() > 3  # the reconstructions changed as the model learned
    previews = sorted((built / "results/checkpoints/wa_wb/previews").glob("*.png"))
    assert [p.stem for p in previews] == ["00000100", "00000200", "00000300"]
    assert (model / "preview.png").read_bytes() != previews[0].read_bytes()


def test_two_devices_or_two_processes_train_like_one(built, tmp_path):
    """Data parallel over 2 (CPU) devices, of one process or of two (train.hosts=2): the
    same losses as on one device, to float rounding; of two processes, process 0 alone
    reports and writes the outputs."""
    losses, logs = {}, {}
    for devices in (1, 2):
        environment = env()
        environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        # The 2017 recipe: no warm-up, so every run visibly learns in 10 steps.
        proc = subprocess.run(_train(built, tmp_path, f"devices{devices}", 10, recipe="original"), cwd=tmp_path,
                              env=environment,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        logs[devices] = proc.stdout + proc.stderr
        losses[devices] = _losses(tmp_path / f"devices{devices}/model")
    for proc, stderr in _start_hosts(built, tmp_path, "hosts", 10, recipe="original"):
        assert proc.wait(timeout=300) == 0, stderr.read_text()[-2000:]
    logs["hosts"] = (tmp_path / "hosts-0.out").read_text()
    losses["hosts"] = _losses(tmp_path / "hosts/model-0")
    assert "data parallel over 2 devices" in logs[2] and "data parallel" not in logs[1]
    assert "data parallel over 2 devices (cpu) in 2 processes" in logs["hosts"]
    assert losses[1].shape == losses[2].shape == losses["hosts"].shape == (10, 2)
    # Only the summation order differs: measured at most 2.3e-5 over the first 5 steps (2
    # processes: 7e-6). Gradients from half the batch were off by 4.6e-4 at step 2 and
    # 1.2e-2 at step 4. Later steps are not compared: Adam amplifies rounding chaotically
    # (4.7e-2 by step 19 in one CI run).
    np.testing.assert_allclose(losses[2][:5], losses[1][:5], rtol=2e-4)
    np.testing.assert_allclose(losses["hosts"][:5], losses[1][:5], rtol=2e-4)
    for loss in losses.values():
        assert (loss[-5:].mean(0) < loss[:5].mean(0)).all()  # all learn
    assert sorted(p.name for p in (tmp_path / "hosts/model-0").iterdir()) == sorted(
        p.name for p in (tmp_path / "devices1/model").iterdir())
    assert not (tmp_path / "hosts/model-1").exists()
    assert "train:" not in (tmp_path / "hosts-1.out").read_text()


def test_a_batch_that_does_not_split_over_the_devices_is_refused(built, tmp_path):
    command = _train(built, tmp_path, "odd", 10, batch_size=7)
    environment = env()
    environment["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    proc = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "train.batch_size=7 does not split over the 2 devices" in last


def _start_hosts(built, tmp_path, name, steps, **overrides) -> list[tuple[subprocess.Popen, Path]]:
    """train.hosts=2 on this machine: two `facepipe train` processes joined at a free port
    of 127.0.0.1, as srun starts them on two nodes; each with its own --out, to see which
    one writes. Returns each process and the path of its stderr."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = []
    for index in (0, 1):
        command = _train(built, tmp_path, name, steps, hosts=2, **overrides)
        command[command.index("--out") + 1] = str(tmp_path / name / f"model-{index}")
        stderr = tmp_path / f"{name}-{index}.err"
        with open(tmp_path / f"{name}-{index}.out", "w") as out, open(stderr, "w") as err:
            processes.append((subprocess.Popen(command + ["--coordinator", f"127.0.0.1:{port}", "--process-id",
                                                          str(index)], cwd=tmp_path, env=env(), stdout=out,
                                               stderr=err), stderr))
    return processes


def test_a_lost_process_stops_the_others_in_one_line_and_a_rerun_resumes(built, tmp_path):
    """kill -9 of one of two training processes: the other stops within seconds, saying
    why in one line and which checkpoint a rerun resumes from; a rerun does."""
    processes = _start_hosts(built, tmp_path, "lost", 30)
    (first, first_err), (second, _) = processes
    deadline = time.time() + 300
    while not (tmp_path / "lost/ckpt/steps/10").exists():
        assert first.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(second.pid, signal.SIGKILL)
    killed = time.monotonic()
    second.wait()
    assert first.wait(timeout=60) == 1
    print(f"process 0 stopped {time.monotonic() - killed:.1f} s after process 1 was killed")
    lines = first_err.read_text().strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]], errors  # one line, the last
    assert lines[-1].startswith("facepipe train: error: train: training process 0 of 2 stopped because another "
                                "one was lost"), lines[-1]
    step = int(lines[-1].split("a rerun resumes from the checkpoint at step ")[1].split()[0])

    for proc, stderr in _start_hosts(built, tmp_path, "lost", 30):
        assert proc.wait(timeout=300) == 0, stderr.read_text()[-2000:]
    assert f"train: resuming from step {step} of 30" in (tmp_path / "lost-0.out").read_text()
    assert json.loads((tmp_path / "lost/model-0/metrics.json").read_text())["steps_this_run"] == 30 - step
