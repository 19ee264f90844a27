r"""Rules for trigonometric, hyperbolic, inverse and special functions (see :mod:`.rules` for
the convention ``rule(k, xs, ys, aux, eqn) -> y_k``).

Inverse functions use :math:`y' = x' \, q^{p}` with :math:`q = a + b x^2` (``asin``:
:math:`(1 - x^2)^{-1/2}`, ``atanh``: :math:`(1 - x^2)^{-1}`, …), the power series of
:math:`q^p` by the power recurrence; ``lgamma`` and ``digamma`` compose their own Taylor
series (polygamma values at :math:`x_0`) with :math:`x(t) - x_0`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import polygamma

from .coeffs import Coeffs, add, cauchy, chain, series, zero_to
from .rules_arith import power

__all__ = ["SPECIAL_RULES"]


# -- trigonometric and hyperbolic ---------------------------------------------------------------


def _sin_cos(which, sign=-1.0, fns=(jnp.sin, jnp.cos)):
    # s' = c x',  c' = −s x' (sinh, cosh: c' = s x'): the companion series lives in aux.
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        other_first = fns[1](x[0]) if which == "sin" else fns[0](x[0])
        other = series(aux, "other", other_first)
        y_k = chain(x, Coeffs(other), k)
        if which == "cos" and sign < 0:
            y_k = None if y_k is None else -y_k
        full = Coeffs(ys + [y_k])
        o_k = chain(x, full, k)
        if which == "sin" and sign < 0:
            o_k = None if o_k is None else -o_k
        other.append(o_k)
        return y_k

    return rule


def _from_square(sign: float, const: float):
    # y' = g x' with g = const + sign·y² (tanh: 1 − y², tan: 1 + y²).
    def rule(k, xs, ys, aux, eqn):
        g = series(aux, "g", const + sign * ys[0] ** 2)
        y_k = chain(xs[0], Coeffs(g), k)
        y = Coeffs(ys + [y_k])
        sq = cauchy(y, y, k)
        g.append(None if sq is None else sign * sq)
        return y_k

    return rule


def _logistic_rule(k, xs, ys, aux, eqn):
    # y' = (y − y²) x'
    g = series(aux, "g", ys[0] - ys[0] ** 2)
    y_k = chain(xs[0], Coeffs(g), k)
    y = Coeffs(ys + [y_k])
    sq = cauchy(y, y, k)
    g.append(add(y_k, None if sq is None else -sq))
    return y_k


def _atan_rule(k, xs, ys, aux, eqn):
    # y' = x' / q with q = 1 + x²: d = y' is found by dividing, y_k = d_{k−1} / k.
    x = xs[0]
    q = series(aux, "q", 1 + x[0] ** 2)
    q.append(cauchy(x, x, k))
    d = aux.setdefault("d", [])
    dx = Coeffs([None if x[j + 1] is None else (j + 1) * x[j + 1] for j in range(k)])
    s = cauchy(Coeffs(d), Coeffs(q), k - 1, hi=k - 2)  # Σ_{j<k−1} d_j q_{k−1−j}
    num = dx[k - 1] if s is None else zero_to(dx[k - 1], s) - s
    d.append(None if num is None else num / q[0])
    return None if d[k - 1] is None else d[k - 1] / k


def _erf(sign: float):
    # erf: y' = (2/√π) e x', erfc: y' = −(2/√π) e x', with e = exp(−x²) and e' = e·(−x²)'.
    scale = sign * 2 / math.sqrt(math.pi)

    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        q = series(aux, "q", -(x[0] ** 2))
        e = series(aux, "e", jnp.exp(q[0]))
        y_k = chain(x, Coeffs([None if c is None else scale * c for c in e]), k)
        sq = cauchy(x, x, k)
        q.append(None if sq is None else -sq)
        e.append(chain(Coeffs(q), Coeffs(e), k))
        return y_k

    return rule


def _inverse(a: float, b: float, p: float, scale: float = 1.0):
    # y' = scale · x' q^p with q = a + b x²: asin, acos, asinh, acosh, atanh.
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        q = series(aux, "q", a + b * x[0] ** 2)
        g = series(aux, "g", scale * q[0] ** p)
        y_k = chain(x, Coeffs(g), k)
        sq = cauchy(x, x, k)
        q.append(None if sq is None else b * sq)
        g.append(power(p, k, Coeffs(q), g))
        return y_k

    return rule


def _atan2_rule(k, xs, ys, aux, eqn):
    # y = atan2(a, b): y' = (b a' − a b') / q, q = a² + b²; d = y' by division, y_k = d_{k−1}/k.
    a, b = xs
    q = series(aux, "q", a[0] ** 2 + b[0] ** 2)
    if k > 1:
        q.append(add(cauchy(a, a, k - 1), cauchy(b, b, k - 1)))
    da = Coeffs([None if a[j + 1] is None else (j + 1) * a[j + 1] for j in range(k)])
    db = Coeffs([None if b[j + 1] is None else (j + 1) * b[j + 1] for j in range(k)])
    bad, adb = cauchy(b, da, k - 1), cauchy(a, db, k - 1)
    n = bad if adb is None else (-adb if bad is None else bad - adb)
    d = aux.setdefault("d", [])
    s = cauchy(Coeffs(d), Coeffs(q), k - 1, hi=k - 2)
    num = n if s is None else zero_to(n, s) - s
    d.append(None if num is None else num / q[0])
    return None if d[k - 1] is None else d[k - 1] / k


def _erf_inv_rule(k, xs, ys, aux, eqn):
    # y = erfinv(x): y' = (√π/2) e x' with e = exp(y²), e' = e (y²)'.
    x = xs[0]
    s = series(aux, "s", ys[0] ** 2)
    e = series(aux, "e", jnp.exp(s[0]))
    y_k = chain(x, Coeffs([None if c is None else (math.sqrt(math.pi) / 2) * c for c in e]), k)
    y = Coeffs(ys + [y_k])
    s.append(cauchy(y, y, k))
    e.append(chain(Coeffs(s), Coeffs(e), k))
    return y_k


def _composed(derivative):
    # y = g(x) with g's Taylor series at x_0 known: g_n = g^(n)(x_0)/n!; y = Σ_n g_n u^n,
    # u = x − x_0 (u_0 = 0, so u^n contributes from order n on).
    def rule(k, xs, ys, aux, eqn):
        x = xs[0]
        u = Coeffs([None] + [x[j] for j in range(1, k + 1)])
        powers = aux.setdefault("u^n", [])  # powers[n-1][j]: coefficient j of u^n
        g = aux.setdefault("g", [])
        while len(g) < k:
            n = len(g) + 1
            g.append(derivative(n, x[0]) / math.factorial(n))
            powers.append([None] * n)
        for n in range(1, k + 1):
            col = powers[n - 1]
            col.append(u[k] if n == 1 else cauchy(Coeffs(powers[n - 2]), u, k))
        return _sum(g[n - 1] * powers[n - 1][k] for n in range(1, k + 1) if powers[n - 1][k] is not None)

    return rule


def _sum(terms):
    out = None
    for t in terms:
        out = add(out, t)
    return out


def _rem_rule(k, xs, ys, aux, eqn):
    # rem(a, b) = a − b·trunc(a/b): trunc is piecewise constant, its value the primal's.
    a, b = xs
    q = aux["q"] if "q" in aux else aux.setdefault("q", jnp.trunc(a[0] / b[0]))
    return add(a[k], None if b[k] is None else -q * b[k])


SPECIAL_RULES = {
    "sin": _sin_cos("sin"),
    "cos": _sin_cos("cos"),
    "sinh": _sin_cos("sin", 1.0, (jnp.sinh, jnp.cosh)),
    "cosh": _sin_cos("cos", 1.0, (jnp.sinh, jnp.cosh)),
    "tanh": _from_square(-1.0, 1.0),
    "tan": _from_square(1.0, 1.0),
    "logistic": _logistic_rule,
    "atan": _atan_rule,
    "asin": _inverse(1.0, -1.0, -0.5),
    "acos": _inverse(1.0, -1.0, -0.5, -1.0),
    "asinh": _inverse(1.0, 1.0, -0.5),
    "acosh": _inverse(-1.0, 1.0, -0.5),
    "atanh": _inverse(1.0, -1.0, -1.0),
    "atan2": _atan2_rule,
    "erf": _erf(1.0),
    "erfc": _erf(-1.0),
    "erf_inv": _erf_inv_rule,
    "lgamma": _composed(lambda n, x0: polygamma(n - 1, x0)),
    "digamma": _composed(lambda n, x0: polygamma(n, x0)),
    "rem": _rem_rule,
}
