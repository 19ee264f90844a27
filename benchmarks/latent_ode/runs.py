"""Run (or continue) Latent ODE runs on PhysioNet side by side, then stop; one folder per run.

Each spec ``reg:lam:seed[:quadrature]`` (:mod:`taynode.studies.batch`; ``none:0:0`` is the
unregularized model) trains one Latent ODE of the chosen preset with
:func:`taynode.studies.latent.train_one`, logging the loss and per-sample NFE of the first
``--epoch-eval-records`` test records after every epoch, then evaluates it on the whole test
split (:func:`taynode.studies.latent.evaluate`) and writes ``results.json``. Killed runs resume
from their last checkpoint (every epoch) with the same command::

    python benchmarks/latent_ode/runs.py --out runs/latent-long --preset cpu --epochs 240 \
        --runs none:0:0 r3:1:0:sampled4 --time-limit 3600

The table and the per-epoch curves: ``benchmarks/latent_ode/table.py``.
"""

from __future__ import annotations

import argparse
import sys


def _one(spec, run_dir, preset, overrides, root):
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 evaluation; training arrays are explicitly typed
    from taynode.studies import latent

    reg = "r3" if spec.reg == "none" else spec.reg
    cfg = latent.preset(
        preset,
        reg=reg,
        lam=spec.lam if spec.lam > 0 else 1.0,
        seed=spec.seed,
        **overrides,
        **(spec.quadrature_kwargs() if spec.lam > 0 else {}),
    )
    latent.run_one(cfg, spec.lam, run_dir, root=root)


def _fields(pairs) -> dict:
    """``["batch=4", "lr=0.1"]`` → typed overrides of :class:`~taynode.studies.latent.LatentConfig` fields."""
    from dataclasses import fields

    from taynode.studies.latent import LatentConfig

    types = {f.name: type(f.default) for f in fields(LatentConfig)}
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in types or types[name] not in (int, float, str):
            raise SystemExit(f"--set {pair!r}: expected FIELD=VALUE with FIELD a number or text field of LatentConfig")
        out[name] = types[name](value)
    return out


def main(argv=None) -> int:
    from taynode.studies.batch import parse_spec, run_all

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/latent-long")
    p.add_argument("--runs", nargs="+", required=True, help="reg:lam:seed[:quadrature] specs; none:0:<seed> is unregularized")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--epoch-eval-records", type=int, default=100, help="test records evaluated after each epoch (default 100)")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", help="other LatentConfig overrides, e.g. batch=4")
    p.add_argument("--data", default=None, help="PhysioNet folder (default: the package's search path)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which every run is stopped")
    p.add_argument("--sequential", action="store_true", help="one run at a time (fair training times)")
    p.add_argument("--in-process", action="store_true", help="run here, one after another (for a debugger; no --time-limit)")
    ns = p.parse_args(argv)
    overrides = {"epoch_eval_records": ns.epoch_eval_records} | ({"epochs": ns.epochs} if ns.epochs else {}) | _fields(ns.set)
    failed = run_all(
        _one,
        [parse_spec(s) for s in ns.runs],
        ns.out,
        args=(ns.preset, overrides, ns.data),
        time_limit=ns.time_limit,
        sequential=ns.sequential,
        in_process=ns.in_process,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
