"""Training across hosts (`train.hosts` > 1): one `facepipe train` process a host, joined
by jax.distributed into one data-parallel job whose mesh spans every process's devices
(train.Trainer). Under Slurm, srun starts them and each finds the others in Slurm's
environment; elsewhere `--coordinator HOST:PORT --process-id I` say where process 0
listens and which process this is.

A job cannot go on without one of its processes: the others' next collective fails, and
JAX's coordination service, when it misses a process's heartbeats or loses process 0,
ends the rest with abort() and a C++ stack trace, which Python cannot catch. So the
process srun (or a person) starts is a supervisor: it trains in a child, the worker, and
says in one line why the worker ended when a signal ended it. Once the checkpoint folder
is ready, a worker's native log (JAX's C++ messages, that trace) goes to a file there
instead of the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .errors import FacepipeError

# Set in a worker: the file descriptor of its supervisor's stderr, where Python writes.
WORKER_STDERR = "FACEPIPE_TRAIN_STDERR"
# How long a silent process counts as alive (jax.distributed's default, 100 s, would keep
# a job waiting that long for a dead node).
HEARTBEAT_SECONDS = 10
# What JAX's native log says when the coordination service ends a process.
LOST_PEER_MARKER = "JAX distributed service detected fatal errors"


def is_worker() -> bool:
    return WORKER_STDERR in os.environ


def process_index(hosts: int, coordinator: str | None, process_id: int | None) -> int:
    """Which of the `hosts` processes this is: --process-id, or Slurm's task number."""
    if (coordinator is None) != (process_id is None):
        raise FacepipeError("train: --coordinator and --process-id go together; give both, or neither under srun")
    if process_id is not None:
        if not 0 <= process_id < hosts:
            raise FacepipeError(f"train: --process-id {process_id} is not one of the {hosts} processes of "
                                f"train.hosts; use 0 to {hosts - 1}")
        return process_id
    if "SLURM_PROCID" not in os.environ:
        raise FacepipeError(f"train: train.hosts is {hosts}: start one `facepipe train` a host with srun "
                            "(make run PROFILE=slurm), or each with --coordinator HOST:PORT --process-id I; "
                            "or set train.hosts: 1")
    return int(os.environ["SLURM_PROCID"])


def native_log(checkpoint_dir: Path, index: int) -> Path:
    return checkpoint_dir / f"process-{index}.log"


def supervise(argv: list[str], hosts: int, index: int, checkpoint_dir: Path) -> None:
    """Run `facepipe <argv>` as this process's worker and end as it ended; a worker ended
    by a signal is a FacepipeError naming why and the checkpoint a rerun resumes from."""
    terminal = os.dup(sys.stderr.fileno())
    # The worker's stdin is a pipe this process never writes to: it reads end-of-file
    # when this process dies, killed with it.
    worker = subprocess.Popen([sys.executable, "-m", "facepipe", *argv], stdin=subprocess.PIPE,
                              env={**os.environ, WORKER_STDERR: str(terminal)}, pass_fds=(terminal,))
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.send_signal(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # the worker, in this process group, gets Ctrl-C too
    code = worker.wait()
    if code >= 0:
        sys.exit(code)  # the worker has said why, if it failed
    log = native_log(checkpoint_dir.resolve(), index)
    resume = resume_advice(checkpoint_dir)
    if signal.Signals(-code) == signal.SIGABRT and log.is_file() and LOST_PEER_MARKER in log.read_text(errors="replace"):
        raise FacepipeError(f"train: training process {index} of {hosts} stopped because another one was lost "
                            f"(killed, failed, or its node down); {resume} (JAX's log: {log})")
    where = f" (JAX's log: {log})" if log.is_file() else ""
    raise FacepipeError(f"train: training process {index} of {hosts} was ended by {signal.Signals(-code).name}; "
                        f"{resume}{where}")


def resume_advice(checkpoint_dir: Path) -> str:
    steps = [int(p.name) for p in (checkpoint_dir / "steps").glob("*") if p.name.isdigit()]
    return f"a rerun resumes from the checkpoint at step {max(steps)}" if steps else \
        "no checkpoint was saved yet: a rerun starts over"


def work(hosts: int, coordinator: str | None, index: int, train: Callable[[], object]) -> None:
    """In the worker: join the other processes, train, and leave at once if anything fails
    (JAX's orderly exit waits for every process, and aborts when one is lost)."""
    sys.stderr = open(int(os.environ[WORKER_STDERR]), "w", buffering=1, errors="backslashreplace", closefd=False)
    threading.Thread(target=_end_with_supervisor, daemon=True).start()
    try:
        _join(hosts, coordinator, index)
        train()
    except (FacepipeError, KeyboardInterrupt) as exc:
        from .cli import report

        _leave(report("train", exc))
    except Exception:
        # Most likely a collective failed because another process was lost: then the
        # coordination service ends this one meanwhile, and the supervisor says so.
        time.sleep(3 * HEARTBEAT_SECONDS)
        traceback.print_exc()
        _leave(1)


def _end_with_supervisor() -> None:
    os.read(sys.stdin.fileno(), 1)
    os._exit(1)


def _leave(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _join(hosts: int, coordinator: str | None, index: int) -> None:
    import jax

    # Under srun, jax.distributed reads the coordinator and the process's place from Slurm.
    # CPUs' collectives across processes use gloo, this JAX's default.
    jax.distributed.initialize(coordinator, num_processes=hosts if coordinator else None,
                               process_id=index if coordinator else None, heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
    if jax.process_count() != hosts:
        raise FacepipeError(f"train: train.hosts is {hosts}, but {jax.process_count()} training processes started; "
                            f"start {hosts} (srun --ntasks={hosts}), or set train.hosts to match")


def log_native_output(checkpoint_dir: Path, index: int) -> None:
    """In a worker: from now on, what native code writes to stderr (file descriptor 2;
    Python writes elsewhere) goes to the checkpoint folder's log of this process."""
    if not is_worker():
        return
    log = os.open(native_log(checkpoint_dir, index), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 2)
    os.close(log)
