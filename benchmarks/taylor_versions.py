"""Side-by-side timing of two taynode trees on benchmarks/taylor_methods.py's models.

    python benchmarks/taylor_versions.py --baseline /path/to/old/tree --candidate . --rounds 2

Runs taylor_methods.py once per round for each tree, alternating (baseline, candidate,
baseline, …) so that drifting machine load hits both alike, each run in its own process with
PYTHONPATH=<tree>/python; prints per (model, K, method) the median forward and gradient times
over the rounds and the ratio candidate / baseline (< 1: the candidate is faster).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_once(tree, out, args):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "python"))
    cmd = [sys.executable, os.path.join(HERE, "taylor_methods.py"), "--out", out, *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "taylor_methods.csv")) as fh:
        return list(csv.DictReader(fh))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True)
    p.add_argument("--candidate", default=".")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--orders", default="2,4")
    p.add_argument("--methods", default="incremental,jet")
    p.add_argument("--repeats", type=int, default=10)
    ns = p.parse_args(argv)
    args = ["--orders", ns.orders, "--methods", ns.methods, "--repeats", str(ns.repeats)]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ns.rounds):
            for name, tree in (("baseline", ns.baseline), ("candidate", ns.candidate)):
                for row in run_once(tree, os.path.join(tmp, f"{name}{r}"), args):
                    key = (row["model"], int(row["K"]), row["method"])
                    for kind in ("fwd_ms", "grad_ms"):
                        times.setdefault((name, key, kind), []).append(float(row[kind]))
                print(f"round {r + 1}/{ns.rounds}: {name} done", flush=True)
    print("| model | K | method | baseline fwd ms | candidate fwd ms | ratio | baseline grad ms | candidate grad ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted({k for (_, k, _) in times}):
        cells = []
        for kind in ("fwd_ms", "grad_ms"):
            b = statistics.median(times[("baseline", key, kind)])
            c = statistics.median(times[("candidate", key, kind)])
            cells += [f"{b:.2f}", f"{c:.2f}", f"{c / b:.2f}"]
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
