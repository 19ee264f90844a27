"""The registry as data (issue #23): a new explicit Runge–Kutta tableau is one entry, and its
stages, FSAL and order come from diffrax, not from a copy."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode.ode.registry import REGISTRY, SolverSpec

# Ralston's third-order method (Ralston 1962), the midpoint rule (order 2) as the embedded formula.
_ralston3 = dfx.ButcherTableau(
    c=np.array([0.5, 0.75]),
    a_lower=(np.array([0.5]), np.array([0.0, 0.75])),
    b_sol=np.array([2 / 9, 1 / 3, 4 / 9]),
    b_error=np.array([2 / 9, 1 / 3, 4 / 9]) - np.array([0.0, 1.0, 0.0]),  # minus the midpoint rule (order 2)
)


class Ralston3(dfx.AbstractERK):
    """Ralston's 3rd-order method, three stages, the midpoint rule as its error estimate."""

    tableau = _ralston3
    interpolation_cls = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 3


def _counting(f):
    calls = [0]

    def bump(t):
        calls[0] += 1

    def g(t, z, args):
        jax.debug.callback(bump, t)
        return f(t, z, args)

    return g, calls


def test_a_new_tableau_is_one_entry_and_counts_its_evaluations():
    spec = SolverSpec("ralston3", Ralston3, error_order=2)  # the one line a new solver needs
    assert (spec.order, spec.stages, spec.fsal, spec.embedded) == (3, 3, False, True)
    exact = np.exp(-1.0)
    for steps, tol in ((8, None), (None, 1e-8)):
        f, calls = _counting(lambda t, z, a: -z)
        kw = dict(steps=steps) if steps else dict(rtol=tol, atol=tol)
        sol = tn.solve(f, jnp.array([[1.0]]), (0.0, 1.0), solver=spec, **kw)
        jax.block_until_ready(sol.ys)
        assert int(sol.stats["nfe"]) == calls[0] == spec.nfe(int(sol.stats["attempted"]), adaptive=steps is None)
        if steps:  # 3rd order: 8 steps of h = 1/8 give an error of about h³/4! · e^-1
            assert abs(float(sol.z1[0, 0]) - exact) < 1e-4
        else:
            assert abs(float(sol.z1[0, 0]) - exact) < 1e-6


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.kind == "runge-kutta"])
def test_stages_and_fsal_come_from_the_tableau(name):
    spec = REGISTRY[name]
    tab = spec.make().tableau if name != "euler" else None
    if tab is None:
        assert (spec.stages, spec.fsal, spec.embedded) == (1, False, False)
        return
    assert spec.stages == len(tab.c) + 1 == tab.num_stages
    # FSAL: the last stage is evaluated at t1 with the solution's weights (diffrax's definition)
    fsal = bool(np.isclose(tab.c[-1], 1.0) and np.allclose(tab.a_lower[-1], tab.b_sol[:-1]) and tab.b_sol[-1] == 0)
    assert spec.fsal == fsal == tab.fsal
    assert spec.embedded == bool(np.any(np.asarray(tab.b_error) != 0))


def test_an_entry_without_a_tableau_or_with_a_wrong_error_order_is_refused():
    with pytest.raises(ValueError, match="not an explicit Runge–Kutta solver with a tableau"):
        SolverSpec("implicit", dfx.ImplicitEuler)
    with pytest.raises(ValueError, match="error_order exactly when the tableau has an error estimate"):
        SolverSpec("dopri5-no-order", dfx.Dopri5)
