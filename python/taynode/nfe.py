r"""Exact NFE of an explicit Runge–Kutta solve from its step counts, and of any diffrax solve.

The paper counts evaluations of f by the solver, rejected steps included. For an explicit
Runge–Kutta method of s stages:

.. math::  \text{NFE} = n_\text{init} + [\text{FSAL}] + (s - [\text{FSAL}])\cdot n_\text{attempted}

Each attempted step, accepted or rejected, evaluates its stages; an FSAL method reuses its last
stage as the next step's first, which it evaluates once, at the first step; ``n_init`` counts
the evaluations spent choosing the initial step (2 for Hairer's rule, which ``taynode.solve``
runs itself). diffrax 0.7's own selection (``dt0=None``) evaluates nothing: it returns 0.01 for
the wrapped terms ``diffeqsolve`` builds (checked against a counter in
``tests/test_diffrax_term.py``).

:func:`rk_nfe` is the formula, :func:`stages_fsal` reads (s, FSAL) off a diffrax solver's
tableau, and :func:`count_nfe` / :func:`count_nfe_backward` apply them to a diffrax ``Solution``.
"""

from __future__ import annotations

import diffrax as dfx
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["DIFFRAX_INITIAL_STEP_EVALS", "count_nfe", "count_nfe_backward", "rk_nfe", "stages_fsal"]

DIFFRAX_INITIAL_STEP_EVALS = 0  # diffrax 0.7 with dt0=None: dt0 = 0.01, no evaluation of f


def rk_nfe(attempted: ArrayLike, *, stages: int, fsal: bool, initial_step_evals: int = 0) -> ArrayLike:
    """Evaluations of f by an explicit Runge–Kutta solve of ``attempted`` (= accepted + rejected)
    steps; 0 for a solve that took no step (t1 = t0). Elementwise: per example under vmap."""
    per_step = stages - int(fsal)
    nfe = initial_step_evals + int(fsal) + per_step * jnp.asarray(attempted)
    return jnp.where(jnp.asarray(attempted) == 0, 0, nfe)


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


def count_nfe(solution: dfx.Solution, solver: dfx.AbstractSolver, *, dt0: ArrayLike | None = None) -> ArrayLike:
    """The exact forward NFE of a ``diffrax.diffeqsolve`` that returned ``solution`` with ``solver``.

    ``dt0`` is the ``dt0`` passed to ``diffeqsolve`` (``None``: diffrax chose it, which costs
    :data:`DIFFRAX_INITIAL_STEP_EVALS` evaluations). Per example when the solve was vmapped
    (diffrax's step counts are then per example; vmap itself evaluates every batch member at
    every iteration of the longest, which this does not count).
    """
    stages, fsal = stages_fsal(solver)
    init = 0 if dt0 is not None else DIFFRAX_INITIAL_STEP_EVALS
    return rk_nfe(_attempted(solution), stages=stages, fsal=fsal, initial_step_evals=init)


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
        return rk_nfe(_attempted(solution), stages=stages, fsal=fsal)
    raise ValueError(
        f"the backward NFE of {type(adjoint).__name__} is not known from the forward solve (the continuous "
        "adjoint's backward solve chooses its own steps and diffrax does not return their count); use "
        "RecursiveCheckpointAdjoint, or count vector–Jacobian products with a counter inside f"
    )
