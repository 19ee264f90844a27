"""The Taylor-series integrator: accuracy against SciPy DOP853 (rtol = atol = 1e-13) and closed
forms, the Jorba–Zou step rule, solve() integration, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import taynode as tn
from taynode.problems import lotka_volterra, van_der_pol
from taynode.taylor_solver import jorba_zou_order, jorba_zou_step, taylor_solve

ECC = 0.6


def two_body(t, z, args=None):
    q, v = z[..., :2], z[..., 2:]
    r3 = jnp.sum(q**2, -1, keepdims=True) ** 1.5
    return jnp.concatenate([v, -q / r3], -1)


# eccentric Kepler orbit from pericentre: period 2π, so z(2π) = z(0) exactly
KEPLER_Z0 = [1 - ECC, 0.0, 0.0, math.sqrt((1 + ECC) / (1 - ECC))]

PROBLEMS = {
    "lotka_volterra": (lotka_volterra, [1.0, 1.0], 5.0),
    "van_der_pol": (van_der_pol, [2.0, 0.0], 5.0),
    "two_body": (two_body, KEPLER_Z0, 2 * math.pi),
}


def scipy_ref(f, z0, ts):
    rhs = lambda t, y: np.asarray(f(t, jnp.asarray(y)[None])[0])  # noqa: E731
    return solve_ivp(rhs, (ts[0], ts[-1]), z0, method="DOP853", t_eval=ts, rtol=1e-13, atol=1e-13).y.T


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_reaches_requested_accuracy_against_dop853(name):
    f, z0, t1 = PROBLEMS[name]
    ts = np.array([0.0, t1])
    ref = scipy_ref(f, z0, ts)[-1]
    if name == "two_body":
        assert np.max(np.abs(ref - np.array(z0))) <= 1e-10  # the reference itself, against the closed form
    # one compile per problem: the tolerance is traced, the order fixed
    run = jax.jit(lambda z, tol: taylor_solve(f, z, jnp.asarray(ts), rtol=tol, atol=tol, order=10, max_steps=20_000))
    steps = []
    for tol in (1e-6, 1e-9):
        ys, stats, _, _ = run(jnp.array([z0]), tol)
        err = np.max(np.abs(np.asarray(ys[-1, 0]) - ref))
        assert err <= 10 * tol * max(1.0, np.max(np.abs(ref))), (tol, err)
        assert int(stats["nfe"]) == 10 * int(stats["steps"]) and int(stats["rejected"]) == 0
        steps.append(int(stats["steps"]))
    # J&Z: h ∝ ε^(1/p), so 1000× tighter costs about 1000^(1/10) ≈ 2× the steps
    assert 1.3 < steps[1] / steps[0] < 3.5, steps


def test_solve_taylor_dense_output_matches_scipy_at_every_time():
    ts = np.linspace(0.0, 4.0, 9)
    sol = tn.solve(lotka_volterra, jnp.array([[1.0, 1.0]]), ts, solver="taylor", rtol=1e-6, atol=1e-6, save_steps=True)
    ref = scipy_ref(lotka_volterra, [1.0, 1.0], ts)
    assert sol.ys.shape == (9, 1, 2)
    np.testing.assert_allclose(np.asarray(sol.ys[:, 0]), ref, atol=1e-5 * np.max(np.abs(ref)))
    assert float(sol.stats["mean_order"]) == jorba_zou_order(1e-6) == 8
    # output times are not step ends: the Taylor polynomial serves them inside a step
    step_ts = np.asarray(sol.step_ts)[np.isfinite(np.asarray(sol.step_ts))]
    assert len(step_ts) == int(sol.stats["steps"]) and step_ts[-1] == 4.0
    assert not np.any(np.isin(ts[1:-1], step_ts))


def test_adaptive_order_reaches_accuracy_and_counts_orders():
    z0 = [2.0, 0.0]
    sol = tn.solve(van_der_pol, jnp.array([z0]), (0.0, 3.0), solver="taylor-adaptive", rtol=1e-5, atol=1e-5)
    ref = scipy_ref(van_der_pol, z0, np.array([0.0, 3.0]))[-1]
    assert np.max(np.abs(np.asarray(sol.z1[0]) - ref)) <= 1e-4
    p = jorba_zou_order(1e-5)
    mean = float(sol.stats["mean_order"])
    assert max(2, p - 4) <= mean <= p + 4
    np.testing.assert_allclose(float(sol.stats["nfe"]), mean * int(sol.stats["steps"]))


def test_exponential_closed_form_backwards_and_jit():
    f = lambda t, z, args: z  # noqa: E731
    run = jax.jit(lambda z: tn.solve(f, z, (0.0, 2.0), solver="taylor12", rtol=1e-12, atol=1e-12).z1)
    z1 = run(jnp.array([[1.0]]))
    assert abs(float(z1[0, 0]) - math.exp(2.0)) <= 1e-11 * math.exp(2.0)
    back = tn.solve(f, z1, (2.0, 0.0), solver="taylor12", rtol=1e-12, atol=1e-12, save_steps=True)
    assert abs(float(back.z1[0, 0]) - 1.0) <= 1e-11
    ok = np.isfinite(np.asarray(back.step_ts))
    assert ok.sum() == int(back.stats["steps"]) and np.asarray(back.step_ts)[ok][-1] == 0.0
    np.testing.assert_allclose(np.asarray(back.step_ys)[ok][:, 0, 0], np.exp(np.asarray(back.step_ts)[ok]), rtol=1e-11)


def test_jorba_zou_step_rule():
    # z' = z at z = 1: z_k = 1/k!, so h = min over k in {p-1, p} of (ε k!)^(1/k)
    p, eps = 6, 1e-8
    norms = [jnp.asarray(1 / math.factorial(k)) for k in range(p + 1)]
    expected = min((eps * math.factorial(k)) ** (1 / k) for k in (p - 1, p))
    np.testing.assert_allclose(float(jorba_zou_step(norms, eps)), expected, rtol=1e-14)
    # the last two coefficients vanish: the second control max_k ‖z_k‖^(-1/k), k = 1 … p-2
    norms2 = norms[:-2] + [jnp.asarray(0.0)] * 2
    second = max(math.factorial(k) ** (1 / k) for k in range(1, p - 1))
    np.testing.assert_allclose(float(jorba_zou_step(norms2, eps)), second, rtol=1e-14)
    # constant solution: the step is unbounded (solve() clips it to t1)
    assert np.isinf(float(jorba_zou_step([jnp.asarray(1.0)] + [jnp.asarray(0.0)] * p, eps)))
    sol = tn.solve(lambda t, z, a: jnp.zeros_like(z), jnp.array([[3.0]]), (0.0, 5.0), solver="taylor")
    assert int(sol.stats["steps"]) == 1 and float(sol.z1[0, 0]) == 3.0


# ---- bad input -----------------------------------------------------------------------------

Z0 = jnp.array([[1.0, 1.0]])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown solver 'taylorx'"):
        tn.solve(lotka_volterra, Z0, solver="taylorx")
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        tn.solve(lotka_volterra, Z0, solver="taylor1")
    with pytest.raises(NotImplementedError, match="regularizers are not implemented with the Taylor solver"):
        tn.solve(lotka_volterra, Z0, solver="taylor", regularizers=["r2"])
    with pytest.raises(NotImplementedError, match="continuous adjoint"):
        tn.solve(lotka_volterra, Z0, solver="taylor", adjoint="adjoint")
    with pytest.raises(ValueError, match="not steps="):
        tn.solve(lotka_volterra, Z0, solver="taylor", steps=10)
    with pytest.raises(ValueError, match="rtol and atol must be > 0"):
        tn.solve(lotka_volterra, Z0, solver="taylor", rtol=0.0)
    with pytest.raises(ValueError, match="z0.*NaN or inf"):
        tn.solve(lotka_volterra, Z0.at[0, 0].set(jnp.nan), solver="taylor")
    with pytest.raises(ValueError, match="orders must be distinct and increasing"):
        taylor_solve(lotka_volterra, Z0, jnp.array([0.0, 1.0]), rtol=1e-6, atol=1e-6, adaptive_order=True, orders=(8, 4))
    with pytest.raises(ValueError, match="unknown Taylor method"):
        taylor_solve(lotka_volterra, Z0, jnp.array([0.0, 1.0]), rtol=1e-6, atol=1e-6, method="fast")
    with pytest.raises(Exception, match="max_steps"):
        tn.solve(lotka_volterra, Z0, (0.0, 10.0), solver="taylor4", rtol=1e-10, atol=1e-10, max_steps=5)


def test_default_method_falls_back_when_it_lacks_a_rule(monkeypatch):
    from taynode import taylor_solver
    from taynode.ode import taylor_method  # where taylor_coefficients looks coefficients up (taylor_solver re-exports it)
    from taynode.taylor import UnsupportedPrimitiveError, coefficients

    def strict_default(f, t, z, args, order, **kw):
        if "method" not in kw:  # a default method without a rule for something in f
            raise UnsupportedPrimitiveError("stack", "incremental", "nested")
        return coefficients(f, t, z, args, order=order, **kw)

    monkeypatch.setattr(taylor_method, "coefficients", strict_default)
    z = jnp.array([[1.0, 1.0]])
    got = taylor_solver.taylor_coefficients(lotka_volterra, 0.0, z, None, 4)
    want = [z] + [d / math.factorial(k) for k, d in enumerate(tn.derivatives(lotka_volterra, 0.0, z, None, 4, method="jet"), 1)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    with pytest.raises(UnsupportedPrimitiveError):  # a named method is not replaced
        monkeypatch.setattr(
            taylor_method,
            "coefficients",
            lambda *a, **k: (_ for _ in ()).throw(UnsupportedPrimitiveError("stack", "jet", "nested")),
        )
        taylor_solver.taylor_coefficients(lotka_volterra, 0.0, z, None, 4, method="jet")


def test_vanishing_last_coefficients_look_further():
    # at t = 0 the coefficients of z' = 1 + t¹¹ (and of z' = 1 + z¹¹ from 0) vanish from order 2 to
    # 11: the step must come from the first non-zero neglected term, not jump to t1
    s = tn.solve(lambda t, z, a: 1 + t**11 + 0 * z, jnp.array([[0.0]]), (0.0, 2.0), solver="taylor11", rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(float(s.z1[0, 0]), 2 + 2**12 / 12, rtol=1e-9)
    ref = solve_ivp(lambda t, y: 1 + y**11, (0, 0.9), [0.0], method="DOP853", rtol=1e-13, atol=1e-13).y[0, -1]
    s = tn.solve(lambda t, z, a: 1 + z**11, jnp.array([[0.0]]), (0.0, 0.9), solver="taylor11", rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(float(s.z1[0, 0]), ref, rtol=1e-8)
    s = tn.solve(lambda t, z, a: t**2 + 0 * z, jnp.array([[0.0]]), (0.0, 1.0), solver="taylor2", rtol=1e-4, atol=1e-4)
    assert abs(float(s.z1[0, 0]) - 1 / 3) < 1e-3 and int(s.stats["steps"]) > 10


def test_traced_equal_times_return_the_initial_state():
    run = jax.jit(lambda ts: tn.solve(lambda t, z, a: -z, jnp.array([[1.0]]), ts, solver="taylor").ys)
    np.testing.assert_array_equal(np.asarray(run(jnp.array([0.0, 0.0]))).ravel(), [1.0, 1.0])


def test_high_orders_in_float32_without_x64():
    # k! for k >= 13 does not fit int32: the coefficients must never pass through k!
    code = (
        "import jax.numpy as jnp, taynode as tn\n"
        "from taynode.problems import lotka_volterra\n"
        "s = tn.solve(lotka_volterra, jnp.array([[1.0, 1.0]], jnp.float32), (0.0, 1.0), solver='taylor-adaptive', rtol=1e-7, atol=1e-7)\n"
        "assert s.z1.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(s.z1)))\n"
        "s = tn.solve(lambda t, z, a: z**2, jnp.array([[10.0]], jnp.float32), (0.0, 0.05), solver='taylor20', rtol=1e-6, atol=1e-6)\n"
        "assert abs(float(s.z1[0, 0]) - 20.0) < 1e-3, s.z1\n"
        "print('ok')\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
