r"""The explicit Runge–Kutta entries' integrator: a validated :class:`~taynode.ode.problem.Problem`
through one ``diffrax.diffeqsolve``.

The augmented state is ``(z, {name: r})`` with :math:`\dot r = \text{integrand}(t, z)` per
example, and its field is :class:`~taynode.ode.term.RegularizedTerm`, the same term a user puts in
their own ``diffeqsolve``; so one solve returns the trajectory and every regularizer's integral
:math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|` (non-negative in either time direction). With
``quadrature="sampled"`` the integrands are evaluated after the solve at random times on its
dense output instead (:meth:`~taynode.ode.term.RegularizedTerm.estimate`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import diffrax as dfx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import optimistix as optx

from ..nfe import CountFirstStages, first_stages
from . import heuristics as _heuristics
from .failures import Failure
from .problem import Problem, Solution
from .registry import SolverSpec
from .steps import INITIAL_STEP_EVALS, initial_step_size
from .term import SAMPLE_STREAM, RegularizedTerm, sample_times

__all__ = ["ADJOINTS", "START_MESSAGES", "integrate_rk"]

# the adjoints (how a solve is differentiated); diffrax's for each is chosen by _adjoint
ADJOINTS = ("backprop", "adjoint")

_MAX_STEPS_MESSAGE = (
    "The maximum number of solver steps was reached before t1 (raise max_steps=): the step size "
    "collapsed. An explicit solver does this on a stiff problem (e.g. Van der Pol with large mu; "
    "use a looser rtol/atol or an implicit solver) and when the solution blows up or becomes NaN "
    "(check the dynamics, its parameters and the learning rate)."
)


# What f(t0, z0) can say before the first step: START_MESSAGES[code - 1], code 0 = fine. The
# integrator returns the code and taynode.solve raises (a ValueError for concrete inputs).
START_MESSAGES = (
    "f(t0, z0, args) contains NaN or inf although z0 and args are finite: check the arrays f "
    "closes over (e.g. the weights of a plain function) and what f computes at t0",
    "a regularizer's integrand is NaN or inf at (t0, z0) although f is finite there, so the "
    "solve could only fail (the step size would collapse: this is not stiffness): regularizers {names}",
)


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def _start_failure(f0, p: Problem) -> Failure:
    """Code 0 when f(t0, z0) and the integrands there are finite, else 1 + the index in START_MESSAGES."""
    dz, dr = f0
    code = jnp.where(_all_finite(dz), jnp.where(_all_finite(dr), 0, 2), 1).astype(jnp.int32)
    return Failure(code, tuple(m.format(names=[r.name for r in p.regs]) for m in START_MESSAGES))


def _result_failure(result, max_steps) -> Failure:
    """diffrax's failure codes with clear messages."""
    msgs = (
        _MAX_STEPS_MESSAGE.replace("max_steps=", f"max_steps={max_steps}"),
        "the solve failed: diffrax reported an error other than max_steps",
    )
    code = jnp.where(result == dfx.RESULTS.successful, 0, jnp.where(result == dfx.RESULTS.max_steps_reached, 1, 2))
    return Failure(code.astype(jnp.int32), msgs)


# diffeqsolve's checks of its inputs, by their messages: dt0 points from t0 to t1, saveat.ts is
# monotone and within [t0, t1]. Traced, they are equinox run-time errors, i.e. host callbacks, and
# JAX keeps no compiled program with one; taynode.ode.checks (ts) and _step_control (dt0) guarantee them.
_DIFFRAX_INPUT_CHECKS = (
    "Must have (t1 - t0) * dt0 >= 0",
    "saveat.ts must be increasing or decreasing",
    "saveat.ts must lie between",
)


_PATCHING = threading.RLock()  # another thread's diffeqsolve keeps its checks


@contextlib.contextmanager
def _without_diffrax_input_checks():
    """While tracing diffeqsolve: its input checks (above) skipped, every other check kept."""
    with _PATCHING:
        original = eqxi.error_if

        def error_if(x, pred, msg, **kw):
            return x if msg.startswith(_DIFFRAX_INPUT_CHECKS) else original(x, pred, msg, **kw)

        eqxi.error_if = error_if
        try:
            yield
        finally:
            eqxi.error_if = original


def _adjoint(name, checkpoints, adaptive, rtol, atol):
    if name == "backprop":
        # diffrax's default keeps O(sqrt(max_steps)) checkpoints (90 for 4096) and sorts and
        # copies that whole buffer in the backward pass, a fixed cost that dominates short
        # solves: 16 store every step of a typical neural-ODE solve and recompute each step at
        # most once up to 153 steps (benchmarks/training_cost.py measures the choice).
        return dfx.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    if name == "adjoint":
        if not adaptive:
            return dfx.BacksolveAdjoint()
        # Kidger, Chen & Lyons (2021): the parameter cotangents need no error control.
        return dfx.BacksolveAdjoint(stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol, norm=dfx.adjoint_rms_seminorm))
    raise AssertionError(name)  # taynode.ode.checks validated it


def _step_control(spec, p: Problem, fun, y0, t0, t1, direction):
    """``(dt0, controller, max_steps, start failure)``: Hairer's initial step and a PID controller
    (adaptive), or the fixed grid (no start check: the first step is the first evaluation)."""
    if not p.adaptive:
        return (t1 - t0) / p.steps, dfx.ConstantStepSize(), max(p.max_steps, p.steps), Failure(jnp.array(0, jnp.int32), ())
    f0 = fun(t0, y0)
    dt0 = initial_step_size(fun, t0, y0, direction, spec.order, p.rtol, p.atol, f0)
    norm = (lambda err: optx.rms_norm(err[0])) if p.error_control == "state" else optx.rms_norm
    controller = dfx.PIDController(rtol=p.rtol, atol=p.atol, norm=norm)
    # an FSAL solver evaluates its first stage again at each retry of the first step: counted
    return dt0, CountFirstStages(controller) if spec.fsal else controller, p.max_steps, _start_failure(f0, p)


def _saveat(p: Problem, save_ts, accumulate: bool, counted: bool):
    if p.save_steps:  # with adjoint="backprop" only (taynode.ode.checks)
        subs = [dfx.SubSaveAt(ts=save_ts), dfx.SubSaveAt(steps=True)]
        return dfx.SaveAt(subs=subs, solver_state=accumulate, controller_state=counted)
    return dfx.SaveAt(ts=save_ts, solver_state=accumulate, controller_state=counted)


def integrate_rk(spec: SolverSpec, p: Problem) -> tuple[Solution, Failure, Failure]:
    """Integrate ``p`` with the Runge–Kutta entry ``spec`` (its ``make()`` is a diffrax solver).

    Returns the solution, the start failure (``START_MESSAGES``: f or an integrand not finite at
    t0) and the solve's failure (diffrax's result), for :func:`taynode.solve` to raise on.
    """
    ts = p.ts
    t0, t1 = ts[0], ts[-1]
    direction = jnp.sign(t1 - t0) if p.direction is None else p.direction
    step_regs = list(p.step_regs)
    # the one augmented field (taynode.RegularizedTerm): f and the integrands of (z, {name: r})
    term = RegularizedTerm(p.f, () if p.sampled else p.regs, noise=p.noise, batched=True, direction=direction)
    y0 = term.initial(p.z0)
    fun = lambda t, y: term.vf(t, y, p.args)  # noqa: E731
    dt0, controller, max_steps, start = _step_control(spec, p, fun, y0, t0, t1, direction)

    save_ts, n_out = ts, ts.shape[0]
    if p.sampled:
        taus = sample_times(jax.random.fold_in(p.key, SAMPLE_STREAM), t0, t1, p.samples)
        every = jnp.concatenate([ts, taus])
        order = jnp.argsort(direction * every)
        save_ts, unsort = every[order], jnp.argsort(order)
    accumulate = bool(step_regs) and not p.sampled
    saveat = _saveat(p, save_ts, accumulate, isinstance(controller, CountFirstStages))
    inner = spec.make()
    with _without_diffrax_input_checks():
        sol = dfx.diffeqsolve(
            term,
            _heuristics.wrap(inner, step_regs, lambda y: y[0], p.rtol, p.atol) if accumulate else inner,
            t0,
            t1,
            dt0,
            y0,
            p.args,
            saveat=saveat,
            stepsize_controller=controller,
            adjoint=_adjoint(p.adjoint, min(p.checkpoints, max_steps), p.adaptive, p.rtol, p.atol),
            max_steps=max_steps,
            throw=False,
        )
    if p.save_steps:
        (zs, rs), (step_zs, _) = sol.ys  # type: ignore[misc]  # SaveAt(subs=...): two outputs
        step_ts = sol.ts[1]  # type: ignore[index]
    else:
        (zs, rs), step_zs, step_ts = sol.ys, None, None  # type: ignore[misc]
    failed = _result_failure(sol.result, max_steps)
    attempted = sol.stats["num_steps"]
    nfe = spec.nfe(attempted, p.adaptive, first_stages=first_stages(sol))
    if p.sampled:
        zs = jax.tree_util.tree_map(lambda y: y[unsort], zs)
        z_tau = jax.tree_util.tree_map(lambda y: y[n_out:], zs)
        zs = jax.tree_util.tree_map(lambda y: y[:n_out], zs)
        every_reg = RegularizedTerm(p.f, p.regs, noise=p.noise, batched=True)
        integrals = every_reg.estimate(taus, z_tau, p.args, t0, t1)
        if step_regs:
            integrals.update(
                _heuristics.local_values(
                    step_regs,
                    inner,
                    term,
                    p.args,
                    taus,
                    (z_tau, {}),
                    t1,
                    direction,
                    spec.order,
                    p.rtol,
                    p.atol,
                    lambda y: y[0],
                )
            )
        reg_evals = jnp.array(p.samples)
    else:
        integrals = {n: r[-1] for n, r in rs.items()}
        if accumulate:
            integrals.update(_heuristics.accumulated(sol.solver_state))
        reg_evals = nfe if p.regs else jnp.array(0)
    stats = dict(
        nfe=nfe,
        steps=sol.stats["num_accepted_steps"],
        rejected=sol.stats["num_rejected_steps"],
        attempted=attempted,
        regularizer_evals=reg_evals,
    )
    if p.adjoint == "backprop":
        stats["nfe_backward"] = nfe - (INITIAL_STEP_EVALS if p.adaptive else 0)
    sol = Solution(ts=ts, ys=zs, integrals=integrals, stats=stats, step_ts=step_ts, step_ys=step_zs, nfe_unit=spec.nfe_unit)
    return sol, start, failed
