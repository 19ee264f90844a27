"""The Latent ODE headline table and per-epoch curves from ``runs.py``'s run folders.

Rows group the seeds of one (regularizer, λ, quadrature); the table is ``doctables.runs.latent_table``'s
(savings, loss changes and time ratios pair each run with the unregularized run of the same seed:
the mean and each seed's value). Unfinished runs are listed with the epoch they reached. Writes
``table.md``, ``summary.json`` and ``curves.png`` into ``--dest``; ``--from-summary`` rewrites
``table.md`` from a committed ``summary.json`` alone (the run folders are not kept).

``--archive`` first copies each finished run's ``results.json`` and per-epoch log records into
``--dest/runs/<run>/`` (small files, committed), and the table is then built from that archive, so a
later session with new seeds rebuilds it without the old run folders. ``--prior`` keeps the rows of
an earlier ``summary.json`` for (run, seed) pairs the archive lacks (runs from before the archive
existed), marked ``prior`` in the new summary::

    python benchmarks/latent_ode/table.py --runs runs/latent-cpu --dest benchmarks/latent_ode/cpu
    python benchmarks/latent_ode/table.py --from-summary --dest benchmarks/latent_ode/cpu
    python benchmarks/latent_ode/table.py --runs runs/latent-360 --dest benchmarks/latent_ode/converged --archive \
        --prior benchmarks/latent_ode/converged/summary.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # doctables: the table format shared with the docs

from doctables.fmt import reference  # noqa: E402
from doctables.runs import latent_table  # noqa: E402
from taynode.studies import save_figure, write_json, write_text  # noqa: E402
from taynode.studies.batch import collect, unfinished_note  # noqa: E402
from taynode.train import read_log  # noqa: E402


def _label(reg, lam, quad):
    return "unregularized" if reg == "none" else f"{reg.upper()}, λ = {lam:g}" + (f" ({quad})" if quad != "integrated" else "")


def _order(groups):
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0]))


def _epoch_nfe(run: dict, i: int) -> float:
    if "prior_nfe" in run:  # a row carried over from an earlier summary: no epoch log
        return run["prior_nfe"][i]
    return run["epochs"][i].get("test_nfe_subset", np.nan)


def archive(runs: str, dest: str) -> None:
    """Copy each finished run's ``results.json`` and per-epoch records into ``dest/<run>/``."""
    groups, _ = collect(runs)
    for group in groups.values():
        for r in group:
            name = os.path.basename(r["folder"])
            os.makedirs(os.path.join(dest, name), exist_ok=True)
            shutil.copyfile(os.path.join(r["folder"], "results.json"), os.path.join(dest, name, "results.json"))
            text = "".join(json.dumps(e) + "\n" for e in read_log(r["folder"], "epoch"))
            write_text(os.path.join(dest, name, "log.jsonl"), text)


def with_prior(groups: dict, path: str) -> dict:
    """``groups`` plus the (row, seed) pairs of an earlier ``summary.json`` that ``groups`` lacks."""
    with open(path, encoding="utf-8") as fh:
        rows = json.load(fh)["rows"]
    for row in rows:
        key = (row["reg"], row["lam"], row["quadrature"])
        have = {r["seed"] for r in groups.get(key, [])}
        for i, seed in enumerate(row["seeds"]):
            if seed in have:
                continue
            results = dict(
                loss=row["loss"][i], mse=row["mse_e3"][i] / 1e3, nfe=row["nfe"][i], train_seconds=60 * row["train_minutes"][i]
            )
            prior_nfe = (row["first_epoch_nfe"][i], row["final_epoch_nfe"][i])
            groups.setdefault(key, []).append(dict(seed=seed, results=results, epochs=[], prior_nfe=prior_nfe))
    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
    return groups


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
                first_epoch_nfe=[_epoch_nfe(r, 0) for r in runs],
                final_epoch_nfe=[_epoch_nfe(r, -1) for r in runs],
                prior=[r["seed"] for r in runs if "prior_nfe" in r],
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
        runs = [r for r in runs if r["epochs"]]  # rows carried over by --prior have no curve
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
    p.add_argument("--archive", action="store_true", help="copy the finished runs' results and epoch logs into --dest/runs first")
    p.add_argument("--prior", help="an earlier summary.json whose (row, seed) pairs the runs lack are kept")
    ns = p.parse_args(argv)
    if ns.from_summary:
        with open(os.path.join(ns.dest, "summary.json"), encoding="utf-8") as fh:
            saved = json.load(fh)
        text = latent_table(saved["rows"], reference(ROOT)) + unfinished_note(saved["unfinished"])
        write_text(os.path.join(ns.dest, "table.md"), text)
        print(text)
        return
    if ns.archive:
        archive(ns.runs, os.path.join(ns.dest, "runs"))
    groups, unfinished = collect(os.path.join(ns.dest, "runs") if ns.archive else ns.runs)
    if ns.archive:
        unfinished = collect(ns.runs)[1]
    if ns.prior:  # read before summary.json (maybe the same file) is rewritten below
        groups = with_prior(groups, ns.prior)
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
