"""The comparison itself: which problems, implementations, methods and tolerances
(:class:`CompareConfig`), the reference solution, and :func:`run`, which solves every
combination and writes the outputs (:mod:`.report`)."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import portable
from .cost import taylor_cost_ratio
from .neural_ode import train_neural_ode
from .problems import PROBLEM_NAMES, Problem, neural_ode_problem, standard_problems
from .report import csv_text, markdown, plot, summary_table, write_text
from .runners import IMPLEMENTATIONS, METHODS, Skip, availability, check_implementation
from .x64 import float64

DEFAULT_TOLS = (1e-4, 1e-6, 1e-8, 1e-10)
REFERENCE_TOL = 1e-13


def reference(problem: Problem) -> np.ndarray:
    """z(t1) by SciPy DOP853 at rtol = atol = 1e-13 on the NumPy f."""
    from scipy.integrate import solve_ivp

    shape = problem.z0.shape
    out = solve_ivp(
        lambda t, y: problem.numpy_f(t, y.reshape(shape)).ravel(),
        (0.0, problem.t1),
        problem.z0.ravel(),
        method="DOP853",
        rtol=REFERENCE_TOL,
        atol=REFERENCE_TOL,
    )
    if not out.success:
        raise RuntimeError(f"reference solve of {problem.name} failed: {out.message}")
    return out.y[:, -1].reshape(shape)


@dataclass
class CompareConfig:
    problems: tuple = PROBLEM_NAMES
    tols: tuple = DEFAULT_TOLS
    implementations: tuple = IMPLEMENTATIONS
    methods: dict = field(default_factory=dict)  # implementation -> methods (default METHODS)
    repeats: int = 3
    model: str | None = None  # portable .npz of the neural ODE; trained into out_dir when absent
    cost_orders: tuple = (8, 12, 16)  # orders p of the measured Taylor-step cost (empty: skip)

    def __post_init__(self):
        for p in self.problems:
            if p not in PROBLEM_NAMES:
                raise ValueError(f"unknown problem {p!r}; valid: {', '.join(PROBLEM_NAMES)}")
        if not self.tols or not all(REFERENCE_TOL * 10 <= t < 1 for t in self.tols):
            raise ValueError(
                f"tolerances must lie in [{REFERENCE_TOL * 10:g}, 1) (the reference is at {REFERENCE_TOL:g}), got {self.tols}"
            )
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        for impl in self.implementations:
            check_implementation(impl)


def load_problems(cfg: CompareConfig, out_dir: str, log: Callable[[str], object] = print) -> dict:
    """The :class:`~taynode.compare.problems.Problem` for each name in ``cfg.problems``, by name.

    ``"neural_ode"`` is loaded from ``cfg.model`` (``FileNotFoundError`` if that is given and
    missing) or from ``out_dir/neural_ode.npz``, trained there first if absent."""
    std = standard_problems()
    problems = {}
    for name in cfg.problems:
        if name != "neural_ode":
            problems[name] = std[name]
            continue
        path = cfg.model or os.path.join(out_dir, "neural_ode.npz")
        if os.path.exists(path):
            spec = portable.load(path)
            log(f"neural ODE: {path}")
        else:
            if cfg.model:
                raise FileNotFoundError(f"neural ODE model {cfg.model!r} not found")
            log(f"neural ODE: training the toy model into {path} (300 iterations)")
            spec = train_neural_ode(path)
        # the torch field only for torchdiffeq: the other implementations must not need torch
        problems[name] = neural_ode_problem(spec, torch="torchdiffeq" in cfg.implementations)
    return problems


@float64
def run(cfg: CompareConfig | None = None, out_dir: str = "runs/compare", log: Callable[[str], object] = print) -> dict:
    """Run every (problem, implementation, method, tol) of ``cfg`` (default: ``CompareConfig()``);
    write compare.md, compare.csv, work_precision.png and results.json into ``out_dir``; return
    the summary."""
    cfg = CompareConfig() if cfg is None else cfg
    os.makedirs(out_dir, exist_ok=True)
    runners, skipped = availability(cfg.implementations)
    for impl, why in skipped.items():
        log(f"skipped {impl}: {why}")
    problems = load_problems(cfg, out_dir, log)
    rows, failures = [], []
    for pname, problem in problems.items():
        ref = reference(problem)
        for impl, runner in runners.items():
            for method in cfg.methods.get(impl, METHODS[impl]):
                for tol in cfg.tols:
                    try:
                        r = runner(problem, method, tol, cfg.repeats)
                    except Skip as e:
                        skipped.setdefault(f"{impl} on {pname}", str(e))
                        break
                    except Exception as e:  # a failing method is reported, not fatal
                        failures.append(
                            dict(problem=pname, implementation=impl, method=method, tol=tol, error=f"{type(e).__name__}: {e}")
                        )
                        log(f"FAILED {pname} {impl} {method} tol={tol:g}: {type(e).__name__}: {str(e)[:200]}")
                        continue
                    err = float(np.max(np.abs(np.asarray(r.pop("z1")) - ref)))
                    rows.append(dict(problem=pname, implementation=impl, method=method, tol=tol, error=err, **r))
                    log(
                        f"{pname:15s} {impl:11s} {method:15s} tol={tol:<6g} err={err:.2e} nfe={r['nfe']} "
                        f"time={r['time_s'] * 1e3:.2f} ms compile={r['compile_s']:.2f} s"
                    )
    cost = {}
    if "taynode" in runners:
        for pname, problem in problems.items():
            if cfg.cost_orders:
                cost[pname] = taylor_cost_ratio(problem, cfg.cost_orders)
    from ..taylor import derivatives

    taylor_method = inspect.signature(derivatives).parameters["method"].default  # what solver="taylor" uses
    summary = dict(
        config=dict(
            problems=list(cfg.problems),
            tols=list(cfg.tols),
            implementations=list(cfg.implementations),
            repeats=cfg.repeats,
            reference=f"SciPy DOP853, rtol=atol={REFERENCE_TOL:g}",
            taylor_method=taylor_method,
        ),
        problems={n: dict(z0_shape=list(p.z0.shape), t1=p.t1, note=p.note) for n, p in problems.items()},
        rows=rows,
        skipped=skipped,
        failures=failures,
        taylor_cost_ratio=cost,
    )
    write_text(os.path.join(out_dir, "compare.md"), markdown(summary))
    write_text(os.path.join(out_dir, "compare.csv"), csv_text(rows))
    write_text(os.path.join(out_dir, "summary.md"), "\n".join(summary_table(summary, t) for t in cfg.tols))
    png = os.path.join(out_dir, "work_precision.png")
    if rows:
        plot(summary, png)
        summary["figure"] = png
    write_text(os.path.join(out_dir, "results.json"), json.dumps(summary, indent=2, default=str))
    return summary
