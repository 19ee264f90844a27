"""MNIST loader: IDX and npz formats, the search order, SHA-256 and format errors, real shapes."""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from taynode.data import DataError, data_root, mnist


def write_idx(path: Path, arr: np.ndarray, gz: bool = False):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def tiny(seed=0, n_train=7, n_test=3):
    rng = np.random.default_rng(seed)
    return dict(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test, dtype=np.uint8),
    )


def write_idx_set(folder: Path, arrays: dict, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    for k, stem in mnist.IDX_FILES.items():
        write_idx(folder / stem, arrays[k], gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_validation_split(tmp_path, gz):
    arrays = tiny()
    write_idx_set(tmp_path, arrays, gz)
    d = mnist.load(tmp_path, validation=2)
    np.testing.assert_array_equal(d.x_train, arrays["x_train"][:5])
    np.testing.assert_array_equal(d.x_val, arrays["x_train"][5:])
    np.testing.assert_array_equal(d.y_val, arrays["y_train"][5:])
    np.testing.assert_array_equal(d.x_test, arrays["x_test"])
    np.testing.assert_array_equal(d.y_test, arrays["y_test"])
    assert d.x_val.shape == (2, 28, 28) and d.split("test")[1].shape == (3,)
    x = mnist.as_float(d.x_test)
    assert x.shape == (3, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, arrays["x_test"].reshape(3, -1))


def test_npz_with_own_hash_and_env_var(tmp_path, monkeypatch):
    arrays = tiny(1)
    f = tmp_path / "mine.npz"
    np.savez(f, **arrays)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    monkeypatch.setenv(mnist.ENV, str(f))
    d = mnist.load(sha256=digest)
    np.testing.assert_array_equal(d.x_train, arrays["x_train"])
    assert d.source == str(f) and d.x_val.shape == (0, 28, 28)
    # The project's hash is the default: another file is refused, naming the file.
    with pytest.raises(DataError, match=r"mine\.npz: SHA-256 is .* expected 06af5dfe"):
        mnist.load()
    assert mnist.load(sha256=None).x_test.shape == (3, 28, 28)


def test_data_root_env(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    write_idx_set(tmp_path / "mnist", tiny(2), gz=True)
    monkeypatch.delenv(mnist.ENV, raising=False)
    monkeypatch.setenv("TAYNODE_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert mnist.load().source == str(tmp_path / "mnist")
    monkeypatch.setenv("TAYNODE_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="TAYNODE_DATA.*not a folder"):
        mnist.load()


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        mnist.load(tmp_path / "absent.npz")
    with pytest.raises(DataError, match=r"neither mnist\.npz nor the four IDX files"):
        mnist.load(tmp_path)
    write_idx(tmp_path / mnist.IDX_FILES["x_train"], tiny()["x_train"])
    with pytest.raises(DataError, match=r"IDX files missing: \['train-labels"):
        mnist.load(tmp_path)


def test_corrupt_files(tmp_path):
    arrays = tiny()
    write_idx_set(tmp_path, arrays, gz=False)
    img = tmp_path / mnist.IDX_FILES["x_test"]
    good = img.read_bytes()
    img.write_bytes(good[:-5])  # truncated
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: header says shape \(3, 28, 28\).*truncated"):
        mnist.load(tmp_path)
    img.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DataError, match="bad magic"):
        mnist.load(tmp_path)
    img.write_bytes(good)
    lab = tmp_path / mnist.IDX_FILES["y_train"]
    write_idx(lab, np.arange(6))  # 6 labels for 7 images
    with pytest.raises(DataError, match=r"y_train has shape \(6,\), expected \(7,\)"):
        mnist.load(tmp_path)
    write_idx(lab, np.full(7, 12))
    with pytest.raises(DataError, match="labels outside 0..9"):
        mnist.load(tmp_path)
    write_idx(lab, arrays["y_train"], gz=True)
    os.remove(lab)
    gzf = Path(str(lab) + ".gz")
    gzf.write_bytes(gzf.read_bytes()[:20])  # truncated gzip stream
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: cannot read"):
        mnist.load(tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"bad\.npz: cannot read as an npz"):
        mnist.load(bad, sha256=None)
    write_idx(lab, arrays["y_train"])
    with pytest.raises(ValueError, match=r"validation must be an integer in \[0, 7\)"):
        mnist.load(tmp_path, validation=7)


def real_file():
    try:
        return mnist.find()
    except DataError as e:
        return e


def test_real_file_shapes():
    src = real_file()
    if isinstance(src, DataError):
        pytest.skip(f"the real MNIST file is not available here: {src}")
    d = mnist.load(validation=10000)
    assert d.x_train.shape == (50000, 28, 28) and d.x_val.shape == (10000, 28, 28)
    assert d.x_test.shape == (10000, 28, 28) and d.y_test.shape == (10000,)
    assert d.x_train.dtype == np.uint8
    # Every class is present and the splits are the official ones (about 10 % per class).
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.sum() == 10000 and counts.min() > 850
    assert np.bincount(np.concatenate([d.y_train, d.y_val]), minlength=10).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
