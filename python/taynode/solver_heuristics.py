"""ERNODE and SRNODE under their first name: the regularizers are
:mod:`taynode.regularizers.heuristics`, the solver wrapper that sums them is
:mod:`taynode.ode.heuristics`."""

from .ode.heuristics import Accumulate, accumulated, local_values, step_info, wrap
from .ode.registry import solvers_with_pair
from .regularizers.heuristics import NAMES, ErrorEstimate, StepInfo, StepRegularizer, StiffnessEstimate, parse, split
from .regularizers.heuristics import same_time_pair as _same_time_pair  # noqa: F401 (its former name)

__all__ = [
    "NAMES",
    "Accumulate",
    "ErrorEstimate",
    "StepInfo",
    "StepRegularizer",
    "StiffnessEstimate",
    "accumulated",
    "local_values",
    "parse",
    "solvers_with_pair",
    "split",
    "step_info",
    "wrap",
]
