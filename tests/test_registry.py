"""The solver registry (every entry integrates to its order and says its NFE unit) and the
regularizer-set type (aliases, λ per regularizer, clear errors)."""

import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode import solvers
from taynode.regularizers import RK, JacobianFrobenius, Kinetic, RegularizerSet
from taynode.solver_heuristics import ErrorEstimate
from taynode.taylor_solver import jorba_zou_order

RK_ENTRIES = [n for n, s in solvers.REGISTRY.items() if s.make is not None]


def decay(t, z, args):
    return -z


@pytest.mark.parametrize("name", RK_ENTRIES)
def test_every_runge_kutta_entry_converges_at_its_order(name):
    # z' = -z, z(1) = e^-1: halving h divides the error by 2^m (fixed grid, float64)
    spec = solvers.get(name)
    n = 2 if spec.order >= 8 else 4 if spec.order >= 5 else 16  # stay above round-off
    errs = []
    for steps in (n, 2 * n):
        sol = tn.solve(decay, jnp.array([[1.0]]), (0.0, 1.0), solver=name, steps=steps)
        errs.append(abs(float(sol.z1[0, 0]) - np.exp(-1.0)))
        assert sol.nfe_unit == solvers.F_EVALS == "f evaluations"
        assert int(sol.stats["nfe"]) == spec.nfe(steps, adaptive=False)
    observed = np.log2(errs[0] / errs[1])
    # at least order m; dopri8 at 2 → 4 steps is still pre-asymptotic (9.8), so the upper bound is loose
    assert spec.order - 0.7 < observed < spec.order + 2.0, (name, observed, errs)


@pytest.mark.parametrize("name", [n for n in RK_ENTRIES if solvers.get(n).embedded])
def test_error_order_matches_the_embedded_tableau(name):
    # the embedded formula b̂ = b − b_error meets the quadrature conditions Σ b̂ c^(k-1) = 1/k up to m̂
    spec = solvers.get(name)
    tab = spec.make().tableau
    c = np.concatenate([[0.0], np.asarray(tab.c)])
    b_hat = np.asarray(tab.b_sol) - np.asarray(tab.b_error)
    for k in range(1, spec.error_order + 1):
        assert abs(np.sum(b_hat * c ** (k - 1)) - 1 / k) < 1e-12, (name, k)
    for k in range(1, spec.order + 1):
        assert abs(np.sum(np.asarray(tab.b_sol) * c ** (k - 1)) - 1 / k) < 1e-12, (name, k)


@pytest.mark.parametrize("name", ["taylor", "taylor-adaptive", "taylor12"])
def test_taylor_entries_count_coefficient_orders(name):
    tol = 1e-10
    sol = tn.solve(decay, jnp.array([[1.0]]), (0.0, 2.0), solver=name, rtol=tol, atol=tol)
    assert sol.nfe_unit == solvers.TAYLOR_ORDERS == "Taylor coefficient orders"
    assert abs(float(sol.z1[0, 0]) - np.exp(-2.0)) < 100 * tol
    nfe, steps = int(sol.stats["nfe"]), int(sol.stats["steps"])
    if name == "taylor-adaptive":  # a step of order q counts q, q from J&Z's p and p ± 4
        p = jorba_zou_order(tol)
        assert (p - 4) * steps <= nfe <= (p + 4) * steps
        assert nfe == pytest.approx(float(sol.stats["mean_order"]) * steps)
    else:
        assert nfe == (12 if name == "taylor12" else jorba_zou_order(tol)) * steps


def test_registry_lookup_and_errors():
    assert set(solvers.SOLVERS) | set(solvers.STUDY_SOLVERS) | set(solvers.TAYLOR) == set(solvers.REGISTRY)
    assert solvers.get("taylor7").order == 7 and solvers.get("taylor7").nfe_unit == solvers.TAYLOR_ORDERS
    assert solvers.get("fehlberg45").error_order == 5 and solvers.get("dopri5").error_order == 4
    spec = solvers.get("dopri5")
    assert solvers.get(spec) is spec
    with pytest.raises(ValueError, match=r"unknown solver 'rk45'; valid solvers: .*dopri5.*fehlberg45.*taylor<p>"):
        solvers.get("rk45")
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        solvers.get("taylor1")
    # the study tableaux run by name through solve, adaptively
    sol = tn.solve(decay, jnp.array([[1.0]]), (0.0, 1.0), solver="euler_heun", rtol=1e-4, atol=1e-4)
    assert abs(float(sol.z1[0, 0]) - np.exp(-1.0)) < 1e-2


def test_regularizer_set_parses_names_aliases_and_lambda():
    assert RegularizerSet.parse("none").regularizers == ()
    rnode = RegularizerSet.parse("rnode", lam=0.1)
    assert [type(r) for r in rnode] == [Kinetic, JacobianFrobenius] and rnode.lam == 0.1
    assert RegularizerSet.parse("kinetic+jacobian").names == rnode.names == ("kinetic", "jacobian")
    (r3,) = RegularizerSet.parse("R3", taylor_method="nested")
    assert isinstance(r3, RK) and r3.order == 3 and r3.method == "nested"
    # per-regularizer λ, in order or by name (any spelling parse accepts)
    assert RegularizerSet.parse(["r2", "kinetic"], lam=[1.0, 2.0]).lam == (1.0, 2.0)
    assert RegularizerSet.parse(["r2", "kinetic"], lam={"kinetic": 2.0, "r2": 1.0}).lam == (1.0, 2.0)
    # integrands first, then step regularizers: the order of Solution.integrals
    mixed = RegularizerSet.parse(["ernode", "r2"])
    assert mixed.names == ("R2", "ernode") and isinstance(mixed.step_regularizers[0], ErrorEstimate)


def test_regularizer_set_penalty_is_the_weighted_sum():
    values = {"R2": 3.0, "kinetic": 5.0}
    assert RegularizerSet.parse("r2+kinetic", lam=0.5).penalty(values) == 0.5 * (3.0 + 5.0)
    assert RegularizerSet.parse("r2+kinetic", lam=[0.5, 2.0]).penalty(values) == 0.5 * 3.0 + 2.0 * 5.0
    assert RegularizerSet.parse("none", lam=0.0).penalty({}) == 0.0
    with pytest.raises(ValueError, match="no weights"):
        RegularizerSet.parse("r2").penalty(values)


@pytest.mark.parametrize(
    "spec,lam,match",
    [
        ("speed", None, "unknown regularizer 'speed'"),
        ("r2+r2", None, "distinct names.*twice"),
        ("r2", -1.0, "λ must be >= 0, got -1"),
        ("r2", float("nan"), "λ must be >= 0, got nan"),
        ("r2", float("inf"), "λ must be finite"),
        ("r2", 0.0, "weight λ is 0"),
        ("none", 0.1, "no regularizer is chosen"),
        (["r2", "kinetic"], [1.0], "one weight λ per regularizer: 2 regularizers"),
        (["r2", "kinetic"], {"r2": 1.0}, "name exactly the regularizers"),
        (["r2"], [0.0], "R2 is chosen but its weight λ is 0"),
        (["r2"], ["a"], "weight λ of R2 must be a number"),
    ],
)
def test_regularizer_set_bad_input_names_the_problem(spec, lam, match):
    with pytest.raises(ValueError, match=match):
        RegularizerSet.parse(spec, lam=lam)
