"""Side-by-side timing of two taynode trees on benchmarks/taylor_methods.py's models.

    python benchmarks/taylor_versions.py --baseline /path/to/old/tree --candidate . --rounds 4 \
        --json benchmarks/results/taylor_versions_29.json

Runs taylor_methods.py (this tree's copy, for both) once per round for each tree, each run in its
own process with PYTHONPATH=<tree>/python, alternating baseline/candidate and swapping who goes
first every round (B C, C B, B C, …) so that drifting machine load hits both alike. Prints per
(model, K, method) the median forward and gradient times over the rounds and the ratio
candidate / baseline (> 1: the candidate is slower); ``--json`` also writes every round's wall,
CPU and compile times, the per-round ratios (each round's two runs are adjacent in time), both
trees' commits and their jaxpr hashes (benchmarks/taylor_jaxpr_hash.py: equal means the same
program), from which ``benchmarks/tables.py`` builds the docs tables ``taylor-versions-*``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("fwd_ms", "grad_ms", "fwd_cpu_ms", "grad_cpu_ms", "compile_fwd_s", "compile_grad_s")


def run_once(tree, out, args):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "python"))
    cmd = [sys.executable, os.path.join(HERE, "taylor_methods.py"), "--out", out, *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "taylor_methods.csv")) as fh:
        return list(csv.DictReader(fh))


def commit(tree):
    out = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "python"], capture_output=True, text=True).stdout
    return out.stdout.strip() + ("+dirty" if dirty.strip() else "")


def programs(tree, methods, orders):
    """``{method: {"model K kind": jaxpr hash}}`` of ``tree`` (benchmarks/taylor_jaxpr_hash.py):
    equal hashes in two trees mean the same compiled program, whatever the machine's load."""
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "python"))
    out = {}
    for method in methods:
        cmd = [sys.executable, os.path.join(HERE, "taylor_jaxpr_hash.py"), "--method", method, "--orders", orders]
        lines = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.splitlines()
        out[method] = {" ".join(w[:3]): w[4] for w in (line.split() for line in lines)}
    return out


def measure(trees, rounds, args):
    """``times[(tree name, (model, K, method), kind)]``: one median per round, in round order."""
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                for row in run_once(tree, os.path.join(tmp, f"{name}{r}"), args):
                    key = (row["model"], int(row["K"]), row["method"])
                    for kind in KINDS:
                        times.setdefault((name, key, kind), []).append(float(row[kind]))
                print(f"round {r + 1}/{rounds}: {name} done", flush=True)
    return times


def summary_rows(times):
    rows = []
    for key in sorted({k for (_, k, _) in times}):
        row = dict(model=key[0], K=key[1], method=key[2])
        for kind in KINDS:
            b, c = times[("baseline", key, kind)], times[("candidate", key, kind)]
            row[kind] = dict(
                baseline=b,
                candidate=c,
                ratio_of_medians=statistics.median(c) / statistics.median(b),
                round_ratios=[y / x for x, y in zip(b, c)],
            )
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True)
    p.add_argument("--candidate", default=".")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", choices=["mlp", "conv", "both"], default="both")
    p.add_argument("--orders", default="2,4")
    p.add_argument("--methods", default="incremental,jet")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--eager", action="store_true", help="time the derivatives op by op (taylor_methods.py --eager)")
    p.add_argument("--json", help="write every round's times and the ratios here")
    ns = p.parse_args(argv)
    args = ["--model", ns.model, "--orders", ns.orders, "--methods", ns.methods, "--repeats", str(ns.repeats)]
    args += ["--eager"] if ns.eager else []
    trees = {"baseline": ns.baseline, "candidate": ns.candidate}
    rows = summary_rows(measure(trees, ns.rounds, args))
    print("| model | K | method | baseline fwd ms | candidate fwd ms | ratio | baseline grad ms | candidate grad ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = []
        for kind in KINDS[:2]:
            r = row[kind]
            cells += [f"{statistics.median(r['baseline']):.2f}", f"{statistics.median(r['candidate']):.2f}"]
            cells.append(f"{r['ratio_of_medians']:.2f}")
        print(f"| {row['model']} | {row['K']} | {row['method']} | " + " | ".join(cells) + " |")
    if ns.json:
        meta = dict(
            command="python benchmarks/taylor_versions.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            trees={name: commit(tree) for name, tree in trees.items()},
            jax=jax.__version__,
            cpus=os.cpu_count(),
            rounds=ns.rounds,
            repeats=ns.repeats,
            mode="eager" if ns.eager else "jit",
            programs={name: programs(tree, ns.methods.split(","), ns.orders) for name, tree in trees.items()},
        )
        with open(ns.json, "w") as fh:
            json.dump(dict(meta, rows=rows), fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
