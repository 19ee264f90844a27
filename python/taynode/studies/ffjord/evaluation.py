"""Evaluating the FFJORD study's models the same way for every run: float64, dopri5 at
``eval_tol``; test NLL (bits/dim for images), exact NFE, R₂, ℬ, 𝒦; the density and sample figures."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...models.cnf import CNF
from ...regularizers import RK
from ..common import cast, save_figure, with_x64
from .config import EVAL_REGS, MAX_EXACT_EVAL_DIM, REGS, FFJORDConfig
from .inputs import data_loss, flow_input

__all__ = ["evaluate", "evaluate_nfe", "plot_densities", "replace_trace"]


@functools.cache
def _eval_fns(tol, max_steps, taylor_method):
    plain = eqx.filter_jit(lambda cnf, x, key: cnf.forward(x, key=key, rtol=tol, atol=tol, max_steps=max_steps))
    regs = (RK(2, taylor_method), "jacobian", "kinetic")
    with_regs = eqx.filter_jit(
        lambda cnf, x, key: cnf.forward(x, key=key, regularizers=regs, rtol=tol, atol=tol, max_steps=max_steps).integrals
    )
    return plain, with_regs


def _eval_model(cnf: CNF, dims: int) -> CNF:
    """The model as evaluated: float64, exact trace up to :data:`MAX_EXACT_EVAL_DIM` features."""
    return cast(replace_trace(cnf, "exact" if dims <= MAX_EXACT_EVAL_DIM else "hutchinson"), jnp.float64)


def _eval_batch(cfg: FFJORDConfig, xs, i: int, key):
    """Examples ``i:i+eval_batch`` as the flow's float64 input, dequantized by a key fixed by ``i``."""
    return flow_input(cfg, xs[i : i + cfg.eval_batch], jax.random.fold_in(key, 2 * 10**9 + i), jnp.float64)


@with_x64
def evaluate_nfe(cnf: CNF, cfg: FFJORDConfig, xs: np.ndarray) -> dict:
    """``{"nll", "nfe"}`` of the plain flow on ``xs`` in batches of ``eval_batch``: dopri5 at
    ``eval_tol`` in float64, NLL the mean over examples (bits/dim for images), NFE the mean over
    batches of the exact count. Noise (Hutchinson, dequantization) is fixed by the seed, so
    every model sees the same."""
    dims = math.prod(xs.shape[1:])
    cnf = _eval_model(cnf, dims)
    plain, _ = _eval_fns(cfg.eval_tol, cfg.max_steps, cfg.taylor_method)
    key = jax.random.PRNGKey(cfg.seed + 12345)
    losses, nfes = [], []
    for i in range(0, len(xs), cfg.eval_batch):
        y, logdet = _eval_batch(cfg, xs, i, key)
        r = plain(cnf, y, jax.random.fold_in(key, i))
        losses.append(np.asarray(data_loss(cfg, r.log_prob, logdet, dims)))
        nfes.append(int(r.stats["nfe"]))
    return {"nll": float(np.mean(np.concatenate(losses))), "nfe": float(np.mean(nfes))}


@with_x64
def evaluate(cnf: CNF, cfg: FFJORDConfig, test_x: np.ndarray) -> dict:
    """NLL (nats; bits/dim for images) and NFE (:func:`evaluate_nfe`), and R₂, ℬ, 𝒦 (means of the
    per-example integrals on the first ``eval_reg_examples``) with dopri5 at ``eval_tol`` in
    float64 (module docstring). Images are dequantized with noise fixed by the seed (the same
    noise for a given image in every run)."""
    out = evaluate_nfe(cnf, cfg, test_x)
    cnf = _eval_model(cnf, math.prod(test_x.shape[1:]))
    _, with_regs = _eval_fns(cfg.eval_tol, cfg.max_steps, cfg.taylor_method)
    key = jax.random.PRNGKey(cfg.seed + 12345)
    xr = test_x[: cfg.eval_reg_examples]
    sums = {k: 0.0 for k in EVAL_REGS}
    for i in range(0, len(xr), cfg.eval_batch):
        ints = with_regs(cnf, _eval_batch(cfg, xr, i, key)[0], jax.random.fold_in(key, 10**9 + i))
        for k in EVAL_REGS:
            sums[k] += float(jnp.sum(ints[k]))
    return out | {k: v / len(xr) for k, v in sums.items()}


def replace_trace(cnf: CNF, trace: str) -> CNF:
    """``cnf`` with its divergence estimator set to ``trace`` (e.g. ``"exact"`` for evaluation),
    the dynamics, end time and noise unchanged."""
    return CNF(cnf.dynamics, t1=cnf.t1, trace=trace, noise=cnf.noise)


def _density_grid(cnf: CNF, lim: float, n: int, tol: float):
    g = np.linspace(-lim, lim, n)
    pts = np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    lp = eqx.filter_jit(lambda c, x: c.log_prob(x, rtol=tol, atol=tol))(
        cast(replace_trace(cnf, "exact"), jnp.float64), jnp.asarray(pts)
    )
    return np.exp(np.asarray(lp)).reshape(n, n)


def plot_densities(
    models: dict, results: dict, train_x: np.ndarray, path: str, *, lim: float = 4.5, n: int = 120, tol: float = 1e-6
) -> None:
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
