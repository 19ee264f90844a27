"""Taylor coefficient storage and the sums every rule is built from (see :mod:`.rules`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Coeffs", "add", "cauchy", "chain", "series", "total", "zero_to"]


class Coeffs:
    """The Taylor coefficients of one value: a list, or a constant (no series)."""

    __slots__ = ("c", "const")

    def __init__(self, c, const: bool = False):
        self.c = c if const else list(c)
        self.const = const

    def __getitem__(self, j: int) -> Any:
        """Coefficient ``j``, or ``None`` (a structural zero) past the stored ones or above 0 for a constant."""
        if self.const:
            return self.c if j == 0 else None
        return self.c[j] if j < len(self.c) else None


# -- sums that skip structural zeros ----------------------------------------------------------


def add(a: Any, b: Any) -> Any:
    """a + b, where ``None`` is a structural zero (so ``add(None, None)`` is ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def total(terms: Iterable[Any]) -> Any:
    """The sum of ``terms`` by :func:`add`; ``None`` when there are none (or all are ``None``)."""
    out = None
    for t in terms:
        out = add(out, t)
    return out


def cauchy(a: Coeffs, b: Coeffs, k: int, lo: int = 0, hi: int | None = None) -> Any:
    r""":math:`\sum_{j=lo}^{hi} a_j\, b_{k-j}` (``hi`` defaults to k)."""
    hi = k if hi is None else hi
    return total(a[j] * b[k - j] for j in range(lo, hi + 1) if a[j] is not None and b[k - j] is not None)


def chain(x: Coeffs, g: Coeffs, k: int) -> Any:
    r"""Coefficient k of y where :math:`y' = g\, x'`: :math:`\frac1k \sum_{j=1}^k j\, x_j
    g_{k-j}`."""
    s = total(j * x[j] * g[k - j] for j in range(1, k + 1) if x[j] is not None and g[k - j] is not None)
    return None if s is None else s / k


def series(aux: dict, name: Hashable, first: Any) -> list:
    """The coefficient list a rule keeps in ``aux`` under ``name`` across orders, started as
    ``[first]`` on first use (e.g. the series of log x that the ``pow`` rule keeps)."""
    if name not in aux:
        aux[name] = [first]
    return aux[name]


def zero_to(x: Any, like: jax.Array) -> jax.Array:
    """``x``, or zeros shaped like ``like`` where ``x`` is a structural zero (``None``)."""
    return jnp.zeros_like(like) if x is None else x
