"""Conformance: every backend answers the same questions correctly.

Written once, parametrized over backends. The Julia backend runs wherever Julia and juliacall
are installed; where Julia is absent it skips, printing why (pytest -ra shows the reason), and
``TAYNODE_REQUIRE_JULIA=1`` makes that a failure (tests/julia_support.py).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from julia_support import julia_backend_or_skip
from taynode import portable
from taynode.backends import BACKENDS, get_backend
from taynode.models import MLPDynamics


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    if request.param == "julia":
        return julia_backend_or_skip()  # skips only if Julia is absent; a broken Julia fails
    return get_backend(request.param)


@pytest.fixture(scope="module")
def mlp_spec():
    model = MLPDynamics((2, 16, 2), "softplus", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    return portable.from_model(model)


def test_derivatives_closed_form(backend):
    z = np.array([[0.3, -0.5], [0.7, 0.2]])
    d = backend.derivatives(portable.problem("quadratic"), z, 0.0, 6)
    assert d.shape == (6, 2, 2)
    for k in range(1, 7):
        np.testing.assert_allclose(d[k - 1], math.factorial(k) * z ** (k + 1), rtol=1e-10)


def test_derivatives_explicit_time(backend):
    # dz/dt = t z: P_0 = 1, P_{k+1} = P_k' + t P_k
    z, t = np.array([[1.3, -0.4]]), 0.7
    d = backend.derivatives(portable.problem("time_linear"), z, t, 5)
    P, X = np.polynomial.Polynomial([1.0]), np.polynomial.Polynomial([0.0, 1.0])
    for k in range(1, 6):
        P = P.deriv() + X * P
        np.testing.assert_allclose(d[k - 1], z * P(t), rtol=1e-10)


@pytest.mark.parametrize("name,z0", [("lotka_volterra", [[1.0, 1.0]]), ("van_der_pol", [[2.0, 0.0], [0.5, 0.5]])])
def test_solve_matches_scipy(backend, name, z0):
    spec = portable.problem(name)
    f = portable.numpy_field(spec)
    ts = np.linspace(0.0, 3.0, 4)
    res = backend.solve(spec, np.array(z0), ts, "dopri5", rtol=1e-10, atol=1e-10)
    assert res.ys.shape == (4, len(z0), 2)
    for b, zb in enumerate(z0):
        ref = solve_ivp(lambda t, y: f(t, y[None])[0], (0, 3), zb, method="DOP853", t_eval=ts, rtol=1e-13, atol=1e-13).y.T
        np.testing.assert_allclose(res.ys[:, b], ref, rtol=1e-8, atol=1e-9)
    assert res.nfe > 0 and res.accepted > 0 and res.rejected >= 0


def test_mlp_solve_matches_scipy(backend, mlp_spec):
    f = portable.numpy_field(mlp_spec)
    z0 = np.array([[0.5, -0.2], [0.1, 0.3]])
    res = backend.solve(mlp_spec, z0, np.array([0.0, 1.0]), "dopri5", rtol=1e-10, atol=1e-10)
    ref = solve_ivp(lambda t, y: f(t, y.reshape(2, 2)).ravel(), (0, 1), z0.ravel(), method="DOP853", rtol=1e-13, atol=1e-13).y[
        :, -1
    ]
    np.testing.assert_allclose(res.ys[-1].ravel(), ref, rtol=1e-8, atol=1e-10)


def test_rk_integral_closed_form(backend):
    z0 = np.array([[0.3, -0.5]])
    K, T = 2, 0.8
    expected = math.factorial(K) ** 2 * z0 ** (2 * K + 1) * ((1 - z0 * T) ** (-(2 * K + 1)) - 1) / (2 * K + 1)
    r = backend.rk_integral(portable.problem("quadratic"), z0, 0.0, T, K, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(r, expected.mean(1), rtol=1e-7)


def test_rk_integral_of_mlp_agrees_with_jax(backend, mlp_spec):
    z0 = np.array([[0.5, -0.2], [0.1, 0.3]])
    ours = backend.rk_integral(mlp_spec, z0, 0.0, 1.0, 3, rtol=1e-10, atol=1e-10)
    jax_ref = get_backend("jax").rk_integral(mlp_spec, z0, 0.0, 1.0, 3, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours, jax_ref, rtol=1e-6)


def test_mlp_derivatives_agree_with_jax(backend, mlp_spec):
    z = np.array([[0.5, -0.2], [0.1, 0.3]])
    ours = backend.derivatives(mlp_spec, z, 0.2, 4)
    ref = get_backend("jax").derivatives(mlp_spec, z, 0.2, 4)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
