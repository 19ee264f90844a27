"""STEER's perturbed observation times (models.classifier.steer_times) and the CNF's traced end time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode.models.classifier import steer_times


@pytest.mark.parametrize("b", [1.0, 0.3])
def test_steer_times_stay_sorted_within_the_band_and_fill_it(b):
    ts = np.array([0.0, 0.1, 1.1, 1.2, 1.25, 2.0, 2.05])  # uneven: a long gap before a short one
    gaps = np.diff(ts)
    half = 0.5 * b * np.minimum(gaps, np.r_[gaps[1:], gaps[-1]])  # Pal's δt/2 on a uniform grid
    out = np.asarray(
        jax.jit(jax.vmap(lambda k: steer_times(k, jnp.asarray(ts), b)))(jax.random.split(jax.random.PRNGKey(0), 4000))
    )
    assert np.all(out[:, 0] == 0.0)  # the first time is fixed
    assert np.all(np.diff(out, axis=1) > 0)  # strictly increasing, every draw
    move = out[:, 1:] - ts[1:]
    assert np.all(np.abs(move) <= half + 1e-15) and np.all(out <= ts[-1])
    # uniform on the band: interior times reach both edges, their mean is 0 (4 standard errors)
    np.testing.assert_allclose(move[:, :-1].max(0) / half[:-1], 1.0, atol=0.01)
    np.testing.assert_allclose(move.min(0) / half, -1.0, atol=0.01)
    assert np.all(np.abs(move[:, :-1].mean(0)) < 4 * half[:-1] / np.sqrt(3 * 4000))
    assert np.all(move[:, -1] <= 0)  # the last time is clamped to t_{T-1}


def test_steer_times_on_a_uniform_grid_is_pals_rule():
    ts = jnp.linspace(0.0, 1.0, 6, dtype=jnp.float64)
    out = np.asarray(steer_times(jax.random.PRNGKey(1), ts, 1.0))
    assert np.all(np.abs(out[1:-1] - np.asarray(ts)[1:-1]) <= 0.1 + 1e-15) and out.dtype == np.float64
    assert not np.allclose(out, ts)


@pytest.mark.parametrize("b", [0.0, -0.5, 1.5, float("nan"), True])
def test_steer_times_rejects_bad_b(b):
    with pytest.raises(ValueError, match=r"b .* must be in \(0, 1\]"):
        steer_times(jax.random.PRNGKey(0), jnp.array([0.0, 1.0]), b)


def test_steer_times_rejects_bad_times():
    with pytest.raises(ValueError, match="strictly increasing"):
        steer_times(jax.random.PRNGKey(0), jnp.array([0.0, 2.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="at least two"):
        steer_times(jax.random.PRNGKey(0), jnp.array([0.0]), 1.0)


def test_cnf_forward_takes_a_traced_end_time():
    from taynode.models import MLPDynamics
    from taynode.models.cnf import CNF

    cnf = CNF(MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64), trace="exact")
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 2), jnp.float64)
    tol = dict(rtol=1e-10, atol=1e-10)
    traced = jax.jit(lambda t1: cnf.forward(x, t1=t1, **tol).log_prob)(jnp.float64(0.7))
    np.testing.assert_allclose(traced, cnf.forward(x, t1=0.7, **tol).log_prob, rtol=1e-12)
    assert not np.allclose(traced, cnf.forward(x, **tol).log_prob)  # the model's own t1 = 1 differs
    with pytest.raises(ValueError, match="t1 must be"):
        cnf.forward(x, t1=-1.0, **tol)
