r"""Solvers as data: one registry (:data:`REGISTRY`) of every integrator :func:`taynode.solve` runs.

Each entry is a :class:`SolverSpec`: order m, order m̂ of the error estimate, stages, FSAL, the
unit its ``stats["nfe"]`` counts, and ``integrate(problem)``, which runs it on a validated
problem. The explicit Runge–Kutta entries (:data:`SOLVERS`, diffrax's; :data:`STUDY_SOLVERS`, the
order study's tableaux) integrate through diffrax (:mod:`taynode.rk_integrator`); the Taylor-series method
(:class:`TaylorSpec`: ``"taylor"``, ``"taylor<p>"``, ``"taylor-adaptive"``) through
:mod:`taynode.taylor_solver`, and counts Taylor coefficient orders instead of f evaluations.

NFE, the paper's way (evaluations of f by the solver, rejected steps and initial-step selection
included), follows from diffrax's step counts:

.. math::  \text{NFE} = \underbrace{2\,[\text{adaptive}]}_{\text{initial step}}
           + \underbrace{[\text{FSAL}]}_{f(t_0, z_0)} + (s - [\text{FSAL}])\cdot n_\text{attempted}

with s stages. Each attempted step, accepted or rejected, evaluates its stages; an FSAL solver
reuses its last stage as the next step's first, which it evaluates once at the start. The
initial step size is chosen by :func:`initial_step_size` (two evaluations of f), because
diffrax 0.7 skips its own selection for the wrapped terms ``diffeqsolve`` builds and starts every
solve at dt = 0.01. ``tests/test_nfe.py`` checks the formula against a counter inside f.

A new solver is one more entry: a diffrax solver (or :class:`diffrax.AbstractERK` with its
tableau) in a :class:`SolverSpec`, or a subclass with its own ``check`` and ``integrate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "F_EVALS",
    "REGISTRY",
    "SOLVERS",
    "STUDY_SOLVERS",
    "TAYLOR",
    "TAYLOR_ORDERS",
    "EulerHeun",
    "Fehlberg45",
    "RK4",
    "SolverSpec",
    "TaylorSpec",
    "get",
    "initial_step_size",
]

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


# the two units of stats["nfe"] (Solution.nfe_unit says which one a solve reports)
F_EVALS = "f evaluations"
TAYLOR_ORDERS = "Taylor coefficient orders"


@dataclass(frozen=True)
class SolverSpec:
    """An explicit Runge–Kutta solver as data; :meth:`integrate` runs it (diffrax).

    ``order`` m is the order of the stepped formula, ``error_order`` m̂ the order of the embedded
    formula its error estimate compares against (``None`` without one); ``embedded`` says whether
    there is an error estimate, so the solver can run adaptively. ``stats["nfe"]`` counts
    ``nfe_unit``: evaluations of f, by :meth:`nfe` (module docstring).
    """

    name: str
    make: Callable[[], dfx.AbstractSolver] | None
    order: int | None
    stages: int | None
    fsal: bool
    embedded: bool  # has an error estimate, so it can run adaptively
    error_order: int | None = None
    nfe_unit: str = F_EVALS

    @property
    def evals_per_step(self) -> int:
        return self.stages - 1 if self.fsal else self.stages

    def nfe(self, attempted_steps, adaptive: bool):
        init = int(self.fsal) + (INITIAL_STEP_EVALS if adaptive else 0)
        return init + self.evals_per_step * attempted_steps

    def check(self, *, steps, regularizers, adjoint) -> None:
        """Raise if this solver cannot run with these options (called by :func:`taynode.solve`)."""
        if steps is None and not self.embedded:
            raise ValueError(
                f"solver {self.name!r} has no error estimate, so it cannot run adaptively: pass steps=N "
                f"for a fixed grid, or choose one of {[s for s, v in SOLVERS.items() if v.embedded]}"
            )

    def integrate(self, problem):
        """Solve a validated :class:`taynode.problem.Problem`; a :class:`~taynode.problem.Solution`."""
        from .rk_integrator import integrate_rk  # it needs initial_step_size from here

        return integrate_rk(self, problem)


@dataclass(frozen=True)
class TaylorSpec(SolverSpec):
    """The explicit Taylor-series method (:mod:`taynode.taylor_solver`) as a registry entry.

    ``order`` is the fixed order p (``None``: Jorba & Zou's for the tolerance, or chosen per step
    with ``adaptive_order``); it takes no fixed grid and no regularizers, and its
    ``stats["nfe"]`` counts Taylor coefficient orders (a step of order p counts p).
    """

    make: None = None
    order: int | None = None
    stages: None = None
    fsal: bool = False
    embedded: bool = True  # Jorba & Zou's step control from the last two coefficients
    nfe_unit: str = TAYLOR_ORDERS
    adaptive_order: bool = False

    @property
    def options(self) -> dict:
        """Keyword arguments of :func:`taynode.taylor_solver.taylor_solve`."""
        if self.adaptive_order:
            return {"adaptive_order": True}
        return {} if self.order is None else {"order": self.order}

    def check(self, *, steps, regularizers, adjoint) -> None:
        from .taylor_solver import check_taylor_options

        check_taylor_options(self, regularizers, adjoint, steps)

    def integrate(self, problem):
        from .taylor_solver import integrate_taylor

        return integrate_taylor(self, problem)


# ---- the study tableaux (Fig. 2: taynode.studies.order) ---------------------------------------

_euler_heun_tableau = dfx.ButcherTableau(
    c=np.array([1.0]),
    a_lower=(np.array([1.0]),),
    b_sol=np.array([1.0, 0.0]),  # Euler
    b_error=np.array([0.5, -0.5]),  # Euler − Heun
)


class EulerHeun(dfx.AbstractERK):
    """Euler's method with Heun's as the error estimate (no local extrapolation): order 1.

    Its second stage f(t + h, z + h f₀) is the next step's first, so it costs one f per step.
    """

    tableau: ClassVar[dfx.ButcherTableau] = _euler_heun_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 1


# Fehlberg (1969), RK4(5): the classical coefficients; b4 steps, b5 − b4 estimates the error.
_F_B4 = np.array([25 / 216, 0.0, 1408 / 2565, 2197 / 4104, -1 / 5, 0.0])
_F_B5 = np.array([16 / 135, 0.0, 6656 / 12825, 28561 / 56430, -9 / 50, 2 / 55])
_fehlberg_tableau = dfx.ButcherTableau(
    c=np.array([1 / 4, 3 / 8, 12 / 13, 1.0, 1 / 2]),
    a_lower=(
        np.array([1 / 4]),
        np.array([3 / 32, 9 / 32]),
        np.array([1932 / 2197, -7200 / 2197, 7296 / 2197]),
        np.array([439 / 216, -8.0, 3680 / 513, -845 / 4104]),
        np.array([-8 / 27, 2.0, -3544 / 2565, 1859 / 4104, -11 / 40]),
    ),
    b_sol=_F_B4,
    b_error=_F_B4 - _F_B5,
)


class Fehlberg45(dfx.AbstractERK):
    """Fehlberg's RK4(5) stepping with its 4th-order solution: order 4, six stages."""

    tableau: ClassVar[dfx.ButcherTableau] = _fehlberg_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


# ---- the registry ------------------------------------------------------------------------------

# Runge–Kutta entries: (name, diffrax solver, order m, stages, FSAL, embedded, order m̂ of the
# error estimate's embedded formula).
_entries = lambda specs: {s.name: s for s in specs}  # noqa: E731

# The general-purpose Runge–Kutta solvers (diffrax's, and RK4 above).
SOLVERS: dict[str, SolverSpec] = _entries([
    SolverSpec("euler", dfx.Euler, order=1, stages=1, fsal=False, embedded=False),
    SolverSpec("midpoint", dfx.Midpoint, order=2, stages=2, fsal=False, embedded=True, error_order=1),
    SolverSpec("heun", dfx.Heun, order=2, stages=2, fsal=False, embedded=True, error_order=1),
    SolverSpec("bosh3", dfx.Bosh3, order=3, stages=4, fsal=True, embedded=True, error_order=2),
    SolverSpec("rk4", RK4, order=4, stages=4, fsal=False, embedded=False),
    SolverSpec("dopri5", dfx.Dopri5, order=5, stages=7, fsal=True, embedded=True, error_order=4),
    SolverSpec("tsit5", dfx.Tsit5, order=5, stages=7, fsal=True, embedded=True, error_order=4),
    SolverSpec("dopri8", dfx.Dopri8, order=8, stages=14, fsal=True, embedded=True, error_order=7),
])  # fmt: skip

# The pairs the order study (Fig. 2) adds: a low-order-stepping pair of order 1 and of order 4.
STUDY_SOLVERS: dict[str, SolverSpec] = _entries([
    SolverSpec("euler_heun", EulerHeun, order=1, stages=2, fsal=True, embedded=True, error_order=2),
    SolverSpec("ralston", dfx.Ralston, order=2, stages=2, fsal=False, embedded=True, error_order=1),
    SolverSpec("fehlberg45", Fehlberg45, order=4, stages=6, fsal=False, embedded=True, error_order=5),
])  # fmt: skip

# The Taylor-series method; "taylor<p>" (fixed order p) is made by get().
TAYLOR: dict[str, SolverSpec] = _entries([TaylorSpec("taylor"), TaylorSpec("taylor-adaptive", adaptive_order=True)])

# Every integrator solve() accepts by name.
REGISTRY: dict[str, SolverSpec] = SOLVERS | STUDY_SOLVERS | TAYLOR

_TAYLOR_FIXED = re.compile(r"taylor(\d+)")


def get(name) -> SolverSpec:
    """The registry entry of ``name``; ``"taylor<p>"`` (e.g. ``"taylor12"``) is the Taylor method
    of fixed order p. A :class:`SolverSpec` is returned as is (e.g. a user's own tableau)."""
    if isinstance(name, SolverSpec):
        return name
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    m = _TAYLOR_FIXED.fullmatch(name) if isinstance(name, str) else None
    if m:
        from .taylor_solver import check_fixed_order

        return TaylorSpec(name, order=check_fixed_order(int(m.group(1))))
    if isinstance(name, str) and name.startswith("taylor"):
        raise ValueError(
            f"unknown solver {name!r}; the Taylor solvers are 'taylor', 'taylor<p>' (e.g. 'taylor12') and 'taylor-adaptive'"
        )
    valid = ", ".join([n for n in SOLVERS] + list(STUDY_SOLVERS) + ["taylor", "taylor<p>", "taylor-adaptive"])
    raise ValueError(f"unknown solver {name!r}; valid solvers: {valid}")


def _rms(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    total = sum(jnp.sum(jnp.square(x)) for x in leaves)
    return jnp.sqrt(total / sum(x.size for x in leaves))


def initial_step_size(
    fun: Callable, t0: ArrayLike, y0: Any, direction: ArrayLike, order: int, rtol: float, atol: float, f0: Any
) -> jax.Array:
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
