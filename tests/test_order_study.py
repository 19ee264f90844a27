"""The Fig. 2 order study: the extra tableaux have their orders, order-m solvers are exact on
degree-≤m trajectories, and the study runs end to end on a tiny grid."""

import csv
import os

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import taynode as tn
from taynode.cli import main
from taynode.studies import order


def _coeffs(degree, dim=3, seed=0):
    return jnp.asarray(order.random_coefficients(np.random.default_rng(seed), degree, dim, degree))


def test_polynomial_field_is_the_derivative():
    c = _coeffs(5)
    t = 0.37
    eps = 1e-6
    fd = (order.polynomial(c, t + eps) - order.polynomial(c, t - eps)) / (2 * eps)
    np.testing.assert_allclose(order.polynomial_field(t, jnp.zeros((1, 3)), c)[0], fd, rtol=1e-8)


# ralston and tsit5 are pairs of the same kind as heun and dopri5 (m̂ = m − 1); left out for time
@pytest.mark.parametrize("name", [s for s in order.DEFAULT_SOLVERS if s not in ("ralston", "tsit5")])
def test_order_m_solver_is_exact_on_degree_m_and_steps_grow_where_the_pair_stops_being_exact(name):
    spec = order.get_solver(name)
    m = spec.order
    exact_pair = min(m, order.EMBEDDED_ORDER[name])  # both formulas exact up to this degree
    count = order.make_counter(spec, tol=1e-6 if m <= 2 else 1e-12)  # low orders: keep the step count small
    # degree m: the stepped formula of order m integrates p' (degree m-1) exactly, whatever the steps
    err = float(count(_coeffs(m, seed=m))[3])
    assert err <= 1e-12, (name, err)
    # degree ≤ min(m, m̂): the error estimate vanishes, the step grows at the maximal rate
    steps_exact, _, _, err = (float(v) for v in count(_coeffs(exact_pair, seed=10 + m)))
    assert err <= 1e-12 and steps_exact <= 8, (name, steps_exact, err)
    # one degree more: the estimate is non-zero, a tight tolerance needs many more steps
    steps_more = float(count(_coeffs(exact_pair + 1, seed=20 + m))[0])
    assert steps_more > 2 * steps_exact, (name, steps_exact, steps_more)


@pytest.mark.parametrize("name,order_m", [("fehlberg45", 4)])  # euler_heun steps with Euler's b
def test_extra_tableaux_converge_at_their_order(name, order_m):
    # fixed grid on a nonlinear problem: halving h divides the error by ~2^m
    def f(t, z, args):
        return jnp.stack([1.5 * z[..., 0] - z[..., 0] * z[..., 1], -3.0 * z[..., 1] + z[..., 0] * z[..., 1]], -1)

    z0 = jnp.array([[1.0, 1.0]])
    rhs = lambda t, y: np.asarray(f(t, jnp.asarray(y)[None], None)[0])  # noqa: E731
    ref = solve_ivp(rhs, (0.0, 1.0), [1.0, 1.0], method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
    spec = order.get_solver(name)
    errs = [float(jnp.max(jnp.abs(tn.solve(f, z0, solver=spec, steps=n).z1 - ref))) for n in (64, 128)]
    assert abs(np.log2(errs[0] / errs[1]) - order_m) < 0.3, errs


def test_study_on_a_tiny_grid(tmp_path):
    cfg = order.OrderConfig(degrees=(1, 2, 3, 4), solvers=("heun", "bosh3"), dim=2, trajectories=2, tol=1e-8)
    summary = order.run(cfg, str(tmp_path))
    info = summary["solvers"]
    # heun (2 with embedded Euler) leaves the exact regime at K = 2, bosh3 (3 with embedded 2) at 3
    assert info["heun"]["onset_K"] == 2 and info["bosh3"]["onset_K"] == 3
    assert max(x for x in info["bosh3"]["increase"][1:]) == 1.0
    with open(tmp_path / "order.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["solver"] for r in rows} == {"heun", "bosh3"}
    md = (tmp_path / "order.md").read_text()
    assert "| bosh3 | 3 | 2 |" in md
    assert (tmp_path / "fig2.png").stat().st_size > 5_000
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_and_bad_input(tmp_path, capsys):
    assert (
        main(
            [
                "study",
                "order",
                "--out",
                str(tmp_path),
                "--degrees",
                "0",
                "1",
                "--solvers",
                "dopri5",
                "--trajectories",
                "1",
                "--dim",
                "1",
            ]
        )
        == 0
    )
    assert "dopri5" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no error estimate"):
        order.OrderConfig(solvers=("rk4",))
    with pytest.raises(ValueError, match="unknown solver"):
        order.OrderConfig(solvers=("rk45",))
    with pytest.raises(ValueError, match="degrees"):
        order.OrderConfig(degrees=(3, 1))
    with pytest.raises(ValueError, match="tol"):
        order.OrderConfig(tol=0.0)
