""":func:`solve` under its first module name; the solving layer is :mod:`taynode.ode`."""

from .ode.checks import DEFAULT_TOL, ERROR_CONTROLS, QUADRATURES
from .ode.problem import Solution
from .ode.solve import DEFAULT_CHECKPOINTS, solve
from .ode.term import SAMPLE_STREAM, sample_times

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_TOL",
    "ERROR_CONTROLS",
    "QUADRATURES",
    "SAMPLE_STREAM",
    "Solution",
    "sample_times",
    "solve",
]
