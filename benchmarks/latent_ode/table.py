"""The Latent ODE headline table and per-epoch curves from ``runs.py``'s run folders.

Rows group the seeds of one (regularizer, λ, quadrature); the table is ``doctables.runs.latent_table``'s
(savings, loss changes and time ratios pair each run with the unregularized run of the same seed:
the mean and each seed's value). Unfinished runs are listed with the epoch they reached. Writes
``table.md``, ``summary.json`` and ``curves.png`` into ``--dest``; ``--from-summary`` rewrites
``table.md`` from a committed ``summary.json`` alone (the run folders are not kept)::

    python benchmarks/latent_ode/table.py --runs runs/latent-cpu --dest benchmarks/latent_ode/cpu
    python benchmarks/latent_ode/table.py --from-summary --dest benchmarks/latent_ode/cpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # doctables: the table format shared with the docs

from doctables.fmt import reference  # noqa: E402
from doctables.runs import latent_table  # noqa: E402
from taynode.studies import save_figure, write_json, write_text  # noqa: E402
from taynode.studies.batch import collect, unfinished_note  # noqa: E402


def _label(reg, lam, quad):
    return "unregularized" if reg == "none" else f"{reg.upper()}, λ = {lam:g}" + (f" ({quad})" if quad != "integrated" else "")


def _order(groups):
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0]))


def summary_rows(groups: dict) -> list[dict]:
    """One ``summary.json`` row per (regularizer, λ, quadrature): each seed's final numbers, and the
    paired (same-seed) NFE saving, loss change and time ratio."""
    base = {r["seed"]: r["results"] for r in groups.get(("none", 0.0, "integrated"), [])}
    summary = []
    for (reg, lam, quad), runs in _order(groups):
        res = [r["results"] for r in runs]
        paired = [(base[r["seed"]], r["results"]) for r in runs if reg != "none" and r["seed"] in base]
        summary.append(
            dict(
                reg=reg,
                lam=lam,
                quadrature=quad,
                seeds=[r["seed"] for r in runs],
                loss=[x["loss"] for x in res],
                mse_e3=[1e3 * x["mse"] for x in res],
                nfe=[x["nfe"] for x in res],
                train_minutes=[x["train_seconds"] / 60 for x in res],
                first_epoch_nfe=[r["epochs"][0].get("test_nfe_subset", np.nan) for r in runs],
                final_epoch_nfe=[r["epochs"][-1].get("test_nfe_subset", np.nan) for r in runs],
                paired_nfe_saving=[b["nfe"] / x["nfe"] for b, x in paired],
                paired_loss_change_percent=[100 * (x["loss"] - b["loss"]) / abs(b["loss"]) for b, x in paired],
                paired_time_ratio=[x["train_seconds"] / b["train_seconds"] for b, x in paired],
            )
        )
    return summary


def plot(groups: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for i, ((reg, lam, quad), runs) in enumerate(_order(groups)):
        for j, r in enumerate(runs):
            ep = [e["epoch"] for e in r["epochs"]]
            kw = dict(color=f"C{i}", alpha=1.0 if j == 0 else 0.5, label=_label(reg, lam, quad) if j == 0 else None)
            a1.plot(ep, [e.get("test_nfe_subset") for e in r["epochs"]], "-", **kw)
            a2.plot(ep, [e.get("test_loss_subset") for e in r["epochs"]], "-", **kw)
    a1.set(xlabel="epoch", ylabel="decoder NFE per sample (dopri5, 1.4e-8)", title="NFE during training (100 test records)")
    a2.set(xlabel="epoch", ylabel="test loss (100 records)", title="Test loss during training", yscale="log")
    a1.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/latent-cpu")
    p.add_argument("--dest", default="benchmarks/latent_ode/cpu")
    p.add_argument("--from-summary", action="store_true", help="rewrite --dest/table.md from --dest/summary.json alone")
    ns = p.parse_args(argv)
    if ns.from_summary:
        with open(os.path.join(ns.dest, "summary.json"), encoding="utf-8") as fh:
            saved = json.load(fh)
        text = latent_table(saved["rows"], reference(ROOT)) + unfinished_note(saved["unfinished"])
        write_text(os.path.join(ns.dest, "table.md"), text)
        print(text)
        return
    groups, unfinished = collect(ns.runs)
    if not groups:
        raise SystemExit(f"no finished run in {ns.runs} (unfinished: {unfinished})")
    os.makedirs(ns.dest, exist_ok=True)
    summary = summary_rows(groups)
    text = latent_table(summary, reference(ROOT)) + unfinished_note(unfinished)
    print(text)
    write_text(os.path.join(ns.dest, "table.md"), text)
    write_json(os.path.join(ns.dest, "summary.json"), dict(rows=summary, unfinished=unfinished))
    plot(groups, os.path.join(ns.dest, "curves.png"))


if __name__ == "__main__":
    main()
