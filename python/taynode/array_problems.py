"""The comparison's test problems, written once for any array namespace ``xp`` (numpy,
jax.numpy, torch): ``f(xp, t, z)`` on a batch ``z`` of shape (batch, d).

Only operations all three namespaces share are used (slicing, arithmetic, ``concatenate``), so
the NumPy, JAX and torch versions compute the same floating-point operations.
"""

from __future__ import annotations

from typing import Any


def _cat(xp, arrays):
    # torch has `cat` and, since 2.x, `concatenate` as an alias; NumPy and JAX have `concatenate`
    return xp.concatenate(arrays, -1)


def lotka_volterra(xp: Any, t: Any, z: Any) -> Any:
    """Lotka–Volterra predator–prey, x' = 1.5x − xy, y' = −3y + xy, state (x, y)."""
    x, y = z[..., 0:1], z[..., 1:2]
    return _cat(xp, [1.5 * x - x * y, -3.0 * y + x * y])


def van_der_pol(xp: Any, t: Any, z: Any) -> Any:
    """μ = 1."""
    x, v = z[..., 0:1], z[..., 1:2]
    return _cat(xp, [v, (1 - x**2) * v - x])


def two_body(xp: Any, t: Any, z: Any) -> Any:
    """Kepler problem q'' = −q/|q|³, state (q₁, q₂, v₁, v₂)."""
    q1, q2, v = z[..., 0:1], z[..., 1:2], z[..., 2:4]
    r3 = (q1**2 + q2**2) ** 1.5
    return _cat(xp, [v, -q1 / r3, -q2 / r3])


FIELDS = {"lotka_volterra": lotka_volterra, "van_der_pol": van_der_pol, "two_body": two_body}
