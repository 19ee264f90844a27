r"""Every speed regularizer on the same tasks: ``taynode study regularizers`` (issue #16).

Methods (:data:`METHODS`), each trained from the same seed, initialization and batches as the
unregularized model of its task:

* ``none``: unregularized;
* ``taynode``: λ·R_K by Taylor mode (Kelly et al. 2020; R₃ for the classifier and the Latent ODE,
  R₂ for FFJORD), integrated in the ODE state as in the paper;
* ``taynode-sampled``: the same λ·R_K estimated at 4 stratified random times per solve
  (``quadrature="sampled"``, this library's fast variant);
* ``rnode``: λ·(𝒦 + ℬ) (Finlay et al. 2020);
* ``ernode``, ``srnode``: λ·Σ_j E_est,j |Δt_j| and λ·Σ_j S_est,j |Δt_j| over the accepted steps
  (Pal et al. 2021; :mod:`taynode.solver_heuristics`);
* ``steer``: the end time (MNIST, FFJORD) or every observation time after the first (Latent ODE,
  as Pal et al.'s code) drawn at random per training step (Ghosh et al. 2020); "λ" is then the
  half-width b.

λ (:data:`LAMS`): TayNODE's is the one each task's headline uses; every other method's gives the
same penalty as TayNODE's at the task's trained unregularized model on a training batch
(``benchmarks/regularizers/calibrate.py``, ``benchmarks/regularizers/calibration.json``), so the
methods start from one weight instead of a per-method sweep.

Tasks (:data:`TASKS`) at their CPU presets: the MNIST classifier (``small``), the Latent ODE on
PhysioNet set A (``cpu``) and FFJORD on 8 Gaussians (``cpu``, adaptive training). Each
(task, method, seed) is one run folder ``OUT/<task>/<method>-lam<λ>-seed<s>`` trained in its own
process (:mod:`taynode.studies.batch`: killed runs resume, finished ones are skipped), evaluated
the task's own way (test NFE with dopri5 at 1.4e-8 in float64, test loss), and summarized in
``OUT/<task>/table.md`` and ``OUT/<task>/scatter.png`` (test loss against test NFE).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .batch import Spec, collect, mean_range, run_all, unfinished_note
from .common import save_figure, setting, with_x64, write_json, write_text
from .runs import Divergence, reuse_or_train

TASKS = ("mnist", "latent", "ffjord")
METHODS = ("none", "taynode", "taynode-sampled", "rnode", "ernode", "srnode", "steer")
TAYNODE = {"mnist": "r3", "latent": "r3", "ffjord": "r2"}

# λ per task and method (module docstring); calibration.json has the unrounded values.
LAMS = {
    "mnist": {"taynode": 1e4, "taynode-sampled": 1e4, "rnode": 0.57, "ernode": 120.0, "srnode": 20.0, "steer": 0.5},
    "latent": {"taynode": 2.0, "taynode-sampled": 2.0, "rnode": 4.0, "ernode": 5600.0, "srnode": 170.0, "steer": 1.0},
    "ffjord": {"taynode": 0.5, "taynode-sampled": 0.5, "rnode": 0.09, "ernode": 3.9, "srnode": 0.32, "steer": 0.5},
}

# Pal, Ma, Shah & Rackauckas (ICML 2021), Avik Pal's thesis table (issue #16): Tsit5 at 1.4e-8.
# MNIST: test NFE / accuracy / training time; PhysioNet: test NFE / test loss ×1e-3 (an MSE) / time.
PAL = {
    "mnist": {
        "none": "253 / 97.94 % / 0.98 h",
        "steer": "265 / 97.94 % / 1.31 h",
        "taynode": "80.3 / 97.89 % / 1.19 h",
        "srnode": "259 / 98.08 % / 1.24 h",
        "ernode": "177 / 97.32 % / 0.82 h",
    },
    "latent": {
        "none": "733 / 3.55 / 1.75 h",
        "steer": "699 / 3.48 / 1.62 h",
        "taynode": "167.3 / 4.21 / 12.3 h",
        "srnode": "273 / 3.58 / 0.87 h",
        "ernode": "287 / 3.57 / 0.94 h",
    },
}
LABELS = {
    "none": "unregularized",
    "taynode": "TayNODE",
    "taynode-sampled": "TayNODE, sampled (M=4)",
    "rnode": "RNODE (𝒦+ℬ)",
    "ernode": "ERNODE",
    "srnode": "SRNODE",
    "steer": "STEER",
}


@dataclass(frozen=True)
class RegularizersConfig:
    """Which tasks, methods and seeds the study runs (each a flag of ``taynode study regularizers``)."""

    tasks: tuple = setting(TASKS, "tasks to run: mnist, latent, ffjord")
    methods: tuple = setting(METHODS, "methods to run: " + ", ".join(METHODS))
    seeds: tuple = setting((0, 1), "seeds (each method is paired with the unregularized run of its seed)")

    def __post_init__(self):
        for name, valid in (("tasks", TASKS), ("methods", METHODS)):
            bad = [v for v in getattr(self, name) if v not in valid]
            if bad or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty subset of {list(valid)}, got {list(getattr(self, name))}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers, got {list(self.seeds)}")


def specs(cfg: RegularizersConfig, task: str) -> list[Spec]:
    """The runs of one task: the unregularized ones first (the others are compared with them)."""
    order = ["none"] + [m for m in cfg.methods if m != "none"]
    return [Spec(m, 0.0 if m == "none" else LAMS[task][m], s) for m in order for s in cfg.seeds]


def _reg_and_lam(task, spec):
    """(regularizer set name, λ, steer half-width, quadrature keywords) of a run."""
    m = spec.reg
    reg = {
        "none": "none",
        "steer": "none",
        "taynode": TAYNODE[task],
        "taynode-sampled": TAYNODE[task],
        "rnode": "kinetic+jacobian",
        "ernode": "ernode",
        "srnode": "srnode",
    }[m]
    quad = dict(quadrature="sampled", samples=4) if m == "taynode-sampled" else {}
    lam = 0.0 if m in ("none", "steer") else spec.lam
    return reg, lam, (spec.lam if m == "steer" else 0.0), quad


def _diverged(div: Divergence) -> dict:
    """The record of a diverged run (deterministic: same seed, same steps), its results.json, so
    the table says so and the run is not retried."""
    return dict(status="diverged", error=div.error, steps=div.logged_step)


def _run_mnist(spec, run_dir):
    from . import mnist

    reg, lam, steer, quad = _reg_and_lam("mnist", spec)
    cfg = mnist.config("small", reg=reg, lam=lam, steer=steer, seed=spec.seed, **quad)
    # run_all starts only runs without results.json; mnist.run writes it
    reuse_or_train(
        run_dir,
        None,
        lambda: mnist.run(cfg, run_dir, resume=True, progress=False),
        diverged=_diverged,
        diverged_file="results.json",
    )


def _run_latent(spec, run_dir):
    from . import latent

    reg, lam, steer, quad = _reg_and_lam("latent", spec)
    cfg = latent.preset(
        "cpu", reg="r3" if reg == "none" else reg, lam=lam or 1.0, steer=steer, seed=spec.seed, epoch_eval_records=100, **quad
    )
    latent.run_one(cfg, lam, run_dir)


def _run_ffjord(spec, run_dir):
    from . import ffjord

    reg, lam, steer, quad = _reg_and_lam("ffjord", spec)
    cfg = ffjord.preset("cpu", seed=spec.seed, fixed_steps=(), steer=steer, **quad)
    ffjord.run_one(cfg, reg, lam, run_dir)


RUNNERS = {"mnist": _run_mnist, "latent": _run_latent, "ffjord": _run_ffjord}


def metrics(task: str, results: dict) -> dict:
    """One task's results.json → test NFE, test loss, a quality measure and the training time."""
    if task == "mnist":
        return dict(
            nfe=results["test_nfe"],
            loss=results["test_loss"],
            quality=100 * results["test_acc"],
            seconds=results["train_seconds"],
        )
    if task == "latent":
        return dict(nfe=results["nfe"], loss=results["loss"], quality=1e3 * results["mse"], seconds=results["train_seconds"])
    return dict(nfe=results["nfe"], loss=results["nll"], quality=results["nll"], seconds=results["train_seconds"])


QUALITY = {"mnist": "test accuracy %", "latent": "test MSE ×1e-3", "ffjord": "test NLL (nats)"}
LOSS = {"mnist": "test cross-entropy", "latent": "test loss (−objective)", "ffjord": "test NLL (nats)"}
PAL_HEADER = {"mnist": "Pal et al.: NFE / acc. / time", "latent": "Pal et al.: NFE / MSE×1e-3 / time"}


def table(task: str, groups: dict) -> tuple[str, list]:
    """Markdown rows per method (mean [min–max] over seeds; ratios paired by seed with ``none``)."""
    base = {r["seed"]: metrics(task, r["results"]) for r in groups.get(("none", 0.0, "integrated"), [])}
    head = ["method", "λ (STEER: b)", "seeds", "test NFE", "NFE saving (paired)", LOSS[task], "Δ loss (paired)"]
    head += [QUALITY[task]] if task != "ffjord" else []
    head += ["training time, s (× unregularized)"] + ([PAL_HEADER[task]] if task in PAL_HEADER else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for m in METHODS:
        found = [(k, v) for k, v in groups.items() if k[0] == m]
        for (_, lam, _), all_runs in found:
            runs = [r for r in all_runs if r["results"].get("status", "ok") == "ok"]
            failed = [r for r in all_runs if r not in runs]
            failed_text = ", ".join(f"seed {r['seed']} at step {r['results'].get('steps', '?')}" for r in failed)
            note = f"; diverged: {failed_text}" if failed else ""
            if not runs:
                cells = [LABELS[m], f"{lam:g}", "0", f"diverged ({failed_text})"] + [""] * (len(head) - 4)
                lines.append("| " + " | ".join(cells) + " |")
                rows.append(
                    dict(
                        method=m,
                        lam=lam,
                        runs=[],
                        nfe_saving=[],
                        loss_change_percent=[],
                        time_ratio=[],
                        diverged=[r["seed"] for r in failed],
                    )
                )
                continue
            ms = [dict(seed=r["seed"], **metrics(task, r["results"])) for r in runs]
            pairs = [(base[x["seed"]], x) for x in ms if x["seed"] in base and m != "none"]
            saving = [b["nfe"] / x["nfe"] for b, x in pairs]
            dloss = [100 * (x["loss"] - b["loss"]) / abs(b["loss"]) for b, x in pairs]
            tratio = [x["seconds"] / b["seconds"] for b, x in pairs]
            cells = [
                LABELS[m],
                "–" if m == "none" else f"{lam:g}",
                str(len(ms)) + note,
                mean_range([x["nfe"] for x in ms], "{:.1f}"),
                mean_range(saving, "{:.2f}") + "×" if saving else "",
                mean_range([x["loss"] for x in ms], "{:.4g}"),
                mean_range(dloss, "{:+.1f}") + " %" if dloss else "",
            ]
            cells += [mean_range([x["quality"] for x in ms], "{:.2f}")] if task != "ffjord" else []
            cells += [mean_range([x["seconds"] for x in ms], "{:.0f}") + (f" ({np.mean(tratio):.2f}×)" if tratio else "")]
            cells += [PAL.get(task, {}).get(m, "")] if task in PAL_HEADER else []
            lines.append("| " + " | ".join(cells) + " |")
            rows.append(
                dict(
                    method=m,
                    lam=lam,
                    runs=ms,
                    nfe_saving=saving,
                    loss_change_percent=dloss,
                    time_ratio=tratio,
                    diverged=[r["seed"] for r in failed],
                )
            )
    return "\n".join(lines) + "\n", rows


def scatter(task: str, groups: dict, path: str) -> None:
    """Test loss against test NFE, one point per finished run and seed, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    for i, m in enumerate(METHODS):
        pts = [
            metrics(task, r["results"])
            for k, runs in groups.items()
            if k[0] == m
            for r in runs
            if r["results"].get("status", "ok") == "ok"
        ]
        if pts:
            label = LABELS[m].replace("𝒦", "K").replace("ℬ", "B")  # glyphs the default font lacks
            ax.scatter([p["nfe"] for p in pts], [p["loss"] for p in pts], color=f"C{i}", label=label, s=30)
    ax.set(
        xlabel="test NFE (dopri5, 1.4e-8, float64)",
        ylabel=LOSS[task],
        title=f"{task}: loss against solver cost (one point per seed)",
    )
    ax.legend(fontsize=8)
    save_figure(fig, path)


def overview(out_dir: str, tasks: tuple = TASKS) -> str:
    """One markdown table across tasks: per method and λ, the paired NFE saving and loss change
    (mean over seeds, number of seeds in brackets); "–" where a task has no finished run of it."""
    cells = {}
    for task in tasks:
        groups, _ = collect(os.path.join(out_dir, task))
        for row in table(task, groups)[1] if groups else []:
            if row.get("diverged") and not row["nfe_saving"]:
                cells[(row["method"], task)] = f"diverged (λ {row['lam']:g}, seeds {', '.join(map(str, row['diverged']))})"
            elif row["method"] != "none" and row["nfe_saving"]:
                key = (row["method"], task)
                text = (
                    f"{np.mean(row['nfe_saving']):.2f}× / {np.mean(row['loss_change_percent']):+.1f} % "
                    f"(λ {row['lam']:g}, {len(row['nfe_saving'])})"
                )
                cells[key] = cells[key] + "; " + text if key in cells else text
    head = "| method | " + " | ".join(f"{t}: NFE saving / Δ test loss (λ, seeds)" for t in tasks) + " |"
    lines = [head, "|" + "---|" * (len(tasks) + 1)]
    for m in METHODS[1:]:
        if any((m, t) in cells for t in tasks):
            lines.append(f"| {LABELS[m]} | " + " | ".join(cells.get((m, t), "–") for t in tasks) + " |")
    return "\n".join(lines) + "\n"


@with_x64
def report(out_dir: str, task: str) -> str | None:
    """Write ``table.md``, ``summary.json`` and ``scatter.png`` of one task from its finished runs."""
    folder = os.path.join(out_dir, task)
    groups, unfinished = collect(folder)
    if not groups:
        return None
    text, rows = table(task, groups)
    text += unfinished_note(unfinished)
    write_text(os.path.join(folder, "table.md"), text)
    write_json(os.path.join(folder, "summary.json"), dict(lams=LAMS[task], rows=rows, unfinished=unfinished))
    scatter(task, groups, os.path.join(folder, "scatter.png"))
    return text


def run(
    cfg: RegularizersConfig, out_dir: str = "runs/regularizers", *, time_limit: float | None = None, sequential: bool = True
) -> dict:
    """Train every unfinished (task, method, seed) run, then write each task's table and scatter.

    ``sequential`` (default): one run at a time, so the training times compare."""
    import time

    failed, texts = [], {}
    deadline = None if time_limit is None else time.monotonic() + time_limit
    for task in cfg.tasks:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        failed += [
            (task, s)
            for s in run_all(RUNNERS[task], specs(cfg, task), os.path.join(out_dir, task), time_limit=left, sequential=sequential)
        ]
        texts[task] = report(out_dir, task)
    write_text(os.path.join(out_dir, "overview.md"), overview(out_dir, cfg.tasks))
    return dict(tables=texts, failed=failed)


__all__ = ["LAMS", "METHODS", "PAL", "RegularizersConfig", "TASKS", "metrics", "overview", "report", "run", "specs", "table"]
