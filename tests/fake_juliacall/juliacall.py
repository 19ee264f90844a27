"""A stand-in for juliacall, for tests of the Julia bridge on machines without Julia.

It mimics what juliacall hands Python: ``newmodule(...).seval("using TayNodeJulia")``, Julia
functions returning column-major (Fortran-ordered) NumPy-compatible arrays and Python tuples,
and Julia exceptions as ``JuliaError`` whose ``str`` is Julia's ``showerror`` text. The numbers
come from taynode's JAX backend and SciPy, so the tests check the bridge's plumbing (layouts,
unpacking, error mapping), never Julia's numerics.

``FAKE_JULIACALL_MODE`` (read at import) picks the behaviour: ``ok``; ``load_error`` (``using
TayNodeJulia`` fails, as when it does not precompile); ``pkg_error`` (juliapkg's Pkg step fails,
as offline); ``exception`` (a plain Exception at import, as juliacall raises for bad settings).
"""

import os
import subprocess
import sys

import numpy as np

MODE = os.environ.get("FAKE_JULIACALL_MODE", "ok")
# What the environment looked like when "Julia started": the tests read these back.
TORCH_BEFORE = "torch" in sys.modules
JULIAPKG_EXE = os.environ.get("PYTHON_JULIAPKG_EXE")
CALLS = []  # (function name, args) of every call into "Julia"

if MODE == "pkg_error":
    raise subprocess.CalledProcessError(1, ["julia", "-e", "import Pkg; Pkg.Registry.update()"])
if MODE == "exception":
    raise Exception("Both PYTHON_JULIACALL_PROJECT and PYTHON_JULIACALL_EXE must be set together, not only one of them.")


class JuliaError(Exception):
    def __str__(self):
        return self.args[0]


class _Dynamics:
    def __init__(self, spec):
        self.spec = spec


def _check_columns(Z):
    # juliacall passes a Fortran-ordered float64 array to Julia as a Matrix without copying.
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float64 and Z.ndim == 2, Z
    assert Z.flags.f_contiguous, "the bridge must pass a column-major (d, batch) view"


def _julia_layout(a):
    """(n, batch, d) → the d × batch × n array Julia would return (Fortran order)."""
    return np.asfortranarray(np.asarray(a, np.float64).transpose(2, 1, 0))


class _TayNodeJulia:
    ACTIVATIONS = ("tanh", "sigmoid", "softplus", "relu", "gelu", "swish")
    PROBLEMS = ("quadratic", "lotka_volterra", "van_der_pol", "time_linear")

    def __init__(self):
        self.last_result = None

    def _jax(self):
        from taynode.backends import get_backend

        return get_backend("jax")

    def MLP(self, activation, *arrays):
        from taynode import portable

        CALLS.append(("MLP", (activation,) + arrays))
        if activation not in self.ACTIVATIONS:
            raise JuliaError(f"ArgumentError: unknown activation {activation}")
        Ws, bs = list(arrays[0::2]), list(arrays[1::2])
        return _Dynamics({"format": portable.FORMAT, "kind": "mlp", "activation": activation, "weights": Ws, "biases": bs})

    def problem(self, name):
        from taynode import portable

        CALLS.append(("problem", (name,)))
        if name not in self.PROBLEMS:
            raise JuliaError(f"ArgumentError: unknown problem {name}")
        return _Dynamics(portable.problem(name))

    def taylor_derivatives(self, f, Z, t, order):
        CALLS.append(("taylor_derivatives", (f, Z, t, order)))
        _check_columns(Z)
        if order < 1:
            raise JuliaError(f"ArgumentError: order K must be an integer >= 1, got {order}")
        self.last_result = _julia_layout(self._jax().derivatives(f.spec, Z.T, t, order))
        return self.last_result

    def solve_ode(self, f, Z0, ts, alg, reltol=1e-8, abstol=1e-8):
        from scipy.integrate import solve_ivp

        from taynode import portable

        CALLS.append(("solve_ode", (f, Z0, ts, alg, reltol, abstol)))
        _check_columns(Z0)
        field = portable.numpy_field(f.spec)
        shape = Z0.T.shape
        out = solve_ivp(
            lambda t, y: field(t, y.reshape(shape)).ravel(),
            (ts[0], ts[-1]),
            Z0.T.ravel(),
            method="RK45",
            t_eval=ts,
            rtol=reltol,
            atol=abstol,
        )
        if out.status != 0:
            raise JuliaError(
                f"SolveFailed: {alg} stopped with retcode DtLessThanMin (last time reached {out.t[-1]}, "
                f"asked for [{ts[0]}, {ts[-1]}]); OrdinaryDiffEq returned a partial solution."
            )
        self.last_result = _julia_layout(out.y.T.reshape((len(ts),) + shape))
        return (self.last_result, int(out.nfev), int(out.t.size), 0)

    def rk_integral(self, f, Z0, t0, t1, order, reltol=1e-8, abstol=1e-8):
        CALLS.append(("rk_integral", (f, Z0, t0, t1, order, reltol, abstol)))
        _check_columns(Z0)
        self.last_result = np.asarray(self._jax().rk_integral(f.spec, Z0.T, t0, t1, order, rtol=reltol, atol=abstol))
        return self.last_result


class _Module:
    def seval(self, code):
        assert code == "using TayNodeJulia", code
        if MODE == "load_error":
            raise JuliaError(
                "The following 1 direct dependency failed to precompile:\n\nTayNodeJulia\n\n"
                "Failed to precompile TayNodeJulia [11b3b2ad-680b-4e88-b9c7-3e00e15c590b]: "
                "UndefVarError: `successful_retcode` not defined"
            )
        self.TayNodeJulia = _TayNodeJulia()
        return None


def newmodule(name):
    return _Module()
