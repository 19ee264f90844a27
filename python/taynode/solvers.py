"""The solver registry's public name: :mod:`taynode.ode.registry` (the entries as data), with the
tableaux (:mod:`taynode.ode.tableaux`) and the initial-step rule (:mod:`taynode.ode.steps`)."""

from .ode.problem import F_EVALS, TAYLOR_ORDERS
from .ode.registry import REGISTRY, SOLVERS, STUDY_SOLVERS, TAYLOR, Entry, SolverSpec, TaylorSpec, get, solvers_with_pair
from .ode.steps import INITIAL_STEP_EVALS, initial_step_size
from .ode.tableaux import RK4, EulerHeun, Fehlberg45

__all__ = [
    "F_EVALS",
    "INITIAL_STEP_EVALS",
    "REGISTRY",
    "RK4",
    "SOLVERS",
    "STUDY_SOLVERS",
    "TAYLOR",
    "TAYLOR_ORDERS",
    "Entry",
    "EulerHeun",
    "Fehlberg45",
    "SolverSpec",
    "TaylorSpec",
    "get",
    "initial_step_size",
    "solvers_with_pair",
]
