"""Issue #29 (5): the jet method at ties of piecewise primitives, and max pooling at a tie.

jet's own rules average tied ``max``/``min`` branches, give 0 for ``abs`` at 0 and take the first
index in ``reduce_max``; the trajectory follows the branch larger along the series. Truth here is
the trajectory's closed form (z' = g(z) solved on the branch it takes for t > 0) or the
right-sided ``incremental`` method; where taynode's jet wrapper cannot follow that branch it must
raise, eagerly and under jit, and cost nothing off ties (equal to nested JVPs)."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from taynode import UnsupportedPrimitiveError, derivatives

W = jnp.array([[1.0, 2.0], [0.5, -0.3]])
C = jnp.array([[1.0, 0.5]])
ONES = [1.0, 1.0, 1.0, 1.0]


def _scalars(f, z0, method="jet", order=4):
    return [float(d.ravel()[0]) for d in derivatives(f, 0.0, jnp.full((1, 1), z0), order=order, method=method)]


# z' = g(z) at z(0) = z0 whose right-sided branch gives z' = z - z0 + g(z0) (derivatives g(z0), 1, 1, ...)
# or the constant g(z0) (derivatives g(z0), 0, 0, ...).
RIGHT_SIDED = {
    "relu": (lambda t, z, a: jax.nn.relu(z) + 1.0, 0.0, ONES),
    "maximum": (lambda t, z, a: jnp.maximum(z, 0.0) + 1.0, 0.0, ONES),
    "minimum": (lambda t, z, a: jnp.minimum(z, 0.0) - 1.0, 0.0, [-1.0, -1.0, -1.0, -1.0]),
    "abs_up": (lambda t, z, a: jnp.abs(z) + 1.0, 0.0, ONES),
    "abs_down": (lambda t, z, a: -jnp.abs(z) - 1.0, 0.0, [-1.0, -1.0, -1.0, -1.0]),
    "clip_lower": (lambda t, z, a: jnp.clip(z, 0.0, 2.0) + 1.0, 0.0, ONES),
    "clip_upper": (lambda t, z, a: jnp.clip(z, 0.0, 2.0) + 1.0, 2.0, [3.0, 0.0, 0.0, 0.0]),
    "clip_array_bounds": (lambda t, z, a: lax.clamp(jnp.zeros((1, 1)), z, jnp.full((1, 1), 2.0)) + 1.0, 0.0, ONES),
}


@pytest.mark.parametrize("name", sorted(RIGHT_SIDED))
def test_jet_elementwise_kinks_follow_the_trajectory(name):
    f, z0, truth = RIGHT_SIDED[name]
    np.testing.assert_allclose(_scalars(f, z0), truth, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_scalars(f, z0, method="incremental"), truth, rtol=0, atol=1e-12)
    jitted = jax.jit(lambda z: derivatives(f, 0.0, z, order=4, method="jet"))(jnp.full((1, 1), z0))
    np.testing.assert_allclose([float(d.ravel()[0]) for d in jitted], truth, rtol=0, atol=1e-12)


# z' = g(t) with pieces that tie at t = 0 in the value and the first coefficient and part at the
# second: a higher coefficient decides the branch. Truth: z's derivatives on that branch.
HIGHER_TIES = {
    # max(t, t + t^2) = t + t^2 for t > 0
    "max": (lambda t, z, a: jnp.maximum(t + 0 * z, t + t**2 + 0 * z), [0.0, 1.0, 2.0, 0.0]),
    # min(t^2, t^2 + t^3) = t^2 for t > 0
    "min": (lambda t, z, a: jnp.minimum(t**2 + 0 * z, t**2 + t**3 + 0 * z), [0.0, 0.0, 2.0, 0.0]),
    # |t^3 - t^2| = t^2 - t^3 for small t > 0
    "abs": (lambda t, z, a: jnp.abs(t**3 - t**2 + 0 * z), [0.0, 0.0, 2.0, -6.0]),
    # clip(t^2 - t^3, 0, 1) = t^2 - t^3 for small t > 0 (the lower bound ties up to the 1st coefficient)
    "clamp": (lambda t, z, a: jnp.clip(t**2 - t**3 + 0 * z, 0.0, 1.0), [0.0, 0.0, 2.0, -6.0]),
}


@pytest.mark.parametrize("name", sorted(HIGHER_TIES))
@pytest.mark.parametrize("method", ["jet", "incremental"])
def test_ties_broken_by_a_higher_coefficient_follow_the_trajectory(name, method):
    f, truth = HIGHER_TIES[name]
    run = lambda z: derivatives(f, 0.0, z, order=4, method=method)  # noqa: E731
    for got in (run(jnp.zeros((1, 1))), jax.jit(run)(jnp.zeros((1, 1)))):
        np.testing.assert_allclose([float(d[0, 0]) for d in got], truth, rtol=0, atol=1e-12)


def test_jet_relu_layer_at_zero_matches_incremental():
    f = lambda t, z, a: jnp.tanh(z @ W) + 0.3 * jax.nn.relu(z @ W.T) + C  # noqa: E731
    jet = derivatives(f, 0.0, jnp.zeros((1, 2)), order=4, method="jet")
    inc = derivatives(f, 0.0, jnp.zeros((1, 2)), order=4, method="incremental")
    for a, b in zip(jet, inc):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# Ties the jet wrapper refuses: (field, state).
REFUSED = {
    "reduce_max": (lambda t, z, a: C + jnp.max(z @ W, axis=1, keepdims=True), jnp.zeros((1, 2))),
    "reduce_min": (lambda t, z, a: C - jnp.min(z @ W, axis=1, keepdims=True), jnp.zeros((1, 2))),
    "cummax": (lambda t, z, a: C + lax.cummax(z, axis=1), jnp.zeros((1, 2))),
    "select_n": (lambda t, z, a: jnp.where(z > 0, z, 0.1 * z) + 1.0, jnp.zeros((1, 1))),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_jet_refuses_ties_it_gets_wrong(name):
    f, z = REFUSED[name]
    with pytest.raises(Exception, match=r"method='jet' met a tie in .*method='incremental'"):
        jax.block_until_ready(derivatives(f, 0.0, z, order=3, method="jet"))
    with pytest.raises(Exception, match=r"method='jet' met a tie"):
        jax.block_until_ready(jax.jit(lambda u: derivatives(f, 0.0, u, order=3, method="jet"))(z))


def test_incremental_gives_the_trajectory_where_jet_refuses():
    f, z = REFUSED["reduce_max"]
    got = derivatives(f, 0.0, z, order=3, method="incremental")
    np.testing.assert_allclose([float(d[0, 0]) for d in got], [1.0, 1.85, 3.145], rtol=0, atol=1e-12)


def test_tie_with_identical_series_is_harmless():
    # z = 0 with z' = 0: the comparison ties, but both branches have the same (zero) series.
    f = lambda t, z, a: jnp.where(z > 0, z, 0.1 * z) + jnp.max(jnp.concatenate([z, z], axis=1), axis=1, keepdims=True)  # noqa: E731
    assert _scalars(f, 0.0, order=3) == [0.0, 0.0, 0.0]


def _everything(t, z, a):
    u = z @ W + jnp.sin(t)
    v = jnp.maximum(u, 0.1) + jnp.minimum(u, -0.2) + jnp.abs(u) + jnp.clip(u, -0.3, 0.4)
    v = v + jnp.max(u, axis=1, keepdims=True) - jnp.min(u, axis=1, keepdims=True) + lax.cummax(u, axis=1)
    return jnp.tanh(jnp.where(u > 0.05, v, 0.5 * v)) + jax.nn.relu(u)


def test_off_ties_jet_equals_nested():
    z = jnp.array([[0.31, -0.47]])
    jet = derivatives(_everything, 0.2, z, order=5, method="jet")
    ref = derivatives(_everything, 0.2, z, order=5, method="nested")
    for a, b in zip(jet, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    jitted = jax.jit(lambda u: derivatives(_everything, 0.2, u, order=5, method="jet"))(z)
    for a, b in zip(jitted, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_jet_gradient_through_the_right_sided_rule():
    # d/dw of the 3rd derivative of z' = relu(w z) + 1 at z = 0: on the branch z > 0, z = (e^{wt} - 1)/w.
    def d3(w):
        return derivatives(lambda t, z, a: jax.nn.relu(a * z) + 1.0, 0.0, jnp.zeros((1, 1)), args=w, order=3, method="jet")[-1][
            0, 0
        ]

    np.testing.assert_allclose(d3(1.5), 1.5**2, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(d3)(1.5), 2 * 1.5, rtol=1e-12)


POOL = eqx.nn.MaxPool2d(2, stride=1)


def _pool_field(t, u, a):
    return jnp.broadcast_to(POOL(u), (1, 2, 2)) + a


def test_max_pooling_at_a_tie_raises_in_incremental():
    z = jnp.zeros((1, 2, 2))
    rate = jnp.array([[[1.0, 2.0], [0.5, -1.0]]])  # the tied window's elements move apart
    f = _pool_field
    with pytest.raises(Exception, match="max/min pooling.*tie"):
        jax.block_until_ready(derivatives(f, 0.0, z, args=rate, order=2, method="incremental"))
    with pytest.raises(Exception, match="max/min pooling.*tie"):
        jax.block_until_ready(jax.jit(lambda u: derivatives(f, 0.0, u, args=rate, order=2, method="incremental"))(z))


def test_max_pooling_off_ties_and_at_harmless_ties_is_exact():
    rate = jnp.array([[[1.0, 2.0], [0.5, -1.0]]])

    f = _pool_field
    z = jnp.array([[[0.1, 0.3], [-0.2, 0.0]]])
    inc = derivatives(f, 0.0, z, args=rate, order=3, method="incremental")
    ref = derivatives(f, 0.0, z, args=rate, order=3, method="nested")
    for a, b in zip(inc, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # All four elements tie with the same series (rate 1 everywhere): no error, and z' = max + 1.
    same = derivatives(f, 0.0, jnp.zeros((1, 2, 2)), args=jnp.ones((1, 2, 2)), order=3, method="incremental")
    np.testing.assert_allclose([float(d[0, 0, 0]) for d in same], [1.0, 1.0, 1.0], rtol=0, atol=1e-12)


def test_jet_refuses_max_pooling_by_name():
    with pytest.raises(UnsupportedPrimitiveError, match="reduce_window_max.*method=.incremental."):
        derivatives(_pool_field, 0.0, jnp.zeros((1, 2, 2)), args=jnp.ones((1, 2, 2)), order=2, method="jet")


def _matmuls(act, order):
    f = lambda t, z, a: act(z @ W) @ W.T  # noqa: E731
    text = jax.jit(lambda z: derivatives(f, 0.0, z, order=order, method="jet")[-1]).lower(jnp.ones((3, 2))).compile().as_text()
    assert text, "no HLO text to count the matmuls in"
    return len(re.findall(r"= \S+ dot\(", text))


@pytest.mark.parametrize("act", [jax.nn.relu, jnp.abs, jax.nn.softplus], ids=["relu", "abs", "softplus"])
def test_right_sided_rule_lets_xla_merge_the_passes(act):
    # jet_derivatives runs one pass per order and each rebuilds the lower coefficients; the tie rule
    # must build them as the same expressions (coefficient j chosen from 1..j only), or XLA cannot
    # merge the passes and every later matmul is recomputed per pass (a smooth layer is the floor).
    assert _matmuls(act, 5) == _matmuls(jnp.tanh, 5)
