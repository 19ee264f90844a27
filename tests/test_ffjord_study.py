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
    summary = ffjord.run_one(cfg, "none", 0.0, str(tmp_path / "run"), train_steps=2)
    assert summary["status"] == "ok" and summary["steps"] == 4 and summary["train_steps"] == 2
    assert summary["training"] == "fixed grid (rk4, 2 steps)"
    curve = read_log(str(tmp_path / "run"), "eval")
    assert [r["step"] for r in curve] == [2, 4]
    # the curve is evaluate_nfe on the validation images (not the test set): recompute the last point
    model, _, _ = load_checkpoint(str(tmp_path / "run" / CHECKPOINT), ffjord.make_cnf(cfg, (1, 8, 8)))
    val = ffjord.load_curve_data(cfg)
    m = ffjord.evaluate_nfe(model, cfg, val)
    assert curve[-1]["val_nfe"] == m["nfe"] and curve[-1]["val_nll"] == pytest.approx(m["nll"], rel=1e-12)
    assert m["nfe"] == int(m["nfe"]) and m["nfe"] > 0
    # a near-identity flow (zero last layer, 4 small steps) is near the standard normal in logit space:
    # bits/dim between the uniform density's log2(17) = 4.09 and a few times that
    assert 2.0 < summary["nll"] < 20.0 and np.isfinite(summary["R2"])
    assert json.load(open(tmp_path / "run" / "results.json"))["config"]["curve_every"] == 2


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
