r"""Solvers as data: one registry (:data:`REGISTRY`) of every integrator :func:`taynode.solve` runs.

An entry is a :class:`SolverSpec` (an explicit Runge–Kutta solver: diffrax's, or
:mod:`taynode.ode.tableaux`) or a :class:`TaylorSpec` (the Taylor-series method: ``"taylor"``,
``"taylor<p>"``, ``"taylor-adaptive"``). A Runge–Kutta entry is a name, a diffrax solver and, for
an embedded pair, the order m̂ of its error estimate; its order, stages and FSAL are read from the
diffrax solver and its :class:`diffrax.ButcherTableau`, never retyped. :attr:`SolverSpec.kind`
tells :func:`taynode.solve` which integrator runs it (:mod:`taynode.ode.rk`,
:mod:`taynode.ode.taylor_method`).

NFE, the paper's way (evaluations of f by the solver, rejected steps and initial-step selection
included), follows from diffrax's step counts:

.. math::  \text{NFE} = \underbrace{2\,[\text{adaptive}]}_{\text{initial step}}
           + \underbrace{[\text{FSAL}]}_{f(t_0, z_0)} + (s - [\text{FSAL}])\cdot n_\text{attempted}

with s stages. Each attempted step, accepted or rejected, evaluates its stages; an FSAL solver
reuses its last stage as the next step's first, which it evaluates once at the start. The
initial step size is chosen by :func:`taynode.ode.steps.initial_step_size` (two evaluations of
f), because diffrax 0.7 skips its own selection for the wrapped terms ``diffeqsolve`` builds and
starts every solve at dt = 0.01. ``tests/test_nfe.py`` checks the formula against a counter in f.

A new solver is one more entry: ``SolverSpec("name", MyERK, error_order=m̂)`` with a diffrax
solver (e.g. a :class:`diffrax.AbstractERK` subclass with its tableau).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import diffrax as dfx
import numpy as np

from ..nfe import rk_nfe, stages_fsal
from ..regularizers.heuristics import same_time_pair
from .problem import F_EVALS, TAYLOR_ORDERS
from .steps import INITIAL_STEP_EVALS, check_taylor_orders
from .tableaux import RK4, EulerHeun, Fehlberg45

__all__ = [
    "REGISTRY",
    "SOLVERS",
    "STUDY_SOLVERS",
    "TAYLOR",
    "Entry",
    "SolverSpec",
    "TaylorSpec",
    "adaptive_solvers",
    "get",
    "solvers_with_pair",
]

RUNGE_KUTTA = "runge-kutta"
TAYLOR_METHOD = "taylor"


@dataclass(frozen=True)
class SolverSpec:
    """An explicit Runge–Kutta solver as data: ``make()`` builds the diffrax solver.

    ``error_order`` is the order m̂ of the embedded formula the error estimate compares against
    (``None`` without one). ``order``, ``stages``, ``fsal`` and ``embedded`` come from the diffrax
    solver and its tableau. ``stats["nfe"]`` counts ``nfe_unit``, evaluations of f (:meth:`nfe`).
    """

    name: str
    make: Callable[[], dfx.AbstractSolver]
    error_order: int | None = None
    kind: ClassVar[str] = RUNGE_KUTTA
    nfe_unit: ClassVar[str] = F_EVALS

    def __post_init__(self):
        try:
            self._stages_fsal  # noqa: B018  # read off the solver now, so a bad entry fails at once
        except ValueError:
            raise ValueError(
                f"solver {self.name!r}: {type(self.make()).__name__} is not an explicit Runge–Kutta solver with a tableau"
            ) from None
        if self.embedded != (self.error_order is not None):
            raise ValueError(f"solver {self.name!r}: pass error_order exactly when the tableau has an error estimate (b_error)")

    @cached_property
    def tableau(self) -> dfx.ButcherTableau | None:
        """The diffrax solver's Butcher tableau (``None`` for diffrax's Euler)."""
        return getattr(self.make(), "tableau", None)

    @cached_property
    def order(self) -> int:
        """The order m of the stepped formula (the diffrax solver's)."""
        return int(self.make().order(None))  # type: ignore[arg-type]  # an explicit RK's order is an int

    @cached_property
    def _stages_fsal(self) -> tuple[int, bool]:
        return stages_fsal(self.make())  # the one reader of a diffrax solver's tableau, count_nfe's too

    @property
    def stages(self) -> int:
        """Stages s per step: the tableau's (``len(c) + 1``; 1 for diffrax's Euler)."""
        return self._stages_fsal[0]

    @property
    def fsal(self) -> bool:
        """Whether the last stage is the next step's first (the tableau's "first same as last")."""
        return self._stages_fsal[1]

    @cached_property
    def embedded(self) -> bool:
        """Whether there is an error estimate (a non-zero ``b_error``), so it can run adaptively."""
        return bool(self.tableau is not None and np.any(np.asarray(self.tableau.b_error) != 0))

    @property
    def evals_per_step(self) -> int:
        """Evaluations of f per attempted step (s, less one with FSAL)."""
        return self.stages - 1 if self.fsal else self.stages

    def nfe(self, attempted_steps: Any, adaptive: bool, first_stages: Any = 1) -> Any:
        """Evaluations of f of a solve with ``attempted_steps`` steps, ``first_stages`` of which
        evaluated an FSAL solver's first stage (:mod:`taynode.nfe`): the one formula,
        :func:`taynode.nfe.rk_nfe`, that ``taynode.count_nfe`` applies to a user's diffrax solve."""
        return rk_nfe(
            attempted_steps,
            stages=self.stages,
            fsal=self.fsal,
            initial_step_evals=INITIAL_STEP_EVALS if adaptive else 0,
            first_stages=first_stages,
        )


@dataclass(frozen=True)
class TaylorSpec:
    """The explicit Taylor-series method (:mod:`taynode.ode.taylor_method`) as a registry entry.

    ``order`` is the fixed order p (``None``: Jorba & Zou's for the tolerance, or chosen per step
    with ``adaptive_order``); it takes no fixed grid and no regularizers, and its
    ``stats["nfe"]`` counts Taylor coefficient orders (a step of order p counts p).
    """

    name: str
    order: int | None = None
    adaptive_order: bool = False
    kind: ClassVar[str] = TAYLOR_METHOD
    nfe_unit: ClassVar[str] = TAYLOR_ORDERS
    make: ClassVar[None] = None  # no diffrax solver
    embedded: ClassVar[bool] = True  # Jorba & Zou's step control from the last two coefficients
    error_order: ClassVar[None] = None
    stages: ClassVar[None] = None
    fsal: ClassVar[bool] = False

    @property
    def options(self) -> dict:
        """Keyword arguments of :func:`taynode.ode.taylor_method.taylor_solve`."""
        if self.adaptive_order:
            return {"adaptive_order": True}
        return {} if self.order is None else {"order": self.order}


Entry = SolverSpec | TaylorSpec

_entries = lambda specs: {s.name: s for s in specs}  # noqa: E731

# The general-purpose Runge–Kutta solvers (diffrax's, and RK4).
SOLVERS: dict[str, SolverSpec] = _entries([
    SolverSpec("euler", dfx.Euler),
    SolverSpec("midpoint", dfx.Midpoint, error_order=1),
    SolverSpec("heun", dfx.Heun, error_order=1),
    SolverSpec("bosh3", dfx.Bosh3, error_order=2),
    SolverSpec("rk4", RK4),
    SolverSpec("dopri5", dfx.Dopri5, error_order=4),
    SolverSpec("tsit5", dfx.Tsit5, error_order=4),
    SolverSpec("dopri8", dfx.Dopri8, error_order=7),
])  # fmt: skip

# The pairs the order study (Fig. 2) adds: a low-order-stepping pair of order 1 and of order 4.
STUDY_SOLVERS: dict[str, SolverSpec] = _entries([
    SolverSpec("euler_heun", EulerHeun, error_order=2),
    SolverSpec("ralston", dfx.Ralston, error_order=1),
    SolverSpec("fehlberg45", Fehlberg45, error_order=5),
])  # fmt: skip

# The Taylor-series method; "taylor<p>" (fixed order p) is made by get().
TAYLOR: dict[str, TaylorSpec] = _entries([TaylorSpec("taylor"), TaylorSpec("taylor-adaptive", adaptive_order=True)])

# Every integrator solve() accepts by name.
REGISTRY: dict[str, Entry] = SOLVERS | STUDY_SOLVERS | TAYLOR

_TAYLOR_FIXED = re.compile(r"taylor(\d+)")


def get(name: str | Entry) -> Entry:
    """The registry entry of ``name``; ``"taylor<p>"`` (e.g. ``"taylor12"``) is the Taylor method
    of fixed order p. An entry is returned as is (e.g. a user's own tableau)."""
    if isinstance(name, (SolverSpec, TaylorSpec)):
        return name
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    m = _TAYLOR_FIXED.fullmatch(name) if isinstance(name, str) else None
    if m:
        order = int(m.group(1))
        check_taylor_orders(order, None)
        return TaylorSpec(name, order=order)
    if isinstance(name, str) and name.startswith("taylor"):
        raise ValueError(
            f"unknown solver {name!r}; the Taylor solvers are 'taylor', 'taylor<p>' (e.g. 'taylor12') and 'taylor-adaptive'"
        )
    valid = ", ".join([n for n in SOLVERS] + list(STUDY_SOLVERS) + ["taylor", "taylor<p>", "taylor-adaptive"])
    raise ValueError(f"unknown solver {name!r}; valid solvers: {valid}")


def adaptive_solvers() -> list[str]:
    """The names of the registry's embedded Runge–Kutta solvers (those that run adaptively)."""
    return [n for n, s in REGISTRY.items() if s.kind == RUNGE_KUTTA and s.embedded]


def solvers_with_pair() -> list[str]:
    """The general-purpose adaptive solvers whose tableau has two stages at the same time (SRNODE)."""
    return [n for n, s in SOLVERS.items() if s.embedded and s.tableau is not None and same_time_pair(s.tableau) is not None]
