r"""Taylor-coefficient rules for incremental Taylor mode, one recurrence per primitive family.

Coefficients are normalized, :math:`x_k = x^{(k)}/k!` (the TaylorSeries.jl convention), so
products are Cauchy sums and no factorials appear. A rule computes coefficient :math:`k \ge 1`
of a primitive's output from coefficients :math:`0 \dots k` of its inputs and :math:`0 \dots
k-1` of its output (Griewank & Walther, *Evaluating Derivatives*, ch. 13):

``rule(k, xs, ys, aux, eqn) -> y_k``

* ``xs``: one :class:`Coeffs` per input: ``xs[i][j]`` is :math:`x_{i,j}`, or ``None`` for a
  structural zero (constants and parameters have no series: every coefficient past 0 is None);
* ``ys``: the output's coefficients so far, ``ys[0]`` being the primitive's value (for a
  primitive with several outputs, one such list per output, None for outputs without a series,
  and the rule returns one coefficient per output);
* ``aux``: a dict the rule owns for this equation, holding auxiliary series (the cosine
  beside a sine, :math:`1 - \tanh^2` beside a tanh), extended one coefficient per call.

Returning ``None`` means a zero coefficient. Coefficient 0 is always the primitive itself.
Most nonlinear rules come from :math:`y' = g\,x'`, i.e. :math:`k y_k = \sum_{j=1}^k j\,x_j
g_{k-j}`, with :math:`g` itself a series built from :math:`y`.

The families live in :mod:`.rules_arith`, :mod:`.rules_special`, :mod:`.rules_piecewise`
(with the one tie rule of every piecewise primitive), :mod:`.rules_structural` and
:mod:`.control` (loops, branches and ``custom_jvp`` functions); this module is the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from .coeffs import Coeffs, cauchy, chain
from .control import CONTROL, jvp_series_rule
from .rules_arith import ARITH_RULES
from .rules_piecewise import PIECEWISE_RULES, PREDICATE_AWARE
from .rules_special import SPECIAL_RULES
from .rules_structural import LINEAR, STRUCTURAL_RULES

__all__ = ["CONSTANT", "LINEAR", "PREDICATE_AWARE", "RULES", "Coeffs", "cauchy", "chain"]

RULES: dict[str, Callable] = {
    **ARITH_RULES,
    **SPECIAL_RULES,
    **PIECEWISE_RULES,
    **STRUCTURAL_RULES,
    **{name: jvp_series_rule for name in CONTROL},
}

# Piecewise-constant primitives with floating-point outputs: no series past order 0.
CONSTANT = {"sign", "floor", "ceil", "round", "stop_gradient", "eq", "ne", "is_finite"}
