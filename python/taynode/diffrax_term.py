"""TayNODE and RNODE inside a user's own ``diffrax.diffeqsolve``: :class:`RegularizedTerm`.

The first name of :mod:`taynode.ode.term`, kept as a re-export: the term lives in the solving
layer because :func:`taynode.solve` integrates the same one (one implementation of the augmented
field).
"""

from .ode.term import SAMPLE_STREAM, RegularizedTerm, evaluate, sample_times

__all__ = ["SAMPLE_STREAM", "RegularizedTerm", "evaluate", "sample_times"]
