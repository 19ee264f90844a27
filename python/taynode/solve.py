r"""One entry point: :func:`solve` integrates dz/dt = f(t, z, args) and any regularizers together.

:func:`solve` validates its inputs into a :class:`~taynode.problem.Problem` and hands it to the
solver's registry entry (:mod:`taynode.solvers`): the Runge–Kutta entries integrate the
augmented state ``(z, {name: r})`` with :math:`\dot r = \text{integrand}(t, z)` per example
(:mod:`taynode.rk_integrator`), so one solve returns the trajectory and every regularizer's
integral :math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|` (non-negative in either time
direction); the Taylor method integrates z alone (:mod:`taynode.taylor_solver`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import regularizers as _reg
from . import solver_heuristics as _heuristics
from . import solvers as _solvers
from .problem import Problem, Solution
from .rk_integrator import SAMPLE_STREAM, sample_times  # noqa: F401 (re-exported: tests and users import them here)
from .taylor import check_output_matches

__all__ = ["DEFAULT_CHECKPOINTS", "DEFAULT_TOL", "ERROR_CONTROLS", "QUADRATURES", "Solution", "sample_times", "solve"]

QUADRATURES = ("integrated", "sampled")
ERROR_CONTROLS = ("all", "state")
DEFAULT_CHECKPOINTS = 16  # see rk_integrator._adjoint and benchmarks/training_cost.py

# rtol = atol defaults by state dtype: the paper's 1.4e-8 (jax.experimental.ode's default) in
# float64; float32 cannot resolve 1.4e-8 (its epsilon is 1.2e-7) and would only inflate NFE.
DEFAULT_TOL = {jnp.dtype("float64"): 1.4e-8, jnp.dtype("float32"): 1e-6}


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
            stacklevel=4,  # the caller of solve (via _tolerances)
        )


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
    spec = _solvers.get(solver)
    rset = _reg.RegularizerSet.parse(regularizers)
    regs, step_regs = rset.integrands, rset.step_regularizers
    _heuristics.check(step_regs, solver, spec, steps, adjoint, quadrature, _solvers.SOLVERS)
    spec.check(steps=steps, regularizers=regs, adjoint=adjoint)
    _check_options(quadrature, error_control, samples, max_steps, checkpoints)
    sampled = quadrature == "sampled" and bool(rset)
    if sampled and key is None:
        raise ValueError("quadrature='sampled' draws the regularizers' sample times at random: pass key=")
    z0, dtype, batch = _check_state(z0)
    ts = jnp.asarray(ts, dtype=dtype)
    _check_ts(ts)
    rtol, atol = _tolerances(steps, rtol, atol, dtype)
    z0, args, f = _check_finite(z0, "z0"), _check_finite(args, "args"), _check_parameters(f)
    check_output_matches(f, ts[0], z0, args)
    if any(r.needs_noise for r in regs) and key is None:
        raise ValueError(f"regularizers {[r.name for r in regs if r.needs_noise]} need noise: pass key=")
    noise = _reg.hutchinson_noise(key, z0) if key is not None and any(r.needs_noise for r in regs) else None
    problem = Problem(f=f, z0=z0, ts=ts, args=args, steps=steps, rtol=rtol, atol=atol, regs=regs, step_regs=step_regs,
                      key=key, noise=noise, sampled=sampled, samples=samples, error_control=error_control,
                      adjoint=adjoint, checkpoints=checkpoints, max_steps=max_steps, save_steps=save_steps, dtype=dtype,
                      batch=batch)  # fmt: skip
    if _is_concrete(ts) and np.asarray(ts)[0] == np.asarray(ts)[-1]:
        return _empty_interval(problem, rset.names, spec.nfe_unit)
    return spec.integrate(problem)


def _check_options(quadrature, error_control, samples, max_steps, checkpoints):
    if quadrature not in QUADRATURES:
        raise ValueError(f"unknown quadrature {quadrature!r}; valid: {', '.join(QUADRATURES)}")
    if error_control not in ERROR_CONTROLS:
        raise ValueError(f"unknown error_control {error_control!r}; valid: {', '.join(ERROR_CONTROLS)}")
    _check_int("samples", samples, 1)
    _check_int("max_steps", max_steps, 1)
    _check_int("checkpoints", checkpoints, 1)


def _check_state(z0):
    """``(z0 as arrays, its dtype, batch size)``, or an error naming what is wrong."""
    z0 = _as_state(z0)
    leaves = jax.tree_util.tree_leaves(z0)
    if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
        raise TypeError("z0 must be a floating-point array or a pytree of them (e.g. jnp.asarray(z0, jnp.float64))")
    z0 = jax.tree_util.tree_map(jnp.asarray, z0)
    leaves = jax.tree_util.tree_leaves(z0)
    if any(x.ndim < 1 for x in leaves):
        raise ValueError("every leaf of z0 needs a leading batch axis (use shape (1, d) for one example)")
    return z0, jnp.result_type(*leaves), leaves[0].shape[0]


def _tolerances(steps, rtol, atol, dtype):
    """``(rtol, atol)`` of an adaptive solve (defaults by dtype), ``(None, None)`` on a fixed grid."""
    if steps is None:
        default = DEFAULT_TOL.get(jnp.dtype(dtype), 1.4e-8)
        rtol = default if rtol is None else rtol
        atol = default if atol is None else atol
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
        _float32_tolerance_warning(dtype, rtol, atol)
        return rtol, atol
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer (fixed grid) or None (adaptive), got {steps!r}")
    if rtol is not None or atol is not None:
        raise ValueError("rtol/atol apply to adaptive solves; a fixed-grid solve (steps=N) takes neither")
    return rtol, atol


def _check_parameters(f):
    """An equinox module's parameters are finite (see :func:`_check_finite`)."""
    if isinstance(f, eqx.Module):
        params, rest = eqx.partition(f, eqx.is_inexact_array)
        f = eqx.combine(_check_finite(params, "parameters of f"), rest)
    return f


def _empty_interval(p: Problem, names, nfe_unit):
    """``ts = (t0, t0)``: z0 twice, zero integrals, no evaluations."""
    zeros = {n: jnp.zeros((p.batch,), p.dtype) for n in names}
    ys = jax.tree_util.tree_map(lambda z: jnp.stack([z, z]), p.z0)
    stats = dict(
        nfe=jnp.array(0), steps=jnp.array(0), rejected=jnp.array(0), attempted=jnp.array(0), regularizer_evals=jnp.array(0)
    )
    return Solution(ts=p.ts, ys=ys, integrals=zeros, stats=stats, nfe_unit=nfe_unit)
