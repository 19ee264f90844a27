r"""The paper's Fig. 1: fit z(1) = z(0) + z(0)³ on z(0) ∈ [-1, 1], with and without λ·R₃.

Both models are the same MLP neural ODE (1+1 → 64 → 64 → 1, tanh, time concatenated), trained
identically (Adam with cosine decay, dopri5 at rtol = atol = 1e-6, same seed, same batches); the only difference is the λ·R₃ term in the loss. We then report the final training
loss (MSE) and the NFE of dopri5 at the paper's tolerance (1.4e-8, float64) solving all test
points as one batch, and draw the trajectories coloured by |d³z/dt³| with the solver's steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ..models import MLPDynamics
from ..regularizers import RK
from ..solve import solve
from ..taylor import derivatives
from . import check_quadrature, stored_config


@dataclass(frozen=True)
class ToyConfig:
    hidden: int = 64
    depth: int = 2
    activation: str = "tanh"
    lam: float = 1.0
    order: int = 3
    iters: int = 1500
    batch: int = 64
    lr: float = 1e-2
    seed: int = 0
    train_rtol: float = 1e-6
    eval_tol: float = 1.4e-8
    n_eval: int = 200
    quadrature: str = "integrated"  # of R_K in training: "integrated" or "sampled"
    samples: int = 1  # sample times per solve with quadrature="sampled"

    def __post_init__(self):
        check_quadrature(self)
        # the second model is labelled "R_K, λ" and trained with R_K only when λ > 0
        if not self.lam > 0:  # also catches NaN
            raise ValueError(f"the demo's weight λ of R{self.order} must be > 0 (its other model is the "
                             f"unregularized one), got {self.lam}")
        for name in ("iters", "batch", "hidden", "depth", "order", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def target(z0):
    return z0 + z0**3


def make_model(cfg: ToyConfig, key):
    return MLPDynamics((1,) + (cfg.hidden,) * cfg.depth + (1,), cfg.activation, key=key, dtype=jnp.float64)


def train(cfg: ToyConfig, lam: float, progress: bool = True, desc: str = ""):
    """Train one model; returns (model, history of (step, mse, R_K))."""
    key = jax.random.PRNGKey(cfg.seed)
    mkey, dkey = jax.random.split(key)
    model = make_model(cfg, mkey)
    opt = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.iters, alpha=0.01))
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    reg = RK(cfg.order)

    regs = [reg] if lam > 0 else []  # the unregularized model is trained without R_K in the state

    def loss_fn(model, z0, key):
        sol = solve(model, z0, (0.0, 1.0), rtol=cfg.train_rtol, atol=cfg.train_rtol, regularizers=regs, key=key,
                    quadrature=cfg.quadrature, samples=cfg.samples)
        mse = jnp.mean((sol.z1 - target(z0)) ** 2)
        r = jnp.mean(sol.integrals[reg.name]) if regs else jnp.nan
        return mse + lam * r if regs else mse, (mse, r)

    @eqx.filter_jit
    def step(model, state, z0, key):
        (_, (mse, r)), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, z0, key)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, mse, r

    history = []
    bar = tqdm(range(cfg.iters), desc=desc, disable=not progress)
    for i in bar:
        z0 = jax.random.uniform(jax.random.fold_in(dkey, i), (cfg.batch, 1), jnp.float64, -1.0, 1.0)
        model, state, mse, r = step(model, state, z0, jax.random.fold_in(key, i))
        if i % 10 == 0 or i == cfg.iters - 1:
            history.append((i, float(mse), float(r)))
            bar.set_postfix(mse=f"{float(mse):.2e}", **({} if lam == 0 else {"R": f"{float(r):.2e}"}))
    return model, history


def evaluate(model, cfg: ToyConfig):
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


def plot(models: dict, cfg: ToyConfig, path: str, results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    ts = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    starts = jnp.linspace(-1.0, 1.0, 15, dtype=jnp.float64)
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), sharey=True, layout="constrained")
    curves = {}
    for name, model in models.items():
        one = eqx.filter_jit(
            lambda z0, model=model: solve(model, z0, ts, rtol=cfg.eval_tol, atol=cfg.eval_tol, save_steps=True)
        )
        d3 = jax.jit(jax.vmap(lambda t, z, model=model: derivatives(model, t, z[None], None, cfg.order)[-1][0]))
        out = []
        for z0 in starts:
            sol = one(jnp.reshape(z0, (1, 1)))
            zs = sol.ys[:, 0, 0]
            mag = jnp.abs(d3(ts, sol.ys[:, 0])[:, 0])
            ok = jnp.isfinite(sol.step_ts)
            out.append((np.asarray(zs), np.asarray(mag), np.asarray(sol.step_ts[ok]), np.asarray(sol.step_ys[ok][:, 0, 0])))
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
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def run(cfg: ToyConfig = ToyConfig(), out_dir: str = "runs/demo", progress: bool = True):
    """Train both models, print the comparison, write fig1.png and results.json."""
    jax.config.update("jax_enable_x64", True)
    os.makedirs(out_dir, exist_ok=True)
    models, results = {}, {}
    for name, lam in [("unregularized", 0.0), (f"R{cfg.order}, λ={cfg.lam:g}", cfg.lam)]:
        model, history = train(cfg, lam, progress, desc=name)
        models[name] = model
        results[name] = evaluate(model, cfg) | {"lam": lam}
    png = os.path.join(out_dir, "fig1.png")
    plot(models, cfg, png, results)
    summary = {"config": stored_config(cfg), "results": results, "figure": png}
    tmp = os.path.join(out_dir, "results.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2)
    os.replace(tmp, os.path.join(out_dir, "results.json"))
    return summary
