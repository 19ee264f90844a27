"""Fuzzing the file loaders (issue #26): random truncations, bit flips and oversized headers of
real MNIST (a subset of the project's file, as npz and as gzipped IDX), tiny PhysioNet archives
and portable model files. Every mutated file must load or raise one of the documented errors
(``DataError`` / ``ValueError``), within a time bound, and peak allocation (tracemalloc: NumPy
registers its buffers there) must stay within a small multiple of the cap the loaders get.
Seeded and bounded in count, so it is the same few seconds every run."""

from __future__ import annotations

import functools
import gzip
import io
import os
import random
import tarfile
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from taynode import portable
from taynode.data import DataError, mnist, physionet
from taynode.data.mnist import IDX_FILES
from test_physionet import tiny_set_a

MNIST_NPZ = "/work/shared/data/mnist/mnist.npz"
CAP = 1 << 20  # the loaders' input size cap in this test; the real data here is ~100 kB
PEAK = 8 * CAP  # allowed peak allocation per load (the cap, plus copies and parsing)
CASES = 30  # mutations per format
SLOWEST = 5.0  # seconds one load may take (a hang would blow it)


def _mutations(raw: bytes, rng: random.Random, n: int):
    """``n`` damaged copies of ``raw``: truncated, bit-flipped, or both."""
    for _ in range(n):
        kind = rng.choice(["truncate", "flip", "flip", "both"])
        b = bytearray(raw)
        if kind in ("flip", "both"):
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        if kind in ("truncate", "both"):
            b = b[: rng.randrange(len(b))]
        yield bytes(b)


def _run(load, what):
    """Call ``load()``; fail on anything but a documented error, on slowness, on a high peak."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        load()
        outcome = "loaded"
    except (DataError, ValueError, FileNotFoundError) as e:
        assert "\n" not in str(e).strip(), f"{what}: a multi-line error: {e}"
        outcome = type(e).__name__
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    assert elapsed < SLOWEST, f"{what}: took {elapsed:.1f} s"
    assert peak < PEAK, f"{what}: allocated {peak} bytes at peak, over {PEAK}"
    return outcome


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@functools.lru_cache(maxsize=1)
def _subset():
    with np.load(MNIST_NPZ) as z:
        return {k: z[k][:40] if k.endswith("train") else z[k][:20] for k in IDX_FILES}


def _mnist_subset(tmp_path):
    """40 training and 20 test images (and labels) of the real file."""
    if not os.path.exists(MNIST_NPZ):
        pytest.skip(f"the project's MNIST file {MNIST_NPZ} is not on this machine")
    return _subset()


def _oversized_npz(arrays, rng):
    """The npz with one member's .npy header declaring a far larger shape than its data."""
    name = rng.choice(list(arrays))
    shape = list(arrays[name].shape)
    shape[0] *= 10 ** rng.randint(3, 12)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in arrays.items():
            b = io.BytesIO()
            np.lib.format.write_array(b, v)
            data = b.getvalue()
            if k == name:
                h = io.BytesIO()
                np.lib.format.write_array_header_1_0(h, {"descr": v.dtype.str, "fortran_order": False, "shape": tuple(shape)})
                data = h.getvalue() + v.tobytes()
            zf.writestr(k + ".npy", data)
    return buf.getvalue()


def test_fuzz_mnist_npz(tmp_path, traced):
    arrays = _mnist_subset(tmp_path)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    rng = random.Random(1)
    path = tmp_path / "m.npz"
    outcomes = []
    for i, raw in enumerate([*_mutations(buf.getvalue(), rng, CASES), *(_oversized_npz(arrays, rng) for _ in range(10))]):
        path.write_bytes(raw)
        outcomes.append(_run(lambda: mnist.load(path, sha256=None, max_bytes=CAP), f"npz case {i}"))
    assert outcomes.count("loaded") < len(outcomes)  # the damage was seen


def _idx_bytes(x: np.ndarray) -> bytes:
    return bytes([0, 0, 8, x.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in x.shape) + x.tobytes()


def test_fuzz_mnist_idx(tmp_path, traced):
    arrays = _mnist_subset(tmp_path)
    plain = {k: _idx_bytes(v) for k, v in arrays.items()}
    rng = random.Random(2)
    outcomes = []
    for i in range(CASES + 10):
        victim = rng.choice(list(plain))
        files = dict(plain)
        if i < CASES // 2:  # damage the decompressed bytes (header and data), then gzip
            files[victim] = next(_mutations(plain[victim], rng, 1))
            blobs = {k: gzip.compress(v) for k, v in files.items()}
        elif i < CASES:  # damage the gzip stream itself
            blobs = {k: gzip.compress(v) for k, v in files.items()}
            blobs[victim] = next(_mutations(blobs[victim], rng, 1))
        else:  # an oversized header: a dimension scaled up, or a bomb of zeros behind a true header
            b = bytearray(plain[victim])
            if rng.random() < 0.5:
                b[4:8] = rng.randrange(1 << 20, 1 << 32).to_bytes(4, "big")
            else:
                b += bytes(rng.randrange(CAP, 4 * CAP))
            files[victim] = bytes(b)
            blobs = {k: gzip.compress(v) for k, v in files.items()}
        folder = tmp_path / str(i)
        folder.mkdir()
        for k, blob in blobs.items():
            (folder / (IDX_FILES[k] + ".gz")).write_bytes(blob)
        outcomes.append(_run(lambda: mnist.load(folder, max_bytes=CAP), f"IDX case {i} ({victim})"))
    assert outcomes.count("loaded") < len(outcomes)


def _retar(raw_tgz: bytes, rng: random.Random) -> bytes:
    """The archive with one member's declared size (its tar header) made huge."""
    src = tarfile.open(fileobj=io.BytesIO(raw_tgz))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    tar = bytearray(out.getvalue())
    offsets = [i for i in range(0, len(tar) - 512, 512) if tar[i + 257 : i + 262] == b"ustar"]
    at = rng.choice(offsets)
    tar[at + 124 : at + 136] = b"%011o\0" % rng.randrange(1 << 24, 1 << 33)
    tar[at + 148 : at + 156] = b" " * 8  # the header's checksum, recomputed over the new size
    tar[at + 148 : at + 155] = b"%06o\0" % sum(tar[at : at + 512])
    return gzip.compress(bytes(tar))


def test_fuzz_physionet(tmp_path, traced, monkeypatch):
    folder = tiny_set_a(tmp_path / "a", monkeypatch)
    good = (folder / "set-a.tar.gz").read_bytes()
    rng = random.Random(3)
    outcomes = []
    for i, raw in enumerate([*_mutations(good, rng, CASES), *(_retar(good, rng) for _ in range(10))]):
        (folder / "set-a.tar.gz").write_bytes(raw)
        outcomes.append(
            _run(lambda: physionet.load(folder, verify=False, test_fraction=0.3, max_bytes=CAP), f"PhysioNet case {i}")
        )
    assert outcomes.count("loaded") < len(outcomes)


def test_fuzz_portable(tmp_path, traced):
    rng_np = np.random.default_rng(0)
    spec = {
        "format": portable.FORMAT,
        "kind": "mlp",
        "activation": "tanh",
        "weights": [rng_np.standard_normal((8, 3)), rng_np.standard_normal((2, 9))],
        "biases": [rng_np.standard_normal(8), rng_np.standard_normal(2)],
    }
    path = tmp_path / "model.npz"
    portable.save(spec, str(path))
    good = path.read_bytes()
    rng = random.Random(4)
    arrays = {"header": np.frombuffer(b'{"format": "taynode.portable/1", "kind": "mlp", "activation": "tanh"}', np.uint8)}
    arrays |= {f"weight_{i}": w for i, w in enumerate(spec["weights"])} | {f"bias_{i}": b for i, b in enumerate(spec["biases"])}
    outcomes = []
    for i, raw in enumerate([*_mutations(good, rng, CASES), *(_oversized_npz(arrays, rng) for _ in range(10))]):
        path.write_bytes(raw)
        outcomes.append(_run(lambda: portable.load(str(path), max_bytes=CAP), f"portable case {i}"))
    assert outcomes.count("loaded") < len(outcomes)
