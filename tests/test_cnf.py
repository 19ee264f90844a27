"""FFJORD (taynode.models.cnf): change of variables, Hutchinson's estimator, regularizers, sampling,
bits/dim, against closed forms, SciPy and separate solves."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.linalg import expm

import taynode
from taynode.models import MLPDynamics
from taynode.models.cnf import (
    CNF,
    ConcatSquashLinear,
    ConcatSquashMLP,
    ConvDynamics,
    _Flow,
    _FlowRegularizer,
    bits_per_dim,
    dequantize_logit,
    draw_noise,
    standard_normal_logprob,
)
from taynode.regularizers import RK

TOL = dict(rtol=1e-10, atol=1e-10)


class Linear(eqx.Module):
    a: jax.Array

    def __call__(self, t, z, args=None):
        return z @ self.a.T


def _matrix(seed, d, scale=0.6):
    return scale * np.random.default_rng(seed).standard_normal((d, d))


def test_linear_flow_exact_trace_matches_closed_form():
    """dz/dt = A z: z(1) = e^A x, log p(x) = log N(e^A x) + tr A, ℬ = ‖A‖_F²,
    𝒦 = ∫‖A e^{At}x‖², R2 = ∫ (1/d)‖A² e^{At} x‖² (SciPy quadrature)."""
    d = 3
    a = _matrix(0, d)
    x = np.random.default_rng(1).standard_normal((4, d))
    cnf = CNF(Linear(jnp.asarray(a)), trace="exact")
    r = cnf.forward(x, regularizers=("kinetic", "jacobian", RK(2, "nested")), **TOL)
    z1 = x @ expm(a).T
    logn = -0.5 * np.sum(z1**2, 1) - 0.5 * d * math.log(2 * math.pi)
    np.testing.assert_allclose(r.z, z1, rtol=1e-8)
    np.testing.assert_allclose(r.log_prob, logn + np.trace(a), rtol=1e-8)
    np.testing.assert_allclose(r.delta_logp, -np.trace(a) * np.ones(4), rtol=1e-8)
    np.testing.assert_allclose(r.integrals["jacobian"], np.sum(a**2) * np.ones(4), rtol=1e-8)
    a2 = a @ a
    for n in range(4):
        kin = quad(lambda t: np.sum((a @ expm(a * t) @ x[n]) ** 2), 0, 1, epsabs=1e-13, epsrel=1e-12)[0]
        r2 = quad(lambda t: np.sum((a2 @ expm(a * t) @ x[n]) ** 2) / d, 0, 1, epsabs=1e-13, epsrel=1e-12)[0]
        np.testing.assert_allclose(r.integrals["kinetic"][n], kin, rtol=1e-7)
        np.testing.assert_allclose(r.integrals["R2"][n], r2, rtol=1e-7)


def test_hutchinson_noise_is_fixed_for_the_whole_solve():
    """With dz/dt = A z and a given ε, Δ(1) = −εᵀAε and ℬ = ‖εᵀA‖² exactly: one ε for every
    evaluation (a fresh draw per step would not give these)."""
    d = 3
    a = _matrix(2, d)
    x = np.random.default_rng(3).standard_normal((5, d))
    eps = np.asarray(draw_noise(jax.random.PRNGKey(4), jnp.asarray(x), "rademacher"))
    assert set(np.unique(eps)) <= {-1.0, 1.0}
    r = CNF(Linear(jnp.asarray(a))).forward(x, noise=eps, regularizers=("jacobian",), **TOL)
    np.testing.assert_allclose(r.delta_logp, -np.einsum("ni,ij,nj->n", eps, a, eps), rtol=1e-8)
    np.testing.assert_allclose(r.integrals["jacobian"], np.sum((eps @ a) ** 2, 1), rtol=1e-8)


def test_hutchinson_estimator_is_unbiased():
    """The mean of Δ over independent ε (Gaussian and Rademacher) matches the exact-trace Δ on a
    nonlinear flow within 4 standard errors."""
    dyn = MLPDynamics((3, 16, 3), "tanh", key=jax.random.PRNGKey(0))
    dyn = jax.tree_util.tree_map(lambda p: 2.0 * p if eqx.is_inexact_array(p) else p, dyn)
    x0 = jnp.array([[0.3, -0.8, 0.5]])
    exact = float(CNF(dyn, trace="exact").forward(x0, **TOL).delta_logp[0])
    n = 2000
    x = jnp.repeat(x0, 2 * n, axis=0)
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    eps = jnp.concatenate([draw_noise(k1, x[:n], "gaussian"), draw_noise(k2, x[n:], "rademacher")])
    est = np.asarray(CNF(dyn).forward(x, noise=eps, **TOL).delta_logp)
    assert abs(exact) > 0.1  # a flow with a non-trivial volume change
    for part in (est[:n], est[n:]):
        se = part.std(ddof=1) / math.sqrt(n)
        assert part.std() > 1e-3  # the estimator does vary with ε
        assert abs(part.mean() - exact) < 4 * se, (part.mean(), exact, se)


def test_regularizers_agree_with_a_separate_solve():
    """R2, 𝒦 and ℬ from the CNF's one solve (ℬ from the trace's vjp) equal taynode.solve's
    regularizers along the same trajectory with the same ε (same key)."""
    key = jax.random.PRNGKey(7)
    dyn = ConcatSquashMLP((2, 16, 16, 2), "softplus", key=jax.random.PRNGKey(1))
    dyn = jax.tree_util.tree_map(lambda p: 3.0 * p if eqx.is_inexact_array(p) else p, dyn)
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 2))
    r = CNF(dyn).forward(x, key=key, regularizers=(RK(2, "incremental"), "kinetic", "jacobian"), **TOL)
    ref = taynode.solve(dyn, x, regularizers=(RK(2, "nested"), "kinetic", "jacobian"), key=key, **TOL)
    np.testing.assert_allclose(r.z, ref.z1, rtol=1e-8, atol=1e-10)
    for name in ("R2", "kinetic", "jacobian"):
        assert np.all(np.asarray(ref.integrals[name]) > 1e-6), name
        np.testing.assert_allclose(r.integrals[name], ref.integrals[name], rtol=1e-7, err_msg=name)


def test_sampling_backwards_agrees_with_change_of_variables_and_normalizes():
    """2-D, exact trace: samples drawn backwards carry log p equal to the forward log-density of
    the same points; the forward density integrates to 1 over the plane; sample() returns the
    same points."""
    dyn = MLPDynamics((2, 32, 2), "tanh", key=jax.random.PRNGKey(3))
    dyn = jax.tree_util.tree_map(lambda p: 1.5 * p if eqx.is_inexact_array(p) else p, dyn)
    cnf = CNF(dyn, trace="exact")
    key = jax.random.PRNGKey(9)
    xs, lp_back = cnf.sample_with_log_prob(key, 64, (2,), **TOL)
    np.testing.assert_allclose(cnf.sample(key, 64, (2,), **TOL), xs, rtol=1e-8, atol=1e-10)
    h = 0.2  # the Riemann sum of a smooth, fast-decaying density converges fast
    g = np.arange(-7, 7 + h / 2, h)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    lp = np.asarray(cnf.log_prob(np.concatenate([np.asarray(xs), grid]), **TOL))
    np.testing.assert_allclose(lp[:64], lp_back, rtol=1e-7, atol=1e-8)
    mass = np.exp(lp[64:]).sum() * h * h
    assert abs(mass - 1) < 2e-3, mass
    # the flow is far from the identity: the log-densities differ from the base's
    assert np.max(np.abs(lp[:64] - np.asarray(standard_normal_logprob(xs)))) > 0.1


@pytest.mark.parametrize("model", ["concatsquash", "conv"])
def test_exact_divergence_matches_the_jacobian(model):
    key = jax.random.PRNGKey(0)
    if model == "conv":
        dyn, x = ConvDynamics(1, 4, 3, key=key), jax.random.normal(key, (2, 1, 4, 4))
    else:
        dyn, x = ConcatSquashMLP((3, 8, 3), key=key), jax.random.normal(key, (2, 3))
    t = 0.3
    regs = [_FlowRegularizer(r) for r in (RK(2), taynode.regularizers.Kinetic(), taynode.regularizers.JacobianFrobenius())]

    @eqx.filter_jit
    def aug(t, y, args):  # the vector field and the integrands as solve's augmented state evaluates them
        (dz, ddelta), ev = _Flow(dyn, "exact").evaluate(t, y, args)
        return dz, ddelta, {r.name: r.integrand_at(ev) for r in regs}

    dz, ddelta, dr = aug(t, (x, jnp.zeros(2)), (None, None))
    jacs = jax.jit(jax.vmap(jax.jacfwd(lambda v: dyn(t, v[None], None)[0])))(x)
    for n in range(2):
        jac = jacs[n].reshape(x[n].size, x[n].size)
        np.testing.assert_allclose(-ddelta[n], np.trace(jac), rtol=1e-10)
        np.testing.assert_allclose(dr["jacobian"][n], np.sum(jac**2), rtol=1e-10)
    np.testing.assert_allclose(dz, dyn(t, x), rtol=1e-12)
    np.testing.assert_allclose(dr["kinetic"], np.sum(np.asarray(dyn(t, x)).reshape(2, -1) ** 2, 1), rtol=1e-12)


def test_concat_squash_linear_formula():
    layer = ConcatSquashLinear(3, 2, key=jax.random.PRNGKey(0))
    x, t = jnp.arange(6.0).reshape(2, 3) / 5, 0.7
    gate = 1 / (1 + np.exp(-(t * np.asarray(layer.gate_weight) + np.asarray(layer.gate_bias))))
    want = (np.asarray(x) @ np.asarray(layer.weight).T + np.asarray(layer.bias)) * gate + t * np.asarray(layer.hyper_bias)
    np.testing.assert_allclose(layer(t, x), want, rtol=1e-12)


def test_dequantize_logit_logdet_and_bits_per_dim():
    key = jax.random.PRNGKey(0)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4)), jnp.uint8)
    for alpha in (1e-6, 0.05):
        y, logdet = dequantize_logit(key, x, alpha)
        u = jax.random.uniform(key, x.shape, jnp.float64)
        v = (x.astype(jnp.float64) + u) / 256
        assert np.all((v >= 0) & (v < 1))

        def logit(v_):
            s = alpha + (1 - 2 * alpha) * v_
            return jnp.log(s / (1 - s))

        np.testing.assert_allclose(y, logit(v), rtol=1e-12)
        slope = jax.vmap(jax.grad(logit))(v.ravel()).reshape(v.shape)
        np.testing.assert_allclose(logdet, np.log(np.asarray(slope)).reshape(3, -1).sum(1), rtol=1e-10)
    y32, logdet32 = dequantize_logit(key, x, 1e-6, dtype=jnp.float32)
    assert y32.dtype == logdet32.dtype == jnp.float32
    # α = 0 and a logistic density in logit space: v is uniform, so exactly 8 bits/dim
    y, logdet = dequantize_logit(key, x, 0.0)
    logistic = jnp.sum(jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y), axis=(1, 2, 3))
    np.testing.assert_allclose(bits_per_dim(logistic, logdet, 16), 8.0, rtol=1e-10)


def test_bad_input_raises():
    dyn = MLPDynamics((2, 4, 2), key=jax.random.PRNGKey(0))
    x = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="trace"):
        CNF(dyn, trace="exactly")
    with pytest.raises(ValueError, match="noise"):
        CNF(dyn, noise="uniform")
    with pytest.raises(ValueError, match="t1"):
        CNF(dyn, t1=0.0)
    with pytest.raises(ValueError, match="key="):
        CNF(dyn).forward(x)
    with pytest.raises(ValueError, match="shape"):
        CNF(dyn).forward(x, noise=jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="batch axis"):
        CNF(dyn).forward(jnp.zeros(2), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="hutchinson"):
        CNF(ConvDynamics(1, 2, 2, key=jax.random.PRNGKey(0)), trace="exact").forward(jnp.zeros((1, 1, 40, 40)))
    with pytest.raises(ValueError, match="distinct"):
        CNF(dyn).forward(x, key=jax.random.PRNGKey(0), regularizers=("kinetic", "kinetic"))
    with pytest.raises(ValueError, match="alpha"):
        dequantize_logit(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.uint8), 0.5)
    with pytest.raises(ValueError, match="start and end"):
        ConcatSquashMLP((2, 4, 3), key=jax.random.PRNGKey(0))


def _tiny_flow():
    dyn = MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(11), dtype=jnp.float64)
    dyn = jax.tree_util.tree_map(lambda p: 1.5 * p if eqx.is_inexact_array(p) else p, dyn)
    return dyn, jax.random.normal(jax.random.PRNGKey(12), (3, 2), jnp.float64)


def _hand_augmented(dyn):
    """(f, −tr ∂f/∂z) written out with a dense per-example Jacobian: the CNF's problem, built apart."""

    def field(t, y, args):
        z, _ = y
        jac = jax.vmap(jax.jacfwd(lambda v: dyn(t, v[None], None)[0]))(z)
        return dyn(t, z, None), -jnp.trace(jac, axis1=1, axis2=2)

    return field


@pytest.mark.parametrize("quadrature", ["integrated", "sampled"])
def test_solver_heuristics_equal_solve_on_the_hand_written_augmented_problem(quadrature):
    """ERNODE and SRNODE of the CNF (global, and local with quadrature='sampled') are those of
    taynode.solve on (z, Δ) with a hand-written field: same steps, same values."""
    dyn, x = _tiny_flow()
    kw = dict(rtol=1e-6, atol=1e-6, regularizers=("ernode", "srnode"))
    if quadrature == "sampled":
        kw |= dict(quadrature="sampled", samples=3, key=jax.random.PRNGKey(13))
    r = CNF(dyn, trace="exact").forward(x, **kw)
    ref = taynode.solve(_hand_augmented(dyn), (x, jnp.zeros(3)), (0.0, 1.0), **kw)
    assert int(r.stats["nfe"]) == int(ref.stats["nfe"])
    np.testing.assert_allclose(r.delta_logp, ref.z1[1], rtol=1e-10)
    # The local (sampled) values, ~1e-7, come from error estimates h·Σ(b−b̂)·k, differences of O(1) stage values
    # scaled by 1/(atol + rtol·|y|) ~ 1e6, so the order in which XLA sums the stages shows there: with the YNN-fusion
    # guard's flag (taynode._xla) jaxlib 0.12 fuses differently and they move by 1.2e-15 (1e-8 relative; within
    # rtol 1e-10 with the flag off, measured on jax 0.12.0.1). 1e-14 absolute is ten times that and 1e-7 of the values.
    atol = 1e-14 if quadrature == "sampled" else 0.0
    for name in ("ernode", "srnode"):
        assert np.all(np.asarray(ref.integrals[name]) > 1e-9), name  # local values are small: one short step
        np.testing.assert_allclose(r.integrals[name], ref.integrals[name], rtol=1e-10, atol=atol, err_msg=name)
    # beside the integrand regularizers of z (which enter the error norm, not ERNODE's state)
    both = CNF(dyn, trace="exact").forward(x, **(kw | dict(regularizers=("kinetic", "ernode"))))
    assert set(both.integrals) == {"kinetic", "ernode"} and np.all(np.isfinite(np.asarray(both.integrals["ernode"])))


def test_cnf_ernode_gradient_matches_central_differences_with_steps_held():
    """ERNODE of (z, Δ) = Σ_j RMS(err_j / (atol + rtol·max(|y_j|, |y_j+1|)))·h_j, written out over
    the solve's own accepted steps (one diffrax dopri5 step each, d = 2 + 1 features): equal to the
    CNF's value, and its central differences (steps held, as the solver's gradient holds them)
    equal the CNF's gradient along random parameter directions."""
    import diffrax as dfx

    from taynode.models.cnf import _Flow

    dyn, x = _tiny_flow()
    tol = dict(rtol=1e-8, atol=1e-8)
    sol = taynode.solve(
        _Flow(dyn, "exact"), (x, jnp.zeros(3)), (0.0, 1.0), (None, None), regularizers=("ernode",), save_steps=True, **tol
    )
    times = np.concatenate([[0.0], np.asarray(sol.step_ts)[: int(sol.stats["steps"])]])
    assert len(times) > 4 and times[-1] == 1.0

    @jax.jit
    def held(d):
        term = dfx.ODETerm(lambda t, y, a: _Flow(d, "exact")(t, y, (None, None)))
        y, total = (x, jnp.zeros(3)), jnp.zeros(3)
        for t0, t1 in zip(times[:-1], times[1:]):
            state = dfx.Dopri5().init(term, t0, t1, y, None)  # f(y_j) afresh: FSAL changes no value
            y1, err, _, _, _ = dfx.Dopri5().step(term, t0, t1, y, None, state, False)
            sq = sum(
                jnp.sum(jnp.square(e / (1e-8 + 1e-8 * jnp.maximum(jnp.abs(a), jnp.abs(b)))).reshape(3, -1), axis=1)
                for e, a, b in zip(err, y, y1)
            )
            total, y = total + jnp.sqrt(sq / 3) * (t1 - t0), y1
        return jnp.sum(total)

    def cnf_value(d):
        return jnp.sum(CNF(d, trace="exact").forward(x, regularizers=("ernode",), **tol).integrals["ernode"])

    np.testing.assert_allclose(float(cnf_value(dyn)), float(held(dyn)), rtol=1e-10)
    params, static = eqx.partition(dyn, eqx.is_inexact_array)
    grad = eqx.filter_jit(eqx.filter_grad(lambda p: cnf_value(eqx.combine(p, static))))(params)
    h = 1e-5  # measured: the differences carry ~2e-6 absolute noise (ERNODE divides by its 1e-8 tolerance)
    for k in range(3):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(20 + k), len(leaves))
        v = jax.tree_util.tree_unflatten(
            treedef, [jax.random.normal(kk, leaf.shape, leaf.dtype) for kk, leaf in zip(keys, leaves)]
        )
        move = lambda s: eqx.combine(jax.tree_util.tree_map(lambda p, u: p + s * u, params, v), static)  # noqa: E731
        fd = (float(held(move(h))) - float(held(move(-h)))) / (2 * h)
        ad = sum(float(jnp.sum(g * u)) for g, u in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(v)))
        assert abs(fd) > 1e-3
        np.testing.assert_allclose(ad, fd, rtol=1e-5)
