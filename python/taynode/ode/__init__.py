"""The solving layer, a strict stack (each module imports only the ones above it in this list):

0. :mod:`.failures`: run-time failures as values (:class:`~.failures.SolveError` on the host);
1. :mod:`.problem`: :class:`Problem`, :class:`Solution`, the NFE units;
2. :mod:`.steps`: step-size selection (Hairer's initial step, Jorba & Zou's step and order);
3. :mod:`.tableaux`, :mod:`.registry`: the solvers as data;
4. :mod:`.term`: the augmented field (:class:`RegularizedTerm`: f and the regularizers' integrands),
   which :mod:`.rk` integrates and users put in their own ``diffeqsolve``;
5. :mod:`.heuristics`, :mod:`.rk`, :mod:`.taylor_method`: the integrators;
6. :mod:`.checks`: every check of a solve's inputs, before any work;
7. :mod:`.solve`: :func:`solve`, which runs the integrator of the entry's kind.

Below it: :mod:`taynode.taylor` (the Taylor core) and :mod:`taynode.regularizers`.
"""

from .checks import DEFAULT_TOL, ERROR_CONTROLS, QUADRATURES
from .failures import SolveError
from .problem import F_EVALS, TAYLOR_ORDERS, Problem, Solution
from .registry import REGISTRY, SOLVERS, STUDY_SOLVERS, TAYLOR, SolverSpec, TaylorSpec, get
from .rk import ADJOINTS
from .solve import DEFAULT_CHECKPOINTS, solve
from .term import SAMPLE_STREAM, RegularizedTerm, sample_times

__all__ = [
    "ADJOINTS",
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_TOL",
    "ERROR_CONTROLS",
    "F_EVALS",
    "QUADRATURES",
    "REGISTRY",
    "RegularizedTerm",
    "SAMPLE_STREAM",
    "SOLVERS",
    "STUDY_SOLVERS",
    "TAYLOR",
    "TAYLOR_ORDERS",
    "Problem",
    "Solution",
    "SolveError",
    "SolverSpec",
    "TaylorSpec",
    "get",
    "sample_times",
    "solve",
]
