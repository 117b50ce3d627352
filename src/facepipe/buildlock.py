"""One build at a time in a project folder.

Snakemake locks only the files of the jobs it plans, so a second `snakemake` in the same
folder is either refused with a block of text or, planning other files, runs beside the
first (and their DVC commits at the end collide). A build therefore holds an OS lock on
.snakemake/facepipe-build.lock for the life of its Snakemake process: the kernel drops it
when that process ends, killed or not, so it is never stale. A second run is refused in
one line naming the first; a run that finds no holder knows that Snakemake's own locks
left in .snakemake/locks are from a run that was killed, and removes them (what
`snakemake --unlock` does)."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

from .errors import FacepipeError

LOCK = Path(".snakemake/facepipe-build.lock")
_held = None  # the open lock file: the lock lasts as long as this process


def hold(project: str | os.PathLike = ".") -> None:
    """Hold the build lock of `project` for the life of this process, or refuse."""
    global _held
    path = Path(project) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        try:
            holder = json.loads(handle.read())
        except ValueError:  # the holder is between taking the lock and saying who it is
            holder = {}
        handle.close()
        if holder.get("pid") == os.getppid():  # a command the build itself runs (facepipe dvc-yaml)
            return
        raise FacepipeError(
            f"{Path(project).resolve()}: another build is running in this folder (pid {holder.get('pid', '?')}, "
            f"`{holder.get('command', 'snakemake')}`, since {holder.get('since', '?')}); wait for it to finish "
            "or stop it (Ctrl-C), then run again") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "command": shlex.join(["snakemake", *sys.argv[1:]])[:300],
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()
    _held = handle
    stale = sorted((path.parent / "locks").glob("*.lock"))
    for lock in stale:
        lock.unlink(missing_ok=True)
    if stale:
        print("facepipe: removed Snakemake's lock left by a build that was killed (no build is running here)",
              file=sys.stderr)
