"""The cross-implementation harness on one problem and one tolerance, and the portable neural
ODE rebuilt in NumPy, torch and JAX."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode import compare, portable
from taynode.cli import main
from taynode.models import MLPDynamics


def _torch():
    try:
        import torch
        import torchdiffeq  # noqa: F401
    except ImportError as e:
        pytest.skip(f"torch/torchdiffeq not installed ({e}): pip install 'taynode[torch]'")
    return torch


@pytest.mark.parametrize("name", ["lotka_volterra", "van_der_pol", "two_body"])
def test_problem_definitions_agree_across_namespaces(name):
    p = compare.standard_problems()[name]
    z = np.random.default_rng(0).normal(size=(3, p.z0.shape[1])) + 2.0
    np.testing.assert_allclose(p.numpy_f(0.3, z), p.jax_f(0.3, jnp.asarray(z)), rtol=1e-14)
    if p.spec is not None:  # the named problems: the same as taynode.problems (via portable)
        np.testing.assert_allclose(portable.jax_field(p.spec)(0.3, jnp.asarray(z)), p.numpy_f(0.3, z), rtol=1e-14)


@pytest.mark.parametrize("act", sorted(portable._NP_ACTIVATIONS))
def test_portable_mlp_same_in_numpy_torch_and_jax(act):
    torch = _torch()
    model = MLPDynamics((3, 16, 16, 3), act, key=jax.random.PRNGKey(3), dtype=jnp.float64)
    spec = portable.from_model(model)
    z = np.random.default_rng(1).normal(size=(5, 3)) * 3.0  # wide inputs: softplus/gelu tails matter
    want = np.asarray(model(0.7, jnp.asarray(z)))
    np.testing.assert_allclose(portable.numpy_field(spec)(0.7, z), want, rtol=1e-12, atol=1e-12)
    assert compare.torch_field is portable.torch_field  # the old import path still works
    got = portable.torch_field(spec)(0.7, torch.as_tensor(z, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_harness_one_problem_one_tolerance(tmp_path, capsys):
    impls = ("taynode", "scipy", "torchdiffeq", "julia")
    cfg = compare.CompareConfig(
        problems=("lotka_volterra",),
        tols=(1e-6,),
        implementations=impls,
        repeats=1,
        cost_orders=(8,),
        methods={"taynode": ("dopri5", "taylor"), "scipy": ("RK45",), "torchdiffeq": ("dopri5",)},
    )
    s = compare.run(cfg, str(tmp_path))
    rows = {(r["implementation"], r["method"]): r for r in s["rows"]}
    for key in [("taynode", "dopri5"), ("taynode", "taylor"), ("scipy", "RK45")]:
        r = rows[key]
        assert 0 < r["error"] < 1e-3 and r["nfe"] > 50 and r["time_s"] > 0, r
    assert rows[("taynode", "taylor")]["nfe_unit"] == "coefficient orders"
    # taynode's dopri5 and SciPy's RK45 are the same kind of method at the same tolerance
    assert 0.5 < rows[("taynode", "dopri5")]["nfe"] / rows[("scipy", "RK45")]["nfe"] < 2
    printed = capsys.readouterr().out
    md = (tmp_path / "compare.md").read_text()
    if "julia" in s["skipped"]:
        assert "skipped julia" in printed and "julia:" in md
    if "torchdiffeq" in s["skipped"]:
        print(f"torchdiffeq part skipped: {s['skipped']['torchdiffeq']}")
    else:
        r = rows[("torchdiffeq", "dopri5")]
        assert 0 < r["error"] < 1e-3 and r["steps"] is None
        # the counting wrapper sees what diffrax's formula counts, up to the initial-step rule
        assert abs(r["nfe"] - rows[("taynode", "dopri5")]["nfe"]) <= 0.1 * r["nfe"]
    with open(tmp_path / "compare.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(s["rows"])
    assert "taynode taylor | " in (tmp_path / "summary.md").read_text()
    with open(tmp_path / "results.json") as fh:  # the tables can be rebuilt from the JSON
        assert compare.markdown(json.load(fh)) == md
    assert "p=8" in md and (tmp_path / "work_precision.png").stat().st_size > 10_000
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_and_bad_input(tmp_path, capsys):
    assert (
        main(
            [
                "compare-solvers",
                "--problems",
                "van_der_pol",
                "--tols",
                "1e-5",
                "--implementations",
                "scipy",
                "--repeats",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "DOP853" in out and "LSODA" in out
    with pytest.raises(ValueError, match="unknown problem"):
        compare.CompareConfig(problems=("lorenz",))
    with pytest.raises(ValueError, match="tolerances"):
        compare.CompareConfig(tols=(1e-14,))
    with pytest.raises(ValueError, match="unknown implementation"):
        compare.CompareConfig(implementations=("matlab",))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        compare.run(
            compare.CompareConfig(problems=("neural_ode",), implementations=("scipy",), model=str(tmp_path / "nope.npz")),
            str(tmp_path),
        )


def test_availability_reports_an_unexpected_check_failure(monkeypatch):
    from taynode.compare import runners

    def broken():
        raise RuntimeError("boom")

    def absent():
        raise runners.Unavailable("not here")

    monkeypatch.setitem(runners.RUNNERS, "scipy", runners.Runner("scipy", ("RK45",), runners.run_scipy, broken))
    monkeypatch.setitem(
        runners.RUNNERS, "torchdiffeq", runners.Runner("torchdiffeq", ("dopri5",), runners.run_torchdiffeq, absent)
    )
    got, skipped = compare.availability(("taynode", "scipy", "torchdiffeq"))
    assert list(got) == ["taynode"]
    assert skipped == {"scipy": "its availability check failed unexpectedly: RuntimeError: boom", "torchdiffeq": "not here"}
    with pytest.raises(ValueError, match="unknown implementation 'matlab'"):
        compare.availability(("taynode", "matlab"))


def test_run_does_not_change_the_callers_x64_setting(tmp_path):
    cfg = compare.CompareConfig(
        problems=("lotka_volterra",),
        tols=(1e-10,),
        implementations=("taynode",),
        repeats=1,
        cost_orders=(),
        methods={"taynode": ("dopri5",)},
    )
    with jax.enable_x64(False):
        s = compare.run(cfg, str(tmp_path), log=lambda *a: None)
        assert not jax.config.jax_enable_x64
        assert jnp.zeros(1).dtype == jnp.float32
    (row,) = s["rows"]
    assert row["error"] < 1e-8, row  # float64 inside: float32 cannot get within 1e-8 of z(10) ≈ 1


@pytest.mark.slow
def test_neural_ode_is_the_toy_studys_model():
    """compare trains its neural ODE with taynode.train; the weights equal the toy study's loop's."""
    from taynode.studies import toy

    want, _ = toy.train(toy.ToyConfig(hidden=32, iters=3, seed=1), 1.0, progress=False)
    got = compare.neural_ode.train_model(iters=3, seed=1)
    for a, b in zip(portable.from_model(got)["weights"], portable.from_model(want)["weights"]):
        np.testing.assert_array_equal(a, b)


NO_TORCH = """
import importlib.abc, sys


class NoTorch(importlib.abc.MetaPathFinder):  # `import torch` raises as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchdiffeq"):
            raise ModuleNotFoundError(f"No module named {name!r} (made unimportable by the test)")


# (not sys.modules["torch"] = None: libraries that look torch up there, e.g. wadler_lindig, break on None)
sys.meta_path.insert(0, NoTorch())
from taynode.cli import main
status = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(status)
"""


def test_neural_ode_without_torchdiffeq_does_not_need_torch(tmp_path):
    """`compare-solvers --problems neural_ode --implementations taynode scipy` with torch made
    unimportable: the torch field is built only when torchdiffeq is asked for."""
    import subprocess
    import sys

    model = MLPDynamics((2, 8, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    portable.save(portable.from_model(model), str(tmp_path / "m.npz"))
    argv = ["compare-solvers", "--problems", "neural_ode", "--implementations", "taynode", "scipy", "--tols", "1e-5"]
    argv += ["--repeats", "1", "--model", str(tmp_path / "m.npz"), "--out", str(tmp_path / "out")]
    r = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / "out" / "compare.csv") as fh:
        impls = {row["implementation"] for row in csv.DictReader(fh)}
    assert impls == {"taynode", "scipy"}
    problem = compare.neural_ode_problem(portable.from_model(model), torch=False)
    assert problem.torch_f is None and problem.numpy_f is not None
