"""A run folder's lock: one training process per folder.

Two ``--resume`` runs into one folder would both append to its log and overwrite each other's
checkpoints. :func:`run_lock` holds an exclusive ``flock`` on ``run_dir/run.lock`` and writes
its pid there; a second process cannot take the lock and gets :class:`RunLockedError` naming the
holder. The kernel drops the lock when its process dies, however it dies, so a lock file still
naming a pid while nobody holds the lock is stale (a killed run): it is taken over, with a
message on stderr. On a clean exit the file is emptied, not deleted (deleting would let a
waiting process lock a file that is no longer the folder's).

The lock file is the loop's own: it is created with ``O_CREAT | O_EXCL``, and an existing
``run.lock`` is opened with ``O_NOFOLLOW`` and used only if it is a regular file (one link)
holding nothing or a pid. A symbolic link, a hard link to another file, or any other content
is refused with :class:`RunLockedError`, before anything is written, and its content is never
shown (it is not ours).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import sys
from collections.abc import Iterator

__all__ = ["LOCK", "RunLockedError", "run_lock"]

LOCK = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


_PID = re.compile(rb"\d{1,20}\n?")


def _open_lock(path: str, run_dir) -> int:
    """The lock file's descriptor: created here (``O_EXCL``), or an existing file that is a
    regular file holding nothing or a pid; a symlink or anything else is refused unread."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(2):
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:  # removed in between: create it again
            continue
        except OSError as e:  # ELOOP: a symlink (O_NOFOLLOW); or not openable for writing
            raise RunLockedError(
                _foreign(path, run_dir, "a symbolic link" if os.path.islink(path) else f"not openable ({e.strerror})")
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > 21 or not _PID.fullmatch(os.pread(fd, 32, 0) or b"0"):
            os.close(fd)
            raise RunLockedError(_foreign(path, run_dir, "not a taynode lock file (a lock holds only a process id)"))
        return fd
    raise RunLockedError(_foreign(path, run_dir, "created and removed repeatedly by another process"))


def _foreign(path, run_dir, what: str) -> str:
    return (
        f"{path} is {what}; taynode creates and owns run.lock in a run folder and will not write to another file: "
        f"remove or rename it if it is yours, or train into another folder than {run_dir}"
    )


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration of the ``with`` block."""
    path = os.path.join(os.fspath(run_dir), LOCK)
    fd = _open_lock(path, run_dir)
    try:
        holder = os.pread(fd, 32, 0).decode().strip()
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
