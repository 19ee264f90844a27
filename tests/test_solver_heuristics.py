"""ERNODE and SRNODE (taynode.solver_heuristics) against hand-written truth.

ERNODE: a hand-written Dormand–Prince 5(4) loop in NumPy (Hairer, Nørsett & Wanner I, Table
II.5.2 coefficients, typed in here, not diffrax's) over the solve's own accepted steps
(``save_steps=True``). SRNODE: z' = Az with A = ρ·(orthogonal), where ‖Av‖ = ρ‖v‖ for every v, so
the estimator ‖Δf‖/‖Δg‖ is exactly ρ and each step's term exactly |h|ρ; and a normal A with a
spread spectrum, where it is at most |h|ρ (‖Av‖ ≤ ‖A‖₂‖v‖ = ρ‖v‖) and close to it.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode import solver_heuristics as sh
from taynode.solve import SAMPLE_STREAM

# Dormand–Prince 5(4), HNW I Table II.5.2
C = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1])
A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
B = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
# The embedded 4th-order weights: diffrax's Dopri5 uses (1951/21600, ..., 1/60) (diffrax
# _solver/dopri5.py); HNW's DOPRI5 and OrdinaryDiffEq's DP5 use (5179/57600, ..., 1/40). ERNODE
# accumulates the estimate the step-size controller sees, i.e. diffrax's; the two differ by
# exactly a factor 2/3 (test_dopri5_error_weights), which matters when carrying over a λ.
B_HAT = np.array([1951 / 21600, 0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60])
B_HAT_HNW = np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])

RTOL = ATOL = 1e-6
LV_PARAMS = np.array([1.5, 1.0, 3.0, 1.0])
LV_Z0 = np.array([[1.0, 1.0]])  # one example: its RMS is the controller's norm (see test_rejected_steps_excluded)
T1 = 10.0


def lotka_volterra(t, z, p):
    x, y = z[:, 0], z[:, 1]
    return jnp.stack([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y], axis=-1)


def lv_numpy(z, p):
    x, y = z[..., 0], z[..., 1]
    return np.stack([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y], axis=-1)


def dp5_step(f, z, h):
    """One hand-written DP5 step: (z1, error estimate z1 - ẑ1, stage points g, stage slopes k)."""
    g, k = [], []
    for i in range(7):
        gi = z + h * sum(A[i][j] * k[j] for j in range(i)) if i else z
        g.append(gi)
        k.append(f(gi))
    z1 = z + h * sum(B[i] * k[i] for i in range(7))
    err = h * sum((B[i] - B_HAT[i]) * k[i] for i in range(7))
    return z1, err, g, k


def test_dopri5_error_weights():
    np.testing.assert_allclose(B - B_HAT, 2 / 3 * (B - B_HAT_HNW), rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(np.asarray(tn.solvers.get("dopri5").make().tableau.b_error), B - B_HAT, rtol=1e-13, atol=1e-17)


def hand_ernode(p, z0, times):
    """Σ_j E_est,j |h_j| over the given step times, per example, and the final state."""
    z, total, eests = np.array(z0, dtype=np.float64), np.zeros(len(z0)), []
    for ta, tb in zip(times[:-1], times[1:]):
        h = tb - ta
        z1, err, _, _ = dp5_step(lambda u: lv_numpy(u, p), z, h)
        scale = ATOL + RTOL * np.maximum(np.abs(z), np.abs(z1))
        eest = np.sqrt(np.mean((err / scale) ** 2, axis=-1))
        eests.append(eest)
        total += eest * abs(h)
        z = z1
    return total, z, np.array(eests)


def solve_lv(p, z0=LV_Z0, **kw):
    return tn.solve(
        lotka_volterra,
        jnp.asarray(z0),
        (0.0, T1),
        jnp.asarray(p),
        solver="dopri5",
        regularizers=["ernode"],
        rtol=RTOL,
        atol=ATOL,
        **kw,
    )


@pytest.fixture(scope="module")
def lv_solve():
    sol = solve_lv(LV_PARAMS, save_steps=True)
    n = int(sol.stats["steps"])
    times = np.concatenate([[0.0], np.asarray(sol.step_ts)[:n]])
    return sol, times


def test_ernode_equals_hand_written_dopri5_sum(lv_solve):
    sol, times = lv_solve
    total, z1, eests = hand_ernode(LV_PARAMS, LV_Z0, times)
    assert times[-1] == T1
    np.testing.assert_allclose(z1, np.asarray(sol.z1), rtol=1e-12)  # the same steps, so the same states
    np.testing.assert_allclose(np.asarray(sol.integrals["ernode"]), total, rtol=1e-12)
    assert np.all(eests <= 1.0 + 1e-12)  # accepted steps: the controller's own measure was <= 1
    assert total > 0.1  # not a vacuous match


def test_rejected_steps_excluded(lv_solve):
    """A rejected step had E_est > 1 (one example: E_est is the controller's norm), so counting one
    would add more than its |h| ≥ min accepted step / 10 — far above the 1e-12 match above."""
    sol, times = lv_solve
    assert int(sol.stats["rejected"]) > 0
    total, _, _ = hand_ernode(LV_PARAMS, LV_Z0, times)
    assert abs(float(sol.integrals["ernode"][0]) - total[0]) < 1e-9 * np.diff(times).min()


def test_ernode_gradient_matches_central_differences(lv_solve):
    """The solver's steps carry no gradient (diffrax's PID controller stops it), so the gradient is
    that of the hand-written sum over the same step times: central differences with steps held."""
    _, times = lv_solve
    grad = jax.jit(jax.grad(lambda p: solve_lv(p).integrals["ernode"][0]))(jnp.asarray(LV_PARAMS))
    eps = 1e-6
    fd = np.array(
        [
            (hand_ernode(LV_PARAMS + eps * e, LV_Z0, times)[0][0] - hand_ernode(LV_PARAMS - eps * e, LV_Z0, times)[0][0])
            / (2 * eps)
            for e in np.eye(4)
        ]
    )
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    assert np.abs(fd).max() > 0.1


@pytest.mark.parametrize("solver", ["midpoint", "heun", "bosh3", "dopri5", "tsit5", "dopri8"])
def test_ernode_every_adaptive_solver(solver):
    """Every embedded solver: the accumulated value is the sum, over the accepted steps, of one
    step of that solver (diffrax's tableau, recomputed outside the wrapper) — and batch examples
    are independent sums."""
    z0 = jnp.array([[1.0, 1.0], [2.0, 0.5]])
    p = jnp.asarray(LV_PARAMS)
    sol = tn.solve(
        lotka_volterra, z0, (0.0, 2.0), p, solver=solver, regularizers=["ernode"], rtol=1e-4, atol=1e-4, save_steps=True
    )
    n = int(sol.stats["steps"])
    times = np.concatenate([[0.0], np.asarray(sol.step_ts)[:n]])
    inner = tn.solvers.get(solver).make()
    term = dfx.ODETerm(lotka_volterra)
    step = jax.jit(lambda ta, tb, z: inner.step(term, ta, tb, z, p, inner.init(term, ta, tb, z, p), False)[:2])
    z, total = z0, np.zeros(2)
    for ta, tb in zip(times[:-1], times[1:]):
        z1, err = step(ta, tb, z)
        scale = 1e-4 + 1e-4 * jnp.maximum(jnp.abs(z), jnp.abs(z1))
        total += np.sqrt(np.mean(np.asarray(err / scale) ** 2, axis=-1)) * (tb - ta)
        z = z1
    np.testing.assert_allclose(np.asarray(sol.integrals["ernode"]), total, rtol=1e-10)
    assert total[0] != pytest.approx(total[1], rel=1e-3)


def _rotation_generator(n, rho, seed=0):
    """ρ·P J Pᵀ with P orthogonal, J = blocks [[0, 1], [-1, 0]]: eigenvalues ±iρ, ‖Av‖ = ρ‖v‖."""
    rng = np.random.default_rng(seed)
    p, _ = np.linalg.qr(rng.normal(size=(n, n)))
    j = np.zeros((n, n))
    for i in range(0, n, 2):
        j[i, i + 1], j[i + 1, i] = 1.0, -1.0
    return rho * p @ j @ p.T, p, rng


def _one_step(solver, reg, a, z0, h):
    """The wrapper's accumulated value after one step of size h from z0 (z' = z Aᵀ per example)."""
    wrapped = sh.wrap(solver, [reg], lambda y: y, 1e-8, 1e-8)
    term = dfx.ODETerm(lambda t, z, args: z @ a.T)
    state = wrapped.init(term, 0.0, h, z0, None)
    return float(wrapped.step(term, 0.0, h, z0, None, state, False)[3][1][reg.name][0])


# (solver, stage pair): the default same-time pair, and bosh3 with a user-chosen pair
CASES = [("dopri5", None), ("tsit5", None), ("dopri8", None), ("bosh3", (3, 4))]


@pytest.mark.parametrize("solver,stages", CASES)
def test_stiffness_estimate_is_h_rho_when_every_direction_has_modulus_rho(solver, stages):
    """‖Av‖/‖v‖ = ρ for all v, so each step's term is |h|ρ up to rounding: Δg = g_i − g_j is of the
    size of the local error, so forming it loses about ε‖z‖/‖Δg‖ (≤ 1e-7 relative here) — the
    tolerance 1e-6. The whole solve then sums to ρ|t1 − t0|."""
    rho = 20.0
    a, _, rng = _rotation_generator(6, rho)
    z0 = jnp.asarray(rng.normal(size=(1, 6)))
    reg = sh.StiffnessEstimate(stages=stages)
    inner = tn.solvers.get(solver).make()
    for h in (0.01, 0.05, 0.15):
        assert _one_step(inner, reg, jnp.asarray(a), z0, h) == pytest.approx(h * rho, rel=1e-6)
    sol = tn.solve(lambda t, z, args: z @ a.T, z0, (0.0, 1.0), solver=solver, regularizers=[reg], rtol=1e-6, atol=1e-6)
    assert float(sol.integrals["srnode"][0]) == pytest.approx(rho * 1.0, rel=1e-6)


@pytest.mark.parametrize("solver,lower", [("dopri5", 0.98), ("tsit5", 0.98), ("dopri8", 0.995)])
def test_stiffness_estimate_near_h_rho_for_a_spread_spectrum(solver, lower):
    """A = P diag(−ρ·(1, .5, .2, .1, .05, .01)) Pᵀ (normal), z0 with equal weight on every
    eigenvector. Upper bound |h|ρ is a theorem; the lower bound is the power-iteration effect
    (Δg is a polynomial in hA applied to z0, weighted towards the largest |λ|; with λ₂/λ₁ = ½ we
    measured 0.990–0.996 |h|ρ for dopri5/tsit5 and 0.9995 for dopri8). The estimate sees only
    excited modes: once the −ρ mode has decayed (t = 0.5, e^{−10}), it drops to about 0.4 ρ."""
    rho = 20.0
    _, p, _ = _rotation_generator(6, rho)
    a = jnp.asarray(p @ np.diag(-rho * np.array([1, 0.5, 0.2, 0.1, 0.05, 0.01])) @ p.T)
    z0 = jnp.asarray(np.ones((1, 6)) @ p.T)
    inner = tn.solvers.get(solver).make()
    for h in (0.01, 0.05, 0.15):
        value = _one_step(inner, sh.StiffnessEstimate(), a, z0, h)
        assert lower * h * rho <= value <= h * rho * (1 + 1e-9)


def test_default_stage_pairs():
    pairs = {
        n: sh._same_time_pair(tn.solvers.get(n).make().tableau)
        for n in ("dopri5", "tsit5", "dopri8", "bosh3", "heun", "midpoint")
    }
    assert pairs == {"dopri5": (6, 7), "tsit5": (6, 7), "dopri8": (13, 14), "bosh3": None, "heun": None, "midpoint": None}
    assert sh.solvers_with_pair() == ["dopri5", "tsit5", "dopri8"]


def test_srnode_gradient_matches_central_differences():
    """SRNODE's gradient in the parameters of f, with the steps held (as for ERNODE): LV's sum over
    the solve's steps, recomputed by the hand-written DP5 (stages 6 and 7, RMS norms)."""

    def hand(p, times):
        z, total = np.array(LV_Z0), 0.0
        for ta, tb in zip(times[:-1], times[1:]):
            z1, _, g, k = dp5_step(lambda u: lv_numpy(u, p), z, tb - ta)
            total += np.linalg.norm(k[6] - k[5]) / np.linalg.norm(g[6] - g[5]) * abs(tb - ta)
            z = z1
        return total

    sol = tn.solve(
        lotka_volterra,
        jnp.asarray(LV_Z0),
        (0.0, T1),
        jnp.asarray(LV_PARAMS),
        regularizers=["srnode"],
        rtol=RTOL,
        atol=ATOL,
        save_steps=True,
    )
    times = np.concatenate([[0.0], np.asarray(sol.step_ts)[: int(sol.stats["steps"])]])
    assert float(sol.integrals["srnode"][0]) == pytest.approx(hand(LV_PARAMS, times), rel=1e-9)
    grad = jax.jit(
        jax.grad(
            lambda p: tn.solve(
                lotka_volterra, jnp.asarray(LV_Z0), (0.0, T1), p, regularizers=["srnode"], rtol=RTOL, atol=ATOL
            ).integrals["srnode"][0]
        )
    )(jnp.asarray(LV_PARAMS))
    eps = 1e-6
    fd = np.array([(hand(LV_PARAMS + eps * e, times) - hand(LV_PARAMS - eps * e, times)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def test_local_variant_is_one_fresh_step_at_each_sample_time():
    """quadrature="sampled": the mean over the M sample times τ_m of one DP5 step from z(τ_m) of
    the initial-step rule's size (clipped at t1) — recomputed here by the hand-written step."""
    key, m = jax.random.PRNGKey(3), 3
    p = jnp.asarray(LV_PARAMS)
    sol = jax.jit(
        lambda q: tn.solve(
            lotka_volterra,
            jnp.asarray(LV_Z0),
            (0.0, T1),
            q,
            regularizers=["ernode", "srnode"],
            quadrature="sampled",
            samples=m,
            key=key,
            rtol=RTOL,
            atol=ATOL,
        )
    )(p)
    taus = np.asarray(tn.sample_times(jax.random.fold_in(key, SAMPLE_STREAM), 0.0, T1, m))
    z_taus = np.asarray(tn.solve(lotka_volterra, jnp.asarray(LV_Z0), np.r_[0.0, taus, T1], p, rtol=RTOL, atol=ATOL).ys[1:-1])
    fun = lambda t, y: (lotka_volterra(t, y[0], p), {})  # noqa: E731  (solve's augmented state)
    er, sr = [], []
    for tau, z in zip(taus, z_taus):
        y = (jnp.asarray(z), {})
        h = float(tn.solvers.initial_step_size(fun, tau, y, 1.0, 5, RTOL, ATOL, fun(tau, y)))
        h = min(h, T1 - tau)
        z1, err, g, k = dp5_step(lambda u: lv_numpy(u, LV_PARAMS), z, h)
        scale = ATOL + RTOL * np.maximum(np.abs(z), np.abs(z1))
        er.append(np.sqrt(np.mean((err / scale) ** 2)) * h)
        sr.append(np.linalg.norm(k[6] - k[5]) / np.linalg.norm(g[6] - g[5]) * h)
    assert float(sol.integrals["ernode"][0]) == pytest.approx(np.mean(er), rel=1e-9)
    assert float(sol.integrals["srnode"][0]) == pytest.approx(np.mean(sr), rel=1e-9)
    grad = jax.jit(
        jax.grad(
            lambda q: tn.solve(
                lotka_volterra,
                jnp.asarray(LV_Z0),
                (0.0, T1),
                q,
                regularizers=["ernode"],
                quadrature="sampled",
                samples=m,
                key=key,
                rtol=RTOL,
                atol=ATOL,
                adjoint="adjoint",
            ).integrals["ernode"][0]
        )
    )(p)
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).max() > 0


EMBEDDED = "['midpoint', 'heun', 'bosh3', 'dopri5', 'tsit5', 'dopri8']"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(regularizers=["ernode"], steps=10),
            r"fixed grid \(steps=10\).*" + EMBEDDED.replace("[", r"\[").replace("]", r"\]"),
        ),
        (dict(regularizers=["srnode"], steps=10), r"fixed grid"),
        (dict(regularizers=["ernode"], solver="rk4", steps=10), r"'rk4' does not have.*dopri5"),
        (dict(regularizers=["ernode"], solver="euler", steps=10), r"'euler' does not have.*dopri5"),
        (dict(regularizers=["ernode"], solver="taylor"), r"'taylor' does not have.*dopri5"),
        (dict(regularizers=["srnode"], solver="taylor12"), r"'taylor12' does not have"),
        (dict(regularizers=["srnode"], solver="bosh3"), r"bosh3 has none.*\['dopri5', 'tsit5', 'dopri8'\].*stages=\(i, j\)"),
        (dict(regularizers=["srnode"], solver="heun"), r"heun has none"),
        (dict(regularizers=["srnode"], solver="midpoint"), r"midpoint has none"),
        (dict(regularizers=[sh.StiffnessEstimate(stages=(2, 9))]), r"1 <= i < j <= 7"),
        (dict(regularizers=["ernode"], adjoint="adjoint"), r"adjoint='backprop'"),
        (dict(regularizers=["ernode", sh.ErrorEstimate()]), r"distinct names"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tn.solve(lotka_volterra, jnp.asarray(LV_Z0), (0.0, 1.0), jnp.asarray(LV_PARAMS), **kwargs)


def test_zero_length_interval_gives_zero():
    sol = tn.solve(lotka_volterra, jnp.asarray(LV_Z0), (0.0, 0.0), jnp.asarray(LV_PARAMS), regularizers=["ernode", "srnode"])
    assert set(sol.integrals) == {"ernode", "srnode"} and float(sol.integrals["ernode"][0]) == 0.0


def test_srnode_is_zero_and_differentiable_where_the_two_stage_points_coincide_to_rounding():
    """float32, two examples: one with a stage gap far above rounding (its estimate is the secant
    slope ‖Δk‖/‖Δg‖), one whose gap is below eps·‖g‖ (rounding noise: 0, with a finite gradient;
    the exact-zero test it replaced gave a NaN gradient there and stopped FFJORD training)."""
    from taynode.solver_heuristics import StepInfo, StiffnessEstimate

    tableau = dfx.Dopri5().tableau
    n = len(tableau.a_lower) + 1
    rng = np.random.default_rng(0)
    ks = rng.normal(size=(n, 2, 3)).astype(np.float32)
    z0 = np.array([[1.0, 2.0, 3.0], [1e4, 2e4, 3e4]], np.float32)

    def value(scale):
        info = StepInfo(0.0, 0.1, jnp.asarray(z0), None, None, scale * jnp.asarray(ks), tableau, 1e-5, 1e-5)
        return StiffnessEstimate().step_value(info)

    def gap(example, scale):  # ‖g6 − g7‖ and ‖g6‖ in float64
        a6, a7 = np.asarray(tableau.a_lower[4], np.float64), np.asarray(tableau.a_lower[5], np.float64)
        k = scale * ks[:, example].astype(np.float64)
        g6 = z0[example] + a6 @ k[:5]
        return np.linalg.norm(g6 - (z0[example] + a7 @ k[:6])), np.linalg.norm(g6)

    scale = 1e-4
    big, small = gap(0, scale), gap(1, scale)
    eps = np.finfo(np.float32).eps
    assert big[0] > 100 * eps * big[1] and small[0] < eps * small[1]  # the two regimes
    v = np.asarray(value(scale))
    expected = np.linalg.norm(scale * (ks[5, 0] - ks[6, 0])) / big[0]
    assert v[0] == pytest.approx(expected, rel=1e-3) and v[1] == 0.0
    g = jax.grad(lambda s: jnp.sum(value(s)))(jnp.float32(scale))
    assert np.isfinite(float(g))
