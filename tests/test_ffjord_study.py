"""The FFJORD Table 2 study: the command end to end (tiny), evaluation, divergence handling."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from taynode.cli import main
from taynode.studies import ffjord
from taynode.train import CHECKPOINT, load_checkpoint, read_meta


def test_table_command_end_to_end_and_evaluation(tmp_path, capsys):
    out = tmp_path / "ff"
    assert main(["study", "ffjord-table2", "--preset", "tiny", "--regs", "none", "--fixed-steps", "--out", str(out), "--no-progress"]) == 0
    assert "| adaptive (dopri5) | unregularized |" in capsys.readouterr().out
    s = json.loads((out / "results.json").read_text())
    (row,) = s["rows"]
    assert row["status"] == "ok" and row["steps_done"] == ffjord.PRESETS["tiny"].iters
    assert (out / "densities.png").stat().st_size > 1000
    assert (out / "table.csv").read_text().splitlines()[0].startswith("training,regularization,status")
    # the table's NLL and NFE are those of a direct dopri5 solve of the trained flow (exact trace, float64)
    cfg = ffjord.PRESETS["tiny"]
    model, _, _ = load_checkpoint(str(out / "runs" / "adaptive_none" / CHECKPOINT), ffjord.make_cnf(cfg, 2))
    cnf = ffjord._to64(ffjord.replace_trace(model, "exact"))
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
    s = {"config": vars(cfg) | {}, "rows": [dict(training="fixed grid (rk4, 2 steps)", regularization="r2", status="diverged",
                                                 steps_done=1, train_seconds=1.0, step_seconds=float("nan"),
                                                 nll=float("nan"), nfe=float("nan"), R2=float("nan"), jacobian=float("nan"), kinetic=float("nan"))]}
    assert "diverged (NaN)" in ffjord.markdown_table(s) and "| NaN |" in ffjord.markdown_table(s)


def test_miniboone_preset_on_a_synthetic_file(tmp_path):
    """The tabular path: MAF-format data.npy → ConcatSquash softplus flow → Hutchinson evaluation."""
    np.save(tmp_path / "data.npy", np.random.default_rng(0).standard_normal((300, 43)))
    cfg = ffjord.preset("miniboone", data=str(tmp_path), hidden=(16,), batch=32, iters=2, eval_examples=20,
                        eval_reg_examples=10, eval_batch=20, eval_tol=1e-5, checkpoint_every=2)
    train_x, test_x = ffjord.load_data(cfg)
    assert train_x.shape == (243, 43) and train_x.dtype == np.float32 and test_x.shape == (20, 43)
    t = ffjord.train_one(cfg, "rnode", None, train_x, tmp_path / "run", progress=False)
    assert t["status"] == "ok" and isinstance(t["model"].dynamics, ffjord.ConcatSquashMLP)
    m = ffjord.evaluate(t["model"], cfg, test_x)
    assert all(np.isfinite(m[k]) for k in ("nll", "nfe", "R2", "jacobian", "kinetic")) and m["nfe"] >= 9
