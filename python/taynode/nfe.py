r"""Exact NFE of an explicit Runge–Kutta solve from its step counts, and of any diffrax solve.

The paper counts evaluations of f by the solver, rejected steps included. For an explicit
Runge–Kutta method of s stages:

.. math::  \text{NFE} = n_\text{init} + [\text{FSAL}]\, n_\text{first} + (s - [\text{FSAL}])\cdot n_\text{attempted}

Each attempted step, accepted or rejected, evaluates its stages but the first; a method without
FSAL evaluates the first too (counted in s), an FSAL method reuses the last stage of the step
before. It evaluates the first stage at ``n_first`` attempts: the first step, each retry of the
first step (diffrax restores the solver state of a rejected step, and the first step's says
"no last stage yet": ``first_step`` in ``diffrax/_solver/runge_kutta.py``), and the steps after a
jump of ``ClipStepSizeController(jump_ts=...)`` (``made_jump``). diffrax's statistics hold the
step totals only, so ``n_first`` = 1 unless the solve's controller counted it:
:class:`CountFirstStages`, whose state ``SaveAt(controller_state=True)`` returns and
:func:`count_nfe` reads (``taynode.solve`` always uses it). ``n_init`` counts the evaluations
spent choosing the initial step (2 for Hairer's rule, which ``taynode.solve`` runs itself).
diffrax 0.7's own selection (``dt0=None``) evaluates nothing: it returns 0.01 for the wrapped
terms ``diffeqsolve`` builds (checked against a counter in ``tests/test_diffrax_term.py``).

:func:`rk_nfe` is the formula, :func:`stages_fsal` reads (s, FSAL) off a diffrax solver's
tableau, and :func:`count_nfe` / :func:`count_nfe_backward` apply them to a diffrax ``Solution``.
"""

from __future__ import annotations

from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "DIFFRAX_INITIAL_STEP_EVALS",
    "CountFirstStages",
    "FirstStages",
    "count_nfe",
    "count_nfe_backward",
    "first_stages",
    "rk_nfe",
    "stages_fsal",
]

DIFFRAX_INITIAL_STEP_EVALS = 0  # diffrax 0.7 with dt0=None: dt0 = 0.01, no evaluation of f


def rk_nfe(
    attempted: ArrayLike, *, stages: int, fsal: bool, initial_step_evals: int = 0, first_stages: ArrayLike = 1
) -> ArrayLike:
    """Evaluations of f by an explicit Runge–Kutta solve of ``attempted`` (= accepted + rejected)
    steps, ``first_stages`` of which evaluated an FSAL method's first stage (module docstring);
    0 for a solve that took no step (t1 = t0). Elementwise: per example under vmap."""
    per_step = stages - int(fsal)
    nfe = initial_step_evals + int(fsal) * jnp.asarray(first_stages) + per_step * jnp.asarray(attempted)
    return jnp.where(jnp.asarray(attempted) == 0, 0, nfe)


class FirstStages(eqx.Module):
    """:class:`CountFirstStages`' state: the wrapped controller's, and the count."""

    inner: Any
    pending: jax.Array  # the next attempt evaluates the first stage (no reusable last stage)
    count: jax.Array  # attempts so far that evaluated it


class CountFirstStages(dfx.AbstractAdaptiveStepSizeController):
    """An adaptive controller (e.g. ``diffrax.PIDController``) that also counts the attempted
    steps at which an FSAL solver evaluates its first stage: the first step, its retries, and the
    steps after a jump. diffrax keeps a controller's state as the controller returns it, rejected
    steps included, so with ``SaveAt(controller_state=True)`` :func:`count_nfe` is exact. The
    steps it chooses are the wrapped controller's."""

    controller: dfx.AbstractAdaptiveStepSizeController

    def __init__(self, controller: dfx.AbstractAdaptiveStepSizeController):
        self.controller = controller

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.controller.norm

    def wrap(self, direction):
        return CountFirstStages(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return t1, FirstStages(inner, jnp.array(True), jnp.array(0))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        state: FirstStages = controller_state
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state.inner
        )
        count = state.count + jnp.where(state.pending, 1, 0)
        # accepted: the next step reuses this one's last stage unless it jumped; rejected: the
        # retry starts from the restored solver state, which still has no last stage if pending
        pending = jnp.where(keep, jnp.asarray(jump), state.pending)
        return keep, next_t0, next_t1, jump, FirstStages(inner, pending, count), result


def _known_solvers() -> str:
    return "Euler, Heun, Midpoint, Ralston, Bosh3, Tsit5, Dopri5, Dopri8, or an AbstractERK with a ButcherTableau"


def stages_fsal(solver: dfx.AbstractSolver) -> tuple[int, bool]:
    """``(stages, fsal)`` of a diffrax explicit Runge–Kutta solver instance, from its tableau.

    Raises ``ValueError`` for any other solver (implicit, IMEX, SDE, reversible, wrapped): its
    count of evaluations is not a function of the step counts this module knows.
    """
    if isinstance(solver, type):
        raise TypeError(f"pass a solver instance (e.g. diffrax.{solver.__name__}()), not the class")
    if type(solver) is dfx.Euler:
        return 1, False
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, dfx.AbstractERK) and isinstance(tableau, dfx.ButcherTableau):
        return len(tableau.c) + 1, bool(tableau.fsal)
    kind = "implicit" if isinstance(solver, dfx.AbstractImplicitSolver) else "not an explicit Runge–Kutta method"
    raise ValueError(
        f"the NFE of diffrax.{type(solver).__name__} is not known ({kind}): count_nfe knows the explicit "
        f"Runge–Kutta solvers ({_known_solvers()}); count evaluations with a counter inside f instead"
    )


def _attempted(solution) -> ArrayLike:
    stats = getattr(solution, "stats", None)
    if not isinstance(stats, dict) or "num_steps" not in stats:
        raise TypeError(f"count_nfe takes the diffrax.Solution of a diffeqsolve, got {type(solution).__name__}")
    return stats["num_steps"]


def first_stages(solution: Any) -> ArrayLike:
    """Attempts that evaluated an FSAL solver's first stage: counted by :class:`CountFirstStages`
    when its state was saved (``SaveAt(controller_state=True)``), else 1 (the first step)."""
    state = getattr(solution, "controller_state", None)
    return state.count if isinstance(state, FirstStages) else 1


def count_nfe(solution: dfx.Solution, solver: dfx.AbstractSolver, *, dt0: ArrayLike | None = None) -> ArrayLike:
    """The exact forward NFE of a ``diffrax.diffeqsolve`` that returned ``solution`` with ``solver``.

    ``dt0`` is the ``dt0`` passed to ``diffeqsolve`` (``None``: diffrax chose it, which costs
    :data:`DIFFRAX_INITIAL_STEP_EVALS` evaluations). Per example when the solve was vmapped
    (diffrax's step counts are then per example; vmap itself evaluates every batch member at
    every iteration of the longest, which this does not count). An FSAL solver (Bosh3, Tsit5,
    Dopri5, Dopri8) evaluates its first stage again at each rejection of its first step and after
    a jump: exact with ``stepsize_controller=CountFirstStages(...)`` and
    ``SaveAt(controller_state=True)``; otherwise that many evaluations are missing (diffrax's
    statistics do not say how many of the rejections were of the first step).
    """
    stages, fsal = stages_fsal(solver)
    init = 0 if dt0 is not None else DIFFRAX_INITIAL_STEP_EVALS
    return rk_nfe(_attempted(solution), stages=stages, fsal=fsal, initial_step_evals=init, first_stages=first_stages(solution))


def count_nfe_backward(
    solution: dfx.Solution, solver: dfx.AbstractSolver, adjoint: dfx.AbstractAdjoint, *, dt0: ArrayLike | None = None
) -> ArrayLike:
    """Vector–Jacobian products of f in the backward pass of ``jax.grad`` through the solve.

    Through the solver (``RecursiveCheckpointAdjoint``, ``DirectAdjoint``): one per forward
    evaluation whose result is differentiated (all but the initial-step selection's), whatever
    the checkpoints recompute forward. ``BacksolveAdjoint`` solves its own adaptive backward ODE,
    whose step count diffrax does not return: a ``ValueError`` says so.
    """
    if isinstance(adjoint, (dfx.RecursiveCheckpointAdjoint, dfx.DirectAdjoint)):
        stages, fsal = stages_fsal(solver)
        return rk_nfe(_attempted(solution), stages=stages, fsal=fsal, first_stages=first_stages(solution))
    raise ValueError(
        f"the backward NFE of {type(adjoint).__name__} is not known from the forward solve (the continuous "
        "adjoint's backward solve chooses its own steps and diffrax does not return their count); use "
        "RecursiveCheckpointAdjoint, or count vector–Jacobian products with a counter inside f"
    )
