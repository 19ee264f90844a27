"""The FFJORD study's runs and tables: one run (:func:`run_one`, for the batch scripts) or the
whole table of one config (:func:`run_table`, the ``taynode study ffjord-table2`` command)."""

from __future__ import annotations

import math
import os

from ..common import with_x64, write_json, write_table
from .config import EVAL_REGS, REGS, FFJORDConfig
from .evaluation import evaluate, plot_densities
from .fit import regularizers, run_config, solver_label, train_one
from .inputs import is_images, load_data

__all__ = ["COLUMNS", "markdown_table", "run_one", "run_table"]


COLUMNS = ("training", "regularization", "status", "train_seconds", "step_seconds", "nll", "nfe", "R2", "jacobian", "kinetic")


def _fmt(v, spec):
    return "NaN" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown_table(summary: dict) -> str:
    """The study's Table 2 in Markdown: one row per (training solver, regularization) of
    ``summary["rows"]``, with training time, test NLL (bits/dim for images), evaluation NFE and
    the three regularizers R₂, ℬ, 𝒦; a diverged run is marked with its last good step."""
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
def run_one(
    cfg: FFJORDConfig,
    reg: str,
    lam: float,
    run_dir: str,
    *,
    progress: bool = False,
    resume: bool = True,
    train_steps: int | None = None,
) -> dict:
    """Train (or resume) one model with ``reg`` at weight ``lam`` (``"none"``: unregularized),
    adaptive (``train_steps=None``) or on a fixed grid of ``train_steps`` steps, evaluate it
    (:func:`evaluate`) and write ``run_dir/results.json``."""
    if reg in REGS and lam != regularizers(cfg, reg).lam:
        raise ValueError(
            f"{reg}'s λ comes from the config (lam_r2, lam_rnode; 0 for none): got lam={lam}, config {regularizers(cfg, reg).lam}"
        )
    train_x, test_x = load_data(cfg)
    t = train_one(cfg, reg, train_steps, train_x, run_dir, progress=progress, resume=resume, lam=None if reg in REGS else lam)
    metrics = evaluate(t["model"], cfg, test_x) if t["status"] == "ok" else {k: float("nan") for k in ("nll", "nfe") + EVAL_REGS}
    summary = dict(
        config=run_config(cfg) | {"data": None, "reg": reg, "lam": lam},
        **({} if train_steps is None else {"train_steps": train_steps, "training": solver_label(train_steps, cfg.fixed_solver)}),
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
        "config": run_config(cfg) | {"data": None},
        "train_examples": len(train_x),
        "test_examples": len(test_x),
        "nll_unit": "bits/dim" if is_images(cfg) else "nats",
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
