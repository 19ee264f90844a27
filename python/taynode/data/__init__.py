"""Dataset loaders (one module per dataset) and the small helpers they share.

Loaders find their files in this order: an explicit path argument, an environment variable,
then the project's shared data folder (``../shared/data`` from the repository root, or
``$TAYNODE_DATA``). Every file with a published SHA-256 is verified before it is parsed.

This package imports nothing heavy: import a loader module (``taynode.data.mnist``) to use it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["DATA_ENV", "DataError", "data_root", "locate", "sha256", "verify_sha256"]

DATA_ENV = "TAYNODE_DATA"


class DataError(ValueError):
    """A dataset file is missing, corrupt, or not what the loader expects."""


def _ancestors(path: Path):
    path = path.resolve()
    return [path, *path.parents]


def data_root(required: bool = True) -> Path | None:
    """The folder holding the datasets.

    ``$TAYNODE_DATA`` when set; otherwise the first ``shared/data`` folder found next to an
    ancestor of this package or of the current directory (so a checkout at ``X/main`` finds
    ``X/shared/data``, i.e. ``../shared/data`` from the repository root).
    """
    env = os.environ.get(DATA_ENV)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"${DATA_ENV}={env!r} is not a folder")
        return root
    for start in (Path(__file__).parent, Path.cwd()):
        for d in _ancestors(start):
            cand = d / "shared" / "data"
            if cand.is_dir():
                return cand
    if required:
        raise DataError(
            f"no data folder found: set ${DATA_ENV} to the folder holding the datasets, pass a path, "
            f"or place them in ../shared/data next to the repository"
        )
    return None


def locate(path: str | os.PathLike[str] | None, env: str, sub: str, missing: str) -> tuple[Path, str]:
    """Where a loader looks, and how to name that source in an error: ``path`` ("the given
    path"), else ``$env``, else ``sub`` inside :func:`data_root` ("the data folder"); raises
    :class:`DataError` with ``missing`` when there is none of them."""
    if path is not None:
        return Path(path).expanduser(), "the given path"
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser(), f"${env}"
    root = data_root(required=False)
    if root is None or not (root / sub).exists():
        raise DataError(missing)
    return root / sub, "the data folder"


def sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str | None, skip: str = "pass sha256=None") -> None:
    """Raise :class:`DataError` naming the file unless its SHA-256 is ``expected`` (None: no check).
    ``skip`` says how the caller's user turns the check off."""
    if expected is None:
        return
    got = sha256(path)
    if got != expected.lower():
        raise DataError(
            f"{path}: SHA-256 is {got}, expected {expected} (the file is corrupt, truncated, or a "
            f"different version; re-download it, or {skip} to skip the check)"
        )
