"""Command line: ``taynode demo``, ``taynode train mnist``, ``taynode eval``."""

from __future__ import annotations

import argparse
import sys


# Overrides of an MNIST preset, shared by `train mnist` and `study mnist-fig5..8`: (flag, type, help).
_MNIST_OPTIONS = (
    ("--seed", int, "seed (default 0)"),
    ("--epochs", int, "override the preset's epochs"),
    ("--batch", int, "override the preset's batch size"),
    ("--train-examples", int, "use the first N training images"),
    ("--train-tol", float, "rtol = atol of the training solves"),
    ("--eval-test-examples", int, "test images evaluated (default: the preset's)"),
    ("--eval-train-examples", int, "training images evaluated"),
    ("--eval-reg-examples", int, "images on which R_K is evaluated"),
    ("--epoch-eval-examples", int, "test images evaluated after each epoch"),
    ("--data", str, "MNIST file or folder (default: $TAYNODE_MNIST or ../shared/data/mnist)"),
    ("--steer", float, "STEER: train with the end time drawn from [1 - b, 1 + b] each step (default 0: off)"),
)

# How the regularizers are computed in training; shared by every training command.
_QUADRATURE_OPTIONS = (
    ("--quadrature", str, "integrated (the paper's: in the ODE state, at every solver stage) or sampled "
                          "(unbiased: at --samples random times per solve) (default integrated)"),
    ("--samples", int, "sample times per solve with --quadrature sampled (default 1)"),
)


def _add_mnist_options(parser):
    for flag, typ, text in _MNIST_OPTIONS + _QUADRATURE_OPTIONS:
        parser.add_argument(flag, type=typ, help=text)


def _add_quadrature_options(parser):
    for flag, typ, text in _QUADRATURE_OPTIONS:
        parser.add_argument(flag, type=typ, help=text)


def _given(ns, options) -> dict:
    """The options of ``options`` that were given (unset ones left out)."""
    names = (flag[2:].replace("-", "_") for flag, _, _ in options)
    return {k: v for k in names if (v := getattr(ns, k)) is not None}


def _mnist_overrides(ns) -> dict:
    """The given preset overrides (unset ones left out)."""
    return _given(ns, _MNIST_OPTIONS + _QUADRATURE_OPTIONS)


def _add_parallel_options(parser):
    g = parser.add_argument_group("several devices or hosts (data parallel; README: 'Several devices and hosts')")
    g.add_argument("--devices", type=int, help="devices to split each batch over (default: all visible; the batch must divide)")
    g.add_argument("--sharding", default="global", choices=["global", "per-shard"],
                   help="global: one adaptive step-size sequence for the whole batch (default); per-shard: each device its own solve")
    g.add_argument("--coordinator", help="HOST:PORT of process 0, for a multi-process run (or $JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, help="processes in the run (or $JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1 (or $JAX_PROCESS_ID)")
    g.add_argument("--dist-timeout", type=int, default=300, help="seconds to wait for all processes to connect (default 300)")
    g.add_argument("--heartbeat-timeout", type=int, default=60, help="seconds after which a silent process counts as dead (default 60)")


def _start_parallel(ns):
    """Join the multi-process run when asked (before any JAX computation)."""
    import os

    if ns.coordinator or ns.num_processes or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        from .train.parallel import init_distributed

        init_distributed(ns.coordinator, ns.num_processes, ns.process_id, timeout=ns.dist_timeout, heartbeat_timeout=ns.heartbeat_timeout)
    return dict(devices=ns.devices, sharding=ns.sharding)


def _train_mnist(ns):
    from .studies import mnist

    parallel = _start_parallel(ns)
    cfg = mnist.config(
        ns.preset, reg=ns.reg, lam=ns.lam, solver=ns.solver, activation=ns.activation, max_steps=ns.max_steps,
        checkpoint_every=ns.checkpoint_every, **_mnist_overrides(ns),
    )
    out = ns.out or f"runs/mnist-{cfg.preset}-{cfg.reg}-lam{cfg.lam:g}-seed{cfg.seed}"
    from .train import NonFiniteLossError

    try:
        s = mnist.run(cfg, out, resume=ns.resume, progress=not ns.no_progress, **parallel)
    except NonFiniteLossError as e:
        raise SystemExit(f"taynode train mnist: {e}") from None
    import jax

    if jax.process_index() != 0:
        return
    _print_mnist(s)
    print(f"training time {s['train_seconds']:.0f} s; results: {out}/results.json")


def _print_mnist(s):
    rs = sorted(k for k in s if k.startswith("test_R"))
    print(f"{'split':<7}{'accuracy':>10}{'NFE':>8}" + "".join(f"{k[5:]:>12}" for k in rs) + "   (dopri5, tol 1.4e-8, float64)")
    for split in ("test", "train"):
        vals = "".join(f"{s[f'{split}_' + k[5:]]:>12.3g}" for k in rs)
        print(f"{split:<7}{s[split + '_acc']:>10.4f}{s[split + '_nfe']:>8.1f}{vals}   ({s[split + '_examples']} images)")


def _eval(ns):
    from .studies import mnist

    s = mnist.evaluate_checkpoint(ns.checkpoint, data=ns.data, eval_test_examples=ns.eval_test_examples,
                                  eval_train_examples=ns.eval_train_examples, eval_reg_examples=ns.eval_reg_examples)
    print(f"{s['checkpoint']} (step {s['step']}, reg {s['reg']}, λ={s['lam']:g})")
    _print_mnist(s)


def _study_mnist_fig3(ns):
    from .studies import mnist

    over = dict(seed=ns.seed, epochs=ns.epochs, batch=ns.batch, train_examples=ns.train_examples, data=ns.data)
    s = mnist.fig3(ns.out, lam=ns.lam, preset=ns.preset, progress=not ns.no_progress, **over)
    print(f"{'model':<20}{'test acc':>10}{'test NFE':>10}{'train min':>11}")
    for name, r in s["results"].items():
        print(f"{name:<20}{r['test_acc']:>10.4f}{r['test_nfe']:>10.1f}{r['train_seconds'] / 60:>11.1f}")
    print(f"figure: {s['figure']}")


def _study_mnist_figs(ns):
    from .studies import mnist_figs

    over = _mnist_overrides(ns) | ({} if ns.eval_orders is None else dict(eval_orders=tuple(ns.eval_orders)))
    f5 = {} if ns.lams is None else dict(lams=tuple(ns.lams))
    f6 = {k: tuple(v) for k, v in dict(solvers=ns.solvers, orders=ns.orders).items() if v is not None}
    fig = ns.study.removeprefix("mnist-")
    kw = dict(fig5=f5, fig6=f6, fig7=dict(fig5_kw=f5, fig6_kw=f6), fig8=dict(fig5_kw=f5, fig6_kw=f6) | ({} if ns.tols is None else dict(tols=tuple(ns.tols))))[fig]
    s = getattr(mnist_figs, fig)(ns.out, preset=ns.preset, progress=not ns.no_progress, **kw, **over)
    with open(s["figure"][: -len(".png")] + ".md") as fh:
        print(fh.read())
    print(f"figure: {s['figure']}; tables: {s['figure'][:-4]}.md, .csv, .json")


def _demo(ns):
    from .studies import toy

    given = {k: v for k, v in dict(iters=ns.iters, lam=ns.lam, seed=ns.seed).items() if v is not None} | _given(ns, _QUADRATURE_OPTIONS)
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

    cfg = latent.preset(ns.preset, epochs=ns.epochs, lam=ns.lam, seed=ns.seed, max_records=ns.max_records, batch=ns.batch, **_given(ns, _QUADRATURE_OPTIONS))
    summary = latent.run(cfg, ns.out, root=ns.data, progress=not ns.no_progress, resume=ns.resume)
    print(f"\nFig. 4 Latent ODE on PhysioNet 2012 ({summary['data']['train']} train / {summary['data']['test']} test records), "
          f"dopri5 at rtol=atol={cfg.eval_tol} (float64)")
    print(latent.markdown_table(summary))
    print(f"figure: {summary['figure']}")


def _compare_solvers(ns):
    from . import compare

    given = dict(problems=ns.problems, tols=ns.tols, implementations=ns.implementations)
    cfg = compare.CompareConfig(**{k: tuple(v) for k, v in given.items() if v is not None}, repeats=ns.repeats, model=ns.model)
    summary = compare.run(cfg, ns.out)
    print()
    print(compare.markdown(summary))
    print(f"table: {ns.out}/compare.md, {ns.out}/compare.csv; figure: {summary.get('figure', '(no rows)')}")


def _study_ffjord(ns):
    from .studies import ffjord

    given = dict(iters=ns.iters, lam_r2=ns.lam_r2, lam_rnode=ns.lam_rnode, seed=ns.seed, dataset=ns.dataset, data=ns.data, **_given(ns, _QUADRATURE_OPTIONS))
    if ns.fixed_steps is not None:
        given["fixed_steps"] = tuple(ns.fixed_steps)
    if ns.regs is not None:
        given["regs"] = tuple(ns.regs)
    cfg = ffjord.preset(ns.preset, **given)
    summary = ffjord.run_table(cfg, ns.out, progress=not ns.no_progress, resume=ns.resume)
    print(f"\nTable 2 at CPU scale: FFJORD on {cfg.dataset} ({summary['train_examples']} train / {summary['test_examples']} test points); "
          f"evaluation: dopri5 at rtol=atol={cfg.eval_tol:g} (float64)")
    print(ffjord.markdown_table(summary))
    print(f"table: {ns.out}/table.md, {ns.out}/table.csv" + (f"; figure: {summary['figure']}" if "figure" in summary else ""))


# Errors that describe bad input or a missing resource: shown as one line, not a traceback.
# (ValueError covers CheckpointError and DataError, NotImplementedError UnsupportedPrimitiveError,
# FloatingPointError NonFiniteLossError, RuntimeError JuliaUnavailableError and JAX's runtime
# checks, e.g. the solver's "maximum number of steps" error.)
_USER_ERRORS = (ValueError, TypeError, OSError, NotImplementedError, FloatingPointError, RuntimeError)


def _first_part(msg: str) -> str:
    """The message without the explanation that JAX/equinox runtime errors append after a
    line of dashes."""
    lines = []
    for line in msg.strip().splitlines():
        if line.startswith("----"):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except _USER_ERRORS as e:
        if debug:
            raise
        msg = _first_part(str(e)) or type(e).__name__
        print(f"taynode: error: {msg} (run with --debug for the traceback)", file=sys.stderr)
        return 2


def _main(argv):
    p = argparse.ArgumentParser(prog="taynode", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the full Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the paper's Fig. 1 toy: unregularized vs R3-regularized")
    d.add_argument("--iters", type=int, help="training iterations per model (default 1500)")
    d.add_argument("--lam", type=float, help="weight λ of R3 (default 1.0)")
    d.add_argument("--seed", type=int, help="seed for initialization and batches (default 0)")
    d.add_argument("--out", default="runs/demo", help="output folder (fig1.png, results.json)")
    d.add_argument("--no-progress", action="store_true")
    _add_quadrature_options(d)
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
    f3 = study.add_parser("mnist-fig3", help="Fig. 3: NFE and training error during MNIST training, with and without R3")
    f3.add_argument("--out", default="runs/mnist-small", help="folder of the runs and fig3.png (reuses finished runs)")
    f3.add_argument("--lam", type=float, default=10000.0, help="weight λ of R3 (default 10000)")
    f3.add_argument("--preset", default="small", help="small or paper (default small)")
    f3.add_argument("--seed", type=int, help="seed (default 0)")
    f3.add_argument("--epochs", type=int, help="override the preset's epochs")
    f3.add_argument("--train-examples", type=int, help="use the first N training images")
    f3.add_argument("--batch", type=int, help="override the preset's batch size")
    f3.add_argument("--data", help="MNIST file or folder")
    f3.add_argument("--no-progress", action="store_true")
    f3.set_defaults(run=_study_mnist_fig3)
    for n, what in (("5", "λ sweep of R2: test NFE against unregularized training loss"),
                    ("6", "loss/NFE trade-off of heun, bosh3, dopri5 when regularizing R1..R4"),
                    ("7", "R_K against NFE across the runs of Figs. 5 and 6 (rank correlation)"),
                    ("8", "(a) solver error vs tolerance, (b) train vs test NFE, (c) train/test error vs λ")):
        fq = study.add_parser(f"mnist-fig{n}", help=f"Fig. {n}: {what} (runs cached in OUT/runs, shared by Figs. 5-8)")
        fq.add_argument("--out", default="runs/mnist-figs", help="output folder (figN.png, figN.md/.csv/.json, runs/)")
        fq.add_argument("--preset", default="fig", help="fig (1-2 min per run), small or paper (default fig)")
        fq.add_argument("--lams", type=float, nargs="+", help="Fig. 5's λ values of R2, 0 = unregularized (default 0 100 300 1000 3000 10000)")
        fq.add_argument("--solvers", nargs="+", help="Fig. 6's solvers (default heun bosh3 dopri5)")
        fq.add_argument("--orders", type=int, nargs="+", help="Fig. 6's orders K of R_K (default 1 2 3 4)")
        _add_mnist_options(fq)
        fq.add_argument("--eval-orders", type=int, nargs="+", help="orders K of R_K evaluated (default 1 2 3 4)")
        if n == "8":
            fq.add_argument("--tols", type=float, nargs="+", help="tolerances of panel (a) (default 1e-3 ... 1e-8)")
        else:
            fq.set_defaults(tols=None)
        fq.add_argument("--no-progress", action="store_true")
        fq.set_defaults(run=_study_mnist_figs)
    lo = study.add_parser("latent-ode", help="Fig. 4: Latent ODE on PhysioNet 2012, unregularized vs R3")
    lo.add_argument("--preset", default="cpu", help="cpu (about 20 min on 2 cores) or paper (default cpu)")
    lo.add_argument("--out", default="runs/latent_ode", help="output folder (fig4.png, table.md, results.json, run folders)")
    lo.add_argument("--data", help="folder with set-a.tar.gz, Outcomes-a.txt, ... (default: $TAYNODE_PHYSIONET or ../shared/data/physionet2012)")
    lo.add_argument("--epochs", type=int, help="training epochs per model (default: the preset's)")
    lo.add_argument("--lam", type=float, help="weight λ of R3 (default 1e-2)")
    lo.add_argument("--max-records", type=int, help="use a random subset of this many records")
    lo.add_argument("--batch", type=int, help="records per training batch (default 50; at most the training records)")
    lo.add_argument("--seed", type=int, help="seed for the split, initialization and batches (default 0)")
    _add_quadrature_options(lo)
    lo.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    lo.add_argument("--no-progress", action="store_true")
    lo.set_defaults(run=_study_latent)
    ff = study.add_parser("ffjord-table2", help="Table 2 at CPU scale: FFJORD unregularized vs RNODE vs TayNODE (R2), adaptive and fixed-grid training")
    ff.add_argument("--preset", default="cpu", help="cpu (a 2-D toy, 6-13 min on 2 shared cores), tiny (smoke test), mnist (reduced 14x14 MNIST, about 30 min of one CPU core) or miniboone (needs MAF's data.npy and a GPU) (default cpu)")
    ff.add_argument("--out", default="runs/ffjord", help="output folder (table.md, table.csv, results.json, densities.png, runs/)")
    ff.add_argument("--dataset", help="2-D toy: moons, 8gaussians, pinwheel, checkerboard, rings (default: the preset's)")
    ff.add_argument("--data", help="MINIBOONE data.npy or its folder, or the MNIST file or folder (default: $TAYNODE_MINIBOONE / $TAYNODE_MNIST or ../shared/data)")
    ff.add_argument("--iters", type=int, help="training steps per model (default: the preset's)")
    ff.add_argument("--lam-r2", type=float, help="TayNODE's weight of R2")
    ff.add_argument("--lam-rnode", type=float, help="RNODE's weight of each of K and B")
    ff.add_argument("--fixed-steps", type=int, nargs="*", help="fixed-grid (rk4) step counts to train with (default: the preset's; none: adaptive only)")
    ff.add_argument("--regs", nargs="+", choices=["none", "rnode", "r2"], help="models to train (default all three)")
    ff.add_argument("--seed", type=int, help="seed for data, initialization, batches and noise (default 0)")
    _add_quadrature_options(ff)
    ff.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    ff.add_argument("--no-progress", action="store_true")
    ff.set_defaults(run=_study_ffjord)
    t = sub.add_parser("train", help="train a model").add_subparsers(dest="task", required=True)
    m = t.add_parser("mnist", help="the paper's MNIST classifier (Sec. 6.1)")
    m.add_argument("--preset", default="small", help="small (about 10 min on 2 cores), fig (1-2 min, for the figure studies) or paper (default small)")
    m.add_argument("--reg", default="none", help="none, r<K> (e.g. r3), kinetic+jacobian (RNODE) (default none)")
    m.add_argument("--lam", type=float, help="weight λ of the regularizers (required with --reg)")
    m.add_argument("--solver", help="training solver (default dopri5)")
    m.add_argument("--activation", help="sigmoid (default) or softplus")
    _add_mnist_options(m)
    m.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the preset's)")
    m.add_argument("--max-steps", type=int, help="most solver steps per solve; a solve needing more ends the run as diverged (default 4096)")
    m.add_argument("--out", help="run folder (default runs/mnist-<preset>-<reg>-lam<λ>-seed<seed>)")
    m.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    m.add_argument("--no-progress", action="store_true")
    _add_parallel_options(m)
    m.set_defaults(run=_train_mnist)
    e = sub.add_parser("eval", help="evaluate an MNIST checkpoint: test/train accuracy, NFE, R_K")
    e.add_argument("--data", help="MNIST file or folder (default: $TAYNODE_MNIST or ../shared/data/mnist)")
    e.add_argument("--eval-test-examples", type=int, help="test images evaluated (default all)")
    e.add_argument("--eval-train-examples", type=int, help="training images evaluated")
    e.add_argument("--eval-reg-examples", type=int, help="images on which R_K is evaluated")
    e.add_argument("checkpoint", help="a checkpoint.npz or a run folder")
    e.set_defaults(run=_eval)
    c = sub.add_parser("compare-solvers", help="the same problems solved by taynode, SciPy, torchdiffeq and Julia")
    c.add_argument("--problems", nargs="+", help="lotka_volterra van_der_pol two_body neural_ode (default: all)")
    c.add_argument("--tols", type=float, nargs="+", help="rtol = atol values swept (default 1e-4 1e-6 1e-8 1e-10)")
    c.add_argument("--implementations", nargs="+", help="taynode scipy torchdiffeq julia (default: all; unavailable ones are skipped with the reason)")
    c.add_argument("--repeats", type=int, default=3, help="timed solves after the warm-up one (median reported)")
    c.add_argument("--model", help="portable .npz of the neural ODE (default: OUT/neural_ode.npz, trained when absent)")
    c.add_argument("--out", default="runs/compare", help="output folder (compare.md, compare.csv, work_precision.png, results.json)")
    c.set_defaults(run=_compare_solvers)
    ns = p.parse_args(argv)
    from .train.parallel import DistributedError

    try:
        ns.run(ns)
    except DistributedError as e:
        import os

        print(f"taynode: {e}", file=sys.stderr, flush=True)
        os._exit(1)  # not JAX's exit-time shutdown, which would wait for the dead peer and then abort
    return 0


if __name__ == "__main__":
    sys.exit(main())
