"""A run folder's lock: one training process per folder.

Two ``--resume`` runs into one folder would both append to its log and overwrite each other's
checkpoints. :func:`run_lock` holds an exclusive ``flock`` on ``run_dir/run.lock`` and writes
its pid there; a second process cannot take the lock and gets :class:`RunLockedError` naming the
holder. The kernel drops the lock when its process dies, however it dies, so a lock file still
naming a pid while nobody holds the lock is stale (a killed run): it is taken over, with a
message on stderr. On a clean exit the file is emptied, not deleted (deleting would let a
waiting process lock a file that is no longer the folder's).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

__all__ = ["LOCK", "RunLockedError", "run_lock"]

LOCK = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold ``run_dir``'s lock for the duration of the ``with`` block."""
    path = os.path.join(os.fspath(run_dir), LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run folder {run_dir} is in use by process {holder or '(unknown)'} (lock file {path}); wait "
                f"for that run to end, or use another folder"
            ) from None
        if holder and holder != str(os.getpid()):
            print(f"taynode: taking over the stale lock {path} of process {holder}, which has ended", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
