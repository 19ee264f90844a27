"""MINIBOONE as preprocessed for MAF (Papamakarios et al. 2017) and used by FFJORD and the paper.

The file is MAF's ``miniboone/data.npy`` (from the MAF data archive, Zenodo record 1161203,
``data.tar.gz``): a float array of 36,488 events × 43 features. It is not distributed with
this project. Where it is: the ``path`` argument (the file, or a folder holding ``data.npy``
or ``miniboone/data.npy``), else ``$TAYNODE_MINIBOONE``, else ``<data root>/miniboone/data.npy``
(see :func:`taynode.data.data_root`).

Split and normalization exactly as MAF's ``datasets/miniboone.py``: no shuffling; the test set
is the last ``int(0.1 n)`` rows; the validation set is the last ``int(0.1 m)`` rows of the
remaining m; every split is standardized by the mean and standard deviation (NumPy's,
``ddof=0``) of training and validation together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inputs import read_npy
from . import DataError, locate, verify_sha256

__all__ = ["ENV", "MiniBoone", "find", "load", "split"]

ENV = "TAYNODE_MINIBOONE"
SHAPE = (36488, 43)  # the MAF file's shape (documentation; other row counts are accepted)


@dataclass(frozen=True)
class MiniBoone:
    """Normalized splits (float64) and the statistics used; ``source`` is the file read."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    source: str


def find(path: str | os.PathLike[str] | None = None) -> Path:
    """The ``data.npy`` to read (see the module docstring for the search order)."""
    p, what = locate(
        path,
        ENV,
        "miniboone",
        f"MINIBOONE not found: pass the path of MAF's miniboone/data.npy, set ${ENV}, or put it in "
        f"../shared/data/miniboone/data.npy (it comes from MAF's data archive, Zenodo record 1161203)",
    )
    if p.is_dir():
        for cand in (p / "data.npy", p / "miniboone" / "data.npy"):
            if cand.is_file():
                return cand
        raise DataError(f"{p} (from {what}) has no data.npy or miniboone/data.npy (MAF's preprocessed MINIBOONE)")
    if not p.is_file():
        raise DataError(
            f"MINIBOONE file {p} (from {what}) does not exist; it is MAF's preprocessed miniboone/data.npy "
            f"(Zenodo record 1161203, data.tar.gz), not included here"
        )
    return p


def split(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split and normalization of the raw array: ``(train, val, test, mean, std)``."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[-n_test:], data[:-n_test]
    n_val = int(0.1 * rest.shape[0])
    val, train = rest[-n_val:], rest[:-n_val]
    both = np.vstack([train, val])
    mean, std = both.mean(axis=0), both.std(axis=0)
    if np.any(std == 0):
        raise DataError(f"features {np.flatnonzero(std == 0).tolist()} are constant in training+validation; cannot standardize")
    return (train - mean) / std, (val - mean) / std, (test - mean) / std, mean, std


def load(path: str | os.PathLike[str] | None = None, *, sha256: str | None = None, max_bytes: int | None = None) -> MiniBoone:
    """Load, check, split and normalize MINIBOONE (see the module docstring).

    Args:
        path: the file or a folder with it; ``None`` searches ``$TAYNODE_MINIBOONE`` and the
            data folder.
        sha256: the file's expected SHA-256 (``None``: not checked).
        max_bytes: the input size cap (default ``$TAYNODE_MAX_INPUT_BYTES``, else 1 GiB; MAF's
            file is 12.6 MB): a header declaring more is an error before anything is allocated.
    """
    src = find(path)
    verify_sha256(src, sha256)
    try:
        data = read_npy(src, max_bytes, DataError)
    except OSError as e:
        raise DataError(f"{src}: cannot read as a NumPy .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(data, np.ndarray) or data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
        raise DataError(
            f"{src}: expected a 2-D float array (events × features, {SHAPE} for MAF's file), got "
            f"{getattr(data, 'shape', None)} {getattr(data, 'dtype', type(data).__name__)}"
        )
    if data.shape[0] < 100:
        raise DataError(f"{src}: only {data.shape[0]} rows; too few for the 80/10/10 split")
    if not np.all(np.isfinite(data)):
        raise DataError(f"{src}: contains NaN or inf")
    train, val, test, mean, std = split(data.astype(np.float64))
    return MiniBoone(train, val, test, mean, std, str(src))
