"""Checks that a folder we are about to write to can take our files, before any work starts.

A training run that finds a read-only or full disk only when its first checkpoint is due has
already spent its time; these checks turn that into one line naming the path, up front.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

#: Free space a folder must have before a run writes models, SUMO outputs or MLflow data there.
MIN_FREE_BYTES = 20 * 2**20


class LocationError(ValueError):
    """A folder or file we must write cannot be written (one-line message)."""


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: Path, what: str, min_free_bytes: int = MIN_FREE_BYTES, create: bool = True) -> Path:
    """Make sure `path` is a folder we can write `min_free_bytes` into; LocationError if not.

    Writes and removes a probe file, so a read-only mount is caught (as root, permission bits
    alone say nothing). With `create`, a missing folder is created first.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise LocationError(f"{what} {path} is a file, not a folder")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        target = path if path.exists() else _existing_parent(path)
        probe = target / f".write_probe_{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"x" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        reason = "read-only file system" if err.errno == errno.EROFS else (
            "disk full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err)))
        raise LocationError(f"{what} {path} cannot be written: {reason}") from None
    free = shutil.disk_usage(target).free
    if free < min_free_bytes:
        raise LocationError(f"{what} {path} has only {free / 2**20:.1f} MiB free; "
                            f"at least {min_free_bytes / 2**20:.0f} MiB are needed")
    return path


def check_writable_file(path: Path, what: str, min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """A file we will create or append to: its folder must be writable (and the file, if it exists)."""
    path = Path(path).expanduser()
    check_writable_dir(path.parent, f"the folder of {what}", min_free_bytes, create=True)
    if path.exists():
        if path.is_dir():
            raise LocationError(f"{what} {path} is a folder, not a file")
        try:
            with open(path, "ab"):
                pass
        except OSError as err:
            raise LocationError(f"{what} {path} cannot be written: {err.strerror or err}") from None
    return path
