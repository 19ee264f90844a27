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
rebuilt in JAX, NumPy and torch (:func:`torch_field`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import portable

DEFAULT_TOLS = (1e-4, 1e-6, 1e-8, 1e-10)
REFERENCE_TOL = 1e-13
METHODS = {
    "taynode": ("dopri5", "tsit5", "dopri8", "taylor", "taylor-adaptive"),
    "scipy": ("RK45", "DOP853", "LSODA"),
    "torchdiffeq": ("dopri5", "bosh3", "dopri8"),
    "julia": ("dopri5", "tsit5", "Vern9"),
}
IMPLEMENTATIONS = tuple(METHODS)
ECCENTRICITY = 0.6


# ---- problems: one definition each, for any array namespace (jax.numpy, numpy, torch) ---------


def _cat(xp, arrays):
    return xp.concatenate(arrays, -1)


def lotka_volterra(xp, t, z):
    x, y = z[..., 0:1], z[..., 1:2]
    return _cat(xp, [1.5 * x - x * y, -3.0 * y + x * y])


def van_der_pol(xp, t, z):
    x, v = z[..., 0:1], z[..., 1:2]
    return _cat(xp, [v, (1 - x**2) * v - x])


def two_body(xp, t, z):
    """Kepler problem q'' = −q/|q|³, state (q₁, q₂, v₁, v₂)."""
    q1, q2, v = z[..., 0:1], z[..., 1:2], z[..., 2:4]
    r3 = (q1**2 + q2**2) ** 1.5
    return _cat(xp, [v, -q1 / r3, -q2 / r3])


@dataclass
class Problem:
    name: str
    z0: np.ndarray  # (batch, d)
    t1: float
    jax_f: Callable  # f(t, z, args)
    numpy_f: Callable  # f(t, z) on (batch, d) arrays
    torch_f: Callable | None = None  # f(t, z) on tensors; built on demand
    spec: dict | None = None  # portable description, for backends that rebuild f
    note: str = ""


def _standard(name, fn, z0, t1, spec=None, note=""):
    import jax.numpy as jnp

    def torch_f(t, z):
        import torch

        return fn(torch, t, z)

    return Problem(name, np.asarray(z0, np.float64), float(t1), lambda t, z, args=None: fn(jnp, t, z),
                   lambda t, z: fn(np, t, z), torch_f, spec, note)


def neural_ode_problem(spec: dict, batch: int = 16) -> Problem:
    """A portable MLP description as a problem: z0 = linspace(−1, 1) per dimension, t ∈ [0, 1]."""
    spec = portable.validate(spec)
    if spec["kind"] != "mlp":
        raise ValueError("the neural-ODE problem needs an 'mlp' portable description")
    d = spec["weights"][0].shape[1] - 1
    z0 = np.repeat(np.linspace(-1.0, 1.0, batch)[:, None], d, 1)
    return Problem("neural_ode", z0, 1.0, portable.jax_field(spec), portable.numpy_field(spec), torch_field(spec),
                   spec, note=f"MLP {[d] + [W.shape[0] for W in spec['weights']]}, {spec['activation']}, batch {batch}")


def standard_problems() -> dict:
    e = ECCENTRICITY
    return {
        "lotka_volterra": _standard("lotka_volterra", lotka_volterra, [[1.0, 1.0]], 10.0, portable.problem("lotka_volterra")),
        "van_der_pol": _standard("van_der_pol", van_der_pol, [[2.0, 0.0]], 10.0, portable.problem("van_der_pol")),
        "two_body": _standard("two_body", two_body, [[1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))]], 2 * math.pi,
                              note=f"eccentricity {e}, one period"),
    }


PROBLEM_NAMES = ("lotka_volterra", "van_der_pol", "two_body", "neural_ode")


# ---- the portable MLP in torch -----------------------------------------------------------------


def torch_field(spec: dict):
    """``f(t, z)`` in torch (float64) for a portable description: the same MLP as
    :func:`taynode.portable.numpy_field` (time concatenated to every layer's input)."""
    import torch

    spec = portable.validate(spec)
    if spec["kind"] == "problem":
        fn = {"lotka_volterra": lotka_volterra, "van_der_pol": van_der_pol}.get(spec["name"])
        if fn is None:
            raise ValueError(f"problem {spec['name']!r} has no torch implementation")
        return lambda t, z: fn(torch, t, z)
    acts = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)),  # no threshold, unlike F.softplus
        "relu": torch.relu,
        "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),  # jax.nn.gelu's default
        "swish": lambda x: x * torch.sigmoid(x),
    }
    act = acts[spec["activation"]]
    Ws = [torch.tensor(np.array(W), dtype=torch.float64) for W in spec["weights"]]
    bs = [torch.tensor(np.array(b), dtype=torch.float64) for b in spec["biases"]]

    def f(t, z):
        h = z
        for i, (W, b) in enumerate(zip(Ws, bs)):
            tt = torch.as_tensor(t, dtype=h.dtype).expand(h.shape[:-1] + (1,))
            h = torch.cat([h, tt], -1) @ W.T + b
            if i < len(Ws) - 1:
                h = act(h)
        return h

    return f


def train_neural_ode(path: str, iters: int = 300, seed: int = 0) -> dict:
    """Train the Fig. 1 toy model (1 → 32 → 32 → 1, tanh, R₃-regularised) and save its portable
    description to ``path``; returns the description."""
    from .studies import toy

    cfg = toy.ToyConfig(hidden=32, iters=iters, seed=seed)
    model, _ = toy.train(cfg, cfg.lam, progress=False)
    spec = portable.from_model(model)
    portable.save(spec, path)
    return spec


# ---- the implementations -----------------------------------------------------------------------


def _timed(call, repeats):
    t = time.perf_counter()
    out = call()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
    med = statistics.median(times) if times else first
    return out, med, max(0.0, first - med)


def run_taynode(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from .solve import solve

    ts = jnp.array([0.0, problem.t1])
    f = problem.jax_f
    fn = jax.jit(lambda z: solve(f, z, ts, solver=method, rtol=tol, atol=tol, max_steps=200_000))
    z0 = jnp.asarray(problem.z0)

    def call():
        sol = fn(z0)
        jax.block_until_ready(sol.ys)
        return sol

    sol, med, comp = _timed(call, repeats)
    taylor = method.startswith("taylor")
    return dict(z1=np.asarray(sol.z1), nfe=int(sol.stats["nfe"]), steps=int(sol.stats["steps"]),
                nfe_unit="coefficient orders" if taylor else "f evals", time_s=med, compile_s=comp)


def run_scipy(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    from scipy.integrate import solve_ivp

    shape = problem.z0.shape
    rhs = lambda t, y: problem.numpy_f(t, y.reshape(shape)).ravel()  # noqa: E731

    def call():
        out = solve_ivp(rhs, (0.0, problem.t1), problem.z0.ravel(), method=method, rtol=tol, atol=tol)
        if not out.success:
            raise RuntimeError(f"solve_ivp {method} failed: {out.message}")
        return out

    out, med, comp = _timed(call, repeats)
    return dict(z1=out.y[:, -1].reshape(shape), nfe=int(out.nfev), steps=len(out.t) - 1, nfe_unit="f evals",
                time_s=med, compile_s=comp)


def run_torchdiffeq(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    import torch
    from torchdiffeq import odeint

    counter = [0]

    def f(t, z):
        counter[0] += 1
        return problem.torch_f(t, z)

    z0 = torch.as_tensor(problem.z0, dtype=torch.float64)
    ts = torch.tensor([0.0, problem.t1], dtype=torch.float64)

    def call():
        counter[0] = 0
        with torch.no_grad():
            ys = odeint(f, z0, ts, rtol=tol, atol=tol, method=method)
        return ys[-1].numpy().copy(), counter[0]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: intra-op threads only add overhead and contention
    try:
        (z1, nfe), med, comp = _timed(call, repeats)
    finally:
        torch.set_num_threads(threads)
    return dict(z1=z1, nfe=nfe, steps=None, nfe_unit="f evals", time_s=med, compile_s=comp)


def run_julia(problem: Problem, method: str, tol: float, repeats: int, backend=None) -> dict:
    if problem.spec is None:
        raise _Skip(f"problem {problem.name!r} has no portable description for Julia")
    ts = np.array([0.0, problem.t1])
    call = lambda: backend.solve(problem.spec, problem.z0, ts, method=method, rtol=tol, atol=tol)  # noqa: E731
    out, med, comp = _timed(call, repeats)
    return dict(z1=np.asarray(out.ys[-1]), nfe=out.nfe, steps=out.accepted, nfe_unit="f evals", time_s=med,
                compile_s=comp)


class _Skip(Exception):
    pass


def availability(implementations) -> tuple[dict, dict]:
    """``(runners, skipped)``: a runner per implementation that can run here, and the reason for
    each that cannot."""
    runners, skipped = {}, {}
    # Julia first: juliacall warns that torch imported before it may segfault.
    for name in sorted(implementations, key=lambda n: n != "julia"):
        if name not in METHODS:
            raise ValueError(f"unknown implementation {name!r}; valid: {', '.join(IMPLEMENTATIONS)}")
        if name == "taynode":
            runners[name] = run_taynode
        elif name == "scipy":
            try:
                import scipy.integrate  # noqa: F401
            except ImportError as e:
                skipped[name] = f"SciPy not installed ({e})"
                continue
            runners[name] = run_scipy
        elif name == "torchdiffeq":
            try:
                import torch  # noqa: F401
                import torchdiffeq  # noqa: F401
            except ImportError as e:
                skipped[name] = f"torchdiffeq/torch not installed ({e}); pip install 'taynode[torch]'"
                continue
            runners[name] = run_torchdiffeq
        elif name == "julia":
            from .backends import get_backend
            from .backends.julia_backend import JuliaUnavailableError

            try:
                backend = get_backend("julia")
            except JuliaUnavailableError as e:
                skipped[name] = str(e)
                continue
            runners[name] = lambda p, m, tol, r, backend=backend: run_julia(p, m, tol, r, backend)
    return runners, skipped


def reference(problem: Problem) -> np.ndarray:
    """z(t1) by SciPy DOP853 at rtol = atol = 1e-13 on the NumPy f."""
    from scipy.integrate import solve_ivp

    shape = problem.z0.shape
    out = solve_ivp(lambda t, y: problem.numpy_f(t, y.reshape(shape)).ravel(), (0.0, problem.t1), problem.z0.ravel(),
                    method="DOP853", rtol=REFERENCE_TOL, atol=REFERENCE_TOL)
    if not out.success:
        raise RuntimeError(f"reference solve of {problem.name} failed: {out.message}")
    return out.y[:, -1].reshape(shape)


def taylor_cost_ratio(problem: Problem, orders=(8, 12, 16), loops: int = 200, repeats: int = 5) -> dict:
    """Wall time of one computation of the Taylor coefficients z_1 … z_p at z0, in units of one
    evaluation of f: what one Taylor step costs in f evaluations on this machine, against the
    ``p`` that the solver's ``nfe`` counts. Each is timed as ``loops`` dependent evaluations inside
    one jitted :func:`jax.lax.fori_loop` (so dispatch overhead does not count), median of
    ``repeats``."""
    import jax
    import jax.numpy as jnp

    from .taylor_solver import taylor_coefficients

    z0 = jnp.asarray(problem.z0)
    t0 = jnp.asarray(0.0)

    def median_time(g):
        # z ← z + 1e-300·g(z): each evaluation depends on the previous one, and nothing is dropped
        run = jax.jit(lambda z: jax.lax.fori_loop(0, loops, lambda i, z: z + 1e-300 * g(t0, z), z))
        jax.block_until_ready(run(z0))
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(run(z0))
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    f_time = median_time(lambda t, z: problem.jax_f(t, z, None))
    return {p: median_time(lambda t, z, p=p: taylor_coefficients(problem.jax_f, t, z, None, p)[-1]) / f_time
            for p in orders}


# ---- the harness -------------------------------------------------------------------------------


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
            raise ValueError(f"tolerances must lie in [{REFERENCE_TOL * 10:g}, 1) (the reference is at {REFERENCE_TOL:g}), got {self.tols}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        for impl in self.implementations:
            if impl not in METHODS:
                raise ValueError(f"unknown implementation {impl!r}; valid: {', '.join(IMPLEMENTATIONS)}")


def load_problems(cfg: CompareConfig, out_dir: str, log=print) -> dict:
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
        problems[name] = neural_ode_problem(spec)
    return problems


def run(cfg: CompareConfig = CompareConfig(), out_dir: str = "runs/compare", log=print) -> dict:
    """Run every (problem, implementation, method, tol); write compare.md, compare.csv,
    work_precision.png and results.json into ``out_dir``; return the summary."""
    import jax

    jax.config.update("jax_enable_x64", True)
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
                    except _Skip as e:
                        skipped.setdefault(f"{impl} on {pname}", str(e))
                        break
                    except Exception as e:  # a failing method is reported, not fatal
                        failures.append(dict(problem=pname, implementation=impl, method=method, tol=tol, error=f"{type(e).__name__}: {e}"))
                        log(f"FAILED {pname} {impl} {method} tol={tol:g}: {type(e).__name__}: {str(e)[:200]}")
                        continue
                    err = float(np.max(np.abs(np.asarray(r.pop("z1")) - ref)))
                    rows.append(dict(problem=pname, implementation=impl, method=method, tol=tol, error=err, **r))
                    log(f"{pname:15s} {impl:11s} {method:15s} tol={tol:<6g} err={err:.2e} nfe={r['nfe']} "
                        f"time={r['time_s'] * 1e3:.2f} ms compile={r['compile_s']:.2f} s")
    cost = {}
    if "taynode" in runners:
        for pname, problem in problems.items():
            if cfg.cost_orders:
                cost[pname] = taylor_cost_ratio(problem, cfg.cost_orders)
    import inspect

    from .taylor import derivatives

    taylor_method = inspect.signature(derivatives).parameters["method"].default  # what solver="taylor" uses
    summary = dict(config=dict(problems=list(cfg.problems), tols=list(cfg.tols), implementations=list(cfg.implementations),
                               repeats=cfg.repeats, reference=f"SciPy DOP853, rtol=atol={REFERENCE_TOL:g}",
                               taylor_method=taylor_method),
                   problems={n: dict(z0_shape=list(p.z0.shape), t1=p.t1, note=p.note) for n, p in problems.items()},
                   rows=rows, skipped=skipped, failures=failures, taylor_cost_ratio=cost)
    _write(os.path.join(out_dir, "compare.md"), markdown(summary))
    _write(os.path.join(out_dir, "compare.csv"), csv_text(rows))
    _write(os.path.join(out_dir, "summary.md"), "\n".join(summary_table(summary, t) for t in cfg.tols))
    png = os.path.join(out_dir, "work_precision.png")
    if rows:
        plot(summary, png)
        summary["figure"] = png
    _write(os.path.join(out_dir, "results.json"), json.dumps(summary, indent=2, default=str))
    return summary


# ---- output ------------------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


COLUMNS = ("problem", "implementation", "method", "tol", "error", "nfe", "nfe_unit", "steps", "time_s", "compile_s")


def csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def markdown(summary: dict, tols=None) -> str:
    """The tables (one per problem), the skipped implementations with reasons, the failures and
    the Taylor cost ratios. ``tols`` restricts the rows (e.g. one tolerance for a README)."""
    rows = [r for r in summary["rows"] if tols is None or r["tol"] in tols]
    out = []
    for pname, info in summary["problems"].items():
        t1 = info["t1"]
        note = f"; {info['note']}" if info["note"] else ""
        out.append(f"**{pname}** (t ∈ [0, {t1:.4g}], state {tuple(info['z0_shape'])}{note})\n")
        out.append("| implementation | method | tol | error at t1 | NFE | steps | time (ms) | compile (s) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in [r for r in rows if r["problem"] == pname]:
            nfe = f"{r['nfe']}" + (" †" if r["nfe_unit"] != "f evals" else "")
            steps = "—" if r["steps"] is None else str(r["steps"])
            out.append(f"| {r['implementation']} | {r['method']} | {r['tol']:g} | {r['error']:.2e} | {nfe} | {steps} | "
                       f"{r['time_s'] * 1e3:.2f} | {r['compile_s']:.2f} |")
        out.append("")
    out.append(f"Error: max |z(t1) − reference| over the state; reference: {summary['config']['reference']}. "
               f"Time: median of {summary['config']['repeats']} solves after a warm-up one; compile: the warm-up's extra time. "
               "† Taylor solver: Taylor coefficient orders (a step of order p counts p), not f evaluations; "
               f"Taylor core method: {summary['config'].get('taylor_method', '?')!r}.\n")
    cost = summary.get("taylor_cost_ratio") or {}
    if cost:
        orders = sorted({int(p) for c in cost.values() for p in c})
        out.append("Measured cost of one Taylor-coefficient computation of order p (z_1 … z_p), in f evaluations "
                   "(wall time inside one jitted loop, median; `taylor_cost_ratio`):\n")
        out.append("| problem | " + " | ".join(f"p={p}" for p in orders) + " |")
        out.append("|---|" + "---|" * len(orders))
        for pname, c in cost.items():
            c = {int(k): v for k, v in c.items()}  # JSON turns the keys into strings
            out.append(f"| {pname} | " + " | ".join(f"{c[p]:.1f}" for p in orders) + " |")
        out.append("")
    if summary["skipped"]:
        out.append("Skipped:\n")
        out.extend(f"- {k}: {v}" for k, v in summary["skipped"].items())
        out.append("")
    if summary["failures"]:
        out.append("Failed:\n")
        out.extend(f"- {f['problem']} {f['implementation']} {f['method']} tol={f['tol']:g}: {f['error'][:300]}" for f in summary["failures"])
        out.append("")
    return "\n".join(out) + "\n"


def summary_table(summary: dict, tol: float) -> str:
    """One row per implementation and method, one column per problem: error at t1 / NFE at one
    tolerance (the README's table)."""
    pnames = list(summary["problems"])
    keys = list(dict.fromkeys((r["implementation"], r["method"]) for r in summary["rows"]))
    out = [f"| rtol = atol = {tol:g} | " + " | ".join(f"{p}: error / NFE / ms" for p in pnames) + " |",
           "|---|" + "---|" * len(pnames)]
    for key in keys:
        cells = []
        for p in pnames:
            r = next((r for r in summary["rows"] if r["problem"] == p and r["tol"] == tol
                      and (r["implementation"], r["method"]) == key), None)
            dag = " †" if r is not None and r["nfe_unit"] != "f evals" else ""
            cells.append("—" if r is None else f"{r['error']:.1e} / {r['nfe']}{dag} / {r['time_s'] * 1e3:.2f}")
        out.append(f"| {key[0]} {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pnames = list(summary["problems"])
    fig, axes = plt.subplots(len(pnames), 2, figsize=(11, 3.6 * len(pnames)), squeeze=False, layout="constrained")
    styles = {"taynode": "-", "scipy": "--", "torchdiffeq": ":", "julia": "-."}
    for i, pname in enumerate(pnames):
        rows = [r for r in summary["rows"] if r["problem"] == pname]
        for key in sorted({(r["implementation"], r["method"]) for r in rows}):
            rs = sorted([r for r in rows if (r["implementation"], r["method"]) == key], key=lambda r: r["tol"])
            err = [max(r["error"], 1e-17) for r in rs]
            label = f"{key[0]} {key[1]}" + (" (coef. orders)" if rs[0]["nfe_unit"] != "f evals" else "")
            for ax, x in zip(axes[i], ([r["nfe"] for r in rs], [r["time_s"] for r in rs])):
                ax.loglog(x, err, styles.get(key[0], "-"), marker="o", ms=3, label=label)
        axes[i, 0].set_ylabel(f"{pname}\nerror at t1")
        axes[i, 0].set_xlabel("NFE")
        axes[i, 1].set_xlabel("wall time (s, median)")
        for ax in axes[i]:
            ax.grid(True, which="major", alpha=0.3)
    axes[0, 1].legend(fontsize=7, loc="upper right", ncol=1)
    fig.suptitle("Work–precision: tolerances " + ", ".join(f"{t:g}" for t in summary["config"]["tols"]))
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
