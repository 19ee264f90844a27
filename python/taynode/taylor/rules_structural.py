"""Rules for structural primitives: linear ones (coefficient k is the primitive applied to
coefficient k), products along an axis, and linear solves."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .._jax import bind_equation
from .coeffs import zero_to
from .control import jvp_series_rule

__all__ = ["LINEAR", "STRUCTURAL_RULES"]

# Linear (structural) primitives: coefficient k is the primitive applied to coefficient k of
# the floating-point operands; integer and boolean operands (indices, predicates) keep their
# primal value (a predicate series its value known at order k, see :mod:`.rules_piecewise`),
# and a constant floating-point operand contributes zeros past order 0.
LINEAR = {
    "concatenate",
    "stack",
    "unstack",
    "split",
    "reshape",
    "broadcast_in_dim",
    "transpose",
    "slice",
    "dynamic_slice",
    "dynamic_update_slice",
    "gather",
    "scatter",
    "scatter-add",
    "scatter_add",
    "squeeze",
    "expand_dims",
    "reduce_sum",
    "reduce_window_sum",
    "convert_element_type",
    "copy",
    "copy_p",
    "rev",
    "pad",
    "tile",
    "select_n",
    "cumsum",
    "reduce_precision",
    "real",
    "imag",
    "conj",
    "complex",
}


def _truncated_product(k):
    # The product of two series truncated after order k; stacked coefficients on axis 0.
    def combine(a, b):
        return jnp.stack([sum(a[i] * b[m - i] for i in range(m + 1)) for m in range(k + 1)])

    return combine


def _stacked(x, k):
    return jnp.stack([zero_to(x[j], x[0]) for j in range(k + 1)])


def _cumprod_rule(k, xs, ys, aux, eqn):
    # Exact where factors vanish (no division): a scan of truncated series products.
    axis, reverse = eqn.params["axis"], eqn.params["reverse"]
    out = lax.associative_scan(_truncated_product(k), _stacked(xs[0], k), reverse=reverse, axis=axis + 1)
    return out[k]


def _reduce_prod_rule(k, xs, ys, aux, eqn):
    axes = tuple(a + 1 for a in eqn.params["axes"])
    stack = _stacked(xs[0], k)
    stack = jnp.moveaxis(stack, axes, tuple(range(stack.ndim - len(axes), stack.ndim)))
    stack = stack.reshape(stack.shape[: stack.ndim - len(axes)] + (-1,))
    return lax.associative_scan(_truncated_product(k), stack, axis=stack.ndim - 1)[k, ..., -1]


def _linear_solve_rule(k, xs, ys, aux, eqn):
    # x = A⁻¹ b is linear in b when the operator (its closed-over values) has no series.
    n_consts = sum(eqn.params["const_lengths"])
    consts, b = xs[:n_consts], xs[n_consts:]
    if any(not c.const for c in consts):
        return jvp_series_rule(k, xs, ys, aux, eqn)
    if all(x[k] is None for x in b):
        return [None] * len(b)
    rhs = [zero_to(x[k], x[0]) for x in b]
    return bind_equation(eqn, *[c[0] for c in consts], *rhs)


STRUCTURAL_RULES = {
    "cumprod": _cumprod_rule,
    "reduce_prod": _reduce_prod_rule,
    "custom_linear_solve": _linear_solve_rule,
}
