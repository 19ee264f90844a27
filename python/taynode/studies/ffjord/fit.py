"""Training one FFJORD model of the study: the flow (:func:`make_cnf`), the loss (bits/dim or
−log p plus λ times the regularizers, integrated in the flow's solve) and divergence handling."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...models.classifier import steer_end_time
from ...models.cnf import CNF, ConcatSquashMLP, ConvDynamics
from ...models.mlp import MLPDynamics
from ...regularizers import RegularizerSet
from ...train import CHECKPOINT, NonFiniteLossError, ShuffledBatches, read_log, read_meta, train
from ..common import QUADRATURE_DEFAULTS, stored_config
from .config import REGS, FFJORDConfig
from .evaluation import evaluate_nfe
from .inputs import data_loss, flow_input, load_curve_data

__all__ = ["make_cnf", "regularizers", "solver_label", "train_one"]

CURVE_FIELDS = ("curve_every", "curve_examples")  # added later: absent from the config of runs without a curve


def run_config(cfg: FFJORDConfig) -> dict:
    """The config stored with a run (:func:`~taynode.studies.common.stored_config`), without the
    curve settings when they are off, so runs made before they existed resume."""
    return {k: v for k, v in stored_config(cfg).items() if not (k in CURVE_FIELDS and v == 0)}


def make_cnf(cfg: FFJORDConfig, shape: int | tuple[int, ...], trace: str | None = None) -> CNF:
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


def regularizers(cfg: FFJORDConfig, reg: str, lam: float | None = None) -> RegularizerSet:
    """The :class:`~taynode.regularizers.RegularizerSet` of ``reg`` ∈ :data:`REGS` at the config's
    λ, or of any regularizer set (e.g. ``"ernode"``) at a given ``lam``: parsed once per run."""
    lams = {"none": 0.0, "rnode": cfg.lam_rnode, "r2": cfg.lam_r2}  # RNODE: one λ for 𝒦 and ℬ
    if lam is None and reg not in lams:
        raise ValueError(f"unknown regularization {reg!r}; valid: {list(REGS)} (or give its λ)")
    return RegularizerSet.parse(reg, lam=lams[reg] if lam is None else lam, taylor_method=cfg.taylor_method)


def solver_label(steps: int | None, fixed_solver: str = "rk4") -> str:
    """The table's name of the training solver: adaptive dopri5 when ``steps`` is ``None``,
    otherwise the fixed grid of ``steps`` steps of ``fixed_solver``."""
    return "adaptive (dopri5)" if steps is None else f"fixed grid ({fixed_solver}, {steps} steps)"


def train_one(
    cfg: FFJORDConfig,
    reg: str,
    steps: int | None,
    train_x: np.ndarray,
    run_dir: str,
    *,
    progress: bool = True,
    resume: bool = False,
    lam: float | None = None,
    curve_x: np.ndarray | None = None,
) -> dict:
    """Train one model; returns ``{"model", "train_seconds", "status", "steps_done", "error"}``.

    ``steps=None`` trains with adaptive dopri5 at ``train_tol``; an integer, with
    ``fixed_solver`` on that many steps. Divergence (see the module docstring) gives
    ``status="diverged"``, ``steps_done`` = the step of the last good checkpoint (kept in
    ``run_dir``), and no model (its metrics are reported as NaN). ``train_seconds`` is the shared
    loop's training time (compilation included); ``step_seconds`` the mean time of a step after
    the first logged one. ``lam``: the weight of ``reg`` when it is not the config's (any
    regularizer set then works, e.g. ``"ernode"``). With ``curve_every`` > 0 the model is
    evaluated every ``curve_every`` steps (:func:`~.evaluation.evaluate_nfe` on ``curve_x``,
    default :func:`~.inputs.load_curve_data`) and the log gets ``{"kind": "eval", "val_nll",
    "val_nfe"}`` records (the per-step NFE curve; evaluation time is not training time).
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
        y, logdet = flow_input(cfg, x, k_data, dtype)
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
        nll = jnp.mean(data_loss(cfg, r.log_prob, logdet, dims))
        means = {k: jnp.mean(v) for k, v in r.integrals.items()}
        loss = nll + rset.penalty(means) if means else nll
        return loss, {"nll": nll, "nfe": r.stats["nfe"]} | means

    batches = ShuffledBatches(train_x, cfg.batch, seed=cfg.seed)
    # the unregularized run does not depend on the quadrature: one run serves both
    conf = run_config(replace(cfg, **QUADRATURE_DEFAULTS) if reg == "none" else cfg) | {
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
            **_curve(cfg, curve_x),
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


def _curve(cfg: FFJORDConfig, curve_x) -> dict:
    """The loop's ``evaluate``/``eval_every`` for the validation NFE curve (none when off)."""
    if not cfg.curve_every:
        return {}
    x = load_curve_data(cfg) if curve_x is None else curve_x

    def curve(cnf):
        m = evaluate_nfe(cnf, cfg, x)
        return {"val_nll": m["nll"], "val_nfe": m["nfe"]}

    return dict(evaluate=curve, eval_every=cfg.curve_every)


def _step_seconds(log) -> float:
    """Mean wall time of a training step after the first logged one (which includes compilation)."""
    if len(log) < 2 or log[-1]["step"] == log[0]["step"]:
        return float("nan")
    return (log[-1]["time"] - log[0]["time"]) / (log[-1]["step"] - log[0]["step"])
