"""The JAX backend: taynode's own Taylor core and solvers, behind the backend interface."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import portable
from ..regularizers import RK
from ..solve import solve
from ..taylor import derivatives
from .result import SolveResult


def _state(z):
    z = np.asarray(z, np.float64)
    if z.ndim != 2:
        raise ValueError(f"states are (batch, d) arrays, got shape {z.shape}")
    return jnp.asarray(z)


class JaxBackend:
    """taynode's own Taylor core (:func:`taynode.taylor.derivatives`) and solvers (:func:`taynode.solve`),
    answering the backend questions in float64; ``jax_enable_x64`` must be set before it is made."""

    name = "jax"

    def __init__(self):
        if not jax.config.jax_enable_x64:
            raise RuntimeError("the JAX backend answers in float64: call jax.config.update('jax_enable_x64', True) first")

    def derivatives(self, spec, z, t, order):
        f = portable.jax_field(spec)
        return np.stack([np.asarray(d) for d in derivatives(f, t, _state(z), None, order)])

    def solve(self, spec, z0, ts, method="dopri5", rtol=1e-8, atol=1e-8):
        sol = solve(
            portable.jax_field(spec),
            _state(z0),
            np.asarray(ts, np.float64),
            solver=method,
            rtol=rtol,
            atol=atol,
            max_steps=100_000,
        )
        s = sol.stats
        return SolveResult(np.asarray(sol.ys), int(s["nfe"]), int(s["steps"]), int(s["rejected"]))

    def rk_integral(self, spec, z0, t0, t1, order, rtol=1e-8, atol=1e-8):
        sol = solve(
            portable.jax_field(spec), _state(z0), (t0, t1), rtol=rtol, atol=atol, regularizers=[RK(order)], max_steps=100_000
        )
        return np.asarray(sol.integrals[f"R{order}"])
