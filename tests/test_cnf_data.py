"""2-D toy densities and the MINIBOONE loader (on a synthetic file in MAF's format)."""

import numpy as np
import pytest

from taynode.data import DataError, miniboone, toy2d


@pytest.mark.parametrize("name", toy2d.NAMES)
def test_toy_sets_are_seeded_and_finite(name):
    a, b, c = toy2d.sample(name, 1001, seed=1), toy2d.sample(name, 1001, seed=1), toy2d.sample(name, 1001, seed=2)
    assert a.shape == (1001, 2) and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.5 < a.std() < 4  # on the usual scale of these toys


def test_toy_set_shapes():
    x = toy2d.sample("checkerboard", 5000)
    cell = np.floor(x / 2).astype(int)
    assert np.all((cell.sum(1) % 2) == 0) and np.all(np.abs(x) <= 4)
    # all 8 dark squares are used
    assert len({tuple(c) for c in cell}) == 8
    r = np.linalg.norm(toy2d.sample("rings", 4000), axis=1)
    nearest = np.array([0.75, 1.5, 2.25, 3.0])[np.argmin(np.abs(r[:, None] - [0.75, 1.5, 2.25, 3.0]), 1)]
    assert np.std(r - nearest) < 0.1
    g = toy2d.sample("8gaussians", 8000) * np.sqrt(2)
    ang = np.round(np.arctan2(g[:, 1], g[:, 0]) / (np.pi / 4)) % 8
    centers = 4 * np.stack([np.cos(ang * np.pi / 4), np.sin(ang * np.pi / 4)], 1)
    np.testing.assert_allclose((g - centers).std(0), 0.5, rtol=0.05)
    assert len(np.unique(ang)) == 8


def test_toy_bad_input():
    with pytest.raises(ValueError, match="unknown toy"):
        toy2d.sample("spirals", 10)
    with pytest.raises(ValueError, match="integer >= 1"):
        toy2d.sample("moons", 0)


def _synthetic(tmp_path, n=200, d=43, sub=""):
    raw = np.random.default_rng(0).standard_normal((n, d)) * np.arange(1, d + 1) + 5.0
    folder = tmp_path / sub if sub else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "data.npy", raw)
    return raw


def test_miniboone_maf_split_and_normalization(tmp_path, monkeypatch):
    raw = _synthetic(tmp_path, sub="miniboone")
    d = miniboone.load(tmp_path / "miniboone" / "data.npy")
    # MAF: test = last int(0.1 n) = 20 rows; validation = last int(0.1 * 180) = 18 of the rest
    assert (len(d.train), len(d.val), len(d.test)) == (162, 18, 20)
    mean, std = raw[:180].mean(0), raw[:180].std(0)
    np.testing.assert_allclose(d.test, (raw[180:] - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(d.val, (raw[162:180] - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(d.train, (raw[:162] - mean) / std, rtol=1e-12)
    both = np.vstack([d.train, d.val])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(both.std(0), 1, rtol=1e-12)
    # a folder, the environment variable, and the data root all find the same file
    assert miniboone.load(tmp_path).source == d.source
    monkeypatch.setenv(miniboone.ENV, str(tmp_path / "miniboone"))
    assert miniboone.load().source == d.source
    monkeypatch.delenv(miniboone.ENV)
    monkeypatch.setenv("TAYNODE_DATA", str(tmp_path))
    assert miniboone.load().source == d.source


def test_miniboone_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TAYNODE_DATA", str(tmp_path))
    monkeypatch.delenv(miniboone.ENV, raising=False)
    with pytest.raises(DataError, match="MINIBOONE not found.*Zenodo"):
        miniboone.load()
    with pytest.raises(DataError, match="no data.npy"):
        miniboone.load(tmp_path)
    np.save(tmp_path / "data.npy", np.zeros((200,)))
    with pytest.raises(DataError, match="2-D float"):
        miniboone.load(tmp_path)
    (tmp_path / "data.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read"):
        miniboone.load(tmp_path / "data.npy")
    raw = np.ones((200, 3))
    raw[0, 0] = np.nan
    np.save(tmp_path / "data.npy", raw)
    with pytest.raises(DataError, match="NaN"):
        miniboone.load(tmp_path)
    np.save(tmp_path / "data.npy", np.ones((200, 3)))
    with pytest.raises(DataError, match="constant"):
        miniboone.load(tmp_path)
    _synthetic(tmp_path)
    with pytest.raises(DataError, match="SHA-256"):
        miniboone.load(tmp_path, sha256="0" * 64)
