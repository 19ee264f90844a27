"""The commands of ``taynode``, registered once: :data:`COMMANDS`, which the CLI walks.

Each :class:`Command` names its place (``("study", "order")`` is ``taynode study order``), its
config dataclass and the fields offered as flags (generated from the fields' documentation,
:func:`taynode.studies.setting`), and a ``run`` function that takes the parsed arguments and the
config fields given on the line, does the work, prints a summary and returns the exit status
(non-zero when any of its runs failed). Adding a study is one entry here.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import jax

from .. import compare
from ..train import NonFiniteLossError
from ..train.parallel import init_distributed
from . import ffjord, latent, mnist, mnist_fig78, mnist_figs, order, regularizers, toy

__all__ = ["COMMANDS", "GROUPS", "Command", "print_mnist", "show"]


@dataclass(frozen=True)
class Command:
    """One ``taynode`` command: where it sits, its flags, and what it runs."""

    path: tuple[str, ...]  # ("study", "order") is `taynode study order`
    help: str
    run: Callable[[argparse.Namespace, dict], int]  # (parsed arguments, config fields given) -> exit status
    config: type | None = None  # the config dataclass whose fields `options` become flags
    options: tuple[str, ...] = ()
    presets: dict | None = None  # named configs: flags show each one's default; with `preset`, a --preset flag
    preset: str | None = None  # the default preset
    preset_notes: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)  # argparse keywords per config field (e.g. choices)
    out: str | None = None  # the default output folder of --out (None: no --out, or `arguments` adds it)
    out_help: str = "output folder"
    resume: str | None = None  # help of --resume (None: no --resume)
    progress: bool = False  # a --no-progress flag
    arguments: Callable[[argparse.ArgumentParser], None] | None = None  # further arguments


# The help of the command groups.
GROUPS = {"study": "studies of the paper", "train": "train a model"}

# Overrides of an MNIST preset, shared by `train mnist` and `study mnist-fig5..8`.
MNIST_OPTIONS = (
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
QUADRATURE_OPTIONS = ("quadrature", "samples")
MNIST_PRESET_NOTES = {
    "small": "about 10 min on 2 cores",
    "fig": "1-2 min, for the figure studies",
    "full": "all 60,000 images, 20 epochs",
    "long": "as full, 40 epochs",
    "paper": "the paper's 160 epochs in float64",
}


def show(v: object) -> str:
    """A default as the help shows it (a tuple as its items, an empty one as "none")."""
    if isinstance(v, tuple):
        return " ".join(map(str, v)) if v else "none"
    return str(v)


def _progress(ns: argparse.Namespace) -> bool:
    return not ns.no_progress


def _default_of(fn: Callable, name: str):
    """The default of ``fn``'s keyword ``name`` (so a flag's default is the function's)."""
    return inspect.signature(fn).parameters[name].default


def print_mnist(s: dict) -> None:
    """An MNIST run's or checkpoint's evaluation (:func:`taynode.studies.mnist.evaluate`) as a table."""
    rs = sorted(k for k in s if k.startswith("test_R"))
    print(f"{'split':<7}{'accuracy':>10}{'NFE':>8}" + "".join(f"{k[5:]:>12}" for k in rs) + "   (dopri5, tol 1.4e-8, float64)")
    for split in ("test", "train"):
        vals = "".join(f"{s[f'{split}_' + k[5:]]:>12.3g}" for k in rs)
        print(f"{split:<7}{s[split + '_acc']:>10.4f}{s[split + '_nfe']:>8.1f}{vals}   ({s[split + '_examples']} images)")


# ---------------------------------------------------------------- demo, order, latent, ffjord, regularizers


def _demo(ns: argparse.Namespace, given: dict) -> int:
    cfg = toy.ToyConfig(**given)
    summary = toy.run(cfg, ns.out, progress=_progress(ns))
    print(f"\nFig. 1 toy: fit z(1) = z(0) + z(0)^3, dopri5 at rtol=atol={cfg.eval_tol} (float64)")
    print(f"{'model':<24}{'train MSE':>12}{'NFE':>8}{'R' + str(cfg.order):>12}")
    for name, r in summary["results"].items():
        print(f"{name:<24}{r['mse']:>12.2e}{r['nfe']:>8d}{r['R']:>12.3g}")
    print(f"figure: {summary['figure']}")
    return 0


def _order(ns: argparse.Namespace, given: dict) -> int:
    summary = order.run(order.OrderConfig(**given), ns.out)
    print(order.markdown_table(summary))
    print(f"figure: {summary['figure']}")
    return 0


def _latent(ns: argparse.Namespace, given: dict) -> int:
    cfg = latent.preset(ns.preset, **given)
    summary = latent.run(cfg, ns.out, root=ns.data, progress=_progress(ns), resume=ns.resume)
    print(
        f"\nFig. 4 Latent ODE on PhysioNet 2012 ({summary['data']['train']} train / {summary['data']['test']} test records), "
        f"dopri5 at rtol=atol={cfg.eval_tol} (float64)"
    )
    print(latent.markdown_table(summary))
    print(f"figure: {summary['figure']}")
    return 0


def _latent_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        help="folder with set-a.tar.gz, Outcomes-a.txt, ... (default: $TAYNODE_PHYSIONET or ../shared/data/physionet2012)",
    )


def _ffjord(ns: argparse.Namespace, given: dict) -> int:
    cfg = ffjord.preset(ns.preset, **given)
    summary = ffjord.run_table(cfg, ns.out, progress=_progress(ns), resume=ns.resume)
    print(
        f"\nTable 2 at CPU scale: FFJORD on {cfg.dataset} ({summary['train_examples']} train / {summary['test_examples']} test points); "
        f"evaluation: dopri5 at rtol=atol={cfg.eval_tol:g} (float64)"
    )
    print(ffjord.markdown_table(summary))
    print(f"table: {ns.out}/table.md, {ns.out}/table.csv" + (f"; figure: {summary['figure']}" if "figure" in summary else ""))
    return 0


def _regularizers(ns: argparse.Namespace, given: dict) -> int:
    cfg = regularizers.RegularizersConfig(**given)
    out = regularizers.run(cfg, ns.out, time_limit=ns.time_limit, sequential=not ns.side_by_side)
    for task, text in out["tables"].items():
        print(f"\n{task} ({ns.out}/{task}/table.md, scatter.png)\n{text or 'no finished run yet'}")
    if out["failed"]:
        print("failed: " + ", ".join(f"{t}/{s.name}" for t, s in out["failed"]) + " (see their .out files)")
    return 1 if out["failed"] else 0


def _regularizers_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-limit", type=float, help="seconds after which the runs stop (they resume with the same command)")
    p.add_argument(
        "--side-by-side",
        action="store_true",
        help="train a task's runs at the same time (faster; training times no longer compare)",
    )


# ---------------------------------------------------------------- MNIST: train, eval, Figs. 3, 5-8


def _parallel_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several devices or hosts (data parallel; README: 'Several devices and hosts')")
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


def _train_mnist(ns: argparse.Namespace, given: dict) -> int:
    if ns.coordinator or ns.num_processes or os.environ.get("JAX_COORDINATOR_ADDRESS"):  # before any JAX computation
        init_distributed(
            ns.coordinator, ns.num_processes, ns.process_id, timeout=ns.dist_timeout, heartbeat_timeout=ns.heartbeat_timeout
        )
    cfg = mnist.config(ns.preset, **given)
    out = ns.out or f"runs/mnist-{cfg.preset}-{cfg.reg}-lam{cfg.lam:g}-seed{cfg.seed}"
    try:
        s = mnist.run(cfg, out, resume=ns.resume, progress=_progress(ns), devices=ns.devices, sharding=ns.sharding)
    except NonFiniteLossError as e:
        raise SystemExit(f"taynode train mnist: {e}") from None
    if jax.process_index() == 0:
        print_mnist(s)
        print(f"training time {s['train_seconds']:.0f} s; results: {out}/results.json")
    return 0


def _train_mnist_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder (default runs/mnist-<preset>-<reg>-lam<λ>-seed<seed>)")
    _parallel_arguments(p)


def _eval(ns: argparse.Namespace, given: dict) -> int:
    s = mnist.evaluate_checkpoint(ns.checkpoint, **given)
    print(f"{s['checkpoint']} (step {s['step']}, reg {s['reg']}, λ={s['lam']:g})")
    print_mnist(s)
    return 0


def _fig3(ns: argparse.Namespace, given: dict) -> int:
    s = mnist.fig3(ns.out, lam=ns.lam, preset=ns.preset, progress=_progress(ns), **given)
    print(f"{'model':<20}{'test acc':>10}{'test NFE':>10}{'train min':>11}")
    for name, r in s["results"].items():
        print(f"{name:<20}{r['test_acc']:>10.4f}{r['test_nfe']:>10.1f}{r['train_seconds'] / 60:>11.1f}")
    print(f"figure: {s['figure']}")
    return 0


def _fig3_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lam", type=float, default=_default_of(mnist.fig3, "lam"), help="weight λ of R3 (default %(default)g)")


def _figure(fig: str) -> Callable[[argparse.Namespace, dict], int]:
    """The run function of ``study mnist-<fig>`` (fig5 … fig8)."""

    def run(ns: argparse.Namespace, given: dict) -> int:
        f5 = {} if ns.lams is None else dict(lams=tuple(ns.lams))
        f6 = {k: tuple(v) for k, v in dict(solvers=ns.solvers, orders=ns.orders).items() if v is not None}
        kw = dict(
            fig5=f5,
            fig6=f6,
            fig7=dict(fig5_kw=f5, fig6_kw=f6),
            fig8=dict(fig5_kw=f5, fig6_kw=f6) | ({} if ns.tols is None else dict(tols=tuple(ns.tols))),
        )[fig]
        s = _FIGURE_FUNCTIONS[fig](ns.out, preset=ns.preset, progress=_progress(ns), **kw, **given)
        with open(s["figure"][: -len(".png")] + ".md") as fh:
            print(fh.read())
        print(f"figure: {s['figure']}; tables: {s['figure'][:-4]}.md, .csv, .json")
        return 0

    return run


def _figure_arguments(fig: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--lams",
            type=float,
            nargs="+",
            help=f"Fig. 5's λ values of R2, 0 = unregularized (default {show(mnist_figs.FIG5_LAMS)})",
        )
        p.add_argument("--solvers", nargs="+", help=f"Fig. 6's solvers (default {show(mnist_figs.FIG6_SOLVERS)})")
        p.add_argument(
            "--orders",
            type=int,
            nargs="+",
            help=f"Fig. 6's orders K of R_K (default {show(_default_of(mnist_figs.fig6, 'orders'))})",
        )
        if fig == "fig8":
            p.add_argument(
                "--tols", type=float, nargs="+", help=f"tolerances of panel (a) (default {show(mnist_fig78.FIG8_TOLS)})"
            )
        else:
            p.set_defaults(tols=None)

    return add


_FIGURE_FUNCTIONS = dict(fig5=mnist_figs.fig5, fig6=mnist_figs.fig6, fig7=mnist_fig78.fig7, fig8=mnist_fig78.fig8)
_FIGURES = {
    "fig5": "λ sweep of R2: test NFE against unregularized training loss",
    "fig6": "loss/NFE trade-off of heun, bosh3, dopri5 when regularizing R1..R4",
    "fig7": "R_K against NFE across the runs of Figs. 5 and 6 (rank correlation)",
    "fig8": "(a) solver error vs tolerance, (b) train vs test NFE, (c) train/test error vs λ",
}


# ---------------------------------------------------------------- compare-solvers


def _compare(ns: argparse.Namespace, given: dict) -> int:
    listed = dict(problems=ns.problems, tols=ns.tols, implementations=ns.implementations)
    cfg = compare.CompareConfig(**{k: tuple(v) for k, v in listed.items() if v is not None}, repeats=ns.repeats, model=ns.model)
    summary = compare.run(cfg, ns.out)
    print()
    print(compare.markdown(summary))
    print(f"table: {ns.out}/compare.md, {ns.out}/compare.csv; figure: {summary.get('figure', '(no rows)')}")
    return 1 if summary["failures"] else 0  # a failing method is reported in the table, and in the status


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--problems", nargs="+", help="lotka_volterra van_der_pol two_body neural_ode (default: all)")
    p.add_argument("--tols", type=float, nargs="+", help="rtol = atol values swept (default 1e-4 1e-6 1e-8 1e-10)")
    p.add_argument(
        "--implementations",
        nargs="+",
        help="taynode scipy torchdiffeq julia (default: all; unavailable ones are skipped with the reason)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed solves after the warm-up one (median reported)")
    p.add_argument("--model", help="portable .npz of the neural ODE (default: OUT/neural_ode.npz, trained when absent)")


_RESUME_RUNS = "continue the runs in --out from their checkpoints"
_MNIST = dict(config=mnist.MNISTConfig, presets=mnist.PRESETS, preset_notes=MNIST_PRESET_NOTES, progress=True)

COMMANDS: list[Command] = [
    Command(
        ("demo",),
        "the paper's Fig. 1 toy: unregularized vs R3-regularized",
        _demo,
        toy.ToyConfig,
        ("iters", "lam", "seed") + QUADRATURE_OPTIONS,
        out="runs/demo",
        out_help="output folder (fig1.png, results.json, runs/)",
        progress=True,
    ),
    Command(
        ("study", "order"),
        "Fig. 2: steps of order-m RK solvers on degree-K polynomial trajectories",
        _order,
        order.OrderConfig,
        ("tol", "degrees", "solvers", "dim", "trajectories", "seed"),
        out="runs/order",
        out_help="output folder (fig2.png, order.md, order.csv, results.json)",
    ),
    Command(
        ("study", "mnist-fig3"),
        "Fig. 3: NFE and training error during MNIST training, with and without R3",
        _fig3,
        options=("seed", "epochs", "train_examples", "batch", "data"),
        preset=_default_of(mnist.fig3, "preset"),
        out="runs/mnist-small",
        out_help="folder of the runs and fig3.png (reuses finished runs)",
        arguments=_fig3_arguments,
        **_MNIST,
    ),
    *[
        Command(
            ("study", f"mnist-{fig}"),
            f"Fig. {fig[3:]}: {what} (runs cached in OUT/runs, shared by Figs. 5-8)",
            _figure(fig),
            options=MNIST_OPTIONS + ("eval_orders",),
            preset=_default_of(mnist_figs.fig5, "preset"),
            out="runs/mnist-figs",
            out_help="output folder (figN.png, figN.md/.csv/.json, runs/)",
            arguments=_figure_arguments(fig),
            **_MNIST,
        )
        for fig, what in _FIGURES.items()
    ],
    Command(
        ("study", "latent-ode"),
        "Fig. 4: Latent ODE on PhysioNet 2012, unregularized vs R3",
        _latent,
        latent.LatentConfig,
        ("epochs", "lam", "max_records", "batch", "seed") + QUADRATURE_OPTIONS,
        presets=latent.PRESETS,
        preset="cpu",
        preset_notes={"cpu": "about 20 min on 2 cores"},
        out="runs/latent_ode",
        out_help="output folder (fig4.png, table.md, results.json, run folders)",
        resume=_RESUME_RUNS,
        progress=True,
        arguments=_latent_arguments,
    ),
    Command(
        ("study", "ffjord-table2"),
        "Table 2 at CPU scale: FFJORD unregularized vs RNODE vs TayNODE (R2), adaptive and fixed-grid training",
        _ffjord,
        ffjord.FFJORDConfig,
        ("dataset", "data", "iters", "lam_r2", "lam_rnode", "fixed_steps", "regs", "seed") + QUADRATURE_OPTIONS,
        presets=ffjord.PRESETS,
        preset="cpu",
        preset_notes={
            "cpu": "a 2-D toy, 6-13 min on 2 shared cores",
            "tiny": "smoke test",
            "mnist": "reduced 14x14 MNIST, about 30 min of one CPU core",
            "miniboone": "needs MAF's data.npy and a GPU",
        },
        flags=dict(fixed_steps=dict(nargs="*"), regs=dict(choices=list(ffjord.REGS))),
        out="runs/ffjord",
        out_help="output folder (table.md, table.csv, results.json, densities.png, runs/)",
        resume=_RESUME_RUNS,
        progress=True,
    ),
    Command(
        ("study", "regularizers"),
        "every speed regularizer (TayNODE, RNODE, ERNODE, SRNODE, STEER) on MNIST, "
        "the Latent ODE and 2-D FFJORD at the CPU presets, 2 seeds; resumable",
        _regularizers,
        regularizers.RegularizersConfig,
        ("tasks", "methods", "seeds"),
        flags=dict(tasks=dict(choices=list(regularizers.TASKS)), methods=dict(choices=list(regularizers.METHODS))),
        out="runs/regularizers",
        out_help="output folder: one subfolder per task with run folders, table.md, scatter.png",
        arguments=_regularizers_arguments,
    ),
    Command(
        ("train", "mnist"),
        "the paper's MNIST classifier (Sec. 6.1)",
        _train_mnist,
        options=("reg", "lam", "solver", "activation", "dtype") + MNIST_OPTIONS + ("checkpoint_every", "max_steps"),
        preset="small",
        flags=dict(dtype=dict(choices=["float32", "float64"])),
        resume="continue the run in --out from its checkpoint",
        arguments=_train_mnist_arguments,
        **_MNIST,
    ),
    Command(
        ("eval",),
        "evaluate an MNIST checkpoint: test/train accuracy, NFE, R_K (defaults: the run's settings)",
        _eval,
        mnist.MNISTConfig,
        ("data", "eval_test_examples", "eval_train_examples", "eval_reg_examples"),
        arguments=lambda p: p.add_argument("checkpoint", help="a checkpoint.npz or a run folder"),
    ),
    Command(
        ("compare-solvers",),
        "the same problems solved by taynode, SciPy, torchdiffeq and Julia",
        _compare,
        out="runs/compare",
        out_help="output folder (compare.md, compare.csv, work_precision.png, results.json)",
        arguments=_compare_arguments,
    ),
]
