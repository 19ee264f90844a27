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

import jax
import jax.numpy as jnp
from jax.extend import core

from . import rules as _rules
from ._inline import UnsupportedPrimitiveError, flatten
from .rules import Coeffs

__all__ = ["incremental_coefficients", "incremental_derivatives"]


def _is_float(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


class _Tape:
    """f's flat jaxpr with the Taylor coefficients of every value computed so far."""

    def __init__(self, closed, inputs):
        self.jaxpr = closed.jaxpr
        self.env = {}
        self.aux = {}
        for v, val in zip(self.jaxpr.constvars, closed.consts):
            self.env[v] = Coeffs(val, const=True)
        for v, val in zip(self.jaxpr.invars, inputs):
            self.env[v] = val

    def read(self, v):
        if isinstance(v, core.Literal):
            return Coeffs(v.val, const=True)
        return self.env[v]

    def _used(self):
        """The variables some equation reads or f returns."""
        used = {v for v in self.jaxpr.outvars if not isinstance(v, core.Literal)}
        for eqn in self.jaxpr.eqns:
            used.update(v for v in eqn.invars if not isinstance(v, core.Literal))
        return used

    def order0(self):
        """Evaluate f (coefficient 0 of everything); values without a series become constants.

        An equation is constant when no input carries a series, when it is piecewise constant
        (:data:`.rules.CONSTANT`), or when none of its outputs that are used is floating point
        (indices, predicates, counters). An equation with a used floating-point output that
        depends on a series is never constant: without a rule (loops, ``cond``, ``top_k``,
        ``sort`` of values, any multiple-output primitive) it raises
        :class:`UnsupportedPrimitiveError` instead of silently giving a zero series.
        """
        used = self._used()
        for eqn in self.jaxpr.eqns:
            xs = [self.read(v) for v in eqn.invars]
            name = eqn.primitive.name
            outs = eqn.primitive.bind(*[x[0] for x in xs], **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            varying = any(not x.const for x in xs)
            float_used = any(not isinstance(v, core.DropVar) and _is_float(v.aval) and v in used for v in eqn.outvars)
            constant = not varying or name in _rules.CONSTANT or not float_used
            has_rule = (name in _rules.RULES or name in _rules.LINEAR) and len(eqn.outvars) == 1
            if not constant and not has_rule:
                raise UnsupportedPrimitiveError(name, "incremental", "nested")
            for v, val in zip(eqn.outvars, outs):
                if not isinstance(v, core.DropVar):
                    self.env[v] = Coeffs(val, const=True) if constant else Coeffs([val])
        return [self.read(v)[0] for v in self.jaxpr.outvars]

    def order(self, k):
        """Coefficient k of everything, given coefficient k of the inputs."""
        for i, eqn in enumerate(self.jaxpr.eqns):
            out = eqn.outvars[0]
            if isinstance(out, core.DropVar) or self.env[out].const:
                continue
            xs = [self.read(v) for v in eqn.invars]
            name = eqn.primitive.name
            if name in _rules.LINEAR:
                y = _linear(eqn, xs, k)
            else:
                y = _rules.RULES[name](k, xs, self.env[out].c, self.aux.setdefault(i, {}), eqn)
            if y is not None:
                y = jnp.broadcast_to(y, out.aval.shape).astype(out.aval.dtype)
            self.env[out].c.append(y)
        return [self.read(v)[k] for v in self.jaxpr.outvars]


def _linear(eqn, xs, k):
    operands, any_series = [], False
    for v, x in zip(eqn.invars, xs):
        if not _is_float(v.aval):
            operands.append(x[0])  # indices, predicates: fixed by the primal
        elif x[k] is None:
            operands.append(jnp.zeros(v.aval.shape, v.aval.dtype))
        else:
            operands.append(x[k])
            any_series = True
    return eqn.primitive.bind(*operands, **eqn.params) if any_series else None


def incremental_coefficients(f, t, z, args, order: int):
    r"""Normalized Taylor coefficients :math:`(z_0, z_1, \dots, z_K)` of the solution of
    :math:`\dot z = f(t, z, \text{args})` through :math:`(t, z)`, :math:`z_k = z^{(k)}/k!`
    (each a pytree shaped like ``z``; ``z_0 = z``)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)

    def flat_field(t_, *zs):
        return jax.tree_util.tree_leaves(f(t_, jax.tree_util.tree_unflatten(treedef, list(zs)), args))

    closed, consts = flatten(flat_field, t, *leaves)
    t_series = Coeffs([t, jnp.ones_like(t)])
    z_series = [Coeffs([leaf]) for leaf in leaves]
    tape = _Tape(closed, [Coeffs(c, const=True) for c in consts] + [t_series] + z_series)
    fk = tape.order0()
    for k in range(order):
        if k > 0:
            fk = tape.order(k)
        for zs, leaf, c in zip(z_series, leaves, fk):
            zs.c.append(jnp.zeros_like(leaf) if c is None else c / (k + 1))  # pyright: ignore[reportOperatorIssue]  (one coefficient, an array)
    return [jax.tree_util.tree_unflatten(treedef, [zs.c[k] for zs in z_series]) for k in range(order + 1)]


def incremental_derivatives(f, t, z, args, order):
    coeffs = incremental_coefficients(f, t, z, args, order)
    return tuple(
        jax.tree_util.tree_map(
            lambda c, k=k: c * float(math.factorial(k)), coeffs[k]
        )  # a Python int k! overflows int32 from k = 13
        for k in range(1, order + 1)
    )
