"""The implementations as a table of runners.

A :class:`Runner` names an implementation, its methods, a ``check`` that says whether it can run
here, and ``run(problem, method, tol, repeats, **context) -> row``. ``check`` returns the context
(keyword arguments for ``run``, e.g. the Julia backend) or raises :class:`Unavailable` with the
reason. Adding an implementation is adding an entry to :data:`RUNNERS`.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .problems import Problem
from .x64 import float64

if TYPE_CHECKING:
    from ..backends.julia_backend import JuliaBackend


class Unavailable(Exception):
    """The implementation cannot run here; the message says why (and how to get it)."""


class Skip(Exception):
    """The implementation cannot solve this problem (e.g. Julia needs a portable description)."""


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


@float64
def run_taynode(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    """Solve ``problem`` to ``t1`` with :func:`taynode.solve` (float64, rtol = atol = ``tol``):
    the row's ``z1``, ``nfe`` and ``steps``, the median time over ``repeats`` and the compile
    time. For the Taylor methods the NFE unit is coefficient orders, not f evaluations."""
    import jax
    import jax.numpy as jnp

    from ..solve import solve

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
    return dict(
        z1=np.asarray(sol.z1),
        nfe=int(sol.stats["nfe"]),
        steps=int(sol.stats["steps"]),
        nfe_unit="coefficient orders" if taylor else "f evals",
        time_s=med,
        compile_s=comp,
    )


def run_scipy(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    """Solve ``problem`` with :func:`scipy.integrate.solve_ivp` on the flattened state; the row as
    :func:`run_taynode`, with SciPy's own ``nfev``. ``RuntimeError`` if the solver fails."""
    from scipy.integrate import solve_ivp

    shape = problem.z0.shape

    def rhs(t, y):
        return problem.numpy_f(t, y.reshape(shape)).ravel()

    def call():
        out = solve_ivp(rhs, (0.0, problem.t1), problem.z0.ravel(), method=method, rtol=tol, atol=tol)
        if not out.success:
            raise RuntimeError(f"solve_ivp {method} failed: {out.message}")
        return out

    out, med, comp = _timed(call, repeats)
    return dict(
        z1=out.y[:, -1].reshape(shape), nfe=int(out.nfev), steps=len(out.t) - 1, nfe_unit="f evals", time_s=med, compile_s=comp
    )


def run_torchdiffeq(problem: Problem, method: str, tol: float, repeats: int) -> dict:
    """Solve ``problem`` with ``torchdiffeq.odeint`` in float64 on one thread; the NFE is counted
    by wrapping the field (torchdiffeq reports no steps)."""
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


def run_julia(problem: Problem, method: str, tol: float, repeats: int, backend: JuliaBackend | None = None) -> dict:
    """Solve ``problem`` with OrdinaryDiffEq.jl through ``backend`` (from the Julia runner's check);
    raises :class:`Skip` for a problem without a portable description."""
    if problem.spec is None:
        raise Skip(f"problem {problem.name!r} has no portable description for Julia")
    ts = np.array([0.0, problem.t1])

    def call():
        return backend.solve(problem.spec, problem.z0, ts, method=method, rtol=tol, atol=tol)

    out, med, comp = _timed(call, repeats)
    return dict(z1=np.asarray(out.ys[-1]), nfe=out.nfe, steps=out.accepted, nfe_unit="f evals", time_s=med, compile_s=comp)


def _no_check() -> dict:
    return {}


def _check_scipy() -> dict:
    try:
        import scipy.integrate  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"SciPy not installed ({e})") from None
    return {}


def _check_torchdiffeq() -> dict:
    try:
        import torch  # noqa: F401
        import torchdiffeq  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"torchdiffeq/torch not installed ({e}); pip install 'taynode[torch]'") from None
    return {}


def _check_julia() -> dict:
    from ..backends import get_backend
    from ..backends.julia_backend import JuliaUnavailableError

    try:
        return {"backend": get_backend("julia")}
    except JuliaUnavailableError as e:
        raise Unavailable(str(e)) from None


@dataclass(frozen=True)
class Runner:
    name: str
    methods: tuple[str, ...]
    run: Callable  # (problem, method, tol, repeats, **context) -> row
    check: Callable[[], dict] = _no_check  # -> context for run; raises Unavailable


RUNNERS = {
    r.name: r
    for r in (
        Runner("taynode", ("dopri5", "tsit5", "dopri8", "taylor", "taylor-adaptive"), run_taynode),
        Runner("scipy", ("RK45", "DOP853", "LSODA"), run_scipy, _check_scipy),
        Runner("torchdiffeq", ("dopri5", "bosh3", "dopri8"), run_torchdiffeq, _check_torchdiffeq),
        Runner("julia", ("dopri5", "tsit5", "Vern9"), run_julia, _check_julia),
    )
}
METHODS = {name: r.methods for name, r in RUNNERS.items()}
IMPLEMENTATIONS = tuple(RUNNERS)


def check_implementation(name: str) -> None:
    """``ValueError`` unless ``name`` is one of :data:`IMPLEMENTATIONS`."""
    if name not in RUNNERS:
        raise ValueError(f"unknown implementation {name!r}; valid: {', '.join(IMPLEMENTATIONS)}")


def availability(implementations: Iterable[str]) -> tuple[dict, dict]:
    """``(runners, skipped)``: a runner ``(problem, method, tol, repeats) -> row`` per
    implementation that can run here, and the reason for each that cannot.

    A check that fails in an unexpected way (not :class:`Unavailable`) does not stop the
    comparison: the implementation is skipped with the exception's type and message as the
    reason, so it shows in the log and in ``compare.md``."""
    for name in implementations:
        check_implementation(name)
    runners, skipped = {}, {}
    # Julia first: juliacall warns that torch imported before it may segfault.
    for name in sorted(implementations, key=lambda n: n != "julia"):
        runner = RUNNERS[name]
        try:
            context = runner.check()
        except Unavailable as e:
            skipped[name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 -- reported as the reason, see the docstring
            skipped[name] = f"its availability check failed unexpectedly: {type(e).__name__}: {e}"
            continue
        runners[name] = functools.partial(runner.run, **context) if context else runner.run
    return runners, skipped
