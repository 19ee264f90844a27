"""Step-size selection, below the registry and the integrators: Hairer's initial step of an
adaptive Runge–Kutta solve (two evaluations of f: :data:`INITIAL_STEP_EVALS`), and the Taylor
method's step and order rules (Jorba & Zou 2005) with the orders the Taylor core supports."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .. import _validate
from ..taylor import MAX_ORDER

__all__ = [
    "INITIAL_STEP_EVALS",
    "check_taylor_orders",
    "initial_step_size",
    "jorba_zou_order",
    "jorba_zou_step",
    "max_taylor_order",
    "predicted_steps",
]

INITIAL_STEP_EVALS = 2  # f(t0, z0) and one more: initial_step_size


def _rms(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    total = sum(jnp.sum(jnp.square(x)) for x in leaves)
    return jnp.sqrt(total / sum(x.size for x in leaves))


def initial_step_size(fun: Callable, t0: Any, y0: Any, direction: Any, order: int, rtol: float, atol: float, f0: Any) -> Any:
    """Hairer, Nørsett & Wanner (1993), II.4: the starting step of an adaptive solve.

    Uses f0 = fun(t0, y0) and one more evaluation of ``fun``; the same rule as
    ``jax.experimental.ode`` and diffrax's (bypassed) selection. Returns a signed step.
    """
    scale = jax.tree_util.tree_map(lambda y: atol + jnp.abs(y) * rtol, y0)
    scaled = lambda a: jax.tree_util.tree_map(lambda x, s: x / s, a, scale)  # noqa: E731
    d0, d1 = _rms(scaled(y0)), _rms(scaled(f0))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    y1 = jax.tree_util.tree_map(lambda y, f: y + direction * h0 * f, y0, f0)
    f1 = fun(t0 + direction * h0, y1)
    d2 = _rms(scaled(jax.tree_util.tree_map(lambda a, b: a - b, f1, f0))) / h0
    h1 = jnp.where(
        jnp.maximum(d1, d2) <= 1e-15,
        jnp.maximum(1e-6, h0 * 1e-3),
        (0.01 / jnp.maximum(d1, d2)) ** (1.0 / (order + 1.0)),
    )
    return direction * jax.lax.stop_gradient(jnp.minimum(100 * h0, h1))


def jorba_zou_order(rel_tol: float) -> int:
    """Jorba & Zou's optimal order ⌈−½ ln ε + 1⌉ for a relative tolerance ε (at least 2)."""
    if not (0 < rel_tol < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {rel_tol}")
    return max(2, math.ceil(-0.5 * math.log(rel_tol) + 1))


def inf_norm(tree: Any) -> jax.Array:
    """The largest absolute value over every leaf of ``tree``."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _second_control(norms):
    """max over k = 1 … p−2 of ‖z_k‖^(−1/k), skipping zero coefficients; inf if there are none."""
    h = jnp.zeros_like(norms[0])
    for k in range(1, len(norms) - 2):
        h = jnp.where(norms[k] > 0, jnp.maximum(h, jnp.where(norms[k] > 0, norms[k], 1.0) ** (-1.0 / k)), h)
    return jnp.where(h > 0, h, jnp.inf)


def _first_control(norms, eps, ks):
    """min over k in ``ks`` of (ε/‖z_k‖)^(1/k), skipping zero coefficients; inf if all are zero."""
    h = jnp.inf
    for k in ks:
        safe = jnp.where(norms[k] > 0, norms[k], 1.0)
        h = jnp.where(norms[k] > 0, jnp.minimum(h, (eps / safe) ** (1.0 / k)), h)
    return h


def jorba_zou_step(norms: Sequence, eps: ArrayLike, beyond: Sequence | None = None) -> jax.Array:
    """Jorba & Zou's step from the coefficient norms ``[‖z_0‖, …, ‖z_p‖]``: the first control on
    orders p−1 and p; if both vanish, the first control on ``beyond`` (the norms of orders p+1
    and p+2, when given), then the second control."""
    p = len(norms) - 1
    h = _first_control(norms, eps, (p - 1, p))
    if beyond is not None:
        ext = list(norms) + list(beyond)
        h = jnp.where(jnp.isinf(h), _first_control(ext, eps, (p + 1, p + 2)), h)
    return jnp.where(jnp.isinf(h), _second_control(norms), h)


def predicted_steps(norms: Sequence, eps: ArrayLike, orders: Sequence[int]) -> jax.Array:
    """ĥ(q) for each candidate order q, from a least-squares fit log‖z_k‖ ≈ a − k·b (k ≥ 1)."""
    p = len(norms) - 1
    k = jnp.arange(1, p + 1, dtype=norms[0].dtype)
    n = jnp.stack(norms[1:])
    w = (n > 0).astype(n.dtype)
    y = jnp.log(jnp.where(n > 0, n, 1.0))
    sw = jnp.maximum(jnp.sum(w), 1.0)
    km, ym = jnp.sum(w * k) / sw, jnp.sum(w * y) / sw
    slope = jnp.sum(w * (k - km) * (y - ym)) / jnp.maximum(jnp.sum(w * (k - km) ** 2), jnp.finfo(n.dtype).tiny)
    a = ym - slope * km
    out = []
    for q in orders:
        model = [jnp.exp(a + slope * kk) for kk in range(q + 1)]
        out.append(jorba_zou_step(model, eps))
    return jnp.stack(out)


def max_taylor_order(method: str | None) -> int:
    """The largest solver order p: the Taylor core's maximum for ``method`` (None tries
    incremental first, the largest) less 2, as a degenerate step looks at orders p+1, p+2."""
    return (MAX_ORDER[method] if method in MAX_ORDER else max(MAX_ORDER.values())) - 2


def check_taylor_orders(order: int | None, orders: Sequence[int] | None, method: str | None = None) -> tuple | None:
    """Check a fixed Taylor order and/or candidate orders against what ``method`` supports;
    returns ``orders`` as a tuple (or ``None``)."""
    cap = max_taylor_order(method)
    if order is not None:
        hint = (
            f" and <= {cap} (the largest Taylor order "
            f"{'method ' + repr(method) if method else 'the Taylor core'} supports: compile time grows like p² or faster)"
        )
        if _validate.integer("order", order, 2, hint=hint) > cap:
            raise ValueError(f"order must be an integer >= 2{hint}, got {order!r}")
    if orders is not None:
        orders = _validate.integers("orders", orders, 2, cap)
        if list(orders) != sorted(set(orders)):
            raise ValueError(f"orders must be distinct and increasing, got {orders!r}")
    return orders
