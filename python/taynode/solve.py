r"""One entry point: :func:`solve` integrates dz/dt = f(t, z, args) and any regularizers together.

The augmented state is ``(z, {name: r})`` with :math:`\dot r = \text{integrand}(t, z)` per
example, so one solve returns the trajectory and every regularizer's integral
:math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|` (non-negative in either time direction).
"""

from __future__ import annotations

from typing import Sequence

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import regularizers as _reg
from . import solvers as _solvers
from .taylor import check_output_matches

__all__ = ["DEFAULT_TOL", "Solution", "solve"]

# rtol = atol defaults by state dtype: the paper's 1.4e-8 (jax.experimental.ode's default) in
# float64; float32 cannot resolve 1.4e-8 (its epsilon is 1.2e-7) and would only inflate NFE.
DEFAULT_TOL = {jnp.dtype("float64"): 1.4e-8, jnp.dtype("float32"): 1e-6}


class Solution(eqx.Module):
    """What :func:`solve` returns.

    Attributes:
        ts: the output times.
        ys: the state at each of ``ts`` (a leading time axis on every leaf).
        integrals: ``{name: per-example integral over [t0, t1]}`` for each regularizer.
        stats: ``nfe`` (evaluations of f by the solver), ``steps`` (accepted), ``rejected``,
            ``attempted``.
        step_ts, step_ys: with ``save_steps=True``, the time and state after every accepted
            step (padded to ``max_steps`` with ``inf``); otherwise ``None``.
    """

    ts: jax.Array
    ys: object
    integrals: dict
    stats: dict
    step_ts: jax.Array | None = None
    step_ys: object = None

    @property
    def z1(self):
        """The state at the final time."""
        return jax.tree_util.tree_map(lambda y: y[-1], self.ys)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_finite(tree, what: str):
    """Concrete values are checked now (ValueError); traced ones when the computation runs."""
    out = []
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if not eqx.is_inexact_array(x):
            out.append(x)
            continue
        where = f"{what}{jax.tree_util.keystr(path)}"
        if _is_concrete(x):
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"{where} contains NaN or inf")
            out.append(x)
        else:
            out.append(eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"{where} contains NaN or inf"))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), out)


def _check_ts(ts):
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least two times [t0, ..., t1], got shape {ts.shape}")
    if not _is_concrete(ts):
        return
    t = np.asarray(ts)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"ts contains NaN or inf: {t}")
    if t[0] == t[-1]:
        if len(t) != 2:
            raise ValueError("ts with t1 == t0 must be exactly (t0, t0)")
        return
    d = np.diff(t) * np.sign(t[-1] - t[0])
    if not np.all(d > 0):
        raise ValueError(f"ts must be strictly increasing (or strictly decreasing, to integrate backwards): {t}")


def _adjoint(name):
    if name == "backprop":
        return dfx.RecursiveCheckpointAdjoint()
    if name == "adjoint":
        return dfx.BacksolveAdjoint()
    raise ValueError(f"unknown adjoint {name!r}; valid: 'backprop' (through the solver), 'adjoint' (continuous)")


def solve(
    f,
    z0,
    ts: Sequence[float] | jax.Array = (0.0, 1.0),
    args=None,
    *,
    solver: str = "dopri5",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    regularizers: Sequence = (),
    key: jax.Array | None = None,
    adjoint: str = "backprop",
    max_steps: int = 4096,
    save_steps: bool = False,
) -> Solution:
    """Solve dz/dt = f(t, z, args) from ``z0`` at ``ts[0]`` and return the state at every ``ts``.

    Args:
        f: dynamics ``f(t, z, args)``, returning the structure and shapes of ``z``.
        z0: initial state: an array whose leading axis is the batch, or a pytree of them.
        ts: output times, strictly monotone; ``ts[0]`` is t0 and ``ts[-1]`` is t1. ``t1 < t0``
            integrates backwards. ``ts = (t0, t0)`` returns ``z0`` with zero integrals and NFE 0.
        args: passed to ``f``; differentiable.
        solver: a name in :data:`taynode.solvers.SOLVERS`, or a
            :class:`~taynode.solvers.SolverSpec` (e.g. a study's own tableau), or the Taylor-series
            integrator (:mod:`taynode.taylor_solver`): ``"taylor"`` (Jorba & Zou's order for the
            tolerance), ``"taylor<p>"`` (order p, e.g. ``"taylor12"``), ``"taylor-adaptive"``
            (order chosen per step). Its ``stats["nfe"]`` counts Taylor coefficient orders.
        steps: ``None`` for an adaptive solve; an integer for a fixed grid of that many steps.
        rtol, atol: tolerances of the adaptive solve (default :data:`DEFAULT_TOL` by dtype).
        regularizers: :class:`~taynode.regularizers.Regularizer` instances or names
            (``"r3"``, ``"kinetic"``, ``"jacobian"``), integrated in the same solve.
        key: PRNG key for regularizers that need noise (``"jacobian"``).
        adjoint: ``"backprop"`` (differentiate through the solver) or ``"adjoint"``
            (continuous adjoint, diffrax's ``BacksolveAdjoint``). The adjoint differentiates
            parameters held in ``args`` or in an equinox module ``f``, not ones a plain
            function closes over.
        max_steps: an error is raised if the solve needs more steps.
        save_steps: also return the accepted steps' times and states (for plots and studies).
    """
    # "taylor", "taylor<p>", "taylor-adaptive": the Taylor-series integrator (taynode.taylor_solver)
    taylor = isinstance(solver, str) and solver.startswith("taylor")
    if taylor:
        from . import taylor_solver as _taylor_solver

        taylor_options = _taylor_solver.parse_solver_name(solver, regularizers, adjoint, steps)
    spec = None if taylor else solver if isinstance(solver, _solvers.SolverSpec) else _solvers.get(solver)
    regs = [_reg.parse(r) for r in regularizers]
    names = [r.name for r in regs]
    if len(set(names)) != len(names):
        raise ValueError(f"regularizers must have distinct names, got {names}")
    leaves = jax.tree_util.tree_leaves(z0)
    if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
        raise TypeError("z0 must be a floating-point array or a pytree of them")
    z0 = jax.tree_util.tree_map(jnp.asarray, z0)
    if any(x.ndim < 1 for x in jax.tree_util.tree_leaves(z0)):
        raise ValueError("every leaf of z0 needs a leading batch axis (use shape (1, d) for one example)")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(z0))
    ts = jnp.asarray(ts, dtype=dtype)
    _check_ts(ts)
    adaptive = steps is None
    if adaptive:
        if not taylor and not spec.embedded:
            raise ValueError(
                f"solver {solver!r} has no error estimate, so it cannot run adaptively: pass steps=N "
                f"for a fixed grid, or choose one of {[s for s, v in _solvers.SOLVERS.items() if v.embedded]}"
            )
        default = DEFAULT_TOL.get(jnp.dtype(dtype), 1.4e-8)
        rtol = default if rtol is None else rtol
        atol = default if atol is None else atol
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    else:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be a positive integer (fixed grid) or None (adaptive), got {steps!r}")
        if rtol is not None or atol is not None:
            raise ValueError("rtol/atol apply to adaptive solves; a fixed-grid solve (steps=N) takes neither")
    z0 = _check_finite(z0, "z0")
    args = _check_finite(args, "args")
    if isinstance(f, eqx.Module):
        params, rest = eqx.partition(f, eqx.is_inexact_array)
        f = eqx.combine(_check_finite(params, "parameters of f"), rest)
    check_output_matches(f, ts[0], z0, args)
    if any(r.needs_noise for r in regs) and key is None:
        raise ValueError(f"regularizers {[r.name for r in regs if r.needs_noise]} need noise: pass key=")
    batch = leaves[0].shape[0]
    noise = None
    if key is not None and any(r.needs_noise for r in regs):
        noise = _reg.hutchinson_noise(key, z0)

    t0, t1 = ts[0], ts[-1]
    if _is_concrete(ts) and np.asarray(ts)[0] == np.asarray(ts)[-1]:
        zeros = {n: jnp.zeros((batch,), dtype) for n in names}
        ys = jax.tree_util.tree_map(lambda z: jnp.stack([z, z]), z0)
        stats = dict(nfe=jnp.array(0), steps=jnp.array(0), rejected=jnp.array(0), attempted=jnp.array(0))
        return Solution(ts=ts, ys=ys, integrals=zeros, stats=stats)
    if taylor:
        ys, stats, step_ts, step_ys = _taylor_solver.taylor_solve(
            f, z0, ts, args, rtol=rtol, atol=atol, max_steps=max_steps, save_steps=save_steps, **taylor_options
        )
        return Solution(ts=ts, ys=ys, integrals={}, stats=stats, step_ts=step_ts, step_ys=step_ys)
    direction = jnp.sign(t1 - t0)

    # Everything differentiable travels in diffrax's args (the continuous adjoint only
    # differentiates explicit inputs); f's static parts are closed over.
    f_arrays, f_static = eqx.partition(f, eqx.is_array)

    def vector_field(t, y, packed):
        f_arrays, args, noise, direction = packed
        f_ = eqx.combine(f_arrays, f_static)
        z, _ = y
        dz = f_(t, z, args)
        dr = {r.name: direction * r.integrand(f_, t, z, args, noise) for r in regs}
        return dz, dr

    packed = (f_arrays, args, noise, direction)

    y0 = (z0, {n: jnp.zeros((batch,), dtype) for n in names})
    term = dfx.ODETerm(vector_field)
    if adaptive:
        fun = lambda t, y: vector_field(t, y, packed)  # noqa: E731
        dt0 = _solvers.initial_step_size(fun, t0, y0, direction, spec.order, rtol, atol, fun(t0, y0))
        controller = dfx.PIDController(rtol=rtol, atol=atol)
    else:
        dt0 = (t1 - t0) / steps
        controller = dfx.ConstantStepSize()
        max_steps = max(max_steps, steps)
    if save_steps:
        if adjoint != "backprop":
            raise ValueError("save_steps=True works with adjoint='backprop' only (a diffrax limitation)")
        saveat = dfx.SaveAt(subs=[dfx.SubSaveAt(ts=ts), dfx.SubSaveAt(steps=True)])
    else:
        saveat = dfx.SaveAt(ts=ts)
    sol = dfx.diffeqsolve(
        term,
        spec.make(),
        t0,
        t1,
        dt0,
        y0,
        packed,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=_adjoint(adjoint),
        max_steps=max_steps,
    )
    if save_steps:
        (zs, rs), (step_zs, _) = sol.ys
        step_ts = sol.ts[1]
    else:
        (zs, rs), step_zs, step_ts = sol.ys, None, None
    attempted = sol.stats["num_steps"]
    stats = dict(
        nfe=spec.nfe(attempted, adaptive),
        steps=sol.stats["num_accepted_steps"],
        rejected=sol.stats["num_rejected_steps"],
        attempted=attempted,
    )
    return Solution(
        ts=ts,
        ys=zs,
        integrals={n: r[-1] for n, r in rs.items()},
        stats=stats,
        step_ts=step_ts,
        step_ys=step_zs,
    )
