"""The Julia backend: TaylorSeries.jl and OrdinaryDiffEq.jl through juliacall.

Julia starts on first use, never at ``import taynode``. Its dependencies are declared the
juliacall way, in ``taynode/juliapkg.json``, which points at the local package
``julia/TayNodeJulia`` (so the backend needs a source checkout installed with ``pip install -e``).

Before juliacall is imported we look for a Julia executable; with none, juliacall would try to
download Julia and its packages, which hangs or fails on a machine without internet. So unless
``TAYNODE_JULIA_DOWNLOAD=1`` allows that download, a missing Julia is reported at once.

Arrays cross without copies where juliacall allows: a C-ordered (batch, d) state goes to Julia as
its transpose, a column-major d × batch matrix; Julia's d × batch × n results come back as NumPy
views, transposed to (n, batch, d).
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from .. import portable
from . import SolveResult

_MODULE = None


class JuliaUnavailableError(RuntimeError):
    """The Julia backend cannot run here; the message says why."""


def find_julia() -> str | None:
    """A Julia executable juliacall would use, without starting or downloading anything."""
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        if os.environ.get(var):
            return os.environ[var]
    return shutil.which("julia") or shutil.which("juliaup")


def julia_module():
    """Start Julia (once) and return the TayNodeJulia module."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    tail = "The JAX backend (backend='jax', the default) works without Julia."
    if find_julia() is None and os.environ.get("TAYNODE_JULIA_DOWNLOAD") != "1":
        raise JuliaUnavailableError(
            "Julia backend unavailable: no Julia executable found (looked at PYTHON_JULIACALL_EXE, "
            "PYTHON_JULIAPKG_EXE and PATH for julia/juliaup). Install Julia >= 1.10, or set "
            "TAYNODE_JULIA_DOWNLOAD=1 to let juliacall download Julia and the packages (needs internet). "
            + tail
        )
    try:
        import juliacall
    except ImportError as e:
        raise JuliaUnavailableError(f"Julia backend unavailable: juliacall is not installed ({e}); pip install 'taynode[julia]'. " + tail) from e
    try:
        jl = juliacall.newmodule("TayNodeBridge")
        jl.seval("using TayNodeJulia")
        _MODULE = jl.TayNodeJulia
    except Exception as e:  # juliacall raises plain Exceptions and JuliaError
        raise JuliaUnavailableError(f"Julia backend unavailable: Julia could not load TayNodeJulia: {e}. " + tail) from e
    return _MODULE


# ---- marshalling (tested without Julia) --------------------------------------------------------


def to_julia_columns(z) -> np.ndarray:
    """(batch, d) float64 → its transpose, a Fortran-ordered (d, batch) view juliacall passes as a
    column-major matrix without copying."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"states are (batch, d) arrays, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("state contains NaN or inf")
    return z.T


def from_julia_columns(a) -> np.ndarray:
    """A Julia d × batch × n array (a Fortran-ordered NumPy view) → an (n, batch, d) view."""
    return np.asarray(a).T


def julia_dynamics(jl, spec):
    spec = portable.validate(spec)
    if spec["kind"] == "problem":
        return jl.problem(spec["name"])
    arrays = [a for W, b in zip(spec["weights"], spec["biases"]) for a in (W, b)]
    return jl.MLP(spec["activation"], *[np.ascontiguousarray(a, dtype=np.float64) for a in arrays])


class JuliaBackend:
    name = "julia"

    def __init__(self):
        self.jl = julia_module()

    def derivatives(self, spec, z, t, order):
        out = self.jl.taylor_derivatives(julia_dynamics(self.jl, spec), to_julia_columns(z), float(t), int(order))
        return from_julia_columns(out)  # (order, batch, d), a view on the Julia array

    def solve(self, spec, z0, ts, method="dopri5", rtol=1e-8, atol=1e-8):
        ts = np.ascontiguousarray(ts, dtype=np.float64)
        Y, nf, nacc, nrej = self.jl.solve_ode(
            julia_dynamics(self.jl, spec), to_julia_columns(z0), ts, method, reltol=rtol, abstol=atol
        )
        return SolveResult(from_julia_columns(Y), int(nf), int(nacc), int(nrej))

    def rk_integral(self, spec, z0, t0, t1, order, rtol=1e-8, atol=1e-8):
        r = self.jl.rk_integral(
            julia_dynamics(self.jl, spec), to_julia_columns(z0), float(t0), float(t1), int(order), reltol=rtol, abstol=atol
        )
        return np.asarray(r)
