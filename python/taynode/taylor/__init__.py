r"""Total time derivatives of an ODE solution, by Taylor-mode automatic differentiation.

For dynamics :math:`\dot z = f(t, z, \text{args})` the solution through :math:`(t, z)` has

.. math::  z^{(1)} = f(t, z),\qquad z^{(k+1)} = \frac{d^k}{dt^k} f(t, z(t))

where every :math:`z^{(j)}` on the right is itself a total derivative along the flow, and
:math:`\partial f/\partial t` is kept (time is an input whose series is :math:`(1, 0, 0, \dots)`).
:func:`derivatives` returns :math:`(z^{(1)}, \dots, z^{(K)})` by one of the registered methods:

``"jet"``
    The recursive scheme of Kelly et al. (2020) on :func:`jax.experimental.jet`: order
    :math:`k+1` comes from a jet of order :math:`k` seeded with the derivatives found so far.
``"nested"``
    Nested forward-mode JVPs along the flow, :math:`g_{k+1} = \partial_z g_k \cdot f +
    \partial_t g_k`. Differentiates any JAX operation (control flow included).
``"incremental"``
    Incremental Taylor mode (:mod:`.incremental`): f's jaxpr is evaluated once per order, each
    operation extending its cached normalized coefficients by one (:mod:`.rules`).

All are jit-able and differentiable with respect to ``args`` and to parameters that ``f``
closes over, and share one test suite.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._inline import UnsupportedPrimitiveError
from .incremental import incremental_coefficients, incremental_derivatives
from .jet import jet_derivatives
from .nested import nested_derivatives

__all__ = [
    "MAX_ORDER",
    "METHODS",
    "UnsupportedPrimitiveError",
    "check_order",
    "coefficients",
    "derivatives",
    "max_derivative_order",
]

METHODS: dict[str, Callable] = {
    "jet": jet_derivatives,
    "nested": nested_derivatives,
    "incremental": incremental_derivatives,
}


# The largest order K each method accepts. Compile time and memory grow fast with K (one MLP,
# jit of the forward; the gradient, which training compiles, costs several times more):
# incremental ~K² equations (K = 30: 3.5 s, K = 40: 9 s), jet ~K³ (K = 20: 5 s), nested
# ~2ᴷ (K = 8: 2 s, K = 10: 12.5 s). Past these nothing useful is gained: a Taylor solver's
# Jorba & Zou order is 20 at a tolerance of 1e-16.
MAX_ORDER: dict[str, int] = {"incremental": 32, "jet": 20, "nested": 10}


def max_derivative_order(dtype: Any) -> int:
    """The largest K for which K! and 1/K! are normal numbers of ``dtype`` (float16: 7,
    float32 and bfloat16: 33, float64: 170).

    Raw derivatives are normalized coefficients times k! (or, for ``jet``/``nested``
    coefficients, derivatives divided by k!); past this K that factor itself overflows or
    underflows the dtype, so a derivative of ordinary size would come back 0, inf or NaN."""
    info = jnp.finfo(dtype)
    limit = min(math.log(float(info.max)), -math.log(float(info.tiny)))
    k = 1
    while math.lgamma(k + 2) < limit:  # lgamma(k + 2) = log((k + 1)!)
        k += 1
    return k


def check_order(order: Any, method: str | None = None, dtype: Any = None, factorials: bool = True) -> int:
    """``order`` as an int, or a clear error: K must be an integer, 1 <= K <= MAX_ORDER[method]
    (the largest over the methods when ``method`` is None) and, when ``dtype`` is given and
    ``factorials`` is true (raw derivatives, or coefficients by a method that divides by k!),
    K <= :func:`max_derivative_order` of that dtype."""
    # Integers and integer scalars (NumPy, JAX) have __index__; floats, strings and None do not.
    if isinstance(order, bool) or not hasattr(order, "__index__"):
        raise TypeError(f"order K must be an integer >= 1, got {order!r} ({type(order).__name__})")
    order = operator.index(order)
    if order < 1:
        raise ValueError(f"order K must be an integer >= 1, got {order}")
    cap = MAX_ORDER[method] if method in MAX_ORDER else max(MAX_ORDER.values())
    if order > cap:
        which = f"method {method!r}" if method in MAX_ORDER else "the Taylor core"
        raise ValueError(
            f"order K = {order} is above the largest order {which} supports, {cap} "
            f"(per method: {MAX_ORDER}); compile time and memory grow like K², K³ or 2^K "
            f"beyond any practical use; choose K <= {cap}"
        )
    if dtype is not None and factorials:
        kmax = max_derivative_order(dtype)
        if order > kmax:
            raise ValueError(
                f"order K = {order} is above {kmax}, the largest order whose factorial K! fits "
                f"{jnp.dtype(dtype).name} (derivatives would come back 0, inf or NaN); use a wider "
                f"dtype (float64 allows K <= {max_derivative_order(jnp.float64)})"
                + ("" if method == "incremental" else ", or coefficients(..., method='incremental'), which needs no factorials")
            )
    return order


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown Taylor method {method!r}; valid methods: {sorted(METHODS)}")
    return method


def check_output_matches(f, t, z, args):
    """Raise a clear error when f's output does not have the structure and shapes of z."""
    out = jax.eval_shape(lambda t_, z_: f(t_, z_, args), t, z)
    z_struct = jax.tree_util.tree_structure(z)
    out_struct = jax.tree_util.tree_structure(out)
    if z_struct != out_struct:
        raise ValueError(
            f"dynamics f(t, z, args) must return the same structure as the state z: state is {z_struct}, f returned {out_struct}"
        )
    for zl, ol in zip(jax.tree_util.tree_leaves(z), jax.tree_util.tree_leaves(out)):
        if jnp.shape(zl) != ol.shape:
            raise ValueError(
                f"dynamics f(t, z, args) returned shape {ol.shape} for a state of shape "
                f"{jnp.shape(zl)}; dz/dt must have the shape of z"
            )


def derivatives(f: Callable, t: ArrayLike, z: Any, args: Any = None, order: int = 1, method: str = "incremental") -> list:
    """The total derivatives d¹z/dt¹ … dᴷz/dtᴷ of the solution of dz/dt = f(t, z, args)
    through the point (t, z).

    Args:
        f: dynamics ``f(t, z, args) -> dz/dt`` with the structure and shapes of ``z``.
        t: scalar time.
        z: the state: an array (its leading axis is usually a batch) or a pytree of arrays.
        args: passed to ``f``; parameters here (or closed over by ``f``) can be differentiated.
        order: K >= 1.
        method: one of :data:`METHODS`: ``"incremental"`` (the default: its parameter gradient
            is the fastest, see ``benchmarks/taylor_methods.py``), ``"jet"`` or ``"nested"``
            (the fallback for operations without a Taylor rule, e.g. control flow).

    Returns:
        A tuple of K pytrees shaped like ``z``: raw derivatives (no 1/k! factors).
    """
    check_method(method)
    check_order(order, method)
    t = _check_point(f, t, z, args)
    order = check_order(order, method, t.dtype)
    return METHODS[method](f, t, z, args, order)


def coefficients(f: Callable, t: ArrayLike, z: Any, args: Any = None, order: int = 1, method: str = "incremental") -> list:
    r"""Normalized Taylor coefficients :math:`(z_0, z_1, \dots, z_K)`, :math:`z_k =
    z^{(k)}/k!`, of the solution of dz/dt = f(t, z, args) through (t, z); ``z_0 = z``.

    The Taylor polynomial :math:`\sum_k z_k h^k` approximates :math:`z(t + h)`. Arguments as
    for :func:`derivatives`; ``"incremental"`` computes these natively, the other methods by
    dividing their derivatives by k!.
    """
    check_method(method)
    check_order(order, method)
    t = _check_point(f, t, z, args)
    order = check_order(order, method, t.dtype, factorials=method != "incremental")
    if method == "incremental":
        return incremental_coefficients(f, t, z, args, order)
    ds = METHODS[method](f, t, z, args, order)
    return [z] + [jax.tree_util.tree_map(lambda d, k=k: d / float(math.factorial(k)), d) for k, d in enumerate(ds, 1)]


def _check_point(f, t, z, args):
    leaves = jax.tree_util.tree_leaves(z)
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            # An integer state has no series: every derivative past the first would be 0.
            raise TypeError(
                f"the state z must be floating point, got dtype {jnp.result_type(leaf)}; pass "
                f"z as floats, e.g. jnp.asarray(z, dtype=jnp.float64)"
            )
    dtype = jnp.result_type(*leaves)
    if jnp.ndim(t) != 0:
        # one point (t, z): an array of times would broadcast against the features, not the batch
        raise ValueError(
            f"t must be a scalar time (the point (t, z) the derivatives are taken at), got shape {jnp.shape(t)}; "
            "for several times, call derivatives once per time or jax.vmap over t and z"
        )
    t = jnp.asarray(t, dtype=dtype)
    check_output_matches(f, t, z, args)
    out = jax.eval_shape(lambda t_, z_: f(t_, z_, args), t, z)
    for zl, ol in zip(leaves, jax.tree_util.tree_leaves(out)):
        if ol.dtype != jnp.result_type(zl):
            raise TypeError(
                f"dynamics f(t, z, args) returned dtype {ol.dtype} for a state of dtype {jnp.result_type(zl)}; "
                "the Taylor series would mix precisions: make f compute in the state's dtype (e.g. cast its "
                "parameters, or z, with .astype)"
            )
    return t
