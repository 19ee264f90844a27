"""The MNIST figure studies' condensed tables (Fig. 6: each solver's own NFE per regularizer), from ``figN.json``."""

from __future__ import annotations

from .fmt import load, markdown

SOLVERS = ("heun", "bosh3", "dopri5")


def fig6(root: str) -> str:
    """NFE per image of each training solver at tol 1e-6 (``solver_nfe``) and of the Taylor solver
    evaluating the dopri5-trained model (``taylor_nfe``), one row per regularizer and λ."""
    rows = load(root, "benchmarks/mnist/fig6.json")["rows"]
    keys = sorted({(r["reg"], r["lam"]) for r in rows}, key=lambda k: (k[0] != "none", k))
    cell = {(r["reg"], r["lam"], r["solver"]): r for r in rows}
    out = []
    for reg, lam in keys:
        name = "unregularized" if reg == "none" else f"R{reg[1:]}, λ = {lam:g}"
        line = [name]
        for s in SOLVERS:
            r = cell.get((reg, lam, s))
            line.append("" if r is None else f"{r['solver_nfe']:.1f}" if r["status"] == "ok" else "diverged")
        d = cell.get((reg, lam, "dopri5"))
        line.append(f"{d['taylor_nfe']:.1f}" if d and d["status"] == "ok" and d.get("taylor_nfe") is not None else "–")
        out.append(line)
    head = [
        "regularizer",
        "heun (order 2)",
        "bosh3 (order 3)",
        "dopri5 (order 5)",
        "taylor-adaptive (dopri5-trained; Taylor orders)",
    ]
    return markdown(head, out)


def toy(root: str) -> str:
    """``taynode demo``'s ``results.json``: per model the training MSE, dopri5 NFE (steps) at 1.4e-8 and R_K."""
    res = load(root, "benchmarks/toy/results.json")
    k = res["config"]["order"]
    out = [
        [name, f"{r['mse']:.2g}", f"{r['nfe']} ({r['steps']})", f"{r['rejected']}", f"{r['R']:.2g}"]
        for name, r in res["results"].items()
    ]
    return markdown(["model", "train MSE", "dopri5 NFE (steps)", "rejected steps", f"R{k}"], out)
