"""Rules for arithmetic, powers, exponentials and logarithms (see :mod:`.rules` for the
convention ``rule(k, xs, ys, aux, eqn) -> y_k``)."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._jax import is_tracer
from .coeffs import Coeffs, add, cauchy, chain, series, total, zero_to

__all__ = ["ARITH_RULES", "log_rule", "power"]


# -- arithmetic -------------------------------------------------------------------------------


def _add_rule(k, xs, ys, aux, eqn):
    return add(xs[0][k], xs[1][k])


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
    num = a[k] if s is None else zero_to(a[k], s) - s
    return None if num is None else num / b[0]


def _bilinear(prim):
    # dot_general and convolutions: Σ_j B(a_j, b_{k−j}); one product per order when one
    # operand is a parameter.
    def rule(k, xs, ys, aux, eqn):
        a, b = xs
        return total(prim.bind(a[j], b[k - j], **eqn.params) for j in range(k + 1) if a[j] is not None and b[k - j] is not None)

    return rule


# -- exponential family -----------------------------------------------------------------------


def _exp_rule(k, xs, ys, aux, eqn):
    # y' = y x'
    return chain(xs[0], Coeffs(ys), k)


def _exp2_rule(k, xs, ys, aux, eqn):
    # y' = ln2 · y x'
    s = chain(xs[0], Coeffs(ys), k)
    return None if s is None else math.log(2.0) * s


def _expm1_rule(k, xs, ys, aux, eqn):
    # y' = (y + 1) x'
    g = Coeffs([ys[0] + 1] + ys[1:])
    return chain(xs[0], g, k)


def _log_from(x0):
    # y = log(x) with x_0 replaced by x0 (log1p: x0 = 1 + x_0):  x y' = x'
    # ⇒  y_k = (x_k − (1/k) Σ_{j=1}^{k−1} j y_j x_{k−j}) / x_0
    def rule(k: int, xs: list[Coeffs], ys: list, aux: dict, eqn: Any) -> Any:
        r"""Coefficient k of :math:`y = \log x` from :math:`x y' = x'`:
        :math:`y_k = (x_k - \frac1k \sum_{j=1}^{k-1} j\, y_j x_{k-j}) / x_0`
        (for ``log1p``, :math:`x_0` is replaced by :math:`1 + x_0`)."""
        x = xs[0]
        s = total(j * ys[j] * x[k - j] for j in range(1, k) if x[k - j] is not None)
        num = x[k] if s is None else zero_to(x[k], s) - s / k
        return None if num is None else num / x0(x[0])

    return rule


_log_rule = _log_from(lambda x0: x0)


def _power(p: Any, k: int, x: Coeffs, ys: list) -> Any:
    r"""Coefficient k of :math:`y = x^p` from :math:`x y' = p\, y x'`:
    :math:`y_k = \frac{1}{k x_0} \sum_{j=0}^{k-1} (p(k-j) - j)\, x_{k-j} y_j`; divides by
    :math:`x_0`, so not for :math:`x_0 = 0` (integer powers use repeated products instead)."""
    # y = x^p:  x y' = p y x'  ⇒  y_k = (1/(k x_0)) Σ_{j=0}^{k−1} (p(k−j) − j) x_{k−j} y_j
    s = total((p * (k - j) - j) * x[k - j] * ys[j] for j in range(k) if x[k - j] is not None)
    return None if s is None else s / (k * x[0])


def _sqrt_rule(k, xs, ys, aux, eqn):
    # y² = x  ⇒  y_k = (x_k − Σ_{j=1}^{k−1} y_j y_{k−j}) / (2 y_0)
    y = Coeffs(ys)
    s = cauchy(y, y, k, lo=1, hi=k - 1)
    x = xs[0][k]
    num = x if s is None else zero_to(x, s) - s
    return None if num is None else num / (2 * ys[0])


def _rsqrt_rule(k, xs, ys, aux, eqn):
    return _power(-0.5, k, xs[0], ys)


def _cbrt_rule(k, xs, ys, aux, eqn):
    return _power(1.0 / 3.0, k, xs[0], ys)


def _integer_series(n: int, k: int, x, aux: dict, key):
    # x^n by repeated products (exact where x_0 = 0, unlike the power rule): powers[m] = x^(m+1).
    powers = aux.setdefault(key, [[x[0] ** (m + 1)] for m in range(abs(n))])
    powers[0].append(x[k])
    for m in range(1, abs(n)):
        powers[m].append(cauchy(Coeffs(powers[m - 1]), x, k))
    if n > 0:
        return powers[n - 1][k]
    # x^n = 1 / x^|n|:  y x^|n| = 1
    ys = aux.setdefault((key, "inverse"), [1 / powers[-1][0]])
    s = cauchy(Coeffs(ys), Coeffs(powers[-1]), k, hi=k - 1)
    ys.append(None if s is None else -s / powers[-1][0])
    return ys[k]


def _integer_pow_rule(k, xs, ys, aux, eqn):
    n = eqn.params["y"]
    return None if n == 0 else _integer_series(n, k, xs[0], aux, "powers")


def _integer_exponents(p):
    """The exponent's values as Python ints when it is a concrete array of integer-valued floats
    (``z ** 3.0``, ``z ** jnp.array([1., 2.])``), else None."""
    if is_tracer(p):
        return None
    p = np.asarray(p)
    if not (np.all(np.isfinite(p)) and np.all(p == np.round(p))) or np.max(np.abs(p), initial=0) > _MAX_INTEGER_EXPONENT:
        return None
    return sorted({int(v) for v in p.ravel()})


_MAX_INTEGER_EXPONENT = 64


def _pow_rule(k, xs, ys, aux, eqn):
    x, p = xs
    if p.const:
        ints = aux["ints"] if "ints" in aux else aux.setdefault("ints", _integer_exponents(p[0]))
        if ints is not None:
            # Integer-valued float exponents: the integer recurrence, exact at x_0 = 0 and for
            # negative bases (the power rule divides by x_0).
            out = None
            for n in ints:
                y_n = None if n == 0 else _integer_series(n, k, x, aux, ("powers", n))
                y_n = zero_to(y_n, x[0])
                out = y_n if len(ints) == 1 else jnp.where(p[0] == n, y_n, zero_to(out, x[0]))
            return out
        # A non-integer exponent at x_0 = 0: x^p = O(t^p), so coefficients below p vanish and
        # the ones above do not exist (the recurrence gives inf there, as nested JVPs do).
        y_k = _power(p[0], k, x, ys)
        return None if y_k is None else jnp.where((x[0] == 0) & (k < p[0]), 0.0, y_k)
    # x^p with a varying exponent: y = exp(p log x), so y' = y (p log x)'.
    logx = series(aux, "log", jnp.log(x[0]))
    logx.append(_log_rule(k, [x], logx, aux, eqn))
    m = series(aux, "m", p[0] * logx[0])
    m.append(cauchy(p, Coeffs(logx), k))
    return chain(Coeffs(m), Coeffs(ys), k)


def _square_rule(k, xs, ys, aux, eqn):
    return cauchy(xs[0], xs[0], k)


def _one_minus_square_rule(k, xs, ys, aux, eqn):
    # jax >= 0.12 (tanh's derivative): y = 1 − x²
    s = cauchy(xs[0], xs[0], k)
    return None if s is None else -s


ARITH_RULES = {
    "add": _add_rule,
    "add_any": _add_rule,
    "sub": _sub_rule,
    "neg": _neg_rule,
    "mul": _mul_rule,
    "div": _div_rule,
    "dot_general": _bilinear(lax.dot_general_p),
    "conv_general_dilated": _bilinear(lax.conv_general_dilated_p),
    "exp": _exp_rule,
    "exp2": _exp2_rule,
    "expm1": _expm1_rule,
    "log": _log_rule,
    "log1p": _log_from(lambda x0: 1 + x0),
    "sqrt": _sqrt_rule,
    "rsqrt": _rsqrt_rule,
    "cbrt": _cbrt_rule,
    "pow": _pow_rule,
    "integer_pow": _integer_pow_rule,
    "square": _square_rule,
    "one_minus_square": _one_minus_square_rule,
}

log_rule = _log_rule
power = _power
