r"""Incremental Taylor mode along an ODE trajectory (Griewank & Walther ch. 13; the
``jetcoeffs!`` recurrence of TaylorIntegration.jl).

In normalized coefficients :math:`z_k = z^{(k)}/k!`, the solution of :math:`\dot z = f(t, z)`
through :math:`(t, z)` satisfies

.. math::  z_{k+1} = \frac{[f(t, z(t))]_k}{k+1},

and :math:`[f]_k` needs only coefficients :math:`0 \dots k` of :math:`z` and :math:`t`
(:math:`t_0 = t,\ t_1 = 1`, the rest zero). So f's jaxpr is evaluated once per order, each
equation producing one new coefficient from the cached lower ones of its inputs and outputs
(:mod:`.rules`). A linear layer costs one matmul per order and its weights carry no series; a
nonlinearity costs :math:`O(k)` elementwise work at order k. In total :math:`O(K^2)`
elementwise and :math:`O(K)` matmuls, against :math:`O(K^3)` for the recursive ``jet`` scheme.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .. import _jax
from . import rules as _rules
from ._inline import UnsupportedPrimitiveError, flatten
from .coeffs import Coeffs
from .rules_piecewise import COMPARISONS

__all__ = ["incremental_coefficients", "incremental_derivatives"]


def _is_float(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


class _Tape:
    """f's flat jaxpr with the Taylor coefficients of every value computed so far."""

    def __init__(self, jaxpr, consts, inputs):
        self.jaxpr = jaxpr
        self.env = {}
        self.aux = {}
        self.active = []  # indices of the equations that extend a series each order
        self.preds = set()  # boolean values with a series (ordering comparisons of series)
        for v, val in zip(self.jaxpr.constvars, consts):
            self.env[v] = Coeffs(val, const=True)
        for v, val in zip(self.jaxpr.invars, inputs):
            self.env[v] = val

    def read(self, v):
        if isinstance(v, _jax.Literal):
            return Coeffs(v.val, const=True)
        return self.env[v]

    def inputs(self, eqn):
        """The equation's inputs; a predicate series is its primal value for a consumer that
        does not follow the tie rule (see :mod:`.rules_piecewise`)."""
        xs = [self.read(v) for v in eqn.invars]
        if eqn.primitive.name in _rules.PREDICATE_AWARE:
            return xs
        return [Coeffs(x[0], const=True) if self._is_pred(v) else x for v, x in zip(eqn.invars, xs)]

    def _is_pred(self, v):
        return not isinstance(v, _jax.Literal) and v in self.preds

    def _used(self):
        """The variables some equation reads or f returns."""
        used = {v for v in self.jaxpr.outvars if not isinstance(v, _jax.Literal)}
        for eqn in self.jaxpr.eqns:
            used.update(v for v in eqn.invars if not isinstance(v, _jax.Literal))
        return used

    def _predicate(self, eqn, xs):
        # An ordering comparison of floats with a series, or logic on such predicates.
        name = eqn.primitive.name
        if name in COMPARISONS:
            return all(_is_float(v.aval) for v in eqn.invars if not isinstance(v, _jax.Literal))
        return name in _rules.PREDICATE_AWARE and name != "select_n" and any(self._is_pred(v) for v in eqn.invars)

    def order0(self):
        """Evaluate f (coefficient 0 of everything); values without a series become constants.

        An equation is constant when no input carries a series, when it is piecewise constant
        (:data:`.rules.CONSTANT`), or when none of its outputs that are used is floating point
        (indices, counters) and it is not an ordering comparison of series (a predicate, whose
        series is its value known at each order). An equation with a used floating-point output
        that depends on a series is never constant: without a rule it raises
        :class:`UnsupportedPrimitiveError` instead of silently giving a zero series.
        """
        used = self._used()
        for i, eqn in enumerate(self.jaxpr.eqns):
            xs = self.inputs(eqn)
            name = eqn.primitive.name
            outs = _jax.bind_equation(eqn, *[x[0] for x in xs])
            varying = any(not x.const for x in xs)
            live = [not isinstance(v, _jax.DropVar) and v in used for v in eqn.outvars]
            predicate = varying and self._predicate(eqn, xs)
            float_used = any(u and _is_float(v.aval) for u, v in zip(live, eqn.outvars))
            constant = not varying or name in _rules.CONSTANT or not (float_used or (predicate and any(live)))
            if not constant and name not in _rules.RULES and name not in _rules.LINEAR:
                raise UnsupportedPrimitiveError(name, "incremental", "nested")
            if not constant:
                self._check_complex(eqn, xs)
                self.active.append(i)
            for v, val in zip(eqn.outvars, outs):
                if isinstance(v, _jax.DropVar):
                    continue
                series = not constant and (_is_float(v.aval) or predicate)
                self.env[v] = Coeffs([val]) if series else Coeffs(val, const=True)
                if series and predicate:
                    self.preds.add(v)
        return [self.read(v)[0] for v in self.jaxpr.outvars]

    @staticmethod
    def _check_complex(eqn, xs):
        if eqn.primitive.name == "sign" and any(jnp.iscomplexobj(x[0]) for x in xs):
            raise UnsupportedPrimitiveError("sign (of a complex value, not piecewise constant)", "incremental", "nested")

    def order(self, k):
        """Coefficient k of everything, given coefficient k of the inputs."""
        for i in self.active:
            eqn = self.jaxpr.eqns[i]
            xs = self.inputs(eqn)
            name = eqn.primitive.name
            outs = [None if isinstance(v, _jax.DropVar) or self.env[v].const else self.env[v] for v in eqn.outvars]
            if name in _rules.RULES:
                ys = [None if o is None else o.c for o in outs]
                y = _rules.RULES[name](k, xs, ys if eqn.primitive.multiple_results else ys[0], self.aux.setdefault(i, {}), eqn)
            else:
                y = _linear(eqn, xs, k)
            ys_k = y if eqn.primitive.multiple_results else [y]
            for v, o, y_k in zip(eqn.outvars, outs, ys_k):  # pyright: ignore[reportArgumentType]  (a rule returns a list for multiple results)
                if o is None:
                    continue
                if y_k is not None:
                    y_k = jnp.broadcast_to(y_k, v.aval.shape).astype(v.aval.dtype)
                o.c.append(y_k)
        return [self.read(v)[k] for v in self.jaxpr.outvars]


def _linear(eqn, xs, k):
    operands, any_series = [], False
    for v, x in zip(eqn.invars, xs):
        if not _is_float(v.aval):
            # indices keep the primal; a predicate series its value known at order k
            operands.append(x[0] if x.const or x[k] is None else x[k])
        elif x[k] is None:
            operands.append(jnp.zeros(v.aval.shape, v.aval.dtype))
        else:
            operands.append(x[k])
            any_series = True
    if not any_series:
        return [None] * len(eqn.outvars) if eqn.primitive.multiple_results else None
    outs = _jax.bind_equation(eqn, *operands)
    return outs if eqn.primitive.multiple_results else outs[0]


def incremental_coefficients(f: Callable, t: ArrayLike, z: Any, args: Any, order: int) -> list:
    r"""Normalized Taylor coefficients :math:`(z_0, z_1, \dots, z_K)` of the solution of
    :math:`\dot z = f(t, z, \text{args})` through :math:`(t, z)`, :math:`z_k = z^{(k)}/k!`
    (each a pytree shaped like ``z``; ``z_0 = z``)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)

    def flat_field(t_, *zs):
        return jax.tree_util.tree_leaves(f(t_, jax.tree_util.tree_unflatten(treedef, list(zs)), args))

    (jaxpr, jaxpr_consts), consts = flatten(flat_field, t, *leaves)
    t_series = Coeffs([t, jnp.ones_like(t)])
    z_series = [Coeffs([leaf]) for leaf in leaves]
    tape = _Tape(jaxpr, jaxpr_consts, [Coeffs(c, const=True) for c in consts] + [t_series] + z_series)
    fk = tape.order0()
    for k in range(order):
        if k > 0:
            fk = tape.order(k)
        for zs, leaf, c in zip(z_series, leaves, fk):
            zs.c.append(jnp.zeros_like(leaf) if c is None else c / (k + 1))  # pyright: ignore[reportOperatorIssue]  (one coefficient, an array)
    return [jax.tree_util.tree_unflatten(treedef, [zs.c[k] for zs in z_series]) for k in range(order + 1)]


def incremental_derivatives(f: Callable, t: ArrayLike, z: Any, args: Any, order: int) -> tuple:
    r"""The derivatives :math:`(d^1z/dt^1, \dots, d^Kz/dt^K)` through :math:`(t, z)`, K = ``order``:
    :func:`incremental_coefficients` times :math:`k!` (each a pytree shaped like ``z``)."""
    coeffs = incremental_coefficients(f, t, z, args, order)
    return tuple(
        jax.tree_util.tree_map(
            lambda c, k=k: c * float(math.factorial(k)), coeffs[k]
        )  # a Python int k! overflows int32 from k = 13
        for k in range(1, order + 1)
    )
