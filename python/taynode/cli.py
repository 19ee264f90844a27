"""Command line: ``taynode demo``."""

from __future__ import annotations

import argparse
import sys


def _demo(ns):
    from .studies import toy

    given = {k: v for k, v in dict(iters=ns.iters, lam=ns.lam, seed=ns.seed).items() if v is not None}
    cfg = toy.ToyConfig(**given)
    summary = toy.run(cfg, ns.out, progress=not ns.no_progress)
    print(f"\nFig. 1 toy: fit z(1) = z(0) + z(0)^3, dopri5 at rtol=atol={cfg.eval_tol} (float64)")
    print(f"{'model':<24}{'train MSE':>12}{'NFE':>8}{'R' + str(cfg.order):>12}")
    for name, r in summary["results"].items():
        print(f"{name:<24}{r['mse']:>12.2e}{r['nfe']:>8d}{r['R']:>12.3g}")
    print(f"figure: {summary['figure']}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="taynode", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the paper's Fig. 1 toy: unregularized vs R3-regularized")
    d.add_argument("--iters", type=int, help="training iterations per model (default 1500)")
    d.add_argument("--lam", type=float, help="weight λ of R3 (default 1.0)")
    d.add_argument("--seed", type=int, help="seed for initialization and batches (default 0)")
    d.add_argument("--out", default="runs/demo", help="output folder (fig1.png, results.json)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(run=_demo)
    ns = p.parse_args(argv)
    ns.run(ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
