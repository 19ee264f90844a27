r"""Table 2 of Kelly et al. (2020) at CPU scale: FFJORD density estimation, unregularized vs RNODE
(𝒦 + ℬ) vs TayNODE (R₂), each trained with an adaptive solver and with fixed grids.

One run (:func:`train_one`) trains a :class:`~taynode.models.cnf.CNF` with the shared loop
(:func:`taynode.train.train`) on the loss

.. math:: \mathcal L = -\frac1B\sum_b \log p(x_b) + \lambda \sum_{r} \frac1B\sum_b \int_0^1 r\,dt,

(images: the mean bits/dim in place of the mean −log p, as the TayNODE code),
with r ∈ {} (unregularized), {𝒦, ℬ} (RNODE: one λ for both) or {R₂} (TayNODE), all integrated in
the flow's own solve (ℬ reuses the Hutchinson vjp). Training solves are ``dopri5`` (adaptive) or
``rk4`` on a fixed grid of ``steps`` steps (the paper's fixed-grid rows). A run whose loss or
update becomes NaN/inf, or whose solve fails (an adaptive solve past ``max_steps``), is reported
as *diverged*: training stops, the last good checkpoint stays in its folder, and the table shows
NaN, as Table 2's NaN rows.

Evaluation (:func:`evaluate`, every run the same way): the trained weights are cast to float64
and the flow is solved with adaptive ``dopri5`` at rtol = atol = ``eval_tol`` on the held-out
points: NLL (nats, mean of −log p; for images bits/dim, see ``mnist``), NFE (exact count, mean over batches) of the plain flow
(z, Δlogp); R₂, ℬ and 𝒦 (means of the per-example integrals) from a second solve with them in
the state. In 2-D the trace (and so ℬ) is exact in evaluation; Hutchinson's estimator is used in
training, as FFJORD does.

Presets (:data:`PRESETS`):

``cpu``
    2-D ``8gaussians``; a small MLP 2 → 64 → 64 → 2 (tanh, time concatenated); 20,000 training
    and 2,000 test points; batch 256, 1,000 Adam steps at 1e-3; float32 training with dopri5 at
    rtol = atol = 1e-5, or rk4 on 5 and 8 steps; λ = 0.5 for R₂ (the mean over the 2 features)
    and λ = 0.05 for each of 𝒦 and ℬ (sums, as Finlay et al. define them), both chosen so that
    the NLL costs under 1 %; evaluation at 1.4e-8 on the 2,000 test points (R₂, ℬ, 𝒦 on 500).
    6.4 min for the 9 runs on 2 shared CPU cores (12.5 min under heavier load).
``tiny``
    A smoke test of the whole command (seconds of training).
``mnist``
    A reduced MNIST setting: the official images downsampled by 2×2 block means, rounded, to
    14×14 (:func:`mnist_images`; still 256 grey levels, D = 196); uniform dequantization and the
    logit transform (:func:`~taynode.models.cnf.dequantize_logit`) with α = 0.05 (FFJORD used
    1e-6 for MNIST; the milder α keeps the logit-space data within ±3, which a flow trained for
    a few hundred steps can reach), fresh dequantization noise every step; the paper's
    single-scale conv dynamics with fewer channels (:class:`~taynode.models.cnf.ConvDynamics`,
    1 → 8 → 8 → 1, 3×3, softplus, time as an input channel), the last layer initialized to zero
    as in the TayNODE code (training starts from the identity flow); batch 32, 300 Adam steps
    at 1e-3 over the 60,000 training images (0.16 epoch); loss = bits/dim + λ·(regularizers),
    as in the TayNODE code; float32 training with dopri5 at rtol = atol = 1e-5 or rk4 on 5
    steps; λ = 1e-2 for R₂ and 2e-4 for each of 𝒦 and ℬ (both give a penalty of ≈ 0.27 bits/dim
    at a 200-step unregularized model; not tuned). Evaluation on the first 500 test images in
    bits/dim (Hutchinson trace, dequantization noise fixed by the seed), dopri5 at 1e-5 in
    float64; R₂, ℬ, 𝒦 on the first 100. Run time: ``benchmarks/ffjord/README.md``.
``miniboone``
    The paper's tabular setting (ConcatSquash 43 → 860 → 860 → 43, softplus, batch 1,000,
    rk4 grids of 5, 6, 8 steps); needs MAF's ``data.npy`` (:mod:`taynode.data.miniboone`) and
    a GPU; not run here.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import toy2d
from ..models.classifier import steer_end_time
from ..models.cnf import CNF, ConcatSquashMLP, ConvDynamics, bits_per_dim, dequantize_logit
from ..models.mlp import MLPDynamics
from ..regularizers import RK, RegularizerSet
from ..solvers import get as get_solver
from ..train import CHECKPOINT, NonFiniteLossError, ShuffledBatches, read_log, read_meta, train
from .common import (
    QUADRATURE_DEFAULTS,
    cast,
    check_quadrature,
    save_figure,
    setting,
    stored_config,
    with_x64,
    write_json,
    write_table,
)
from .common import preset as _preset

__all__ = [
    "PRESETS",
    "FFJORDConfig",
    "REGS",
    "evaluate",
    "load_data",
    "make_cnf",
    "markdown_table",
    "mnist_images",
    "run_one",
    "run_table",
    "train_one",
]

REGS = ("none", "rnode", "r2")
DATASETS = toy2d.NAMES + ("miniboone", "mnist")
ARCHS = ("mlp", "concatsquash", "conv")
EVAL_REGS = ("R2", "jacobian", "kinetic")
MAX_EXACT_EVAL_DIM = 16


@dataclass(frozen=True)
class FFJORDConfig:
    dataset: str = setting("8gaussians", "a 2-D toy (moons, 8gaussians, pinwheel, checkerboard, rings), miniboone or mnist")
    arch: str = "mlp"  # "mlp" (time concatenated), "concatsquash" or "conv" (images)
    hidden: tuple = (64, 64)  # hidden widths (conv: channels of each hidden layer, all equal)
    activation: str = "tanh"
    train_examples: int = 20000  # toys: points drawn for training (test: eval_examples more)
    batch: int = 256
    iters: int = setting(1000, "training steps per model")
    lr: float = 1e-3
    dtype: str = "float32"
    train_tol: float = 1e-5
    trace: str = "hutchinson"
    noise: str = "gaussian"
    taylor_method: str = "incremental"
    lam_r2: float = setting(0.5, "TayNODE's weight λ of R2 (R2 is a mean over the d features)")
    lam_rnode: float = setting(0.05, "RNODE's weight λ of each of K and B")
    regs: tuple = setting(REGS, "models to train: none, rnode, r2")
    quadrature: str = setting(
        "integrated",
        "how the regularizers are computed in training: integrated (the paper's: in the ODE state, at every solver stage) or sampled (unbiased: at `samples` random times per solve)",
    )
    samples: int = setting(1, "sample times per solve with quadrature sampled")
    steer: float = setting(
        0.0, "STEER: the end time drawn per training step from [1 - steer, 1 + steer] (Ghosh et al. 2020); 0: off"
    )
    fixed_solver: str = "rk4"
    fixed_steps: tuple = setting((5, 8), "fixed-grid step counts to train with (none: adaptive only)")
    eval_tol: float = 1.4e-8
    eval_examples: int = 2000
    eval_reg_examples: int = 500
    eval_batch: int = 1000
    max_steps: int = 4096
    checkpoint_every: int = 100
    plot_grid: int = 120  # density plot resolution (points per axis)
    seed: int = setting(0, "seed for data, initialization, batches and noise")
    image_size: int = 14  # mnist: side after downsampling 28 by block means (28, 14, 7 or 4)
    alpha: float = 1e-6  # mnist: the logit transform's α
    zero_last: bool = False  # initialize the dynamics' last layer to zero (identity flow)
    data: str | None = setting(
        None,
        "MINIBOONE data.npy or its folder, or the MNIST file or folder (None: $TAYNODE_MINIBOONE / $TAYNODE_MNIST or ../shared/data)",
        compare=False,
    )

    def __post_init__(self):
        check_quadrature(self)
        if not 0 <= self.steer < 1:
            raise ValueError(f"steer (STEER's half-width b around t1 = 1) must be in [0, 1), got {self.steer}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid: {list(DATASETS)}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {list(ARCHS)}, got {self.arch!r}")
        if (self.arch == "conv") != (self.dataset == "mnist"):
            raise ValueError(
                f"the conv architecture is for images (dataset 'mnist') and images need it; got arch {self.arch!r} with dataset {self.dataset!r}"
            )
        if self.arch == "conv" and (not self.hidden or len(set(self.hidden)) != 1):
            raise ValueError(f"conv dynamics have hidden layers of equal channels, got hidden={self.hidden}")
        if self.image_size not in (28, 14, 7, 4):
            raise ValueError(f"image_size must be 28, 14, 7 or 4 (28 divided by a block size), got {self.image_size}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        get_solver(self.fixed_solver)
        for name in ("batch", "iters", "eval_examples", "eval_reg_examples", "eval_batch", "train_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lam_r2", "lam_rnode"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.regs or any(r not in REGS for r in self.regs):
            raise ValueError(f"regs must be a non-empty subset of {list(REGS)}, got {self.regs}")
        if any(s < 1 for s in self.fixed_steps):
            raise ValueError(f"fixed_steps must be positive integers, got {self.fixed_steps}")


MNIST_LAM_R2 = 1e-2  # λ·R₂ ≈ 0.28 bits/dim at the unregularized model (200 steps: R₂ 27.6)
MNIST_LAM_RNODE = 2e-4  # λ·(𝒦+ℬ) ≈ 0.27 bits/dim there (𝒦 1329, ℬ 38.4): the same initial weight

PRESETS = {
    "cpu": FFJORDConfig(),
    "tiny": FFJORDConfig(
        hidden=(16,),
        train_examples=512,
        batch=64,
        iters=4,
        eval_examples=128,
        eval_reg_examples=32,
        eval_batch=128,
        eval_tol=1e-6,
        fixed_steps=(2,),
        checkpoint_every=2,
        plot_grid=40,
    ),
    "mnist": FFJORDConfig(
        dataset="mnist",
        arch="conv",
        hidden=(8, 8),
        activation="softplus",
        zero_last=True,
        image_size=14,
        alpha=0.05,
        train_examples=60000,
        batch=32,
        iters=300,
        lam_r2=MNIST_LAM_R2,
        lam_rnode=MNIST_LAM_RNODE,
        fixed_steps=(5,),
        eval_tol=1e-5,
        eval_examples=500,
        eval_reg_examples=100,
        eval_batch=250,
        checkpoint_every=50,
    ),
    "miniboone": FFJORDConfig(
        dataset="miniboone",
        arch="concatsquash",
        hidden=(860, 860),
        activation="softplus",
        batch=1000,
        iters=20000,
        eval_examples=3648,
        eval_reg_examples=1000,
        fixed_steps=(5, 6, 8),
        checkpoint_every=500,
    ),
}


def preset(name: str, **overrides) -> FFJORDConfig:
    """The preset's config with ``overrides`` (``None`` values are ignored)."""
    return _preset(PRESETS, name, **overrides)


def _np_dtype(cfg):
    return np.float64 if cfg.dtype == "float64" else np.float32


def mnist_images(images, size: int) -> np.ndarray:
    """uint8 images (n, 28, 28) → uint8 (n, 1, size, size): means over (28/size)² blocks,
    rounded to the nearest integer, so they stay in {0, …, 255} for the dequantization."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected MNIST images of shape (n, 28, 28), got {images.shape}")
    if 28 % size:
        raise ValueError(f"size must divide 28, got {size}")
    k = 28 // size
    blocks = images.reshape(images.shape[0], size, k, size, k).astype(np.float64).mean(axis=(2, 4))
    return np.rint(blocks).astype(np.uint8)[:, None]


def load_data(cfg: FFJORDConfig):
    """``(train, test)`` arrays: toys drawn with seeds ``seed`` and ``seed + 1``; MINIBOONE's
    MAF train and test splits (the first ``eval_examples`` test rows); MNIST's first
    ``train_examples`` training and first ``eval_examples`` test images, downsampled
    (:func:`mnist_images`), uint8 (n, 1, s, s)."""
    if cfg.dataset == "mnist":
        from ..data import mnist

        d = mnist.load(cfg.data)
        return mnist_images(d.x_train[: cfg.train_examples], cfg.image_size), mnist_images(
            d.x_test[: cfg.eval_examples], cfg.image_size
        )
    if cfg.dataset == "miniboone":
        from ..data import miniboone

        d = miniboone.load(cfg.data)
        return d.train.astype(_np_dtype(cfg)), d.test[: cfg.eval_examples]
    train_x = toy2d.sample(cfg.dataset, cfg.train_examples, seed=cfg.seed).astype(_np_dtype(cfg))
    test_x = toy2d.sample(cfg.dataset, cfg.eval_examples, seed=cfg.seed + 1)
    return train_x, test_x


def make_cnf(cfg: FFJORDConfig, shape, trace: str | None = None) -> CNF:
    """The flow for examples of ``shape`` (an int d for vectors, or (C, H, W) for images)."""
    key = jax.random.PRNGKey(cfg.seed)
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    if cfg.arch == "conv":
        if len(tuple(np.atleast_1d(shape))) != 3:
            raise ValueError(f"the conv architecture needs image shape (C, H, W), got {shape}")
        dyn = ConvDynamics(int(shape[0]), cfg.hidden[0], len(cfg.hidden) + 1, cfg.activation, key=key, dtype=dtype)
    else:
        dim = int(np.prod(shape))
        cls = MLPDynamics if cfg.arch == "mlp" else ConcatSquashMLP
        dyn = cls((dim, *cfg.hidden, dim), cfg.activation, key=key, dtype=dtype)
    if cfg.zero_last:  # f ≡ 0 at initialization: the flow starts as the identity (TayNODE's MNIST code)
        dyn = eqx.tree_at(
            lambda m: (m.layers[-1].weight, m.layers[-1].bias),
            dyn,
            (jnp.zeros_like(dyn.layers[-1].weight), jnp.zeros_like(dyn.layers[-1].bias)),
        )
    return CNF(dyn, trace=trace or cfg.trace, noise=cfg.noise)


def _is_images(cfg: FFJORDConfig) -> bool:
    return cfg.dataset == "mnist"


def _flow_input(cfg: FFJORDConfig, x, key, dtype):
    """``(y, logdet)``: images dequantized and logit-transformed (with the log-determinant);
    other data as they are (logdet 0)."""
    if _is_images(cfg):
        return dequantize_logit(key, x, cfg.alpha, dtype=dtype)
    x = jnp.asarray(x, dtype)
    return x, jnp.zeros(x.shape[:1], dtype)


def _data_loss(cfg: FFJORDConfig, log_prob, logdet, dims: int):
    """Per-example loss of the data term: bits/dim for images, −log p (nats) otherwise."""
    return bits_per_dim(log_prob, logdet, dims) if _is_images(cfg) else -log_prob


def regularizers(cfg: FFJORDConfig, reg: str, lam: float | None = None) -> RegularizerSet:
    """The :class:`~taynode.regularizers.RegularizerSet` of ``reg`` ∈ :data:`REGS` at the config's
    λ, or of any regularizer set (e.g. ``"ernode"``) at a given ``lam``: parsed once per run."""
    lams = {"none": 0.0, "rnode": cfg.lam_rnode, "r2": cfg.lam_r2}  # RNODE: one λ for 𝒦 and ℬ
    if lam is None and reg not in lams:
        raise ValueError(f"unknown regularization {reg!r}; valid: {list(REGS)} (or give its λ)")
    return RegularizerSet.parse(reg, lam=lams[reg] if lam is None else lam, taylor_method=cfg.taylor_method)


def solver_label(steps, fixed_solver: str = "rk4") -> str:
    return "adaptive (dopri5)" if steps is None else f"fixed grid ({fixed_solver}, {steps} steps)"


def train_one(
    cfg: FFJORDConfig, reg: str, steps, train_x, run_dir, *, progress=True, resume=False, lam: float | None = None
) -> dict:
    """Train one model; returns ``{"model", "train_seconds", "status", "steps_done", "error"}``.

    ``steps=None`` trains with adaptive dopri5 at ``train_tol``; an integer, with
    ``fixed_solver`` on that many steps. Divergence (see the module docstring) gives
    ``status="diverged"``, ``steps_done`` = the step of the last good checkpoint (kept in
    ``run_dir``), and no model (its metrics are reported as NaN). ``train_seconds`` is the shared
    loop's training time (compilation included); ``step_seconds`` the mean time of a step after
    the first logged one. ``lam``: the weight of ``reg`` when it is not the config's (any
    regularizer set then works, e.g. ``"ernode"``).
    """
    lam_given = lam
    rset = regularizers(cfg, reg, lam)
    solve_kw = (
        dict(solver="dopri5", rtol=cfg.train_tol, atol=cfg.train_tol)
        if steps is None
        else dict(solver=cfg.fixed_solver, steps=steps)
    )
    model = make_cnf(cfg, train_x.shape[1:])
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    dims = math.prod(train_x.shape[1:])

    def loss_fn(cnf, x, key):
        k_data, k_noise = jax.random.split(key)
        y, logdet = _flow_input(cfg, x, k_data, dtype)
        steer = {"t1": steer_end_time(key, cfg.steer, cnf.t1)} if cfg.steer else {}
        r = cnf.forward(
            y,
            key=k_noise,
            regularizers=rset,
            max_steps=cfg.max_steps,
            quadrature=cfg.quadrature,
            samples=cfg.samples,
            **solve_kw,
            **steer,
        )
        nll = jnp.mean(_data_loss(cfg, r.log_prob, logdet, dims))
        means = {k: jnp.mean(v) for k, v in r.integrals.items()}
        loss = nll + rset.penalty(means) if means else nll
        return loss, {"nll": nll, "nfe": r.stats["nfe"]} | means

    batches = ShuffledBatches(train_x, cfg.batch, seed=cfg.seed)
    # the unregularized run does not depend on the quadrature: one run serves both
    conf = stored_config(replace(cfg, **QUADRATURE_DEFAULTS) if reg == "none" else cfg) | {
        "data": None,
        "reg": reg,
        "train_steps": steps,
    }
    if lam_given is not None and reg not in REGS:
        conf["lam"] = lam_given
    try:
        res = train(
            model,
            optax.adam(cfg.lr),
            loss_fn,
            batches,
            run_dir,
            steps=cfg.iters,
            seed=cfg.seed,
            checkpoint_every=cfg.checkpoint_every,
            log_every=10,
            resume=resume,
            progress=progress,
            config=conf,
            desc=f"{reg} {solver_label(steps, cfg.fixed_solver)}",
        )
    except (NonFiniteLossError, eqx.EquinoxRuntimeError) as e:
        ckpt = os.path.join(run_dir, CHECKPOINT)
        done = read_meta(ckpt)["step"] if os.path.exists(ckpt) else 0
        log = read_log(run_dir, "step")
        return dict(
            model=None,
            train_seconds=log[-1]["time"] if log else float("nan"),
            step_seconds=_step_seconds(log),
            status="diverged",
            steps_done=done,
            error=str(e).strip().splitlines()[0][:300],
        )
    return dict(
        model=res.model,
        train_seconds=res.train_time,
        step_seconds=_step_seconds(read_log(run_dir, "step")),
        status="ok",
        steps_done=res.step,
        error=None,
    )


def _step_seconds(log) -> float:
    """Mean wall time of a training step after the first logged one (which includes compilation)."""
    if len(log) < 2 or log[-1]["step"] == log[0]["step"]:
        return float("nan")
    return (log[-1]["time"] - log[0]["time"]) / (log[-1]["step"] - log[0]["step"])


@functools.cache
def _eval_fns(tol, max_steps, taylor_method):
    plain = eqx.filter_jit(lambda cnf, x, key: cnf.forward(x, key=key, rtol=tol, atol=tol, max_steps=max_steps))
    regs = (RK(2, taylor_method), "jacobian", "kinetic")
    with_regs = eqx.filter_jit(
        lambda cnf, x, key: cnf.forward(x, key=key, regularizers=regs, rtol=tol, atol=tol, max_steps=max_steps).integrals
    )
    return plain, with_regs


@with_x64
def evaluate(cnf: CNF, cfg: FFJORDConfig, test_x) -> dict:
    """NLL (nats; bits/dim for images), NFE, R₂, ℬ, 𝒦 with dopri5 at ``eval_tol`` in float64
    (module docstring). Images are dequantized with noise fixed by the seed (the same noise for
    a given image in every run)."""
    dims = math.prod(test_x.shape[1:])
    cnf = cast(replace_trace(cnf, "exact" if dims <= MAX_EXACT_EVAL_DIM else "hutchinson"), jnp.float64)
    plain, with_regs = _eval_fns(cfg.eval_tol, cfg.max_steps, cfg.taylor_method)
    key = jax.random.PRNGKey(cfg.seed + 12345)

    def batch(xs, i):
        return _flow_input(cfg, xs[i : i + cfg.eval_batch], jax.random.fold_in(key, 2 * 10**9 + i), jnp.float64)

    losses, nfes = [], []
    for i in range(0, len(test_x), cfg.eval_batch):
        y, logdet = batch(test_x, i)
        r = plain(cnf, y, jax.random.fold_in(key, i))
        losses.append(np.asarray(_data_loss(cfg, r.log_prob, logdet, dims)))
        nfes.append(int(r.stats["nfe"]))
    out = {"nll": float(np.mean(np.concatenate(losses))), "nfe": float(np.mean(nfes))}
    xr = test_x[: cfg.eval_reg_examples]
    sums = {k: 0.0 for k in EVAL_REGS}
    for i in range(0, len(xr), cfg.eval_batch):
        ints = with_regs(cnf, batch(xr, i)[0], jax.random.fold_in(key, 10**9 + i))
        for k in EVAL_REGS:
            sums[k] += float(jnp.sum(ints[k]))
    return out | {k: v / len(xr) for k, v in sums.items()}


def replace_trace(cnf: CNF, trace: str) -> CNF:
    return CNF(cnf.dynamics, t1=cnf.t1, trace=trace, noise=cnf.noise)


def _density_grid(cnf: CNF, lim: float, n: int, tol: float):
    g = np.linspace(-lim, lim, n)
    pts = np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    lp = eqx.filter_jit(lambda c, x: c.log_prob(x, rtol=tol, atol=tol))(
        cast(replace_trace(cnf, "exact"), jnp.float64), jnp.asarray(pts)
    )
    return np.exp(np.asarray(lp)).reshape(n, n)


def plot_densities(models: dict, results: dict, train_x, path: str, *, lim: float = 4.5, n: int = 120, tol: float = 1e-6):
    """Density heat maps: the data (histogram) and each run's p(x) on a grid (dopri5, exact trace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted({k[0] for k in models}, key=lambda s: (s != "adaptive (dopri5)", s))
    cols = [r for r in REGS if any(k[1] == r for k in models)]
    fig, axes = plt.subplots(len(rows), len(cols) + 1, figsize=(3.0 * (len(cols) + 1), 3.0 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        ax = axes[i, 0]
        ax.hist2d(train_x[:, 0], train_x[:, 1], bins=n // 2, range=[[-lim, lim], [-lim, lim]], cmap="magma")
        ax.set_title("data" if i == 0 else "")
        ax.set_ylabel(f"trained: {row}")
        for j, reg in enumerate(cols, 1):
            ax = axes[i, j]
            m, r = models.get((row, reg)), results.get(f"{row} | {reg}")
            if m is None:
                ax.text(
                    0.5,
                    0.5,
                    "diverged (NaN)" if r and r["status"] == "diverged" else "not run",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_facecolor("black")
            else:
                ax.imshow(_density_grid(m, lim, n, tol), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
            name = {"none": "unregularized", "rnode": "RNODE (K+B)", "r2": "TayNODE (R2)"}[reg]
            ax.set_title(f"{name}\nNLL {r['nll']:.3f}, NFE {r['nfe']:.0f}" if r and r["status"] == "ok" else name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


COLUMNS = ("training", "regularization", "status", "train_seconds", "step_seconds", "nll", "nfe", "R2", "jacobian", "kinetic")


def _fmt(v, spec):
    return "NaN" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown_table(summary) -> str:
    c = summary["config"]
    rows = [
        f"| training solver | model | λ | training time (s) | s / step | test {'bits/dim' if summary.get('nll_unit') == 'bits/dim' else 'NLL (nats)'} | eval NFE | R₂ | ℬ | 𝒦 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"none": "unregularized", "rnode": "RNODE (𝒦+ℬ)", "r2": "TayNODE (R₂)"}
    for r in summary["rows"]:
        lam = {"none": "–", "rnode": f"{c['lam_rnode']:g}", "r2": f"{c['lam_r2']:g}"}[r["regularization"]]
        status = "" if r["status"] == "ok" else f" — diverged (NaN); last good checkpoint: step {r['steps_done']}"
        rows.append(
            f"| {r['training']} | {names[r['regularization']]}{status} | {lam} | {_fmt(r['train_seconds'], '.0f')} | {_fmt(r['step_seconds'], '.3f')} | {_fmt(r['nll'], '.4f')} | "
            f"{_fmt(r['nfe'], '.1f')} | {_fmt(r['R2'], '.4g')} | {_fmt(r['jacobian'], '.4g')} | {_fmt(r['kinetic'], '.4g')} |"
        )
    return "\n".join(rows)


@with_x64  # float64 evaluation; training arrays are typed explicitly
@with_x64
def run_one(cfg: FFJORDConfig, reg: str, lam: float, run_dir: str, *, progress: bool = False, resume: bool = True) -> dict:
    """Train (or resume) one adaptive model with ``reg`` at weight ``lam`` (``"none"``: unregularized),
    evaluate it (:func:`evaluate`) and write ``run_dir/results.json``."""
    if reg in REGS and lam != regularizers(cfg, reg).lam:
        raise ValueError(
            f"{reg}'s λ comes from the config (lam_r2, lam_rnode; 0 for none): got lam={lam}, config {regularizers(cfg, reg).lam}"
        )
    train_x, test_x = load_data(cfg)
    t = train_one(cfg, reg, None, train_x, run_dir, progress=progress, resume=resume, lam=None if reg in REGS else lam)
    metrics = evaluate(t["model"], cfg, test_x) if t["status"] == "ok" else {k: float("nan") for k in ("nll", "nfe") + EVAL_REGS}
    summary = dict(
        config=stored_config(cfg) | {"data": None, "reg": reg, "lam": lam},
        status=t["status"],
        error=t["error"],
        steps=t["steps_done"],
        train_seconds=t["train_seconds"],
        step_seconds=t["step_seconds"],
        **metrics,
    )
    write_json(os.path.join(run_dir, "results.json"), summary, default=float)
    return summary


def run_table(cfg: FFJORDConfig, out_dir: str, *, progress: bool = True, resume: bool = False) -> dict:
    """Train and evaluate unregularized, RNODE and TayNODE with adaptive and each fixed grid;
    write ``table.md``, ``table.csv``, ``results.json`` and ``densities.png`` (2-D data) into
    ``out_dir`` (one run folder per row under ``runs/``)."""
    os.makedirs(out_dir, exist_ok=True)
    train_x, test_x = load_data(cfg)
    rows, models, results = [], {}, {}
    nan = {k: float("nan") for k in ("nll", "nfe") + EVAL_REGS}
    for steps in (None, *cfg.fixed_steps):
        label = solver_label(steps, cfg.fixed_solver)
        for reg in cfg.regs:
            sub = os.path.join(out_dir, "runs", f"{'adaptive' if steps is None else f'fixed{steps}'}_{reg}")
            t = train_one(cfg, reg, steps, train_x, sub, progress=progress, resume=resume)
            metrics = evaluate(t["model"], cfg, test_x) if t["status"] == "ok" else nan
            row = (
                dict(
                    training=label,
                    regularization=reg,
                    status=t["status"],
                    train_seconds=t["train_seconds"],
                    step_seconds=t["step_seconds"],
                    steps_done=t["steps_done"],
                    error=t["error"],
                    run_dir=sub,
                )
                | metrics
            )
            rows.append(row)
            results[f"{label} | {reg}"] = row
            if t["model"] is not None:
                models[(label, reg)] = t["model"]
    summary = {
        "config": stored_config(cfg) | {"data": None},
        "train_examples": len(train_x),
        "test_examples": len(test_x),
        "nll_unit": "bits/dim" if _is_images(cfg) else "nats",
        "rows": rows,
    }
    if train_x.ndim == 2 and train_x.shape[1] == 2:
        png = os.path.join(out_dir, "densities.png")
        plot_densities(models, results, train_x, png, n=cfg.plot_grid)
        summary["figure"] = png
    table = markdown_table(summary)
    write_table(os.path.join(out_dir, "table"), table + "\n", rows, list(COLUMNS) + ["steps_done"])
    write_json(os.path.join(out_dir, "results.json"), summary, default=float)
    return summary
