r"""One harness that solves the same problems with several ODE-solver implementations.

For each problem, implementation, method and tolerance (rtol = atol = tol) it records

* ``error``: :math:`\max |z(t_1) - z_\text{ref}(t_1)|` over the state, against SciPy's DOP853 at
  rtol = atol = 1e-13 on an independent NumPy implementation of f;
* ``nfe``: evaluations of f as the implementation counts them (SciPy ``nfev``; torchdiffeq: a
  counting wrapper around f; taynode: its exact count; Julia: ``sol.stats.nf``). For the Taylor
  solver it is the number of Taylor coefficient orders (``nfe_unit`` says so; see
  :mod:`taynode.taylor_solver`);
* ``steps``: accepted steps, where the implementation tells (torchdiffeq does not);
* ``time_s``: the median wall time of ``repeats`` solves after a first, warm-up one;
  ``compile_s``: the first solve's extra time (JAX tracing and XLA compilation, Julia's JIT).

Outputs: ``compare.md`` (every row, the skipped implementations with reasons, failures, the
measured Taylor-step cost), ``summary.md`` (one table per tolerance: error / NFE / time per
problem), ``compare.csv``, ``work_precision.png``, ``results.json``.

Implementations: ``taynode`` (diffrax solvers and the Taylor solver), ``scipy`` (``solve_ivp``:
RK45, DOP853, LSODA), ``torchdiffeq`` (optional: ``pip install 'taynode[torch]'``) and ``julia``
(DifferentialEquations.jl through :mod:`taynode.backends`, when Julia is available). Those that
cannot run are listed with the reason.

Problems: Lotka–Volterra, Van der Pol (μ = 1), the eccentric two-body problem (e = 0.6, one
period), and a trained neural ODE given as a portable description (:mod:`taynode.portable`),
rebuilt in JAX, NumPy and torch (:mod:`taynode.portable`).

Layout: :mod:`.problems` (each problem once, for any array namespace), :mod:`.neural_ode` (the
trained model), :mod:`.runners` (one table entry per implementation), :mod:`.cost` (the Taylor
step's cost), :mod:`.report` (tables, CSV, figure) and :mod:`.harness` (the configuration and
:func:`run`). JAX computations run in float64 through a scoped ``jax.enable_x64`` context; the
caller's ``jax_enable_x64`` setting is left as it was.
"""

from ..array_problems import lotka_volterra, two_body, van_der_pol
from ..portable import torch_field
from .cost import taylor_cost_ratio
from .harness import DEFAULT_TOLS, REFERENCE_TOL, CompareConfig, load_problems, reference, run
from .neural_ode import train_neural_ode
from .problems import ECCENTRICITY, PROBLEM_NAMES, Problem, neural_ode_problem, standard_problems
from .report import COLUMNS, csv_text, markdown, plot, summary_table
from .runners import (
    IMPLEMENTATIONS,
    METHODS,
    RUNNERS,
    Runner,
    Unavailable,
    availability,
    run_julia,
    run_scipy,
    run_taynode,
    run_torchdiffeq,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_TOLS",
    "ECCENTRICITY",
    "IMPLEMENTATIONS",
    "METHODS",
    "PROBLEM_NAMES",
    "REFERENCE_TOL",
    "RUNNERS",
    "CompareConfig",
    "Problem",
    "Runner",
    "Unavailable",
    "availability",
    "csv_text",
    "load_problems",
    "lotka_volterra",
    "markdown",
    "neural_ode_problem",
    "plot",
    "reference",
    "run",
    "run_julia",
    "run_scipy",
    "run_taynode",
    "run_torchdiffeq",
    "standard_problems",
    "summary_table",
    "taylor_cost_ratio",
    "torch_field",
    "train_neural_ode",
    "two_body",
    "van_der_pol",
]
