r"""The paper's MNIST experiment (Kelly et al. 2020, Sec. 6.1): a neural-ODE classifier trained
with and without speed regularization; test-time NFE against accuracy.

Model: :class:`~taynode.models.classifier.ODEClassifier` (784 → 100 → 784 MLP dynamics with
time concatenated, sigmoid, then a linear layer to 10 classes); loss cross-entropy + λ·Σ R.

Presets (:data:`PRESETS`):

``paper``
    The authors' settings, as in their released code (``mnist.py`` of the TayNODE repository,
    recalled here, not re-checked against it): all 60,000 training images, batch 100,
    160 epochs, SGD with momentum 0.9 and learning rate 0.1, divided by 10 after epochs 60,
    100 and 140; float64, dopri5 at rtol = atol = 1.4e-8 for training and evaluation.
    Days of CPU time; meant for a GPU.
``small``
    Sized for about 10 minutes per run on 2 CPU cores: the first 20,000 training images,
    batch 100, 5 epochs (1,000 steps), the same optimizer with the learning rate divided by 10
    after epochs 3 and 4; float32 training with dopri5 at rtol = atol = 1e-5 (float32 cannot
    resolve the paper's 1.4e-8). The evaluation is the paper's (below) on all 10,000 test
    images, training accuracy on 2,000 training images, R_K on 500 of each.
``full``
    The headline preset (issue #19): all 60,000 training images, batch 100, 20 epochs (12,000
    steps), SGD with momentum 0.9, learning rate 0.1 divided by 10 after epochs 10 and 15;
    float32 training with dopri5 at rtol = atol = 1e-5, the paper's float64 evaluation on all
    10,000 test images, and test NFE on the first 1,000 test images after every epoch (Fig. 3's
    curve). Long enough for the unregularized dynamics to get harder; about 2–5 CPU-hours per
    run here, minutes on a GPU, and every run resumes from its checkpoint.
``long``
    ``full`` with 40 epochs, the learning rate divided by 10 after epochs 30 and 35: three times
    as long at the high rate, where the unregularized NFE grows.
``fig``
    For the figure studies (Figs. 5–8, :mod:`taynode.studies.mnist_figs`), which need many runs:
    about 1–2 minutes per run on this project's shared 2-core machine (the unregularized
    dopri5 run: 45 s of training, 65 s in all). The first 10,000 training images, batch 100,
    2 epochs (200 steps), learning rate 0.1 divided by 10 after epoch 1, float32 training at
    rtol = atol = 1e-4 (so that Heun, order 2, needs ~40 NFE rather than ~120 at 1e-5);
    evaluated on the first 2,000 test and 2,000 training images, R₁…R₄ on 200 of each.

Evaluation (:func:`evaluate`, both presets): the trained weights are cast to float64 and the
*plain* dynamics (no regularizer in the ODE state) are solved with dopri5 at rtol = atol =
1.4e-8 in batches of 1,000 images; NFE is the mean over batches of the exact number of function
evaluations. Accuracy is from the same solves; R_K (for K = 2, 3 and the trained K) is the
mean per-image integral from a second solve with R_K in the state.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import mnist as mnist_data
from ..models.classifier import TAYLOR_METHOD, ODEClassifier, classifier_loss, steer_end_time
from ..regularizers import RK, RegularizerSet
from ..solvers import get as get_solver
from ..train import CHECKPOINT, ShuffledBatches, load_checkpoint, read_log, read_meta, train
from .common import cast, check_quadrature, save_figure, setting, stored_config, with_x64, write_json
from .common import preset as _preset
from .runs import reuse_or_train

__all__ = ["PRESETS", "MNISTConfig", "config", "evaluate", "evaluate_checkpoint", "run"]


def regularizer_set(cfg: MNISTConfig) -> RegularizerSet:
    """The run's regularizers with their λ, parsed once (R_K by the project's fastest Taylor
    method, as :func:`taynode.models.classifier.parse_regularizers`)."""
    return RegularizerSet.parse(cfg.reg, lam=cfg.lam, taylor_method=TAYLOR_METHOD)


@dataclass(frozen=True)
class MNISTConfig:
    """The MNIST classifier's settings (a preset's, see :data:`PRESETS`; fields with help are flags)."""

    preset: str = "small"
    reg: str = setting(
        "none", "regularizers: none, r<K> (e.g. r3), a '+'-joined set (e.g. kinetic+jacobian, RNODE's; alias rnode)"
    )
    lam: float = setting(0.0, "weight λ of the regularizers (required, > 0, with a regularizer)")
    solver: str = setting("dopri5", "training solver (a name of taynode.solvers.SOLVERS)")
    activation: str = setting("sigmoid", "activation of the dynamics: sigmoid or softplus (the paper's) or tanh")
    hidden: int = 100
    dtype: str = setting("float32", "training dtype: float32 or float64 (the evaluation is float64 either way)")
    train_examples: int | None = setting(20000, "use the first N training images (None: all)")
    batch: int = setting(100, "images per training batch")
    epochs: int = setting(5, "training epochs")
    lr: float = 0.1
    momentum: float = 0.9
    lr_drops: tuple = (3, 4)  # epochs after which the learning rate is divided by 10
    train_tol: float = setting(1e-5, "rtol = atol of the training solves")
    quadrature: str = setting(
        "integrated",
        "how the regularizers are computed in training: integrated (the paper's: in the ODE state, at every solver stage) or sampled (unbiased: at `samples` random times per solve)",
    )
    samples: int = setting(1, "sample times per solve with quadrature sampled")
    steer: float = setting(0.0, "STEER: train with the end time drawn from [1 - b, 1 + b] each step (0: off)")
    eval_tol: float = 1.4e-8
    eval_batch: int = 1000
    eval_test_examples: int | None = setting(None, "test images evaluated (None: all 10,000)")
    eval_train_examples: int | None = setting(2000, "training images evaluated (None: all)")
    eval_reg_examples: int = setting(500, "images on which R_K is evaluated")
    eval_orders: tuple = setting((2, 3), "orders K of R_K evaluated (besides the trained K)")
    epoch_eval_examples: int = setting(1000, "test images evaluated after each epoch (for the log, Fig. 3)")
    checkpoint_every: int = setting(100, "steps between checkpoints")
    max_steps: int = setting(4096, "most solver steps per solve; a solve needing more ends the run as diverged")
    seed: int = setting(0, "seed for initialization and batches")
    data: str | None = setting(None, "MNIST file or folder (None: $TAYNODE_MNIST or ../shared/data/mnist)", compare=False)

    def __post_init__(self):
        regularizer_set(self)
        get_solver(self.solver)
        check_quadrature(self)
        if not 0 <= self.steer < 1:
            raise ValueError(f"steer (STEER's half-width b of the end time 1 ± b) must be in [0, 1), got {self.steer}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name in (
            "batch",
            "epochs",
            "hidden",
            "eval_batch",
            "checkpoint_every",
            "eval_reg_examples",
            "epoch_eval_examples",
            "max_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # None means all; 0 is not "all" (it used to be read so, silently training on 60,000 images)
        for name in ("train_examples", "eval_test_examples", "eval_train_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or None for all images), got {getattr(self, name)}")


PRESETS = {
    "small": {},
    "fig": dict(
        train_examples=10000,
        epochs=2,
        lr_drops=(1,),
        train_tol=1e-4,
        eval_test_examples=2000,
        eval_train_examples=2000,
        eval_reg_examples=200,
        eval_orders=(1, 2, 3, 4),
        epoch_eval_examples=500,
    ),
    "full": dict(
        train_examples=None,
        epochs=20,
        lr_drops=(10, 15),
        eval_train_examples=10000,
        eval_reg_examples=1000,
        checkpoint_every=200,
    ),
    "paper": dict(
        train_examples=None,
        epochs=160,
        lr_drops=(60, 100, 140),
        dtype="float64",
        train_tol=1.4e-8,
        eval_train_examples=None,
        eval_reg_examples=10000,
        epoch_eval_examples=10000,
        checkpoint_every=600,
    ),
}
PRESETS["long"] = PRESETS["full"] | dict(epochs=40, lr_drops=(30, 35))
PRESETS = {name: MNISTConfig(preset=name, **over) for name, over in PRESETS.items()}


def config(preset: str = "small", **overrides: Any) -> MNISTConfig:
    """The preset's configuration with ``overrides`` (``None`` values are ignored)."""
    return _preset(PRESETS, preset, **overrides)


def _dtype(cfg):
    return jnp.float64 if cfg.dtype == "float64" else jnp.float32


def make_model(cfg: MNISTConfig) -> ODEClassifier:
    """A freshly initialised classifier of ``cfg`` (seeded by ``cfg.seed``)."""
    return ODEClassifier(hidden=cfg.hidden, activation=cfg.activation, key=jax.random.PRNGKey(cfg.seed), dtype=_dtype(cfg))


def make_optimizer(cfg: MNISTConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD with momentum; the learning rate is divided by 10 after each epoch in ``lr_drops``."""
    sched = optax.piecewise_constant_schedule(cfg.lr, {int(e) * steps_per_epoch: 0.1 for e in cfg.lr_drops})
    return optax.sgd(sched, momentum=cfg.momentum)


def load_data(cfg: MNISTConfig) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """``((x_train, y_train), (x_test, y_test), source)``: the first ``train_examples`` training
    images and all test images in ``cfg.dtype``, labels int32."""
    d = mnist_data.load(cfg.data)
    n = d.x_train.shape[0] if cfg.train_examples is None else cfg.train_examples
    if not 1 <= n <= d.x_train.shape[0]:
        raise ValueError(f"train_examples must be in [1, {d.x_train.shape[0]}], got {n}")
    npdt = np.float64 if cfg.dtype == "float64" else np.float32
    xtr = mnist_data.as_float(d.x_train[:n], npdt)
    xte = mnist_data.as_float(d.x_test, npdt)
    return (xtr, d.y_train[:n].astype(np.int32)), (xte, d.y_test.astype(np.int32)), d.source


@functools.cache
def _plain_fn(tol, max_steps):
    return eqx.filter_jit(lambda m, xb: m(xb, solver="dopri5", rtol=tol, atol=tol, max_steps=max_steps))


@functools.cache
def _reg_fn(tol, max_steps, orders):
    regs = [RK(k) for k in orders]  # the default Taylor method ("incremental")
    return eqx.filter_jit(lambda m, xb: m.flow(xb, regularizers=regs, rtol=tol, atol=tol, max_steps=max_steps).integrals)


def _plain_eval(model, cfg, x, y, with_loss=False):
    """Accuracy and mean NFE (and, ``with_loss``, mean cross-entropy) of dopri5 at the evaluation
    tolerance, float64, in batches."""
    run = _plain_fn(cfg.eval_tol, cfg.max_steps)
    correct, nfes, ce = 0, [], 0.0
    for i in range(0, len(x), cfg.eval_batch):
        yb = jnp.asarray(y[i : i + cfg.eval_batch])
        logits, sol = run(model, jnp.asarray(x[i : i + cfg.eval_batch], jnp.float64))
        correct += int(jnp.sum(jnp.argmax(logits, 1) == yb))
        ce -= float(jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1)))
        nfes.append(int(sol.stats["nfe"]))
    return (correct / len(x), float(np.mean(nfes))) + ((ce / len(x),) if with_loss else ())


def _reg_eval(model, cfg, x, orders):
    run = _reg_fn(cfg.eval_tol, cfg.max_steps, tuple(orders))
    sums = {f"R{k}": 0.0 for k in orders}
    for i in range(0, len(x), cfg.eval_batch):
        out = run(model, jnp.asarray(x[i : i + cfg.eval_batch], jnp.float64))
        for k, v in out.items():
            sums[k] += float(jnp.sum(v))
    return {k: v / len(x) for k, v in sums.items()}


def _orders(cfg, rset: RegularizerSet | None = None):
    rset = regularizer_set(cfg) if rset is None else rset
    trained = [r.order for r in rset if isinstance(r, RK)]
    return tuple(sorted(set(cfg.eval_orders) | set(trained)))


def _subset(data, n):
    x, y = data
    return (x, y) if n is None else (x[:n], y[:n])


@with_x64
def evaluate(model: ODEClassifier, cfg: MNISTConfig, train_data: tuple, test_data: tuple) -> dict:
    """Test/train accuracy and NFE of the plain dynamics at ``eval_tol`` (float64), R_K on each."""
    m = cast(model, jnp.float64)
    out = {}
    for split, data, n in (("test", test_data, cfg.eval_test_examples), ("train", train_data, cfg.eval_train_examples)):
        x, y = _subset(data, n)
        t0 = time.perf_counter()
        acc, nfe, ce = _plain_eval(m, cfg, x, y, with_loss=True)
        out |= {f"{split}_acc": acc, f"{split}_nfe": nfe, f"{split}_loss": ce, f"{split}_examples": len(x)}
        xr = x[: cfg.eval_reg_examples]
        out |= {f"{split}_{k}": v for k, v in _reg_eval(m, cfg, xr, _orders(cfg)).items()}
        out[f"{split}_eval_seconds"] = time.perf_counter() - t0
    return out


@with_x64  # float64 evaluation; training arrays are explicitly typed
def run(
    cfg: MNISTConfig,
    out_dir: str,
    *,
    resume: bool = False,
    progress: bool = True,
    devices: int | None = None,
    sharding: str = "global",
) -> dict:
    """Train (or resume) one model, evaluate it, write ``results.json``; returns the summary.

    ``devices``, ``sharding``: data parallelism (:func:`taynode.train.train`); they are not part
    of the configuration, so a run may resume on another device count that divides the batch.
    In a multi-process run only process 0 writes files."""
    rset = regularizer_set(cfg)
    train_data, test_data, source = load_data(cfg)
    batches = ShuffledBatches(train_data, cfg.batch, seed=cfg.seed)
    steps = cfg.epochs * batches.steps_per_epoch
    model = make_model(cfg)
    opt = make_optimizer(cfg, batches.steps_per_epoch)
    tol = dict(
        rtol=cfg.train_tol,
        atol=cfg.train_tol,
        solver=cfg.solver,
        max_steps=cfg.max_steps,
        quadrature=cfg.quadrature,
        samples=cfg.samples,
    )

    def loss_fn(model, batch, key):
        x, y = batch
        steer = {"t1": steer_end_time(key, cfg.steer)} if cfg.steer else {}
        return classifier_loss(model, x, y, regularizers=rset, key=key, **tol, **steer)

    def epoch_eval(model):
        m = cast(model, jnp.float64)
        acc, nfe = _plain_eval(m, cfg, *_subset(test_data, cfg.epoch_eval_examples))
        return {"test_acc_subset": acc, "test_nfe_subset": nfe}

    conf = stored_config(cfg) | {"data": None}
    result = train(
        model,
        opt,
        loss_fn,
        batches,
        out_dir,
        steps=steps,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every,
        evaluate=epoch_eval,
        resume=resume,
        progress=progress,
        config=conf,
        desc=f"mnist {cfg.reg} λ={cfg.lam:g}",
        devices=devices,
        sharding=sharding,
    )
    final = evaluate(result.model, cfg, train_data, test_data)
    summary = dict(
        config=conf, data=source, steps=result.step, train_seconds=result.train_time, checkpoint=result.checkpoint, **final
    )
    if jax.process_index() == 0:
        write_json(os.path.join(out_dir, "results.json"), summary)
    return summary


@with_x64
def evaluate_checkpoint(path: str, *, data: str | None = None, **overrides: Any) -> dict:
    """Evaluate a checkpoint (or a run folder holding ``checkpoint.npz``); writes ``eval.json``
    beside it. ``overrides`` change evaluation settings (e.g. ``eval_test_examples``)."""
    ckpt = os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path
    meta = read_meta(ckpt)
    stored = meta.get("config") or {}
    if not isinstance(stored, dict) or "preset" not in stored:
        raise ValueError(f"{ckpt} is not an MNIST checkpoint (its config has no 'preset')")
    fields = {f.name for f in dataclasses.fields(MNISTConfig)}
    base = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in fields}
    cfg = MNISTConfig(**(base | {k: v for k, v in overrides.items() if v is not None} | {"data": data}))
    model, _, meta = load_checkpoint(ckpt, make_model(cfg))
    train_data, test_data, source = load_data(cfg)
    out = dict(checkpoint=ckpt, step=meta["step"], data=source, reg=cfg.reg, lam=cfg.lam) | evaluate(
        model, cfg, train_data, test_data
    )
    write_json(os.path.join(os.path.dirname(os.path.abspath(ckpt)), "eval.json"), out)
    return out


def training_curves(run_dir: str) -> dict:
    """Per-epoch training error, test NFE (subset) and time from a run's log (for Fig. 3)."""
    recs = read_log(run_dir, "epoch")
    return dict(
        epoch=[r["epoch"] for r in recs],
        train_error=[1 - r["train_acc"] for r in recs],
        test_nfe=[r.get("test_nfe_subset") for r in recs],
        time=[r["time"] for r in recs],
    )


def _run_or_reuse(cfg: MNISTConfig, run_dir: str, progress: bool) -> dict:
    """A finished run's results.json when its config matches; otherwise train (resuming)."""
    conf = json.loads(json.dumps(stored_config(cfg) | {"data": None}))
    return reuse_or_train(run_dir, conf, lambda: run(cfg, run_dir, resume=True, progress=progress))


def fig3(out_dir: str, *, lam: float = 10000.0, preset: str = "small", progress: bool = True, **overrides: Any) -> dict:
    """Fig. 3: NFE and training error during training, unregularized and with λ·R₃.

    The runs go to ``out_dir/none`` and ``out_dir/r3-lam<λ>`` (the names of
    ``benchmarks/mnist/run_table.sh``, so finished table runs are reused); ``fig3.png`` plots,
    per epoch, the test-time NFE (dopri5 at ``eval_tol`` on the first ``epoch_eval_examples``
    test images) and the training error (the epoch's mean over its minibatches).
    """
    runs = {
        "unregularized": ("none", 0.0, os.path.join(out_dir, "none")),
        f"R3, λ={lam:g}": ("r3", lam, os.path.join(out_dir, f"r3-lam{lam:g}")),
    }
    results, curves = {}, {}
    for label, (reg, lam_, run_dir) in runs.items():
        cfg = config(preset, reg=reg, lam=lam_, **overrides)
        results[label] = _run_or_reuse(cfg, run_dir, progress)
        curves[label] = training_curves(run_dir)
    png = os.path.join(out_dir, "fig3.png")
    plot_fig3(curves, png, results)
    summary = dict(
        figure=png,
        curves=curves,
        results={k: {m: v[m] for m in ("test_acc", "test_nfe", "train_seconds")} for k, v in results.items()},
    )
    write_json(os.path.join(out_dir, "fig3.json"), summary)
    return summary


def plot_fig3(curves: dict, path: str, results: dict) -> None:
    """Fig. 3 from :func:`training_curves` of each run and their results, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for label, c in curves.items():
        (line,) = a1.plot(c["epoch"], c["test_nfe"], "o-", label=f"{label} (final NFE {results[label]['test_nfe']:.0f})")
        a2.plot(
            c["epoch"],
            [100 * e for e in c["train_error"]],
            "o-",
            color=line.get_color(),
            label=f"{label} (test acc. {100 * results[label]['test_acc']:.1f} %)",
        )
    a1.set(xlabel="epoch", ylabel="NFE (dopri5, tol 1.4e-8)", title="Function evaluations during training")
    a2.set(xlabel="epoch", ylabel="training error (%)", title="Training error")
    a1.legend()
    a2.legend()
    save_figure(fig, path)
