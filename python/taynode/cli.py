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


def _study_order(ns):
    from .studies import order

    given = dict(tol=ns.tol, dim=ns.dim, trajectories=ns.trajectories, seed=ns.seed)
    if ns.degrees is not None:
        given["degrees"] = tuple(ns.degrees)
    if ns.solvers is not None:
        given["solvers"] = tuple(ns.solvers)
    cfg = order.OrderConfig(**{k: v for k, v in given.items() if v is not None})
    summary = order.run(cfg, ns.out)
    print(order.markdown_table(summary))
    print(f"figure: {summary['figure']}")


def _study_latent(ns):
    from .studies import latent

    cfg = latent.preset(ns.preset, epochs=ns.epochs, lam=ns.lam, seed=ns.seed, max_records=ns.max_records)
    summary = latent.run(cfg, ns.out, root=ns.data, progress=not ns.no_progress, resume=ns.resume)
    print(f"\nFig. 4 Latent ODE on PhysioNet 2012 ({summary['data']['train']} train / {summary['data']['test']} test records), "
          f"dopri5 at rtol=atol={cfg.eval_tol} (float64)")
    print(latent.markdown_table(summary))
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
    study = sub.add_parser("study", help="studies of the paper").add_subparsers(dest="study", required=True)
    o = study.add_parser("order", help="Fig. 2: steps of order-m RK solvers on degree-K polynomial trajectories")
    o.add_argument("--out", default="runs/order", help="output folder (fig2.png, order.md, order.csv, results.json)")
    o.add_argument("--tol", type=float, help="rtol = atol of every solve (default 1.4e-8)")
    o.add_argument("--degrees", type=int, nargs="+", help="polynomial degrees K (default 0 … 8)")
    o.add_argument("--solvers", nargs="+", help="solver names (default: all of orders 1–5 and 8)")
    o.add_argument("--dim", type=int, help="dimension of the trajectories (default 4)")
    o.add_argument("--trajectories", type=int, help="random trajectories per degree (default 8)")
    o.add_argument("--seed", type=int, help="seed of the random coefficients (default 0)")
    o.set_defaults(run=_study_order)
    lo = study.add_parser("latent-ode", help="Fig. 4: Latent ODE on PhysioNet 2012, unregularized vs R3")
    lo.add_argument("--preset", default="cpu", help="cpu (about 20 min on 2 cores) or paper (default cpu)")
    lo.add_argument("--out", default="runs/latent_ode", help="output folder (fig4.png, table.md, results.json, run folders)")
    lo.add_argument("--data", help="folder with set-a.tar.gz, Outcomes-a.txt, ... (default: $TAYNODE_PHYSIONET or ../shared/data/physionet2012)")
    lo.add_argument("--epochs", type=int, help="training epochs per model (default: the preset's)")
    lo.add_argument("--lam", type=float, help="weight λ of R3 (default 1e-2)")
    lo.add_argument("--max-records", type=int, help="use a random subset of this many records")
    lo.add_argument("--seed", type=int, help="seed for the split, initialization and batches (default 0)")
    lo.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    lo.add_argument("--no-progress", action="store_true")
    lo.set_defaults(run=_study_latent)
    ns = p.parse_args(argv)
    ns.run(ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
