"""The tie rule for ``jax.experimental.jet``'s piecewise primitives.

jet's own rules are silently wrong where a piecewise primitive's operands tie: ``max``/``min``
average the tied branches, ``abs`` at 0 gives 0, ``reduce_max``/``reduce_min`` take the first
index and ``select_n`` follows the primal branch of a tied comparison. The trajectory follows,
for t > t₀, the branch that is larger along the series (the right-sided rule of
:mod:`.rules_piecewise`). Here the elementwise ones (``max``, ``min``, ``abs``, ``clamp``) get that
rule; the others are checked at run time (``equinox.error_if``, so also under ``jit``) and raise
naming the primitive where a tie meets operands whose series differ.

Series are lists of coefficient arrays (any positive scaling: only their signs and equality matter
for the choice of a branch). Coefficient j of a right-sided output is chosen from the primal and
coefficients 1..j only (where those tie, both branches agree up to j): jet_derivatives runs one
pass per order, and so each pass rebuilds the lower coefficients as the same expressions, which
XLA merges (choosing by all coefficients made the lower ones differ per pass, and every later
operation, convolutions included, was recomputed per pass).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax

__all__ = ["CHECKED", "COMPARISONS", "RIGHT_SIDED", "check_tie", "comparison_tie", "right_sided"]

RIGHT_SIDED = {"max", "min", "abs", "clamp"}
CHECKED = {"reduce_max", "reduce_min", "cummax", "cummin", "select_n"}
# == and != keep their primal value, as in the incremental rule (they patch points, not pieces).
COMPARISONS = {"gt", "ge", "lt", "le"}
# Boolean masks pass through these as the predicate does.
MASK_UNARY = {"not", "broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type", "transpose"}
MASK_BINARY = {"and", "or", "xor"}


def _terms(s, like, order):
    return [jnp.zeros_like(like)] * order if s is None else list(s)


def _not_behind(x, y, sx, sy):
    """For each j: elementwise, ``(x, *sx[:j + 1])`` is not lexicographically below
    ``(y, *sy[:j + 1])``. Booleans, not signs: they are what the gradient keeps."""
    take, tied, out = x >= y, x == y, []
    for a, b in zip(sx, sy):
        take, tied = jnp.where(tied, a >= b, take), tied & (a == b)
        out.append(take)
    return out


def _max(x, y, sx, sy, larger):
    take_x = _not_behind(x, y, sx, sy) if larger else _not_behind(y, x, sy, sx)
    series = [jnp.where(take, a, b) for take, a, b in zip(take_x, sx, sy)]
    return (lax.max(x, y) if larger else lax.min(x, y)), series


def right_sided(name, primals, series, order):
    """``(primal, series)`` of ``max``/``min``/``abs``/``clamp`` by the right-sided tie rule."""
    if name == "abs":
        (x,), (sx,) = primals, series
        sx = _terms(sx, x, order)
        zero = jnp.zeros_like(x)
        up = _not_behind(x, zero, sx, [zero] * len(sx))
        return lax.abs(x), [jnp.where(u, a, -a) for u, a in zip(up, sx)]
    if name == "clamp":
        lo, x, hi = primals
        slo, sx, shi = (_terms(s, x, order) for s in series)
        lo, hi = (jnp.broadcast_to(b, jnp.shape(x)) for b in (lo, hi))
        slo, shi = ([jnp.broadcast_to(a, jnp.shape(x)) for a in s] for s in (slo, shi))
        y, sy = _max(x, lo, sx, slo, larger=True)
        return _max(y, hi, sy, shi, larger=False)
    x, y = primals
    sx, sy = (_terms(s, x, order) for s in series)
    return _max(x, y, sx, sy, larger=name == "max")


def _differ(sa, sb):
    out = None
    for a, b in zip(sa, sb):
        d = a != b
        out = d if out is None else out | d
    return out


def comparison_tie(primals, series, order):
    """Where a comparison's operands tie while their series differ (its result there is not the
    trajectory's for t > t₀)."""
    a, b = primals
    sa, sb = (_terms(s, a, order) for s in series)
    return (a == b) & _differ(sa, sb)


def _message(name):
    return (
        f"method='jet' met a tie in {name!r} (operands equal, their Taylor series different), where "
        f"jax.experimental.jet's rule does not follow the trajectory's branch; use "
        f"method='incremental', which applies the right-sided tie rule"
    )


def _group_tie(x, sx, at, axes):
    """Whether, within the reduced groups, the elements marked ``at`` have different series."""
    out = jnp.zeros((), bool)
    for s in sx:
        hi = jnp.max(jnp.where(at, s, -jnp.inf), axis=axes)
        lo = jnp.min(jnp.where(at, s, jnp.inf), axis=axes)
        out = out | jnp.any(hi != lo)
    return out


def _cum_tie(x, sx, out, sout, axis, reverse):
    """A new element equal to the running extremum before it, with a different series."""
    n = x.shape[axis]
    if n < 2:
        return jnp.zeros((), bool)
    new, prev = (slice(0, n - 1), slice(1, n)) if reverse else (slice(1, n), slice(0, n - 1))

    def take(a, sl):
        idx = [slice(None)] * a.ndim
        idx[axis] = sl
        return a[tuple(idx)]

    tie = take(x, new) == take(out, prev)
    return jnp.any(tie & _differ([take(a, new) for a in sx], [take(a, prev) for a in sout]))


def check_tie(eqn, primals, series, out_primals, out_series, masks, order):
    """``(out_primals, out_series)`` with an ``equinox.error_if`` that raises where ``eqn`` meets
    a tie its jet rule gets wrong; unchanged where no tie is possible."""
    name = eqn.primitive.name
    if name in ("reduce_max", "reduce_min"):
        (x,), (sx,) = primals, series
        axes = tuple(eqn.params["axes"])
        at = x == (jnp.max if name == "reduce_max" else jnp.min)(x, axis=axes, keepdims=True)
        bad = _group_tie(x, _terms(sx, x, order), at, axes)
    elif name in ("cummax", "cummin"):
        (x,), (sx,) = primals, series
        bad = _cum_tie(x, _terms(sx, x, order), out_primals[0], out_series[0], eqn.params["axis"], eqn.params["reverse"])
    elif name == "select_n":
        mask = masks.get(eqn.invars[0])
        if mask is None:
            return out_primals, out_series
        cases = primals[1:]
        scases = [_terms(s, c, order) for s, c in zip(series[1:], cases)]
        differ = jnp.zeros(jnp.shape(out_primals[0]), bool)
        for c, s in zip(cases[1:], scases[1:]):
            differ = differ | (c != cases[0]) | _differ(s, scases[0])
        bad = jnp.any(mask & differ)
    else:
        return out_primals, out_series
    # On primal and series both: under jit an unused primal (and its check) is dropped.
    label = name if name != "select_n" else "select_n (where) on a comparison"
    return eqx.error_if((out_primals, out_series), bad, _message(label))
