r"""The step heuristics' wrapper around an explicit Runge–Kutta solver (ERNODE, SRNODE; the
regularizers themselves are :mod:`taynode.regularizers.heuristics`): the global variant sums
each accepted step's value in the solver state (:class:`Accumulate`), the local one takes one
fresh step at each sample time (:func:`local_values`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from ..regularizers.heuristics import StepInfo
from .steps import initial_step_size

__all__ = ["Accumulate", "accumulated", "local_values", "step_info", "wrap"]


class Accumulate(dfx.AbstractAdaptiveSolver):
    """Wraps an explicit RK solver: its solver state also carries each step regularizer's running sum.

    diffrax keeps a step's new solver state only if the controller accepts the step, so rejected
    steps do not count (the pattern of diffrax issue #196). Read the sums with
    ``SaveAt(solver_state=True)`` and :func:`accumulated`.
    """

    solver: dfx.AbstractSolver
    regs: tuple = eqx.field(static=True)
    select: Callable = eqx.field(static=True)  # the ODE state z out of diffrax's (possibly augmented) y
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        z0 = self.select(y0)
        leaf = jax.tree_util.tree_leaves(z0)[0]
        sums = {r.name: jnp.zeros(leaf.shape[:1], leaf.dtype) for r in self.regs}
        return self.solver.init(terms, t0, t1, y0, args), sums

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, sums = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(terms, t0, t1, y0, args, inner, made_jump)
        info = step_info(
            self.solver.tableau,  # type: ignore[attr-defined]  # an explicit RK solver
            t0,
            t1,
            self.select(y0),
            self.select(y1),
            self.select(y_error),
            self.select(dense_info["k"]),
            self.rtol,
            self.atol,
        )
        sums = {r.name: sums[r.name] + r.step_value(info) for r in self.regs}
        return y1, y_error, dense_info, (inner, sums), result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def step_info(
    tableau: dfx.ButcherTableau, t0: Any, t1: Any, z0: Any, z1: Any, z_error: Any, ks: Any, rtol: float, atol: float
) -> StepInfo:
    """The :class:`~taynode.regularizers.StepInfo` of one step."""
    return StepInfo(t0=t0, t1=t1, z0=z0, z1=z1, z_error=z_error, ks=ks, tableau=tableau, rtol=rtol, atol=atol)


def _bounded(solver):
    """The stage loop set to "bounded", as diffrax's RecursiveCheckpointAdjoint does for a bare RK
    solver (it cannot see through the wrapper, and a lone step is outside diffeqsolve)."""
    if getattr(solver, "scan_kind", "bounded") is None:
        solver = eqx.tree_at(lambda s: s.scan_kind, solver, "bounded", is_leaf=lambda x: x is None)
    return solver


def wrap(solver: dfx.AbstractSolver, step_regs: Any, select: Callable, rtol: float, atol: float) -> Accumulate:
    """``solver`` with the step regularizers' accumulator."""
    solver = _bounded(solver)
    return Accumulate(solver=solver, regs=tuple(step_regs), select=select, rtol=float(rtol), atol=float(atol))


def accumulated(final_solver_state: Any) -> dict:
    """``{name: per-example sum}`` from a solve's final solver state (``SaveAt(solver_state=True)``)."""
    _, sums = final_solver_state
    return sums


def local_values(
    step_regs: Any, solver: Any, term: Any, args: Any, taus: Any, y_taus: Any, t1: Any, direction: Any, order: int,
    rtol: float, atol: float, select: Callable,
) -> dict:  # fmt: skip
    r"""The local variants: :math:`\frac1M\sum_m` (heuristic of one fresh step from τ_m) per example.

    ``y_taus`` has a leading sample axis (M) on each leaf; each step's size is the initial-step
    rule at (τ_m, y(τ_m)), clipped so the step ends at or before t1.
    """
    tableau, solver = solver.tableau, _bounded(solver)  # type: ignore[attr-defined]  # an explicit RK

    def one(tau, y):
        fun = lambda t, y_: term.vf(t, y_, args)  # noqa: E731
        h = initial_step_size(fun, tau, y, direction, order, rtol, atol, fun(tau, y))
        h = direction * jnp.minimum(jnp.abs(h), jnp.abs(t1 - tau))
        t_end = tau + h
        state = solver.init(term, tau, t_end, y, args)
        y1, y_error, dense_info, _, _ = solver.step(term, tau, t_end, y, args, state, False)
        info = step_info(tableau, tau, t_end, select(y), select(y1), select(y_error), select(dense_info["k"]), rtol, atol)
        return {r.name: r.step_value(info) for r in step_regs}

    values = jax.vmap(one)(taus, y_taus)
    return {n: jnp.mean(v, axis=0) for n, v in values.items()}
