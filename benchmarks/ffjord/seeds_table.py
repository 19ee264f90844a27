"""FFJORD across seeds: NFE saving and NLL change of each regularized model per seed, with mean and spread.

Reads the ``results.json`` of ``taynode study ffjord-table2`` runs, one folder per (dataset, seed)
named ``<dataset>-seed<s>`` (``runs/ffjord_seeds.sh`` makes them), and writes ``seeds.md`` and
``seeds.json`` into ``--dest``. A saving is claimed only where every seed has one::

    python benchmarks/ffjord/seeds_table.py --runs runs/ffjord-seeds --dest benchmarks/ffjord
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re

import numpy as np

from taynode.studies import write_json, write_text
from taynode.studies.batch import mean_range

NAMES = {"none": "unregularized", "rnode": "RNODE (𝒦+ℬ)", "r2": "TayNODE (R₂)"}


def load(runs: str) -> dict:
    """``{dataset: {seed: {reg: row}}}`` from the adaptive-training rows."""
    out = {}
    for path in sorted(glob.glob(os.path.join(runs, "*-seed*", "results.json"))):
        m = re.fullmatch(r"(.+)-seed(\d+)", os.path.basename(os.path.dirname(path)))
        with open(path) as fh:
            rows = json.load(fh)["rows"]
        out.setdefault(m.group(1), {})[int(m.group(2))] = {
            r["regularization"]: r for r in rows if r["training"].startswith("adaptive")
        }
    return out


def table(data: dict) -> tuple[str, dict]:
    lines, summary = [], {}
    for ds, seeds in data.items():
        metric = "bits/dim" if ds == "mnist" else "NLL (nats)"
        lines += [
            f"### {ds} ({len(seeds)} seeds: {', '.join(map(str, sorted(seeds)))})",
            "",
            f"| model | test {metric} | eval NFE | NFE saving per seed | {metric} change per seed | saving on every seed |",
            "|---|---|---|---|---|---|",
        ]
        regs = [r for r in NAMES if all(r in s for s in seeds.values())]
        for reg in regs:
            nll = [seeds[s][reg]["nll"] for s in sorted(seeds)]
            nfe = [seeds[s][reg]["nfe"] for s in sorted(seeds)]
            if reg == "none":
                lines.append(f"| {NAMES[reg]} | {mean_range(nll, '{:.4f}')} | {mean_range(nfe, '{:.1f}')} | | | |")
                continue
            base_nll = [seeds[s]["none"]["nll"] for s in sorted(seeds)]
            base_nfe = [seeds[s]["none"]["nfe"] for s in sorted(seeds)]
            saving = np.asarray(base_nfe) / np.asarray(nfe)
            change = 100 * (np.asarray(nll) - base_nll) / np.abs(base_nll)
            agree = bool(np.all(saving > 1))
            lines.append(
                f"| {NAMES[reg]} | {mean_range(nll, '{:.4f}')} | {mean_range(nfe, '{:.1f}')} | "
                f"{', '.join(f'{x:.2f}×' for x in saving)} (mean {saving.mean():.2f}×) | "
                f"{', '.join(f'{x:+.2f} %' for x in change)} | {'yes' if agree else 'no'} |"
            )
            summary.setdefault(ds, {})[reg] = dict(
                seeds=sorted(seeds),
                nll=nll,
                nfe=nfe,
                saving=saving.tolist(),
                nll_change_percent=change.tolist(),
                saving_on_every_seed=agree,
            )
        lines.append("")
    return "\n".join(lines), summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/ffjord-seeds")
    p.add_argument("--dest", default="benchmarks/ffjord")
    ns = p.parse_args(argv)
    data = load(ns.runs)
    if not data:
        raise SystemExit(f"no results.json under {ns.runs}/<dataset>-seed<s>/")
    text, summary = table(data)
    print(text)
    write_text(os.path.join(ns.dest, "seeds.md"), text)
    write_json(os.path.join(ns.dest, "seeds.json"), summary)


if __name__ == "__main__":
    main()
