r"""Nested forward-mode JVPs along the flow.

:math:`g_1 = f`, :math:`g_{k+1}(t, z) = \partial_z g_k(t, z)\, f(t, z) + \partial_t g_k(t, z)`,
so :math:`g_k(t, z) = d^k z/dt^k`. Naively exponential in K; XLA's common-subexpression
elimination recovers most of it under ``jit``. Works for every JAX operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def nested_derivatives(f: Callable, t: ArrayLike, z: Any, args: Any, order: int) -> tuple:
    r"""The derivatives :math:`(g_1, \dots, g_K)(t, z)`, K = ``order``, by nested JVPs (see the
    module): one chain of K − 1 JVPs yields every order. ``z`` is an array or a pytree."""

    def field(t_, z_):
        return f(t_, z_, args)

    def all_up_to(k):
        # Returns a function (t, z) -> [g_1, ..., g_k], built so that one nested JVP chain
        # yields every order: the primal output of the outer JVP is the lower orders.
        if k == 1:
            return lambda t_, z_: [field(t_, z_)]
        lower = all_up_to(k - 1)

        def g(t_, z_):
            primal, tangent = jax.jvp(lower, (t_, z_), (jnp.ones_like(t_), field(t_, z_)))
            return primal + [tangent[-1]]

        return g

    return tuple(all_up_to(order)(t, z))
