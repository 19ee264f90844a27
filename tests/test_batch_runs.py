"""Resumable multi-run batches (`taynode.studies.batch`) and the Latent ODE run script built on them."""

import importlib.util
import json
import os
import pathlib
import time

import numpy as np
import pytest

from taynode.studies.batch import Spec, collect, mean_range, parse_folder, parse_spec, run_all

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_specs_and_folders_round_trip():
    s = parse_spec("r3:0.1:2:sampled4")
    assert s == Spec("r3", 0.1, 2, "sampled4") and s.name == "r3-lam0.1-seed2-sampled4"
    assert s.quadrature_kwargs() == dict(quadrature="sampled", samples=4)
    assert parse_spec("none:0:1").quadrature_kwargs() == dict(quadrature="integrated")
    assert parse_folder(s.name) == s and parse_folder("kinetic+jacobian-lam1e-05-seed0") == Spec("kinetic+jacobian", 1e-5, 0)
    assert parse_folder("notes") is None
    for bad in ("r3:0.1", "r3:x:0", "r3:0.1:0:simpson"):
        with pytest.raises(ValueError, match="run spec"):
            parse_spec(bad)
    assert mean_range([1.0, 2.0, 3.0], "{:.1f}") == "2.0 [1.0–3.0]" and mean_range([1.0]) == "1.00"


def _write_result(spec, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    print("hello from", spec.name)
    with open(os.path.join(run_dir, "results.json"), "w") as fh:
        json.dump({"lam": spec.lam}, fh)


def _fail(spec, run_dir):
    raise RuntimeError("boom")


def _sleep(spec, run_dir):
    time.sleep(60)


def test_run_all_runs_unfinished_specs_reports_failures_and_stops_at_the_deadline(tmp_path):
    specs = [parse_spec("r3:1:0"), parse_spec("none:0:0")]
    assert run_all(_write_result, specs, str(tmp_path)) == []
    assert "hello from r3-lam1-seed0" in (tmp_path / "r3-lam1-seed0.out").read_text()
    groups, unfinished = collect(str(tmp_path))
    assert set(groups) == {("r3", 1.0, "integrated"), ("none", 0.0, "integrated")} and unfinished == []
    # finished runs are skipped: a failing target is never called for them
    assert run_all(_fail, specs, str(tmp_path)) == []
    failed = run_all(_fail, [parse_spec("r2:1:0")], str(tmp_path))
    assert failed == [parse_spec("r2:1:0")] and "boom" in (tmp_path / "r2-lam1-seed0.out").read_text()
    t0 = time.monotonic()
    assert (
        run_all(_sleep, [parse_spec("r2:1:1"), parse_spec("r2:1:2")], str(tmp_path), time_limit=1.0) == []
    )  # killed, not failed
    assert time.monotonic() - t0 < 30
    with pytest.raises(ValueError, match="time limit needs one process"):
        run_all(_sleep, specs, str(tmp_path), time_limit=1.0, in_process=True)


def _load_script(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # end to end: trains a Latent ODE (about 30 s)
def test_latent_runs_log_per_epoch_nfe_and_the_table_reads_them(tmp_path, monkeypatch, capsys):
    from taynode.data import physionet as pn
    from taynode.studies import latent
    from taynode.train import load_checkpoint
    from test_physionet import tiny_set_a

    data = tiny_set_a(tmp_path / "data", monkeypatch)
    runs = _load_script(ROOT / "benchmarks/latent_ode/runs.py")
    out = tmp_path / "runs"
    argv = [
        "--out",
        str(out),
        "--epochs",
        "2",
        "--epoch-eval-records",
        "2",
        "--data",
        str(data),
        "--set",
        "batch=4",
        "steer=1.0",
        "--in-process",
        "--runs",
        "r3:0.1:0:sampled2",
    ]
    assert runs.main(argv) == 0
    groups, _ = collect(str(out))
    (run,) = groups[("r3", 0.1, "sampled2")]
    assert [e["epoch"] for e in run["epochs"]] == [1.0, 2.0] and run["results"]["test_records"] == 2
    # the logged last-epoch NFE is the evaluation of the final model on the first 2 test records
    cfg = latent.preset(
        "cpu", reg="r3", lam=0.1, epochs=2, batch=4, steer=1.0, epoch_eval_records=2, quadrature="sampled", samples=2
    )
    split, ts = latent.load_data(cfg, str(data))
    model = latent.make_model(cfg, len(pn.VARIABLES), np.float32)
    model = load_checkpoint(str(out / "r3-lam0.1-seed0-sampled2" / "checkpoint.npz"), model)[0]
    assert run["epochs"][-1]["test_nfe_subset"] == latent.evaluate(model, cfg, split.test, ts, records=2)["nfe"]
    table = _load_script(ROOT / "benchmarks/latent_ode/table.py")
    table.main(["--runs", str(out), "--dest", str(tmp_path / "table")])
    assert f"{run['results']['nfe']:.1f}" in (tmp_path / "table" / "table.md").read_text()
    assert (tmp_path / "table" / "curves.png").stat().st_size > 10_000
