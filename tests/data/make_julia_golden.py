"""Write tests/data/julia_golden.toml: JAX-computed reference values for the Julia backend.

    PYTHONPATH=python python tests/data/make_julia_golden.py

Read by tests/test_julia_golden.py (in Python, through the Julia backend where Julia exists) and
by julia/TayNodeJulia/test/runtests.jl (``Pkg.test()``, on any machine with
Julia). TOML because Julia's standard library parses it (no JSON package needed for the tests).

Every value is computed by taynode's JAX backend in float64 (derivatives: incremental Taylor
mode; solves: dopri8 at rtol = atol = 1e-12; R_K: dopri5 with the augmented state at 1e-11), and
the solves are cross-checked here against SciPy's DOP853 at 1e-13.
"""

from __future__ import annotations

import math
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from taynode import portable  # noqa: E402
from taynode.backends import get_backend  # noqa: E402
from taynode.models import MLPDynamics  # noqa: E402
from taynode.solve import solve  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "julia_golden.toml")
ACTIVATIONS = ("tanh", "sigmoid", "softplus", "relu", "gelu", "swish")
ALGORITHMS = ("dopri5", "tsit5", "bosh3", "Vern7", "Vern9", "VCABM")


def mlp(activation: str, seed: int) -> dict:
    model = MLPDynamics((2, 8, 8, 2), activation, key=jax.random.PRNGKey(seed), dtype=jnp.float64)
    return portable.from_model(model)


def tiny_mlp(activation: str, W1, b1, W2, b2) -> dict:
    arr = lambda a: np.asarray(a, np.float64)  # noqa: E731
    return portable.validate(
        {
            "format": portable.FORMAT,
            "kind": "mlp",
            "activation": activation,
            "weights": [arr(W1), arr(W2)],
            "biases": [arr(b1), arr(b2)],
        }
    )


def models() -> dict:
    out = {f"mlp_{a}": mlp(a, i) for i, a in enumerate(ACTIVATIONS)}
    # Pre-activations of ±800: log(1 + exp(x)) overflows there (defect 7).
    out["softplus_large"] = tiny_mlp("softplus", [[400.0, 0.0], [-400.0, 0.0]], [0.0, 0.0], [[1e-3, 2e-3, 0.0]], [0.0])
    # A pre-activation exactly 0 at z = 0, t = 0: x^3 on a Taylor1 with a zero leading coefficient (defect 7).
    out["gelu_zero"] = tiny_mlp("gelu", [[1.0, 0.5], [0.7, -0.3]], [0.0, 0.2], [[0.6, -0.4, 0.1]], [0.05])
    return out


def spec_of(name: str, mods: dict) -> dict:
    return mods[name] if name in mods else portable.problem(name)


def derivative_cases(mods):
    cases = [(f"mlp_{a}", [[0.5, -0.2], [0.1, 0.3]], 0.3, 6) for a in ACTIVATIONS]
    cases += [
        ("softplus_large", [[2.0], [-2.0]], 0.0, 4),
        ("gelu_zero", [[0.0]], 0.0, 5),
        ("quadratic", [[0.3, -0.5], [0.7, 0.2]], 0.0, 6),
        ("quadratic", [[0.5, -0.3]], 0.0, 25),  # K > 20: Int factorial overflows (defect 6)
        ("lotka_volterra", [[1.0, 0.5]], 0.0, 6),
        ("van_der_pol", [[0.0, 1.0], [2.0, -0.5]], 0.0, 6),
        ("time_linear", [[1.3, -0.4]], 0.7, 5),
    ]
    jaxb = get_backend("jax")
    out = []
    for name, z, t, K in cases:
        d = jaxb.derivatives(spec_of(name, mods), np.array(z), t, K)
        out.append(dict(dynamics=name, z=z, t=t, order=K, expected=d.tolist()))
    return out


def solve_cases(mods):
    cases = [
        ("lotka_volterra", [[1.0, 1.0]], [0.0, 1.0, 2.0, 3.0]),
        ("van_der_pol", [[2.0, 0.0], [0.5, 0.5]], [0.0, 1.5, 3.0]),
        ("time_linear", [[1.3, -0.4]], [1.0, 0.5, 0.0]),  # backward in time
        ("mlp_tanh", [[0.5, -0.2], [0.1, 0.3]], [0.0, 0.5, 1.0]),
        ("mlp_softplus", [[0.5, -0.2], [0.1, 0.3]], [1.0, 0.0]),  # backward in time
    ]
    out = []
    for name, z0, ts in cases:
        spec = spec_of(name, mods)
        sol = solve(
            portable.jax_field(spec), jnp.asarray(z0), np.asarray(ts), solver="dopri8", rtol=1e-12, atol=1e-12, max_steps=100_000
        )
        ys = np.asarray(sol.ys)
        f = portable.numpy_field(spec)
        shape = np.shape(z0)
        ref = solve_ivp(
            lambda t, y: f(t, y.reshape(shape)).ravel(),
            (ts[0], ts[-1]),
            np.ravel(z0),
            method="DOP853",
            t_eval=ts,
            rtol=1e-13,
            atol=1e-13,
        ).y.T.reshape((len(ts),) + shape)
        assert np.max(np.abs(ys - ref)) < 1e-9, (name, np.max(np.abs(ys - ref)))
        out.append(dict(dynamics=name, z0=z0, ts=ts, algorithms=list(ALGORITHMS), tol=1e-10, accept=1e-6, expected=ys.tolist()))
    return out


def rk_cases(mods):
    cases = [(f"mlp_{a}", [[0.5, -0.2], [0.1, 0.3]], 0.0, 1.0, K) for a in ACTIVATIONS for K in (2, 3)]
    cases += [
        ("quadratic", [[0.3, -0.5]], 0.0, 0.8, 2),
        ("quadratic", [[0.3, -0.5]], 0.8, 0.0, 2),
        ("softplus_large", [[2.0]], 0.0, 0.5, 2),
    ]
    jaxb = get_backend("jax")
    out = []
    for name, z0, t0, t1, K in cases:
        r = jaxb.rk_integral(spec_of(name, mods), np.array(z0), t0, t1, K, rtol=1e-11, atol=1e-11)
        out.append(dict(dynamics=name, z0=z0, t0=t0, t1=t1, order=K, tol=1e-10, rtol=1e-6, expected=np.asarray(r).tolist()))
    return out


# ---- a small TOML writer (floats as repr: shortest round-trip) ----------------------------------


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("golden values must be finite")
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    raise TypeError(type(v))


def _table(header: str, d: dict) -> str:
    return header + "\n" + "".join(f"{k} = {_val(v)}\n" for k, v in d.items()) + "\n"


def main():
    mods = models()
    parts = ["# Generated by tests/data/make_julia_golden.py (JAX, float64): do not edit by hand.\n\n"]
    for name, spec in mods.items():
        parts.append(
            _table(
                "[[mlp]]",
                dict(
                    name=name,
                    activation=spec["activation"],
                    weights=[W.tolist() for W in spec["weights"]],
                    biases=[b.tolist() for b in spec["biases"]],
                ),
            )
        )
    for case in derivative_cases(mods):
        parts.append(_table("[[derivatives]]", case))
    for case in solve_cases(mods):
        parts.append(_table("[[solve]]", case))
    for case in rk_cases(mods):
        parts.append(_table("[[rk]]", case))
    # Blow-up at t = 1: every algorithm must report failure, not return the partial solution.
    parts.append(_table("[[failing]]", dict(dynamics="quadratic", z0=[[1.0]], t0=0.0, t1=2.0, order=2)))
    with open(OUT, "w") as fh:
        fh.write("".join(parts))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
