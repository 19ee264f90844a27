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

import itertools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._jax import bind_equation

__all__ = ["CONTROL", "MAX_ORDER", "jvp_series_rule"]

MAX_ORDER = 10
"""The largest order for which an equation is expanded by nested JVPs (2^K evaluations)."""

# Equations expanded this way: control flow, custom_jvp functions whose implementation is not a
# faithful expansion, jax 0.12's `polynomial` (how jnp.sinc evaluates its series there), and
# max pooling (a variadic reduce_window carrying the lexicographic winner aborts XLA's CPU compiler,
# so a tie whose series differ raises instead: ``_pool_tie``).
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
    if name in ("reduce_window_max", "reduce_window_min"):
        out[0] = eqx.error_if(out[0], _pool_tie(xs[0], k, eqn.params, name == "reduce_window_max"), _POOL_TIE.format(name=name))
    return out if eqn.primitive.multiple_results else out[0]


_POOL_TIE = (
    "{name!r} (max/min pooling) met a tie: two elements of one window are equal with different Taylor "
    "series, where JAX's derivative takes the first one rather than the trajectory's right-sided "
    "branch; the Taylor core cannot expand this pooling at a tie (move the state off the tie, or use "
    "a smooth pooling such as average pooling)"
)


def _window_stack(x, params, fill):
    """Every window's elements of ``reduce_window``'s operand, stacked on a new leading axis."""
    pads = [(lo, hi, b - 1) for (lo, hi), b in zip(params["padding"], params["base_dilation"])]
    xp = lax.pad(x, jnp.asarray(fill, x.dtype), pads)
    out_shape = [
        (n - (w - 1) * d - 1) // s + 1
        for n, w, d, s in zip(xp.shape, params["window_dimensions"], params["window_dilation"], params["window_strides"])
    ]
    parts = []
    for offset in itertools.product(*[range(w) for w in params["window_dimensions"]]):
        start = [o * d for o, d in zip(offset, params["window_dilation"])]
        limit = [b + (m - 1) * s + 1 for b, m, s in zip(start, out_shape, params["window_strides"])]
        parts.append(lax.slice(xp, start, limit, params["window_strides"]))
    return jnp.stack(parts)


def _pool_tie(x, k, params, is_max):
    """Whether a window's extreme value is taken by elements whose coefficients 1..k differ."""
    primal = _window_stack(x[0], params, -jnp.inf if is_max else jnp.inf)
    at = primal == (jnp.max if is_max else jnp.min)(primal, axis=0)
    bad = jnp.zeros((), bool)
    for j in range(1, k + 1):
        if x[j] is None:
            continue
        c = _window_stack(x[j], params, 0)
        bad = bad | jnp.any(jnp.max(jnp.where(at, c, -jnp.inf), axis=0) != jnp.min(jnp.where(at, c, jnp.inf), axis=0))
    return bad
