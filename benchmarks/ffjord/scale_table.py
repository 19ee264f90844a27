"""Table 2's layout at CPU scale from ``runs.py``'s run folders (issue #27): per task a table,
the per-step validation NFE curves and (digits) samples from the trained flows beside real digits.

First the small files are copied from ``--runs`` into ``--dest/<task>/results/<training>/<run>/``
(``results.json`` of finished runs, ``curve.json`` = the validation-curve records of every run),
so the table can be rebuilt from the committed copies alone (``--runs`` omitted). Adaptive rows
group seeds (mean [smallest–largest]); NFE savings and bits/dim changes pair each regularized run
with the unregularized run of its seed (same data order, initialization, noise). Unfinished runs
are listed with the step they reached. Writes ``<task>/table.md``, ``<task>/summary.json``,
``<task>/nfe_curves.png``, ``digits/samples.png`` and ``--doc`` (all tasks on one page)::

    python benchmarks/ffjord/scale_table.py --runs runs/ffjord-scale --dest benchmarks/ffjord --doc docs/results/ffjord.md
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import shutil

import jax
import matplotlib
import numpy as np

from taynode.data import digits
from taynode.studies import cast, ffjord, save_figure, write_json, write_text
from taynode.studies.batch import mean_range, parse_folder
from taynode.train import CHECKPOINT, load_checkpoint, read_log

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

TASKS = ("digits", "mnist-long")
TRAININGS = ("adaptive", "rk4-5", "rk4-6", "rk4-8")
MODELS = {"none": "unregularized", "rnode": "RNODE (𝒦+ℬ)", "r2": "TayNODE (R₂)"}
PLOT_NAMES = {"none": "unregularized", "rnode": "RNODE (K+B)", "r2": "TayNODE (R2)"}  # glyphs the plot font has
TARGET_SAVING, TARGET_COST = 1.6, 1.0  # ≥ 1.6× fewer evaluation NFE at ≤ 1 % higher bits/dim, every seed
# The paper's Table 2 (MNIST, full architecture, GPU; ../shared/paper-numbers.md): hours, bits/dim, NFE.
PAPER = {
    ("none", "rk4-8"): "NaN",
    ("none", "adaptive"): "35.8 h, 1.033, 149",
    ("rnode", "rk4-5"): "NaN",
    ("rnode", "rk4-6"): "8.4 h, 1.069, 122",
    ("rnode", "rk4-8"): "11.1 h, 1.048, 97",
    ("rnode", "adaptive"): "22.9 h, 1.049, 104",
    ("r2", "rk4-5"): "20.3 h, 1.077, 98",
    ("r2", "rk4-6"): "20.4 h, 1.057, 105",
    ("r2", "rk4-8"): "27.1 h, 1.046, 98",
    ("r2", "adaptive"): "54.7 h, 1.039, 92",
}


DIFFERENCES = """Settings that differ from the paper's Table 2 (MNIST 28 × 28, its single-scale FFJORD flow, GPU,
trained to convergence): the data (UCI digits 8 × 8 with 17 levels; MNIST downsampled to 14 × 14),
the flow (conv 1 → 32 → 32 → 1 for digits, 1 → 8 → 8 → 1 for MNIST, one block), the logit α (0.05,
the paper's code 1e-6 for MNIST), the length (5,000 and 3,000 Adam steps), λ (not tuned: reduced
MNIST's 1e-2 for R₂ and 2e-4 for each of 𝒦, ℬ), float32 training on shared CPU cores (training
times are wall times under load: compare them within a row group, not with the paper's hours).
Same: dopri5 at 1e-5 or rk4 on 5, 6, 8 steps in training, evaluation with dopri5 at 1.4e-8 in
float64, Hutchinson's trace, the columns. The paper column is its MNIST row of the same model
and training solver.
"""


def copy_runs(runs: str, dest: str, task: str) -> None:
    """Copy each run's ``results.json`` (if finished) and its curve (eval log records) into ``dest``."""
    for d in sorted(glob.glob(os.path.join(runs, task, "*", "*-lam*-seed*"))):
        if not os.path.isdir(d):
            continue
        out = os.path.join(dest, task, "results", os.path.basename(os.path.dirname(d)), os.path.basename(d))
        os.makedirs(out, exist_ok=True)
        if os.path.exists(os.path.join(d, "results.json")):
            shutil.copyfile(os.path.join(d, "results.json"), os.path.join(out, "results.json"))
        steps = read_log(d, "step")
        curve = [{k: r[k] for k in ("step", "time", "val_nfe", "val_nll") if k in r} for r in read_log(d, "eval")]
        write_json(os.path.join(out, "curve.json"), dict(step_reached=steps[-1]["step"] if steps else 0, curve=curve))


def load(dest: str, task: str) -> tuple[dict, list]:
    """``({(training, reg, λ, quadrature): [run, …]}, unfinished)``; a run is ``dict(seed, results, curve)``."""
    groups, unfinished = {}, []
    for d in sorted(glob.glob(os.path.join(dest, task, "results", "*", "*-lam*-seed*"))):
        spec, training = parse_folder(os.path.basename(d)), os.path.basename(os.path.dirname(d))
        with open(os.path.join(d, "curve.json")) as fh:
            curve = json.load(fh)
        if not os.path.exists(os.path.join(d, "results.json")):
            unfinished.append(dict(run=f"{training}/{spec.name}", step=curve["step_reached"], curve=curve["curve"]))
            continue
        with open(os.path.join(d, "results.json")) as fh:
            res = json.load(fh)
        quad = res["config"].get("quadrature", "integrated") if spec.reg != "none" else "–"
        groups.setdefault((training, spec.reg, spec.lam, quad), []).append(
            dict(seed=spec.seed, results=res, curve=curve["curve"])
        )
    return groups, unfinished


def _f(values, fmt):
    v = [x for x in values if x is not None]
    return "" if not v else "NaN" if any(isinstance(x, float) and math.isnan(x) for x in v) else mean_range(v, fmt)


def table(groups: dict, unit: str) -> tuple[str, list]:
    head = (
        f"| training | model | λ | quadrature | seeds | training time (min) | test {unit} | eval NFE | R₂ | ℬ | 𝒦 "
        "| NFE saving per seed (paired) | bits/dim change per seed | target (≥ 1.6×, ≤ +1 %, every seed) "
        "| paper (MNIST): hours, bits/dim, NFE |"
    )
    rows, summary = [head, "|" + "---|" * 15], []
    for training in TRAININGS:
        base = {r["seed"]: r["results"] for r in groups.get((training, "none", 0.0, "–"), [])}
        keys = sorted((k for k in groups if k[0] == training), key=lambda k: (list(MODELS).index(k[1]), k[2], k[3]))
        for _, reg, lam, quad in keys:
            runs = groups[(training, reg, lam, quad)]
            paper = PAPER.get((reg, training), "–")
            res = [r["results"] for r in runs]
            ok = [x for x in res if x["status"] == "ok"]
            name = MODELS[reg] + ("" if len(ok) == len(res) else f" — {len(res) - len(ok)} diverged (NaN)")
            paired = [(base[r["seed"]], r["results"]) for r in runs if reg != "none" and r["seed"] in base]
            saving = [b["nfe"] / x["nfe"] for b, x in paired]
            change = [100 * (x["nll"] - b["nll"]) / b["nll"] for b, x in paired]
            met = ""
            if saving:
                hit = all(s >= TARGET_SAVING and c <= TARGET_COST for s, c in zip(saving, change))
                met = ("met" if hit else "missed") + ("" if len(saving) >= 3 else f" ({len(saving)} of 3 seeds)")
            rows.append(
                f"| {training} | {name} | {'–' if reg == 'none' else f'{lam:g}'} | {quad} | {', '.join(str(r['seed']) for r in runs)} | "
                f"{_f([x['train_seconds'] / 60 for x in res], '{:.0f}')} | {_f([x['nll'] for x in res], '{:.4f}')} | "
                f"{_f([x['nfe'] for x in res], '{:.1f}')} | {_f([x['R2'] for x in res], '{:.4g}')} | "
                f"{_f([x['jacobian'] for x in res], '{:.4g}')} | {_f([x['kinetic'] for x in res], '{:.4g}')} | "
                f"{', '.join(f'{s:.2f}×' for s in saving)} | {', '.join(f'{c:+.2f} %' for c in change)} | {met} | {paper} |"
            )
            summary.append(
                dict(training=training, reg=reg, lam=lam, seeds=[r["seed"] for r in runs], quadrature=quad,
                     status=[x["status"] for x in res], nll=[x["nll"] for x in res], nfe=[x["nfe"] for x in res],
                     train_seconds=[x["train_seconds"] for x in res], paired_nfe_saving=saving, paired_change_percent=change)
            )  # fmt: skip
    return "\n".join(rows) + "\n", summary


def curve_growth(groups: dict, unfinished: list) -> str:
    """The unregularized adaptive runs' validation NFE at the first and last evaluation (finished or not)."""
    runs = [(f"seed {r['seed']}", r["curve"]) for r in groups.get(("adaptive", "none", 0.0, "–"), [])]
    runs += [(f"{u['run']} (unfinished)", u["curve"]) for u in unfinished if u["run"].startswith("adaptive/none-")]
    out = [
        f"{name}: {c[0]['val_nfe']:.0f} (step {c[0]['step']}) → {c[-1]['val_nfe']:.0f} (step {c[-1]['step']}), "
        f"{c[-1]['val_nfe'] / c[0]['val_nfe']:.2f}×"
        for name, c in runs
        if len(c) >= 2
    ]
    return "Unregularized (adaptive) validation NFE, first → last evaluation: " + "; ".join(out) + "\n" if out else ""


def plot_curves(dest: str, task: str) -> str | None:
    """Validation NFE against step for every run (finished or not)."""
    paths = sorted(glob.glob(os.path.join(dest, task, "results", "*", "*", "curve.json")))
    if not paths:
        return None
    fig, axes = plt.subplots(1, len(TRAININGS), figsize=(4.2 * len(TRAININGS), 3.6), sharey=True, layout="constrained")
    variants = {}  # (reg, λ, quadrature) → colour index; seeds > 0 are drawn paler
    paths.sort(key=lambda p: (parse_folder(os.path.basename(os.path.dirname(p))).reg != "none", p))
    for path in paths:
        training, spec = (
            os.path.basename(os.path.dirname(os.path.dirname(path))),
            parse_folder(os.path.basename(os.path.dirname(path))),
        )
        with open(path) as fh:
            c = json.load(fh)["curve"]
        if training not in TRAININGS or not c:
            continue
        ax = axes[TRAININGS.index(training)]
        variant = (spec.reg, spec.lam, spec.quadrature)
        color = f"C{variants.setdefault(variant, len(variants))}"
        label = (
            PLOT_NAMES[spec.reg]
            + ("" if spec.reg == "none" else f", λ {spec.lam:g}")
            + ("" if spec.quadrature == "integrated" else f", {spec.quadrature}")
        )
        ax.plot([e["step"] for e in c], [e["val_nfe"] for e in c], ".-", color=color, alpha=1.0 if spec.seed == 0 else 0.5,
                label=label if spec.seed == 0 else None)  # fmt: skip
    for ax, training in zip(axes, TRAININGS):
        ax.set(title=f"trained {training}", xlabel="training step")
        ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else None
    axes[0].set_ylabel("validation NFE (dopri5, 1.4e-8, float64)")
    png = os.path.join(dest, task, "nfe_curves.png")
    save_figure(fig, png)
    return png


def _site_link(png: str, doc: str) -> str:
    """The link from the docs page ``doc`` to ``png``: the site serves ``benchmarks/`` at its root
    (``docs/gen_assets.py``), so the link is relative to the page's place under ``docs/``."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    page_dir = os.path.relpath(os.path.dirname(os.path.abspath(doc)), os.path.join(repo, "docs"))
    return os.path.relpath(os.path.relpath(os.path.abspath(png), repo), page_dir)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=None, help="runs.py's --out (omit: rebuild from the copies in --dest)")
    p.add_argument("--dest", default="benchmarks/ffjord")
    p.add_argument("--doc", default=None, help="also write all tasks' tables to this markdown page")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    ns = p.parse_args(argv)
    page = ["# FFJORD at CPU scale (issue #27): Table 2's layout on the UCI digits and reduced MNIST\n",
            "Generated by `benchmarks/ffjord/scale_table.py`; settings and commands: `benchmarks/ffjord/README.md`.\n",
            DIFFERENCES]  # fmt: skip
    for task in ns.tasks:
        if ns.runs:
            copy_runs(ns.runs, ns.dest, task)
        groups, unfinished = load(ns.dest, task)
        text, summary = table(groups, "bits/dim")
        text += "\n" + curve_growth(groups, unfinished)
        if unfinished:
            text += "\nUnfinished (not in the table): " + ", ".join(f"{u['run']} at step {u['step']}" for u in unfinished) + "\n"
        os.makedirs(os.path.join(ns.dest, task), exist_ok=True)
        write_text(os.path.join(ns.dest, task, "table.md"), text)
        write_json(
            os.path.join(ns.dest, task, "summary.json"),
            dict(rows=summary, unfinished=[{k: u[k] for k in ("run", "step")} for u in unfinished]),
        )
        png = plot_curves(ns.dest, task)
        if task == "digits" and ns.runs:
            plot_samples(ns.runs, os.path.join(ns.dest, task, "samples.png"))
        page += [f"\n## {task}\n", text] + (
            [f"\n![validation NFE during training]({_site_link(png, ns.doc)})\n"] if png and ns.doc else []
        )
        print(f"## {task}\n{text}")
    if ns.doc:
        os.makedirs(os.path.dirname(ns.doc) or ".", exist_ok=True)
        write_text(ns.doc, "\n".join(page))


def _run_config(results: dict) -> ffjord.FFJORDConfig:
    """The config a run's ``results.json`` stores, back as an :class:`~taynode.studies.ffjord.FFJORDConfig`."""
    names = {f.name for f in dataclasses.fields(ffjord.FFJORDConfig)}
    return ffjord.FFJORDConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items() if k in names})


def plot_samples(runs: str, path: str, n: int = 40, training: str = "adaptive") -> None:
    """Samples of the finished seed-0 flows at the preset's λ (z ~ N(0, I) solved back to t = 0
    with dopri5 at 1e-6, inverted logit, shown as grey values) next to real test digits."""
    panels = [("real test digits", digits.load().x_test[:n, 0].astype(float) / 16)]
    with jax.enable_x64(True):
        for reg, lam in (("none", 0.0), ("rnode", ffjord.PRESETS["digits"].lam_rnode), ("r2", ffjord.PRESETS["digits"].lam_r2)):
            run = os.path.join(runs, "digits", training, f"{reg}-lam{lam:g}-seed0")
            if not os.path.exists(os.path.join(run, "results.json")):
                continue
            with open(os.path.join(run, "results.json")) as fh:
                cfg = _run_config(json.load(fh))
            model, _, _ = load_checkpoint(os.path.join(run, CHECKPOINT), ffjord.make_cnf(cfg, (1, 8, 8)))
            y = cast(model, jax.numpy.float64).sample(
                jax.random.PRNGKey(0), n, (1, 8, 8), dtype=jax.numpy.float64, rtol=1e-6, atol=1e-6
            )
            v = (np.asarray(jax.nn.sigmoid(y)) - cfg.alpha) / (1 - 2 * cfg.alpha)
            panels.append((f"{PLOT_NAMES[reg]} samples", np.clip(v[:, 0], 0, 1)))
    if len(panels) == 1:
        print(f"no finished seed-0 digits run in {runs}/digits/{training}: no sample figure")
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), layout="constrained")
    for ax, (title, imgs) in zip(np.atleast_1d(axes), panels):
        grid = imgs[:n].reshape(5, n // 5, 8, 8).transpose(0, 2, 1, 3).reshape(40, 8 * n // 5)
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
