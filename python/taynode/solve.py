r"""One entry point: :func:`solve` integrates dz/dt = f(t, z, args) and any regularizers together.

The augmented state is ``(z, {name: r})`` with :math:`\dot r = \text{integrand}(t, z)` per
example, so one solve returns the trajectory and every regularizer's integral
:math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|` (non-negative in either time direction).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from . import regularizers as _reg
from . import solver_heuristics as _heuristics
from . import solvers as _solvers
from .taylor import check_output_matches

__all__ = ["DEFAULT_CHECKPOINTS", "DEFAULT_TOL", "ERROR_CONTROLS", "QUADRATURES", "Solution", "sample_times", "solve"]

QUADRATURES = ("integrated", "sampled")
ERROR_CONTROLS = ("all", "state")
DEFAULT_CHECKPOINTS = 16  # see _adjoint and benchmarks/training_cost.py
SAMPLE_STREAM = 0x5A  # the sample times' PRNG stream, independent of the Hutchinson noise drawn from key

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
        where = f"{what}{jax.tree_util.keystr(path)}"
        if isinstance(x, (float, complex, np.floating)) and not np.isfinite(x):
            raise ValueError(f"{where} is {x}")
        if not eqx.is_inexact_array(x):
            out.append(x)
            continue
        if _is_concrete(x):
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"{where} contains NaN or inf")
            out.append(x)
        else:
            out.append(eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"{where} contains NaN or inf"))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), out)


_MAX_STEPS_MESSAGE = (
    "The maximum number of solver steps was reached before t1 (raise max_steps=): the step size "
    "collapsed. An explicit solver does this on a stiff problem (e.g. Van der Pol with large mu; "
    "use a looser rtol/atol or an implicit solver) and when the solution blows up or becomes NaN "
    "(check the dynamics, its parameters and the learning rate)."
)


def _finite_at_start(dz):
    """f(t0, z0) is finite, or an error: catches NaN/inf in arrays a plain function closes over,
    which would otherwise only surface as step-size collapse (max_steps)."""
    msg = ("f(t0, z0, args) contains NaN or inf although z0 and args are finite: check the arrays f "
           "closes over (e.g. the weights of a plain function) and what f computes at t0")
    bad = ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(dz)]))
    if _is_concrete(bad):
        if bool(bad):
            raise ValueError(msg)
        return dz
    return eqx.error_if(dz, bad, msg)


def _check_result(result, zs, max_steps):
    """diffrax's failure codes as clear errors (raised now for concrete values, at run time under jit)."""
    msgs = ["", _MAX_STEPS_MESSAGE.replace("max_steps=", f"max_steps={max_steps}"),
            "the solve failed: diffrax reported an error other than max_steps"]
    index = jnp.where(result == dfx.RESULTS.successful, 0, jnp.where(result == dfx.RESULTS.max_steps_reached, 1, 2))
    return eqx.branched_error_if(zs, index != 0, index, msgs)


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


def _adjoint(name, checkpoints, adaptive, rtol, atol):
    if name == "backprop":
        # diffrax's default keeps O(sqrt(max_steps)) checkpoints (90 for 4096) and sorts and
        # copies that whole buffer in the backward pass, a fixed cost that dominates short
        # solves: 16 store every step of a typical neural-ODE solve and recompute each step at
        # most once up to 153 steps (benchmarks/training_cost.py measures the choice).
        return dfx.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    if name == "adjoint":
        if not adaptive:
            return dfx.BacksolveAdjoint()
        # Kidger, Chen & Lyons (2021): the parameter cotangents need no error control.
        return dfx.BacksolveAdjoint(stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol, norm=dfx.adjoint_rms_seminorm))
    raise ValueError(f"unknown adjoint {name!r}; valid: 'backprop' (through the solver), 'adjoint' (continuous)")


def _as_state(z0):
    """Array-likes (nested lists of numbers, NumPy arrays) become one array; pytrees of arrays stay."""
    if isinstance(z0, (list, tuple)) and all(isinstance(x, (int, float, np.number)) for x in jax.tree_util.tree_leaves(z0)):
        return np.asarray(z0)
    return z0


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _float32_tolerance_warning(dtype, rtol, atol):
    eps = float(jnp.finfo(dtype).eps)
    if min(float(rtol), float(atol)) < eps:
        warnings.warn(
            f"rtol={rtol:g}, atol={atol:g} are below what {jnp.dtype(dtype).name} resolves (eps = {eps:.2g}): the "
            f"solver takes many more steps without getting more accurate. Use a tolerance >= {eps:.1g}, or float64 "
            f"(jax.config.update('jax_enable_x64', True) and float64 arrays).",
            stacklevel=3,
        )


def sample_times(key, t0, t1, samples: int):
    r"""Stratified uniform times :math:`\tau_m = t_0 + (t_1 - t_0)(m + u_m)/M`, :math:`u_m \sim U[0, 1)`.

    Each :math:`\tau_m` is uniform on its own M-th of [t0, t1], so
    :math:`|t_1 - t_0|\,\frac1M\sum_m r(\tau_m)` is an unbiased estimate of
    :math:`\int r\,|dt|`; the times are monotone in the direction of integration.
    """
    u = jax.random.uniform(key, (samples,), dtype=jnp.result_type(t0))
    return t0 + (t1 - t0) * (jnp.arange(samples, dtype=u.dtype) + u) / samples


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
    quadrature: str = "integrated",
    samples: int = 1,
    error_control: str = "all",
    adjoint: str = "backprop",
    checkpoints: int = DEFAULT_CHECKPOINTS,
    max_steps: int = 4096,
    save_steps: bool = False,
) -> Solution:
    r"""Solve dz/dt = f(t, z, args) from ``z0`` at ``ts[0]`` and return the state at every ``ts``.

    Args:
        f: dynamics ``f(t, z, args)``, returning the structure and shapes of ``z``.
        z0: initial state: an array whose leading axis is the batch, or a pytree of them
            (a nested list of numbers is read as one array).
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
            (``"r3"``, ``"kinetic"``, ``"jacobian"``), and the solver-heuristic ones
            (:mod:`taynode.solver_heuristics`: ``"ernode"``, ``"srnode"``), which sum the error or
            stiffness estimate times |h| over the accepted steps (with ``quadrature="sampled"``:
            their local variant, one fresh step at each sample time).
        key: PRNG key for regularizers that need noise (``"jacobian"``) and for the sample
            times of ``quadrature="sampled"``.
        quadrature: how each regularizer's :math:`\int r(t, z(t))\,|dt|` is computed.
            ``"integrated"`` (the paper's): r is appended to the ODE state and integrated by the
            solver, so it is evaluated at every stage of every step. ``"sampled"``: the unbiased
            estimate :math:`|t_1 - t_0|\frac1M\sum_m r(\tau_m, z(\tau_m))` at ``samples`` = M
            stratified uniform times (:func:`sample_times`, drawn from ``key`` per solve), with
            :math:`z(\tau_m)` from the solve's own dense output (differentiable): M evaluations
            of r per solve instead of one per stage, and r stays out of the step-size control.
        samples: M, the number of sample times of ``quadrature="sampled"``.
        error_control: with ``quadrature="integrated"``, which states the step-size controller
            looks at: ``"all"`` (the state and the regularizers' integrals, as the paper's code)
            or ``"state"`` (the state only, so a regularizer cannot add steps; its integral is
            then as accurate as the steps the state needs make it).
        adjoint: ``"backprop"`` (differentiate through the solver; diffrax's
            ``RecursiveCheckpointAdjoint`` with ``checkpoints``) or ``"adjoint"`` (continuous
            adjoint, diffrax's ``BacksolveAdjoint``; adaptive solves use the adjoint seminorm of
            Kidger, Chen & Lyons 2021 for the backward solve). The adjoint differentiates
            parameters held in ``args`` or in an equinox module ``f``, not ones a plain
            function closes over.
        checkpoints: with ``adjoint="backprop"``, how many steps the forward pass stores for the
            backward pass. A solve of at most this many steps is never recomputed beyond its
            own step; up to (c+1)(c+2)/2 steps, each step at most once more (Stumm & Walther).
            Memory: about ``checkpoints`` copies of the solver's state.
        max_steps: an error is raised if the solve needs more steps.
        save_steps: also return the accepted steps' times and states (for plots and studies).

    ``stats`` holds ``nfe`` (evaluations of the vector field by the solver), ``steps``
    (accepted), ``rejected``, ``attempted``, ``regularizer_evals`` (evaluations of each
    regularizer's integrand: ``nfe`` when integrated, M when sampled), and with
    ``adjoint="backprop"`` ``nfe_backward``: the vector field's vector–Jacobian products in
    the backward pass (one per forward evaluation after the initial-step selection, whose step
    size is not differentiated); the continuous adjoint's backward solve is adaptive and its
    count is not known to the forward pass.
    """
    # "taylor", "taylor<p>", "taylor-adaptive": the Taylor-series integrator (taynode.taylor_solver)
    taylor = isinstance(solver, str) and solver.startswith("taylor")
    # ERNODE/SRNODE (taynode.solver_heuristics): summed over the accepted steps, not integrands
    step_regs, regularizers = _heuristics.split(regularizers)
    if taylor:
        from . import taylor_solver as _taylor_solver

        taylor_options = _taylor_solver.parse_solver_name(solver, regularizers, adjoint, steps)
    spec = None if taylor else solver if isinstance(solver, _solvers.SolverSpec) else _solvers.get(solver)
    _heuristics.check(step_regs, solver, spec, steps, adjoint, quadrature, _solvers.SOLVERS)
    regs = [_reg.parse(r) for r in regularizers]
    names = [r.name for r in regs] + [r.name for r in step_regs]
    if len(set(names)) != len(names):
        raise ValueError(f"regularizers must have distinct names, got {names}")
    if quadrature not in QUADRATURES:
        raise ValueError(f"unknown quadrature {quadrature!r}; valid: {', '.join(QUADRATURES)}")
    if error_control not in ERROR_CONTROLS:
        raise ValueError(f"unknown error_control {error_control!r}; valid: {', '.join(ERROR_CONTROLS)}")
    _check_int("samples", samples, 1)
    _check_int("max_steps", max_steps, 1)
    _check_int("checkpoints", checkpoints, 1)
    sampled = quadrature == "sampled" and bool(regs or step_regs)
    if sampled and key is None:
        raise ValueError("quadrature='sampled' draws the regularizers' sample times at random: pass key=")
    z0 = _as_state(z0)
    leaves = jax.tree_util.tree_leaves(z0)
    if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
        raise TypeError("z0 must be a floating-point array or a pytree of them (e.g. jnp.asarray(z0, jnp.float64))")
    z0 = jax.tree_util.tree_map(jnp.asarray, z0)
    leaves = jax.tree_util.tree_leaves(z0)
    if any(x.ndim < 1 for x in leaves):
        raise ValueError("every leaf of z0 needs a leading batch axis (use shape (1, d) for one example)")
    dtype = jnp.result_type(*leaves)
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
        _float32_tolerance_warning(dtype, rtol, atol)
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
        stats = dict(nfe=jnp.array(0), steps=jnp.array(0), rejected=jnp.array(0), attempted=jnp.array(0),
                     regularizer_evals=jnp.array(0))
        return Solution(ts=ts, ys=ys, integrals=zeros, stats=stats)
    if taylor:
        ys, stats, step_ts, step_ys = _taylor_solver.taylor_solve(
            f, z0, ts, args, rtol=rtol, atol=atol, max_steps=max_steps, save_steps=save_steps, **taylor_options
        )
        return Solution(ts=ts, ys=ys, integrals={}, stats=stats, step_ts=step_ts, step_ys=step_ys)
    direction = jnp.sign(t1 - t0)
    integrated = [] if sampled else regs

    # Everything differentiable travels in diffrax's args (the continuous adjoint only
    # differentiates explicit inputs); f's static parts are closed over.
    f_arrays, f_static = eqx.partition(f, eqx.is_array)

    def vector_field(t, y, packed):
        f_arrays, args, noise, direction = packed
        f_ = eqx.combine(f_arrays, f_static)
        z, _ = y
        dz = f_(t, z, args)
        dr = {r.name: direction * r.integrand(f_, t, z, args, noise) for r in integrated}
        return dz, dr

    packed = (f_arrays, args, noise, direction)

    y0 = (z0, {r.name: jnp.zeros((batch,), dtype) for r in integrated})
    term = dfx.ODETerm(vector_field)
    if adaptive:
        fun = lambda t, y: vector_field(t, y, packed)  # noqa: E731
        f0 = fun(t0, y0)
        f0 = (_finite_at_start(f0[0]), f0[1])
        dt0 = _solvers.initial_step_size(fun, t0, y0, direction, spec.order, rtol, atol, f0)
        norm = (lambda err: optx.rms_norm(err[0])) if error_control == "state" else optx.rms_norm
        controller = dfx.PIDController(rtol=rtol, atol=atol, norm=norm)
    else:
        dt0 = (t1 - t0) / steps
        controller = dfx.ConstantStepSize()
        max_steps = max(max_steps, steps)

    save_ts, n_out = ts, ts.shape[0]
    if sampled:
        taus = sample_times(jax.random.fold_in(key, SAMPLE_STREAM), t0, t1, samples)
        every = jnp.concatenate([ts, taus])
        order = jnp.argsort(direction * every)
        save_ts, unsort = every[order], jnp.argsort(order)
    accumulate = bool(step_regs) and not sampled
    if save_steps:
        if adjoint != "backprop":
            raise ValueError("save_steps=True works with adjoint='backprop' only (a diffrax limitation)")
        saveat = dfx.SaveAt(subs=[dfx.SubSaveAt(ts=save_ts), dfx.SubSaveAt(steps=True)], solver_state=accumulate)
    else:
        saveat = dfx.SaveAt(ts=save_ts, solver_state=accumulate)
    inner = spec.make()
    sol = dfx.diffeqsolve(
        term,
        _heuristics.wrap(inner, step_regs, lambda y: y[0], rtol, atol) if accumulate else inner,
        t0,
        t1,
        dt0,
        y0,
        packed,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=_adjoint(adjoint, min(checkpoints, max_steps), adaptive, rtol, atol),
        max_steps=max_steps,
        throw=False,
    )
    if save_steps:
        (zs, rs), (step_zs, _) = sol.ys
        step_ts = sol.ts[1]
    else:
        (zs, rs), step_zs, step_ts = sol.ys, None, None
    zs = _check_result(sol.result, zs, max_steps)
    attempted = sol.stats["num_steps"]
    nfe = spec.nfe(attempted, adaptive)
    if sampled:
        zs = jax.tree_util.tree_map(lambda y: y[unsort], zs)
        z_tau = jax.tree_util.tree_map(lambda y: y[n_out:], zs)
        zs = jax.tree_util.tree_map(lambda y: y[:n_out], zs)
        f_ = eqx.combine(f_arrays, f_static)
        integrals = {
            r.name: jnp.abs(t1 - t0) * jnp.mean(jax.vmap(lambda t, z: r.integrand(f_, t, z, args, noise))(taus, z_tau), axis=0)
            for r in regs
        }
        if step_regs:
            integrals.update(_heuristics.local_values(
                step_regs, inner, term, packed, taus, (z_tau, {}), t1, direction, spec.order, rtol, atol,
                _solvers.initial_step_size, lambda y: y[0]))
        reg_evals = jnp.array(samples)
    else:
        integrals = {n: r[-1] for n, r in rs.items()}
        if accumulate:
            integrals.update(_heuristics.accumulated(sol.solver_state))
        reg_evals = nfe if regs else jnp.array(0)
    stats = dict(nfe=nfe, steps=sol.stats["num_accepted_steps"], rejected=sol.stats["num_rejected_steps"],
                 attempted=attempted, regularizer_evals=reg_evals)
    if adjoint == "backprop":
        stats["nfe_backward"] = nfe - (_solvers.INITIAL_STEP_EVALS if adaptive else 0)
    return Solution(ts=ts, ys=zs, integrals=integrals, stats=stats, step_ts=step_ts, step_ys=step_zs)
