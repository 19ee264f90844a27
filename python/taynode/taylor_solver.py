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
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .taylor import MAX_ORDER, UnsupportedPrimitiveError, check_method, coefficients

__all__ = [
    "check_taylor_options",
    "integrate_taylor",
    "jorba_zou_order",
    "jorba_zou_step",
    "taylor_coefficients",
    "horner",
    "taylor_solve",
]


def jorba_zou_order(rel_tol: float) -> int:
    """Jorba & Zou's optimal order ⌈−½ ln ε + 1⌉ for a relative tolerance ε (at least 2)."""
    if not (0 < rel_tol < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {rel_tol}")
    return max(2, math.ceil(-0.5 * math.log(rel_tol) + 1))


def taylor_coefficients(f, t, z, args, order: int, method: str | None = None) -> list:
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


def horner(coeffs: Sequence, s):
    """Σ_k coeffs[k] sᵏ for a list of pytrees."""
    out = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        out = jax.tree_util.tree_map(lambda o, ck: o * s + ck, out, c)
    return out


def _inf_norm(tree):
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _second_control(norms):
    """max over k = 1 … p−2 of ‖z_k‖^(−1/k), skipping zero coefficients; inf if there are none."""
    h = jnp.zeros_like(norms[0])
    for k in range(1, len(norms) - 2):
        h = jnp.where(norms[k] > 0, jnp.maximum(h, jnp.where(norms[k] > 0, norms[k], 1.0) ** (-1.0 / k)), h)
    return jnp.where(h > 0, h, jnp.inf)


def _first_control(norms, eps, ks):
    """min over k in ``ks`` of (ε/‖z_k‖)^(1/k), skipping zero coefficients; inf if all are zero."""
    h = jnp.inf
    for k in ks:
        safe = jnp.where(norms[k] > 0, norms[k], 1.0)
        h = jnp.where(norms[k] > 0, jnp.minimum(h, (eps / safe) ** (1.0 / k)), h)
    return h


def jorba_zou_step(norms, eps, beyond=None):
    """Jorba & Zou's step from the coefficient norms ``[‖z_0‖, …, ‖z_p‖]``: the first control on
    orders p−1 and p; if both vanish, the first control on ``beyond`` (the norms of orders p+1
    and p+2, when given), then the second control."""
    p = len(norms) - 1
    h = _first_control(norms, eps, (p - 1, p))
    if beyond is not None:
        ext = list(norms) + list(beyond)
        h = jnp.where(jnp.isinf(h), _first_control(ext, eps, (p + 1, p + 2)), h)
    return jnp.where(jnp.isinf(h), _second_control(norms), h)


def _predicted_steps(norms, eps, orders):
    """ĥ(q) for each candidate order q, from a least-squares fit log‖z_k‖ ≈ a − k·b (k ≥ 1)."""
    p = len(norms) - 1
    k = jnp.arange(1, p + 1, dtype=norms[0].dtype)
    n = jnp.stack(norms[1:])
    w = (n > 0).astype(n.dtype)
    y = jnp.log(jnp.where(n > 0, n, 1.0))
    sw = jnp.maximum(jnp.sum(w), 1.0)
    km, ym = jnp.sum(w * k) / sw, jnp.sum(w * y) / sw
    slope = jnp.sum(w * (k - km) * (y - ym)) / jnp.maximum(jnp.sum(w * (k - km) ** 2), jnp.finfo(n.dtype).tiny)
    a = ym - slope * km
    out = []
    for q in orders:
        model = [jnp.exp(a + slope * kk) for kk in range(q + 1)]
        out.append(jorba_zou_step(model, eps))
    return jnp.stack(out)


def _max_order(method) -> int:
    """The largest solver order p: the Taylor core's maximum for ``method`` (None tries
    incremental first, the largest) less 2, as a degenerate step looks at orders p+1, p+2."""
    return (MAX_ORDER[method] if method in MAX_ORDER else max(MAX_ORDER.values())) - 2


def _check_orders(order, orders, method=None):
    cap = _max_order(method)
    if order is not None:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 2 <= order <= cap:
            raise ValueError(
                f"order must be an integer >= 2 and <= {cap} (the largest Taylor order "
                f"{'method ' + repr(method) if method else 'the Taylor core'} supports: compile time "
                f"grows like p² or faster), got {order!r}"
            )
    if orders is not None:
        orders = tuple(orders)
        if not orders or any(isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 2 <= q <= cap for q in orders):
            raise ValueError(f"orders must be integers >= 2 and <= {cap}, got {orders!r}")
        if list(orders) != sorted(set(orders)):
            raise ValueError(f"orders must be distinct and increasing, got {orders!r}")
    return orders


def taylor_solve(
    f,
    z0,
    ts,
    args=None,
    *,
    rtol: float,
    atol: float,
    order: int | None = None,
    adaptive_order: bool = False,
    orders: Sequence[int] | None = None,
    method: str | None = None,
    max_steps: int = 4096,
    save_steps: bool = False,
):
    """Integrate from ``ts[0]`` and return ``(ys, stats, step_ts, step_ys)``.

    ``ys`` has a leading axis over ``ts``; ``stats`` has ``nfe`` (Taylor coefficient orders, see
    the module docstring), ``steps``, ``rejected`` (always 0), ``attempted`` and ``mean_order``.
    ``ts`` must be strictly monotone with at least two entries (:func:`taynode.solve` checks
    that and everything else about its inputs, then calls this).

    Args:
        order: the fixed order p (default: Jorba & Zou's for ``min(rtol, atol)``).
        adaptive_order: choose the order per step from ``orders``.
        orders: the candidate orders (default: J&Z's order p and p ± 4, at least 2).
        method: the Taylor core's method (``None``: its default).
    """
    concrete = not any(isinstance(x, jax.core.Tracer) for x in (rtol, atol))
    if concrete and not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    if method is not None:
        check_method(method)
    orders = _check_orders(order, orders, method)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    # J&Z's order needs concrete tolerances; with traced ones (a jit over rtol/atol) pass order/orders
    p_jz = jorba_zou_order(min(float(rtol), float(atol), 0.5)) if concrete else None
    if p_jz is None and (order is None if not adaptive_order else orders is None):
        raise ValueError("with traced rtol/atol, pass order= (or orders= with adaptive_order=True)")
    if adaptive_order:
        if order is not None:
            raise ValueError("pass either order= (fixed) or adaptive_order=True with orders=, not both")
        orders = orders or tuple(sorted({max(2, p_jz - 4), p_jz, p_jz + 4}))
    else:
        if orders is not None:
            raise ValueError("orders= applies with adaptive_order=True; for a fixed order pass order=")
        orders = (order or p_jz,)
    pmax = max(orders)
    if pmax > _max_order(method):
        raise ValueError(
            f"the tolerance min(rtol, atol) = {min(float(rtol), float(atol)):g} asks for Jorba & Zou's Taylor "
            f"order {pmax}, above the supported maximum {_max_order(method)}; use a tolerance >= "
            f"{math.exp(-2 * (_max_order(method) - 1)):.0e} or pass a fixed order (solver='taylor<p>')"
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
        norms = [_inf_norm(c) for c in cs]
        eps = jnp.maximum(atol, rtol * norms[0])
        q = order_arr[idx]
        # the chosen order's own last two coefficients set the step (padding beyond q is zero)
        h_all = jnp.stack([jorba_zou_step(norms[: qq + 1], eps) for qq in orders])
        h = h_all[idx]
        # both last coefficients zero: look two orders further before trusting the second control
        nrm = jnp.stack(norms)
        degenerate = (nrm[q - 1] == 0) & (nrm[q] == 0)

        def further(t, z):
            ext = [_inf_norm(c) for c in taylor_coefficients(f, t, z, args, pmax + 2, method)]
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
            cost_per_time = order_arr.astype(dtype) ** 2 / _predicted_steps(norms, eps, orders)
            idx = jnp.argmin(cost_per_time).astype(idx.dtype)
        return t_new, z_new, i_out, ys, n + 1, cost + q, idx, st, sy

    state = (t0, z0, jnp.array(1), ys0, jnp.array(0), jnp.array(0), jnp.array(start_idx), st0, sy0)
    t, z, i_out, ys, n, cost, _, st, sy = jax.lax.while_loop(cond, body, state)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(z)]))
    ys = eqx.error_if(ys, ~finite, "the Taylor solver produced NaN or inf (is the solution blowing up?)")
    ys = eqx.error_if(ys, (t1 - t) * direction > 0, "the maximum number of Taylor steps (max_steps) was reached before t1")
    stats = dict(nfe=cost, steps=n, rejected=jnp.array(0), attempted=n, mean_order=cost / jnp.maximum(n, 1))
    return ys, stats, st, sy


def check_fixed_order(order: int) -> int:
    """A fixed order p of ``"taylor<p>"``, checked against what the Taylor core supports."""
    _check_orders(order, None)
    return order


def check_taylor_options(spec, regularizers=(), adjoint: str = "backprop", steps=None) -> None:
    """What the Taylor method cannot do, as clear errors (``spec`` a :class:`~taynode.solvers.TaylorSpec`)."""
    if regularizers:
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


def parse_solver_name(name: str, regularizers=(), adjoint: str = "backprop", steps=None) -> dict:
    """Options of :func:`taylor_solve` for the names :func:`taynode.solve` accepts:
    ``"taylor"``, ``"taylor<p>"``, ``"taylor-adaptive"``; and what that path cannot do."""
    from .solvers import TaylorSpec, get

    spec = get(name) if isinstance(name, str) and name.startswith("taylor") else None
    if not isinstance(spec, TaylorSpec):
        raise ValueError(
            f"unknown solver {name!r}; the Taylor solvers are 'taylor', 'taylor<p>' (e.g. 'taylor12') and 'taylor-adaptive'"
        )
    check_taylor_options(spec, regularizers, adjoint, steps)
    return spec.options


def integrate_taylor(spec, p):
    """Integrate a validated :class:`~taynode.problem.Problem` with the Taylor entry ``spec``."""
    from .problem import Solution

    ys, stats, step_ts, step_ys = taylor_solve(
        p.f, p.z0, p.ts, p.args, rtol=p.rtol, atol=p.atol, max_steps=p.max_steps, save_steps=p.save_steps, **spec.options
    )
    return Solution(ts=p.ts, ys=ys, integrals={}, stats=stats, step_ts=step_ts, step_ys=step_ys, nfe_unit=spec.nfe_unit)
