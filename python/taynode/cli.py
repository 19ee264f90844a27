"""Command line: ``taynode demo`` (the paper's Fig. 1), ``taynode study <name>`` (Figs. 2-8, Table 2),
``taynode train mnist``, ``taynode eval`` (an MNIST checkpoint) and ``taynode compare-solvers``.

The flags that set a study's configuration are generated from its config dataclass: the flag
``--train-tol`` sets the field ``train_tol``, its help is the field's documentation
(:func:`taynode.studies.setting`) and the default it shows is read from the config (or from each
preset), so the help cannot drift from the code. Process-wide JAX settings are chosen here, not in
the library: every command runs with 64-bit types enabled (the studies evaluate in float64).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from . import __version__

# --help's text: plain words (the module docstring above is Sphinx markup).
DESCRIPTION = (
    "Learning differential equations that are easy to solve (Kelly et al., NeurIPS 2020): "
    "the paper's Fig. 1 toy (demo), its studies (study), MNIST training and evaluation (train, eval) "
    "and a solver comparison (compare-solvers). Compiled programs are cached in $XDG_CACHE_HOME/taynode/jax "
    "(~/.cache/taynode/jax); TAYNODE_NO_COMPILE_CACHE=1 turns the cache off."
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(v) -> str:
    if isinstance(v, tuple):
        return " ".join(map(str, v)) if v else "none"
    return str(v)


def _flag_type(f, examples):
    """argparse's ``type`` and ``nargs`` for the config field ``f`` (``examples``: its values)."""
    base = str(f.type).replace(" | None", "").replace("None | ", "").strip()
    if base.startswith("tuple"):
        elems = [x for v in examples if isinstance(v, tuple) for x in v]
        return (type(elems[0]) if elems else str), "+"
    types = {"int": int, "float": float, "str": str}
    if base not in types:
        raise TypeError(f"config field {f.name} of type {f.type!r} has no command-line form")
    return types[base], None


def _add_config_flags(parser, cls, names, presets=None, **extra):
    """``--<name>`` for each field ``names`` of the config dataclass ``cls``, with the field's
    help and its default (one value, or each preset's); unset flags stay ``None`` (the config's
    value is used). ``extra``: argparse keywords per field (e.g. ``choices``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{name} has no help text: declare it with taynode.studies.setting(default, help)")
        values = {p: getattr(c, name) for p, c in presets.items()} if presets else {"": f.default}
        typ, nargs = _flag_type(f, list(values.values()))
        shown = {_show(v) for v in values.values()}
        if len(shown) == 1:
            default = f"default {shown.pop()}"
        else:
            default = "default: the preset's: " + ", ".join(f"{p} {_show(v)}" for p, v in values.items())
        kw = dict(type=typ, help=f"{f.metadata['help']} ({default})".replace("%", "%%")) | ({"nargs": nargs} if nargs else {})
        parser.add_argument(_flag(name), dest=name, **kw | extra.get(name, {}))


def _given(ns, names) -> dict:
    """The flags of ``names`` that were given (unset ones left out), lists as tuples."""
    out = {}
    for k in names:
        v = getattr(ns, k)
        if v is not None:
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def _add_preset(parser, presets, default, notes=None):
    notes = notes or {}
    names = ", ".join(f"{p} ({notes[p]})" if p in notes else p for p in presets)
    parser.add_argument("--preset", default=default, help=f"one of: {names} (default {default})")


def _default_of(fn, name):
    import inspect

    return inspect.signature(fn).parameters[name].default


# Overrides of an MNIST preset, shared by `train mnist` and `study mnist-fig5..8`.
_MNIST_OPTIONS = (
    "seed",
    "epochs",
    "batch",
    "train_examples",
    "train_tol",
    "eval_test_examples",
    "eval_train_examples",
    "eval_reg_examples",
    "epoch_eval_examples",
    "data",
    "steer",
    "quadrature",
    "samples",
)
_QUADRATURE_OPTIONS = ("quadrature", "samples")
_TRAIN_MNIST_OPTIONS = ("reg", "lam", "solver", "activation") + _MNIST_OPTIONS + ("checkpoint_every", "max_steps")
_FIG3_OPTIONS = ("seed", "epochs", "train_examples", "batch", "data")
_EVAL_OPTIONS = ("data", "eval_test_examples", "eval_train_examples", "eval_reg_examples")
_DEMO_OPTIONS = ("iters", "lam", "seed") + _QUADRATURE_OPTIONS
_ORDER_OPTIONS = ("tol", "degrees", "solvers", "dim", "trajectories", "seed")
_LATENT_OPTIONS = ("epochs", "lam", "max_records", "batch", "seed") + _QUADRATURE_OPTIONS
_FFJORD_OPTIONS = ("dataset", "data", "iters", "lam_r2", "lam_rnode", "fixed_steps", "regs", "seed") + _QUADRATURE_OPTIONS
_MNIST_PRESET_NOTES = {
    "small": "about 10 min on 2 cores",
    "fig": "1-2 min, for the figure studies",
    "full": "all 60,000 images, 20 epochs",
    "long": "as full, 40 epochs",
    "paper": "the paper's 160 epochs in float64",
}


def _add_mnist_options(parser, names=_MNIST_OPTIONS):
    from .studies import mnist

    _add_config_flags(parser, mnist.MNISTConfig, names, mnist.PRESETS)


def _add_parallel_options(parser):
    g = parser.add_argument_group("several devices or hosts (data parallel; README: 'Several devices and hosts')")
    g.add_argument("--devices", type=int, help="devices to split each batch over (default: all visible; the batch must divide)")
    g.add_argument(
        "--sharding",
        default="global",
        choices=["global", "per-shard"],
        help="global: one adaptive step-size sequence for the whole batch (default); per-shard: each device its own solve",
    )
    g.add_argument("--coordinator", help="HOST:PORT of process 0, for a multi-process run (or $JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, help="processes in the run (or $JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1 (or $JAX_PROCESS_ID)")
    g.add_argument("--dist-timeout", type=int, default=300, help="seconds to wait for all processes to connect (default 300)")
    g.add_argument(
        "--heartbeat-timeout", type=int, default=60, help="seconds after which a silent process counts as dead (default 60)"
    )


def _start_parallel(ns):
    """Join the multi-process run when asked (before any JAX computation)."""
    import os

    if ns.coordinator or ns.num_processes or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        from .train.parallel import init_distributed

        init_distributed(
            ns.coordinator, ns.num_processes, ns.process_id, timeout=ns.dist_timeout, heartbeat_timeout=ns.heartbeat_timeout
        )
    return dict(devices=ns.devices, sharding=ns.sharding)


def _train_mnist(ns):
    from .studies import mnist

    parallel = _start_parallel(ns)
    cfg = mnist.config(ns.preset, **_given(ns, _TRAIN_MNIST_OPTIONS))
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

    s = mnist.evaluate_checkpoint(ns.checkpoint, data=ns.data, **_given(ns, _EVAL_OPTIONS[1:]))
    print(f"{s['checkpoint']} (step {s['step']}, reg {s['reg']}, λ={s['lam']:g})")
    _print_mnist(s)


def _study_mnist_fig3(ns):
    from .studies import mnist

    s = mnist.fig3(ns.out, lam=ns.lam, preset=ns.preset, progress=not ns.no_progress, **_given(ns, _FIG3_OPTIONS))
    print(f"{'model':<20}{'test acc':>10}{'test NFE':>10}{'train min':>11}")
    for name, r in s["results"].items():
        print(f"{name:<20}{r['test_acc']:>10.4f}{r['test_nfe']:>10.1f}{r['train_seconds'] / 60:>11.1f}")
    print(f"figure: {s['figure']}")


def _study_mnist_figs(ns):
    from .studies import mnist_figs

    over = _given(ns, _MNIST_OPTIONS + ("eval_orders",))
    f5 = {} if ns.lams is None else dict(lams=tuple(ns.lams))
    f6 = {k: tuple(v) for k, v in dict(solvers=ns.solvers, orders=ns.orders).items() if v is not None}
    fig = ns.study.removeprefix("mnist-")
    kw = dict(
        fig5=f5,
        fig6=f6,
        fig7=dict(fig5_kw=f5, fig6_kw=f6),
        fig8=dict(fig5_kw=f5, fig6_kw=f6) | ({} if ns.tols is None else dict(tols=tuple(ns.tols))),
    )[fig]
    s = getattr(mnist_figs, fig)(ns.out, preset=ns.preset, progress=not ns.no_progress, **kw, **over)
    with open(s["figure"][: -len(".png")] + ".md") as fh:
        print(fh.read())
    print(f"figure: {s['figure']}; tables: {s['figure'][:-4]}.md, .csv, .json")


def _demo(ns):
    from .studies import toy

    cfg = toy.ToyConfig(**_given(ns, _DEMO_OPTIONS))
    summary = toy.run(cfg, ns.out, progress=not ns.no_progress)
    print(f"\nFig. 1 toy: fit z(1) = z(0) + z(0)^3, dopri5 at rtol=atol={cfg.eval_tol} (float64)")
    print(f"{'model':<24}{'train MSE':>12}{'NFE':>8}{'R' + str(cfg.order):>12}")
    for name, r in summary["results"].items():
        print(f"{name:<24}{r['mse']:>12.2e}{r['nfe']:>8d}{r['R']:>12.3g}")
    print(f"figure: {summary['figure']}")


def _study_order(ns):
    from .studies import order

    cfg = order.OrderConfig(**_given(ns, _ORDER_OPTIONS))
    summary = order.run(cfg, ns.out)
    print(order.markdown_table(summary))
    print(f"figure: {summary['figure']}")


def _study_latent(ns):
    from .studies import latent

    cfg = latent.preset(ns.preset, **_given(ns, _LATENT_OPTIONS))
    summary = latent.run(cfg, ns.out, root=ns.data, progress=not ns.no_progress, resume=ns.resume)
    print(
        f"\nFig. 4 Latent ODE on PhysioNet 2012 ({summary['data']['train']} train / {summary['data']['test']} test records), "
        f"dopri5 at rtol=atol={cfg.eval_tol} (float64)"
    )
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

    cfg = ffjord.preset(ns.preset, **_given(ns, _FFJORD_OPTIONS))
    summary = ffjord.run_table(cfg, ns.out, progress=not ns.no_progress, resume=ns.resume)
    print(
        f"\nTable 2 at CPU scale: FFJORD on {cfg.dataset} ({summary['train_examples']} train / {summary['test_examples']} test points); "
        f"evaluation: dopri5 at rtol=atol={cfg.eval_tol:g} (float64)"
    )
    print(ffjord.markdown_table(summary))
    print(f"table: {ns.out}/table.md, {ns.out}/table.csv" + (f"; figure: {summary['figure']}" if "figure" in summary else ""))


def _study_regularizers(ns):
    from .studies import regularizers

    cfg = regularizers.RegularizersConfig(**_given(ns, ("tasks", "methods", "seeds")))
    out = regularizers.run(cfg, ns.out, time_limit=ns.time_limit, sequential=not ns.side_by_side)
    for task, text in out["tables"].items():
        print(f"\n{task} ({ns.out}/{task}/table.md, scatter.png)\n{text or 'no finished run yet'}")
    if out["failed"]:
        print("failed: " + ", ".join(f"{t}/{s.name}" for t, s in out["failed"]) + " (see their .out files)")
    return 1 if out["failed"] else 0


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
    p = argparse.ArgumentParser(prog="taynode", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"taynode {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    from .studies import ffjord, latent, mnist, mnist_figs, order, regularizers, toy

    d = sub.add_parser("demo", help="the paper's Fig. 1 toy: unregularized vs R3-regularized")
    _add_config_flags(d, toy.ToyConfig, _DEMO_OPTIONS)
    d.add_argument("--out", default="runs/demo", help="output folder (fig1.png, results.json, runs/) (default runs/demo)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(run=_demo)
    study = sub.add_parser("study", help="studies of the paper").add_subparsers(dest="study", required=True)
    o = study.add_parser("order", help="Fig. 2: steps of order-m RK solvers on degree-K polynomial trajectories")
    o.add_argument(
        "--out", default="runs/order", help="output folder (fig2.png, order.md, order.csv, results.json) (default runs/order)"
    )
    _add_config_flags(o, order.OrderConfig, _ORDER_OPTIONS)
    o.set_defaults(run=_study_order)
    f3 = study.add_parser("mnist-fig3", help="Fig. 3: NFE and training error during MNIST training, with and without R3")
    f3.add_argument(
        "--out",
        default="runs/mnist-small",
        help="folder of the runs and fig3.png (reuses finished runs) (default runs/mnist-small)",
    )
    f3.add_argument("--lam", type=float, default=_default_of(mnist.fig3, "lam"), help="weight λ of R3 (default %(default)g)")
    _add_preset(f3, mnist.PRESETS, _default_of(mnist.fig3, "preset"), _MNIST_PRESET_NOTES)
    _add_mnist_options(f3, _FIG3_OPTIONS)
    f3.add_argument("--no-progress", action="store_true")
    f3.set_defaults(run=_study_mnist_fig3)
    for n, what in (
        ("5", "λ sweep of R2: test NFE against unregularized training loss"),
        ("6", "loss/NFE trade-off of heun, bosh3, dopri5 when regularizing R1..R4"),
        ("7", "R_K against NFE across the runs of Figs. 5 and 6 (rank correlation)"),
        ("8", "(a) solver error vs tolerance, (b) train vs test NFE, (c) train/test error vs λ"),
    ):
        fq = study.add_parser(f"mnist-fig{n}", help=f"Fig. {n}: {what} (runs cached in OUT/runs, shared by Figs. 5-8)")
        fq.add_argument(
            "--out",
            default="runs/mnist-figs",
            help="output folder (figN.png, figN.md/.csv/.json, runs/) (default runs/mnist-figs)",
        )
        _add_preset(fq, mnist.PRESETS, _default_of(mnist_figs.fig5, "preset"), _MNIST_PRESET_NOTES)
        fq.add_argument(
            "--lams",
            type=float,
            nargs="+",
            help=f"Fig. 5's λ values of R2, 0 = unregularized (default {_show(mnist_figs.FIG5_LAMS)})",
        )
        fq.add_argument("--solvers", nargs="+", help=f"Fig. 6's solvers (default {_show(mnist_figs.FIG6_SOLVERS)})")
        fq.add_argument(
            "--orders",
            type=int,
            nargs="+",
            help=f"Fig. 6's orders K of R_K (default {_show(_default_of(mnist_figs.fig6, 'orders'))})",
        )
        _add_mnist_options(fq, _MNIST_OPTIONS + ("eval_orders",))
        if n == "8":
            fq.add_argument(
                "--tols", type=float, nargs="+", help=f"tolerances of panel (a) (default {_show(mnist_figs.FIG8_TOLS)})"
            )
        else:
            fq.set_defaults(tols=None)
        fq.add_argument("--no-progress", action="store_true")
        fq.set_defaults(run=_study_mnist_figs)
    lo = study.add_parser("latent-ode", help="Fig. 4: Latent ODE on PhysioNet 2012, unregularized vs R3")
    _add_preset(lo, latent.PRESETS, "cpu", {"cpu": "about 20 min on 2 cores"})
    lo.add_argument(
        "--out",
        default="runs/latent_ode",
        help="output folder (fig4.png, table.md, results.json, run folders) (default runs/latent_ode)",
    )
    lo.add_argument(
        "--data",
        help="folder with set-a.tar.gz, Outcomes-a.txt, ... (default: $TAYNODE_PHYSIONET or ../shared/data/physionet2012)",
    )
    _add_config_flags(lo, latent.LatentConfig, _LATENT_OPTIONS, latent.PRESETS)
    lo.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    lo.add_argument("--no-progress", action="store_true")
    lo.set_defaults(run=_study_latent)
    ff = study.add_parser(
        "ffjord-table2",
        help="Table 2 at CPU scale: FFJORD unregularized vs RNODE vs TayNODE (R2), adaptive and fixed-grid training",
    )
    _add_preset(
        ff,
        ffjord.PRESETS,
        "cpu",
        {
            "cpu": "a 2-D toy, 6-13 min on 2 shared cores",
            "tiny": "smoke test",
            "mnist": "reduced 14x14 MNIST, about 30 min of one CPU core",
            "miniboone": "needs MAF's data.npy and a GPU",
        },
    )
    ff.add_argument(
        "--out",
        default="runs/ffjord",
        help="output folder (table.md, table.csv, results.json, densities.png, runs/) (default runs/ffjord)",
    )
    _add_config_flags(
        ff,
        ffjord.FFJORDConfig,
        _FFJORD_OPTIONS,
        ffjord.PRESETS,
        fixed_steps=dict(nargs="*"),
        regs=dict(choices=list(ffjord.REGS)),
    )
    ff.add_argument("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    ff.add_argument("--no-progress", action="store_true")
    ff.set_defaults(run=_study_ffjord)
    rg = study.add_parser(
        "regularizers",
        help="every speed regularizer (TayNODE, RNODE, ERNODE, SRNODE, STEER) on MNIST, "
        "the Latent ODE and 2-D FFJORD at the CPU presets, 2 seeds; resumable",
    )
    rg.add_argument(
        "--out",
        default="runs/regularizers",
        help="output folder: one subfolder per task with run folders, table.md, scatter.png (default runs/regularizers)",
    )
    _add_config_flags(
        rg,
        regularizers.RegularizersConfig,
        ("tasks", "methods", "seeds"),
        tasks=dict(choices=list(regularizers.TASKS)),
        methods=dict(choices=list(regularizers.METHODS)),
    )
    rg.add_argument("--time-limit", type=float, help="seconds after which the runs stop (they resume with the same command)")
    rg.add_argument(
        "--side-by-side",
        action="store_true",
        help="train a task's runs at the same time (faster; training times no longer compare)",
    )
    rg.set_defaults(run=_study_regularizers)
    t = sub.add_parser("train", help="train a model").add_subparsers(dest="task", required=True)
    m = t.add_parser("mnist", help="the paper's MNIST classifier (Sec. 6.1)")
    _add_preset(m, mnist.PRESETS, "small", _MNIST_PRESET_NOTES)
    _add_mnist_options(m, _TRAIN_MNIST_OPTIONS)
    m.add_argument("--out", help="run folder (default runs/mnist-<preset>-<reg>-lam<λ>-seed<seed>)")
    m.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    m.add_argument("--no-progress", action="store_true")
    _add_parallel_options(m)
    m.set_defaults(run=_train_mnist)
    e = sub.add_parser("eval", help="evaluate an MNIST checkpoint: test/train accuracy, NFE, R_K (defaults: the run's settings)")
    _add_config_flags(e, mnist.MNISTConfig, _EVAL_OPTIONS)
    e.add_argument("checkpoint", help="a checkpoint.npz or a run folder")
    e.set_defaults(run=_eval)
    c = sub.add_parser("compare-solvers", help="the same problems solved by taynode, SciPy, torchdiffeq and Julia")
    c.add_argument("--problems", nargs="+", help="lotka_volterra van_der_pol two_body neural_ode (default: all)")
    c.add_argument("--tols", type=float, nargs="+", help="rtol = atol values swept (default 1e-4 1e-6 1e-8 1e-10)")
    c.add_argument(
        "--implementations",
        nargs="+",
        help="taynode scipy torchdiffeq julia (default: all; unavailable ones are skipped with the reason)",
    )
    c.add_argument("--repeats", type=int, default=3, help="timed solves after the warm-up one (median reported)")
    c.add_argument("--model", help="portable .npz of the neural ODE (default: OUT/neural_ode.npz, trained when absent)")
    c.add_argument(
        "--out", default="runs/compare", help="output folder (compare.md, compare.csv, work_precision.png, results.json)"
    )
    c.set_defaults(run=_compare_solvers)
    ns = p.parse_args(argv)
    import jax

    from .compile_cache import enable_compile_cache

    jax.config.update("jax_enable_x64", True)  # the entry point's choice (README: float64 evaluation)
    enable_compile_cache()  # before anything compiles; a warm run loads the programs from disk
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
