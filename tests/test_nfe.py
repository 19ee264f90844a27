"""The reported NFE equals a counter inside f, for every solver, adaptive and fixed-grid."""

import jax
import jax.numpy as jnp
import pytest

import taynode as tn
from taynode.solvers import REGISTRY, SOLVERS, STUDY_SOLVERS


def counting_vdp():
    calls = [0]

    def bump(t):
        calls[0] += 1

    def f(t, z, args):
        jax.debug.callback(bump, t)
        x, v = z[..., 0], z[..., 1]
        return jnp.stack([v, (1 - x**2) * v - x], -1)

    return f, calls


# every Runge–Kutta entry of the registry (the general solvers and the order study's tableaux)
RK_NAMES = [n for n, s in REGISTRY.items() if s.kind == "runge-kutta"]
CASES = [(name, None) for name in RK_NAMES if REGISTRY[name].embedded] + [(name, 17) for name in RK_NAMES]


@pytest.mark.parametrize("name,steps", CASES)
def test_nfe_matches_counter(name, steps):
    f, calls = counting_vdp()
    tol = dict(rtol=1e-5, atol=1e-5) if steps is None else {}
    sol = tn.solve(f, jnp.array([[2.0, 0.0]]), jnp.linspace(0.0, 3.0, 4), solver=name, steps=steps, max_steps=20000, **tol)
    jax.block_until_ready(sol.ys)
    assert int(sol.stats["nfe"]) == calls[0]
    assert int(sol.stats["attempted"]) == int(sol.stats["steps"]) + int(sol.stats["rejected"])
    if steps is not None:
        assert int(sol.stats["steps"]) == steps and int(sol.stats["rejected"]) == 0


def test_adaptive_solve_rejects_steps_and_counts_them():
    # A tolerance tight enough to force rejections: the counter still agrees.
    f, calls = counting_vdp()
    sol = tn.solve(f, jnp.array([[2.0, 0.0]]), (0.0, 6.0), rtol=1e-9, atol=1e-9)
    jax.block_until_ready(sol.ys)
    assert int(sol.stats["rejected"]) > 0
    assert int(sol.stats["nfe"]) == calls[0] == 3 + 6 * int(sol.stats["attempted"])


def test_nfe_under_jit_and_with_regularizers():
    # The counter sees the solver's evaluations of the augmented field once per call of f in
    # the field (kinetic calls f once more per evaluation); nfe counts the solver's calls.
    f, calls = counting_vdp()
    run = jax.jit(lambda z: tn.solve(f, z, (0.0, 2.0), rtol=1e-6, atol=1e-6, regularizers=["kinetic"]).stats["nfe"])
    nfe = int(run(jnp.array([[2.0, 0.0]])))
    assert calls[0] == 2 * nfe


def test_the_cases_cover_every_runge_kutta_entry():
    assert set(RK_NAMES) == set(SOLVERS) | set(STUDY_SOLVERS)
    assert set(REGISTRY) - set(RK_NAMES) == {"taylor", "taylor-adaptive"}


@pytest.mark.parametrize("name", ["taylor", "taylor6", "taylor-adaptive"])
def test_taylor_entries_count_coefficient_orders(name):
    """The Taylor method's unit: a step of order p counts p (fixed: p·steps; adaptive: the mean order)."""
    f, _ = counting_vdp()
    sol = tn.solve(f, jnp.array([[2.0, 0.0]]), (0.0, 1.0), solver=name, rtol=1e-6, atol=1e-6)
    nfe, steps = int(sol.stats["nfe"]), int(sol.stats["steps"])
    assert sol.nfe_unit == "Taylor coefficient orders" and steps > 0
    if name == "taylor6":
        assert nfe == 6 * steps
    else:
        assert nfe == pytest.approx(float(sol.stats["mean_order"]) * steps)


def stiff_vdp(calls, at_t0):
    """van der Pol with mu = 20: from (2, 0) the first step (Hairer's initial step) is rejected."""

    def bump(t):
        calls[0] += 1
        at_t0[0] += int(t == 0.0)

    @jax.custom_vjp
    def field(z):
        x, v = z[..., 0], z[..., 1]
        return jnp.stack([v, 20.0 * (1 - x**2) * v - x], -1)

    def forward(z):
        return field(z), z

    def backward(z, g):
        jax.debug.callback(lambda: calls.__setitem__(1, calls[1] + 1))
        return jax.vjp(field.__wrapped__, z)[1](g)

    field.defvjp(forward, backward)

    def f(t, z, args):
        jax.debug.callback(bump, t)
        return field(z)

    return f


@pytest.mark.parametrize("name", ["dopri5", "bosh3"])
def test_each_retry_of_a_rejected_first_step_is_counted(name):
    # an FSAL solver has no last stage to reuse until its first step is accepted, so each retry
    # evaluates f(t0, z0) again; diffrax's step totals do not say how many retries there were
    calls, at_t0 = [0, 0], [0]
    f = stiff_vdp(calls, at_t0)

    z0 = jnp.array([[2.0, 0.0]])
    sol = tn.solve(f, z0, (0.0, 1.0), solver=name, rtol=1e-6, atol=1e-6)
    jax.block_until_ready(sol.ys)
    assert at_t0[0] >= 3  # Hairer's f(t0, z0), the first attempt and at least one retry
    assert int(sol.stats["nfe"]) == calls[0]
    grad = jax.grad(lambda z: jnp.sum(tn.solve(f, z, (0.0, 1.0), solver=name, rtol=1e-6, atol=1e-6).z1))(z0)
    jax.block_until_ready(grad)
    assert int(sol.stats["nfe_backward"]) == calls[1]  # one vjp per evaluation after the initial-step rule
