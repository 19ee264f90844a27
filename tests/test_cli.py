"""`taynode demo` end to end on a tiny budget (it trains both models, prints the table, writes the figure);
the command registry, the help text and the exit statuses."""

import json
import os

import pytest

from taynode.cli import main


def test_demo_writes_figure_and_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--iters", "3", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "unregularized" in printed and "NFE" in printed
    png = out / "fig1.png"
    assert png.exists() and png.stat().st_size > 10_000
    with open(out / "results.json") as fh:
        summary = json.load(fh)
    assert len(summary["results"]) == 2 and "unregularized" in summary["results"]
    for r in summary["results"].values():
        assert r["nfe"] == 3 + 6 * (r["steps"] + r["rejected"])
    assert not [p for p in os.listdir(out) if p.endswith(".tmp") or ".tmp." in p]


# ---------------------------------------------------------------- the command registry and exit statuses


def test_help_is_plain_text_without_sphinx_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "taynode study <name>" in out and "taynode.studies.setting" in out
    assert ":func:" not in out and ":data:" not in out and "``" not in out and "`" not in out


def test_a_study_is_one_registry_entry_and_its_exit_status_is_the_commands(monkeypatch, capsys):
    """A new entry in COMMANDS becomes a subcommand with flags generated from its config; what its
    run function returns is the exit status."""
    import dataclasses

    from taynode.studies import commands, setting

    @dataclasses.dataclass(frozen=True)
    class EchoConfig:
        size: int = setting(3, "how many")
        names: tuple = setting(("a",), "which")

    seen = {}

    def run(ns, given):
        seen.update(cfg=EchoConfig(**given), out=ns.out)
        return 1 if seen["cfg"].size == 0 else 0

    entry = commands.Command(("study", "echo"), "a study of nothing", run, EchoConfig, ("size", "names"), out="runs/echo")
    monkeypatch.setattr(commands, "COMMANDS", [*commands.COMMANDS, entry])
    monkeypatch.setattr("taynode.cli.COMMANDS", commands.COMMANDS)
    assert main(["study", "echo", "--names", "x", "y"]) == 0
    assert seen == dict(cfg=EchoConfig(3, ("x", "y")), out="runs/echo")
    assert main(["study", "echo", "--size", "0", "--out", "o"]) == 1 and seen["out"] == "o"
    with pytest.raises(SystemExit):
        main(["study", "echo", "--help"])
    assert "how many (default 3)" in " ".join(capsys.readouterr().out.split())


def test_train_mnist_has_dtype_again():
    from taynode.cli import _given, build_parser
    from taynode.studies import commands, mnist

    ns = build_parser().parse_args(["train", "mnist", "--dtype", "float64", "--epochs", "1"])
    cfg = mnist.config(ns.preset, **_given(ns, ns.command_entry.options))
    assert cfg.dtype == "float64" and cfg.epochs == 1 and cfg.preset == "small"
    assert mnist.config("small").dtype == "float32"  # unset: the preset's
    assert all(e.path != ("train", "mnist") or "dtype" in e.options for e in commands.COMMANDS)


def _failing_run(spec, run_dir):
    raise RuntimeError(f"stand-in failure of {spec.name}")


def test_regularizers_study_exits_nonzero_when_a_run_failed(tmp_path, monkeypatch, capsys):
    from taynode.studies import regularizers

    argv = ["study", "regularizers", "--tasks", "mnist", "--methods", "none", "--seeds", "0", "--out", str(tmp_path)]
    monkeypatch.setitem(regularizers.RUNNERS, "mnist", _failing_run)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "failed: mnist/none-lam0-seed0" in out
    assert "stand-in failure of none-lam0-seed0" in (tmp_path / "mnist" / "none-lam0-seed0.out").read_text()


def test_latent_ode_with_zero_epochs_is_an_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "latent"
    assert main(["study", "latent-ode", "--epochs", "0", "--out", str(out), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "epochs must be an integer >= 1, got 0" in err
    assert not out.exists()  # no table of two untrained models, no run folders
