"""The headline table and Fig. 3 from the ``full`` preset's runs (``full_runs.py``).

Reads every ``OUT/<reg>-lam<λ>-seed<s>/`` run folder: the final evaluation (``results.json``,
written when a run finishes) and the per-epoch log (test NFE on the first 1,000 test images,
training error, cumulative training time). Rows group the seeds of one (regularizer, λ): mean
and, in brackets, the smallest and largest seed. Unfinished runs are listed with the epoch
they reached and are left out of the table. Writes ``table.md``, ``summary.json`` and
``fig3_full.png`` into ``--dest``::

    python benchmarks/mnist/full_table.py --runs runs/mnist-full --dest benchmarks/mnist/full
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from taynode.studies import save_figure, write_json, write_text
from taynode.studies.batch import collect, mean_range, unfinished_note

# Pal, Ma, Shah & Rackauckas (ICML 2021), rerunning the TayNODE code (Tsit5 at 1.4e-8, 160 epochs,
# float64): test NFE / accuracy / training time, as quoted in issue #16 from Avik Pal's thesis.
PAL = {"none": ("253", "97.94 %", "0.98 h"), "r3": ("80.3", "97.89 %", "1.19 h")}


def load(runs: str) -> tuple[dict, list]:
    groups, unfinished = collect(runs)
    for runs_ in groups.values():
        for r in runs_:
            ep = r.pop("epochs")
            r["res"] = r.pop("results")
            r["curve"] = dict(
                epoch=[e["epoch"] for e in ep],
                test_nfe=[e.get("test_nfe_subset") for e in ep],
                train_error=[1 - e["train_acc"] for e in ep],
                time=[e["time"] for e in ep],
            )
    return groups, unfinished


def table(groups: dict, pal: bool = True) -> tuple[str, list]:
    base = groups.get(("none", 0.0, "integrated"))
    base_nfe = np.mean([r["res"]["test_nfe"] for r in base]) if base else None
    base_acc = np.mean([r["res"]["test_acc"] for r in base]) if base else None
    base_time = np.mean([r["res"]["train_seconds"] for r in base]) if base else None
    rows = [
        "| model | seeds | test accuracy % | test NFE (dopri5, 1.4e-8, float64) | NFE saving | first-epoch → final NFE (1,000 test images) | training time, min (× unregularized) |"
        + (" Pal et al. rerun: NFE / acc. / time |" if pal else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if pal else ""),
    ]
    summary = []
    for (reg, lam, quad), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0])):
        acc = [100 * r["res"]["test_acc"] for r in runs]
        nfe = [r["res"]["test_nfe"] for r in runs]
        minutes = [r["res"]["train_seconds"] / 60 for r in runs]
        first = [r["curve"]["test_nfe"][0] for r in runs]
        last = [r["curve"]["test_nfe"][-1] for r in runs]
        label = (
            "unregularized" if reg == "none" else f"{reg.upper()}, λ = {lam:g}" + (f" ({quad})" if quad != "integrated" else "")
        )
        ratio = "" if base_time is None or reg == "none" else f" ({np.mean(minutes) * 60 / base_time:.2f}×)"
        saving = "" if base_nfe is None or reg == "none" else f"{base_nfe / np.mean(nfe):.2f}× fewer"
        ref = " " + (" / ".join(PAL[reg]) if reg in PAL and quad == "integrated" else "") + " |" if pal else ""
        rows.append(
            f"| {label} | {len(runs)} | {mean_range(acc, '{:.2f}')} | {mean_range(nfe, '{:.1f}')} | {saving} | "
            f"{mean_range(first, '{:.0f}')} → {mean_range(last, '{:.0f}')} | {mean_range(minutes, '{:.1f}')}{ratio} |{ref}"
        )
        summary.append(
            dict(
                reg=reg,
                lam=lam,
                quadrature=quad,
                seeds=[r["seed"] for r in runs],
                test_acc=acc,
                test_nfe=nfe,
                train_minutes=minutes,
                first_epoch_nfe=first,
                final_epoch_nfe=last,
                curves=[r["curve"] for r in runs],
                acc_drop_points=None if base_acc is None else 100 * base_acc - float(np.mean(acc)),
            )
        )
    return "\n".join(rows) + "\n", summary


def plot(groups: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for i, ((reg, lam, quad), runs) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0]))):
        label = "unregularized" if reg == "none" else f"{reg.upper()}, λ={lam:g}" + (f" ({quad})" if quad != "integrated" else "")
        for j, r in enumerate(runs):
            c = r["curve"]
            kw = dict(color=f"C{i}", alpha=1.0 if j == 0 else 0.5, label=label if j == 0 else None)
            a1.plot(c["epoch"], c["test_nfe"], "o-", ms=3, **kw)
            a2.plot(c["epoch"], [100 * e for e in c["train_error"]], "o-", ms=3, **kw)
    a1.set(xlabel="epoch", ylabel="test NFE (dopri5, 1.4e-8, 1,000 images)", title="Function evaluations during training")
    a2.set(xlabel="epoch", ylabel="training error (%)", yscale="log", title="Training error")
    a1.legend()
    a2.legend()
    save_figure(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/mnist-full")
    p.add_argument("--dest", default="benchmarks/mnist/full")
    p.add_argument("--no-reference", action="store_true", help="leave out Pal et al.'s column (for presets other than full)")
    ns = p.parse_args(argv)
    groups, unfinished = load(ns.runs)
    if not groups:
        raise SystemExit(f"no finished run in {ns.runs} (unfinished: {unfinished})")
    os.makedirs(ns.dest, exist_ok=True)
    text, summary = table(groups, pal=not ns.no_reference)
    text += unfinished_note(unfinished)
    print(text)
    write_text(os.path.join(ns.dest, "table.md"), text)
    write_json(os.path.join(ns.dest, "summary.json"), dict(rows=summary, unfinished=unfinished))
    plot(groups, os.path.join(ns.dest, "fig3_full.png"))


if __name__ == "__main__":
    main()
