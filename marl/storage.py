"""Writing run files without leaving half-written ones, and a one-paragraph error when the disk refuses.

`write_atomic` writes a file whole or not at all (a temporary file renamed into place, removed if the
write fails). `storage_error` turns an OSError from any write (full disk, read-only or unwritable folder, a
path that is a file) into a `StorageError` that names the path, the cause and the fix. `check_runs_dir`
checks a runs directory before a run builds anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from marl.errors import MarlError


class StorageError(MarlError):
    """A file of a run could not be written (full disk, no permission, read-only, a file in the way)."""


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through `<path>.tmp` and a rename: a crash or a full disk mid-write never
    leaves a truncated file at `path`, and the temporary file is removed when the write fails."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            write_bytes(handle, data)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise storage_error(error, path) from None


def write_bytes(handle, data: bytes) -> None:
    """`handle.write(data)` (one place where tests simulate a full disk)."""
    handle.write(data)


def storage_error(error: OSError, path: str | Path | None = None) -> StorageError:
    """A one-paragraph StorageError for an OSError raised while writing `path` (or `error.filename`)."""
    where = path or error.filename or "a run file"
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        cause = "the disk (or your quota) is full"
        fix = (
            "Free some space (old runs under experiment.runs_dir, keep fewer checkpoints with "
            "experiment.keep_checkpoints) or point experiment.runs_dir at a disk with room"
        )
    elif code in (errno.EACCES, errno.EPERM):
        cause = "you may not write there"
        fix = "Choose a folder you can write to (experiment.runs_dir=...) or fix its permissions"
    elif code == errno.EROFS:
        cause = "the file system is read-only"
        fix = "Choose a folder on a writable disk (experiment.runs_dir=...)"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        cause = "a part of that path is a file, not a folder"
        fix = "Point experiment.runs_dir at a folder (or a path that does not exist yet)"
    else:
        cause = error.strerror or str(error)
        fix = "Check the path and the disk, or choose another experiment.runs_dir"
    return StorageError(
        f"Could not write {where}: {cause} ({error.strerror or error}). {fix}. Nothing half-written was "
        "left behind."
    )


def check_runs_dir(runs_dir: str | Path, key: str = "experiment.runs_dir") -> None:
    """Refuse, before anything is built, a runs directory that cannot hold a new run: a path whose
    nearest existing part is a file, or a folder this user may not write to."""
    path = Path(runs_dir).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StorageError(
            f"{key}={runs_dir} cannot hold runs: {probe} is a file, not a folder. Point {key} at a folder "
            "(or at a path that does not exist yet; it is created)."
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(
            f"{key}={runs_dir} cannot hold runs: you may not write to {probe}. Choose a folder you can "
            f"write to ({key}=...) or fix its permissions."
        )
