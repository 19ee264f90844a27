"""The comparison's outputs: the CSV, the markdown tables and the work–precision figure, all
rebuilt from the summary dict (so also from ``results.json``)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Iterable

from ..atomic import write_atomic


def write_text(path: str, text: str) -> None:
    """Write ``path`` atomically (:func:`taynode.atomic.write_atomic`)."""
    write_atomic(path, text)


COLUMNS = ("problem", "implementation", "method", "tol", "error", "nfe", "nfe_unit", "steps", "time_s", "compile_s")


def csv_text(rows: Iterable[dict]) -> str:
    """The result rows as CSV with the header :data:`COLUMNS`; a missing or ``None`` value is an empty cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def markdown(summary: dict, tols: Collection[float] | None = None) -> str:
    """The tables (one per problem), the skipped implementations with reasons, the failures and
    the Taylor cost ratios. ``tols`` restricts the rows (e.g. one tolerance for a README)."""
    rows = [r for r in summary["rows"] if tols is None or r["tol"] in tols]
    out = []
    for pname, info in summary["problems"].items():
        t1 = info["t1"]
        note = f"; {info['note']}" if info["note"] else ""
        out.append(f"**{pname}** (t ∈ [0, {t1:.4g}], state {tuple(info['z0_shape'])}{note})\n")
        out.append("| implementation | method | tol | error at t1 | NFE | steps | time (ms) | compile (s) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in [r for r in rows if r["problem"] == pname]:
            nfe = f"{r['nfe']}" + (" †" if r["nfe_unit"] != "f evals" else "")
            steps = "—" if r["steps"] is None else str(r["steps"])
            out.append(
                f"| {r['implementation']} | {r['method']} | {r['tol']:g} | {r['error']:.2e} | {nfe} | {steps} | "
                f"{r['time_s'] * 1e3:.2f} | {r['compile_s']:.2f} |"
            )
        out.append("")
    out.append(
        f"Error: max |z(t1) − reference| over the state; reference: {summary['config']['reference']}. "
        f"Time: median of {summary['config']['repeats']} solves after a warm-up one; compile: the warm-up's extra time. "
        "† Taylor solver: Taylor coefficient orders (a step of order p counts p), not f evaluations; "
        f"Taylor core method: {summary['config'].get('taylor_method', '?')!r}.\n"
    )
    cost = summary.get("taylor_cost_ratio") or {}
    if cost:
        orders = sorted({int(p) for c in cost.values() for p in c})
        out.append(
            "Measured cost of one Taylor-coefficient computation of order p (z_1 … z_p), in f evaluations "
            "(wall time inside one jitted loop, median; `taylor_cost_ratio`):\n"
        )
        out.append("| problem | " + " | ".join(f"p={p}" for p in orders) + " |")
        out.append("|---|" + "---|" * len(orders))
        for pname, c in cost.items():
            c = {int(k): v for k, v in c.items()}  # JSON turns the keys into strings
            out.append(f"| {pname} | " + " | ".join(f"{c[p]:.1f}" for p in orders) + " |")
        out.append("")
    if summary["skipped"]:
        out.append("Skipped:\n")
        out.extend(f"- {k}: {v}" for k, v in summary["skipped"].items())
        out.append("")
    if summary["failures"]:
        out.append("Failed:\n")
        out.extend(
            f"- {f['problem']} {f['implementation']} {f['method']} tol={f['tol']:g}: {f['error'][:300]}"
            for f in summary["failures"]
        )
        out.append("")
    return "\n".join(out) + "\n"


def summary_table(summary: dict, tol: float) -> str:
    """One row per implementation and method, one column per problem: error at t1 / NFE at one
    tolerance (the README's table)."""
    pnames = list(summary["problems"])
    keys = list(dict.fromkeys((r["implementation"], r["method"]) for r in summary["rows"]))
    out = [
        f"| rtol = atol = {tol:g} | " + " | ".join(f"{p}: error / NFE / ms" for p in pnames) + " |",
        "|---|" + "---|" * len(pnames),
    ]
    for key in keys:
        cells = []
        for p in pnames:
            r = next(
                (
                    r
                    for r in summary["rows"]
                    if r["problem"] == p and r["tol"] == tol and (r["implementation"], r["method"]) == key
                ),
                None,
            )
            dag = " †" if r is not None and r["nfe_unit"] != "f evals" else ""
            cells.append("—" if r is None else f"{r['error']:.1e} / {r['nfe']}{dag} / {r['time_s'] * 1e3:.2f}")
        out.append(f"| {key[0]} {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(summary: dict, path: str) -> None:
    """Write the work–precision figure to ``path``: per problem, error against NFE and against
    wall time, one line per (implementation, method) over the tolerances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pnames = list(summary["problems"])
    fig, axes = plt.subplots(len(pnames), 2, figsize=(11, 3.6 * len(pnames)), squeeze=False, layout="constrained")
    styles = {"taynode": "-", "scipy": "--", "torchdiffeq": ":", "julia": "-."}
    for i, pname in enumerate(pnames):
        rows = [r for r in summary["rows"] if r["problem"] == pname]
        for key in sorted({(r["implementation"], r["method"]) for r in rows}):
            rs = sorted([r for r in rows if (r["implementation"], r["method"]) == key], key=lambda r: r["tol"])
            err = [max(r["error"], 1e-17) for r in rs]
            label = f"{key[0]} {key[1]}" + (" (coef. orders)" if rs[0]["nfe_unit"] != "f evals" else "")
            for ax, x in zip(axes[i], ([r["nfe"] for r in rs], [r["time_s"] for r in rs])):
                ax.loglog(x, err, styles.get(key[0], "-"), marker="o", ms=3, label=label)
        axes[i, 0].set_ylabel(f"{pname}\nerror at t1")
        axes[i, 0].set_xlabel("NFE")
        axes[i, 1].set_xlabel("wall time (s, median)")
        for ax in axes[i]:
            ax.grid(True, which="major", alpha=0.3)
    axes[0, 1].legend(fontsize=7, loc="upper right", ncol=1)
    fig.suptitle("Work–precision: tolerances " + ", ".join(f"{t:g}" for t in summary["config"]["tols"]))
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
