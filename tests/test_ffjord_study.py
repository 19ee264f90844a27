"""The FFJORD Table 2 study: the command end to end (tiny), evaluation, divergence handling."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode.cli import main
from taynode.studies import cast, ffjord
from taynode.train import CHECKPOINT, load_checkpoint, read_log, read_meta


def test_table_command_end_to_end_and_evaluation(tmp_path, capsys):
    out = tmp_path / "ff"
    assert (
        main(
            ["study", "ffjord-table2", "--preset", "tiny", "--regs", "none", "--fixed-steps", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    assert "| adaptive (dopri5) | unregularized |" in capsys.readouterr().out
    s = json.loads((out / "results.json").read_text())
    (row,) = s["rows"]
    assert row["status"] == "ok" and row["steps_done"] == ffjord.PRESETS["tiny"].iters
    assert (out / "densities.png").stat().st_size > 1000
    assert (out / "table.csv").read_text().splitlines()[0].startswith("training,regularization,status")
    # the table's NLL and NFE are those of a direct dopri5 solve of the trained flow (exact trace, float64)
    cfg = ffjord.PRESETS["tiny"]
    model, _, _ = load_checkpoint(str(out / "runs" / "adaptive_none" / CHECKPOINT), ffjord.make_cnf(cfg, 2))
    cnf = cast(ffjord.replace_trace(model, "exact"), jnp.float64)
    _, test_x = ffjord.load_data(cfg)
    r = cnf.forward(jnp.asarray(test_x), rtol=cfg.eval_tol, atol=cfg.eval_tol)
    np.testing.assert_allclose(row["nll"], -float(jnp.mean(r.log_prob)), rtol=1e-10)
    assert row["nfe"] == int(r.stats["nfe"])
    assert all(np.isfinite(row[k]) and row[k] > 0 for k in ("R2", "jacobian", "kinetic"))


def test_a_diverging_fixed_grid_run_is_reported_and_keeps_its_last_checkpoint(tmp_path):
    cfg = ffjord.preset("tiny", checkpoint_every=1, iters=3)
    train_x, _ = ffjord.load_data(cfg)
    # poison exactly the second step's batch (ShuffledBatches' first-epoch permutation)
    perm = np.random.default_rng([cfg.seed, 0]).permutation(len(train_x))
    train_x = train_x.copy()
    train_x[perm[cfg.batch : 2 * cfg.batch]] = np.nan
    t = ffjord.train_one(cfg, "r2", 2, train_x, tmp_path / "run", progress=False)
    assert t["status"] == "diverged" and t["model"] is None
    assert t["steps_done"] == 1 and read_meta(str(tmp_path / "run" / CHECKPOINT))["step"] == 1
    s = {
        "config": vars(cfg) | {},
        "rows": [
            dict(
                training="fixed grid (rk4, 2 steps)",
                regularization="r2",
                status="diverged",
                steps_done=1,
                train_seconds=1.0,
                step_seconds=float("nan"),
                nll=float("nan"),
                nfe=float("nan"),
                R2=float("nan"),
                jacobian=float("nan"),
                kinetic=float("nan"),
            )
        ],
    }
    assert "diverged (NaN)" in ffjord.markdown_table(s) and "| NaN |" in ffjord.markdown_table(s)


def test_miniboone_preset_on_a_synthetic_file(tmp_path):
    """The tabular path: MAF-format data.npy → ConcatSquash softplus flow → Hutchinson evaluation."""
    np.save(tmp_path / "data.npy", np.random.default_rng(0).standard_normal((300, 43)))
    cfg = ffjord.preset(
        "miniboone",
        data=str(tmp_path),
        hidden=(16,),
        batch=32,
        iters=2,
        eval_examples=20,
        eval_reg_examples=10,
        eval_batch=20,
        eval_tol=1e-5,
        checkpoint_every=2,
    )
    train_x, test_x = ffjord.load_data(cfg)
    assert train_x.shape == (243, 43) and train_x.dtype == np.float32 and test_x.shape == (20, 43)
    t = ffjord.train_one(cfg, "rnode", None, train_x, tmp_path / "run", progress=False)
    assert t["status"] == "ok" and isinstance(t["model"].dynamics, ffjord.ConcatSquashMLP)
    m = ffjord.evaluate(t["model"], cfg, test_x)
    assert all(np.isfinite(m[k]) for k in ("nll", "nfe", "R2", "jacobian", "kinetic")) and m["nfe"] >= 9


def _write_idx_mnist(folder, n_train=40, n_test=12, seed=0):
    """A tiny MNIST in the four IDX files (checked by their headers, not by a SHA-256)."""
    from taynode.data import mnist

    rng = np.random.default_rng(seed)
    arrays = dict(
        x_train=rng.integers(0, 256, (n_train, 28, 28)),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 28, 28)),
        y_test=rng.integers(0, 10, n_test),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for k, stem in mnist.IDX_FILES.items():
        a = arrays[k].astype(np.uint8)
        (folder / stem).write_bytes(
            bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape) + a.tobytes()
        )
    return arrays


def test_mnist_images_downsample_by_rounded_block_means():
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    y = ffjord.mnist_images(x, 14)
    assert y.shape == (3, 1, 14, 14) and y.dtype == np.uint8
    ref = [
        [[round(float(np.mean(x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]))) for j in range(14)] for i in range(14)]
        for n in range(3)
    ]
    np.testing.assert_array_equal(y[:, 0], np.array(ref))
    np.testing.assert_array_equal(ffjord.mnist_images(x, 28)[:, 0], x)
    full = np.full((1, 28, 28), 255, np.uint8)
    assert ffjord.mnist_images(full, 4).max() == 255 and ffjord.mnist_images(full * 0, 7).max() == 0
    with pytest.raises(ValueError, match="28, 28"):
        ffjord.mnist_images(x[:, :14], 7)
    with pytest.raises(ValueError, match="divide 28"):
        ffjord.mnist_images(x, 5)
    with pytest.raises(ValueError, match="conv"):
        ffjord.preset("mnist", arch="mlp")


def test_mnist_preset_data_path_and_bits_per_dim_of_the_identity_flow(tmp_path):
    """The preset's path on a tiny IDX MNIST: shapes; the conv flow starts as the identity (last
    layer zero), so its evaluated bits/dim is that of N(0, I) on the logit-space images, computed
    here with NumPy/SciPy from the same dequantization noise."""
    from scipy.stats import norm

    arrays = _write_idx_mnist(tmp_path / "mnist")
    cfg = ffjord.preset(
        "mnist",
        data=str(tmp_path / "mnist"),
        image_size=7,
        hidden=(2, 2),
        train_examples=30,
        eval_examples=12,
        eval_reg_examples=4,
        eval_batch=8,
    )
    train_x, test_x = ffjord.load_data(cfg)
    assert train_x.shape == (30, 1, 7, 7) and test_x.shape == (12, 1, 7, 7) and train_x.dtype == np.uint8
    np.testing.assert_array_equal(test_x, ffjord.mnist_images(arrays["x_test"].astype(np.uint8), 7))
    cnf = ffjord.make_cnf(cfg, train_x.shape[1:])
    assert isinstance(cnf.dynamics, ffjord.ConvDynamics) and not np.any(cnf.dynamics.layers[-1].weight)
    m = ffjord.evaluate(cnf, cfg, test_x)
    key = jax.random.PRNGKey(cfg.seed + 12345)
    bpd = []
    for i in range(0, 12, cfg.eval_batch):
        x = test_x[i : i + cfg.eval_batch].astype(np.float64)
        u = np.asarray(jax.random.uniform(jax.random.fold_in(key, 2 * 10**9 + i), x.shape, jnp.float64))
        s = cfg.alpha + (1 - 2 * cfg.alpha) * (x + u) / 256
        y = np.log(s / (1 - s))
        logp_v = norm.logpdf(y).sum((1, 2, 3)) + np.log((1 - 2 * cfg.alpha) / (s * (1 - s))).sum(
            (1, 2, 3)
        )  # change of variables v → y
        bpd.append(-(logp_v - 49 * np.log(256)) / (49 * np.log(2)))
    np.testing.assert_allclose(m["nll"], np.mean(np.concatenate(bpd)), rtol=1e-10)
    assert m["R2"] == 0 and m["kinetic"] == 0 and m["jacobian"] == 0


def test_mnist_preset_trains_fixed_grid_r2_and_reports_bits_per_dim(tmp_path):
    _write_idx_mnist(tmp_path / "mnist")
    # the evaluation settings of the test above, so its compiled evaluation is reused
    cfg = ffjord.preset(
        "mnist",
        data=str(tmp_path / "mnist"),
        image_size=7,
        hidden=(2, 2),
        train_examples=32,
        batch=8,
        iters=2,
        eval_examples=12,
        eval_reg_examples=4,
        eval_batch=8,
        checkpoint_every=2,
    )
    train_x, test_x = ffjord.load_data(cfg)
    t = ffjord.train_one(cfg, "r2", 2, train_x, tmp_path / "run", progress=False)
    assert t["status"] == "ok" and t["steps_done"] == 2
    log = [
        r
        for r in json.loads("[" + ",".join((tmp_path / "run" / "log.jsonl").read_text().split("\n")[:-1]) + "]")
        if r["kind"] == "step"
    ]
    assert log[-1]["nfe"] == 8 and 0 < log[-1]["nll"] < 20 and log[-1]["R2"] >= 0  # rk4 × 2 steps; the loss is bits/dim
    m = ffjord.evaluate(t["model"], cfg, test_x)
    assert np.isfinite(m["nll"]) and m["nfe"] >= 9 and m["R2"] > 0 and m["kinetic"] > 0
    row = (
        dict(training=ffjord.solver_label(2), regularization="r2", status="ok", steps_done=2, train_seconds=1.0, step_seconds=0.5)
        | m
    )
    table = ffjord.markdown_table({"config": vars(cfg), "nll_unit": "bits/dim", "rows": [row]})
    assert "test bits/dim" in table and "| fixed grid (rk4, 2 steps) | TayNODE (R₂) | 0.01 |" in table


def _tiny_digits(**kw):
    """The digits preset shrunk to seconds: 2 channels, 16 images, 4 steps, the curve every 2."""
    return ffjord.preset(
        "digits",
        **(
            dict(
                hidden=(2, 2),
                train_examples=16,
                batch=8,
                iters=4,
                eval_examples=8,
                eval_reg_examples=4,
                eval_batch=8,
                eval_tol=1e-4,
                curve_every=2,
                curve_examples=4,
                checkpoint_every=2,
            )
            | kw
        ),
    )


def test_digits_preset_trains_logs_the_validation_nfe_curve_and_reports_bits_per_dim(tmp_path):
    cfg = _tiny_digits()
    run = tmp_path / "digits" / "rk4-2" / "none-lam0-seed0"  # runs.py's layout
    summary = ffjord.run_one(cfg, "none", 0.0, str(run), train_steps=2)
    assert summary["status"] == "ok" and summary["steps"] == 4 and summary["train_steps"] == 2
    assert summary["training"] == "fixed grid (rk4, 2 steps)"
    curve = read_log(str(run), "eval")
    assert [r["step"] for r in curve] == [2, 4]
    # the curve is evaluate_nfe on the validation images (not the test set): recompute the last point
    model, _, _ = load_checkpoint(str(run / CHECKPOINT), ffjord.make_cnf(cfg, (1, 8, 8)))
    val = ffjord.load_curve_data(cfg)
    m = ffjord.evaluate_nfe(model, cfg, val)
    assert curve[-1]["val_nfe"] == m["nfe"] and curve[-1]["val_nll"] == pytest.approx(m["nll"], rel=1e-12)
    assert m["nfe"] == int(m["nfe"]) and m["nfe"] > 0
    # a near-identity flow (zero last layer, 4 small steps) is near the standard normal in logit space:
    # bits/dim between the uniform density's log2(17) = 4.09 and a few times that
    assert 2.0 < summary["nll"] < 20.0 and np.isfinite(summary["R2"])
    assert json.load(open(run / "results.json"))["config"]["curve_every"] == 2
    # the sample figure reads the run back from its results.json config and checkpoint
    _script("scale_table").plot_samples(str(tmp_path), str(tmp_path / "samples.png"), n=10, training="rk4-2")
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_curve_settings_are_checked_and_kept_out_of_old_run_configs():
    with pytest.raises(ValueError, match="curve_every and curve_examples"):
        ffjord.preset("digits", curve_examples=0)
    with pytest.raises(ValueError, match="conv architecture"):
        ffjord.preset("digits", arch="mlp")
    assert "curve_every" not in ffjord.run_config(ffjord.PRESETS["cpu"])  # runs made before the curve resume
    with pytest.raises(ValueError, match="overlap"):
        ffjord.load_curve_data(ffjord.preset("mnist-long", train_examples=59990))
    with pytest.raises(ValueError, match="validation images"):
        ffjord.load_curve_data(_tiny_digits(curve_examples=251))
    assert ffjord.levels(ffjord.PRESETS["digits"]) == 17 and ffjord.levels(ffjord.PRESETS["mnist"]) == 256


def _script(name):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "ffjord" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ffjord_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_runs_plan_order_and_items():
    runs = _script("runs")
    items = [runs.parse_item(s) for s in runs.PLANS["digits"]]
    assert [(t, tr, s.reg, s.seed) for t, tr, s in items[:3]] == [("digits", "adaptive", r, 0) for r in ("none", "rnode", "r2")]
    assert {tr for _, tr, _ in items} == {"adaptive", "rk4-5", "rk4-6", "rk4-8"}
    assert sorted({s.seed for _, tr, s in items if tr == "adaptive"}) == [0, 1, 2]
    assert items[1][2].lam == ffjord.PRESETS["digits"].lam_rnode and items[2][2].lam == ffjord.PRESETS["digits"].lam_r2
    assert runs.train_steps("adaptive") is None and runs.train_steps("rk4-6") == 6
    with pytest.raises(ValueError, match="task/training/spec"):
        runs.parse_item("digits/dopri5/none:0:0")


def test_scale_table_pairs_by_seed_and_judges_the_target(tmp_path):
    table = _script("scale_table")
    nan = float("nan")

    def put(training, name, nll, nfe, status="ok"):
        d = tmp_path / "digits" / "results" / training / name
        d.mkdir(parents=True)
        res = dict(
            config={"quadrature": "integrated"},
            status=status,
            nll=nll,
            nfe=nfe,
            train_seconds=600.0,
            R2=1.0,
            jacobian=2.0,
            kinetic=3.0,
        )
        (d / "results.json").write_text(json.dumps(res))
        (d / "curve.json").write_text(
            json.dumps(dict(step_reached=100, curve=[dict(step=100, val_nfe=20.0), dict(step=200, val_nfe=50.0)]))
        )

    for seed, (b, n) in enumerate([(2.0, 100.0), (2.1, 90.0), (2.2, 80.0)]):
        put("adaptive", f"none-lam0-seed{seed}", b, n)
        put("adaptive", f"r2-lam0.01-seed{seed}", b * 1.005, n / 2)  # 2× fewer at +0.5 %: met
        put("adaptive", f"rnode-lam0.0002-seed{seed}", b * (1.02 if seed == 1 else 1.0), n / 2)  # +2 % on seed 1: missed
    put("rk4-5", "none-lam0-seed0", nan, nan, status="diverged")
    (tmp_path / "digits" / "results" / "rk4-6" / "r2-lam0.01-seed0").mkdir(parents=True)
    (tmp_path / "digits" / "results" / "rk4-6" / "r2-lam0.01-seed0" / "curve.json").write_text(
        json.dumps(dict(step_reached=300, curve=[]))
    )
    groups, unfinished = table.load(str(tmp_path), "digits")
    text, summary = table.table(groups, "bits/dim")
    rows = {(r["training"], r["reg"]): r for r in summary}
    np.testing.assert_allclose(rows[("adaptive", "r2")]["paired_nfe_saving"], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(rows[("adaptive", "rnode")]["paired_change_percent"], [0.0, 2.0, 0.0], atol=1e-9)
    line = {r.split(" | ")[1]: r for r in text.splitlines() if r.startswith("| adaptive")}
    assert "| met |" in line["TayNODE (R₂)"] and "| missed |" in line["RNODE (𝒦+ℬ)"]
    assert "diverged (NaN)" in text and "| NaN |" in text
    assert unfinished == [dict(run="rk4-6/r2-lam0.01-seed0", step=300, curve=[])]
    assert "seed 0: 20 (step 100) → 50 (step 200), 2.50×" in table.curve_growth(groups, unfinished)
    table.main(["--dest", str(tmp_path), "--tasks", "digits", "--doc", str(tmp_path / "docs" / "ffjord.md")])
    assert (tmp_path / "digits" / "nfe_curves.png").stat().st_size > 0
    page = (tmp_path / "docs" / "ffjord.md").read_text()
    assert "## digits" in page and "| met |" in page and "../digits/nfe_curves.png" in page
