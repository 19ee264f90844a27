r"""Taylor coefficients of equations whose derivative JAX defines: control flow (``scan``, so
``fori_loop`` with static bounds and ``lax.map``; ``while_loop``; ``cond``/``switch``) and
``custom_jvp`` functions.

Coefficient k of :math:`y = g(x)` is the k-th derivative at :math:`s = 0` of :math:`g(x(s))`,
:math:`x(s) = \sum_{j \le k} x_j s^j` (the input's series truncated at order k), divided by k!,
found by k nested forward-mode JVPs in the scalar s. So ``g`` is differentiated by JAX's own
rules: a loop's carry follows the series iteration by iteration, ``cond`` evaluates its
predicate on the primal (an index operand has no series), a ``while_loop``'s trip count is the
primal's, and a ``custom_jvp`` function follows its JVP rule instead of its implementation
(``jnp.sinc`` and ``xlogy`` patch a point with ``where``). The cost is :math:`2^k` evaluations of
g at order k, so this is kept to such equations and to orders up to :data:`MAX_ORDER`.
Gradients flow through (JAX's reverse mode of the nested JVPs); a ``while_loop`` has none in
JAX, and the gradient of one raises JAX's error.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._jax import bind_equation

__all__ = ["CONTROL", "MAX_ORDER", "jvp_series_rule"]

MAX_ORDER = 10
"""The largest order for which an equation is expanded by nested JVPs (2^K evaluations)."""

# Equations expanded this way: control flow, custom_jvp functions whose implementation is not a
# faithful expansion, jax 0.12's `polynomial` (how jnp.sinc evaluates its series there), and
# max pooling (a variadic reduce_window carrying the lexicographic winner aborts XLA's CPU compiler).
CONTROL = {"cond", "while", "scan", "custom_jvp_call", "polynomial", "reduce_window_max", "reduce_window_min"}


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _polynomial(x, k, s):
    out = None
    for j in range(k, -1, -1):  # Horner
        c = x[j]
        out = (c if c is not None else None) if out is None else (out * s if c is None else out * s + c)
    return x[0] if out is None else out


def _derivative(g):
    def dg(s):
        return jax.jvp(g, (s,), (jnp.ones_like(s),))[1]

    return dg


def jvp_series_rule(k: int, xs: list, ys: list, aux: dict, eqn: Any) -> Any:
    """Coefficient k of every output of ``eqn``, by k nested JVPs of the equation applied to
    its inputs' truncated series (see the module docstring)."""
    name = eqn.primitive.name
    if k > MAX_ORDER:
        raise ValueError(
            f"order {k} is above {MAX_ORDER}, the largest order for which the Taylor core expands "
            f"{name!r} (by nested JVPs, 2^K evaluations); use a lower order"
        )
    real = jnp.finfo(jnp.result_type(*[x[0] for x in xs if _is_float(x[0])])).dtype
    floats = [_is_float(v.aval.dtype) for v in eqn.outvars]

    def h(s):
        args = [x[0] if x.const or not _is_float(x[0]) else _polynomial(x, k, s) for x in xs]
        outs = bind_equation(eqn, *args)
        return [o for o, keep in zip(outs, floats) if keep]

    d = h
    for _ in range(k):
        d = _derivative(d)
    vals = iter(d(jnp.zeros((), real)))
    scale = 1.0 / math.factorial(k)
    out = [next(vals) * scale if keep else None for keep in floats]
    return out if eqn.primitive.multiple_results else out[0]
