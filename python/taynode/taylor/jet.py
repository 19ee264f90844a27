r"""The recursive Taylor-mode scheme on :func:`jax.experimental.jet` (Kelly et al. 2020, App. A).

With :math:`z_1 = f(t, z)`, a jet of :math:`F(t, z) = f(t, z)` at :math:`(t, z)` with input
series :math:`t: (1, 0, \dots, 0)` and :math:`z: (z_1, \dots, z_k)` returns the series of
:math:`f(t, z(t))`, i.e. :math:`(z_2, \dots, z_{k+1})`. Repeating for k = 1 … K-1 gives all K
derivatives. jet works with raw derivatives (no 1/k! factors).

The dynamics are first re-expressed by :mod:`._inline` so that custom-derivative activations
(``relu``, ``softplus``), ``tan``/``atan`` and scalar-bound ``clip`` are expandable. The flat
jaxpr is then pushed through jet one equation at a time, so that the piecewise primitives see
their operands' series: ``max``/``min``/``abs``/``clamp`` follow the right-sided tie rule, and
the other piecewise ones raise at a tie their jet rule gets wrong (:mod:`.jet_ties`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.jet import jet
from jax.typing import ArrayLike

from .. import _jax
from . import jet_ties
from ._inline import UnsupportedPrimitiveError, inline

# Piecewise primitives jet has no rule for: nested JVPs would average their ties too.
_PIECEWISE = {"argmax", "argmin", "sort", "top_k", "reduce_window_max", "reduce_window_min"}


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _jet_equation(eqn, primals, series):
    """jet of one equation on the operands that carry a series (the others are constants)."""
    idx = [i for i, s in enumerate(series) if s is not None]

    def apply(*xs):
        args = list(primals)
        for i, x in zip(idx, xs):
            args[i] = x
        return _jax.bind_equation(eqn, *args)

    try:
        outs, out_series = jet(apply, [primals[i] for i in idx], [series[i] for i in idx], factorial_scaled=False)
    except KeyError as e:
        # jet's trace looks primitives up in its rule table; only a miss lands here.
        if e.args and e.args[0] is eqn.primitive:
            name = eqn.primitive.name
            raise UnsupportedPrimitiveError(name, "jet", "incremental" if name in _PIECEWISE else "nested") from None
        raise
    return list(outs), [s if _is_float(o) else None for o, s in zip(outs, out_series)]


def _mask(eqn, masks, primals, series, order):
    name = eqn.primitive.name
    if name in jet_ties.COMPARISONS and any(s is not None for s in series):
        return jet_ties.comparison_tie(primals, series, order)
    held = [masks.get(v) for v in eqn.invars if not isinstance(v, _jax.Literal)]
    if name in jet_ties.MASK_UNARY and held and held[0] is not None:
        return _jax.bind_equation(eqn, held[0])[0] if name != "convert_element_type" else held[0]
    if name in jet_ties.MASK_BINARY and any(m is not None for m in held):
        shape = eqn.outvars[0].aval.shape
        return jnp.any(jnp.stack([jnp.broadcast_to(m, shape) for m in held if m is not None]), axis=0)
    return None


def _eval(jaxpr, consts, primals, series, order):
    """Primal and series (unscaled coefficients 1..order, or None for none) of every output."""
    env, masks = {}, {}

    def read(v):
        return (v.val, None) if isinstance(v, _jax.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = (val, None)
    for v, p, s in zip(jaxpr.invars, primals, series):
        env[v] = (p, s)
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        ps, ss = [p for p, _ in ins], [s for _, s in ins]
        name = eqn.primitive.name
        if all(s is None for s in ss):
            outs, out_series = _jax.bind_equation(eqn, *ps), [None] * len(eqn.outvars)
        elif name in jet_ties.RIGHT_SIDED:
            out, s = jet_ties.right_sided(name, ps, ss, order)
            outs, out_series = [out], [s]
        else:
            outs, out_series = _jet_equation(eqn, ps, ss)
            if name in jet_ties.CHECKED:
                outs, out_series = jet_ties.check_tie(eqn, ps, ss, outs, out_series, masks, order)
        mask = _mask(eqn, masks, ps, ss, order)
        if mask is not None:
            masks[eqn.outvars[0]] = mask
        for v, p, s in zip(eqn.outvars, outs, out_series):
            if not isinstance(v, _jax.DropVar):
                env[v] = (p, s)
    return [read(v) for v in jaxpr.outvars]


def _flat_jaxpr(field, t, leaves):
    g, consts = inline(field, t, *leaves)
    jaxpr, jaxpr_consts = _jax.trace_jaxpr(g, consts, t, *leaves)
    return jaxpr, jaxpr_consts, jax.tree_util.tree_leaves(consts)


def jet_derivatives(f: Callable, t: ArrayLike, z: Any, args: Any, order: int) -> tuple:
    r"""The derivatives :math:`(d^1z/dt^1, \dots, d^Kz/dt^K)` of the solution of
    :math:`\dot z = f(t, z, \text{args})` through :math:`(t, z)`, K = ``order``, by K − 1
    recursive jets (each a pytree shaped like ``z``)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)

    def flat_field(t_, *zs):
        return f(t_, jax.tree_util.tree_unflatten(treedef, list(zs)), args)

    jaxpr, jaxpr_consts, consts = _flat_jaxpr(flat_field, t, leaves)
    none = [None] * len(consts)
    z1 = [p for p, _ in _eval(jaxpr, jaxpr_consts, [*consts, t, *leaves], [*none, None, *[None] * len(leaves)], 0)]
    series = [[d] for d in z1]  # series[i] = derivatives 1..k of leaf i
    for k in range(1, order):
        # jet's unscaled coefficients: derivative j over j!.
        scaled = [[d / math.factorial(j + 1) for j, d in enumerate(s)] for s in series]
        t_series = [jnp.ones_like(t)] + [jnp.zeros_like(t)] * (k - 1)
        outs = _eval(jaxpr, jaxpr_consts, [*consts, t, *leaves], [*none, t_series, *scaled], k)
        for i, (_, s) in enumerate(outs):
            series[i].append(jnp.zeros_like(leaves[i]) if s is None else s[-1] * math.factorial(k))
    return tuple(jax.tree_util.tree_unflatten(treedef, [s[k] for s in series]) for k in range(order))
