"""The regularizers, one package: the integrands (:mod:`.integrands`: R_K, 𝒦, ℬ), the step
heuristics (:mod:`.heuristics`: ERNODE, SRNODE), what one field evaluation shares with them
(:mod:`.evaluation`), and :class:`RegularizerSet` (:mod:`.set`), the one parser of names and λ.

It depends on the Taylor core only; the solving layer (:mod:`taynode.ode`) sits above it.
"""

from .evaluation import Evaluation, StageSharingField, hutchinson_noise, num_features, per_example_sum_squares
from .heuristics import ErrorEstimate, StepInfo, StepRegularizer, StiffnessEstimate, same_time_pair
from .integrands import RK, JacobianFrobenius, Kinetic, Regularizer, parse
from .set import NO_REGULARIZERS, RNODE, RegularizerSet

__all__ = [
    "NO_REGULARIZERS",
    "RK",
    "RNODE",
    "ErrorEstimate",
    "Evaluation",
    "JacobianFrobenius",
    "Kinetic",
    "Regularizer",
    "RegularizerSet",
    "StageSharingField",
    "StepInfo",
    "StepRegularizer",
    "StiffnessEstimate",
    "hutchinson_noise",
    "num_features",
    "parse",
    "per_example_sum_squares",
    "same_time_pair",
]
