r"""The paper's MNIST figure studies, Figs. 5–8 (Kelly et al. 2020, Sec. 6.1 and App.).

Every study is a set of training runs of :func:`taynode.studies.mnist.run` plus plots. Runs are
cached: each lives in ``OUT/runs/<solver>-<reg>-lam<λ>-<hash>``, where the hash is of the run's
whole configuration (:func:`run_dir`), so a run is trained once and reused by every study that
asks for the same configuration (Fig. 7 and Fig. 8 reuse the runs of Figs. 5 and 6). A run that
diverges (the training loop's :class:`~taynode.train.NonFiniteLossError`) is recorded as
diverged in ``diverged.json`` (the last good checkpoint stays) and not retried.

NFE is measured two ways, both with float64 solves of the plain dynamics: for batches of
1,000 images (``test_nfe``, ``train_nfe``, as in :func:`taynode.studies.mnist.evaluate`), and
per image (``test_nfe_image``, ``train_nfe_image``: each of the first
:data:`PER_IMAGE_EXAMPLES` images solved alone, the mean NFE), which resolves differences
smaller than one dopri5 step of a batch (6 NFE).

``fig5`` — λ sweep of R₂ (dopri5 training): the final test-time NFE (dopri5, rtol = atol =
1.4e-8, float64) against the *unregularized* training loss, the cross-entropy without λ·R on
the evaluated training images.

``fig6`` — for solvers of order 2, 3 and 5 with an embedded error estimate (``heun``,
``bosh3``, ``dopri5`` of :data:`taynode.solvers.SOLVERS`): training with that solver (adaptive,
at the preset's ``train_tol``) while regularizing R_K, K = 1…4 (two λ per K, :data:`FIG6_LAMS`), and
the unregularized model; the training loss against the NFE of *the same solver* at
:data:`SOLVER_EVAL_TOL` (float64, per image, mean over the first :data:`PER_IMAGE_EXAMPLES`
test images). The adaptive-order Taylor solver (``solve(solver="taylor-adaptive")``) has no
reverse-mode gradients, so nothing is trained with it: a fourth panel evaluates the
*dopri5-trained* models with it at the same tolerance; its cost unit is Taylor coefficient
orders (see :mod:`taynode.taylor_solver`), each costlier than one f evaluation, so its numbers
are not comparable with the RK solvers' NFE, only across models.

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
import hashlib
import json
import os
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..train import CHECKPOINT, load_checkpoint
from . import mnist
from .common import cast, markdown_rows, save_figure, stored_config, with_x64, write_json, write_table
from .runs import read_record, reuse_or_train

__all__ = ["FIG5_LAMS", "FIG6_LAMS", "FIG6_SOLVERS", "cached_run", "fig5", "fig6", "fig7", "fig8", "run_dir"]

FIG5_LAMS = (0.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
FIG6_SOLVERS = ("heun", "bosh3", "dopri5")  # orders 2, 3, 5, each with an embedded error estimate
# Two λ per K, chosen before the runs: the larger ≈ a few / R_K of the unregularized model
# (R1…R4 ≈ 1e-2, 3e-3, 4e-5, 4e-6 at the fig preset) but below where SGD at learning rate 0.1
# diverged in trials (R4 at λ = 1e5 with Heun, R2 at λ = 3000 with dopri5); the smaller 10×
# less, for R4 100× less (λ = 1e4 had diverged with Heun and Bosh3, each after a few steps).
FIG6_LAMS = {1: (10.0, 100.0), 2: (100.0, 1000.0), 3: (1000.0, 10000.0), 4: (100.0, 10000.0)}
SOLVER_EVAL_TOL = 1e-6
PER_IMAGE_EXAMPLES = 1000  # test (and training) images of the per-image NFE
TAYLOR_SOLVER = "taylor-adaptive"  # evaluation only (no reverse-mode gradients), of the dopri5-trained runs
FIG8_TOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
FIG8_REF_TOL = 1e-12
FIG8_EXAMPLES = 100


# ---------------------------------------------------------------- runs and their cache


def _conf(cfg: mnist.MNISTConfig) -> dict:
    return json.loads(json.dumps(stored_config(cfg) | {"data": None}))


def run_dir(root: str, cfg: mnist.MNISTConfig) -> str:
    """The run's folder: readable name plus a hash of its whole configuration."""
    digest = hashlib.sha256(json.dumps(_conf(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(root, "runs", f"{cfg.solver}-{cfg.reg}-lam{cfg.lam:g}-{digest}")


@functools.cache
def _nfe_fn(solver: str, tol: float, max_steps: int):
    # one solve per image (vmapped), so each image gets its own steps and NFE
    one = lambda m, x: m.flow(x[None], solver=solver, rtol=tol, atol=tol, max_steps=max_steps).stats["nfe"]  # noqa: E731
    return eqx.filter_jit(lambda m, xb: jax.vmap(one, in_axes=(None, 0))(m, xb))


@with_x64
def per_image_nfe(model, x, *, solver: str, tol: float, batch: int = 1000, max_steps: int = 4096) -> float:
    """Mean over the images ``x`` of the NFE of solving each image on its own (float64).

    Finer than the NFE of a batch solve (which takes the steps of its hardest image, and moves in
    whole steps: 6 NFE for dopri5), so small changes between models show.
    """
    fn, m = _nfe_fn(solver, tol, max_steps), cast(model, jnp.float64)
    return float(
        np.mean(np.concatenate([np.asarray(fn(m, jnp.asarray(x[i : i + batch], jnp.float64))) for i in range(0, len(x), batch)]))
    )


def load_model(cfg: mnist.MNISTConfig, folder: str):
    model, _, _ = load_checkpoint(os.path.join(folder, CHECKPOINT), mnist.make_model(cfg))
    return model


def cached_run(cfg: mnist.MNISTConfig, root: str, *, progress: bool = False) -> dict:
    """The run's record: trained (or resumed) and evaluated once, then read from its folder.

    ``status`` is ``"ok"`` (the keys of ``results.json`` plus ``solver_nfe``) or ``"diverged"``
    (``error``, ``steps_done``: the step of the last good checkpoint). ``dir`` is the folder.
    """
    d, conf = run_dir(root, cfg), _conf(cfg)
    res = reuse_or_train(
        d,
        conf,
        lambda: mnist.run(cfg, d, resume=True, progress=progress),
        diverged=lambda dv: dict(config=conf, status="diverged", error=dv.message, steps_done=dv.checkpoint_step),
    )
    if res.get("status") == "diverged":
        return res | {"dir": d}
    taylor = TAYLOR_SOLVER if cfg.solver == "dopri5" else None
    extra_key = dict(
        config=conf, solver_eval_tol=SOLVER_EVAL_TOL, eval_tol=cfg.eval_tol, examples=PER_IMAGE_EXAMPLES, taylor_solver=taylor
    )
    extra_path = os.path.join(d, "per_image_nfe.json")
    extra = read_record(extra_path, conf)
    if extra is None or {k: extra.get(k) for k in extra_key} != extra_key:
        (xtr, _), (xte, _), _ = mnist.load_data(cfg)
        model, n = load_model(cfg, d), PER_IMAGE_EXAMPLES
        extra = extra_key | dict(
            solver_nfe=per_image_nfe(
                model, xte[:n], solver=cfg.solver, tol=SOLVER_EVAL_TOL, batch=cfg.eval_batch, max_steps=cfg.max_steps
            ),
            test_nfe_image=per_image_nfe(
                model, xte[:n], solver="dopri5", tol=cfg.eval_tol, batch=cfg.eval_batch, max_steps=cfg.max_steps
            ),
            train_nfe_image=per_image_nfe(
                model, xtr[:n], solver="dopri5", tol=cfg.eval_tol, batch=cfg.eval_batch, max_steps=cfg.max_steps
            ),
            taylor_nfe=None
            if taylor is None
            else per_image_nfe(model, xte[:n], solver=taylor, tol=SOLVER_EVAL_TOL, batch=cfg.eval_batch, max_steps=cfg.max_steps),
        )
        write_json(extra_path, extra)
    return (
        res
        | {"status": "ok", "dir": d}
        | {k: extra[k] for k in ("solver_nfe", "test_nfe_image", "train_nfe_image", "taylor_nfe")}
    )


def run_all(cfgs, root: str, *, progress: bool = True, desc: str = "runs") -> list[dict]:
    """:func:`cached_run` for each configuration, with a progress bar over the runs."""
    out = []
    for cfg in tqdm(cfgs, desc=desc, disable=not progress, dynamic_ncols=True):
        out.append(cached_run(cfg, root, progress=progress))
    return out


def fig5_configs(preset="fig", lams=FIG5_LAMS, **overrides):
    return [mnist.config(preset, reg="r2" if lam > 0 else "none", lam=lam, solver="dopri5", **overrides) for lam in lams]


def fig6_configs(preset="fig", solvers=FIG6_SOLVERS, orders=(1, 2, 3, 4), lams=None, **overrides):
    lams = FIG6_LAMS if lams is None else lams
    out = []
    for s in solvers:
        out.append(mnist.config(preset, solver=s, **overrides))
        out += [
            mnist.config(preset, reg=f"r{k}", lam=lam, solver=s, **overrides)
            for k in orders
            for lam in np.atleast_1d(lams[k]).tolist()
        ]
    return out


# ---------------------------------------------------------------- tables and plots


def _row(r: dict) -> dict:
    c = r["config"]
    row = dict(solver=c["solver"], reg=c["reg"], lam=c["lam"], status=r["status"])
    if r["status"] == "ok":
        row |= {
            k: r.get(k)
            for k in (
                "train_loss",
                "test_loss",
                "train_acc",
                "test_acc",
                "train_nfe",
                "test_nfe",
                "train_nfe_image",
                "test_nfe_image",
                "solver_nfe",
                "taylor_nfe",
                "test_R1",
                "test_R2",
                "test_R3",
                "test_R4",
                "train_seconds",
            )
        }
    else:
        row |= dict(diverged_at_step=_diverged_step(r), checkpoint_step=r["steps_done"])
    return row


def _diverged_step(r: dict):
    m = re.search(r"at step (\d+)", r.get("error", ""))
    return int(m.group(1)) if m else None


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_tables(stem: str, rows: list[dict], notes: str = "") -> None:
    """``stem.md`` and ``stem.csv`` of ``rows`` (the union of their keys), atomically."""
    write_table(stem, markdown_rows(rows, fmt=_fmt) + (f"\n{notes}\n" if notes else ""), rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(recs):
    return [r for r in recs if r["status"] == "ok"]


def _finish(out_dir: str, name: str, recs, fig, extra: dict | None = None, notes: str = "") -> dict:
    png = os.path.join(out_dir, f"{name}.png")
    save_figure(fig, png)
    rows = [_row(r) for r in recs]
    write_tables(os.path.join(out_dir, name), rows, notes)
    summary = dict(figure=png, rows=rows) | (extra or {})
    write_json(os.path.join(out_dir, f"{name}.json"), summary)
    return summary


def _diverged_note(recs, sep: str = "; ") -> str:
    bad = [r for r in recs if r["status"] != "ok"]
    return sep.join(
        f"{r['config']['solver']} {r['config']['reg']} λ={r['config']['lam']:g} diverged at step {_diverged_step(r)}" for r in bad
    )


# ---------------------------------------------------------------- the figures


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig5(out_dir: str, *, preset: str = "fig", lams=FIG5_LAMS, progress: bool = True, **overrides) -> dict:
    """Fig. 5: λ sweep of R₂; test NFE (dopri5, 1.4e-8) against unregularized training loss."""
    os.makedirs(out_dir, exist_ok=True)
    recs = run_all(fig5_configs(preset, lams, **overrides), out_dir, progress=progress, desc="fig5 runs")
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    ok = _ok(recs)
    loss = [r["train_loss"] for r in ok]
    ax2.scatter(
        loss, [r["solver_nfe"] for r in ok], c=[np.log10(max(r["config"]["lam"], 1e-1)) for r in ok], cmap="viridis", zorder=3
    )
    for r in ok:
        ax2.annotate(
            f"λ={r['config']['lam']:g}", (r["train_loss"], r["solver_nfe"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    ax2.set(
        xlabel="unregularized training loss (cross-entropy)",
        ylabel=f"test NFE per image (dopri5, tol {SOLVER_EVAL_TOL:g})",
        title=f"the same at tolerance {SOLVER_EVAL_TOL:g}",
    )
    ax.scatter(loss, [r["test_nfe"] for r in ok], facecolors="none", edgecolors="gray", zorder=2, label="batches of 1,000 images")
    sc = ax.scatter(
        loss,
        [r["test_nfe_image"] for r in ok],
        c=[np.log10(max(r["config"]["lam"], 1e-1)) for r in ok],
        cmap="viridis",
        zorder=3,
        label="mean over images, each solved alone",
    )
    for r in ok:
        ax.annotate(
            f"λ={r['config']['lam']:g}",
            (r["train_loss"], r["test_nfe_image"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    fig.colorbar(sc, ax=ax, label="log10 λ (λ=0 shown as -1)")
    ax.legend(fontsize=8)
    note = _diverged_note(recs, "\n")
    ax.set(
        xlabel="unregularized training loss (cross-entropy)",
        ylabel="test NFE (dopri5, tol 1.4e-8)",
        title="R2 λ sweep, evaluated at tolerance 1.4e-8",
    )
    fig.suptitle("Fig. 5: NFE against unregularized training loss" + (f"\n{note}" if note else ""), fontsize=10)
    return _finish(out_dir, "fig5", recs, fig, notes=_diverged_note(recs))


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig6(
    out_dir: str, *, preset: str = "fig", solvers=FIG6_SOLVERS, orders=(1, 2, 3, 4), lams=None, progress: bool = True, **overrides
) -> dict:
    """Fig. 6: per solver, training loss against the NFE of that solver, regularizing R_K."""
    os.makedirs(out_dir, exist_ok=True)
    recs = run_all(fig6_configs(preset, solvers, orders, lams, **overrides), out_dir, progress=progress, desc="fig6 runs")
    from ..solvers import get as get_solver

    plt = _plt()
    panels = [(s, s, "solver_nfe") for s in solvers] + ([("dopri5", TAYLOR_SOLVER, "taylor_nfe")] if "dopri5" in solvers else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.4), layout="constrained", squeeze=False)
    colors = {0: "black"} | {k: plt.cm.viridis((k - 1) / 3) for k in range(1, 5)}
    for ax, (s, evaluator, key) in zip(axes[0], panels):
        for r in _ok(recs):
            c = r["config"]
            if c["solver"] != s or r.get(key) is None:
                continue
            k = int(c["reg"][1:]) if c["reg"].startswith("r") else 0
            ax.scatter(
                r["train_loss"],
                r[key],
                color=colors[k],
                s=50,
                zorder=3,
                label="unregularized" if k == 0 else f"R{k}, λ={c['lam']:g}",
            )
        bad = [r for r in recs if r["status"] != "ok" and r["config"]["solver"] == s]
        taylor_panel = evaluator == TAYLOR_SOLVER
        ax.set(
            xlabel="unregularized training loss",
            ylabel=(
                f"Taylor coefficient orders per image (tol {SOLVER_EVAL_TOL:g})"
                if taylor_panel
                else f"NFE of {s} per image (tol {SOLVER_EVAL_TOL:g}, float64)"
            ),
            title=(
                f"dopri5-trained, evaluated with {TAYLOR_SOLVER}\n(evaluation only: it has no gradients)"
                if taylor_panel
                else f"trained and evaluated with {s} (order {get_solver(s).order})"
            )
            + ("".join(f"\n{r['config']['reg']} λ={r['config']['lam']:g}: diverged at step {_diverged_step(r)}" for r in bad)),
        )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Fig. 6: loss/NFE trade-off per solver and regularization order K")
    return _finish(out_dir, "fig6", recs, fig, notes=_diverged_note(recs))


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")  # undefined for fewer than 3 points or a constant variable
    return float(spearmanr(x, y).statistic)


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig7(out_dir: str, *, preset: str = "fig", fig5_kw=None, fig6_kw=None, progress: bool = True, **overrides) -> dict:
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
def solver_error(model, x, tols=FIG8_TOLS, ref_tol=FIG8_REF_TOL, max_steps=100_000) -> list[float]:
    """RMS over images and features of z(1) by dopri5 at each tol minus dopri8 at ``ref_tol`` (float64)."""
    m, x = cast(model, jnp.float64), jnp.asarray(x, jnp.float64)
    ref = _z1_fn("dopri8", ref_tol, max_steps)(m, x)
    return [float(jnp.sqrt(jnp.mean((_z1_fn("dopri5", t, max_steps)(m, x) - ref) ** 2))) for t in tols]


@functools.cache
def _z1_fn(solver: str, tol: float, max_steps: int):
    return eqx.filter_jit(lambda m, x: m.flow(x, solver=solver, rtol=tol, atol=tol, max_steps=max_steps).z1)


@with_x64  # as the CLI: evaluations (and any run trained here) see float64
def fig8(
    out_dir: str, *, preset: str = "fig", fig5_kw=None, fig6_kw=None, tols=FIG8_TOLS, progress: bool = True, **overrides
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
