"""`taynode study regularizers`: run specs, the method → training settings map, the paired table and
the command's wiring (with a stand-in trainer; the real runs are benchmarks)."""

import json
import os

import pytest

from taynode.cli import main
from taynode.studies import regularizers as rg
from taynode.studies.batch import Spec


def test_specs_put_the_unregularized_runs_first_and_take_each_methods_lambda():
    cfg = rg.RegularizersConfig(tasks=("latent",), methods=("ernode", "none", "steer"), seeds=(3, 4))
    specs = rg.specs(cfg, "latent")
    assert [s.reg for s in specs] == ["none", "none", "ernode", "ernode", "steer", "steer"]
    assert specs[2] == Spec("ernode", rg.LAMS["latent"]["ernode"], 3) and specs[0].lam == 0.0


@pytest.mark.parametrize(
    "task, method, expected",
    [
        ("mnist", "taynode", ("r3", 1e4, 0.0, {})),
        ("ffjord", "taynode-sampled", ("r2", 0.5, 0.0, dict(quadrature="sampled", samples=4))),
        ("latent", "rnode", ("kinetic+jacobian", 4.0, 0.0, {})),
        ("mnist", "steer", ("none", 0.0, 0.5, {})),  # STEER's "λ" is the half-width b, no penalty
        ("latent", "none", ("none", 0.0, 0.0, {})),
    ],
)
def test_each_method_maps_to_its_training_settings(task, method, expected):
    assert rg._reg_and_lam(task, Spec(method, 0.0 if method == "none" else rg.LAMS[task][method], 0)) == expected


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="tasks must be a non-empty subset"):
        rg.RegularizersConfig(tasks=("cifar",))
    with pytest.raises(ValueError, match="methods must be"):
        rg.RegularizersConfig(methods=())
    with pytest.raises(ValueError, match="seeds must be non-negative"):
        rg.RegularizersConfig(seeds=(-1,))


def test_unknown_method_on_the_command_line_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["study", "regularizers", "--methods", "lasso"])
    assert "invalid choice: 'lasso'" in capsys.readouterr().err


def _group(seed, nfe, loss, acc, seconds):
    return dict(seed=seed, results=dict(test_nfe=nfe, test_loss=loss, test_acc=acc, train_seconds=seconds), epochs=[])


def test_table_pairs_each_run_with_the_unregularized_run_of_its_seed():
    groups = {
        ("none", 0.0, "integrated"): [_group(0, 30.0, 0.20, 0.90, 10.0), _group(1, 40.0, 0.25, 0.91, 20.0)],
        ("ernode", 120.0, "integrated"): [_group(0, 15.0, 0.22, 0.89, 12.0), _group(1, 10.0, 0.25, 0.90, 30.0)],
    }
    text, rows = rg.table("mnist", groups)
    (ern,) = [r for r in rows if r["method"] == "ernode"]
    assert ern["nfe_saving"] == [2.0, 4.0]  # 30/15 and 40/10, not the ratio of the means (35/12.5)
    assert ern["loss_change_percent"] == pytest.approx([10.0, 0.0])
    assert ern["time_ratio"] == [1.2, 1.5]
    assert "3.00 [2.00–4.00]×" in text and "+5.0 [+0.0–+10.0] %" in text and "(1.35×)" in text
    assert "177 / 97.32 % / 0.82 h" in text  # Pal et al.'s ERNODE row beside ours


def _fake_run(spec, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    nfe = 30.0 if spec.reg == "none" else 20.0 + spec.seed
    with open(os.path.join(run_dir, "results.json"), "w") as fh:
        json.dump(dict(test_nfe=nfe, test_loss=0.2, test_acc=0.9, train_seconds=5.0), fh)


def test_run_trains_the_missing_runs_and_writes_table_and_scatter(tmp_path, monkeypatch):
    monkeypatch.setitem(rg.RUNNERS, "mnist", _fake_run)
    cfg = rg.RegularizersConfig(tasks=("mnist",), methods=("none", "srnode"), seeds=(0, 1))
    out = rg.run(cfg, str(tmp_path))
    assert out["failed"] == []
    folder = tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "none-lam0-seed0",
        "none-lam0-seed1",
        "srnode-lam20-seed0",
        "srnode-lam20-seed1",
    ]
    assert "1.46 [1.43–1.50]×" in (folder / "table.md").read_text()  # 30/21 and 30/20
    assert (folder / "scatter.png").stat().st_size > 5_000
    assert "| SRNODE | 1.46× / +0.0 % (λ 20, 2) |" in (tmp_path / "overview.md").read_text()


@pytest.mark.slow  # end to end: trains a tiny FFJORD model (about 20 s)
def test_ffjord_run_one_trains_ernode_with_steer_and_writes_its_results(tmp_path):
    """One tiny FFJORD run with ERNODE at a given λ and STEER's random end time: it trains through
    the shared loop (λ and the steer half-width land in the stored config) and is evaluated."""
    from taynode.studies import ffjord
    from taynode.train import read_log

    cfg = ffjord.preset("tiny", fixed_steps=(), steer=0.5)
    out = ffjord.run_one(cfg, "ernode", 2.0, str(tmp_path / "ernode"))
    assert json.loads((tmp_path / "ernode" / "results.json").read_text())["nfe"] == out["nfe"]
    assert out["status"] == "ok" and out["nfe"] >= 9 and out["config"]["steer"] == 0.5 and out["config"]["lam"] == 2.0
    steps = read_log(str(tmp_path / "ernode"), "step")
    assert steps and all("ernode" in r for r in steps)  # the penalty was part of the loss
    with pytest.raises(ValueError, match="λ comes from the config"):
        ffjord.run_one(cfg, "r2", 2.0, str(tmp_path / "r2"))
    with pytest.raises(ValueError, match="steer"):
        ffjord.preset("tiny", steer=1.0)


def test_diverged_runs_are_named_not_averaged():
    groups = {
        ("none", 0.0, "integrated"): [_group(0, 30.0, 0.20, 0.90, 10.0), _group(1, 40.0, 0.25, 0.91, 20.0)],
        ("srnode", 20.0, "integrated"): [
            dict(seed=0, results=dict(status="diverged", error="training diverged", steps=55), epochs=[]),
            dict(seed=1, results=dict(status="diverged", error="training diverged", steps=60), epochs=[]),
        ],
        ("ernode", 120.0, "integrated"): [
            _group(0, 15.0, 0.22, 0.89, 12.0),
            dict(seed=1, results=dict(status="diverged", error="x", steps=7), epochs=[]),
        ],
    }
    text, rows = rg.table("mnist", groups)
    assert "| SRNODE | 20 | 0 | diverged (seed 0 at step 55, seed 1 at step 60) |  |" in text
    assert "| ERNODE | 120 | 1; diverged: seed 1 at step 7 | 15.0 | 2.00× |" in text
    assert "nan" not in text
