r"""Taylor-coefficient rules for incremental Taylor mode, one recurrence per primitive family.

Coefficients are normalized, :math:`x_k = x^{(k)}/k!` (the TaylorSeries.jl convention), so
products are Cauchy sums and no factorials appear. A rule computes coefficient :math:`k \ge 1`
of a primitive's output from coefficients :math:`0 \dots k` of its inputs and :math:`0 \dots
k-1` of its output (Griewank & Walther, *Evaluating Derivatives*, ch. 13):

``rule(k, xs, ys, aux, eqn) -> y_k``

* ``xs``: one :class:`Coeffs` per input: ``xs[i][j]`` is :math:`x_{i,j}`, or ``None`` for a
  structural zero (constants and parameters have no series: every coefficient past 0 is None);
* ``ys``: the output's coefficients so far, ``ys[0]`` being the primitive's value;
* ``aux``: a dict the rule owns for this equation, holding auxiliary series (the cosine
  beside a sine, :math:`1 - \tanh^2` beside a tanh), extended one coefficient per call.

Returning ``None`` means a zero coefficient. Coefficient 0 is always the primitive itself.
Most nonlinear rules come from :math:`y' = g\,x'`, i.e. :math:`k y_k = \sum_{j=1}^k j\,x_j
g_{k-j}`, with :math:`g` itself a series built from :math:`y`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
from jax import lax

__all__ = ["CONSTANT", "LINEAR", "RULES", "Coeffs"]


class Coeffs:
    """The Taylor coefficients of one value: a list, or a constant (no series)."""

    __slots__ = ("c", "const")

    def __init__(self, c, const: bool = False):
        self.c = c if const else list(c)
        self.const = const

    def __getitem__(self, j):
        if self.const:
            return self.c if j == 0 else None
        return self.c[j] if j < len(self.c) else None


# -- sums that skip structural zeros ----------------------------------------------------------


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _total(terms):
    out = None
    for t in terms:
        out = _add(out, t)
    return out


def cauchy(a, b, k: int, lo: int = 0, hi: int | None = None):
    r""":math:`\sum_{j=lo}^{hi} a_j\, b_{k-j}` (``hi`` defaults to k)."""
    hi = k if hi is None else hi
    return _total(a[j] * b[k - j] for j in range(lo, hi + 1) if a[j] is not None and b[k - j] is not None)


def chain(x, g, k: int):
    r"""Coefficient k of y where :math:`y' = g\, x'`: :math:`\frac1k \sum_{j=1}^k j\, x_j
    g_{k-j}`."""
    s = _total(j * x[j] * g[k - j] for j in range(1, k + 1) if x[j] is not None and g[k - j] is not None)
    return None if s is None else s / k


def _series(aux, name, first):
    if name not in aux:
        aux[name] = [first]
    return aux[name]


def _zero_to(x, like):
    return jnp.zeros_like(like) if x is None else x


# -- arithmetic -------------------------------------------------------------------------------


def _add_rule(k, xs, ys, aux, eqn):
    return _add(xs[0][k], xs[1][k])


def _sub_rule(k, xs, ys, aux, eqn):
    a, b = xs[0][k], xs[1][k]
    return a if b is None else (-b if a is None else a - b)


def _neg_rule(k, xs, ys, aux, eqn):
    return None if xs[0][k] is None else -xs[0][k]


def _mul_rule(k, xs, ys, aux, eqn):
    return cauchy(xs[0], xs[1], k)


def _div_rule(k, xs, ys, aux, eqn):
    # a = y·b  ⇒  y_k = (a_k − Σ_{j<k} y_j b_{k−j}) / b_0
    a, b = xs
    s = cauchy(Coeffs(ys), b, k, hi=k - 1)
    num = a[k] if s is None else _zero_to(a[k], s) - s
    return None if num is None else num / b[0]


def _bilinear(prim):
    # dot_general and convolutions: Σ_j B(a_j, b_{k−j}); one product per order when one
    # operand is a parameter.
    def rule(k, xs, ys, aux, eqn):
        a, b = xs
        return _total(prim.bind(a[j], b[k - j], **eqn.params) for j in range(k + 1) if a[j] is not None and b[k - j] is not None)

    return rule


# -- exponential family -----------------------------------------------------------------------


def _exp_rule(k, xs, ys, aux, eqn):
    # y' = y x'
    return chain(xs[0], Coeffs(ys), k)


def _expm1_rule(k, xs, ys, aux, eqn):
    # y' = (y + 1) x'
    g = Coeffs([ys[0] + 1] + ys[1:])
    return chain(xs[0], g, k)


def _log_from(x0):
    # y = log(x) with x_0 replaced by x0 (log1p: x0 = 1 + x_0):  x y' = x'
    # ⇒  y_k = (x_k − (1/k) Σ_{j=1}^{k−1} j y_j x_{k−j}) / x_0
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        s = _total(j * ys[j] * x[k - j] for j in range(1, k) if x[k - j] is not None)
        num = x[k] if s is None else _zero_to(x[k], s) - s / k
        return None if num is None else num / x0(x[0])

    return rule


_log_rule = _log_from(lambda x0: x0)


def _power(p, k, x, ys):
    # y = x^p:  x y' = p y x'  ⇒  y_k = (1/(k x_0)) Σ_{j=0}^{k−1} (p(k−j) − j) x_{k−j} y_j
    s = _total((p * (k - j) - j) * x[k - j] * ys[j] for j in range(k) if x[k - j] is not None)
    return None if s is None else s / (k * x[0])


def _sqrt_rule(k, xs, ys, aux, eqn):
    # y² = x  ⇒  y_k = (x_k − Σ_{j=1}^{k−1} y_j y_{k−j}) / (2 y_0)
    y = Coeffs(ys)
    s = cauchy(y, y, k, lo=1, hi=k - 1)
    x = xs[0][k]
    num = x if s is None else _zero_to(x, s) - s
    return None if num is None else num / (2 * ys[0])


def _rsqrt_rule(k, xs, ys, aux, eqn):
    return _power(-0.5, k, xs[0], ys)


def _cbrt_rule(k, xs, ys, aux, eqn):
    return _power(1.0 / 3.0, k, xs[0], ys)


def _pow_rule(k, xs, ys, aux, eqn):
    x, p = xs
    if p.const:
        return _power(p[0], k, x, ys)
    # x^p with a varying exponent: y = exp(p log x), so y' = y (p log x)'.
    logx = _series(aux, "log", jnp.log(x[0]))
    logx.append(_log_rule(k, [x], logx, aux, eqn))
    m = _series(aux, "m", p[0] * logx[0])
    m.append(cauchy(p, Coeffs(logx), k))
    return chain(Coeffs(m), Coeffs(ys), k)


def _integer_pow_rule(k, xs, ys, aux, eqn):
    # Repeated products (exact where x_0 = 0, unlike the power rule): powers[m] = x^(m+1).
    n = eqn.params["y"]
    x = xs[0]
    if n == 0:
        return None
    powers = aux.setdefault("powers", [[x[0] ** (m + 1)] for m in range(abs(n))])
    powers[0].append(x[k])
    for m in range(1, abs(n)):
        powers[m].append(cauchy(Coeffs(powers[m - 1]), x, k))
    if n > 0:
        return powers[n - 1][k]
    # x^n = 1 / x^|n|:  y x^|n| = 1
    s = cauchy(Coeffs(ys), Coeffs(powers[-1]), k, hi=k - 1)
    return None if s is None else -s / powers[-1][0]


def _square_rule(k, xs, ys, aux, eqn):
    return cauchy(xs[0], xs[0], k)


# -- trigonometric and hyperbolic ---------------------------------------------------------------


def _sin_cos(which):
    # s' = c x',  c' = −s x': the companion series lives in aux.
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        other_first = jnp.cos(x[0]) if which == "sin" else jnp.sin(x[0])
        other = _series(aux, "other", other_first)
        y_k = chain(x, Coeffs(other), k)
        if which == "cos":
            y_k = None if y_k is None else -y_k
        full = Coeffs(ys + [y_k])
        o_k = chain(x, full, k)
        if which == "sin":
            o_k = None if o_k is None else -o_k
        other.append(o_k)
        return y_k

    return rule


def _from_square(sign: float, const: float):
    # y' = g x' with g = const + sign·y² (tanh: 1 − y², tan: 1 + y²).
    def rule(k, xs, ys, aux, eqn):
        g = _series(aux, "g", const + sign * ys[0] ** 2)
        y_k = chain(xs[0], Coeffs(g), k)
        y = Coeffs(ys + [y_k])
        sq = cauchy(y, y, k)
        g.append(None if sq is None else sign * sq)
        return y_k

    return rule


def _logistic_rule(k, xs, ys, aux, eqn):
    # y' = (y − y²) x'
    g = _series(aux, "g", ys[0] - ys[0] ** 2)
    y_k = chain(xs[0], Coeffs(g), k)
    y = Coeffs(ys + [y_k])
    sq = cauchy(y, y, k)
    g.append(_add(y_k, None if sq is None else -sq))
    return y_k


def _atan_rule(k, xs, ys, aux, eqn):
    # y' = x' / q with q = 1 + x²: d = y' is found by dividing, y_k = d_{k−1} / k.
    x = xs[0]
    q = _series(aux, "q", 1 + x[0] ** 2)
    q.append(cauchy(x, x, k))
    d = aux.setdefault("d", [])
    dx = Coeffs([None if x[j + 1] is None else (j + 1) * x[j + 1] for j in range(k)])
    s = cauchy(Coeffs(d), Coeffs(q), k - 1, hi=k - 2)  # Σ_{j<k−1} d_j q_{k−1−j}
    num = dx[k - 1] if s is None else _zero_to(dx[k - 1], s) - s
    d.append(None if num is None else num / q[0])
    return None if d[k - 1] is None else d[k - 1] / k


def _erf(sign: float):
    # erf: y' = (2/√π) e x', erfc: y' = −(2/√π) e x', with e = exp(−x²) and e' = e·(−x²)'.
    scale = sign * 2 / math.sqrt(math.pi)

    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        q = _series(aux, "q", -(x[0] ** 2))
        e = _series(aux, "e", jnp.exp(q[0]))
        y_k = chain(x, Coeffs([None if c is None else scale * c for c in e]), k)
        sq = cauchy(x, x, k)
        q.append(None if sq is None else -sq)
        e.append(chain(Coeffs(q), Coeffs(e), k))
        return y_k

    return rule


# -- piecewise-smooth: the branch the trajectory takes for t > t0 ------------------------------
#
# At a tie (a₀ = b₀ in max/min, x₀ = 0 in abs) the branch is decided by the first coefficient
# where the operands differ, i.e. by the side the trajectory actually moves to for t > t0, so
# the series is the right-sided expansion of the piecewise-smooth function. That also keeps
# smooth functions built from these pieces exact at their seams: jax.nn.softplus(x) =
# max(x, 0) + log1p(exp(-|x|)) at x = 0. ``side`` (+1, -1, or 0 while still tied) is fixed
# order by order; while tied the operands' coefficients so far agree, so either is right.


def _side(aux, first, diff_k):
    if "side" not in aux:
        aux["side"] = jnp.sign(first)
    aux["side"] = jnp.where(aux["side"] == 0, jnp.sign(diff_k), aux["side"])
    return aux["side"]


def _max_min(greater):
    def rule(k, xs, ys, aux, eqn):
        a, b = xs
        if a[k] is None and b[k] is None and "side" in aux:
            return None
        like = a[k] if a[k] is not None else (b[k] if b[k] is not None else ys[0])
        ak, bk = _zero_to(a[k], like), _zero_to(b[k], like)
        side = _side(aux, a[0] - b[0], ak - bk)  # +1: a is the larger for t > t0
        return jnp.where(side >= 0 if greater else side <= 0, ak, bk)

    return rule


def _abs_rule(k, xs, ys, aux, eqn):
    x = xs[0]
    if x[k] is None and "side" in aux:
        return None
    xk = _zero_to(x[k], x[0])
    return _side(aux, x[0], xk) * xk


def _reduce_extremum(arg):
    # The coefficient of the element where the primal attains its max (min); ties: the first.
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        if x[k] is None:
            return None
        axes = tuple(eqn.params["axes"])

        def flat(v):  # reduced axes last, as one
            v = jnp.moveaxis(v, axes, tuple(range(v.ndim - len(axes), v.ndim)))
            return v.reshape(v.shape[: v.ndim - len(axes)] + (-1,))

        if "index" not in aux:
            aux["index"] = arg(flat(x[0]), axis=-1)[..., None]
        return jnp.take_along_axis(flat(x[k]), aux["index"], axis=-1)[..., 0]

    return rule


# -- registry ---------------------------------------------------------------------------------

RULES: dict[str, Callable] = {
    "add": _add_rule,
    "add_any": _add_rule,
    "sub": _sub_rule,
    "neg": _neg_rule,
    "mul": _mul_rule,
    "div": _div_rule,
    "dot_general": _bilinear(lax.dot_general_p),
    "conv_general_dilated": _bilinear(lax.conv_general_dilated_p),
    "exp": _exp_rule,
    "expm1": _expm1_rule,
    "log": _log_rule,
    "log1p": _log_from(lambda x0: 1 + x0),
    "sqrt": _sqrt_rule,
    "rsqrt": _rsqrt_rule,
    "cbrt": _cbrt_rule,
    "pow": _pow_rule,
    "integer_pow": _integer_pow_rule,
    "square": _square_rule,
    "sin": _sin_cos("sin"),
    "cos": _sin_cos("cos"),
    "tanh": _from_square(-1.0, 1.0),
    "tan": _from_square(1.0, 1.0),
    "logistic": _logistic_rule,
    "atan": _atan_rule,
    "erf": _erf(1.0),
    "erfc": _erf(-1.0),
    "max": _max_min(True),
    "min": _max_min(False),
    "abs": _abs_rule,
    "reduce_max": _reduce_extremum(jnp.argmax),
    "reduce_min": _reduce_extremum(jnp.argmin),
}

# Piecewise-constant primitives with floating-point outputs: no series past order 0.
CONSTANT = {"sign", "floor", "ceil", "round", "stop_gradient"}

# Linear (structural) primitives: coefficient k is the primitive applied to coefficient k of
# the floating-point operands; integer and boolean operands (indices, predicates) keep their
# primal value, and a constant floating-point operand contributes zeros past order 0.
LINEAR = {
    "concatenate",
    "stack",
    "reshape",
    "broadcast_in_dim",
    "transpose",
    "slice",
    "dynamic_slice",
    "dynamic_update_slice",
    "gather",
    "squeeze",
    "expand_dims",
    "reduce_sum",
    "convert_element_type",
    "copy",
    "copy_p",
    "rev",
    "pad",
    "select_n",
    "cumsum",
    "reduce_precision",
    "real",
}
