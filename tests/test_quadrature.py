"""Sampled-time regularization, the step-size error control, backprop checkpoints and backward NFE.

Truth: dz/dt = z² from z0 has z(t) = z0/(1 − z0 t) and dᴷz/dtᴷ = K!·z^{K+1}, so
R_K = ∫₀¹ (K!)² z^{2K+2} dt = (K!)² z0^{2K+1} ((1 − z0)^{−(2K+1)} − 1)/(2K+1) and
𝒦 = ∫₀¹ z⁴ dt = z0³ ((1 − z0)^{−3} − 1)/3.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode.models import MLPDynamics


def square(t, z, args):
    return z**2


def closed_rk(z0, K):
    return math.factorial(K) ** 2 * z0 ** (2 * K + 1) * ((1 - z0) ** (-(2 * K + 1)) - 1) / (2 * K + 1)


def closed_kinetic(z0):
    return z0**3 * ((1 - z0) ** -3 - 1) / 3


CLOSED = {"R2": lambda z0: closed_rk(z0, 2), "R3": lambda z0: closed_rk(z0, 3), "kinetic": closed_kinetic}


@pytest.fixture(scope="module")
def draws():
    """Sampled estimates (and their z0-gradients) over 4,000 keys, M = 1 and M = 4, one jit each."""
    z0 = jnp.array([[0.5]])
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)

    def estimate(z0_, key, samples):
        sol = tn.solve(
            square,
            z0_,
            regularizers=["r2", "r3", "kinetic"],
            quadrature="sampled",
            samples=samples,
            key=key,
            rtol=1e-10,
            atol=1e-10,
        )
        return {n: v[0] for n, v in sol.integrals.items()}

    out = {}
    for m in (1, 4):
        value = jax.jit(jax.vmap(lambda k: estimate(z0, k, m)))(keys)
        grad = jax.jit(jax.vmap(lambda k: jax.jacrev(lambda z: estimate(z, k, m))(z0)))(keys)
        out[m] = ({n: np.asarray(v) for n, v in value.items()}, {n: np.asarray(v).reshape(-1) for n, v in grad.items()})
    return out


@pytest.mark.parametrize("samples", [1, 4])
@pytest.mark.parametrize("name", ["R2", "R3", "kinetic"])
def test_sampled_estimate_is_unbiased(draws, samples, name):
    values, _ = draws[samples]
    v = values[name]
    se = v.std(ddof=1) / math.sqrt(len(v))
    assert abs(v.mean() - CLOSED[name](0.5)) < 4 * se, (v.mean(), CLOSED[name](0.5), se)
    assert v.std() > 0  # a random estimate, not the integral itself


@pytest.mark.parametrize("samples", [1, 4])
@pytest.mark.parametrize("name", ["R2", "R3", "kinetic"])
def test_sampled_gradient_is_unbiased(draws, samples, name):
    _, grads = draws[samples]
    g = grads[name]
    truth = float(jax.grad(lambda z: CLOSED[name](z))(0.5))
    se = g.std(ddof=1) / math.sqrt(len(g))
    assert abs(g.mean() - truth) < 4 * se, (g.mean(), truth, se)


def test_stratification_lowers_the_variance(draws):
    assert draws[4][0]["R3"].std() < 0.5 * draws[1][0]["R3"].std()


def test_sample_times_are_stratified_and_ordered_in_both_directions():
    key = jax.random.PRNGKey(3)
    fwd = np.asarray(tn.sample_times(key, 0.0, 2.0, 8))
    assert np.all(np.diff(fwd) > 0) and np.all((fwd >= 0) & (fwd < 2))
    assert np.all(np.floor(fwd / 0.25) == np.arange(8))
    bwd = np.asarray(tn.sample_times(key, 2.0, 0.0, 8))
    assert np.all(np.diff(bwd) < 0)


def test_sampled_backwards_in_time_and_outputs_unchanged():
    z0 = jnp.array([[0.5], [0.25]])
    ts = jnp.array([0.0, 0.3, 1.0])
    plain = tn.solve(square, z0, ts, rtol=1e-10, atol=1e-10)
    sol = tn.solve(
        square,
        z0,
        ts,
        regularizers=["kinetic"],
        quadrature="sampled",
        samples=3,
        key=jax.random.PRNGKey(1),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(sol.ys, plain.ys, rtol=1e-9)  # the sample times do not disturb ts' outputs
    assert int(sol.stats["nfe"]) == int(plain.stats["nfe"])  # nor the steps
    assert int(sol.stats["regularizer_evals"]) == 3
    back = tn.solve(
        square,
        sol.z1,
        (1.0, 0.0),
        regularizers=["kinetic"],
        quadrature="sampled",
        key=jax.random.PRNGKey(2),
        rtol=1e-10,
        atol=1e-10,
    )
    assert np.all(np.asarray(back.integrals["kinetic"]) > 0)
    np.testing.assert_allclose(back.z1, z0, rtol=1e-8)


def test_sampled_jacobian_matches_integrated_in_expectation():
    # ℬ of the linear field f = A z is ‖εᵀA‖², constant in t: every sample gives the integral exactly
    A = jnp.array([[0.0, 1.0], [-2.0, -0.3]])
    lin = lambda t, z, args: z @ A.T  # noqa: E731
    z0 = jnp.array([[1.0, 0.5], [0.2, -1.0]])
    key = jax.random.PRNGKey(5)
    a = tn.solve(lin, z0, (0.0, 2.0), regularizers=["jacobian"], key=key, rtol=1e-10, atol=1e-10).integrals["jacobian"]
    b = tn.solve(lin, z0, (0.0, 2.0), regularizers=["jacobian"], key=key, quadrature="sampled", rtol=1e-10, atol=1e-10).integrals[
        "jacobian"
    ]
    np.testing.assert_allclose(b, a, rtol=1e-8)


def test_state_only_error_control_keeps_the_integral_and_never_adds_steps():
    f = MLPDynamics((3, 16, 3), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z0 = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
    ref = tn.solve(f, z0, regularizers=["r3"], rtol=1e-12, atol=1e-12).integrals["R3"]
    runs = {ec: tn.solve(f, z0, regularizers=["r3"], rtol=1e-6, atol=1e-6, error_control=ec) for ec in ("all", "state")}
    plain = tn.solve(f, z0, rtol=1e-6, atol=1e-6)
    assert int(runs["state"].stats["nfe"]) == int(plain.stats["nfe"]) <= int(runs["all"].stats["nfe"])
    for sol in runs.values():
        np.testing.assert_allclose(sol.integrals["R3"], ref, rtol=1e-3)


def counted_model(f, counts):
    """f wrapped so that each forward evaluation and each VJP bumps a host-side counter."""

    def bump(k):
        def cb():
            counts[k] += 1

        return cb

    @jax.custom_vjp
    def call(t, z, m):
        jax.debug.callback(bump("f"))
        return m(t, z, None)

    def fwd(t, z, m):
        jax.debug.callback(bump("f"))
        return jax.vjp(lambda t_, z_, m_: m_(t_, z_, None), t, z, m)

    def bwd(vjp, g):
        jax.debug.callback(bump("vjp"))
        return vjp(g)

    call.defvjp(fwd, bwd)

    class Counted(eqx.Module):
        m: eqx.Module

        def __call__(self, t, z, args):
            return call(t, z, self.m)

    return Counted(f)


@pytest.mark.parametrize("kw", [dict(rtol=1e-3, atol=1e-3), dict(steps=7), dict(rtol=1e-3, atol=1e-3, checkpoints=2)])
def test_backward_nfe_matches_a_counter(kw):
    counts = {"f": 0, "vjp": 0}
    f = MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    f = counted_model(jax.tree_util.tree_map(lambda a: 10 * a if eqx.is_inexact_array(a) else a, f), counts)  # rejects steps
    z0 = jnp.array([[1.5, -0.5], [0.1, 2.0]])

    def loss(m):
        sol = tn.solve(m, z0, (0.0, 3.0), **kw)
        return jnp.sum(sol.z1**2), sol.stats

    grad = eqx.filter_jit(eqx.filter_grad(loss, has_aux=True))
    _, stats = jax.block_until_ready(grad(f))
    counts.update(f=0, vjp=0)
    _, stats = jax.block_until_ready(grad(f))
    jax.effects_barrier()
    assert counts["vjp"] == int(stats["nfe_backward"])
    assert counts["f"] >= int(stats["nfe"]) + counts["vjp"]  # the backward pass re-evaluates what it differentiates
    if "steps" not in kw:
        assert int(stats["rejected"]) > 0  # rejected steps are differentiated too


def test_checkpoints_change_cost_not_the_gradient():
    f = MLPDynamics((2, 16, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z0 = jnp.array([[1.5, -0.5], [0.1, 2.0]])

    def grad(c):
        loss = lambda m: jnp.sum(tn.solve(m, z0, (0.0, 5.0), regularizers=["r2"], rtol=1e-8, atol=1e-8, checkpoints=c).z1 ** 2)  # noqa: E731
        return jax.tree_util.tree_leaves(eqx.filter_jit(eqx.filter_grad(loss))(f))

    steps = int(tn.solve(f, z0, (0.0, 5.0), rtol=1e-8, atol=1e-8).stats["steps"])
    assert steps > 6  # so that 1 and 3 checkpoints force recomputation
    ref = grad(tn.DEFAULT_CHECKPOINTS)
    for c in (1, 3):
        for a, b in zip(grad(c), ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(quadrature="trapezoid"), ValueError, "unknown quadrature 'trapezoid'; valid: integrated, sampled"),
        (dict(quadrature="sampled", samples=0), ValueError, "samples must be an integer >= 1"),
        (dict(quadrature="sampled", samples=2.5), ValueError, "samples must be an integer >= 1"),
        (dict(quadrature="sampled"), ValueError, "sample times at random: pass key="),
        (dict(quadrature="sampled", key=jax.random.PRNGKey(0), steps=0), ValueError, "steps must be a positive integer"),
        (dict(error_control="regularizers"), ValueError, "unknown error_control"),
        (dict(checkpoints=0), ValueError, "checkpoints must be an integer >= 1"),
    ],
)
def test_bad_quadrature_input(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        tn.solve(square, jnp.array([[0.5]]), regularizers=["r2"], **kw)


@pytest.mark.parametrize("trace", ["hutchinson", "exact"])
def test_cnf_sampled_regularizers_average_to_the_integrated_ones(trace):
    from taynode.models.cnf import CNF

    cnf = CNF(MLPDynamics((2, 16, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64), trace=trace)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
    noise = jax.random.normal(jax.random.PRNGKey(2), x.shape)
    regs = ["r2", "kinetic", "jacobian"]
    tol = dict(rtol=1e-10, atol=1e-10)
    ref = cnf.forward(x, noise=noise, regularizers=regs, **tol)
    keys = jax.random.split(jax.random.PRNGKey(3), 1000)
    run = jax.jit(
        jax.vmap(lambda k: cnf.forward(x, noise=noise, key=k, regularizers=regs, quadrature="sampled", samples=2, **tol))
    )
    out = run(keys)
    np.testing.assert_allclose(out.log_prob[0], ref.log_prob, rtol=1e-8)  # the flow itself is unchanged
    for name in ("R2", "kinetic", "jacobian"):
        v = np.asarray(out.integrals[name])
        se = v.std(axis=0, ddof=1) / math.sqrt(len(v))
        assert np.all(np.abs(v.mean(axis=0) - np.asarray(ref.integrals[name])) < 4 * se + 1e-12), name
