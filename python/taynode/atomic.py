"""Atomic file writes: the one helper behind checkpoints, log rewrites, results and portable files.

The new content goes to a temporary file with a unique name (:func:`tempfile.mkstemp`) in the
destination's folder, is flushed to disk (``fsync``), then renamed over the destination
(``os.replace``, atomic on POSIX). A reader, or a process killed at any moment, sees either the
old file or the new one, never a torn one; two processes writing the same file at once each
rename their own complete file, so the last one wins whole. A kill mid-write leaves only a
``<name>.<random>.tmp`` file beside the destination (see :func:`stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

__all__ = ["atomic_file", "stale_temporaries", "write_atomic"]


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a folder that cannot be opened (some file systems): the rename stands anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", before_replace: Callable[[], None] | None = None) -> Iterator[IO]:
    """A file object whose content replaces ``path`` when the ``with`` block ends without an
    exception (then ``before_replace()``, if given, runs just before the rename); on an exception
    the temporary file is removed and ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def stale_temporaries(path: str | os.PathLike) -> list[str]:
    """The names of the temporary files an interrupted :func:`atomic_file` of ``path`` left."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return sorted(n for n in os.listdir(folder) if n.startswith(base + ".") and n.endswith(".tmp"))
