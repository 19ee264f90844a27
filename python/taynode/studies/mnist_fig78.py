r"""Figs. 7 and 8 of the paper (Kelly et al. 2020, App.): analyses across the cached runs of
Figs. 5 and 6 (:mod:`taynode.studies.mnist_figs`, whose runs they reuse).

``fig7`` — R_K (K = 1…4, on the evaluated test images) against the dopri5 test NFE per image across all
runs of Figs. 5 and 6, with Spearman's rank correlation per K.

``fig8`` — (a) the actual error of dopri5 at z(1) (root mean square over images and features,
against dopri8 at rtol = atol = 1e-12) against the tolerance rtol = atol, for the randomly
initialised, the unregularized and the most regularized (largest finished λ) dynamics of Fig. 5;
(b) train against test NFE for all runs of Figs. 5 and 6; (c) train and test error against λ
(the runs of Fig. 5).

Each figure writes ``figN.png``, ``figN.md``, ``figN.csv`` and ``figN.json`` in ``OUT``
(atomically: temporary file, then ``os.replace``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from tqdm.auto import tqdm

from . import mnist
from .common import cast, with_x64
from .mnist_figs import (
    SOLVER_EVAL_TOL,
    _diverged_note,
    _finish,
    _ok,
    _plt,
    fig5_configs,
    fig6_configs,
    load_model,
    run_all,
)

__all__ = ["FIG8_EXAMPLES", "FIG8_REF_TOL", "FIG8_TOLS", "fig7", "fig8", "solver_error", "spearman"]

FIG8_TOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
FIG8_REF_TOL = 1e-12
FIG8_EXAMPLES = 100


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (NaN for fewer than 3 points or a constant one)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")  # undefined for fewer than 3 points or a constant variable
    return float(spearmanr(x, y).statistic)


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig7(
    out_dir: str,
    *,
    preset: str = "fig",
    fig5_kw: dict | None = None,
    fig6_kw: dict | None = None,
    progress: bool = True,
    **overrides: Any,
) -> dict:
    """Fig. 7: R_K against the dopri5 test NFE across the runs of Figs. 5 and 6 (cached)."""
    os.makedirs(out_dir, exist_ok=True)
    cfgs = list(
        dict.fromkeys(fig5_configs(preset, **(fig5_kw or {}), **overrides) + fig6_configs(preset, **(fig6_kw or {}), **overrides))
    )
    recs = run_all(cfgs, out_dir, progress=progress, desc="fig7 runs")
    ok = _ok(recs)
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), layout="constrained")
    rho = {}
    markers = {"heun": "^", "bosh3": "s", "dopri5": "o"}
    for k, ax in zip(range(1, 5), axes):
        pts = [(r[f"test_R{k}"], r["test_nfe_image"], r["config"]["solver"]) for r in ok if r.get(f"test_R{k}") is not None]
        rho[f"R{k}"] = spearman([p[0] for p in pts], [p[1] for p in pts])
        for s in dict.fromkeys(p[2] for p in pts):
            ax.scatter(
                [p[0] for p in pts if p[2] == s],
                [p[1] for p in pts if p[2] == s],
                marker=markers.get(s, "o"),
                label=f"trained with {s}",
                alpha=0.8,
            )
        ax.set(
            xscale="log",
            xlabel=f"R{k} (test images)",
            ylabel="test NFE per image (dopri5, tol 1.4e-8)",
            title=f"R{k}: Spearman ρ = {rho[f'R{k}']:.2f} ({len(pts)} runs)",
        )
        if pts:
            ax.legend(fontsize=8)
    fig.suptitle("Fig. 7: regularization value against NFE across all runs of Figs. 5 and 6")
    notes = "Spearman rank correlation of R_K with test NFE (dopri5, tol 1.4e-8, per image): " + ", ".join(
        f"{k}: {v:.3f}" for k, v in rho.items()
    )
    # the same against the NFE of each run's own solver at SOLVER_EVAL_TOL (Fig. 6's NFE), per solver
    rho_solver = {}
    for s in dict.fromkeys(r["config"]["solver"] for r in ok):
        runs = [r for r in ok if r["config"]["solver"] == s]
        rho_solver[s] = {
            f"R{k}": spearman(
                [r[f"test_R{k}"] for r in runs if r.get(f"test_R{k}") is not None],
                [r["solver_nfe"] for r in runs if r.get(f"test_R{k}") is not None],
            )
            for k in range(1, 5)
        }
        notes += (
            f"\n\nSpearman ρ of R_K with the NFE of {s} at tol {SOLVER_EVAL_TOL:g} ({len(runs)} runs trained with {s}): "
            + ", ".join(f"{k}: {v:.3f}" for k, v in rho_solver[s].items())
        )
    return _finish(out_dir, "fig7", recs, fig, extra=dict(spearman=rho, spearman_own_solver=rho_solver), notes=notes)


@with_x64
def solver_error(
    model: Any, x: Any, tols: Sequence[float] = FIG8_TOLS, ref_tol: float = FIG8_REF_TOL, max_steps: int = 100_000
) -> list[float]:
    """RMS over images and features of z(1) by dopri5 at each tol minus dopri8 at ``ref_tol`` (float64)."""
    m, x = cast(model, jnp.float64), jnp.asarray(x, jnp.float64)
    ref = _z1_fn("dopri8", ref_tol, max_steps)(m, x)
    return [float(jnp.sqrt(jnp.mean((_z1_fn("dopri5", t, max_steps)(m, x) - ref) ** 2))) for t in tols]


@functools.cache
def _z1_fn(solver: str, tol: float, max_steps: int):
    return eqx.filter_jit(lambda m, x: m.flow(x, solver=solver, rtol=tol, atol=tol, max_steps=max_steps).z1)


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig8(
    out_dir: str,
    *,
    preset: str = "fig",
    fig5_kw: dict | None = None,
    fig6_kw: dict | None = None,
    tols: Sequence[float] = FIG8_TOLS,
    progress: bool = True,
    **overrides: Any,
) -> dict:
    """Fig. 8: (a) dopri5's actual error against tolerance for random, unregularized and
    regularized dynamics; (b) train vs test NFE; (c) train and test error against λ."""
    os.makedirs(out_dir, exist_ok=True)
    f5 = fig5_configs(preset, **(fig5_kw or {}), **overrides)
    cfgs = list(dict.fromkeys(f5 + fig6_configs(preset, **(fig6_kw or {}), **overrides)))
    recs = run_all(cfgs, out_dir, progress=progress, desc="fig8 runs")
    by_cfg = dict(zip(cfgs, recs))
    sweep = [by_cfg[c] for c in f5]
    ok5 = [r for r in sweep if r["status"] == "ok"]
    base = next((r for r in ok5 if r["config"]["lam"] == 0), None)
    reg = max((r for r in ok5 if r["config"]["lam"] > 0), key=lambda r: r["config"]["lam"], default=None)
    _, test_data, _ = mnist.load_data(f5[0])
    x = test_data[0][:FIG8_EXAMPLES]
    models = {"random initialisation": mnist.make_model(f5[0])}
    if base is not None:
        models["unregularized"] = load_model(f5[0], base["dir"])
    if reg is not None:
        models[f"R2, λ={reg['config']['lam']:g}"] = load_model(f5[0], reg["dir"])
    errors = {name: solver_error(m, x, tols) for name, m in tqdm(models.items(), desc="fig8a solver error", disable=not progress)}

    plt = _plt()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.3), layout="constrained")
    for name, e in errors.items():
        a.loglog(tols, e, "o-", label=name)
    a.loglog(tols, tols, "k--", label="error = tolerance")
    a.set(
        xlabel="rtol = atol (dopri5)",
        ylabel=f"RMS error of z(1) vs dopri8 at {FIG8_REF_TOL:g}",
        title=f"(a) solver error ({len(x)} test images)",
    )
    a.legend(fontsize=8)
    ok = _ok(recs)
    tr, te = [r["train_nfe_image"] for r in ok], [r["test_nfe_image"] for r in ok]
    b.scatter(tr, te, alpha=0.7, label="mean over 1,000 images, each solved alone")
    b.scatter(
        [r["train_nfe"] for r in ok],
        [r["test_nfe"] for r in ok],
        facecolors="none",
        edgecolors="gray",
        label="batches of 1,000 images",
    )
    tr, te = tr + [r["train_nfe"] for r in ok], te + [r["test_nfe"] for r in ok]
    if ok:
        lo, hi = min(tr + te) - 3, max(tr + te) + 3
        b.plot([lo, hi], [lo, hi], "k--", label="train = test")
    b.set(
        xlabel="train NFE (dopri5, tol 1.4e-8)", ylabel="test NFE", title=f"(b) train vs test NFE ({len(ok)} runs of Figs. 5, 6)"
    )
    b.legend(fontsize=8)
    lam_pos = [max(r["config"]["lam"], 1.0) for r in ok5]
    c.plot(lam_pos, [100 * (1 - r["train_acc"]) for r in ok5], "o-", label="train error")
    c.plot(lam_pos, [100 * (1 - r["test_acc"]) for r in ok5], "s-", label="test error")
    c.set(
        xscale="log",
        xlabel="λ of R2 (λ = 0 drawn at 1)",
        ylabel="error (%)",
        title="(c) train and test error against λ (Fig. 5 runs)",
    )
    c.legend(fontsize=8)
    fig.suptitle("Fig. 8")
    extra = dict(solver_error=dict(tols=list(tols), ref_tol=FIG8_REF_TOL, examples=len(x), errors=errors))
    notes = (
        "Solver error (RMS of z(1) against dopri8 at 1e-12) per tolerance "
        + ", ".join(f"{t:g}" for t in tols)
        + ":\n\n"
        + "\n".join(f"- {name}: " + ", ".join(f"{v:.3g}" for v in e) for name, e in errors.items())
    )
    if _diverged_note(recs):
        notes += "\n\n" + _diverged_note(recs)
    return _finish(out_dir, "fig8", recs, fig, extra=extra, notes=notes)
