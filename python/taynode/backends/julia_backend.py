"""The Julia backend: TaylorSeries.jl and OrdinaryDiffEq.jl through juliacall.

Julia starts on first use, never at ``import taynode``. Its dependencies are declared the
juliacall way, in ``taynode/juliapkg.json``, which points at the Julia package: in a checkout or
an editable install the top-level ``julia/TayNodeJulia`` (``../../julia/TayNodeJulia``), in a
wheel the copy the build puts inside the Python package (``taynode/julia/TayNodeJulia``,
``setup.py``); :func:`package_dir` resolves it in either layout.

Three kinds of failure, kept apart so that a broken Julia is never mistaken for a missing one:

* :class:`JuliaUnavailableError`: Julia is truly absent here (no executable and downloads not
  allowed, or juliacall not installed). Tests skip on this, printing why.
* :class:`JuliaBackendError`: Julia is there but cannot serve (a misconfigured environment,
  juliapkg failing to install the packages, TayNodeJulia failing to load, an error inside
  Julia). The message names the Julia error.
* :class:`JuliaSolveError`: OrdinaryDiffEq stopped before the end time (its retcode was not a
  success); Julia's ``SolveFailed`` message is passed on.

The executable gate: ``julia`` on PATH, ``PYTHON_JULIAPKG_EXE``, or ``PYTHON_JULIACALL_EXE``
together with ``PYTHON_JULIACALL_PROJECT`` (juliacall refuses either alone). A Julia found on
PATH is handed to juliapkg as ``PYTHON_JULIAPKG_EXE``, so juliapkg uses it instead of
installing another one through ``juliaup``; only ``TAYNODE_JULIA_DOWNLOAD=1`` lets juliacall
download Julia.

Arrays cross without copies where juliacall allows: a C-ordered (batch, d) state goes to Julia as
its transpose, a column-major d × batch matrix; Julia's d × batch × n results come back as NumPy
views, transposed to (n, batch, d).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import numpy as np

from .. import portable
from .result import SolveResult

_MODULE = None

# Method names TayNodeJulia.ALGORITHMS accepts (tests/test_julia_static.py checks they agree).
ALGORITHMS = ("dopri5", "DP5", "tsit5", "Tsit5", "bosh3", "BS3", "Vern7", "Vern9", "VCABM")

_TAIL = "The JAX backend (backend='jax', the default) works without Julia."
JULIAPKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "juliapkg.json")


class JuliaUnavailableError(RuntimeError):
    """Julia is not installed here (or juliacall is not); the message says what to install."""


class JuliaBackendError(RuntimeError):
    """Julia is installed but the backend cannot run; the message names the Julia error."""


class JuliaSolveError(RuntimeError):
    """OrdinaryDiffEq ended a solve early (retcode not a success)."""


def package_dir() -> str:
    """The folder of the TayNodeJulia package, as juliapkg resolves it: ``juliapkg.json``'s path,
    relative to that file (a checkout: the top-level ``julia/``; a wheel: inside ``taynode/``)."""
    with open(JULIAPKG) as fh:
        entry = json.load(fh)["packages"]["TayNodeJulia"]
    path = os.path.normpath(os.path.join(os.path.dirname(JULIAPKG), entry["path"]))
    if not os.path.isfile(os.path.join(path, "Project.toml")):
        raise JuliaBackendError(f"{JULIAPKG} points at {path}, which holds no Project.toml: the Julia package is missing")
    return path


def find_julia() -> str | None:
    """The Julia executable juliacall will use, without starting or downloading anything.

    ``None`` when there is none; :class:`JuliaBackendError` when the environment names one that
    cannot work (so that a misconfiguration is not reported as "no Julia").
    """
    exe, project = os.environ.get("PYTHON_JULIACALL_EXE"), os.environ.get("PYTHON_JULIACALL_PROJECT")
    if bool(exe) != bool(project):
        raise JuliaBackendError(
            "PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT must be set together (juliacall raises "
            "otherwise); unset PYTHON_JULIACALL_EXE and use PYTHON_JULIAPKG_EXE to choose the Julia "
            "executable, or also set PYTHON_JULIACALL_PROJECT to a Julia project that has TayNodeJulia."
        )
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        if os.environ.get(var):
            path = shutil.which(os.environ[var])
            if path is None:
                raise JuliaBackendError(f"{var}={os.environ[var]!r} is not an executable; point it at a Julia >= 1.10 binary.")
            return path
    return shutil.which("julia")


def _is_julia_error(e: BaseException) -> bool:
    jc = sys.modules.get("juliacall")
    return jc is not None and isinstance(e, getattr(jc, "JuliaError", ()))


def _import_juliacall():
    """Import juliacall (which starts Julia and lets juliapkg resolve the packages), mapping its
    failures: not installed → unavailable; anything else → :class:`JuliaBackendError`."""
    try:
        import juliacall
    except ModuleNotFoundError as e:
        if e.name in ("juliacall", "juliapkg"):
            raise JuliaUnavailableError(
                f"Julia backend unavailable: {e.name} is not installed ({e}); pip install 'taynode[julia]'. " + _TAIL
            ) from e
        raise JuliaBackendError(f"juliacall failed to import: {e}") from e
    except subprocess.CalledProcessError as e:
        raise JuliaBackendError(
            f"juliapkg could not install TayNodeJulia's Julia packages (Julia's Pkg failed: {e}; its output is "
            "above). If this machine is offline and the packages are already in the Julia depot, set "
            "PYTHON_JULIAPKG_OFFLINE=yes; otherwise check network access to the Julia package servers."
        ) from e
    except Exception as e:  # juliacall and juliapkg raise plain Exceptions
        raise JuliaBackendError(f"juliacall could not start Julia: {type(e).__name__}: {e}") from e
    return juliacall


def julia_module() -> Any:
    """Start Julia (once) and return the TayNodeJulia module."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    exe = find_julia()
    download = os.environ.get("TAYNODE_JULIA_DOWNLOAD") == "1"
    if exe is None and not download:
        raise JuliaUnavailableError(
            "Julia backend unavailable: no Julia executable found (looked at PYTHON_JULIACALL_EXE, "
            "PYTHON_JULIAPKG_EXE and PATH). Install Julia >= 1.10, or set TAYNODE_JULIA_DOWNLOAD=1 to let "
            "juliacall download Julia and the packages (needs internet). " + _TAIL
        )
    if exe is not None and not download and not os.environ.get("PYTHON_JULIACALL_EXE"):
        # Without this juliapkg prefers juliaup, which installs the newest Julia (a download).
        os.environ.setdefault("PYTHON_JULIAPKG_EXE", exe)
        state = getattr(sys.modules.get("juliapkg.state"), "STATE", None)
        if state is not None and not state.get("override_executable"):
            state["override_executable"] = os.environ["PYTHON_JULIAPKG_EXE"]  # juliapkg read the env already
    juliacall = _import_juliacall()
    try:
        jl = juliacall.newmodule("TayNodeBridge")
        jl.seval("using TayNodeJulia")
        _MODULE = jl.TayNodeJulia
    except Exception as e:
        raise JuliaBackendError(f"Julia is installed but could not load TayNodeJulia: {e}") from e
    return _MODULE


def _call(fn, *args, **kwargs):
    """Call into Julia, turning Julia's exceptions into Python ones that say what to do."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        if not _is_julia_error(e):
            raise
        msg = str(e)
        if msg.startswith("SolveFailed"):
            raise JuliaSolveError(msg) from e
        if msg.startswith("ArgumentError"):
            raise ValueError(msg) from e
        raise JuliaBackendError(f"TayNodeJulia raised: {msg}") from e


# ---- marshalling (tested without Julia) --------------------------------------------------------


def to_julia_columns(z: np.ndarray) -> np.ndarray:
    """(batch, d) float64 → its transpose, a Fortran-ordered (d, batch) view juliacall passes as a
    column-major matrix without copying."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"states are (batch, d) arrays, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("state contains NaN or inf")
    return z.T


def from_julia_columns(a: Any) -> np.ndarray:
    """A Julia d × batch × n array (a Fortran-ordered NumPy view) → an (n, batch, d) view."""
    return np.asarray(a).T


def _order(order) -> int:
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise ValueError(f"order K must be an integer >= 1, got {order!r}")
    return int(order)


def _method(method: str) -> str:
    if method not in ALGORITHMS:
        raise ValueError(f"unknown Julia method {method!r}; valid: {', '.join(ALGORITHMS)}")
    return method


def julia_dynamics(jl: Any, spec: dict) -> Any:
    """The Julia vector field for the portable description ``spec``: a named problem or an MLP
    rebuilt from the spec's weights and biases (as float64), made in the Julia module ``jl``."""
    spec = portable.validate(spec)
    if spec["kind"] == "problem":
        return _call(jl.problem, spec["name"])
    arrays = [a for W, b in zip(spec["weights"], spec["biases"]) for a in (W, b)]
    return _call(jl.MLP, spec["activation"], *[np.ascontiguousarray(a, dtype=np.float64) for a in arrays])


class JuliaBackend:
    """TaylorSeries.jl derivatives and OrdinaryDiffEq.jl solves through juliacall; making one loads
    the bridge module (:func:`julia_module`) and so starts Julia."""

    name = "julia"

    def __init__(self):
        self.jl = julia_module()

    def derivatives(self, spec, z, t, order):
        order = _order(order)
        f = julia_dynamics(self.jl, spec)
        out = _call(self.jl.taylor_derivatives, f, to_julia_columns(z), float(t), order)
        return from_julia_columns(out)  # (order, batch, d), a view on the Julia array

    def solve(self, spec, z0, ts, method="dopri5", rtol=1e-8, atol=1e-8):
        ts = np.ascontiguousarray(ts, dtype=np.float64)
        method = _method(method)
        f = julia_dynamics(self.jl, spec)
        Y, nf, nacc, nrej = _call(self.jl.solve_ode, f, to_julia_columns(z0), ts, method, reltol=rtol, abstol=atol)
        return SolveResult(from_julia_columns(Y), int(nf), int(nacc), int(nrej))

    def rk_integral(self, spec, z0, t0, t1, order, rtol=1e-8, atol=1e-8):
        order = _order(order)
        f = julia_dynamics(self.jl, spec)
        r = _call(self.jl.rk_integral, f, to_julia_columns(z0), float(t0), float(t1), order, reltol=rtol, abstol=atol)
        return np.asarray(r)
