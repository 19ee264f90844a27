"""The headline table of the README, the regularizers study's tables, the data-parallel, the λ-by-target
and the compilation cache's cold/warm tables."""

from __future__ import annotations

import numpy as np

from taynode.studies.regularizers import LABELS  # the study's own method labels

from .fmt import by_seed, load, markdown, paired, percent_change, ratio, reference, seeds_cell, slower
from .runs import ffjord_seeds

# ---------------------------------------------------------------------------------------------- headline


def _saving_row(task, link, seeds, saving, change, unit, paper, pal):
    claimed = "yes" if saving and all(s > 1 for s in saving) else "**no saving claimed**"
    cells = [f"[{task}]({link})", ", ".join(map(str, seeds)), seeds_cell(saving, "{:.2f}", "×")]
    return cells + [seeds_cell(change, "{:+.2f}", unit), paper, pal, claimed]


def _mnist_row(root, preset, reg_quad, task, pal):
    rows = load(root, f"benchmarks/mnist/{preset}/summary.json")["rows"]
    base = next(r for r in rows if r["reg"] == "none")
    r = next(r for r in rows if (r["reg"], r["quadrature"]) == reg_quad)
    saving = paired(by_seed(base, "test_nfe"), by_seed(r, "test_nfe"), ratio)
    change = paired(by_seed(base, "test_acc"), by_seed(r, "test_acc"), lambda b, x: x - b)
    return _saving_row(
        task, "docs/results/mnist.md", r["seeds"], saving, change, " points acc.", "– (Fig. 3 only, no table)", pal
    )


def _latent_row(root, preset, task, paper, pal):
    rows = load(root, f"benchmarks/latent_ode/{preset}/summary.json")["rows"]
    base = next(r for r in rows if r["reg"] == "none")
    r = next(r for r in rows if r["reg"] == "r3" and r["lam"] == 2.0)
    saving = paired(by_seed(base, "nfe"), by_seed(r, "nfe"), ratio)
    change = paired(by_seed(base, "loss"), by_seed(r, "loss"), percent_change)
    return _saving_row(task, "docs/results/latent-ode.md", r["seeds"], saving, change, " % loss", paper, pal)


def _ffjord_row(data, ds, task, paper):
    base, r = data[ds]["none"], data[ds]["r2"]
    saving = paired(dict(zip(base["seeds"], base["nfe"])), dict(zip(r["seeds"], r["nfe"])), ratio)
    change = paired(dict(zip(base["seeds"], base["nll"])), dict(zip(r["seeds"], r["nll"])), percent_change)
    unit = " % bits/dim" if ds == "mnist" else " % NLL"
    return _saving_row(task, "docs/results/ffjord-cpu.md", r["seeds"], saving, change, unit, paper, "–")


def headline(root: str) -> str:
    """One row per experiment: R_K's paired NFE saving and loss change beside the paper and Pal et al."""
    ref = reference(root)
    p_mnist, p_lat = ref["pal2021"]["mnist"], ref["pal2021"]["latent"]
    pal_mnist = (
        f"{p_mnist['none']['nfe']:g} → {p_mnist['taynode']['nfe']:g} ({p_mnist['none']['nfe'] / p_mnist['taynode']['nfe']:.2f}×), "
        f"{p_mnist['taynode']['accuracy'] - p_mnist['none']['accuracy']:+.2f} points acc. (160 epochs)"
    )
    pal_lat = (
        f"{p_lat['none']['nfe']:g} → {p_lat['taynode']['nfe']:g} ({p_lat['none']['nfe'] / p_lat['taynode']['nfe']:.2f}×), "
        f"{percent_change(p_lat['none']['mse'], p_lat['taynode']['mse']):+.1f} % MSE"
    )
    f4 = ref["kelly2020"]["fig4_latent"]
    paper_lat = f"{f4['nfe_unregularized']} → {f4['nfe_regularized']} ({f4['nfe_unregularized'] / f4['nfe_regularized']:.2f}×), +{f4['loss_change_percent']} % loss"
    t2 = {(m, s): (bpd, nfe) for m, s, _, bpd, nfe, *_ in ref["kelly2020"]["table2_mnist"]["rows"]}
    (b0, n0), (b1, n1) = t2[("unregularized", None)], t2[("TayNODE (R2)", None)]
    paper_ffjord = f"{n0} → {n1} ({n0 / n1:.2f}×), {percent_change(b0, b1):+.1f} % bits/dim (full MNIST, GPU)"
    seeds = ffjord_seeds(root)
    rows = [
        _mnist_row(root, "small_cost", ("r3", "integrated"), "MNIST, 5 epochs of 20,000 images, R₃", "–"),
        _mnist_row(root, "full", ("r3", "integrated"), "MNIST, 20 epochs, R₃", pal_mnist),
        _mnist_row(root, "long", ("r3", "sampled4"), "MNIST, 40 epochs, R₃ sampled", pal_mnist),
        _latent_row(root, "cpu", "Latent ODE, 120 epochs, R₃ sampled, λ = 2", paper_lat, pal_lat),
        _latent_row(root, "long", "Latent ODE, 360 epochs, R₃ sampled, λ = 2", paper_lat, pal_lat),
        _ffjord_row(seeds, "8gaussians", "FFJORD 8gaussians (2-D), R₂", "– (not in the paper)"),
        _ffjord_row(seeds, "pinwheel", "FFJORD pinwheel (2-D), R₂", "– (not in the paper)"),
        _ffjord_row(seeds, "mnist", "FFJORD reduced MNIST (14×14, 300 steps), R₂", paper_ffjord),
    ]
    head = [
        "task",
        "seeds",
        "NFE saving",
        "loss change (MNIST: accuracy)",
        "the paper",
        "Pal et al.'s rerun",
        "saving on every seed",
    ]
    return markdown(head, rows)


# ---------------------------------------------------------------------------------------------- regularizers study

LOSS = {"mnist": "test cross-entropy", "latent": "test loss (−objective)", "ffjord": "test NLL (nats)"}
QUALITY = {"mnist": ("test accuracy %", "{:.2f}"), "latent": ("test MSE ×1e-3", "{:.3f}")}


PAL_HEADER = {
    "mnist": "Pal et al.'s rerun, 160 epochs (these runs: 5): NFE / acc. / time",
    "latent": "Pal et al.'s rerun, their setup: NFE / MSE×1e-3 / time",
}


def _pal(ref, task, method):
    p = ref["pal2021"].get(task, {}).get(method)
    if not p:
        return ""
    q = f"{p['accuracy']:.2f} %" if "accuracy" in p else f"{1e3 * p['mse']:.2f}"
    return f"{p['nfe']:g} / {q} / {p['hours']:g} h"


def _paired_runs(task_summary):
    """Every row's runs by seed, and the unregularized ones."""
    rows = task_summary["rows"]
    base = {x["seed"]: x for x in next(r for r in rows if r["method"] == "none")["runs"]}
    return rows, base


def regularizers_table(task: str):
    def make(root: str) -> str:
        rows, base = _paired_runs(load(root, f"benchmarks/regularizers/{task}/summary.json"))
        ref = reference(root)
        out = []
        for r in rows:
            runs = {x["seed"]: x for x in r["runs"]}
            reg = r["method"] != "none"
            seeds = ", ".join(map(str, sorted(runs)))
            if not runs:
                seeds = (
                    f"diverged (seeds {', '.join(map(str, r['diverged']))}; steps in `benchmarks/regularizers/{task}/table.md`)"
                )
            get = lambda key, rs=runs: [rs[s][key] for s in sorted(rs)]  # noqa: E731
            pair = lambda key, fn, rs=runs: paired({s: b[key] for s, b in base.items()}, {s: x[key] for s, x in rs.items()}, fn)  # noqa: E731
            cells = [LABELS[r["method"]], f"{r['lam']:g}" if reg else "–", seeds, seeds_cell(get("nfe"), "{:.1f}")]
            cells.append(seeds_cell(pair("nfe", ratio), "{:.2f}", "×") if reg else "")
            cells += [seeds_cell(get("loss"), "{:.4g}"), seeds_cell(pair("loss", percent_change), "{:+.1f}") if reg else ""]
            if task in QUALITY:
                cells.append(seeds_cell(get("quality"), QUALITY[task][1]))
            cells += [seeds_cell(get("seconds"), "{:.0f}"), seeds_cell(pair("seconds", slower), "{:.2f}", "×") if reg else ""]
            cells += [_pal(ref, task, r["method"])] if task in PAL_HEADER else []
            out.append(cells)
        head = ["method", "λ (STEER: b)", "seeds", "test NFE", "NFE saving", LOSS[task], "Δ loss %"]
        head += [QUALITY[task][0]] if task in QUALITY else []
        head += ["training time, s", "time ratio"]
        head += [PAL_HEADER[task]] if task in PAL_HEADER else []
        return markdown(head, out)

    return make


def regularizers_overview(root: str) -> str:
    tasks = ("mnist", "latent", "ffjord")
    cells: dict = {}
    for task in tasks:
        rows, base = _paired_runs(load(root, f"benchmarks/regularizers/{task}/summary.json"))
        for r in rows:
            if r["method"] == "none":
                continue
            runs = {x["seed"]: x for x in r["runs"]}
            if not runs:
                text = f"diverged (λ {r['lam']:g}, seeds {', '.join(map(str, r['diverged']))})"
            else:
                s = paired({k: b["nfe"] for k, b in base.items()}, {k: x["nfe"] for k, x in runs.items()}, ratio)
                d = paired({k: b["loss"] for k, b in base.items()}, {k: x["loss"] for k, x in runs.items()}, percent_change)
                text = f"{np.mean(s):.2f}× / {np.mean(d):+.1f} % (λ {r['lam']:g})"
            key = (r["method"], task)
            cells[key] = cells[key] + "; " + text if key in cells else text
    out = [[LABELS[m]] + [cells.get((m, t), "–") for t in tasks] for m in LABELS if m != "none"]
    head = ["method (2 seeds each)"] + [f"{t}: NFE saving / Δ test loss (λ)" for t in tasks]
    return markdown(head, out)


def calibration(root: str) -> str:
    cal = load(root, "benchmarks/regularizers/calibration.json")
    out = []
    for task, c in cal.items():
        v, lam = c["values"], c["lam"]
        out.append(
            [task, f"`{c['run']}`"]
            + [f"{v[m]:.3g}" for m in ("taynode", "rnode", "ernode", "srnode")]
            + [
                " / ".join(
                    f"{lam[m]:.3g}" if lam[m] < 1000 else f"{lam[m]:.0f}" for m in ("taynode", "rnode", "ernode", "srnode")
                )
            ]
        )
    head = [
        "task",
        "unregularized run (seed 0)",
        "R_TayNODE",
        "𝒦 + ℬ",
        "ERNODE",
        "SRNODE",
        "λ: TayNODE / RNODE / ERNODE / SRNODE",
    ]
    return markdown(head, out)


# ---------------------------------------------------------------------------------------------- data parallel


def data_parallel(rel: str):
    def make(root: str) -> str:
        out = []
        for entry in load(root, rel):
            for r in entry["rows"]:
                nfe = np.asarray(r["nfe"], dtype=float)  # (steps, shards)
                spread = float(np.mean(nfe.max(axis=1) / nfe.mean(axis=1)))
                out.append(
                    [
                        str(entry["devices"]),
                        r["mode"],
                        str(entry["batch"]),
                        f"{r['step_ms']:.0f}",
                        f"{r['compile_s']:.1f}",
                        f"{nfe.min():.0f}–{nfe.max():.0f}",
                        f"{spread:.3f}",
                        f"{r['collectives']['total']} / {r['collectives']['in_loops']}",
                    ]
                )
        head = [
            "devices",
            "mode",
            "batch",
            "step ms",
            "compile s",
            "NFE per shard",
            "spread (max/mean)",
            "collectives: all / in loops",
        ]
        return markdown(head, out)

    return make


# ---------------------------------------------------------------------------------------------- λ by a target

TARGET_PROBLEMS = {"toy": "Fig. 1 toy", "ffjord": "FFJORD 8gaussians"}


def lambda_target(root: str) -> str:
    """``benchmarks/lambda_target.py``'s runs: where λ and the held-out quantity land, per start λ0."""
    out = []
    for r in load(root, "benchmarks/results/lambda_target.json")["runs"]:
        steps = f"{r['steps']}" + (f", warm-up {r['warmup']}" if r["warmup"] else "")
        cells = [f"{TARGET_PROBLEMS[r['problem']]}, R₂ → {r['target']:g}", f"{r['lam0']:g}", steps]
        cells += [f"{r['lam_min']:.3g}", f"{r['lam_final']:.3g}"]
        cells += [f"{r['heldout']:.4g} ({100 * (r['heldout'] / r['target'] - 1):+.0f} %)", f"{r['cpu_s']:.0f}"]
        out.append(cells)
    head = ["problem, target", "λ0", "steps", "lowest λ", "final λ", "held-out R₂ (vs target)", "CPU s"]
    return markdown(head, out)


# ---------------------------------------------------------------------------------------------- compilation cache


def compile_cache(rel: str):
    """One row per round of benchmarks/compile_cache.py (cold, then warm), and the median ratio."""

    def make(root: str) -> str:
        run = load(root, rel)
        rounds = run["rounds"]
        rows, wall, cpu = [], [], []
        for i, r in enumerate(rounds, 1):
            c, w = r["cold"], r["warm"]
            wall.append(c["wall_s"] / w["wall_s"])
            cpu.append(c["cpu_s"] / w["cpu_s"])
            rows.append(
                [str(i)]
                + [f"{x:.1f}" for x in (c["wall_s"], w["wall_s"])]
                + [f"{wall[-1]:.2f}x"]
                + [f"{x:.1f}" for x in (c["cpu_s"], w["cpu_s"])]
                + [f"{cpu[-1]:.2f}x"]
            )
        if len(rounds) > 1:
            rows.append(["median", "", "", f"**{np.median(wall):.2f}x**", "", "", f"**{np.median(cpu):.2f}x**"])
        head = ["round", "cold wall s", "warm wall s", "cold / warm", "cold CPU s", "warm CPU s", "cold / warm"]
        load_avg = " → ".join(f"{x:g}" for x in run["load_average"])
        where = f"`{run['command']}`, {run['date']}: jax {run['jax']}, Python {run['python']}, {run['cpus']} CPUs"
        return markdown(head, rows) + f"\n{where} shared with other jobs (load average {load_avg}).\n"

    return make


TABLES_MORE = {
    "headline": headline,
    "regularizers-overview": regularizers_overview,
    "regularizers-mnist": regularizers_table("mnist"),
    "regularizers-latent": regularizers_table("latent"),
    "regularizers-ffjord": regularizers_table("ffjord"),
    "regularizers-calibration": calibration,
    "data-parallel-f32": data_parallel("benchmarks/results/data_parallel.json"),
    "data-parallel-f64": data_parallel("benchmarks/results/data_parallel_f64.json"),
    "data-parallel-trained": data_parallel("benchmarks/results/data_parallel_trained_f64.json"),
    "lambda-target": lambda_target,
    "compile-cache": compile_cache("benchmarks/results/compile_cache.json"),
    "compile-cache-default": compile_cache("benchmarks/results/compile_cache_default.json"),
}
