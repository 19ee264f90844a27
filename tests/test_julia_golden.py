"""Golden values for the Julia backend (tests/data/julia_golden.toml, from make_julia_golden.py).

Without Julia: the stored values are checked against independent truth (closed forms, SciPy
DOP853, a different Taylor method), so runtests.jl compares Julia with something right. With
Julia: the same values through the Julia backend (skipped only where Julia is absent).
"""

import math
import os

import numpy as np
import pytest
import tomllib
from scipy.integrate import solve_ivp

from julia_support import julia_backend_or_skip
from taynode import portable
from taynode.taylor import derivatives

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "julia_golden.toml")
with open(PATH, "rb") as fh:
    GOLDEN = tomllib.load(fh)
MODELS = {
    m["name"]: portable.validate(
        {
            "format": portable.FORMAT,
            "kind": "mlp",
            "activation": m["activation"],
            "weights": [np.array(W) for W in m["weights"]],
            "biases": [np.array(b) for b in m["biases"]],
        }
    )
    for m in GOLDEN["mlp"]
}


def spec_of(name):
    return MODELS[name] if name in MODELS else portable.problem(name)


def _id(c):
    return f"{c['dynamics']}-K{c.get('order', '')}"


def test_golden_covers_every_activation_problem_and_algorithm():
    from taynode import problems
    from taynode.backends.julia_backend import ALGORITHMS

    acts = {MODELS[c["dynamics"]]["activation"] for c in GOLDEN["derivatives"] if c["dynamics"] in MODELS}
    assert acts == set(portable._NP_ACTIVATIONS)
    assert {c["dynamics"] for c in GOLDEN["derivatives"]} >= set(problems.PROBLEMS)
    assert {a for c in GOLDEN["solve"] for a in c["algorithms"]} | {"DP5", "Tsit5", "BS3"} == set(ALGORITHMS)
    assert any(c["ts"][0] > c["ts"][-1] for c in GOLDEN["solve"]) and any(c["t0"] > c["t1"] for c in GOLDEN["rk"])
    assert max(c["order"] for c in GOLDEN["derivatives"]) > 20 and GOLDEN["failing"]


# ---- the stored values are right (no Julia needed) --------------------------------------------


@pytest.mark.parametrize("c", GOLDEN["derivatives"], ids=_id)
def test_golden_derivatives_against_independent_truth(c):
    z, t, K = np.array(c["z"]), c["t"], c["order"]
    got = np.array(c["expected"])
    if c["dynamics"] == "quadratic":
        want = np.stack([math.factorial(k) * z ** (k + 1) for k in range(1, K + 1)])
    elif c["dynamics"] == "time_linear":  # P_0 = 1, P_{k+1} = P_k' + t P_k
        P, X, want = np.polynomial.Polynomial([1.0]), np.polynomial.Polynomial([0.0, 1.0]), []
        for _ in range(K):
            P = P.deriv() + X * P
            want.append(z * P(t))
        want = np.stack(want)
    else:  # nested JVPs: a different method from the incremental one that wrote the file
        want = np.stack(
            [np.asarray(d) for d in derivatives(portable.jax_field(spec_of(c["dynamics"])), t, z, None, K, method="nested")]
        )
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", GOLDEN["solve"], ids=_id)
def test_golden_solves_against_scipy(c):
    f = portable.numpy_field(spec_of(c["dynamics"]))
    z0, ts = np.array(c["z0"]), c["ts"]
    ref = solve_ivp(
        lambda t, y: f(t, y.reshape(z0.shape)).ravel(),
        (ts[0], ts[-1]),
        z0.ravel(),
        method="DOP853",
        t_eval=ts,
        rtol=1e-13,
        atol=1e-13,
    ).y.T.reshape((len(ts),) + z0.shape)
    np.testing.assert_allclose(np.array(c["expected"]), ref, rtol=1e-9, atol=1e-10)


def test_golden_rk_against_closed_forms():
    # dz/dt = z²: dᴷz/dtᴷ = K! z^{K+1}; forward z = z0/(1 − z0 t), backward from t0 = T: z0/(1 + z0 s).
    for c in (c for c in GOLDEN["rk"] if c["dynamics"] == "quadratic"):
        z0, K = np.array(c["z0"]), c["order"]
        T, n = abs(c["t1"] - c["t0"]), 2 * K + 1
        if c["t1"] > c["t0"]:
            want = math.factorial(K) ** 2 * z0**n * ((1 - z0 * T) ** (-n) - 1) / n
        else:
            want = math.factorial(K) ** 2 * z0**n * (1 - (1 + z0 * T) ** (-n)) / n
        np.testing.assert_allclose(c["expected"], want.mean(1), rtol=1e-8)


# ---- through the Julia backend, where Julia is --------------------------------------------------


@pytest.fixture(scope="module")
def julia():
    return julia_backend_or_skip()


@pytest.mark.parametrize("c", GOLDEN["derivatives"], ids=_id)
def test_julia_derivatives(julia, c):
    got = julia.derivatives(spec_of(c["dynamics"]), np.array(c["z"]), c["t"], c["order"])
    np.testing.assert_allclose(got, np.array(c["expected"]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", GOLDEN["solve"], ids=_id)
def test_julia_solves(julia, c):
    for alg in c["algorithms"]:
        res = julia.solve(spec_of(c["dynamics"]), np.array(c["z0"]), np.array(c["ts"]), alg, rtol=c["tol"], atol=c["tol"])
        np.testing.assert_allclose(res.ys, np.array(c["expected"]), rtol=c["accept"], atol=c["accept"], err_msg=alg)


@pytest.mark.parametrize("c", GOLDEN["rk"], ids=_id)
def test_julia_rk(julia, c):
    r = julia.rk_integral(spec_of(c["dynamics"]), np.array(c["z0"]), c["t0"], c["t1"], c["order"], rtol=c["tol"], atol=c["tol"])
    np.testing.assert_allclose(r, c["expected"], rtol=c["rtol"])


def test_julia_failed_solve_raises(julia):
    from taynode.backends.julia_backend import JuliaSolveError

    for c in GOLDEN["failing"]:
        with pytest.raises(JuliaSolveError, match="retcode"):
            julia.solve(spec_of(c["dynamics"]), np.array(c["z0"]), np.array([c["t0"], c["t1"]]))
        with pytest.raises(JuliaSolveError, match="retcode"):
            julia.rk_integral(spec_of(c["dynamics"]), np.array(c["z0"]), c["t0"], c["t1"], c["order"])
