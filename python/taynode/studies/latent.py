r"""The paper's Fig. 4: a Latent ODE on PhysioNet 2012, unregularized vs R₃ (λ = 1e-2).

Two Latent ODEs (:mod:`taynode.models.latent_ode`) are trained identically with the shared
training loop (:func:`taynode.train.train`: same seed, same batches, same initialization), one
with λ·R₃ integrated over the whole latent trajectory in the same solve. Held-out patients are
then evaluated in float64 with dopri5 at the paper's tolerance (rtol = atol = 1.4e-8):

* ``elbo``: the training objective at KL weight 1: with ``iwae`` (the default, as the
  authors' code) Rubanova et al.'s S-sample log-mean-exp objective, which is not a bound on
  log p(x) (see :mod:`taynode.models.latent_ode`); ``loss`` is its negative;
* ``mse``: the mean squared error over observed test values (normalized units, [0, 1] per
  variable over the training split), averaged over the S samples;
* ``nfe``: the decoder's NFE per sample: every z₀ sample solved alone (``jax.vmap`` over
  batch-1 solves, as the authors' code ``vmap``-ed ``odeint`` over records), averaged;
* ``R3``: the test trajectories' mean R₃ integral.

Time runs over [0, 1] = the 48 h window (hourly bins → 49 observation times), as in Rubanova
et al.'s code, which scales each batch's times to [0, 1].

Presets (:data:`PRESETS`):

* ``paper``: the setup of the authors' code: sets A and B (8,000 records, 80/20 split),
  hourly bins, batch 50, 100 epochs, Adamax at lr 1e-2 decayed ×0.999 per step down to 1e-3,
  GRU recognition network (state 40), MLP dynamics 20 → 4×50 → 20 (tanh), 3 samples of z₀ with
  Rubanova et al.'s multi-sample objective, KL annealed from epoch 10, observation noise 0.01, trained in float64 at
  rtol = atol = 1.4e-8. Days of CPU time.
* ``cpu``: the same model and objective at a scale two shared CPU cores train in about 20
  minutes for both runs: set A only (4,000 records: 3,200 train / 800 test), dynamics
  20 → 2×50 → 20, 120 epochs of batch 50 (7,680 steps), KL annealed from epoch 2 at rate 0.9
  (instead of epoch 10 at 0.99), trained in float32 at rtol = atol = 1e-5; evaluated as above
  on all 800 test records. Everything else as in ``paper``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import physionet
from ..models.latent_ode import LatentODE, kl_coefficient, latent_ode_loss
from ..regularizers import RegularizerSet, parse
from ..solve import solve
from ..train import ShuffledBatches, train
from .common import (
    QUADRATURE_DEFAULTS,
    cast,
    check_quadrature,
    save_figure,
    setting,
    stored_config,
    with_x64,
    write_json,
    write_text,
)
from .common import preset as _preset


@dataclass(frozen=True)
class LatentConfig:
    """The Latent ODE study's settings (the ``paper`` preset's by default; fields with help are flags)."""

    sets: tuple = ("a", "b")
    max_records: int | None = setting(None, "use a random subset of this many records (None: all)")
    bin_hours: float = 1.0
    latent: int = 20
    rec_hidden: int = 40
    rec_units: int = 50
    dyn_hidden: tuple = (50, 50, 50, 50)
    batch: int = setting(50, "records per training batch (at most the training records)")
    epochs: int = setting(100, "training epochs per model")
    lr: float = 1e-2
    lr_decay: float = 0.999  # per step, down to lr / 10
    n_samples: int = 3
    iwae: bool = True
    obs_std: float = 0.01
    kl_wait: float = 10
    kl_rate: float = 0.99
    dtype: str = "float64"
    train_tol: float = 1.4e-8
    reg: str = "r3"
    lam: float = setting(1e-2, "weight λ of the regularizer (> 0)")
    quadrature: str = setting(
        "integrated",
        "how the regularizer is computed in training: integrated (the paper's: in the ODE state, at every solver stage) or sampled (unbiased: at `samples` random times per solve)",
    )
    samples: int = setting(1, "sample times per solve with quadrature sampled")
    eval_tol: float = 1.4e-8
    eval_batch: int = 100
    nfe_records: int | None = None  # test records whose per-sample NFE is measured (None: all)
    steer: float = setting(
        0.0,
        "STEER (Ghosh et al. 2020, as Pal et al.'s code): each observation time after the first drawn per training step within ± steer × half its gap to the previous one; 0: off",
    )
    epoch_eval_records: int = setting(
        0, "test records whose loss and per-sample NFE are logged after each epoch (the NFE curve); 0: none"
    )
    seed: int = setting(0, "seed for the split, initialization and batches")


PRESETS = {
    "paper": LatentConfig(),
    "cpu": LatentConfig(
        sets=("a",),
        dyn_hidden=(50, 50),
        epochs=120,
        kl_wait=2,
        kl_rate=0.9,
        dtype="float32",
        train_tol=1e-5,
    ),
}


def load_data(cfg: LatentConfig, root: str | None = None) -> tuple[physionet.Split, np.ndarray]:
    """The PhysioNet split of ``cfg`` (from ``root``, default: $TAYNODE_PHYSIONET or the shared data)
    and its observation times."""
    split = physionet.load(root, sets=cfg.sets, bin_hours=cfg.bin_hours, seed=cfg.seed, max_records=cfg.max_records)
    if split.train.grid is None:
        raise ValueError("the Latent ODE study needs binned data (bin_hours), so a batch shares its observation times")
    ts = split.train.grid / physionet.HORIZON_HOURS
    return split, ts


def make_model(cfg: LatentConfig, n_vars: int, dtype: Any) -> LatentODE:
    """A fresh Latent ODE of ``cfg`` for ``n_vars`` variables, its weights in ``dtype``."""
    key = jax.random.PRNGKey(cfg.seed)
    return LatentODE(n_vars, cfg.latent, cfg.rec_hidden, cfg.rec_units, tuple(cfg.dyn_hidden), key=key, dtype=dtype)


class _Batches:
    """Shuffled (values, mask) batches plus the step's annealed KL weight (a function of the step,
    so resumed runs see the same weights)."""

    def __init__(self, values, mask, cfg: LatentConfig, dtype):
        self.inner = ShuffledBatches((values, mask), cfg.batch, cfg.seed)
        self.steps_per_epoch = self.inner.steps_per_epoch
        self.cfg, self.dtype = cfg, dtype

    def __call__(self, step):
        values, mask = self.inner(step)
        coef = kl_coefficient(step // self.steps_per_epoch, self.cfg.kl_wait, self.cfg.kl_rate)
        return values, mask, np.asarray(coef, self.dtype)


def _regs(cfg: LatentConfig, lam: float) -> RegularizerSet:
    """The set of ``cfg.reg`` at weight ``lam`` each (e.g. RNODE's 𝒦 and ℬ), parsed once."""
    if not lam > 0:
        return RegularizerSet(lam=())
    rset = RegularizerSet.parse(cfg.reg)
    return RegularizerSet.parse(rset, lam=[lam] * len(rset))


def train_one(
    cfg: LatentConfig,
    lam: float,
    split: physionet.Split,
    ts: np.ndarray,
    run_dir: str,
    *,
    progress: bool = True,
    resume: bool = False,
    desc: str | None = None,
    result: bool = False,
) -> Any:
    """Train one Latent ODE (λ = 0: no regularizer in the state); returns the trained model (with
    ``result=True`` the loop's :class:`~taynode.train.TrainResult`, which has the training time).

    With ``cfg.epoch_eval_records`` > 0 the first that many test records are evaluated as in
    :func:`evaluate` after every epoch, and their loss and per-sample NFE go into the log."""
    dtype = jnp.dtype(cfg.dtype)
    model = make_model(cfg, len(physionet.VARIABLES), dtype)
    rset = _regs(cfg, lam)
    ts_ = jnp.asarray(ts, dtype)
    if cfg.steer:
        from ..models.classifier import steer_times

    def loss_fn(model, batch, key):
        values, mask, coef = batch
        times = steer_times(key, ts_, cfg.steer) if cfg.steer else ts_
        return latent_ode_loss(
            model, values, mask, times, key, n_samples=cfg.n_samples, kl_coef=coef, obs_std=cfg.obs_std,
            iwae=cfg.iwae, regularizers=rset, rtol=cfg.train_tol, atol=cfg.train_tol,
            quadrature=cfg.quadrature, samples=cfg.samples,
        )  # fmt: skip

    batches = _Batches(split.train.values.astype(dtype), split.train.mask.astype(dtype), cfg, dtype)
    steps = cfg.epochs * batches.steps_per_epoch
    schedule = optax.exponential_decay(cfg.lr, 1, cfg.lr_decay, end_value=cfg.lr / 10)
    # the run's own λ (and no regularizer when λ = 0), so one unregularized run serves every λ
    config = stored_config(replace(cfg, lam=lam, **(QUADRATURE_DEFAULTS if lam == 0 else {}))) | (
        {"reg": "none"} if lam == 0 else {}
    )

    def epoch_eval(model):
        r = evaluate(model, cfg, split.test, ts, records=cfg.epoch_eval_records)
        return {"test_loss_subset": r["loss"], "test_nfe_subset": r["nfe"]}

    out = train(
        model, optax.adamax(schedule), loss_fn, batches, run_dir, steps=steps, seed=cfg.seed,
        checkpoint_every=max(1, batches.steps_per_epoch), resume=resume, progress=progress,
        config=config, desc=desc, evaluate=epoch_eval if cfg.epoch_eval_records > 0 else None,
    )  # fmt: skip
    return out if result else out.model


def _eval_regularizer(cfg: LatentConfig):
    """The regularizer reported on the test set: the trained one when it is one integrand (R_K,
    𝒦, ℬ), else R₃ (e.g. for RNODE's pair or ERNODE); its result key is its own name."""
    try:
        return parse(cfg.reg)
    except ValueError:
        return parse("r3")


@with_x64
def run_one(
    cfg: LatentConfig, lam: float, run_dir: str, *, root: str | None = None, progress: bool = False, resume: bool = True
) -> dict:
    """Train (or resume) one model of ``cfg`` with weight ``lam`` of ``cfg.reg`` (0: unregularized),
    evaluate it on the whole test split (:func:`evaluate`) and write ``run_dir/results.json``."""
    split, ts = load_data(cfg, root)
    res = train_one(cfg, lam, split, ts, run_dir, progress=progress, resume=resume, desc=os.path.basename(run_dir), result=True)
    summary = dict(
        config=stored_config(cfg) | {"lam": lam, "reg": cfg.reg if lam > 0 else "none"},
        steps=res.step,
        train_seconds=res.train_time,
        **evaluate(res.model, cfg, split.test, ts),
    )
    write_json(os.path.join(run_dir, "results.json"), summary)
    return summary


@eqx.filter_jit
def _batch_metrics(model, values, mask, ts, key, nkey, cfg: LatentConfig):
    # module level, with cfg static: compiled once per batch shape, not once per evaluate() call
    tol = dict(rtol=cfg.eval_tol, atol=cfg.eval_tol)
    reg = _eval_regularizer(cfg)
    _, parts = latent_ode_loss(model, values, mask, ts, key, n_samples=cfg.n_samples, obs_std=cfg.obs_std, iwae=cfg.iwae, **tol)
    mean, log_std = model.encode(values, mask, ts)
    eps = jax.random.normal(key, (cfg.n_samples,) + mean.shape, mean.dtype)
    z0 = (mean + jnp.exp(log_std) * eps).reshape(-1, model.latent)
    r = solve(model.dynamics, z0, ts, regularizers=[reg], key=nkey, **tol).integrals[reg.name]
    # per-sample NFE: each trajectory solved on its own
    nfe = jax.vmap(lambda z: solve(model.dynamics, z[None], ts, **tol).stats["nfe"])(z0)
    return parts["elbo"], parts["mse"], jnp.sum(mask), jnp.mean(r), nfe


@with_x64
def evaluate(
    model: LatentODE,
    cfg: LatentConfig,
    data: physionet.PhysioNet,
    ts: np.ndarray,
    *,
    key: jax.Array | None = None,
    records: int | None = None,
) -> dict:
    """Held-out ELBO, masked MSE, R_K and per-sample decoder NFE in float64 at ``eval_tol``, on
    all of ``data`` or its first ``records`` records."""
    model = cast(model, jnp.float64)
    ts = jnp.asarray(ts, jnp.float64)
    reg = _eval_regularizer(cfg)
    key = jax.random.PRNGKey(cfg.seed + 1) if key is None else key
    nkey = jax.random.PRNGKey(cfg.seed + 2)  # Hutchinson noise, if the regularizer needs it

    def batch_metrics(model, values, mask, key):
        return _batch_metrics(model, values, mask, ts, key, nkey, cfg)

    n = len(data) if records is None else min(records, len(data))
    n_nfe = n if cfg.nfe_records is None else min(cfg.nfe_records, n)
    sums = dict(elbo=0.0, mse=0.0, R=0.0)
    obs, nfes = 0.0, []
    for i, start in enumerate(range(0, n, cfg.eval_batch)):
        sl = slice(start, min(start + cfg.eval_batch, n))
        values, mask = jnp.asarray(data.values[sl]), jnp.asarray(data.mask[sl])
        elbo, mse, n_obs, r, nfe = batch_metrics(model, values, mask, jax.random.fold_in(key, i))
        size = sl.stop - sl.start
        sums["elbo"] += float(elbo) * size
        sums["R"] += float(r) * size
        sums["mse"] += float(mse) * float(n_obs)  # MSE over all observed test values
        obs += float(n_obs)
        keep = max(0, min(size, n_nfe - start)) * cfg.n_samples
        nfes.append(np.asarray(nfe).reshape(cfg.n_samples, size)[:, : keep // cfg.n_samples].ravel())
    nfes = np.concatenate(nfes)
    return {
        "elbo": sums["elbo"] / n,
        "loss": -sums["elbo"] / n,
        "mse": sums["mse"] / obs,
        reg.name: sums["R"] / n,
        "nfe": float(np.mean(nfes)),
        "nfe_std": float(np.std(nfes)),
        "nfe_samples": int(len(nfes)),
        "test_records": n,
    }


def _plane(model, data, ts, n=60):
    """The 2-D plane through the mean latent state spanned by the top two principal directions of
    the test trajectories (z₀ = the posterior means of ``n`` records)."""
    model = cast(model, jnp.float64)
    ts = jnp.asarray(ts, jnp.float64)
    mean, _ = model.encode(jnp.asarray(data.values[:n]), jnp.asarray(data.mask[:n]), ts)
    zs = np.asarray(solve(model.dynamics, mean, ts, rtol=1e-8, atol=1e-8).ys)  # (T, n, latent)
    flat = zs.reshape(-1, zs.shape[-1])
    center = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - center, full_matrices=False)
    return model, zs, center, vt[:2]


def plot(models: dict, results: dict, data: physionet.PhysioNet, ts: np.ndarray, path: str, cfg: LatentConfig) -> None:
    """Fig. 4: reconstructions and latent trajectories of each model on test records, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5), layout="constrained")
    t_mid = float(ts[len(ts) // 2])
    for ax, (name, model) in zip(np.atleast_1d(axes), models.items()):
        m64, zs, center, basis = _plane(model, data, ts)
        proj = (zs - center) @ basis.T  # (T, n, 2)
        lo, hi = proj.min((0, 1)), proj.max((0, 1))
        pad = 0.15 * (hi - lo)
        a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 25)
        b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 25)
        A, B = np.meshgrid(a, b)
        pts = center + A.reshape(-1, 1) * basis[0] + B.reshape(-1, 1) * basis[1]
        f = np.asarray(m64.dynamics(t_mid, jnp.asarray(pts), None)) @ basis.T
        speed = np.linalg.norm(f, axis=1).reshape(A.shape)
        ax.streamplot(
            a, b, f[:, 0].reshape(A.shape), f[:, 1].reshape(A.shape), color=speed, cmap="viridis", density=1.1, linewidth=0.8
        )
        for k in range(min(proj.shape[1], 12)):
            ax.plot(proj[:, k, 0], proj[:, k, 1], "-", color="crimson", lw=1, alpha=0.8)
            ax.plot(proj[0, k, 0], proj[0, k, 1], "o", color="crimson", ms=3)
        r = results[name]
        ax.set_title(f"{name}\ntest loss {r['loss']:.3g}, MSE {r['mse']:.2e}, NFE {r['nfe']:.0f}")
        ax.set_xlabel("latent PC 1")
        ax.set_ylabel("latent PC 2")
    fig.suptitle(f"Latent dynamics f(t = {t_mid * 48:.0f} h, z) in the top-2 PCA plane of test trajectories (o: z₀)")
    save_figure(fig, path, dpi=110)


def markdown_table(summary: dict) -> str:
    """The study's table (one row per model) from its ``results.json`` summary."""
    reg = parse(summary["config"]["reg"]).name
    rows = [
        f"| model | test loss | test MSE | decoder NFE per sample | test {reg} |",
        "|---|---|---|---|---|",
    ]
    for name, r in summary["results"].items():
        rows.append(f"| {name} | {r['loss']:.4g} | {r['mse']:.4e} | {r['nfe']:.1f} ± {r['nfe_std']:.1f} | {r[reg]:.4g} |")
    base, regd = list(summary["results"].values())[:2]
    rows.append("")
    rows.append(
        f"NFE ratio {base['nfe'] / regd['nfe']:.2f}×, loss change {100 * (regd['loss'] - base['loss']) / abs(base['loss']):+.1f} %, "
        f"MSE change {100 * (regd['mse'] - base['mse']) / base['mse']:+.1f} %"
    )
    return "\n".join(rows)


@with_x64
def run(
    cfg: LatentConfig = PRESETS["cpu"],
    out_dir: str = "runs/latent_ode",
    *,
    root: str | None = None,
    progress: bool = True,
    resume: bool = False,
) -> dict:
    """Train both models, evaluate, write fig4.png, results.json and table.md into ``out_dir``."""
    check(cfg)
    os.makedirs(out_dir, exist_ok=True)
    split, ts = load_data(cfg, root)
    runs = [("unregularized", 0.0), (f"{cfg.reg.upper()}, λ={cfg.lam:g}", cfg.lam)]
    models, results = {}, {}
    for (name, lam), sub in zip(runs, ("unregularized", f"{cfg.reg}_lam{cfg.lam:g}")):
        models[name] = train_one(cfg, lam, split, ts, os.path.join(out_dir, sub), progress=progress, resume=resume, desc=name)
        results[name] = evaluate(models[name], cfg, split.test, ts) | {"lam": lam}
    png = os.path.join(out_dir, "fig4.png")
    summary = {
        "config": stored_config(cfg),
        "data": {"train": len(split.train), "test": len(split.test), "parse": split.summary.report()},
        "results": results,
        "figure": png,
    }
    write_json(os.path.join(out_dir, "results.json"), summary)  # first: the numbers survive a plotting error
    plot(models, results, split.test, ts, png, cfg)
    write_text(os.path.join(out_dir, "table.md"), markdown_table(summary) + "\n")
    return summary


def preset(name: str, **overrides: Any) -> LatentConfig:
    """The preset's config with ``overrides`` (``None`` values are ignored), checked."""
    cfg = _preset(PRESETS, name, **overrides)
    check(cfg)
    return cfg


def check(cfg: LatentConfig) -> None:
    """The study's settings, checked before any work (a clear error instead of, e.g., a table of
    two untrained models)."""
    check_quadrature(cfg)
    for name in ("epochs", "batch", "eval_batch", "n_samples"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if cfg.max_records is not None and (
        isinstance(cfg.max_records, bool) or not isinstance(cfg.max_records, int) or cfg.max_records < 1
    ):
        raise ValueError(f"max_records must be an integer >= 1 (or None for all records), got {cfg.max_records!r}")
    if not 0 <= cfg.steer <= 1:
        raise ValueError(f"steer (the fraction of half the gap an observation time may move) must be in [0, 1], got {cfg.steer}")
    # the study's second model is labelled "R3, λ" and is trained with R3 only when λ > 0
    if not cfg.lam > 0:
        raise ValueError(
            f"the weight λ of {cfg.reg.upper()} must be > 0 (the other model is the unregularized one), got {cfg.lam}"
        )


__all__ = [
    "PRESETS",
    "LatentConfig",
    "evaluate",
    "load_data",
    "markdown_table",
    "plot",
    "preset",
    "run",
    "run_one",
    "train_one",
    "check",
]
