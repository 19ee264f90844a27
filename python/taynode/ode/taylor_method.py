r"""An explicit Taylor-series integrator for dz/dt = f(t, z, args), built on the Taylor core.

At each step, at the point :math:`(t, z)`:

1. the normalised coefficients :math:`z_k = z^{(k)}/k!`, :math:`k = 0 \dots p`, of the solution
   through :math:`(t, z)` come from :func:`taynode.taylor.coefficients` (``z_0 = z``, ``z_1 = f``);
2. the step size follows Jorba & Zou (2005), §3.2, as TaylorIntegration.jl's ``stepsize``:

   .. math::  h = \min_{k \in \{p-1,\, p\}} \left(\frac{\varepsilon}{\|z_k\|_\infty}\right)^{1/k},
              \qquad \varepsilon = \max(\text{atol},\ \text{rtol}\,\|z\|_\infty)

   (a coefficient that is exactly zero is skipped). If both are zero (a polynomial field at a
   special point, e.g. dz/dt = 1 + t¹¹ at t = 0), the truncation error is set by coefficients
   beyond p: orders p+1 and p+2 are computed and the same rule is applied to them (the first
   neglected terms); only if those vanish too does J&Z's "second control"
   :math:`h = \max_{1 \le k \le p-2} \|z_k\|_\infty^{-1/k}` decide, and if every coefficient up
   to p+2 is zero the step goes to t1 (exact for a constant solution; a field whose first
   non-zero coefficient lies beyond p+2 there can still fool it). The norm is over the whole
   state, batch included: like the RK solvers, a batch shares its steps. No step is rejected;
3. the Taylor polynomial :math:`z(t + s) \approx \sum_{k=0}^p z_k s^k` (Horner) gives the next
   state, and the states at output times inside the step (dense output).

With :math:`\|z_k\| \approx C \rho^{-k}` (ρ the radius of convergence) the rule makes the last
terms of the series about ε, so the local error is about ε per step (not per unit time).

**Order.** ``order=p`` fixes it. The default is Jorba & Zou's
:math:`p = \lceil -\tfrac12 \ln \varepsilon_r + 1 \rceil`, the minimiser of cost per unit time
when a step of order p costs :math:`\propto p^2` (products in Taylor arithmetic are
convolutions) and :math:`h \propto \rho\, \varepsilon_r^{1/p}`; :math:`\varepsilon_r` is the
tolerance relative to the solution's size. ``adaptive_order=True`` chooses p per step from a
small set (default three orders around J&Z's): it fits :math:`\log\|z_k\| \approx \log C - k
\log\rho` to the previous step's coefficients, predicts the step :math:`\hat h(q)` each order q
would take by the rule above, and takes the q minimising :math:`q^2 / \hat h(q)`. Each order is a
branch of :func:`jax.lax.switch`, so only the chosen one runs.

**Cost unit.** ``stats["nfe"]`` counts *Taylor coefficient orders*: a step of order p counts p,
the number of coefficients beyond z computed (the first, :math:`z_1 = f(t, z)`, is exactly one
f evaluation). That is the analogue of one f evaluation per RK stage, but it understates the work
for nonlinear f: computing order k costs more than order 1 (a product of series of length k is a
k-term convolution), so the arithmetic per step grows like :math:`p^2` or faster. Compare wall
times (``taynode compare-solvers`` reports both, and the measured time of one order-p coefficient
computation in units of one f evaluation).

The loop is a :func:`jax.lax.while_loop`: jit-able, differentiable in forward mode; reverse-mode
gradients through it are not supported by JAX (use an RK solver for training).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._jax import is_tracer
from ..taylor import MAX_ORDER, UnsupportedPrimitiveError, check_method, coefficients
from . import failures
from .problem import Problem, Solution
from .registry import TaylorSpec
from .steps import check_taylor_orders, inf_norm, jorba_zou_order, jorba_zou_step, max_taylor_order, predicted_steps

__all__ = ["horner", "integrate_taylor", "taylor_coefficients", "taylor_solve"]


def taylor_coefficients(f: Callable, t: Any, z: Any, args: Any, order: int, method: str | None = None) -> list:
    """``[z_0, z_1, …, z_p]`` with ``z_k = z⁽ᵏ⁾/k!`` (pytrees shaped like z).

    ``method=None`` uses the Taylor core's default method; if that has no rule for an operation
    in f (:class:`~taynode.taylor.UnsupportedPrimitiveError`, raised while tracing), ``"jet"``,
    then ``"nested"`` (which differentiates any JAX operation) is used instead. A named method is
    used as given.
    """
    if method is not None:
        return coefficients(f, t, z, args, order=order, method=method)
    for fallback in (None, "jet"):  # jet compiles much faster than nested at high order
        if order > MAX_ORDER[fallback or "incremental"]:  # None: the Taylor core's default
            continue
        try:
            return coefficients(f, t, z, args, order=order, **({} if fallback is None else {"method": fallback}))
        except (UnsupportedPrimitiveError, NotImplementedError):
            continue
    if order > MAX_ORDER["nested"]:
        raise ValueError(
            f"the dynamics use an operation that only method 'nested' can expand (incremental and jet have no "
            f"rule for it), and nested supports Taylor coefficient orders up to {MAX_ORDER['nested']}, not {order} "
            f"(the solver looks two orders beyond its order p); pass solver='taylor{MAX_ORDER['nested'] - 2}' or lower"
        )
    return coefficients(f, t, z, args, order=order, method="nested")


def horner(coeffs: Sequence, s: Any) -> Any:
    """Σ_k coeffs[k] sᵏ for a list of pytrees."""
    out = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        out = jax.tree_util.tree_map(lambda o, ck: o * s + ck, out, c)
    return out


def taylor_solve(f: Callable, z0: Any, ts: Any, args: Any = None, **options) -> tuple:
    """Integrate from ``ts[0]`` and return ``(ys, stats, step_ts, step_ys)``.

    ``ys`` has a leading axis over ``ts``; ``stats`` has ``nfe`` (Taylor coefficient orders, see
    the module docstring), ``steps``, ``rejected`` (always 0), ``attempted`` and ``mean_order``.
    ``ts`` must be strictly monotone with at least two entries (:func:`taynode.solve` checks
    that and everything else about its inputs, then calls this).

    Args:
        rtol, atol: the tolerances (keywords, required).
        order: the fixed order p (default: Jorba & Zou's for ``min(rtol, atol)``).
        adaptive_order: choose the order per step from ``orders``.
        orders: the candidate orders (default: J&Z's order p and p ± 4, at least 2).
        method: the Taylor core's method (``None``: its default).
        max_steps: an error is raised if the solve needs more steps.
        save_steps: also return the accepted steps' times and states.

    A solution that becomes NaN or inf, or ``max_steps`` reached before t1, raises
    (:func:`taynode.ode.failures.check`: now, or under a ``jit`` when the computation runs).
    """
    ys, stats, step_ts, step_ys, failure = _integrate(f, z0, ts, args, **options)
    return failures.check(ys, failure), stats, step_ts, step_ys


def _integrate(
    f: Callable,
    z0: Any,
    ts: Any,
    args: Any = None,
    *,
    rtol: float,
    atol: float,
    order: int | None = None,
    adaptive_order: bool = False,
    orders: Sequence[int] | None = None,
    method: str | None = None,
    max_steps: int = 4096,
    save_steps: bool = False,
) -> tuple:
    """:func:`taylor_solve`'s ``(ys, stats, step_ts, step_ys)`` and its :class:`~taynode.ode.failures.Failure`."""
    concrete = not any(is_tracer(x) for x in (rtol, atol))
    if concrete and not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    if method is not None:
        check_method(method)
    given = check_taylor_orders(order, orders, method)
    _validate.integer("max_steps", max_steps, 1)
    # J&Z's order needs concrete tolerances; with traced ones (a jit over rtol/atol) pass order/orders
    p_jz = jorba_zou_order(min(float(rtol), float(atol), 0.5)) if concrete else None
    if p_jz is None and (order is None if not adaptive_order else given is None):
        raise ValueError("with traced rtol/atol, pass order= (or orders= with adaptive_order=True)")
    if adaptive_order:
        if order is not None:
            raise ValueError("pass either order= (fixed) or adaptive_order=True with orders=, not both")
        assert given is not None or p_jz is not None
        cands: tuple[int, ...] = given or tuple(sorted({max(2, p_jz - 4), p_jz, p_jz + 4}))  # type: ignore[operator]
    else:
        if given is not None:
            raise ValueError("orders= applies with adaptive_order=True; for a fixed order pass order=")
        cands = (int(order or p_jz),)  # type: ignore[arg-type]
    orders = cands
    pmax = max(orders)
    if pmax > max_taylor_order(method):
        raise ValueError(
            f"the tolerance min(rtol, atol) = {min(float(rtol), float(atol)):g} asks for Jorba & Zou's Taylor "
            f"order {pmax}, above the supported maximum {max_taylor_order(method)}; use a tolerance >= "
            f"{math.exp(-2 * (max_taylor_order(method) - 1)):.0e} or pass a fixed order (solver='taylor<p>')"
        )

    ts = jnp.asarray(ts)
    dtype = ts.dtype
    t0, t1 = ts[0], ts[-1]
    direction = jnp.sign(t1 - t0)
    n_out = ts.shape[0]
    zero_like = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)  # noqa: E731

    def coefficients_at(i, t, z):
        """Coefficients of order ``orders[i]``, zero-padded to ``pmax`` (Horner is unchanged)."""

        def branch(q):
            def run(t, z):
                cs = taylor_coefficients(f, t, z, args, q, method)
                return cs + [zero_like(z)] * (pmax - q)

            return run

        if len(orders) == 1:
            return branch(orders[0])(t, z)
        return jax.lax.switch(i, [branch(q) for q in orders], t, z)

    order_arr = jnp.asarray(orders)
    # every row starts as z0, so a traced t0 == t1 (no step at all) returns z0, not zeros
    ys0 = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_out,) + x.shape), z0)
    if save_steps:
        st0 = jnp.full((max_steps,), jnp.inf, dtype)
        sy0 = jax.tree_util.tree_map(lambda x: jnp.full((max_steps,) + x.shape, jnp.inf, x.dtype), z0)
    else:
        st0 = sy0 = None
    start_idx = int(np.argmin([abs(q - (p_jz or orders[len(orders) // 2])) for q in orders]))

    def cond(state):
        t, _, _, _, n, *_ = state
        return ((t1 - t) * direction > 0) & (n < max_steps)

    def body(state):
        t, z, i_out, ys, n, cost, idx, st, sy = state
        cs = coefficients_at(idx, t, z)
        norms = [inf_norm(c) for c in cs]
        eps = jnp.maximum(atol, rtol * norms[0])
        q = order_arr[idx]
        # the chosen order's own last two coefficients set the step (padding beyond q is zero)
        h_all = jnp.stack([jorba_zou_step(norms[: qq + 1], eps) for qq in orders])
        h = h_all[idx]
        # both last coefficients zero: look two orders further before trusting the second control
        nrm = jnp.stack(norms)
        degenerate = (nrm[q - 1] == 0) & (nrm[q] == 0)

        def further(t, z):
            ext = [inf_norm(c) for c in taylor_coefficients(f, t, z, args, pmax + 2, method)]
            return jnp.stack([jorba_zou_step(ext[: qq + 1], eps, ext[qq + 1 : qq + 3]) for qq in orders])[idx]

        h = jax.lax.cond(degenerate, further, lambda t, z: h, t, z)
        remaining = (t1 - t) * direction
        last = h >= remaining
        h = jnp.where(last, remaining, h)
        t_new = jnp.where(last, t1, t + direction * h)

        # dense output at every output time inside (t, t + h]
        def out_cond(c):
            i, _ = c
            return (i < n_out) & ((ts[jnp.minimum(i, n_out - 1)] - t) * direction <= h)

        def out_body(c):
            i, ys = c
            y = horner(cs, ts[i] - t)
            return i + 1, jax.tree_util.tree_map(lambda a, v: a.at[i].set(v), ys, y)

        i_out, ys = jax.lax.while_loop(out_cond, out_body, (i_out, ys))
        z_new = horner(cs, t_new - t)
        if save_steps:
            st = st.at[n].set(t_new)
            sy = jax.tree_util.tree_map(lambda a, v: a.at[n].set(v), sy, z_new)
        if len(orders) > 1:
            cost_per_time = order_arr.astype(dtype) ** 2 / predicted_steps(norms, eps, orders)
            idx = jnp.argmin(cost_per_time).astype(idx.dtype)
        return t_new, z_new, i_out, ys, n + 1, cost + q, idx, st, sy

    state = (t0, z0, jnp.array(1), ys0, jnp.array(0), jnp.array(0), jnp.array(start_idx), st0, sy0)
    t, z, i_out, ys, n, cost, _, st, sy = jax.lax.while_loop(cond, body, state)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(z)]))
    failure = failures.first(
        [
            failures.when(~finite, "the Taylor solver produced NaN or inf (is the solution blowing up?)"),
            failures.when((t1 - t) * direction > 0, "the maximum number of Taylor steps (max_steps) was reached before t1"),
        ]
    )
    stats = dict(nfe=cost, steps=n, rejected=jnp.array(0), attempted=n, mean_order=cost / jnp.maximum(n, 1))
    return ys, stats, st, sy, failure


def integrate_taylor(spec: TaylorSpec, p: Problem) -> tuple[Solution, failures.Failure]:
    """Integrate a validated :class:`~taynode.ode.problem.Problem` with the Taylor entry ``spec``:
    the solution and its failure, for :func:`taynode.solve` to raise on."""
    ys, stats, step_ts, step_ys, failure = _integrate(
        p.f,
        p.z0,
        p.ts,
        p.args,
        rtol=float(p.rtol),
        atol=float(p.atol),
        max_steps=p.max_steps,
        save_steps=p.save_steps,
        **spec.options,
    )
    sol = Solution(ts=p.ts, ys=ys, integrals={}, stats=stats, step_ts=step_ts, step_ys=step_ys, nfe_unit=spec.nfe_unit)
    return sol, failure
