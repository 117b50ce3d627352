"""Atomic outputs: write beside the target, then rename, so a killed run never leaves
a half-written file or folder that looks finished."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp/mkdtemp make private (0600/0700) files and folders; finished outputs get the
# modes the user's umask gives any new file, so others sharing the project can read them.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temporary_prefix(target: Path) -> str:
    """Temporary names beside `target` carry the writer's process id; what a killed
    writer left (its process gone) is removed by the next writer of the same target."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.*"):
        pid = stale.name[len(target.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return f".{target.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path next to `target`; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target), suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException as exc:
        _note_written(exc, tmp)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to `target`; it replaces `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as exc:
        _note_written(exc, tmp)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def out_of_space(exc: BaseException | None) -> bool:
    """A full disk, raised as such or wrapped by what wrote (orbax, ffmpeg's message)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _note_written(exc: BaseException, tmp: Path) -> None:
    """On a full disk, how much of the output was written (it is removed next): the
    error can then say how much space the stage needs at least."""
    if out_of_space(exc):
        files = tmp.rglob("*") if tmp.is_dir() else [tmp]
        size = sum(f.stat().st_size for f in files if f.is_file())
        exc.written_bytes = max(getattr(exc, "written_bytes", 0), size)  # an outer folder holds an inner file


def no_space_message(path: str | os.PathLike, written: int | None = None, needed: int | None = None) -> str:
    """What to say when the disk under `path` filled up (or would): the file system, its
    size, and the space the stage needs (what its next file takes, or more than it had
    written when the disk filled, or more than is free now that its partial output is
    gone)."""
    path = Path(path).absolute()
    mount = next(p for p in [path, *path.parents] if p.exists())
    while not os.path.ismount(mount):
        mount = mount.parent
    kinds = [line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()
             if line.split()[1] == str(mount)] if Path("/proc/mounts").exists() else []
    stat = os.statvfs(mount)
    free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
    need = (f"about {needed / 1e6:.1f} MB there for what it writes next" if needed else
            f"more than the {written / 1e6:.1f} MB it had written when it filled up" if written else
            f"more than the {free / 1e6:.1f} MB free there now")
    return (f"{path}: no space left on the file system at {mount} ({kinds[-1] if kinds else 'unknown type'}, "
            f"{total / 1e6:.1f} MB, {free / 1e6:.1f} MB free): this stage needs {need}; free space there (or put "
            "results/ on a larger disk) and run again: what was built before is kept")
