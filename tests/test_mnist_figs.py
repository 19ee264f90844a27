"""MNIST figure studies (Figs. 5–8) on tiny synthetic data, run caching, and divergence handling."""

import json
import os

import jax
import numpy as np
import pytest

from taynode.cli import main
from taynode.studies import mnist, mnist_figs, stored_config
from taynode.train import CHECKPOINT, NonFiniteLossError, read_meta, save_checkpoint
from test_mnist_data import tiny, write_idx_set

# tiny runs: 40 images, 2 steps; R2 only in the evaluation (the fig preset evaluates R1..R4)
TINY = dict(
    epochs=1,
    batch=20,
    train_examples=40,
    train_tol=1e-3,
    eval_test_examples=20,
    eval_train_examples=20,
    eval_reg_examples=5,
    epoch_eval_examples=10,
    eval_orders=(2,),
)
TINY_ARGS = [
    "--epochs",
    "1",
    "--batch",
    "20",
    "--train-examples",
    "40",
    "--train-tol",
    "1e-3",
    "--eval-test-examples",
    "20",
    "--eval-train-examples",
    "20",
    "--eval-reg-examples",
    "5",
    "--epoch-eval-examples",
    "10",
    "--eval-orders",
    "2",
    "--lams",
    "0",
    "1",
    "--solvers",
    "heun",
    "--orders",
    "2",
    "--no-progress",
]


@pytest.fixture(scope="module", autouse=True)
def no_taylor_evaluation():
    """Skip the taylor-adaptive evaluation of dopri5 runs here (its compilation alone takes ~10 s;
    the solver is tested in test_taylor_solver.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mnist_figs, "TAYLOR_SOLVER", None)
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist_idx")
    write_idx_set(d, tiny(0, n_train=60, n_test=20), gz=False)
    return str(d)


@pytest.fixture(scope="module")
def fig5_out(tmp_path_factory, data_dir):
    """Fig. 5 with one real tiny run (R2 at λ = 1) and one stored (λ = 0, an untrained model's
    checkpoint, to save a compilation); Figs. 7 and 8 reuse them."""
    out = str(tmp_path_factory.mktemp("figs"))
    base = mnist.config("fig", data=data_dir, **TINY)
    fake_run(
        out,
        base,
        solver_nfe=21.0,
        checkpoint=True,
        status="ok",
        train_loss=2.5,
        test_loss=2.6,
        train_acc=0.1,
        test_acc=0.1,
        train_nfe=21.0,
        test_nfe=21.0,
        test_R2=5e-3,
        train_seconds=1.0,
    )
    summary = mnist_figs.fig5(out, lams=(0.0, 1.0), progress=False, data=data_dir, **TINY)
    # Fig. 6's runs (--solvers heun --orders 2: unregularized, R2 at λ = 100 and 1000), stored
    for lam, nfe, r2 in ((0.0, 40.0, 1e-3), (100.0, 35.0, 3e-4), (1000.0, 30.0, 1e-4)):
        cfg = mnist.config("fig", solver="heun", reg="r2" if lam else "none", lam=lam, data=data_dir, **TINY)
        fake_run(
            out,
            cfg,
            solver_nfe=nfe,
            status="ok",
            train_loss=1.0,
            test_loss=1.1,
            train_acc=0.5,
            test_acc=0.4,
            train_nfe=15.0,
            test_nfe=15.0 + lam / 1000,
            test_R2=r2,
            train_seconds=1.0,
        )
    return out, summary


def fake_run(root, cfg, solver_nfe, checkpoint=False, **metrics):
    """A finished run as the cache stores it (results.json and per_image_nfe.json), without
    training; ``checkpoint``: with the untrained model as its checkpoint."""
    d = mnist_figs.run_dir(root, cfg)
    os.makedirs(d)
    if checkpoint:
        save_checkpoint(os.path.join(d, CHECKPOINT), mnist.make_model(cfg), (), step=0, key=jax.random.PRNGKey(0))
    conf = json.loads(json.dumps(stored_config(cfg) | {"data": None}))
    with open(os.path.join(d, "results.json"), "w") as fh:
        json.dump(dict(config=conf) | metrics, fh)
    extra = dict(
        config=conf,
        solver_eval_tol=mnist_figs.SOLVER_EVAL_TOL,
        eval_tol=cfg.eval_tol,
        examples=mnist_figs.PER_IMAGE_EXAMPLES,
        taylor_solver=None,
        taylor_nfe=None,
        solver_nfe=solver_nfe,
        test_nfe_image=metrics["test_nfe"],
        train_nfe_image=metrics["train_nfe"],
    )
    with open(os.path.join(d, "per_image_nfe.json"), "w") as fh:
        json.dump(extra, fh)


def test_run_dir_is_keyed_by_the_whole_config():
    a = mnist.config("fig", reg="r2", lam=10.0)
    assert mnist_figs.run_dir("R", a) == mnist_figs.run_dir("R", mnist.config("fig", reg="r2", lam=10.0))
    assert mnist_figs.run_dir("R", a) != mnist_figs.run_dir("R", mnist.config("fig", reg="r2", lam=10.0, seed=1))
    assert mnist_figs.run_dir("R", a) != mnist_figs.run_dir("R", mnist.config("small", reg="r2", lam=10.0))
    assert os.path.basename(mnist_figs.run_dir("R", a)).startswith("dopri5-r2-lam10-")
    fig5, fig6 = mnist_figs.fig5_configs(), mnist_figs.fig6_configs()
    assert len(fig6) == 3 * (1 + 4 * 2) and {c.solver for c in fig6} == {"heun", "bosh3", "dopri5"}  # 2 λ per K
    # Fig. 6's dopri5 runs of λ=0 and R2 at λ = 100 and 1000 are Fig. 5's runs: trained once
    assert len(set(fig5) | set(fig6)) == len(fig5) + len(fig6) - 3
    from taynode.solvers import get

    assert [get(s).order for s in mnist_figs.FIG6_SOLVERS] == [2, 3, 5] and all(get(s).embedded for s in mnist_figs.FIG6_SOLVERS)


def test_fig5_trains_evaluates_and_reuses_runs(fig5_out, data_dir, monkeypatch, capsys):
    out, summary = fig5_out
    rows = summary["rows"]
    assert [(r["reg"], r["lam"], r["status"]) for r in rows] == [("none", 0.0, "ok"), ("r2", 1.0, "ok")]
    r = rows[1]  # the trained one
    assert r["train_loss"] > 0 and 0 <= r["test_acc"] <= 1 and r["test_R2"] > 0
    # dopri5 NFE: 3 + 6 per attempted step, for a batch and for each image alone (at most the batch's)
    assert (r["test_nfe"] - 3) % 6 == 0 and 9 <= r["test_nfe_image"] <= r["test_nfe"] and r["solver_nfe"] >= 9
    assert os.path.getsize(os.path.join(out, "fig5.png")) > 10_000
    md = open(os.path.join(out, "fig5.md")).read()
    assert md.startswith("| solver | reg | lam | status |") and md.count("\n| dopri5 |") == 2
    assert open(os.path.join(out, "fig5.csv")).read().splitlines()[0].startswith("solver,reg,lam,status")
    # the CLI reuses the finished runs (training again would fail here)
    monkeypatch.setattr(mnist, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(["study", "mnist-fig5", "--out", out, "--data", data_dir] + TINY_ARGS) == 0
    assert "figure:" in capsys.readouterr().out


def test_fig6_and_fig7_from_cached_runs(fig5_out, data_dir, monkeypatch, capsys):
    out, _ = fig5_out
    monkeypatch.setattr(mnist, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(["study", "mnist-fig6", "--out", out, "--data", data_dir] + TINY_ARGS) == 0
    s6 = json.loads(open(os.path.join(out, "fig6.json")).read())
    assert [(r["solver"], r["reg"], r["solver_nfe"]) for r in s6["rows"]] == [
        ("heun", "none", 40.0),
        ("heun", "r2", 35.0),
        ("heun", "r2", 30.0),
    ]
    assert os.path.getsize(os.path.join(out, "fig6.png")) > 10_000
    assert main(["study", "mnist-fig7", "--out", out, "--data", data_dir] + TINY_ARGS) == 0
    s7 = json.loads(open(os.path.join(out, "fig7.json")).read())
    assert len(s7["rows"]) == 5  # Fig. 5's two runs and Fig. 6's three, each once
    r2 = [r["test_R2"] for r in s7["rows"]]
    nfe = [r["test_nfe_image"] for r in s7["rows"]]
    from scipy.stats import spearmanr

    expected = spearmanr(r2, nfe).statistic
    assert s7["spearman"]["R2"] == pytest.approx(expected, nan_ok=True) and np.isnan(s7["spearman"]["R1"])
    # per solver, against its own NFE: the heun runs' R2 and NFE fall together
    assert s7["spearman_own_solver"]["heun"]["R2"] == pytest.approx(1.0)
    assert "Spearman" in capsys.readouterr().out


def test_fig8_solver_error_against_an_independent_reference(fig5_out, data_dir, monkeypatch):
    out, _ = fig5_out
    monkeypatch.setattr(mnist, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(["study", "mnist-fig8", "--out", out, "--data", data_dir, "--tols", "1e-3", "1e-7"] + TINY_ARGS) == 0
    s = json.loads(open(os.path.join(out, "fig8.json")).read())
    err = s["solver_error"]["errors"]
    assert set(err) == {"random initialisation", "unregularized", "R2, λ=1"}
    for e in err.values():
        assert e[1] <= e[0] and 0 <= e[1] < 1e-6  # a tighter tolerance is closer to the reference
    assert os.path.getsize(os.path.join(out, "fig8.png")) > 10_000


def test_diverged_training_ends_with_the_loops_message_and_keeps_the_checkpoint(tmp_path, data_dir, monkeypatch):
    """A run whose solve needs more than max_steps (R2 at a huge λ with SGD at learning rate 0.1)
    stops with "training diverged", the last good checkpoint kept; the figure cache records it."""
    cfg = mnist.config(
        "small",
        reg="r2",
        lam=1e6,
        epochs=1,
        batch=20,
        train_examples=60,
        train_tol=1e-3,
        max_steps=32,
        checkpoint_every=1,
        data=data_dir,
        eval_test_examples=20,
        eval_train_examples=20,
        eval_reg_examples=5,
        epoch_eval_examples=10,
    )
    out = mnist_figs.run_dir(str(tmp_path), cfg)
    args = [
        "train",
        "mnist",
        "--reg",
        "r2",
        "--lam",
        "1e6",
        "--epochs",
        "1",
        "--batch",
        "20",
        "--train-examples",
        "60",
        "--train-tol",
        "1e-3",
        "--max-steps",
        "32",
        "--checkpoint-every",
        "1",
        "--data",
        data_dir,
        "--eval-test-examples",
        "20",
        "--eval-train-examples",
        "20",
        "--eval-reg-examples",
        "5",
        "--epoch-eval-examples",
        "10",
        "--out",
        out,
        "--no-progress",
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    msg = str(exc.value.code)
    assert msg.startswith(
        "taynode train mnist: training diverged: the step failed (The maximum number of solver steps was reached"
    )
    step = read_meta(os.path.join(out, "checkpoint.npz"))["step"]
    assert 1 <= step < 3 and f"(step {step}) is kept" in msg and "EQX_ON_ERROR" not in msg

    # the study cache (which resumes the run, here: diverging again, as the loop raises) records
    # the divergence with the kept step, and does not retry it
    def diverge(*a, **k):
        raise NonFiniteLossError(msg.removeprefix("taynode train mnist: "))

    monkeypatch.setattr(mnist, "run", diverge)
    rec = mnist_figs.cached_run(cfg, str(tmp_path))
    assert rec["status"] == "diverged" and rec["steps_done"] == step and "training diverged" in rec["error"]
    monkeypatch.setattr(mnist, "run", lambda *a, **k: pytest.fail("a diverged run was trained again"))
    assert mnist_figs.cached_run(cfg, str(tmp_path))["status"] == "diverged"
