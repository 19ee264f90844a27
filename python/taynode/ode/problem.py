"""The bottom of the solving layer: what an integrator receives (:class:`Problem`, validated by
:func:`taynode.ode.checks.validate`), what it returns (:class:`Solution`), and the two units
of ``stats["nfe"]``."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

__all__ = ["F_EVALS", "TAYLOR_ORDERS", "Problem", "Solution"]

# the two units of stats["nfe"] (Solution.nfe_unit says which one a solve reports)
F_EVALS = "f evaluations"
TAYLOR_ORDERS = "Taylor coefficient orders"


class Solution(eqx.Module):
    """What :func:`taynode.solve` returns.

    Attributes:
        ts: the output times.
        ys: the state at each of ``ts`` (a leading time axis on every leaf).
        integrals: ``{name: per-example integral over [t0, t1]}`` for each regularizer.
        stats: ``nfe`` (in units of :attr:`nfe_unit`), ``steps`` (accepted), ``rejected``,
            ``attempted``; see :func:`taynode.solve`.
        step_ts: with ``save_steps=True``, the time after every accepted step (padded to
            ``max_steps`` with ``inf``); otherwise ``None``.
        step_ys: with ``save_steps=True``, the state after every accepted step (padded as
            ``step_ts``); otherwise ``None``.
        nfe_unit: what ``stats["nfe"]`` counts: ``"f evaluations"`` (Runge–Kutta solvers) or
            ``"Taylor coefficient orders"`` (the Taylor method: a step of order p counts p).
            Static, so it survives ``jax.jit``.
    """

    ts: jax.Array
    ys: Any
    integrals: dict
    stats: dict
    step_ts: jax.Array | None = None
    step_ys: Any = None
    nfe_unit: str = eqx.field(static=True, default=F_EVALS)

    @property
    def z1(self) -> Any:
        """The state at the final time."""
        return jax.tree_util.tree_map(lambda y: y[-1], self.ys)


class Problem(eqx.Module):
    """A solve's validated inputs (see :func:`taynode.solve` for each option).

    A pytree: the arrays (in ``f``, ``z0``, ``ts``, ``args``, ``key``, ``noise``) are its
    leaves and every option is static, so one jitted integrator serves every solve of the same
    dynamics, options and shapes. ``regs`` are the integrand regularizers, ``step_regs`` the
    solver-heuristic ones; ``noise`` is Hutchinson's ε (or ``None``); ``sampled`` says whether
    the regularizers are estimated at ``samples`` random times instead of integrated;
    ``direction`` is sign(t1 - t0) when the times are known (else ``None``).
    """

    f: Any
    z0: Any
    ts: jax.Array
    args: Any
    key: Any  # a PRNG key, or None
    noise: Any
    steps: Any = eqx.field(static=True)  # int (fixed grid) or None (adaptive)
    rtol: Any = eqx.field(static=True)  # float (adaptive) or None (fixed grid)
    atol: Any = eqx.field(static=True)
    regs: tuple = eqx.field(static=True)
    step_regs: tuple = eqx.field(static=True)
    sampled: bool = eqx.field(static=True)
    samples: int = eqx.field(static=True)
    error_control: str = eqx.field(static=True)
    adjoint: str = eqx.field(static=True)
    checkpoints: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    save_steps: bool = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    # sign(t1 - t0) when the times were known at the call (a constant of the compiled program,
    # as it was before #23: XLA then drops the integrands' multiply by +1); None for traced times
    direction: float | None = eqx.field(static=True, default=None)

    @property
    def adaptive(self) -> bool:
        """Whether the solver chooses its steps (``steps is None``)."""
        return self.steps is None
