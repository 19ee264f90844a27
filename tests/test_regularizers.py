"""Regularizer integrals against closed forms, Hutchinson's estimator, gradients, composition."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode.models import MLPDynamics
from taynode.regularizers import hutchinson_noise, parse

TIGHT = dict(rtol=1e-11, atol=1e-11)


def rk_closed_form_quadratic(z0, T, K):
    # dz/dt = z², z(t) = z0/(1 - z0 t), dᴷz/dtᴷ = K! z^{K+1}:
    # ∫₀ᵀ (K!)² z^{2K+2} dt = (K!)² z0^{2K+1} [(1 - z0 T)^{-(2K+1)} - 1] / (2K+1)
    return math.factorial(K) ** 2 * z0 ** (2 * K + 1) * ((1 - z0 * T) ** (-(2 * K + 1)) - 1) / (2 * K + 1)


@pytest.mark.parametrize("method", ["jet", "nested"])
@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_rk_integral_closed_form_and_feature_average(K, method):
    z0 = np.array([[0.3, -0.5], [0.6, 0.1]])
    T = 0.8
    sol = tn.solve(lambda t, z, a: z**2, jnp.asarray(z0), (0.0, T), regularizers=[tn.RK(K, method)], **TIGHT)
    expected = rk_closed_form_quadratic(z0, T, K).mean(axis=1)  # averaged over the 2 features
    np.testing.assert_allclose(sol.integrals[f"R{K}"], expected, rtol=1e-8)


def test_kinetic_closed_form():
    z0 = jnp.array([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]])
    T = 1.5
    sol = tn.solve(lambda t, z, a: -z, z0, (0.0, T), regularizers=["kinetic"], **TIGHT)
    expected = np.sum(np.asarray(z0) ** 2, 1) * (1 - np.exp(-2 * T)) / 2  # summed over features
    np.testing.assert_allclose(sol.integrals["kinetic"], expected, rtol=1e-9)


def test_jacobian_frobenius_with_known_noise_and_unbiased():
    A = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    f = lambda t, z, A: z @ A.T  # noqa: E731  ∇_z f = A per example, so εᵀ∇f = ε A
    z0 = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    T = 0.5
    key = jax.random.PRNGKey(7)
    sol = tn.solve(f, z0, (0.0, T), A, regularizers=["jacobian"], key=key, **TIGHT)
    eps = hutchinson_noise(key, z0)
    np.testing.assert_allclose(sol.integrals["jacobian"], T * np.sum(np.asarray(eps @ A) ** 2, 1), rtol=1e-9)
    # E‖εᵀA‖² = ‖A‖_F²: the mean over many keys is within 4 standard errors
    run = jax.jit(
        lambda k: tn.solve(f, z0, (0.0, T), A, regularizers=["jacobian"], key=k, solver="euler", steps=1).integrals["jacobian"]
    )
    draws = np.concatenate([np.asarray(run(k)) for k in jax.random.split(jax.random.PRNGKey(3), 200)]) / T
    fro2 = float(jnp.sum(A**2))
    assert abs(draws.mean() - fro2) < 4 * draws.std() / np.sqrt(draws.size)


def test_regularizers_compose_in_one_solve():
    model = MLPDynamics((2, 8, 2), "softplus", key=jax.random.PRNGKey(2), dtype=jnp.float64)
    z0 = jnp.array([[0.5, -0.3], [1.0, 0.2]])
    key = jax.random.PRNGKey(0)
    regs = ["r2", "r3", "kinetic", "jacobian"]
    both = tn.solve(model, z0, regularizers=regs, key=key, **TIGHT)
    assert set(both.integrals) == {"R2", "R3", "kinetic", "jacobian"}
    for r in regs:
        alone = tn.solve(model, z0, regularizers=[r], key=key, **TIGHT)
        name = parse(r).name
        np.testing.assert_allclose(both.integrals[name], alone.integrals[name], rtol=1e-8)
        assert both.integrals[name].shape == (2,)
    np.testing.assert_allclose(both.z1, tn.solve(model, z0, **TIGHT).z1, rtol=1e-9)


def test_integrals_are_per_example():
    model = MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(2), dtype=jnp.float64)
    z0 = jnp.array([[0.5, -0.3], [1.0, 0.2], [-0.7, 0.4]])
    full = tn.solve(model, z0, solver="rk4", steps=10, regularizers=["r3"])
    one = tn.solve(model, z0[1:2], solver="rk4", steps=10, regularizers=["r3"])
    np.testing.assert_allclose(full.integrals["R3"][1], one.integrals["R3"][0], rtol=1e-12)


@pytest.mark.parametrize("solver,steps", [("rk4", 8), ("dopri5", None)])
def test_rk_gradient_matches_central_finite_differences(solver, steps):
    model = MLPDynamics((2, 6, 2), "softplus", key=jax.random.PRNGKey(5), dtype=jnp.float64)
    z0 = jnp.array([[0.4, -0.6], [0.2, 0.9]])
    tol = {} if steps else dict(rtol=1e-12, atol=1e-12)

    def loss(m):
        return jnp.mean(tn.solve(m, z0, solver=solver, steps=steps, regularizers=["r3"], **tol).integrals["R3"])

    grads = eqx.filter_grad(loss)(model)
    W = model.layers[1].weight
    eps = 1e-5
    for idx in [(0, 0), (1, 3), (0, 6)]:
        shift = lambda d: eqx.tree_at(lambda m: m.layers[1].weight, model, W.at[idx].add(d))  # noqa: E731
        fd = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
        np.testing.assert_allclose(grads.layers[1].weight[idx], fd, rtol=1e-6 if steps else 1e-5)


def test_parse_names():
    assert parse("r3") == tn.RK(3) and parse("R5").order == 5
    assert parse("kinetic").name == "kinetic" and parse("jacobian").name == "jacobian"
    with pytest.raises(ValueError, match="order K"):
        parse("r0")
