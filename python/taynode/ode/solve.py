r"""The top of the solving layer: :func:`solve` integrates dz/dt = f(t, z, args) and any
regularizers together.

:func:`solve` validates every input first (:func:`taynode.ode.checks.validate`) into a
:class:`~taynode.ode.problem.Problem`, then runs the integrator of its registry entry's kind
(:mod:`taynode.ode.registry`): the Runge–Kutta entries integrate the augmented state
``(z, {name: r})`` with :math:`\dot r = \text{integrand}(t, z)` per example
(:mod:`taynode.ode.rk`), so one solve returns the trajectory and every regularizer's integral
:math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|`; the Taylor method integrates z alone
(:mod:`taynode.ode.taylor_method`).

The integrators run jitted, and the compiled program is kept: a second solve of the same
dynamics, options and shapes reuses it (:func:`_cacheable` says when the dynamics allow it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._jax import is_tracer
from . import failures
from .checks import validate
from .failures import Failure
from .problem import Problem, Solution
from .registry import RUNGE_KUTTA, Entry
from .rk import integrate_rk
from .taylor_method import integrate_taylor

__all__ = ["DEFAULT_CHECKPOINTS", "solve"]

DEFAULT_CHECKPOINTS = 16  # see taynode.ode.rk._adjoint and benchmarks/training_cost.py


def _run(spec: Entry, problem: Problem) -> tuple[Solution, Failure, Failure]:
    """The integrator of ``spec``'s kind: ``(solution, start failure, solve failure)``, returned
    rather than raised inside the program (see :mod:`taynode.ode.failures`)."""
    if spec.kind == RUNGE_KUTTA:
        return integrate_rk(spec, problem)  # type: ignore[arg-type]
    sol, failure = integrate_taylor(spec, problem)  # type: ignore[arg-type]
    return sol, Failure(jnp.array(0, jnp.int32), ()), failure


# One jitted program per (entry, dynamics, static options, shapes and dtypes): equinox's cache.
_run_cached = eqx.filter_jit(_run)


def _cacheable(f: Any) -> bool:
    """Whether a compiled solve may be reused for ``f``: its arrays are traced inputs (an equinox
    module), or it is a plain function that reads no array from its closure, defaults, bound
    object or the globals it names (a reused program would have them as constants, so a changed
    array would silently be ignored)."""
    if isinstance(f, eqx.Module):
        return True
    fn = getattr(f, "__func__", f)
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    seen = [c.cell_contents for c in (fn.__closure__ or ()) if c.cell_contents is not None]
    seen += list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    seen += [fn.__globals__[n] for n in code.co_names if n in fn.__globals__]
    if hasattr(f, "__self__"):
        seen.append(f.__self__)
    leaves = jax.tree_util.tree_leaves(seen, is_leaf=lambda x: isinstance(x, (jax.Array, eqx.Module)))
    return not any(eqx.is_array(x) or isinstance(x, eqx.Module) for x in leaves)


def solve(
    f: Callable,
    z0: Any,
    ts: Sequence[float] | jax.Array = (0.0, 1.0),
    args: Any = None,
    *,
    solver: str = "dopri5",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    regularizers: Any = (),
    key: jax.Array | None = None,
    quadrature: str = "integrated",
    samples: int = 1,
    error_control: str = "all",
    adjoint: str = "backprop",
    checkpoints: int = DEFAULT_CHECKPOINTS,
    max_steps: int = 4096,
    save_steps: bool = False,
) -> Solution:
    r"""Solve dz/dt = f(t, z, args) from ``z0`` at ``ts[0]`` and return the state at every ``ts``.

    Args:
        f: dynamics ``f(t, z, args)``, returning the structure and shapes of ``z``.
        z0: initial state: an array whose leading axis is the batch, or a pytree of them
            (a nested list of numbers is read as one array).
        ts: output times, strictly monotone; ``ts[0]`` is t0 and ``ts[-1]`` is t1. ``t1 < t0``
            integrates backwards. ``ts = (t0, t0)`` returns ``z0`` with zero integrals and NFE 0.
        args: passed to ``f``; differentiable.
        solver: a name in :data:`taynode.ode.registry.SOLVERS`, or a
            :class:`~taynode.ode.registry.SolverSpec` (e.g. a study's own tableau), or the Taylor-series
            integrator (:mod:`taynode.ode.taylor_method`): ``"taylor"`` (Jorba & Zou's order for the
            tolerance), ``"taylor<p>"`` (order p, e.g. ``"taylor12"``), ``"taylor-adaptive"``
            (order chosen per step). Its ``stats["nfe"]`` counts Taylor coefficient orders.
        steps: ``None`` for an adaptive solve; an integer for a fixed grid of that many steps.
        rtol, atol: tolerances of the adaptive solve (default :data:`taynode.ode.checks.DEFAULT_TOL` by dtype).
        regularizers: :class:`~taynode.regularizers.Regularizer` instances or names
            (``"r3"``, ``"kinetic"``, ``"jacobian"``), and the solver-heuristic ones
            (:mod:`taynode.regularizers.heuristics`: ``"ernode"``, ``"srnode"``), which sum the error or
            stiffness estimate times |h| over the accepted steps (with ``quadrature="sampled"``:
            their local variant, one fresh step at each sample time).
        key: PRNG key for regularizers that need noise (``"jacobian"``) and for the sample
            times of ``quadrature="sampled"``.
        quadrature: how each regularizer's :math:`\int r(t, z(t))\,|dt|` is computed.
            ``"integrated"`` (the paper's): r is appended to the ODE state and integrated by the
            solver, so it is evaluated at every stage of every step. ``"sampled"``: the unbiased
            estimate :math:`|t_1 - t_0|\frac1M\sum_m r(\tau_m, z(\tau_m))` at ``samples`` = M
            stratified uniform times (:func:`taynode.ode.term.sample_times`, drawn from ``key`` per solve), with
            :math:`z(\tau_m)` from the solve's own dense output (differentiable): M evaluations
            of r per solve instead of one per stage, and r stays out of the step-size control.
        samples: M, the number of sample times of ``quadrature="sampled"``.
        error_control: with ``quadrature="integrated"``, which states the step-size controller
            looks at: ``"all"`` (the state and the regularizers' integrals, as the paper's code)
            or ``"state"`` (the state only, so a regularizer cannot add steps; its integral is
            then as accurate as the steps the state needs make it).
        adjoint: ``"backprop"`` (differentiate through the solver; diffrax's
            ``RecursiveCheckpointAdjoint`` with ``checkpoints``) or ``"adjoint"`` (continuous
            adjoint, diffrax's ``BacksolveAdjoint``; adaptive solves use the adjoint seminorm of
            Kidger, Chen & Lyons 2021 for the backward solve). The adjoint differentiates
            parameters held in ``args`` or in an equinox module ``f``, not ones a plain
            function closes over.
        checkpoints: with ``adjoint="backprop"``, how many steps the forward pass stores for the
            backward pass. A solve of at most this many steps is never recomputed beyond its
            own step; up to (c+1)(c+2)/2 steps, each step at most once more (Stumm & Walther).
            Memory: about ``checkpoints`` copies of the solver's state.
        max_steps: an error is raised if the solve needs more steps.
        save_steps: also return the accepted steps' times and states (for plots and studies).

    ``stats`` holds ``nfe`` (evaluations of the vector field by the solver), ``steps``
    (accepted), ``rejected``, ``attempted``, ``regularizer_evals`` (evaluations of each
    regularizer's integrand: ``nfe`` when integrated, M when sampled), and with
    ``adjoint="backprop"`` ``nfe_backward``: the vector field's vector–Jacobian products in
    the backward pass (one per forward evaluation after the initial-step selection, whose step
    size is not differentiated); the continuous adjoint's backward solve is adaptive and its
    count is not known to the forward pass.
    """
    spec, rset, problem = validate(f, z0, ts, args, solver=solver, steps=steps, rtol=rtol, atol=atol,
                                   regularizers=regularizers, key=key, quadrature=quadrature, samples=samples,
                                   error_control=error_control, adjoint=adjoint, checkpoints=checkpoints,
                                   max_steps=max_steps, save_steps=save_steps)  # fmt: skip
    if problem.direction == 0.0:  # ts = (t0, t0), known now
        return _empty_interval(problem, rset.names, spec.nfe_unit)
    if _cacheable(problem.f):
        run = _run_cached
    else:  # new functions each time, so that no compiled program keyed on them is reused (diffrax's neither)
        f = problem.f
        problem = dataclasses.replace(problem, f=lambda t, z, args: f(t, z, args))
        run = eqx.filter_jit(lambda spec, p: _run(spec, p))
    sol, start, failed = run(spec, problem)
    if any(is_tracer(x) for x in jax.tree_util.tree_leaves(problem)):  # raised when this runs, or by the caller
        return failures.check(sol, failures.first([start, failed]))
    start.raise_if_failed(ValueError)  # what f(t0, z0) said is about the inputs
    failed.raise_if_failed()
    return sol


def _empty_interval(p: Problem, names: Sequence[str], nfe_unit: str) -> Solution:
    """``ts = (t0, t0)``: z0 twice, zero integrals, no evaluations."""
    zeros = {n: jnp.zeros((p.batch,), p.dtype) for n in names}
    ys = jax.tree_util.tree_map(lambda z: jnp.stack([z, z]), p.z0)
    stats = dict(
        nfe=jnp.array(0), steps=jnp.array(0), rejected=jnp.array(0), attempted=jnp.array(0), regularizer_evals=jnp.array(0)
    )
    return Solution(ts=p.ts, ys=ys, integrals=zeros, stats=stats, nfe_unit=nfe_unit)
