"""MNIST (LeCun, Cortes & Burges): the 60,000 training and the official 10,000 test images.

Two formats are read:

* ``mnist.npz`` with ``x_train`` uint8 (60000, 28, 28), ``y_train`` (60000,), ``x_test``
  (10000, 28, 28), ``y_test`` (10000,), verified against :data:`NPZ_SHA256` (the file in the
  project's ``shared/data/mnist``; pass ``sha256=None`` for another npz of the same layout);
* the four original IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``),
  whose headers and sizes are checked.

Both are read within the input size cap (``max_bytes``, ``$TAYNODE_MAX_INPUT_BYTES``; see
:mod:`taynode.inputs`): a header declaring more, or a gzip stream decompressing to more than its
header says, is an error before the memory is taken.

Where the file is: the ``path`` argument (a file or a folder), else ``$TAYNODE_MNIST`` (file or
folder), else ``<data root>/mnist`` (see :func:`taynode.data.data_root`). A folder is searched
for ``mnist.npz`` first, then for the IDX files.

Splits: the validation set is the *last* ``validation`` images of the official training set
(the split of the classic ``mnist.pkl.gz``: deterministic, no shuffling); the test set is always
the official 10,000 test images.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _validate
from ..inputs import LazyNpz, max_input_bytes, read_exact
from . import DataError, locate, verify_sha256

__all__ = ["ENV", "IDX_FILES", "MNIST", "NPZ_SHA256", "as_float", "find", "load", "read_idx"]

ENV = "TAYNODE_MNIST"
NPZ_NAME = "mnist.npz"
NPZ_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
N_TRAIN, N_TEST, SIDE, N_CLASSES = 60000, 10000, 28, 10


@dataclass(frozen=True)
class MNIST:
    """Images uint8 (n, 28, 28) and labels uint8 (n,) for each split; ``source`` is the file read."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def split(self, name: str):
        """``(images, labels)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; valid: 'train', 'val', 'test'")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find(path: str | os.PathLike[str] | None = None) -> Path:
    """The npz file or IDX folder to read (see the module docstring for the search order)."""
    p, what = locate(
        path,
        ENV,
        "mnist",
        f"MNIST not found: pass a path, set ${ENV} (the npz file or a folder with it or the "
        f"IDX files) or $TAYNODE_DATA (a folder with mnist/{NPZ_NAME}), or put it in "
        f"../shared/data/mnist next to the repository",
    )
    if p.is_file():
        return p
    if p.is_dir():
        if (p / NPZ_NAME).is_file():
            return p / NPZ_NAME
        if all(_idx_path(p, stem) for stem in IDX_FILES.values()):
            return p
        present = [stem for stem in IDX_FILES.values() if _idx_path(p, stem)]
        missing = [stem for stem in IDX_FILES.values() if not _idx_path(p, stem)]
        hint = f"; IDX files missing: {missing}" if present else ""
        raise DataError(f"{p} (from {what}) has neither {NPZ_NAME} nor the four IDX files {list(IDX_FILES.values())}[.gz]{hint}")
    raise DataError(f"MNIST file {p} (from {what}) does not exist")


def read_idx(path: str | os.PathLike[str], expect_ndim: int, *, max_bytes: int | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped if the name ends in .gz), checked against its header.

    The header is read and checked first (magic, element type, dimensions, and the size they
    declare against the input size cap, ``max_bytes`` or ``$TAYNODE_MAX_INPUT_BYTES``, see
    :mod:`taynode.inputs`); then exactly that many bytes are read from the (decompressed)
    stream, so a file that lies about its size, or a decompression bomb, is rejected having
    used at most the declared size."""
    path = Path(path)
    cap = max_input_bytes(max_bytes)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            dtype_code, ndim = head[2], head[3]
            if dtype_code != 0x08:
                raise DataError(f"{path}: IDX element type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
            if ndim != expect_ndim:
                raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim}")
            dims = fh.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            if ndim == 3 and shape[1:] != (SIDE, SIDE):
                raise DataError(f"{path}: IDX images of {shape[1]}x{shape[2]} pixels, expected {SIDE}x{SIDE}")
            size = math.prod(shape)  # exact: Python integers do not overflow
            data = read_exact(fh, size, cap, f"{path}: header says shape {shape} but the data", DataError)
            if fh.read(1):
                raise DataError(
                    f"{path}: more data than its header's shape {shape} ({4 + 4 * ndim + size} bytes) declares (corrupt)"
                )
    except (OSError, EOFError, zlib.error) as e:  # gzip raises these on corrupt or truncated archives
        raise DataError(f"{path}: cannot read ({e})") from None
    return data.reshape(shape)


def _check(arrays: dict, source) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE) or x.dtype != np.uint8:
            raise DataError(f"{source}: x_{split} has shape {x.shape} and dtype {x.dtype}, expected (n, 28, 28) uint8")
        if y.shape != (x.shape[0],):
            raise DataError(f"{source}: y_{split} has shape {y.shape}, expected ({x.shape[0]},) to match x_{split}")
        if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
            raise DataError(f"{source}: y_{split} has labels outside 0..9")


def _read_npz(path: Path, sha256, max_bytes) -> dict:
    verify_sha256(path, sha256)
    with LazyNpz(path, max_bytes, error=DataError) as z:
        missing = [k for k in IDX_FILES if k not in z.files]
        if missing:
            raise DataError(f"{path}: npz lacks arrays {missing} (has {z.files})")
        return {k: z.read(k) for k in IDX_FILES}


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    validation: int = 0,
    sha256: str | None = NPZ_SHA256,
    max_bytes: int | None = None,
) -> MNIST:
    """Load MNIST, verified, with the last ``validation`` training images held out.

    Args:
        path: ``mnist.npz``, or a folder with it or with the IDX files; ``None`` searches
            ``$TAYNODE_MNIST`` and the data folder.
        validation: how many of the 60,000 training images (the last ones) form the
            validation set; ``0 <= validation < n_train``.
        sha256: the npz's expected SHA-256 (default: the project's file); ``None`` skips it.
            IDX files are checked by their headers and sizes instead.
        max_bytes: the input size cap (default ``$TAYNODE_MAX_INPUT_BYTES``, else 1 GiB): no
            file may declare or decompress to more (see :mod:`taynode.inputs`).
    """
    src = find(path)
    arrays = (
        _read_npz(src, sha256, max_bytes)
        if src.is_file()
        else {
            k: read_idx(_idx_path(src, stem), 3 if k.startswith("x") else 1, max_bytes=max_bytes) for k, stem in IDX_FILES.items()
        }
    )
    _check(arrays, src)
    n = arrays["x_train"].shape[0]
    _validate.integer("validation", validation, 0, below=n, hint=" (images held out of the training set)")
    cut = n - validation
    x, y = arrays["x_train"], arrays["y_train"]
    return MNIST(x[:cut], y[:cut], x[cut:], y[cut:], arrays["x_test"], arrays["y_test"], str(src))


def as_float(images: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Images flattened to (n, 784) and scaled to [0, 1]."""
    return (images.reshape(images.shape[0], -1).astype(dtype)) / dtype(255.0)
