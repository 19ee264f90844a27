r"""ERNODE and SRNODE: regularizers built from the adaptive solver's own heuristics.

Pal, Ma, Shah & Rackauckas (ICML 2021), as written up in Avik Pal's thesis (repository
``avik-pal/smthesis``, ``tex/content/chapters/internal_solver_heuristics_neural_des.tex``):

.. math::  (\mathcal R_E)_g = \sum_j (E_\text{est})_j\,|\Delta t_j| \quad\text{(line 39)},\qquad
           (\mathcal R_S)_g = \sum_j (S_\text{est})_j\,|\Delta t_j| \quad\text{(line 55)},

summed over the accepted steps j of the solve ("accumulating the (E_est)_j from the internals of
the time stepping process at the end of each step", line 42).

**Error estimate** (thesis ``neural_ode.tex`` lines 110–122; the code of the local variant,
``avik-pal/LocalRegNeuralDE.jl`` ``src/perform_step.jl`` lines 21–27 and 34–38, and OrdinaryDiffEq's
``calculate_residuals``/``internalnorm``): with the embedded pair's difference
:math:`\tilde z = h\sum_i (b_i - \hat b_i) k_i` (diffrax's ``y_error``),

.. math::  E_\text{est} = \sqrt{\tfrac1d \sum_{n=1}^d
           \Big(\frac{\tilde z_n}{\text{atol} + \text{rtol}\max(|z_{0,n}|, |z_{1,n}|)}\Big)^2},

the scaled RMS error that the step-size controller compares with 1 (for one example and no
integrated regularizers a step is accepted iff :math:`E_\text{est} \le 1`), with the solve's own
rtol and atol.

**Stiffness estimate** (thesis ``neural_ode.tex`` lines 138–153, after Shampine 1977 and Hairer &
Wanner II, §IV.2 p. 22; OrdinaryDiffEq ``src/perform_step/low_order_rk_perform_step.jl``,
DP5/Tsit5 ``perform_step!``: ``eigen_est = internalnorm(k7 - k6) / internalnorm(g7 - g6)``): for two
stages i ≠ j evaluated at the same time (:math:`c_i = c_j`) at the points
:math:`g_i = z_0 + h\sum_l a_{il} k_l`,

.. math::  S_\text{est} = \frac{\lVert f(g_i) - f(g_j)\rVert}{\lVert g_i - g_j\rVert} \approx \rho(\partial f/\partial z),

a secant slope of f along :math:`g_i - g_j`, which for a linear f = Az is
:math:`\lVert A v\rVert/\lVert v\rVert`; :math:`g_i - g_j` is a high-order polynomial in hA applied
to z0, so it is dominated by the largest eigenvalues (like a power iteration) and the estimate
approaches ρ(A). The norms are RMS norms as OrdinaryDiffEq's (the ratio does not depend on
that choice for one example). Per step, :math:`S_\text{est}|h|` estimates :math:`|h|\rho`, the
quantity that explicit RK stability bounds (≈ 3.3 for dopri5). Stages used: the last pair with
equal c in the tableau, i.e. (6, 7) for dopri5 and tsit5 (the pair Hairer and OrdinaryDiffEq use;
7 is the FSAL stage at z1) and (13, 14) for dopri8. bosh3, heun and midpoint have no such pair:
:class:`StiffnessEstimate` then needs ``stages=(i, j)`` chosen by the user (an error says so).

The repositories as fetched: smthesis 4f49159, RegNeuralDE.jl bb252b5, LocalRegNeuralDE.jl 043d700.

**Differences from the authors' experiment code**, kept out on purpose (the thesis' formula is
implemented): ``avik-pal/RegNeuralDE.jl`` ``experiments/mnist_node.jl`` lines 62–81 and
``experiments/latent_ode.jl`` lines 153–171 aggregate ``EEst·dt`` with the *mean* over steps (not
the sum), and the stiffness with the *maximum* over steps of ``eigen_est / 3.5068`` (Tsit5's
stability size, no step-size factor); ``LocalRegNeuralDE.jl`` ``src/perform_step.jl`` lines 40–47
does the same per sampled step. Their state is the whole batch (one RMS over all examples); here
each example gets its own RMS (``Solution.integrals`` is per example, as for the other
regularizers), so for a batch of one the two agree. diffrax's dopri5 embeds a different
4th-order formula (1951/21600, …, 1/60) than Hairer's DOPRI5 and OrdinaryDiffEq's DP5
(5179/57600, …, 1/40): its error estimate, the one its controller uses and ERNODE sums, is exactly
2/3 of theirs; tsit5's equals OrdinaryDiffEq's.

**Local (sampled-step) variants** (Pal, Edelman & Rackauckas 2023; thesis
``local_regularization_neural_odes.tex`` lines 61–104; ``LocalRegNeuralDE.jl``
``src/layers/neural_ode.jl`` lines 68–84): with ``quadrature="sampled"`` the value is the mean, over
M stratified uniform times τ_m (:func:`taynode.solve.sample_times`), of the heuristic of *one*
fresh solver step from :math:`(\tau_m, z(\tau_m))` — z from the solve's dense output — whose size
is the solver's initial-step rule (Hairer, Nørsett & Wanner; what ``init`` does in the reference
code), clipped at t1: :math:`\frac1M \sum_m (\cdot)_{\tau_m}\,|h_{\tau_m}|`. The authors' "biased"
variant (τ drawn from the accepted step times, ``neural_ode.jl`` lines 88–100) is not implemented.

The global variant needs the discrete sensitivities (the k_i are not functions of the trajectory,
thesis line 64), so it requires ``adjoint="backprop"``. The step sizes themselves carry no
gradient (diffrax's PID controller stops it), so the gradient is the one with the steps held fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ErrorEstimate", "StepInfo", "StepRegularizer", "StiffnessEstimate", "parse", "split"]


class StepInfo(NamedTuple):
    """One step of an explicit RK solver, as the regularizers see it (z part of the state only).

    ``ks`` are the stage increments :math:`k_i = h f(g_i)` with a leading stage axis on each leaf.
    """

    t0: jax.Array
    t1: jax.Array
    z0: object
    z1: object
    z_error: object
    ks: object
    tableau: dfx.ButcherTableau
    rtol: float
    atol: float


def _per_example_sum_squares(tree):
    return sum(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))) for x in jax.tree_util.tree_leaves(tree))


def _num_features(tree) -> int:
    return sum(int(np.prod(x.shape[1:])) for x in jax.tree_util.tree_leaves(tree))


def _safe_sqrt(x):
    """sqrt with a zero (not infinite) derivative at 0: a step with zero error stays differentiable."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


class StepRegularizer:
    """Base class: a per-example quantity of each accepted step, summed over the accepted steps."""

    name: str

    def check_tableau(self, tableau: dfx.ButcherTableau, solver_name: str) -> None:
        """Raise ValueError if this regularizer cannot be computed from the tableau's stages."""

    def step_value(self, info: StepInfo) -> jax.Array:
        raise NotImplementedError


@dataclass(frozen=True)
class ErrorEstimate(StepRegularizer):
    r"""ERNODE: :math:`\sum_j E_\text{est,j}\,|h_j|` over the accepted steps (module docstring)."""

    name: str = "ernode"

    def step_value(self, info):
        scale = jax.tree_util.tree_map(lambda a, b: info.atol + info.rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)), info.z0, info.z1)
        scaled = jax.tree_util.tree_map(lambda e, s: e / s, info.z_error, scale)
        eest = _safe_sqrt(_per_example_sum_squares(scaled) / _num_features(info.z0))
        return eest * jnp.abs(info.t1 - info.t0)


def _same_time_pair(tableau) -> tuple[int, int] | None:
    """The last pair of stages (1-based) evaluated at the same time c, or None."""
    c = [0.0] + [float(x) for x in np.asarray(tableau.c)]
    pairs = [(i + 1, j + 1) for j in range(len(c)) for i in range(j) if c[i] == c[j]]
    return max(pairs, key=lambda p: (p[1], p[0])) if pairs else None


@dataclass(frozen=True)
class StiffnessEstimate(StepRegularizer):
    r"""SRNODE: :math:`\sum_j S_\text{est,j}\,|h_j|` over the accepted steps (module docstring).

    ``stages=(i, j)`` (1-based, Butcher numbering) overrides the stage pair; by default the last
    pair with :math:`c_i = c_j`. A pair at different times also sees :math:`\partial f/\partial t`.
    """

    name: str = "srnode"
    stages: tuple[int, int] | None = None

    def pair(self, tableau) -> tuple[int, int] | None:
        return tuple(self.stages) if self.stages is not None else _same_time_pair(tableau)

    def check_tableau(self, tableau, solver_name):
        n = len(tableau.a_lower) + 1
        if self.stages is not None:
            i, j = self.stages
            if not (isinstance(i, (int, np.integer)) and isinstance(j, (int, np.integer)) and 1 <= i < j <= n):
                raise ValueError(
                    f"srnode stages must be two stage numbers 1 <= i < j <= {n} for {solver_name}, got {self.stages!r}"
                )
        elif self.pair(tableau) is None:
            c = [0.0] + [round(float(x), 4) for x in np.asarray(tableau.c)]
            raise ValueError(
                f"srnode's stiffness estimate needs two stages at the same time (c_i = c_j), and {solver_name} has "
                f"none (c = {c}). Use one of {solvers_with_pair()}, or pass "
                f"StiffnessEstimate(stages=(i, j)) to use two stages at different times (then df/dt enters the estimate)."
            )

    def step_value(self, info):
        i, j = self.pair(info.tableau)
        a = [np.zeros(0)] + [np.asarray(row) for row in info.tableau.a_lower]

        def point(s):  # g_s = z0 + sum_l a_sl k_l  (k already holds the factor h)
            row = a[s - 1]
            return jax.tree_util.tree_map(
                lambda z, k: z + jnp.tensordot(jnp.asarray(row, k.dtype), k[: len(row)], axes=1), info.z0, info.ks
            )

        dk = jax.tree_util.tree_map(lambda k: k[i - 1] - k[j - 1], info.ks)
        gi = point(i)
        dg = jax.tree_util.tree_map(lambda x, y: x - y, gi, point(j))
        num, den = _per_example_sum_squares(dk), _per_example_sum_squares(dg)
        # S_est·|h| = (‖Δk‖/|h|)/‖Δg‖·|h|; 0 where the two points coincide to working precision,
        # ‖Δg‖ <= eps·‖g_i‖ (LocalRegNeuralDE.jl uses 0 where they coincide exactly). Below that the
        # secant slope is rounding noise, and in float32 its derivative 1/‖Δg‖⁴ overflows to NaN.
        eps = jnp.finfo(den.dtype).eps
        ok = den > eps**2 * _per_example_sum_squares(gi) + jnp.finfo(den.dtype).tiny
        return _safe_sqrt(num / jnp.where(ok, den, 1.0)) * ok


def solvers_with_pair() -> list[str]:
    """The registry's adaptive solvers whose tableau has two stages at the same time."""
    from .solvers import SOLVERS

    return [n for n, s in SOLVERS.items() if s.embedded and _same_time_pair(s.make().tableau) is not None]


NAMES = {"ernode": ErrorEstimate, "srnode": StiffnessEstimate}


def parse(spec) -> StepRegularizer | None:
    """A step regularizer from an instance or a name ("ernode", "srnode"); None for anything else."""
    if isinstance(spec, StepRegularizer):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in NAMES:
        return NAMES[spec.strip().lower()]()
    return None


def split(regularizers):
    """(step regularizers, the rest) of a regularizers list."""
    steps, rest = [], []
    for r in regularizers:
        s = parse(r)
        (steps.append(s) if s is not None else rest.append(r))
    return steps, rest


def check(step_regs, solver, spec, steps, adjoint, quadrature, registry):
    """Clear errors for step regularizers a solve cannot compute; returns the inner solver's tableau."""
    if not step_regs:
        return None
    names = [r.name for r in step_regs]
    works = [n for n, s in registry.items() if s.embedded]
    label = solver if isinstance(solver, str) else getattr(spec, "name", solver)
    if spec is None or spec.make is None or not spec.embedded:  # no Runge–Kutta pair (e.g. the Taylor method)
        raise ValueError(
            f"regularizers {names} are built from an embedded Runge–Kutta pair's error estimate and stages, which "
            f"solver {label!r} does not have; use an adaptive embedded Runge–Kutta solver: one of {works}"
        )
    if steps is not None:
        raise ValueError(
            f"regularizers {names} accumulate the adaptive solver's error estimate over its accepted steps; a fixed "
            f"grid (steps={steps}) has none. Leave steps=None (adaptive) with one of {works}"
        )
    tableau = getattr(spec.make(), "tableau", None)
    if not isinstance(tableau, dfx.ButcherTableau):
        raise ValueError(
            f"regularizers {names} need an explicit Runge–Kutta tableau; solver {label!r} has none. Use one of {works}"
        )
    for r in step_regs:
        r.check_tableau(tableau, label)
    if adjoint != "backprop" and quadrature != "sampled":
        raise ValueError(
            f"regularizers {names} summed over every step differentiate the solver's internal stages (discrete "
            f"sensitivities), which the continuous adjoint does not have: use adjoint='backprop', or their local "
            f"variant (quadrature='sampled', one differentiated step per sample time)"
        )
    return tableau


class Accumulate(dfx.AbstractAdaptiveSolver):
    """Wraps an explicit RK solver: its solver state also carries each step regularizer's running sum.

    diffrax keeps a step's new solver state only if the controller accepts the step, so rejected
    steps do not count (the pattern of diffrax issue #196). Read the sums with
    ``SaveAt(solver_state=True)`` and :func:`accumulated`.
    """

    solver: dfx.AbstractSolver
    regs: tuple = eqx.field(static=True)
    select: Callable = eqx.field(static=True)  # the ODE state z out of diffrax's (possibly augmented) y
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        z0 = self.select(y0)
        leaf = jax.tree_util.tree_leaves(z0)[0]
        sums = {r.name: jnp.zeros(leaf.shape[:1], leaf.dtype) for r in self.regs}
        return self.solver.init(terms, t0, t1, y0, args), sums

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, sums = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(terms, t0, t1, y0, args, inner, made_jump)
        info = step_info(
            self.solver.tableau,
            t0,
            t1,
            self.select(y0),
            self.select(y1),
            self.select(y_error),
            self.select(dense_info["k"]),
            self.rtol,
            self.atol,
        )
        sums = {r.name: sums[r.name] + r.step_value(info) for r in self.regs}
        return y1, y_error, dense_info, (inner, sums), result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def step_info(tableau, t0, t1, z0, z1, z_error, ks, rtol, atol) -> StepInfo:
    return StepInfo(t0=t0, t1=t1, z0=z0, z1=z1, z_error=z_error, ks=ks, tableau=tableau, rtol=rtol, atol=atol)


def _bounded(solver):
    """The stage loop set to "bounded", as diffrax's RecursiveCheckpointAdjoint does for a bare RK
    solver (it cannot see through the wrapper, and a lone step is outside diffeqsolve)."""
    if getattr(solver, "scan_kind", "bounded") is None:
        solver = eqx.tree_at(lambda s: s.scan_kind, solver, "bounded", is_leaf=lambda x: x is None)
    return solver


def wrap(solver, step_regs, select, rtol, atol):
    """``solver`` with the step regularizers' accumulator."""
    solver = _bounded(solver)
    return Accumulate(solver=solver, regs=tuple(step_regs), select=select, rtol=float(rtol), atol=float(atol))


def accumulated(final_solver_state) -> dict:
    """``{name: per-example sum}`` from a solve's final solver state (``SaveAt(solver_state=True)``)."""
    _, sums = final_solver_state
    return sums


def local_values(step_regs, solver, term, args, taus, y_taus, t1, direction, order, rtol, atol, initial_step_size, select):
    r"""The local variants: :math:`\frac1M\sum_m` (heuristic of one fresh step from τ_m) per example.

    ``y_taus`` has a leading sample axis (M) on each leaf; each step's size is the initial-step
    rule at (τ_m, y(τ_m)), clipped so the step ends at or before t1.
    """
    tableau, solver = solver.tableau, _bounded(solver)

    def one(tau, y):
        fun = lambda t, y_: term.vf(t, y_, args)  # noqa: E731
        h = initial_step_size(fun, tau, y, direction, order, rtol, atol, fun(tau, y))
        h = direction * jnp.minimum(jnp.abs(h), jnp.abs(t1 - tau))
        t_end = tau + h
        state = solver.init(term, tau, t_end, y, args)
        y1, y_error, dense_info, _, _ = solver.step(term, tau, t_end, y, args, state, False)
        info = step_info(tableau, tau, t_end, select(y), select(y1), select(y_error), select(dense_info["k"]), rtol, atol)
        return {r.name: r.step_value(info) for r in step_regs}

    values = jax.vmap(one)(taus, y_taus)
    return {n: jnp.mean(v, axis=0) for n, v in values.items()}
