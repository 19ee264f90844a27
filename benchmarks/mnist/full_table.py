"""The headline table and Fig. 3 from the ``full`` preset's runs (``full_runs.py``).

Reads every ``OUT/<reg>-lam<λ>-seed<s>/`` run folder: the final evaluation (``results.json``,
written when a run finishes) and the per-epoch log (test NFE on the first 1,000 test images,
training error, cumulative training time). Rows group the seeds of one (regularizer, λ,
quadrature); the table is ``doctables.runs.mnist_table``'s (the docs' convention: savings,
accuracy changes and time ratios paired by seed, the mean and each seed's value). Unfinished
runs are listed with the epoch they reached and are left out of the table. Writes ``table.md``,
``summary.json`` and ``fig3_full.png`` into ``--dest``; ``--from-summary`` rewrites ``table.md``
from a committed ``summary.json`` alone (the run folders of the committed runs are not kept)::

    python benchmarks/mnist/full_table.py --runs runs/mnist-full --dest benchmarks/mnist/full
    python benchmarks/mnist/full_table.py --from-summary --dest benchmarks/mnist/small_cost --no-reference --seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # doctables: the table format shared with the docs

from doctables.fmt import reference  # noqa: E402
from doctables.runs import mnist_table  # noqa: E402
from taynode.studies import save_figure, write_json, write_text  # noqa: E402
from taynode.studies.batch import collect, unfinished_note  # noqa: E402


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


def summary_rows(groups: dict) -> list[dict]:
    """One ``summary.json`` row per (regularizer, λ, quadrature): every seed's final numbers and curves."""
    rows = []
    for (reg, lam, quad), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0])):
        rows.append(
            dict(
                reg=reg,
                lam=lam,
                quadrature=quad,
                seeds=[r["seed"] for r in runs],
                test_acc=[100 * r["res"]["test_acc"] for r in runs],
                test_nfe=[r["res"]["test_nfe"] for r in runs],
                train_minutes=[r["res"]["train_seconds"] / 60 for r in runs],
                first_epoch_nfe=[r["curve"]["test_nfe"][0] for r in runs],
                final_epoch_nfe=[r["curve"]["test_nfe"][-1] for r in runs],
                curves=[r["curve"] for r in runs],
            )
        )
    return rows


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
    p.add_argument("--seconds", action="store_true", help="training time in seconds (runs of about a minute)")
    p.add_argument("--from-summary", action="store_true", help="rewrite --dest/table.md from --dest/summary.json alone")
    ns = p.parse_args(argv)
    ref = None if ns.no_reference else reference(ROOT)
    if ns.from_summary:
        with open(os.path.join(ns.dest, "summary.json"), encoding="utf-8") as fh:
            saved = json.load(fh)
        text = mnist_table(saved["rows"], ref, seconds=ns.seconds) + unfinished_note(saved["unfinished"])
        write_text(os.path.join(ns.dest, "table.md"), text)
        print(text)
        return
    groups, unfinished = load(ns.runs)
    if not groups:
        raise SystemExit(f"no finished run in {ns.runs} (unfinished: {unfinished})")
    os.makedirs(ns.dest, exist_ok=True)
    rows = summary_rows(groups)
    text = mnist_table(rows, ref, seconds=ns.seconds) + unfinished_note(unfinished)
    print(text)
    write_text(os.path.join(ns.dest, "table.md"), text)
    write_json(os.path.join(ns.dest, "summary.json"), dict(rows=rows, unfinished=unfinished))
    plot(groups, os.path.join(ns.dest, "fig3_full.png"))


if __name__ == "__main__":
    main()
