"""RegularizedTerm and count_nfe in a user's own diffrax.diffeqsolve: the integrals and gradients
of taynode.solve, central differences through BacksolveAdjoint, the NFE against a counter in f."""

import pathlib
import subprocess
import sys

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode.diffrax_term import sample_times
from taynode.nfe import CountFirstStages, count_nfe_backward, stages_fsal
from taynode.regularizers import hutchinson_noise
from taynode.solvers import SOLVERS, STUDY_SOLVERS, initial_step_size

TOL = dict(rtol=1e-8, atol=1e-8)
REGS = ["r2", "kinetic", "jacobian"]


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def mlp_params(seed=0, d=2, h=4):
    k = jax.random.split(jax.random.key(seed), 4)
    return dict(
        w1=jax.random.normal(k[0], (d, h)) / 2,
        b1=jax.random.normal(k[1], (h,)) / 4,
        w2=jax.random.normal(k[2], (h, d)) / 3,
        b2=jax.random.normal(k[3], (d,)) / 4,
    )


def mlp(t, z, p):
    """A random MLP field, batched or not (z of shape (..., d)), time-dependent."""
    return jnp.tanh(z @ p["w1"] + p["b1"] + t) @ p["w2"] + p["b2"]


def z0_of(seed=1, batch=2, d=2):
    return jax.random.normal(jax.random.key(seed), (batch, d))


def hairer_dt0(term, y0, args, order):
    """The initial step taynode.solve chooses (Hairer's rule over the augmented state)."""
    fun = lambda t, y: term.vf(t, y, args)  # noqa: E731
    return initial_step_size(fun, 0.0, y0, 1.0, order, TOL["rtol"], TOL["atol"], fun(0.0, y0))


def loss_of(ys_z1, integrals):
    return jnp.sum(ys_z1**2) + sum(jnp.sum(v) for v in integrals.values())


@pytest.mark.parametrize(
    "name,solver", [("dopri5", dfx.Dopri5()), pytest.param("tsit5", dfx.Tsit5(), marks=pytest.mark.slow)]
)  # Tsit5 is slow (20 s of compilation): the suite's time budget
def test_integrals_gradient_and_nfe_match_solve(name, solver):
    params, z0, key = mlp_params(), z0_of(), jax.random.key(7)

    def by_solve(p):
        sol = tn.solve(mlp, z0, (0.0, 1.0), p, solver=name, regularizers=REGS, key=key, **TOL)
        return loss_of(sol.ys[-1], sol.integrals), (sol.integrals, sol.stats["nfe"])

    # ε drawn by the term from key (Dopri5), or given as solve draws it (Tsit5): the same ε
    noise = dict(key=key) if name == "dopri5" else dict(noise=hutchinson_noise(key, z0))
    term = tn.RegularizedTerm(mlp, REGS, batched=True, **noise)
    y0 = term.initial(z0)
    dt0 = hairer_dt0(term, y0, params, order=5)

    def by_term(p):
        sol = dfx.diffeqsolve(term, solver, 0.0, 1.0, dt0, y0, p, stepsize_controller=dfx.PIDController(**TOL))
        zs, integrals = term.split(sol.ys)
        return loss_of(zs[-1], integrals), (integrals, tn.count_nfe(sol, solver, dt0=dt0))

    (_, (want, want_nfe)), want_grad = jax.jit(jax.value_and_grad(by_solve, has_aux=True))(params)
    (_, (got, nfe)), grad = jax.jit(jax.value_and_grad(by_term, has_aux=True))(params)
    assert sorted(got) == sorted(want) == ["R2", "jacobian", "kinetic"]
    for n in want:
        assert got[n].shape == (2,)
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=1e-10)
    for k in params:
        np.testing.assert_allclose(grad[k], want_grad[k], rtol=1e-8, atol=1e-10)
    # solve picks dt0 by Hairer's rule itself: its 2 evaluations are on top of the solver's
    assert int(nfe) + 2 == int(want_nfe)


def test_state_error_control_matches_solve():
    params, z0 = mlp_params(), z0_of()
    sol = tn.solve(mlp, z0, (0.0, 1.0), params, solver="tsit5", regularizers="kinetic", error_control="state", **TOL)
    term = tn.RegularizedTerm(dfx.ODETerm(mlp), "kinetic", batched=True)
    y0 = term.initial(z0)
    dt0 = hairer_dt0(term, y0, params, order=5)
    got = dfx.diffeqsolve(
        term, dfx.Tsit5(), 0.0, 1.0, dt0, y0, params, stepsize_controller=dfx.PIDController(norm=term.state_norm, **TOL)
    )
    np.testing.assert_allclose(term.split(got.ys)[1]["kinetic"], sol.integrals["kinetic"], rtol=0, atol=1e-10)
    assert int(tn.count_nfe(got, dfx.Tsit5(), dt0=dt0)) + 2 == int(sol.stats["nfe"])


class Field(eqx.Module):
    """An equinox field whose weights live in the term (BacksolveAdjoint differentiates them)."""

    p: dict

    def __call__(self, t, z, args):
        return mlp(t, z, self.p)


def test_backsolve_gradient_matches_central_differences():
    z0 = z0_of(batch=1)[0]  # one example: batched=False

    def loss(field):
        term = tn.RegularizedTerm(field, ["r2", "kinetic"])
        sol = dfx.diffeqsolve(term, dfx.Dopri5(), 0.0, 1.0, 0.02, term.initial(z0), adjoint=dfx.BacksolveAdjoint(), max_steps=64)
        zs, integrals = term.split(sol.ys)
        assert integrals["R2"].shape == ()
        return loss_of(zs[-1], integrals)

    field = Field(mlp_params(seed=3))
    grad = eqx.filter_jit(eqx.filter_grad(loss))(field)
    direction = jax.tree_util.tree_map(lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape)), field)
    eps = 1e-5
    shifted = lambda s: jax.tree_util.tree_map(lambda x, v: x + s * v, field, direction)  # noqa: E731
    fd = (loss(shifted(eps)) - loss(shifted(-eps))) / (2 * eps)
    ad = sum(jnp.vdot(g, v) for g, v in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(direction)))
    assert abs(float(fd)) > 1e-2  # a derivative that could be wrong
    np.testing.assert_allclose(float(ad), float(fd), rtol=1e-6)


# ---- NFE against a counter inside f ---------------------------------------------------------


def counting_vdp():
    calls = [0]

    def bump():
        calls[0] += 1

    def f(t, z, args):
        jax.debug.callback(bump)
        return jnp.stack([z[1], (1 - z[0] ** 2) * z[1] - z[0]])

    return f, calls


ADAPTIVE = [dfx.Heun(), dfx.Midpoint(), dfx.Ralston(), dfx.Bosh3(), dfx.Tsit5(), dfx.Dopri5(), dfx.Dopri8()]
CASES = [(s, "fixed") for s in [dfx.Euler()] + ADAPTIVE] + [(s, c) for s in ADAPTIVE for c in ("dt0=None", "dt0=0.01")]
# dt0 given uses the fixed grid's formula: in the default run for two solvers (all with -m slow)
PARAMS = [
    pytest.param(
        s,
        c,
        id=f"{type(s).__name__}-{c}",
        marks=[pytest.mark.slow] * (c == "dt0=0.01" and type(s) not in (dfx.Bosh3, dfx.Dopri5)),
    )
    for s, c in CASES
]


@pytest.mark.parametrize("solver,case", PARAMS)
def test_count_nfe_matches_counter(solver, case):
    f, calls = counting_vdp()
    controller = dfx.ConstantStepSize() if case == "fixed" else dfx.PIDController(rtol=1e-6, atol=1e-6)
    dt0 = None if case == "dt0=None" else (0.25 if case == "fixed" else 0.01)
    sol = dfx.diffeqsolve(dfx.ODETerm(f), solver, 0.0, 3.0, dt0, jnp.array([2.0, 0.0]), stepsize_controller=controller)
    jax.block_until_ready(sol.ys)
    assert int(tn.count_nfe(sol, solver, dt0=dt0)) == calls[0]
    if case != "fixed":
        assert int(sol.stats["num_rejected_steps"]) > 0  # rejected steps are counted too
    stages, fsal = stages_fsal(solver)
    assert calls[0] == fsal + (stages - fsal) * int(sol.stats["num_steps"])


def test_a_rejected_first_step_of_an_fsal_solver_evaluates_f_again():
    # diffrax restores the solver state when it rejects a step, so an FSAL solver whose first
    # step is rejected evaluates f(t0, y0) once more; its stats do not record it (documented)
    f, calls = counting_vdp()
    sol = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Bosh3(), 0.0, 3.0, 0.05, jnp.array([2.0, 0.0]),
                          stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6), saveat=dfx.SaveAt(steps=True))  # fmt: skip
    jax.block_until_ready(sol.ys)
    assert float(sol.ts[0]) < 0.05  # the first step of 0.05 was rejected
    assert calls[0] == int(tn.count_nfe(sol, dfx.Bosh3(), dt0=0.05)) + 1


def test_each_rejection_of_the_first_step_evaluates_f_at_t0_once_more():
    # the retry keeps diffrax's restored solver state (first_step=True), so it evaluates the first
    # stage again; the Solution holds only the step totals, not how many rejections came first
    f, calls = counting_vdp()
    at_t0 = [0]

    def g(t, z, args):
        jax.debug.callback(lambda t: at_t0.__setitem__(0, at_t0[0] + int(t == 0.0)), t)
        return f(t, z, args)

    sol = dfx.diffeqsolve(dfx.ODETerm(g), dfx.Dopri5(), 0.0, 3.0, 2.0, jnp.array([2.0, 0.0]),
                          stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6))  # fmt: skip
    jax.block_until_ready(sol.ys)
    first_rejections = at_t0[0] - 1  # every evaluation at t0 after the first is a retry of step one
    assert first_rejections >= 2 and int(sol.stats["num_rejected_steps"]) > first_rejections
    assert calls[0] == int(tn.count_nfe(sol, dfx.Dopri5(), dt0=2.0)) + first_rejections


def test_count_first_stages_makes_count_nfe_exact_with_rejections_and_jumps():
    # CountFirstStages counts the attempts that evaluate an FSAL solver's first stage (the first
    # step, its retries, the steps after a jump); count_nfe reads it from the controller state
    f, calls = counting_vdp()
    controller = CountFirstStages(dfx.PIDController(rtol=1e-6, atol=1e-6, jump_ts=[0.7, 1.5, 2.2]))
    sol = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Dopri5(), 0.0, 3.0, 2.0, jnp.array([2.0, 0.0]),
                          stepsize_controller=controller, saveat=dfx.SaveAt(t1=True, controller_state=True))  # fmt: skip
    jax.block_until_ready(sol.ys)
    nfe = int(tn.count_nfe(sol, dfx.Dopri5(), dt0=2.0))
    assert nfe == calls[0] and int(sol.controller_state.count) >= 1 + 2 + 3  # type: ignore[union-attr]
    assert nfe > int(tn.count_nfe(eqx.tree_at(lambda s: s.controller_state, sol, None), dfx.Dopri5(), dt0=2.0))


def test_count_nfe_of_the_regularized_term_and_an_empty_interval():
    f, calls = counting_vdp()
    term = tn.RegularizedTerm(f, "kinetic")  # kinetic calls f once more per evaluation
    sol = dfx.diffeqsolve(term, dfx.Tsit5(), 0.0, 2.0, None, term.initial(jnp.array([2.0, 0.0])),
                          stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6))  # fmt: skip
    jax.block_until_ready(sol.ys)
    assert calls[0] == 2 * int(tn.count_nfe(sol, dfx.Tsit5()))
    calls[0] = 0
    empty = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Tsit5(), 1.0, 1.0, 0.1, jnp.array([2.0, 0.0]))
    jax.block_until_ready(empty.ys)
    assert int(tn.count_nfe(empty, dfx.Tsit5(), dt0=0.1)) == calls[0] == 0


def test_backward_nfe_counts_vector_jacobian_products():
    calls = [0]

    @jax.custom_vjp
    def field(z):
        return jnp.stack([z[1], (1 - z[0] ** 2) * z[1] - z[0]])

    def bwd(z, g):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return jax.vjp(field.__wrapped__, z)[1](g)

    field.defvjp(lambda z: (field(z), z), bwd)
    adjoint = dfx.RecursiveCheckpointAdjoint(checkpoints=4)  # recomputes forward, not backward

    def z1(y0):
        sol = dfx.diffeqsolve(dfx.ODETerm(lambda t, z, a: field(z)), dfx.Bosh3(), 0.0, 2.0, 0.01, y0,
                              stepsize_controller=dfx.PIDController(rtol=1e-5, atol=1e-5), adjoint=adjoint)  # fmt: skip
        return jnp.sum(sol.ys[-1]), sol

    (_, sol), g = jax.value_and_grad(z1, has_aux=True)(jnp.array([2.0, 0.0]))
    jax.block_until_ready(g)
    assert (
        calls[0] == int(count_nfe_backward(sol, dfx.Bosh3(), adjoint, dt0=0.01)) == int(tn.count_nfe(sol, dfx.Bosh3(), dt0=0.01))
    )


def test_vmap_gives_per_example_nfe_and_the_batched_integrals():
    params, z0 = mlp_params(), z0_of(batch=3)
    ctrl = dfx.PIDController(rtol=1e-7, atol=1e-7)

    @jax.jit
    def one(y0):
        term = tn.RegularizedTerm(mlp, "kinetic")
        sol = dfx.diffeqsolve(term, dfx.Tsit5(), 0.0, 1.0, None, term.initial(y0), params, stepsize_controller=ctrl)
        return term.split(sol.ys)[1], tn.count_nfe(sol, dfx.Tsit5())

    ints, nfe = jax.vmap(one)(z0)
    singles = [one(z) for z in z0]
    assert nfe.shape == (3,) and len(set(np.asarray(nfe).tolist())) > 1  # examples need different steps
    np.testing.assert_array_equal(nfe, [int(s[1]) for s in singles])
    np.testing.assert_allclose(ints["kinetic"], [s[0]["kinetic"] for s in singles], rtol=1e-12)
    # one example at a time (vmapped) and a batched state integrate the same integrands
    fixed = lambda term, y0: term.split(  # noqa: E731
        dfx.diffeqsolve(term, dfx.Tsit5(), 0.0, 1.0, 0.1, term.initial(y0), params).ys
    )[1]
    per_example = jax.vmap(lambda y0: fixed(tn.RegularizedTerm(mlp, ["r2", "kinetic"]), y0))(z0)
    batched = fixed(tn.RegularizedTerm(mlp, ["r2", "kinetic"], batched=True), z0)
    for n in ("R2", "kinetic"):
        np.testing.assert_allclose(per_example[n], batched[n], rtol=1e-12)


def test_saveat_ts_dense_and_backward_time():
    params, z0 = mlp_params(), z0_of(batch=1)[0]
    term = tn.RegularizedTerm(mlp, "kinetic")
    ts = jnp.linspace(0.0, 1.0, 5)
    sol = dfx.diffeqsolve(term, dfx.Dopri5(), 0.0, 1.0, 0.05, term.initial(z0), params, saveat=dfx.SaveAt(ts=ts, dense=True))
    zs, integrals = term.split(sol.ys)
    cumulative = sol.ys[1]["kinetic"]
    assert zs.shape == (5, 2) and cumulative[0] == 0 and bool(jnp.all(jnp.diff(cumulative) > 0))
    assert integrals["kinetic"] == cumulative[-1]
    np.testing.assert_allclose(sol.evaluate(1.0)[1]["kinetic"], cumulative[-1], rtol=1e-12)
    # backward in time: direction=-1 keeps ∫ r |dt| >= 0, equal to the forward integral's value
    z1 = zs[-1]
    back = tn.RegularizedTerm(mlp, "kinetic", direction=-1.0)
    rev = dfx.diffeqsolve(back, dfx.Dopri5(), 1.0, 0.0, -0.01, back.initial(z1), params)
    np.testing.assert_allclose(back.split(rev.ys)[1]["kinetic"], integrals["kinetic"], rtol=1e-8)


def test_sampled_estimator_matches_solve():
    params, z0, key = mlp_params(), z0_of(), jax.random.key(11)
    sol = tn.solve(mlp, z0, (0.0, 1.0), params, solver="dopri5", regularizers=REGS, key=key, quadrature="sampled",
                   samples=3, **TOL)  # fmt: skip
    term = tn.RegularizedTerm(mlp, REGS, key=key, batched=True)
    plain = dfx.ODETerm(mlp)
    fun = lambda t, y: (plain.vf(t, y[0], params), {})  # noqa: E731  (solve's state is (z, {}) when sampled)
    dt0 = initial_step_size(fun, 0.0, (z0, {}), 1.0, 5, TOL["rtol"], TOL["atol"], fun(0.0, (z0, {})))
    dense = dfx.diffeqsolve(plain, dfx.Dopri5(), 0.0, 1.0, dt0, z0, params, saveat=dfx.SaveAt(dense=True),
                            stepsize_controller=dfx.PIDController(**TOL))  # fmt: skip
    got = jax.jit(lambda s: term.sampled(s, params, samples=3))(dense)
    for n in sol.integrals:
        np.testing.assert_allclose(got[n], sol.integrals[n], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(sample_times(key, 0.0, 1.0, 4), tn.sample_times(key, 0.0, 1.0, 4))


def test_bad_inputs_get_clear_errors():
    f = lambda t, z, args: -z  # noqa: E731
    sol = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Euler(), 0.0, 1.0, 0.5, jnp.ones(2))
    for solver in (dfx.Kvaerno5(), dfx.ImplicitEuler()):
        with pytest.raises(ValueError, match="implicit"):
            tn.count_nfe(sol, solver)
    for solver in (dfx.ReversibleHeun(), dfx.HalfSolver(dfx.Tsit5())):
        with pytest.raises(ValueError, match="not an explicit Runge"):
            tn.count_nfe(sol, solver)
    with pytest.raises(TypeError, match="instance"):
        tn.count_nfe(sol, dfx.Tsit5)
    with pytest.raises(TypeError, match="diffrax.Solution"):
        tn.count_nfe({"nfe": 3}, dfx.Tsit5())
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        count_nfe_backward(sol, dfx.Euler(), dfx.BacksolveAdjoint())
    for step in ("ernode", "srnode"):
        with pytest.raises(ValueError, match="cannot compute"):
            tn.RegularizedTerm(f, ["r2", step])
    with pytest.raises(ValueError, match="unknown regularizer"):
        tn.RegularizedTerm(f, "r2x")
    with pytest.raises(ValueError, match="key="):
        tn.RegularizedTerm(f, "jacobian")
    with pytest.raises(TypeError, match="ODETerm"):
        tn.RegularizedTerm(dfx.MultiTerm(dfx.ODETerm(f), dfx.ODETerm(f)), "r2")
    term = tn.RegularizedTerm(f, "r2", batched=True)
    with pytest.raises(ValueError, match="batch of vectors"):
        term.initial(jnp.array(1.0))
    with pytest.raises(ValueError, match="batch of vectors"):
        term.initial((jnp.ones((2, 3)), jnp.ones((3, 3))))
    with pytest.raises(TypeError, match="floating"):
        term.initial(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="dense"):
        tn.RegularizedTerm(f, "r2", key=jax.random.key(0)).sampled(sol)
    with pytest.raises(ValueError, match="key="):
        tn.RegularizedTerm(f, "r2").sampled(sol)


@pytest.mark.slow  # ~30 s of compilation on 2 cores
def test_diffrax_user_example_runs_reduced():
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "diffrax_user.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["unregularized", "R2"]
    for line in lines:
        assert float(line.rsplit(" ", 1)[1]) >= 7  # Tsit5: 1 + 6 per attempted step, at least one step


def test_the_registry_stages_and_fsal_are_the_tableaux():
    # taynode.solve's registry and count_nfe read the same numbers (one NFE formula)
    for name, spec in (SOLVERS | STUDY_SOLVERS).items():
        assert (spec.stages, spec.fsal) == stages_fsal(spec.make()), name


def test_a_field_with_its_own_evaluate_method_is_called_as_a_plain_field():
    """Only a StageSharingField shares its stage's work; a user model's unrelated ``evaluate``
    method is never called (the solving layer's rule, one implementation for both)."""

    class Field(eqx.Module):
        def __call__(self, t, y, args):
            return -y

        def evaluate(self, *a):
            raise AssertionError("the user's evaluate method was called")

    term = tn.RegularizedTerm(Field(), "r2")
    sol = dfx.diffeqsolve(
        term,
        dfx.Tsit5(),
        0.0,
        1.0,
        0.05,
        term.initial(jnp.ones(3)),
        stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
    )
    _, integrals = term.split(sol.ys)
    # y = e^{-t}: y'' = e^{-t}, R2 = ∫ mean(y''²) dt = (1 - e^{-2}) / 2
    np.testing.assert_allclose(np.asarray(integrals["R2"]).reshape(-1)[-1], (1 - np.exp(-2.0)) / 2, rtol=1e-8)
