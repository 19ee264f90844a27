r"""Solvers as data: name → diffrax solver, order, evaluations per step, FSAL, error estimate.

NFE, the paper's way (evaluations of f by the solver, rejected steps and initial-step selection
included), follows from diffrax's step counts:

.. math::  \text{NFE} = \underbrace{2\,[\text{adaptive}]}_{\text{initial step}}
           + \underbrace{[\text{FSAL}]}_{f(t_0, z_0)} + (s - [\text{FSAL}])\cdot n_\text{attempted}

with s stages. Each attempted step, accepted or rejected, evaluates its stages; an FSAL solver
reuses its last stage as the next step's first, which it evaluates once at the start. The
initial step size is chosen by :func:`initial_step_size` (two evaluations of f), because
diffrax 0.7 skips its own selection for the wrapped terms ``diffeqsolve`` builds and starts every
solve at dt = 0.01. ``tests/test_nfe.py`` checks the formula against a counter inside f.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SOLVERS", "RK4", "SolverSpec", "get", "initial_step_size"]

INITIAL_STEP_EVALS = 2

_rk4_tableau = dfx.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),  # no embedded method: fixed-grid only
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(dfx.AbstractERK):
    """The classical 4th-order Runge–Kutta method (fixed grid; no error estimate)."""

    tableau: ClassVar[dfx.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


@dataclass(frozen=True)
class SolverSpec:
    name: str
    make: Callable[[], dfx.AbstractSolver]
    order: int
    stages: int
    fsal: bool
    embedded: bool  # has an error estimate, so it can run adaptively

    @property
    def evals_per_step(self) -> int:
        return self.stages - 1 if self.fsal else self.stages

    def nfe(self, attempted_steps, adaptive: bool):
        init = int(self.fsal) + (INITIAL_STEP_EVALS if adaptive else 0)
        return init + self.evals_per_step * attempted_steps


SOLVERS: dict[str, SolverSpec] = {
    s.name: s
    for s in [
        SolverSpec("euler", dfx.Euler, order=1, stages=1, fsal=False, embedded=False),
        SolverSpec("midpoint", dfx.Midpoint, order=2, stages=2, fsal=False, embedded=True),
        SolverSpec("heun", dfx.Heun, order=2, stages=2, fsal=False, embedded=True),
        SolverSpec("bosh3", dfx.Bosh3, order=3, stages=4, fsal=True, embedded=True),
        SolverSpec("rk4", RK4, order=4, stages=4, fsal=False, embedded=False),
        SolverSpec("dopri5", dfx.Dopri5, order=5, stages=7, fsal=True, embedded=True),
        SolverSpec("tsit5", dfx.Tsit5, order=5, stages=7, fsal=True, embedded=True),
        SolverSpec("dopri8", dfx.Dopri8, order=8, stages=14, fsal=True, embedded=True),
    ]
}


def get(name: str) -> SolverSpec:
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; valid solvers: {', '.join(SOLVERS)}") from None


def _rms(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    total = sum(jnp.sum(jnp.square(x)) for x in leaves)
    return jnp.sqrt(total / sum(x.size for x in leaves))


def initial_step_size(fun, t0, y0, direction, order, rtol, atol, f0):
    """Hairer, Nørsett & Wanner (1993), II.4: the starting step of an adaptive solve.

    Uses f0 = fun(t0, y0) and one more evaluation of ``fun``; the same rule as
    ``jax.experimental.ode`` and diffrax's (bypassed) selection. Returns a signed step.
    """
    scale = jax.tree_util.tree_map(lambda y: atol + jnp.abs(y) * rtol, y0)
    scaled = lambda a: jax.tree_util.tree_map(lambda x, s: x / s, a, scale)  # noqa: E731
    d0, d1 = _rms(scaled(y0)), _rms(scaled(f0))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    y1 = jax.tree_util.tree_map(lambda y, f: y + direction * h0 * f, y0, f0)
    f1 = fun(t0 + direction * h0, y1)
    d2 = _rms(scaled(jax.tree_util.tree_map(lambda a, b: a - b, f1, f0))) / h0
    h1 = jnp.where(
        jnp.maximum(d1, d2) <= 1e-15,
        jnp.maximum(1e-6, h0 * 1e-3),
        (0.01 / jnp.maximum(d1, d2)) ** (1.0 / (order + 1.0)),
    )
    return direction * jax.lax.stop_gradient(jnp.minimum(100 * h0, h1))
