"""The Taylor core against closed forms, across methods, and its errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode import UnsupportedPrimitiveError, derivatives
from taynode.models import MLPDynamics
from taynode.taylor import METHODS

METHODS_ = sorted(METHODS)
# Closed forms to K = 8; nested JVPs are exponential to trace eagerly, so they stop at 6.
MAX_ORDER = {"nested": 6}


def orders(method):
    return range(1, MAX_ORDER.get(method, 8) + 1)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("method", METHODS_)
def test_quadratic_closed_form(method):
    # dz/dt = z²  ⇒  dᴷz/dtᴷ = K! z^{K+1}
    z = jnp.array([[0.3, -0.7, 1.1]])
    ds = derivatives(lambda t, z, a: z**2, 0.0, z, order=len(orders(method)), method=method)
    for k, d in zip(orders(method), ds):
        assert rel_err(d, math.factorial(k) * z ** (k + 1)) <= 1e-10


@pytest.mark.parametrize("method", METHODS_)
def test_linear_closed_form(method):
    # dz/dt = A z  ⇒  dᴷz/dtᴷ = Aᴷ z (batched: z has shape (batch, d))
    A = jax.random.normal(jax.random.PRNGKey(1), (4, 4)) / 2
    z = jax.random.normal(jax.random.PRNGKey(2), (3, 4))
    ds = derivatives(lambda t, z, A: z @ A.T, 0.5, z, A, order=len(orders(method)), method=method)
    for k, d in zip(orders(method), ds):
        assert rel_err(d, z @ np.linalg.matrix_power(np.asarray(A), k).T) <= 1e-10


@pytest.mark.parametrize("method", METHODS_)
def test_time_dependent_tz(method):
    # dz/dt = t z: z(s) = z exp((s² - t²)/2), so dᴷz/dsᴷ at s = t is z·P_K(t), with
    # P_0 = 1, P_{k+1} = P_k' + t P_k (polynomials in t, computed independently here).
    t = 0.7
    z = jnp.array([[1.3], [-0.4]])
    ds = derivatives(lambda t, z, a: t * z, t, z, order=len(orders(method)), method=method)
    P = np.polynomial.Polynomial([1.0])
    X = np.polynomial.Polynomial([0.0, 1.0])
    for _k, d in zip(orders(method), ds):
        P = P.deriv() + X * P
        assert rel_err(d, np.asarray(z) * P(t)) <= 1e-10


@pytest.mark.parametrize("method", METHODS_)
def test_pure_time_cos(method):
    # dz/dt = cos t  ⇒  dᴷz/dtᴷ = cos(t + (K-1)π/2): only ∂f/∂t contributes
    t = 0.4
    z = jnp.zeros((2, 3))
    ds = derivatives(lambda t, z, a: jnp.cos(t) * jnp.ones_like(z), t, z, order=len(orders(method)), method=method)
    for k, d in zip(orders(method), ds):
        assert rel_err(d, np.full((2, 3), np.cos(t + (k - 1) * np.pi / 2))) <= 1e-10


@pytest.mark.parametrize("method", METHODS_)
def test_pytree_state(method):
    # A pytree state: (x, y) with x' = y, y' = -x (harmonic oscillator): z'' = -z.
    z = {"x": jnp.array([[0.3]]), "y": jnp.array([[-1.2]])}
    ds = derivatives(lambda t, z, a: {"x": z["y"], "y": -z["x"]}, 0.0, z, order=4, method=method)
    assert rel_err(ds[1]["x"], -z["x"]) <= 1e-12 and rel_err(ds[3]["y"], z["y"]) <= 1e-12


ACTS = ["tanh", "sigmoid", "softplus", "relu", "gelu"]


@pytest.mark.parametrize("act", ACTS)
def test_methods_agree_on_mlps(act):
    model = MLPDynamics((3, 16, 16, 3), act, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    a = derivatives(model, 0.3, z, order=6, method="jet")
    b = derivatives(model, 0.3, z, order=6, method="nested")
    c = derivatives(model, 0.3, z, order=6, method="incremental")
    for k, (x, y, w) in enumerate(zip(a, b, c), 1):
        assert rel_err(x, y) <= 1e-10 and rel_err(w, y) <= 1e-10, (act, k)
    # and the first is f itself
    assert rel_err(a[0], model(0.3, z)) <= 1e-14


def test_jet_handles_tan_atan_clip():
    f = lambda t, z, a: jnp.tan(0.3 * z) + jnp.arctan(z) + jnp.clip(z, -0.5, 0.5) * t  # noqa: E731
    z = jnp.array([[0.2, -0.9, 0.1]])
    a = derivatives(f, 0.2, z, order=5, method="jet")
    b = derivatives(f, 0.2, z, order=5, method="nested")
    for x, y in zip(a, b):
        assert rel_err(x, y) <= 1e-10


@pytest.mark.parametrize("method", METHODS_)
def test_parameter_gradient_matches_finite_differences(method):
    W = jax.random.normal(jax.random.PRNGKey(4), (8, 2)) / 2
    z = jax.random.normal(jax.random.PRNGKey(5), (3, 2))

    # Parameters closed over by f (the usual equinox pattern) and passed through args.
    def loss_closed(W):
        f = lambda t, z, a: jnp.tanh(z @ W.T + t) @ W  # noqa: E731
        return jnp.sum(derivatives(f, 0.1, z, order=4, method=method)[-1] ** 2)

    def loss_args(W):
        f = lambda t, z, W: jnp.tanh(z @ W.T + t) @ W  # noqa: E731
        return jnp.sum(derivatives(f, 0.1, z, W, order=4, method=method)[-1] ** 2)

    g1 = jax.grad(loss_closed)(W)
    g2 = jax.jit(jax.grad(loss_args))(W)
    eps = 1e-6
    fd = np.zeros(W.shape)
    for idx in np.ndindex(W.shape):
        e = np.zeros(W.shape)
        e[idx] = eps
        fd[idx] = (loss_args(W + e) - loss_args(W - e)) / (2 * eps)
    assert rel_err(g1, fd) <= 1e-6
    assert rel_err(g2, fd) <= 1e-6


def test_jit_and_methods_agree_under_jit():
    f = lambda t, z, a: jnp.sin(z) * t  # noqa: E731
    z = jnp.array([[0.5, 1.5]])
    out = jax.jit(lambda z: derivatives(f, 0.3, z, order=3, method="jet"))(z)
    ref = derivatives(f, 0.3, z, order=3, method="nested")
    assert rel_err(out[-1], ref[-1]) <= 1e-12


def test_float32_runs_in_float32():
    f = lambda t, z, a: jnp.tanh(z)  # noqa: E731
    z = jnp.ones((2, 3), jnp.float32)
    for method in METHODS_:
        d = derivatives(f, 0.0, z, order=3, method=method)
        assert d[-1].dtype == jnp.float32


def test_unsupported_primitive_is_named_with_alternative():
    f = lambda t, z, a: jax.lax.cond(t > 0, lambda: z, lambda: -z)  # noqa: E731
    z = jnp.ones((1, 2))
    with pytest.raises(UnsupportedPrimitiveError, match=r"'cond'.*method='nested'"):
        derivatives(f, 0.5, z, order=2, method="jet")
    # the named alternative works
    d = derivatives(f, 0.5, z, order=2, method="nested")
    assert rel_err(d[1], z) <= 1e-14


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_bad_order(bad):
    with pytest.raises((TypeError, ValueError), match="order K"):
        derivatives(lambda t, z, a: z, 0.0, jnp.ones((1, 1)), order=bad)


def test_unknown_method_lists_valid():
    with pytest.raises(ValueError, match="jet.*nested"):
        derivatives(lambda t, z, a: z, 0.0, jnp.ones((1, 1)), order=1, method="magic")


def test_shape_mismatch_named():
    with pytest.raises(ValueError, match=r"returned shape \(1, 3\) for a state of shape \(1, 2\)"):
        derivatives(lambda t, z, a: jnp.ones((1, 3)), 0.0, jnp.ones((1, 2)), order=2)
