r"""The recursive Taylor-mode scheme on :func:`jax.experimental.jet` (Kelly et al. 2020, App. A).

With :math:`z_1 = f(t, z)`, a jet of :math:`F(t, z) = f(t, z)` at :math:`(t, z)` with input
series :math:`t: (1, 0, \dots, 0)` and :math:`z: (z_1, \dots, z_k)` returns the series of
:math:`f(t, z(t))`, i.e. :math:`(z_2, \dots, z_{k+1})`. Repeating for k = 1 … K-1 gives all K
derivatives. jet works with raw derivatives (no 1/k! factors).

The dynamics are first re-expressed by :mod:`._inline` so that custom-derivative activations
(``relu``, ``softplus``), ``tan``/``atan`` and scalar-bound ``clip`` are expandable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.jet import jet
from jax.typing import ArrayLike

from ._inline import inline


def jet_derivatives(f: Callable, t: ArrayLike, z: Any, args: Any, order: int) -> tuple:
    r"""The derivatives :math:`(d^1z/dt^1, \dots, d^Kz/dt^K)` of the solution of
    :math:`\dot z = f(t, z, \text{args})` through :math:`(t, z)`, K = ``order``, by K − 1
    recursive jets (each a pytree shaped like ``z``)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)

    def flat_field(t_, *zs):
        return f(t_, jax.tree_util.tree_unflatten(treedef, list(zs)), args)

    g, consts = inline(flat_field, t, *leaves)

    def field(t_, *zs):
        return g(consts, t_, *zs)

    z1 = field(t, *leaves)
    series = [[d] for d in z1]  # series[i] = derivatives 1..k of leaf i
    t_series = [jnp.ones_like(t)]
    for _ in range(1, order):
        _, out_series = jet(
            field,
            (t, *leaves),
            (t_series, *series),
        )
        for i, s in enumerate(out_series):
            series[i].append(s[-1])
        t_series = t_series + [jnp.zeros_like(t)]
    return tuple(jax.tree_util.tree_unflatten(treedef, [s[k] for s in series]) for k in range(order))
