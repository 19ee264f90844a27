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

import jax.numpy as jnp


def quadratic(t, z, args=None):
    return z**2


def lotka_volterra(t, z, args=None):
    x, y = z[..., 0], z[..., 1]
    return jnp.stack([1.5 * x - x * y, -3.0 * y + x * y], -1)


def van_der_pol(t, z, args=None):
    x, v = z[..., 0], z[..., 1]
    return jnp.stack([v, (1 - x**2) * v - x], -1)


def time_linear(t, z, args=None):
    return t * z


PROBLEMS = {
    "quadratic": quadratic,
    "lotka_volterra": lotka_volterra,
    "van_der_pol": van_der_pol,
    "time_linear": time_linear,
}


def get(name: str):
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; valid problems: {sorted(PROBLEMS)}") from None
