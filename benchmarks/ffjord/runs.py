"""Run (or continue) the FFJORD Table 2 runs at CPU scale (issue #27), one folder per run, in order.

A run is ``task/training/spec``: ``task`` an FFJORD preset (``digits``, ``mnist-long``),
``training`` ``adaptive`` (dopri5) or ``rk4-<N>`` (a fixed grid of N rk4 steps), ``spec``
``reg:lam:seed[:quadrature]`` (:mod:`taynode.studies.batch`; ``none:0:<seed>`` is the
unregularized model). Its folder is ``<out>/<task>/<training>/<spec name>``; a run with a
``results.json`` there is finished and skipped, an unfinished one continues bit-exactly from its
last checkpoint (the shared loop checkpoints every ``checkpoint_every`` steps, with the optimizer
state, and draws every step's batch and noise from the step number). Runs go one after another
in the order given (:data:`PLANS` for ``--plan``), each in its own process::

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        nice -n 19 python benchmarks/ffjord/runs.py --out runs/ffjord-scale --plan digits

The table, curves and figures: ``benchmarks/ffjord/scale_table.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

from taynode.studies.batch import Spec, parse_spec, run_all
from taynode.studies.ffjord import PRESETS

SEEDS = (0, 1, 2)


def _triple(task: str, training: str, seed: int) -> list[str]:
    """Unregularized, RNODE and TayNODE (R₂) at the preset's λ (the spec names carry them)."""
    c = PRESETS[task]
    return [
        f"{task}/{training}/none:0:{seed}",
        f"{task}/{training}/rnode:{c.lam_rnode:g}:{seed}",
        f"{task}/{training}/r2:{c.lam_r2:g}:{seed}",
    ]


def plan(task: str) -> list[str]:
    """The order that gives useful partial results first: the adaptive seed-0 triple, TayNODE at
    3× the preset's λ (seed 0: where the trade-off lies, λ being untuned) and with the sampled
    quadrature (seed 0: does it hold the integrated one's result?), the fixed-grid seed-0 triples
    (rk4 on 5, 6, 8 steps), then the adaptive triples of seeds 1 and 2."""
    lam = PRESETS[task].lam_r2
    items = _triple(task, "adaptive", 0) + [f"{task}/adaptive/r2:{3 * lam:g}:0", f"{task}/adaptive/r2:{lam:g}:0:sampled"]
    for n in (5, 6, 8):
        items += _triple(task, f"rk4-{n}", 0)
    for seed in SEEDS[1:]:
        items += _triple(task, "adaptive", seed)
    return items


PLANS = {"digits": plan("digits"), "mnist-long": plan("mnist-long"), "all": plan("digits") + plan("mnist-long")}


def parse_item(text: str) -> tuple[str, str, Spec]:
    """``task/training/spec`` → ``(task, training, Spec)``."""
    parts = text.split("/")
    if len(parts) != 3 or not (parts[1] == "adaptive" or (parts[1].startswith("rk4-") and parts[1][4:].isdigit())):
        raise ValueError(
            f"run {text!r}: expected task/training/spec with training 'adaptive' or 'rk4-<N>', e.g. digits/rk4-5/none:0:0"
        )
    return parts[0], parts[1], parse_spec(parts[2])


def train_steps(training: str) -> int | None:
    """``adaptive`` → None; ``rk4-<N>`` → N."""
    return None if training == "adaptive" else int(training[4:])


def _one(spec, run_dir, task, training, overrides):
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 evaluation; training arrays are explicitly typed
    from taynode.studies import ffjord

    lam = {"rnode": dict(lam_rnode=spec.lam), "r2": dict(lam_r2=spec.lam)}.get(spec.reg, {})
    quad = spec.quadrature_kwargs() if spec.reg != "none" else {}
    cfg = ffjord.preset(task, seed=spec.seed, fixed_steps=(), **lam, **quad, **overrides)
    ffjord.run_one(cfg, spec.reg, spec.lam, run_dir, train_steps=train_steps(training))


def _fields(pairs) -> dict:
    """``["iters=200"]`` → typed overrides of :class:`~taynode.studies.ffjord.FFJORDConfig` fields."""
    from dataclasses import fields

    from taynode.studies.ffjord import FFJORDConfig

    types = {f.name: type(f.default) for f in fields(FFJORDConfig)}
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in types or types[name] not in (int, float, str):
            raise SystemExit(f"--set {pair!r}: expected FIELD=VALUE with FIELD a number or text field of FFJORDConfig")
        out[name] = types[name](value)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ffjord-scale")
    p.add_argument("--plan", choices=sorted(PLANS), help="a run order of this script (see plan())")
    p.add_argument("--runs", nargs="+", default=[], help="task/training/spec items, after the plan's")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="FIELD=VALUE", help="FFJORDConfig overrides for every run (e.g. iters=50)"
    )
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which the run going is stopped (it resumes)")
    p.add_argument("--in-process", action="store_true", help="run here, one after another (for a debugger)")
    p.add_argument("--dry-run", action="store_true", help="print the runs in order and stop")
    ns = p.parse_args(argv)
    items = [parse_item(s) for s in (PLANS[ns.plan] if ns.plan else []) + ns.runs]
    if not items:
        p.error("give --plan or --runs")
    if ns.dry_run:
        for task, training, spec in items:
            print(f"{ns.out}/{task}/{training}/{spec.name}")
        return 0
    overrides, failed, start = _fields(ns.set), [], time.monotonic()
    for task, training, spec in items:
        left = None if ns.time_limit is None else ns.time_limit - (time.monotonic() - start)
        if left is not None and left <= 0:
            print("time limit reached; continue with the same command", flush=True)
            break
        failed += run_all(
            _one,
            [spec],
            f"{ns.out}/{task}/{training}",
            args=(task, training, overrides),
            time_limit=left,
            sequential=True,
            in_process=ns.in_process,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
