"""`taynode study latent-ode` end to end on hand-made PhysioNet archives: it trains both models,
writes the figure, the table and results.json, and the table's numbers are the results'."""

import json

from taynode.cli import main
from test_physionet import tiny_set_a


def test_study_command_on_tiny_archives(tmp_path, monkeypatch, capsys):
    data = tiny_set_a(tmp_path / "data", monkeypatch)  # the study verifies checksums: the helper registers theirs
    out = tmp_path / "out"
    argv = [
        "study",
        "latent-ode",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--lam",
        "0.1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "(8 train / 2 test records)" in printed
    summary = json.loads((out / "results.json").read_text())
    assert (out / "fig4.png").stat().st_size > 10_000 and (out / "table.md").exists()
    res = summary["results"]
    assert set(res) == {"unregularized", "R3, λ=0.1"}
    for r in res.values():
        assert r["nfe"] >= 9  # dopri5: 3 + 6 per attempted step (a mean over samples), at least one step
        assert f"{r['nfe']:.1f}" in (out / "table.md").read_text()
    assert summary["data"]["parse"]  # the malformed-line report is kept with the results


def test_table_names_any_regularizer():
    from taynode.studies import latent

    res = {
        "unregularized": dict(loss=1.0, mse=0.1, nfe=20.0, nfe_std=1.0, kinetic=2.0),
        "KINETIC, λ=0.1": dict(loss=1.1, mse=0.1, nfe=10.0, nfe_std=1.0, kinetic=1.0),
    }
    table = latent.markdown_table({"config": {"reg": "kinetic"}, "results": res})
    assert "test kinetic" in table and "NFE ratio 2.00×" in table and "loss change +10.0 %" in table


def test_every_regularizer_of_a_set_gets_the_weight():
    from taynode.studies import latent

    # _regs returns one RegularizerSet (names and λ together) since the set is parsed once per run
    rset = latent._regs(latent.preset("cpu", reg="kinetic+jacobian", lam=4.0), 4.0)
    assert [r.name for r in rset.regularizers] == ["kinetic", "jacobian"] and list(rset.lam) == [4.0, 4.0]
    rset = latent._regs(latent.preset("cpu", reg="ernode", lam=2.0), 2.0)
    assert [r.name for r in rset.regularizers] == ["ernode"] and list(rset.lam) == [2.0]
    empty = latent._regs(latent.preset("cpu"), 0.0)
    assert list(empty.regularizers) == [] and list(empty.lam) == []
