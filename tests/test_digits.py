"""The UCI digits loader (scikit-learn's shipped copy): split, values, the preprocessing's bits/dim."""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode.data import DataError, digits

sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn (the digits' source) is not installed")


@pytest.fixture(scope="module")
def data():
    return digits.load()


def test_split_sizes_disjoint_and_complete():
    tr, va, te = digits.split_indices()
    assert (len(tr), len(va), len(te)) == (1297, 250, 250) == (digits.N_TRAIN, digits.N_VAL, digits.N_TEST)
    assert len(set(tr) | set(va) | set(te)) == 1797
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    for a, b in zip(digits.split_indices(), digits.split_indices()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(digits.split_indices(seed=1)[2], te)  # the split is the seed's, not an ordering


def test_split_indices_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="n_val"):
        digits.split_indices(10, 5, 5)
    with pytest.raises(ValueError, match="n_val"):
        digits.split_indices(10, -1, 2)
    assert [len(s) for s in digits.split_indices(10, 0, 0)] == [10, 0, 0]


def test_loaded_images_are_sklearns_at_the_split(data):
    ref = sklearn_datasets.load_digits()
    tr, va, te = digits.split_indices()
    for x, y, idx in ((data.x_train, data.y_train, tr), (data.x_val, data.y_val, va), (data.x_test, data.y_test, te)):
        assert x.dtype == np.uint8 and x.shape == (len(idx), 1, 8, 8)
        np.testing.assert_array_equal(x[:, 0], ref.images[idx])
        np.testing.assert_array_equal(y, ref.target[idx])
    allx = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert allx.min() == 0 and allx.max() == 16  # both ends of the 17 levels occur
    np.testing.assert_array_equal(digits.load().x_test, data.x_test)  # deterministic
    x, _ = data.split("val")
    assert x is data.x_val
    with pytest.raises(ValueError, match="unknown split"):
        data.split("validation")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((2, 8, 8), 0.5), "integers"),
        (np.full((2, 8, 8), 17.0), "integers"),
        (np.full((2, 8, 8), -1.0), "integers"),
        (np.full((2, 8, 8), np.nan), "integers"),
        (np.zeros((2, 8, 7)), "shape"),
    ],
)
def test_images_that_are_not_17_levels_are_refused(bad, match):
    with pytest.raises(DataError, match=match):
        digits._as_levels(bad)


def test_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import of it raises ImportError
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        digits.load()


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_bits_per_dim_of_the_uniform_density_is_log2_17(data, alpha):
    """A flow whose density in logit space is the pushforward of v ~ U[0,1)^D (s = α + (1−2α)v is
    uniform on [α, 1−α], so y = logit(s) has density σ(y)(1−σ(y))/(1−2α) per dimension) gives
    p_v = 1, so bits/dim = −(0 − D log 17)/(D log 2) = log2 17 for any α (hand computation): the
    uniform distribution over the 17 levels."""
    from taynode.studies import ffjord

    cfg = ffjord.preset("digits", alpha=alpha)
    with jax.enable_x64(True):
        y, logdet = ffjord.flow_input(cfg, data.x_test[:20], jax.random.PRNGKey(0), jnp.float64)
        s = jax.nn.sigmoid(y)
        v = (s - alpha) / (1 - 2 * alpha)
        assert float(v.min()) >= 0 and float(v.max()) < 1  # (x + u)/17 fills [0, 1)
        np.testing.assert_array_less(np.asarray(data.x_test[:20], float) / 17 - 1e-12, np.asarray(v))
        np.testing.assert_array_less(np.asarray(v), (np.asarray(data.x_test[:20], float) + 1) / 17 + 1e-12)
        # logistic log-density of y, written out, plus the change of variables s → v
        log_py = jnp.sum(-y - 2 * jnp.log1p(jnp.exp(-y)), axis=(1, 2, 3)) - 64 * math.log(1 - 2 * alpha)
        bpd = ffjord.data_loss(cfg, log_py, logdet, 64)
    np.testing.assert_allclose(np.asarray(bpd), math.log2(17), rtol=0, atol=1e-10)
