"""Cell formatting and file loading shared by the table generators (the paired-by-seed convention)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np


def seeds_cell(values, fmt: str, unit: str = "") -> str:
    """``mean (seed values)`` for several seeds, the value alone for one, "" for none."""
    if len(values) == 0:
        return ""
    if len(values) == 1:
        return fmt.format(values[0]) + unit
    return f"{fmt.format(float(np.mean(values)))}{unit} ({', '.join(fmt.format(v) for v in values)})"


def paired(base: dict, runs: dict, fn: Callable[[float, float], float]) -> list[float]:
    """``fn(unregularized, regularized)`` for every seed present in both, in seed order."""
    return [float(fn(base[s], runs[s])) for s in sorted(runs) if s in base]


def ratio(b, x):
    return b / x


def slower(b, x):
    """A time ratio: the regularized run's time over the unregularized one's (> 1: slower)."""
    return x / b


def percent_change(b, x):
    return 100 * (x - b) / abs(b)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def load(root: str, rel: str):
    with open(os.path.join(root, rel), encoding="utf-8") as fh:
        return json.load(fh)


def reference(root: str) -> dict:
    return load(root, "benchmarks/reference.json")


def label(reg: str, lam: float, quad: str) -> str:
    if reg == "none":
        return "unregularized"
    name = {"r2": "R₂", "r3": "R₃"}.get(reg, reg.upper())
    quad = {"sampled4": "sampled, M = 4", "integrated": ""}.get(quad, quad)
    return f"{name}, λ = {lam:g}" + (f" ({quad})" if quad else "")


def by_seed(row: dict, key: str) -> dict:
    """``{seed: value}`` of one summary row (an empty row, ``{}``, has no seeds)."""
    return dict(zip(row.get("seeds", []), row.get(key, [])))
