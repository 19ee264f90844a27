"""Every check of a solve's inputs, in one place, before any work: the options, the solver
against the options and the regularizers, the state, the times and the tolerances.

:func:`validate` turns :func:`taynode.solve`'s arguments into a :class:`~taynode.ode.problem.Problem`
or raises an error that names the problem and the fix.
"""

from __future__ import annotations

import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._jax import is_tracer
from ..regularizers import RegularizerSet, hutchinson_noise
from ..taylor import check_output_matches
from . import failures
from .problem import Problem
from .registry import RUNGE_KUTTA, SOLVERS, Entry, SolverSpec, TaylorSpec, get, solvers_with_pair
from .rk import ADJOINTS

__all__ = ["DEFAULT_TOL", "ERROR_CONTROLS", "QUADRATURES", "is_concrete", "validate"]

QUADRATURES = ("integrated", "sampled")
ERROR_CONTROLS = ("all", "state")

# rtol = atol defaults by state dtype: the paper's 1.4e-8 (jax.experimental.ode's default) in
# float64; float32 cannot resolve 1.4e-8 (its epsilon is 1.2e-7) and would only inflate NFE;
# float16 and bfloat16 (epsilon 9.8e-4, 7.8e-3) get about ten times their epsilon.
DEFAULT_TOL = {
    jnp.dtype("float64"): 1.4e-8,
    jnp.dtype("float32"): 1e-6,
    jnp.dtype("float16"): 1e-2,
    jnp.dtype("bfloat16"): 1e-1,
}


def is_concrete(x: Any) -> bool:
    """Whether ``x`` is a value now (not a tracer of an enclosing ``jax.jit``)."""
    return not is_tracer(x)


def validate(f: Any, z0: Any, ts: Any, args: Any, *, solver: Any, steps: Any, rtol: Any, atol: Any, regularizers: Any,
             key: Any, quadrature: str, samples: int, error_control: str, adjoint: str, checkpoints: int,
             max_steps: int, save_steps: bool) -> tuple[Entry, RegularizerSet, Problem]:  # fmt: skip
    """``(registry entry, regularizer set, Problem)`` of :func:`taynode.solve`'s arguments."""
    spec = get(solver)
    _validate.choice("quadrature", quadrature, QUADRATURES)
    _validate.choice("error_control", error_control, ERROR_CONTROLS)
    _validate.choice("adjoint", adjoint, ADJOINTS)
    for name, v in (("samples", samples), ("max_steps", max_steps), ("checkpoints", checkpoints)):
        _validate.integer(name, v, 1)
    rset = RegularizerSet.parse(regularizers)
    _check_step_regularizers(rset.step_regularizers, solver, spec, steps, adjoint, quadrature)
    _check_solver(spec, rset.integrands, adjoint, steps, save_steps)
    sampled = quadrature == "sampled" and bool(rset)
    if sampled and key is None:
        raise ValueError("quadrature='sampled' draws the regularizers' sample times at random: pass key=")
    z0, dtype, batch = _check_state(z0)
    ts, direction = _check_ts(ts, dtype)
    rtol, atol = _tolerances(steps, rtol, atol, dtype)
    z0, args, f = _check_finite(z0, "z0"), _check_finite(args, "args"), _check_parameters(f)
    check_output_matches(f, ts[0], z0, args)
    regs = rset.integrands
    if any(r.needs_noise for r in regs) and key is None:
        raise ValueError(f"regularizers {[r.name for r in regs if r.needs_noise]} need noise: pass key=")
    noise = hutchinson_noise(key, z0) if key is not None and any(r.needs_noise for r in regs) else None
    problem = Problem(f=f, z0=z0, ts=ts, args=args, key=key, noise=noise, steps=steps, rtol=rtol, atol=atol, regs=regs,
                      step_regs=rset.step_regularizers, sampled=sampled, samples=samples, error_control=error_control,
                      adjoint=adjoint, checkpoints=checkpoints, max_steps=max_steps, save_steps=save_steps, dtype=dtype,
                      batch=batch, direction=direction)  # fmt: skip
    return spec, rset, problem


# ---- the solver against the options ------------------------------------------------------------


def _check_solver(spec: Entry, integrands, adjoint, steps, save_steps) -> None:
    if isinstance(spec, TaylorSpec):
        if integrands:
            raise NotImplementedError(
                "regularizers are not implemented with the Taylor solver (their integrands would need Taylor "
                "series of Taylor series); integrate them with an RK solver, e.g. solver='dopri5'"
            )
        if adjoint != "backprop":
            raise NotImplementedError(
                "the Taylor solver has no continuous adjoint; use adjoint='backprop' (forward-mode only) or an RK solver"
            )
        if steps is not None:
            raise ValueError("the Taylor solver chooses its own steps (Jorba & Zou): pass rtol/atol, not steps=")
        return
    if steps is None and not spec.embedded:
        raise ValueError(
            f"solver {spec.name!r} has no error estimate, so it cannot run adaptively: pass steps=N "
            f"for a fixed grid, or choose one of {[s for s, v in SOLVERS.items() if v.embedded]}"
        )
    if save_steps and adjoint != "backprop":
        raise ValueError("save_steps=True works with adjoint='backprop' only (a diffrax limitation)")


def _check_step_regularizers(step_regs, solver, spec: Entry, steps, adjoint, quadrature) -> None:
    """Clear errors for step regularizers (ERNODE, SRNODE) a solve cannot compute."""
    if not step_regs:
        return
    names = [r.name for r in step_regs]
    works = [n for n, s in SOLVERS.items() if s.embedded]
    label = solver if isinstance(solver, str) else getattr(spec, "name", solver)
    if spec.kind != RUNGE_KUTTA or not spec.embedded:  # no Runge–Kutta pair (e.g. the Taylor method)
        raise ValueError(
            f"regularizers {names} are built from an embedded Runge–Kutta pair's error estimate and stages, which "
            f"solver {label!r} does not have; use an adaptive embedded Runge–Kutta solver: one of {works}"
        )
    if steps is not None:
        raise ValueError(
            f"regularizers {names} accumulate the adaptive solver's error estimate over its accepted steps; a fixed "
            f"grid (steps={steps}) has none. Leave steps=None (adaptive) with one of {works}"
        )
    assert isinstance(spec, SolverSpec) and spec.tableau is not None  # embedded: it has a tableau
    for r in step_regs:
        r.check_tableau(spec.tableau, label, solvers_with_pair())
    if adjoint != "backprop" and quadrature != "sampled":
        raise ValueError(
            f"regularizers {names} summed over every step differentiate the solver's internal stages (discrete "
            f"sensitivities), which the continuous adjoint does not have: use adjoint='backprop', or their local "
            f"variant (quadrature='sampled', one differentiated step per sample time)"
        )


# ---- the state, the times, the tolerances ------------------------------------------------------


def _as_state(z0):
    """Array-likes (nested lists of numbers, NumPy arrays) become one array; pytrees of arrays stay."""
    if isinstance(z0, (list, tuple)) and all(isinstance(x, (int, float, np.number)) for x in jax.tree_util.tree_leaves(z0)):
        return np.asarray(z0)
    return z0


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
    sizes = {path: x.shape[0] for path, x in jax.tree_util.tree_leaves_with_path(z0)}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"z0{jax.tree_util.keystr(p)}: {n}" for p, n in sizes.items())
        raise ValueError(f"every leaf of z0 must have the same batch size (leading axis), got {shown}")
    return z0, jnp.result_type(*leaves), leaves[0].shape[0]


def _traced_ts_failure(ts) -> failures.Failure:
    """Traced times: finite and strictly monotone (or ``(t0, t0)``), checked when the computation runs."""
    steps = jnp.diff(ts) * jnp.sign(ts[-1] - ts[0])
    monotone = jnp.all(steps > 0) | ((ts.shape[0] == 2) & (ts[0] == ts[-1]))
    return failures.first(
        [
            failures.when(~jnp.all(jnp.isfinite(ts)), "ts contains NaN or inf"),
            failures.when(~monotone, "ts must be strictly increasing (or strictly decreasing, to integrate backwards)"),
        ]
    )


def _check_ts(ts, dtype):
    """``(ts in the state's dtype, direction)``: 1-D, finite, strictly monotone (or ``(t0, t0)``),
    not collapsed by that dtype. ``direction`` is sign(t1 - t0) as a Python float when the given
    times hold no tracer (Python numbers or arrays, under a user's jit too), else ``None``: traced
    times are checked for NaN/inf when the computation runs."""
    given = ts
    ts = jnp.asarray(ts, dtype=dtype)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least two times [t0, ..., t1], got shape {ts.shape}")
    if any(is_tracer(x) for x in jax.tree_util.tree_leaves(given)):
        return failures.check(ts, _traced_ts_failure(ts)), None
    wide = np.asarray(given, dtype=np.float64)
    t = wide.astype(jnp.dtype(dtype))  # NumPy: under a user's jit, ts itself is a tracer
    if not np.all(np.isfinite(t)):
        raise ValueError(f"ts contains NaN or inf: {t}")
    collapsed = (np.diff(wide) != 0) & (np.diff(t.astype(np.float64)) == 0)
    if np.any(collapsed):
        raise ValueError(
            f"ts {wide.tolist()} are distinct, but equal in {jnp.dtype(dtype).name} (the state's dtype, which the "
            f"times take): {t.tolist()}. Shift the times towards 0 (solve over ts - ts[0] with f reading t + ts[0]) "
            f"or use a float64 state (jax.config.update('jax_enable_x64', True))"
        )
    if t[0] == t[-1]:
        if len(t) != 2:
            raise ValueError("ts with t1 == t0 must be exactly (t0, t0)")
        return ts, 0.0
    direction = float(np.sign(t[-1] - t[0]))
    if not np.all(np.diff(t) * direction > 0):
        raise ValueError(f"ts must be strictly increasing (or strictly decreasing, to integrate backwards): {t}")
    return ts, direction


def _float_tolerance_warning(dtype, rtol, atol):
    eps = float(jnp.finfo(dtype).eps)
    if min(float(rtol), float(atol)) < eps:
        warnings.warn(
            f"rtol={rtol:g}, atol={atol:g} are below what {jnp.dtype(dtype).name} resolves (eps = {eps:.2g}): the "
            f"solver takes many more steps without getting more accurate. Use a tolerance >= {eps:.1g}, or float64 "
            f"(jax.config.update('jax_enable_x64', True) and float64 arrays).",
            stacklevel=5,  # the caller of solve (via validate, _tolerances)
        )


def _tolerances(steps, rtol, atol, dtype):
    """``(rtol, atol)`` of an adaptive solve (defaults by dtype), ``(None, None)`` on a fixed grid."""
    if steps is None:
        default = DEFAULT_TOL.get(jnp.dtype(dtype), 1.4e-8)
        rtol = default if rtol is None else rtol
        atol = default if atol is None else atol
        if not (rtol > 0 and atol > 0 and np.isfinite(rtol) and np.isfinite(atol)):
            raise ValueError(f"rtol and atol must be > 0 and finite, got rtol={rtol}, atol={atol}")
        _float_tolerance_warning(dtype, rtol, atol)
        return rtol, atol
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer (fixed grid) or None (adaptive), got {steps!r}")
    if rtol is not None or atol is not None:
        raise ValueError("rtol/atol apply to adaptive solves; a fixed-grid solve (steps=N) takes neither")
    return rtol, atol


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
        if is_concrete(x):
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"{where} contains NaN or inf")
            out.append(x)
        else:
            out.append(failures.check(x, failures.when(~jnp.all(jnp.isfinite(x)), f"{where} contains NaN or inf")))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), out)


def _check_parameters(f):
    """An equinox module's parameters are finite (see :func:`_check_finite`)."""
    if isinstance(f, eqx.Module):
        params, rest = eqx.partition(f, eqx.is_inexact_array)
        f = eqx.combine(_check_finite(params, "parameters of f"), rest)
    return f
