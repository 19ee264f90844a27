"""The measured cost of one Taylor step in f evaluations (what the Taylor solver's NFE, counted in
coefficient orders, leaves out)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from .problems import Problem
from .x64 import float64


@float64
def taylor_cost_ratio(problem: Problem, orders: Sequence[int] = (8, 12, 16), loops: int = 200, repeats: int = 5) -> dict:
    """Wall time of one computation of the Taylor coefficients z_1 … z_p at z0, in units of one
    evaluation of f: what one Taylor step costs in f evaluations on this machine, against the
    ``p`` that the solver's ``nfe`` counts. Each is timed as ``loops`` dependent evaluations inside
    one jitted :func:`jax.lax.fori_loop` (so dispatch overhead does not count), median of
    ``repeats``."""
    import jax
    import jax.numpy as jnp

    from ..taylor_solver import taylor_coefficients

    z0 = jnp.asarray(problem.z0)
    t0 = jnp.asarray(0.0)

    def median_time(g):
        # z ← z + 1e-300·g(z): each evaluation depends on the previous one, and nothing is dropped
        run = jax.jit(lambda z: jax.lax.fori_loop(0, loops, lambda i, z: z + 1e-300 * g(t0, z), z))
        jax.block_until_ready(run(z0))
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(run(z0))
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    f_time = median_time(lambda t, z: problem.jax_f(t, z, None))
    return {p: median_time(lambda t, z, p=p: taylor_coefficients(problem.jax_f, t, z, None, p)[-1]) / f_time for p in orders}
