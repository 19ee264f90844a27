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

Figs. 7 and 8, analyses across these runs, are in :mod:`taynode.studies.mnist_fig78`.

Each figure writes ``figN.png``, ``figN.md``, ``figN.csv`` and ``figN.json`` in ``OUT``
(atomically: temporary file, then ``os.replace``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..train import CHECKPOINT, load_checkpoint
from . import mnist
from .common import cast, markdown_rows, save_figure, stored_config, with_x64, write_json, write_table
from .runs import read_record, reuse_or_train

__all__ = [
    "FIG5_LAMS",
    "FIG6_LAMS",
    "FIG6_SOLVERS",
    "cached_run",
    "fig5",
    "fig5_configs",
    "fig6",
    "fig6_configs",
    "run_all",
    "run_dir",
]

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
def per_image_nfe(model: Any, x: Any, *, solver: str, tol: float, batch: int = 1000, max_steps: int = 4096) -> float:
    """Mean over the images ``x`` of the NFE of solving each image on its own (float64).

    Finer than the NFE of a batch solve (which takes the steps of its hardest image, and moves in
    whole steps: 6 NFE for dopri5), so small changes between models show.
    """
    fn, m = _nfe_fn(solver, tol, max_steps), cast(model, jnp.float64)
    return float(
        np.mean(np.concatenate([np.asarray(fn(m, jnp.asarray(x[i : i + batch], jnp.float64))) for i in range(0, len(x), batch)]))
    )


def load_model(cfg: mnist.MNISTConfig, folder: str) -> Any:
    """The trained classifier in the run folder ``folder`` (its checkpoint, restored into ``cfg``'s model)."""
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


def run_all(cfgs: Sequence[mnist.MNISTConfig], root: str, *, progress: bool = True, desc: str = "runs") -> list[dict]:
    """:func:`cached_run` for each configuration, with a progress bar over the runs."""
    out = []
    for cfg in tqdm(cfgs, desc=desc, disable=not progress, dynamic_ncols=True):
        out.append(cached_run(cfg, root, progress=progress))
    return out


def fig5_configs(preset: str = "fig", lams: Sequence[float] = FIG5_LAMS, **overrides: Any) -> list[mnist.MNISTConfig]:
    """Fig. 5's runs: dopri5 training with R2 at each λ (0: unregularized)."""
    return [mnist.config(preset, reg="r2" if lam > 0 else "none", lam=lam, solver="dopri5", **overrides) for lam in lams]


def fig6_configs(
    preset: str = "fig",
    solvers: Sequence[str] = FIG6_SOLVERS,
    orders: Sequence[int] = (1, 2, 3, 4),
    lams: dict | None = None,
    **overrides: Any,
) -> list[mnist.MNISTConfig]:
    """Fig. 6's runs: per solver, the unregularized one and R_K at each λ of ``lams[K]`` (default :data:`FIG6_LAMS`)."""
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
def fig5(
    out_dir: str, *, preset: str = "fig", lams: Sequence[float] = FIG5_LAMS, progress: bool = True, **overrides: Any
) -> dict:
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
    out_dir: str,
    *,
    preset: str = "fig",
    solvers: Sequence[str] = FIG6_SOLVERS,
    orders: Sequence[int] = (1, 2, 3, 4),
    lams: dict | None = None,
    progress: bool = True,
    **overrides: Any,
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
