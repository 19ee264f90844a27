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
M stratified uniform times τ_m (:func:`taynode.ode.term.sample_times`), of the heuristic of *one*
fresh solver step from :math:`(\tau_m, z(\tau_m))` — z from the solve's dense output — whose size
is the solver's initial-step rule (Hairer, Nørsett & Wanner; what ``init`` does in the reference
code), clipped at t1: :math:`\frac1M \sum_m (\cdot)_{\tau_m}\,|h_{\tau_m}|`. The authors' "biased"
variant (τ drawn from the accepted step times, ``neural_ode.jl`` lines 88–100) is not implemented.

The global variant needs the discrete sensitivities (the k_i are not functions of the trajectory,
thesis line 64), so it requires ``adjoint="backprop"``. The step sizes themselves carry no
gradient (diffrax's PID controller stops it), so the gradient is the one with the steps held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from .evaluation import num_features, per_example_sum_squares

__all__ = ["NAMES", "ErrorEstimate", "StepInfo", "StepRegularizer", "StiffnessEstimate", "parse", "same_time_pair", "split"]


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


def _safe_sqrt(x):
    """sqrt with a zero (not infinite) derivative at 0: a step with zero error stays differentiable."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


class StepRegularizer:
    """Base class: a per-example quantity of each accepted step, summed over the accepted steps."""

    name: str

    def check_tableau(self, tableau: dfx.ButcherTableau, solver_name: str, alternatives: Sequence[str] = ()) -> None:
        """Raise ValueError if this regularizer cannot be computed from the tableau's stages;
        ``alternatives`` are solvers the message suggests instead."""

    def step_value(self, info: StepInfo) -> jax.Array:
        """The per-example value of one accepted step."""
        raise NotImplementedError


@dataclass(frozen=True)
class ErrorEstimate(StepRegularizer):
    r"""ERNODE: :math:`\sum_j E_\text{est,j}\,|h_j|` over the accepted steps (module docstring)."""

    name: str = "ernode"

    def step_value(self, info):
        scale = jax.tree_util.tree_map(lambda a, b: info.atol + info.rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)), info.z0, info.z1)
        scaled = jax.tree_util.tree_map(lambda e, s: e / s, info.z_error, scale)
        eest = _safe_sqrt(per_example_sum_squares(scaled) / num_features(info.z0))
        return eest * jnp.abs(info.t1 - info.t0)


def same_time_pair(tableau: dfx.ButcherTableau) -> tuple[int, int] | None:
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

    def pair(self, tableau: dfx.ButcherTableau) -> tuple[int, int] | None:
        """The stage pair (1-based) the estimate compares."""
        if self.stages is not None:
            i, j = self.stages
            return (i, j)
        return same_time_pair(tableau)

    def check_tableau(self, tableau: dfx.ButcherTableau, solver_name: str, alternatives: Sequence[str] = ()) -> None:
        """The stage pair exists in ``tableau`` (see :meth:`StepRegularizer.check_tableau`)."""
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
                f"none (c = {c}). Use one of {list(alternatives)}, or pass "
                f"StiffnessEstimate(stages=(i, j)) to use two stages at different times (then df/dt enters the estimate)."
            )

    def step_value(self, info):
        pair = self.pair(info.tableau)
        assert pair is not None  # check_tableau ran before the solve
        i, j = pair
        a = [np.zeros(0)] + [np.asarray(row) for row in info.tableau.a_lower]

        def point(s):  # g_s = z0 + sum_l a_sl k_l  (k already holds the factor h)
            row = a[s - 1]
            return jax.tree_util.tree_map(
                lambda z, k: z + jnp.tensordot(jnp.asarray(row, k.dtype), k[: len(row)], axes=1), info.z0, info.ks
            )

        dk = jax.tree_util.tree_map(lambda k: k[i - 1] - k[j - 1], info.ks)
        gi = point(i)
        dg = jax.tree_util.tree_map(lambda x, y: x - y, gi, point(j))
        num, den = per_example_sum_squares(dk), per_example_sum_squares(dg)
        # S_est·|h| = (‖Δk‖/|h|)/‖Δg‖·|h|; 0 where the two points coincide to working precision,
        # ‖Δg‖ <= eps·‖g_i‖ (LocalRegNeuralDE.jl uses 0 where they coincide exactly). Below that the
        # secant slope is rounding noise, and in float32 its derivative 1/‖Δg‖⁴ overflows to NaN.
        eps = jnp.finfo(den.dtype).eps
        ok = den > eps**2 * per_example_sum_squares(gi) + jnp.finfo(den.dtype).tiny
        return _safe_sqrt(num / jnp.where(ok, den, 1.0)) * ok


NAMES = {"ernode": ErrorEstimate, "srnode": StiffnessEstimate}


def parse(spec: object) -> StepRegularizer | None:
    """A step regularizer from an instance or a name ("ernode", "srnode"); None for anything else."""
    if isinstance(spec, StepRegularizer):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in NAMES:
        return NAMES[spec.strip().lower()]()
    return None


def split(regularizers: Sequence) -> tuple[list, list]:
    """(step regularizers, the rest) of a regularizers list."""
    steps, rest = [], []
    for r in regularizers:
        s = parse(r)
        (steps.append(s) if s is not None else rest.append(r))
    return steps, rest
