"""solve(): accuracy against SciPy, gradients, time directions, and bad input."""

import diffrax  # noqa: F401  (imported for its error type below)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import taynode as tn
from taynode.models import MLPDynamics


def lotka_volterra(t, z, args):
    x, y = z[..., 0], z[..., 1]
    return jnp.stack([1.5 * x - x * y, -3.0 * y + x * y], -1)


def van_der_pol(t, z, args):
    x, v = z[..., 0], z[..., 1]
    return jnp.stack([v, (1 - x**2) * v - x], -1)


def scipy_ref(f, z0, ts):
    rhs = lambda t, y: np.asarray(f(t, jnp.asarray(y)[None], None)[0])  # noqa: E731
    out = solve_ivp(rhs, (ts[0], ts[-1]), np.asarray(z0[0]), method="DOP853", t_eval=ts, rtol=1e-13, atol=1e-13)
    return out.y.T


@pytest.mark.parametrize("f,z0", [(lotka_volterra, [[1.0, 1.0]]), (van_der_pol, [[2.0, 0.0]])])
def test_dopri5_matches_scipy_dop853(f, z0):
    z0 = jnp.array(z0)
    ts = np.linspace(0.0, 5.0, 6)
    sol = tn.solve(f, z0, ts, rtol=1e-10, atol=1e-10)
    ref = scipy_ref(f, z0, ts)
    rel = np.abs(np.asarray(sol.ys[:, 0]) - ref) / np.maximum(np.abs(ref), 1e-3)
    assert rel.max() <= 1e-8
    assert sol.ys.shape == (6, 1, 2)


@pytest.mark.parametrize("solver", ["tsit5", "dopri8", "bosh3"])
def test_other_adaptive_solvers_reach_tolerance(solver):
    z0 = jnp.array([[2.0, 0.0]])
    ts = np.array([0.0, 3.0])
    sol = tn.solve(van_der_pol, z0, ts, solver=solver, rtol=1e-9, atol=1e-9, max_steps=100000)
    ref = scipy_ref(van_der_pol, z0, ts)[-1]
    assert np.max(np.abs(np.asarray(sol.z1[0]) - ref)) <= 1e-6


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("bosh3", 3), ("rk4", 4), ("dopri5", 5)])
def test_fixed_grid_convergence_order(solver, order):
    # Halving the step divides the global error by ~2^order (the RK4 tableau is ours).
    z0 = jnp.array([[1.0, 1.0]])
    ref = scipy_ref(lotka_volterra, z0, np.array([0.0, 1.0]))[-1]
    errs = [np.max(np.abs(np.asarray(tn.solve(lotka_volterra, z0, solver=solver, steps=n).z1[0]) - ref)) for n in (40, 80)]
    observed = np.log2(errs[0] / errs[1])
    assert observed > order - 0.35, observed
    if solver != "dopri5":  # dopri5 converges faster than order 5 before its asymptotic range (5.8 measured)
        assert observed < order + 0.35, observed


def test_backwards_in_time_inverts_forward():
    z0 = jnp.array([[1.0, 1.0]])
    fwd = tn.solve(lotka_volterra, z0, (0.0, 2.0), rtol=1e-11, atol=1e-11, regularizers=["kinetic"])
    back = tn.solve(lotka_volterra, fwd.z1, (2.0, 0.0), rtol=1e-11, atol=1e-11, regularizers=["kinetic"])
    assert np.max(np.abs(back.z1 - z0)) <= 1e-8
    # integrals are over |dt|: non-negative and equal in both directions
    assert float(back.integrals["kinetic"][0]) > 0
    np.testing.assert_allclose(back.integrals["kinetic"], fwd.integrals["kinetic"], rtol=1e-7)


def test_t1_equal_t0_returns_z0():
    z0 = jnp.array([[1.0, 2.0]])
    sol = tn.solve(lotka_volterra, z0, (0.5, 0.5), regularizers=["r2"])
    assert np.array_equal(sol.z1, z0) and int(sol.stats["nfe"]) == 0
    assert float(sol.integrals["R2"][0]) == 0.0


def test_gradients_backprop_adjoint_and_finite_differences_agree():
    model = MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z0 = jnp.array([[0.5, -0.3], [0.1, 0.9]])

    def loss(model, adjoint):
        sol = tn.solve(model, z0, (0.0, 1.0), rtol=1e-10, atol=1e-10, adjoint=adjoint, regularizers=["r2"])
        return jnp.sum(sol.z1**2) + jnp.mean(sol.integrals["R2"])

    g_bp = eqx.filter_grad(lambda m: loss(m, "backprop"))(model)
    g_adj = eqx.filter_grad(lambda m: loss(m, "adjoint"))(model)
    W = model.layers[0].weight
    i, j = 3, 1
    eps = 1e-6
    shift = lambda d: eqx.tree_at(lambda m: m.layers[0].weight, model, W.at[i, j].add(d))  # noqa: E731
    fd = (loss(shift(eps), "backprop") - loss(shift(-eps), "backprop")) / (2 * eps)
    np.testing.assert_allclose(g_bp.layers[0].weight[i, j], fd, rtol=1e-5)
    np.testing.assert_allclose(g_adj.layers[0].weight, g_bp.layers[0].weight, rtol=1e-5, atol=1e-8)


def test_pytree_state_solve():
    z0 = {"x": jnp.array([[1.0]]), "y": jnp.array([[0.0]])}
    sol = tn.solve(lambda t, z, a: {"x": z["y"], "y": -z["x"]}, z0, (0.0, np.pi / 2), rtol=1e-10, atol=1e-10)
    assert abs(float(sol.z1["x"][0, 0])) <= 1e-8 and abs(float(sol.z1["y"][0, 0]) + 1) <= 1e-8


def test_jit_solve():
    run = jax.jit(lambda z0: tn.solve(van_der_pol, z0, (0.0, 1.0)).z1)
    np.testing.assert_allclose(run(jnp.array([[2.0, 0.0]])), tn.solve(van_der_pol, jnp.array([[2.0, 0.0]])).z1)


# ---- bad input: each gets an error that names the problem ------------------------------------

Z0 = jnp.array([[1.0, 1.0]])


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_nonfinite_z0(bad):
    with pytest.raises(ValueError, match=r"z0.*NaN or inf"):
        tn.solve(lotka_volterra, Z0.at[0, 1].set(bad))


def test_nonfinite_z0_under_jit():
    with pytest.raises(Exception, match=r"z0.*NaN or inf"):
        jax.block_until_ready(jax.jit(lambda z: tn.solve(lotka_volterra, z).z1)(Z0.at[0, 0].set(jnp.nan)))


def test_nonfinite_parameters():
    model = MLPDynamics((2, 4, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    bad = eqx.tree_at(lambda m: m.layers[1].bias, model, model.layers[1].bias.at[0].set(jnp.inf))
    with pytest.raises(ValueError, match=r"parameters of f.*layers\[1\].*NaN or inf"):
        tn.solve(bad, Z0)
    with pytest.raises(ValueError, match=r"args.*NaN or inf"):
        tn.solve(lambda t, z, w: z * w, Z0, args=jnp.array([1.0, jnp.nan]))
    # under jit (a training step) the check runs with the computation
    with pytest.raises(Exception, match=r"parameters of f.*NaN or inf"):
        jax.block_until_ready(eqx.filter_jit(lambda m: tn.solve(m, Z0).z1)(bad))


@pytest.mark.parametrize("kw", [dict(rtol=0.0), dict(atol=-1e-6), dict(rtol=-1.0, atol=1e-6)])
def test_nonpositive_tolerances(kw):
    with pytest.raises(ValueError, match="rtol and atol must be > 0"):
        tn.solve(lotka_volterra, Z0, **kw)


def test_unknown_solver_lists_valid():
    with pytest.raises(ValueError, match=r"unknown solver 'rk45'.*dopri5.*tsit5"):
        tn.solve(lotka_volterra, Z0, solver="rk45")


def test_fixed_only_solver_needs_steps():
    with pytest.raises(ValueError, match=r"'rk4' has no error estimate.*steps=N"):
        tn.solve(lotka_volterra, Z0, solver="rk4")


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        tn.solve(lotka_volterra, Z0, solver="rk4", steps=steps)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"returned shape \(1, 3\) for a state of shape \(1, 2\)"):
        tn.solve(lambda t, z, a: jnp.ones((1, 3)), Z0)


@pytest.mark.parametrize("ts,msg", [((0.0, 1.0, 0.5), "strictly increasing"), ((1.0,), "at least two"), ((0.0, jnp.nan), "NaN")])
def test_bad_times(ts, msg):
    with pytest.raises(ValueError, match=msg):
        tn.solve(lotka_volterra, Z0, ts)


def test_unsupported_primitive_in_regularizer_is_named():
    # cond has a Taylor rule since #29; the regularized incomplete gamma function still has none
    f = lambda t, z, a: -jax.scipy.special.gammainc(2.0, z**2 + 1.0)  # noqa: E731
    with pytest.raises(tn.UnsupportedPrimitiveError, match="'igamma'"):
        tn.solve(f, Z0, regularizers=["r2"])
    # with the method the error names, it works
    sol = tn.solve(f, Z0, regularizers=[tn.RK(2, method="nested")], rtol=1e-6, atol=1e-6)
    assert np.isfinite(float(sol.integrals["R2"][0]))


def test_max_steps_exceeded_is_an_error_not_a_truncated_result():
    with pytest.raises(Exception, match="maximum number of solver steps"):
        jax.block_until_ready(tn.solve(van_der_pol, jnp.array([[2.0, 0.0]]), (0.0, 10.0), max_steps=5).ys)


def test_noise_regularizer_needs_key():
    with pytest.raises(ValueError, match=r"need noise: pass key="):
        tn.solve(lotka_volterra, Z0, regularizers=["jacobian"])


def test_unknown_regularizer():
    with pytest.raises(ValueError, match="unknown regularizer 'speed'"):
        tn.solve(lotka_volterra, Z0, regularizers=["speed"])


def test_state_without_batch_axis():
    with pytest.raises(ValueError, match="leading batch axis"):
        tn.solve(lambda t, z, a: -z, jnp.array(1.0))
