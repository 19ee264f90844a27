"""`taynode demo` end to end on a tiny budget: it trains both models, prints the table, writes the figure."""

import json
import os

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
