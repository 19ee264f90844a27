"""What a solver entry receives (:class:`Problem`, validated by :func:`taynode.solve`) and
returns (:class:`Solution`)."""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax

from .solvers import F_EVALS

__all__ = ["Problem", "Solution"]


class Solution(eqx.Module):
    """What :func:`taynode.solve` returns.

    Attributes:
        ts: the output times.
        ys: the state at each of ``ts`` (a leading time axis on every leaf).
        integrals: ``{name: per-example integral over [t0, t1]}`` for each regularizer.
        stats: ``nfe`` (in units of :attr:`nfe_unit`), ``steps`` (accepted), ``rejected``,
            ``attempted``; see :func:`taynode.solve`.
        step_ts, step_ys: with ``save_steps=True``, the time and state after every accepted
            step (padded to ``max_steps`` with ``inf``); otherwise ``None``.
        nfe_unit: what ``stats["nfe"]`` counts: ``"f evaluations"`` (Runge–Kutta solvers) or
            ``"Taylor coefficient orders"`` (the Taylor method: a step of order p counts p).
            Static, so it survives ``jax.jit``.
    """

    ts: jax.Array
    ys: object
    integrals: dict
    stats: dict
    step_ts: jax.Array | None = None
    step_ys: object = None
    nfe_unit: str = eqx.field(static=True, default=F_EVALS)

    @property
    def z1(self):
        """The state at the final time."""
        return jax.tree_util.tree_map(lambda y: y[-1], self.ys)


@dataclass(frozen=True)
class Problem:
    """A solve's validated inputs (see :func:`taynode.solve` for each option).

    ``regs`` are the integrand regularizers (:class:`~taynode.regularizers.Regularizer`),
    ``step_regs`` the solver-heuristic ones (:mod:`taynode.solver_heuristics`); ``noise`` is
    Hutchinson's ε (or ``None``); ``sampled`` says whether the regularizers are estimated at
    ``samples`` random times instead of integrated.
    """

    f: object
    z0: object
    ts: jax.Array
    args: object
    steps: int | None
    rtol: float | None
    atol: float | None
    regs: tuple
    step_regs: tuple
    key: jax.Array | None
    noise: object
    sampled: bool
    samples: int
    error_control: str
    adjoint: str
    checkpoints: int
    max_steps: int
    save_steps: bool
    dtype: object
    batch: int

    @property
    def adaptive(self) -> bool:
        return self.steps is None
