"""The Latent ODE headline table and per-epoch curves from ``runs.py``'s run folders.

Rows group the seeds of one (regularizer, λ, quadrature): mean and, in brackets, the smallest and
largest seed. Savings, loss changes and time ratios pair each run with the unregularized run of
the same seed (same split, initialization and batches). Unfinished runs are listed with the
epoch they reached. Writes ``table.md``, ``summary.json`` and ``curves.png`` into ``--dest``::

    python benchmarks/latent_ode/table.py --runs runs/latent-cpu --dest benchmarks/latent_ode/cpu
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from taynode.studies import save_figure, write_json, write_text
from taynode.studies.batch import collect, mean_range, unfinished_note

# The paper's Table/Fig. 4 (PhysioNet, their setup): 281 → 90 NFE at +8 % loss. Pal et al. (ICML 2021)
# rerun (Tsit5, 1.4e-8): NFE / test loss ×1e-3 (their MSE-based loss) / training time, issue #16.
REFERENCE = {"none": ("281", "733 / 3.55 / 1.75 h"), "r3": ("90 (+8 % loss)", "167.3 / 4.21 / 12.3 h")}


def _label(reg, lam, quad):
    return "unregularized" if reg == "none" else f"{reg.upper()}, λ = {lam:g}" + (f" ({quad})" if quad != "integrated" else "")


def _order(groups):
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0]))


def table(groups: dict) -> tuple[str, list]:
    """One row per (regularizer, λ, quadrature); savings and loss changes are paired by seed (each run
    against the unregularized run of its own seed), then averaged."""
    base = {r["seed"]: r["results"] for r in groups.get(("none", 0.0, "integrated"), [])}
    rows = [
        "| model | seeds | test loss | Δ loss (paired) | test MSE | decoder NFE per sample | NFE saving (paired) "
        "| epoch-1 → final NFE (100 test records) | training time, min (× unregularized) | paper: NFE "
        "| Pal et al. rerun: NFE / MSE×1e-3 / time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for (reg, lam, quad), runs in _order(groups):
        res = [r["results"] for r in runs]
        loss, nfe = [x["loss"] for x in res], [x["nfe"] for x in res]
        mse = [1e3 * x["mse"] for x in res]
        minutes = [x["train_seconds"] / 60 for x in res]
        first = [r["epochs"][0].get("test_nfe_subset", np.nan) for r in runs]
        last = [r["epochs"][-1].get("test_nfe_subset", np.nan) for r in runs]
        paired = [(base[r["seed"]], r["results"]) for r in runs if reg != "none" and r["seed"] in base]
        saving = [b["nfe"] / x["nfe"] for b, x in paired]
        dloss = [100 * (x["loss"] - b["loss"]) / abs(b["loss"]) for b, x in paired]
        time_ratio = [x["train_seconds"] / b["train_seconds"] for b, x in paired]
        rows.append(
            f"| {_label(reg, lam, quad)} | {len(runs)} | {mean_range(loss, '{:.3f}')} | "
            f"{mean_range(dloss, '{:+.1f}') + ' %' if dloss else ''} | {mean_range(mse, '{:.3f}')}e-3 | "
            f"{mean_range(nfe, '{:.1f}')} | {mean_range(saving, '{:.2f}') + '×' if saving else ''} | "
            f"{mean_range(first, '{:.0f}')} → {mean_range(last, '{:.0f}')} | "
            f"{mean_range(minutes, '{:.1f}')}{f' ({np.mean(time_ratio):.2f}×)' if time_ratio else ''} | "
            f"{' | '.join(REFERENCE.get(reg, ('', '')))} |"
        )
        summary.append(
            dict(
                reg=reg,
                lam=lam,
                quadrature=quad,
                seeds=[r["seed"] for r in runs],
                loss=loss,
                mse_e3=mse,
                nfe=nfe,
                train_minutes=minutes,
                first_epoch_nfe=first,
                final_epoch_nfe=last,
                paired_nfe_saving=saving,
                paired_loss_change_percent=dloss,
                paired_time_ratio=time_ratio,
            )
        )
    return "\n".join(rows) + "\n", summary


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
    ns = p.parse_args(argv)
    groups, unfinished = collect(ns.runs)
    if not groups:
        raise SystemExit(f"no finished run in {ns.runs} (unfinished: {unfinished})")
    os.makedirs(ns.dest, exist_ok=True)
    text, summary = table(groups)
    text += unfinished_note(unfinished)
    print(text)
    write_text(os.path.join(ns.dest, "table.md"), text)
    write_json(os.path.join(ns.dest, "summary.json"), dict(rows=summary, unfinished=unfinished))
    plot(groups, os.path.join(ns.dest, "curves.png"))


if __name__ == "__main__":
    main()
