r"""Rules for piecewise-smooth primitives, all following one tie rule.

**The tie rule.** Where a piecewise primitive is at a seam (``max(a, b)`` with :math:`a_0 =
b_0`, ``abs`` at 0, ``relu``, ``clamp`` at a bound, ``reduce_max``, ``sort`` and
``top_k`` with equal values, ``cummax``, and ``where``/``select_n`` whose predicate is an
ordering comparison ``<``, ``<=``, ``>``, ``>=`` of values with a series) it takes the branch
the trajectory moves into for :math:`t > t_0`: operands are compared by their coefficient
vectors :math:`(x_0, x_1, \dots)` lexicographically, i.e. by the first coefficient where they
differ. So the series is the right-sided expansion of the piecewise-smooth function, the one
``jnp.maximum`` follows, and smooth functions built from pieces stay exact at their seams
(``softplus(x) = max(x, 0) + log1p(exp(-|x|))``). The branch is fixed order by order: at
order k only coefficients :math:`0 \dots k` are known, and while operands agree on those, either
branch gives the same coefficients of ``max``, ``abs`` or ``sort``. For a ``select_n`` the
predicate known at order k picks coefficient k, so its branches should agree where its
predicate ties (true of continuous piecewise functions such as ``elu``).

Not covered by the rule, by design: equality tests (``==``, ``!=``) keep their primal value,
since they patch isolated points (``jnp.sinc``'s ``x == 0``), not pieces; discontinuous
primitives (``sign``, ``floor``, ``round``, ``rem``'s quotient) have no series past their value;
a predicate turned into numbers (``(x > 0) * x``) is piecewise constant and takes its primal
value, so write ``jnp.where`` or ``jnp.maximum`` for a right-sided kink; max pooling
(``reduce_window_max``) is expanded by nested JVPs (:mod:`.control`), exact off ties, and at a
tie whose elements' series differ raises (``equinox.error_if``) rather than take JAX's choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .coeffs import Coeffs, zero_to

__all__ = ["COMPARISONS", "PIECEWISE_RULES", "PREDICATE_AWARE", "lex_sign"]


def _side(aux, first, diff_k, key="side"):
    # +1 / -1 once the first differing coefficient of a − b is known, 0 while tied.
    if key not in aux:
        aux[key] = jnp.sign(first)
    aux[key] = jnp.where(aux[key] == 0, jnp.sign(diff_k), aux[key])
    return aux[key]


def lex_sign(diffs: jax.Array) -> jax.Array:
    """Sign of the first nonzero entry along axis 0 of ``diffs`` (0 where all are zero): the
    lexicographic comparison of two coefficient vectors from their difference."""
    out = jnp.zeros(diffs.shape[1:], diffs.dtype)
    for d in diffs[::-1]:
        out = jnp.where(d != 0, jnp.sign(d), out)
    return out


def _pair(a, b, k, like):
    like = a[k] if a[k] is not None else (b[k] if b[k] is not None else like)
    return zero_to(a[k], like), zero_to(b[k], like)


def _extremum(greater, key="side"):
    def rule(k, xs, ys, aux, eqn):
        a, b = xs
        ak, bk = _pair(a, b, k, ys[0])
        side = _side(aux, a[0] - b[0], ak - bk, key)  # +1: a is the larger for t > t0
        return jnp.where(side >= 0 if greater else side <= 0, ak, bk)

    return rule


def _abs_rule(k, xs, ys, aux, eqn):
    x = xs[0]
    if jnp.iscomplexobj(x[0]):
        return _complex_abs(k, x, ys, aux)
    if x[k] is None and "side" in aux:
        return None
    xk = zero_to(x[k], x[0])
    return _side(aux, x[0], xk) * xk


def _modulus_series(x, k, r, lo):
    # r = |x| from r² = Re(x x̄): r_k = (s_k − Σ_{j=1}^{k−1} r_j r_{k−j}) / (2 r_0), x_j for j ≥ lo.
    s = sum(
        jnp.real(x[j] * jnp.conj(x[k + 2 * lo - j]))
        for j in range(lo, k + lo + 1)
        if x[j] is not None and x[k + 2 * lo - j] is not None
    )
    s = s - sum(r[j] * r[k - j] for j in range(1, k))
    return s / jnp.where(r[0] == 0, 1, 2 * r[0])


def _complex_abs(k, x, ys, aux):
    # |x| = √(x x̄) where x_0 ≠ 0; at x_0 = 0, |x(t)| = t |w(t)| with w_j = x_{j+1} (t > 0).
    r = aux.setdefault("r", [ys[0]])
    r.append(_modulus_series(x, k, r, 0))
    w = aux.setdefault("w", [])
    if k == 1:
        w.append(jnp.abs(zero_to(x[1], x[0])))
    else:
        w.append(_modulus_series(x, k - 1, w, 1))
    return jnp.where(ys[0] == 0, w[k - 1], r[k])


def _clamp_rule(k, xs, ys, aux, eqn):
    # clamp(lo, x, hi) = min(max(x, lo), hi), each piece by the tie rule.
    lo, x, hi = xs
    m = aux.setdefault("m", [jnp.maximum(x[0], lo[0])])
    m.append(_extremum(True, "lo")(k, [x, lo], m, aux, eqn))
    return _extremum(False, "hi")(k, [Coeffs(m), hi], ys, aux, eqn)


# -- predicates ---------------------------------------------------------------------------

COMPARISONS = {"gt": jnp.greater, "ge": jnp.greater_equal, "lt": jnp.less, "le": jnp.less_equal}


def _comparison(name):
    # The predicate known at order k: the comparison of 0 with the lexicographic sign of a − b.
    def rule(k, xs, ys, aux, eqn):
        a, b = xs
        ak, bk = _pair(a, b, k, a[0] - b[0])
        side = _side(aux, a[0] - b[0], ak - bk)
        return COMPARISONS[name](side, 0)

    return rule


def _logic(fn):
    def rule(k, xs, ys, aux, eqn):
        return fn(*[x[k] if x[k] is not None else x[0] for x in xs])

    return rule


# Primitives that read a predicate series (coefficient k: the predicate known at order k);
# every other consumer of a predicate sees its primal value.
PREDICATE_AWARE = {"select_n", "and", "or", "not", "xor"}


# -- reductions and orderings -----------------------------------------------------------------


def _flat(v, axes):
    # reduced axes last, as one
    v = jnp.moveaxis(v, axes, tuple(range(v.ndim - len(axes), v.ndim)))
    return v.reshape(v.shape[: v.ndim - len(axes)] + (-1,))


def _reduce_extremum(greater):
    # The element whose coefficient vector (x_0 … x_k) is the lexicographic max (min): a sort of
    # the reduced elements by those keys (exact comparisons of one array, also under jit).
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        if x[k] is None:
            return None
        axes = tuple(eqn.params["axes"])
        keys = [_flat(key, axes) for key in _lex_keys(xs, k, 1)]
        if greater:
            keys = [-key for key in keys]
        iota = lax.broadcasted_iota(jnp.int32, keys[0].shape, keys[0].ndim - 1)
        first = lax.sort([*keys, iota], dimension=keys[0].ndim - 1, is_stable=True, num_keys=len(keys))[-1][..., :1]
        return jnp.take_along_axis(_flat(x[k], axes), first, axis=-1)[..., 0]

    return rule


def _lex_keys(xs, k, num_keys):
    keys = []
    for x in xs[:num_keys]:
        if jnp.issubdtype(x[0].dtype, jnp.inexact):
            keys += [lax.stop_gradient(zero_to(x[j], x[0])) for j in range(k + 1)]
        else:
            keys.append(x[0])
    return keys


def _sort_rule(k, xs, ys, aux, eqn):
    # Sort by the coefficient vectors lexicographically: the primal order, ties broken by the
    # series (the order for t > t0). Integer operands (argsort's iota) keep their primal.
    dim, num_keys = eqn.params["dimension"], eqn.params["num_keys"]
    keys = _lex_keys(xs, k, num_keys)
    iota = lax.broadcasted_iota(jnp.int32, xs[0][0].shape, dim)
    perm = lax.sort([*keys, iota], dimension=dim, is_stable=True, num_keys=len(keys))[-1]
    out = []
    for x, y in zip(xs, ys):
        if y is None or x[k] is None:
            out.append(None)
        else:
            out.append(jnp.take_along_axis(x[k], perm, axis=dim))
    return out


def _top_k_rule(k, xs, ys, aux, eqn):
    x = xs[0]
    n = eqn.params["k"]
    axis = eqn.params.get("axis", x[0].ndim - 1) % x[0].ndim
    keys = [-key for key in _lex_keys(xs, k, 1)]
    iota = lax.broadcasted_iota(jnp.int32, x[0].shape, axis)
    perm = lax.sort([*keys, iota], dimension=axis, is_stable=True, num_keys=len(keys))[-1]
    perm = lax.slice_in_dim(perm, 0, n, axis=axis)
    return [None if x[k] is None else jnp.take_along_axis(x[k], perm, axis=axis), None]


def _cumulative_extremum(greater):
    # Running lexicographic max (min) of the coefficient vectors along the axis.
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        axis, reverse = eqn.params["axis"], eqn.params["reverse"]
        stack = jnp.stack([zero_to(x[j], x[0]) for j in range(k + 1)])

        def combine(a, b):
            s = lex_sign(b - a)
            take_b = s > 0 if greater else s < 0
            return jnp.where(take_b[None], b, a)

        out = lax.associative_scan(combine, lax.stop_gradient(stack), reverse=reverse, axis=axis + 1)
        # pick x_k where the winner's coefficient vector equals x's (the argmax), differentiably
        return _winner_coefficient(x[k], stack, out, axis, reverse)

    return rule


def _winner_coefficient(xk, stack, out, axis, reverse):
    # index of the winning element for each position: the latest (earliest) element whose
    # coefficient vector equals the running extremum
    n = stack.shape[axis + 1]
    same = jnp.all(stack == out, axis=0)
    iota = lax.broadcasted_iota(jnp.int32, same.shape, axis)
    idx = jnp.where(same, iota, -1 if not reverse else n)
    idx = lax.cummax(idx, axis=axis, reverse=False) if not reverse else lax.cummin(idx, axis=axis, reverse=True)
    return jnp.take_along_axis(xk, idx, axis=axis)


PIECEWISE_RULES = {
    "max": _extremum(True),
    "min": _extremum(False),
    "abs": _abs_rule,
    "clamp": _clamp_rule,
    "and": _logic(jnp.logical_and),
    "or": _logic(jnp.logical_or),
    "xor": _logic(jnp.logical_xor),
    "not": _logic(jnp.logical_not),
    **{name: _comparison(name) for name in COMPARISONS},
    "reduce_max": _reduce_extremum(True),
    "reduce_min": _reduce_extremum(False),
    "sort": _sort_rule,
    "top_k": _top_k_rule,
    "cummax": _cumulative_extremum(True),
    "cummin": _cumulative_extremum(False),
}
