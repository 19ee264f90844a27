r"""The paper's Fig. 1: fit z(1) = z(0) + z(0)³ on z(0) ∈ [-1, 1], with and without λ·R₃.

Both models are the same MLP neural ODE (1+1 → 64 → 64 → 1, tanh, time concatenated), trained
identically by the shared loop :func:`taynode.train.train` (Adam with cosine decay, dopri5 at
rtol = atol = 1e-6, same seed, same batches; checkpoints and logs in ``OUT/runs/``); the only
difference is the λ·R₃ term in the loss. We then report the final training
loss (MSE) and the NFE of dopri5 at the paper's tolerance (1.4e-8, float64) solving all test
points as one batch, and draw the trajectories coloured by |d³z/dt³| with the solver's steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..models import MLPDynamics
from ..ode import failures
from ..regularizers import RK
from ..solve import solve
from ..taylor import derivatives
from ..train import read_log
from ..train import train as train_loop
from .common import check_quadrature, save_figure, setting, stored_config, with_x64, write_json


@dataclass(frozen=True)
class ToyConfig:
    """The Fig. 1 toy's settings (fields with help are flags of ``taynode demo``)."""

    hidden: int = setting(64, "width of each hidden layer of the dynamics MLP")
    depth: int = setting(2, "hidden layers of the dynamics MLP")
    activation: str = setting("tanh", "activation of the hidden layers")
    lam: float = setting(1.0, "weight λ of R_K in the regularized model's loss (> 0)")
    order: int = setting(3, "order K of the regularizer R_K")
    iters: int = setting(1500, "training iterations per model")
    batch: int = setting(64, "points z(0) per training batch")
    lr: float = setting(1e-2, "Adam's initial learning rate (cosine decay to 1 %)")
    seed: int = setting(0, "seed for initialization and batches")
    train_rtol: float = setting(1e-6, "rtol = atol of the training solves (dopri5)")
    eval_tol: float = setting(1.4e-8, "rtol = atol of the evaluation solves (dopri5, float64)")
    n_eval: int = setting(200, "evaluation points z(0), evenly spaced on [-1, 1]")
    quadrature: str = setting(
        "integrated",
        "how R_K is computed in training: integrated (the paper's: in the ODE state, "
        "at every solver stage) or sampled (unbiased: at `samples` random times per solve)",
    )
    samples: int = setting(1, "sample times per solve with quadrature sampled")

    def __post_init__(self):
        check_quadrature(self)
        # the second model is labelled "R_K, λ" and trained with R_K only when λ > 0
        if not self.lam > 0:  # also catches NaN
            raise ValueError(
                f"the demo's weight λ of R{self.order} must be > 0 (its other model is the unregularized one), got {self.lam}"
            )
        for name in ("iters", "batch", "hidden", "depth", "order", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def target(z0: jax.Array) -> jax.Array:
    """The map the toy learns: z(1) = z(0) + z(0)³."""
    return z0 + z0**3


def make_model(cfg: ToyConfig, key: jax.Array) -> MLPDynamics:
    """A fresh float64 dynamics MLP of ``cfg``."""
    return MLPDynamics((1,) + (cfg.hidden,) * cfg.depth + (1,), cfg.activation, key=key, dtype=jnp.float64)


LOG_EVERY = 10  # steps between the training history's records


@with_x64
def train(
    cfg: ToyConfig, lam: float, progress: bool = True, desc: str = "", run_dir: str | None = None, resume: bool = False
) -> tuple[MLPDynamics, list]:
    """Train one model with the shared loop (:func:`taynode.train.train`); returns (model,
    history of (step, mse, R_K) every :data:`LOG_EVERY` steps). ``run_dir`` keeps the run's
    checkpoint and log (default: a temporary folder, removed afterwards)."""
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="taynode-toy-") as tmp:
            return train(cfg, lam, progress, desc, tmp)
    key = jax.random.PRNGKey(cfg.seed)
    mkey, dkey = jax.random.split(key)
    model = make_model(cfg, mkey)
    opt = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.iters, alpha=0.01))
    reg = RK(cfg.order)
    regs = [reg] if lam > 0 else []  # the unregularized model is trained without R_K in the state

    def loss_fn(model, z0, key):
        sol = solve(
            model,
            z0,
            (0.0, 1.0),
            rtol=cfg.train_rtol,
            atol=cfg.train_rtol,
            regularizers=regs,
            key=key,
            quadrature=cfg.quadrature,
            samples=cfg.samples,
        )
        mse = jnp.mean((sol.z1 - target(z0)) ** 2)
        r = jnp.mean(sol.integrals[reg.name]) if regs else jnp.nan
        return mse + lam * r if regs else mse, {"mse": mse, "R": r}

    def batches(step):  # the step's PRNG key in the loop is fold_in(PRNGKey(seed), step), as before
        return jax.random.uniform(jax.random.fold_in(dkey, step), (cfg.batch, 1), jnp.float64, -1.0, 1.0)

    config = stored_config(cfg) | {"lam": lam}
    result = train_loop(
        model,
        opt,
        loss_fn,
        batches,
        run_dir,
        steps=cfg.iters,
        seed=cfg.seed,
        log_every=LOG_EVERY,
        resume=resume,
        progress=progress,
        config=config,
        desc=desc,
    )
    history = [(r["step"], r["mse"], float("nan") if r["R"] is None else r["R"]) for r in read_log(run_dir, "step")]
    return result.model, history


@with_x64
def evaluate(model: MLPDynamics, cfg: ToyConfig) -> dict:
    """Train MSE, NFE (dopri5 at ``eval_tol``, float64) and R_K of ``model`` on ``n_eval`` points."""
    z0 = jnp.linspace(-1.0, 1.0, cfg.n_eval, dtype=jnp.float64)[:, None]
    # NFE of the plain dynamics (no regularizer in the state, whose error would steer the steps).
    sol = solve(model, z0, (0.0, 1.0), rtol=cfg.eval_tol, atol=cfg.eval_tol)
    reg = solve(model, z0, (0.0, 1.0), rtol=cfg.eval_tol, atol=cfg.eval_tol, regularizers=[RK(cfg.order)])
    return dict(
        mse=float(jnp.mean((sol.z1 - target(z0)) ** 2)),
        nfe=int(sol.stats["nfe"]),
        steps=int(sol.stats["steps"]),
        rejected=int(sol.stats["rejected"]),
        R=float(jnp.mean(reg.integrals[f"R{cfg.order}"])),
    )


def plot(models: dict, cfg: ToyConfig, path: str, results: dict) -> None:
    """Fig. 1: each model's trajectories and its K-th derivative, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    ts = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), sharey=True, layout="constrained")
    curves = {}
    for name, model in models.items():
        out = []
        for z0 in np.linspace(-1.0, 1.0, 15):
            sol = _trajectory(model, jnp.full((1, 1), z0, jnp.float64), ts, cfg.eval_tol)
            # NumPy from here: JAX would compile each eager operation (a mask's length, a new shape)
            mag = np.abs(np.asarray(_top_derivative(model, ts, sol.ys, cfg.order)))
            ys, step_ts, step_ys = np.asarray(sol.ys), np.asarray(sol.step_ts), np.asarray(sol.step_ys)
            ok = np.isfinite(step_ts)
            out.append((ys[:, 0, 0], mag, step_ts[ok], step_ys[ok][:, 0, 0]))
        curves[name] = out
    vmax = max(float(np.max(c[1])) for v in curves.values() for c in v)
    norm = matplotlib.colors.LogNorm(vmin=max(vmax * 1e-4, 1e-8), vmax=vmax)
    for ax, (name, out) in zip(np.atleast_1d(axes), curves.items()):
        for zs, mag, st, sy in out:
            pts = np.stack([np.asarray(ts), zs], -1)
            segs = np.stack([pts[:-1], pts[1:]], 1)
            lc = LineCollection(segs, cmap="viridis", norm=norm, linewidths=2)
            lc.set_array(np.maximum(0.5 * (mag[:-1] + mag[1:]), norm.vmin))
            ax.add_collection(lc)
            ax.plot(st, sy, "o", ms=3, color="crimson")
        r = results[name]
        ax.set_title(f"{name}: MSE {r['mse']:.1e}, NFE {r['nfe']}")
        ax.set_xlim(0, 1)
        ax.set_ylim(-2.2, 2.2)
        ax.set_xlabel("t")
    np.atleast_1d(axes)[0].set_ylabel("z(t)")
    np.atleast_1d(axes)[0].plot([], [], "o", ms=3, color="crimson", label="dopri5 steps (tol 1.4e-8)")
    np.atleast_1d(axes)[0].legend(loc="upper left")
    fig.colorbar(lc, ax=axes, label=f"|d{cfg.order}z/dt{cfg.order}|".replace("d3z/dt3", "d³z/dt³"))
    save_figure(fig, path)


# Compiled once for every model of the same shape (the model is an argument, not a constant);
# the solve's failures come back as values, so JAX's persistent cache keeps the program.
@failures.filter_jit
def _trajectory(model, z0, ts, tol):
    return solve(model, z0, ts, rtol=tol, atol=tol, save_steps=True)


@eqx.filter_jit
def _top_derivative(model, ts, ys, order):
    """d^order z / dt^order of the first state component along one trajectory ``ys`` (times, 1, 1) of ``model``."""
    return jax.vmap(lambda t, z: derivatives(model, t, z[None], None, order)[-1][0, 0])(ts, ys[:, 0])


def run_dir(out_dir: str, cfg: ToyConfig, lam: float) -> str:
    """The model's run folder (checkpoint, log): its name and a hash of its configuration, so a
    finished run is reused and another configuration gets its own folder."""
    conf = json.dumps(stored_config(cfg) | {"lam": lam}, sort_keys=True)
    name = "unregularized" if lam == 0 else f"r{cfg.order}-lam{lam:g}"
    return os.path.join(out_dir, "runs", f"{name}-{hashlib.sha256(conf.encode()).hexdigest()[:10]}")


@with_x64
def run(cfg: ToyConfig = ToyConfig(), out_dir: str = "runs/demo", progress: bool = True) -> dict:
    """Train both models (or reuse their finished runs in ``out_dir/runs``), evaluate them,
    write fig1.png and results.json."""
    os.makedirs(out_dir, exist_ok=True)
    models, results = {}, {}
    for name, lam in [("unregularized", 0.0), (f"R{cfg.order}, λ={cfg.lam:g}", cfg.lam)]:
        model, _ = train(cfg, lam, progress, desc=name, run_dir=run_dir(out_dir, cfg, lam), resume=True)
        models[name] = model
        results[name] = evaluate(model, cfg) | {"lam": lam}
    png = os.path.join(out_dir, "fig1.png")
    plot(models, cfg, png, results)
    summary = {"config": stored_config(cfg), "results": results, "figure": png}
    write_json(os.path.join(out_dir, "results.json"), summary)
    return summary
