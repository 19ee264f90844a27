"""taynode: learning differential equations that are easy to solve (Kelly et al., NeurIPS 2020).

Dynamics everywhere have diffrax's signature ``f(t, z, args)``.
"""

from ._xla import disable_ynn_fusion

disable_ynn_fusion()  # before anything below can start JAX's CPU client

from . import ode, regularizers, solver_heuristics, solvers, taylor  # noqa: E402
from .diffrax_term import RegularizedTerm
from .nfe import count_nfe
from .ode import SolveError
from .regularizers import (
    RK,
    ErrorEstimate,
    JacobianFrobenius,
    Kinetic,
    Regularizer,
    RegularizerSet,
    StageSharingField,
    StiffnessEstimate,
)
from .solve import DEFAULT_CHECKPOINTS, QUADRATURES, Solution, sample_times, solve  # the module first, then the function
from .taylor import UnsupportedPrimitiveError, derivatives

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "ErrorEstimate",
    "QUADRATURES",
    "RK",
    "JacobianFrobenius",
    "Kinetic",
    "Regularizer",
    "RegularizedTerm",
    "RegularizerSet",
    "Solution",
    "SolveError",
    "StageSharingField",
    "StiffnessEstimate",
    "UnsupportedPrimitiveError",
    "count_nfe",
    "derivatives",
    "ode",
    "regularizers",
    "sample_times",
    "solve",
    "solver_heuristics",
    "solvers",
    "taylor",
]
