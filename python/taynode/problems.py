r"""Standard test problems, each as a JAX field ``f(t, z, args)`` on a batch (batch, d).

The same problems exist by name in the NumPy reference (:mod:`taynode.portable`) and the Julia
package, so every backend answers the same questions about them.

==================  =========================================  ===================
name                dz/dt                                      d
==================  =========================================  ===================
``quadratic``       z²  (closed form: dᴷz/dtᴷ = K! z^{K+1})    any
``lotka_volterra``  (1.5x − xy, −3y + xy)                      2
``van_der_pol``     (v, μ(1 − x²)v − x), μ = 1                 2
``time_linear``     t·z  (explicit time dependence)            any
==================  =========================================  ===================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def quadratic(t: jax.typing.ArrayLike, z: jax.Array, args: Any = None) -> jax.Array:
    """dz/dt = z², elementwise; its derivatives have the closed form dᴷz/dtᴷ = K! z^{K+1}."""
    return z**2


def lotka_volterra(t: jax.typing.ArrayLike, z: jax.Array, args: Any = None) -> jax.Array:
    """Lotka–Volterra predator–prey, (x, y)' = (1.5x − xy, −3y + xy); ``z`` is (..., 2)."""
    x, y = z[..., 0], z[..., 1]
    return jnp.stack([1.5 * x - x * y, -3.0 * y + x * y], -1)


def van_der_pol(t: jax.typing.ArrayLike, z: jax.Array, args: Any = None) -> jax.Array:
    """Van der Pol oscillator with μ = 1, (x, v)' = (v, (1 − x²)v − x); ``z`` is (..., 2)."""
    x, v = z[..., 0], z[..., 1]
    return jnp.stack([v, (1 - x**2) * v - x], -1)


def time_linear(t: jax.typing.ArrayLike, z: jax.Array, args: Any = None) -> jax.Array:
    """dz/dt = t·z, the problem with explicit time dependence (z(t) = z₀ exp((t² − t₀²)/2))."""
    return t * z


PROBLEMS = {
    "quadratic": quadratic,
    "lotka_volterra": lotka_volterra,
    "van_der_pol": van_der_pol,
    "time_linear": time_linear,
}


def get(name: str) -> Callable[..., jax.Array]:
    """The field of the problem called ``name`` (a key of :data:`PROBLEMS`); ``ValueError`` naming the valid ones otherwise."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; valid problems: {sorted(PROBLEMS)}") from None
