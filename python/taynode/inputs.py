"""Reading files that may lie about themselves: streamed reads with a size cap, and ``.npz``
archives read lazily, member by member, with each array's declared shape checked first.

Every file input (MNIST IDX and npz, PhysioNet archives, MINIBOONE, portable models,
checkpoints) is read through these, so no file can make the process allocate much more than
the cap: a decompression bomb or a header declaring a huge array stops with an error naming
the cap before the memory is taken. The cap is ``max_bytes`` where a loader takes it, else
``$TAYNODE_MAX_INPUT_BYTES``, else :data:`DEFAULT_MAX_BYTES` (1 GiB: every dataset here is far
below it; MNIST's training images are 47 MB).
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from typing import IO

import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENV",
    "InputError",
    "LazyNpz",
    "max_input_bytes",
    "npy_header",
    "read_capped",
    "read_exact",
    "read_npy",
]

ENV = "TAYNODE_MAX_INPUT_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
_CHUNK = 1 << 20
# what a damaged zip or deflate stream raises while it is read
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


class InputError(ValueError):
    """A file is malformed, or declares or holds more data than the size cap allows."""


def max_input_bytes(given: int | None = None) -> int:
    """The size cap in bytes: ``given``, else ``$TAYNODE_MAX_INPUT_BYTES``, else the default."""
    if given is None:
        env = os.environ.get(ENV)
        if not env:
            return DEFAULT_MAX_BYTES
        try:
            given = int(env)
        except ValueError:
            raise InputError(f"${ENV}={env!r} is not a whole number of bytes") from None
    if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or given < 1:
        raise InputError(f"the input size cap (max_bytes or ${ENV}) must be a positive number of bytes, got {given!r}")
    return int(given)


def _over(what: str, n: int, cap: int, error) -> Exception:
    return error(
        f"{what} is {n} bytes, over the input size cap of {cap} bytes (raise it with max_bytes= or ${ENV} if the file is genuine)"
    )


def read_exact(fh: IO[bytes], n: int, cap: int, what: str, error: type[Exception] = InputError) -> np.ndarray:
    """Exactly ``n`` bytes of ``fh`` as a uint8 array (allocated once, ``n`` checked against
    ``cap`` first); a stream that ends early raises ``error``."""
    if n > cap:
        raise _over(what, n, cap, error)
    buf = np.empty(n, np.uint8)
    view, got = memoryview(buf), 0
    while got < n:
        k = fh.readinto(view[got : got + _CHUNK])
        if not k:
            raise error(f"{what} is truncated: {got} of the {n} bytes declared")
        got += k
    return buf


def read_capped(fh: IO[bytes], cap: int, what: str, error: type[Exception] = InputError) -> bytes:
    """All of ``fh``, read in chunks; more than ``cap`` bytes raises ``error`` (nothing beyond
    ``cap`` plus one chunk is ever held)."""
    out, total = io.BytesIO(), 0
    while block := fh.read(_CHUNK):
        total += len(block)
        if total > cap:
            raise _over(f"{what} (at least)", total, cap, error)
        out.write(block)
    return out.getvalue()


def npy_header(fh: IO[bytes], what: str, error: type[Exception] = InputError) -> tuple[tuple[int, ...], np.dtype, bool]:
    """``(shape, dtype, fortran_order)`` from the ``.npy`` header at ``fh``'s position, checked:
    format 1.0 or 2.0, non-negative dimensions, a plain numeric dtype (no objects, no pickles)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version}, expected 1.0 or 2.0")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh, max_header_size=1 << 16)
    except (ValueError, TypeError, SyntaxError, *ZIP_ERRORS) as e:
        raise error(f"{what}: cannot read its .npy header ({type(e).__name__}: {e})") from None
    if any(d < 0 for d in shape):
        raise error(f"{what} declares the negative shape {shape}")
    if dtype.hasobject or dtype.itemsize == 0 or dtype.fields is not None:
        raise error(f"{what} has dtype {dtype}, not a plain numeric type")
    return tuple(int(d) for d in shape), dtype, fortran


def _array(fh, shape, dtype, fortran, cap, what, error) -> np.ndarray:
    raw = read_exact(fh, math.prod(shape) * dtype.itemsize, cap, what, error)
    flat = raw.view(dtype)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def read_npy(path: str | os.PathLike[str], cap: int | None = None, error: type[Exception] = InputError) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, its declared size checked against the cap first."""
    cap, what = max_input_bytes(cap), f"{os.fspath(path)}"
    with open(path, "rb") as fh:
        shape, dtype, fortran = npy_header(fh, what, error)
        return _array(fh, shape, dtype, fortran, cap, f"{what}: array of shape {shape} {dtype}", error)


class LazyNpz:
    """An ``.npz`` archive opened without loading anything: :meth:`info` reads one member's
    ``.npy`` header (shape, dtype), :meth:`read` its array, the bytes of all arrays read so far
    counted against the cap. Errors are ``error`` (default :class:`InputError`) naming the file."""

    def __init__(self, path, cap: int | None = None, error=InputError):
        self.path, self.cap, self.error, self.used = os.fspath(path), max_input_bytes(cap), error, 0
        try:
            self._zip = zipfile.ZipFile(self.path)
        except ZIP_ERRORS as e:
            raise error(f"{self.path}: cannot read as an npz file ({type(e).__name__}: {e})") from None
        self.files = [n[:-4] for n in self._zip.namelist() if n.endswith(".npy")]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _header(self, fh, name):
        return npy_header(fh, f"{self.path}: array {name!r}", self.error)

    def info(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """``(shape, dtype)`` declared by member ``name``'s header."""
        with self._member(name) as fh:
            shape, dtype, _ = self._header(fh, name)
        return shape, dtype

    def _member(self, name):
        if name not in self.files:
            raise self.error(f"{self.path}: has no array {name!r} (has {self.files[:20]})")
        try:
            return self._zip.open(name + ".npy")
        except ZIP_ERRORS as e:
            raise self.error(f"{self.path}: array {name!r} is unreadable ({type(e).__name__}: {e})") from None

    def read(self, name: str) -> np.ndarray:
        """Member ``name``'s array; its declared size is checked against what is left of the cap
        before anything is allocated, and the data against the declared size."""
        with self._member(name) as fh:
            shape, dtype, fortran = self._header(fh, name)
            nbytes = math.prod(shape) * dtype.itemsize
            if self.used + nbytes > self.cap:
                raise _over(
                    f"{self.path}: array {name!r} of shape {shape} {dtype} (with those read before it)",
                    self.used + nbytes,
                    self.cap,
                    self.error,
                )
            try:
                out = _array(fh, shape, dtype, fortran, self.cap, f"{self.path}: array {name!r}", self.error)
            except ZIP_ERRORS as e:
                raise self.error(f"{self.path}: array {name!r} is corrupt ({type(e).__name__}: {e})") from None
        self.used += nbytes
        return out
