"""Run (or continue) the MNIST headline runs of the ``full`` preset side by side, then stop.

Each run is ``taynode.studies.mnist.run(config("full", reg=…, lam=…, seed=…), OUT/<name>,
resume=True)`` in its own process, so an interrupted run continues from its last checkpoint
(atomic, every 200 steps) the next time this script starts. ``--time-limit`` ends every run
process at a deadline (SIGKILL: a checkpoint is either the old one or the new one, never torn),
so the script can be given a fixed slice of a machine::

    python benchmarks/mnist/full_runs.py --out runs/mnist-full --time-limit 3600
    python benchmarks/mnist/full_runs.py --out runs/mnist-full --runs none:0:0 r3:10000:0

A run spec is ``reg:lam:seed`` or ``reg:lam:seed:quadrature`` (``sampled``: the regularizer at one
random time per solve, ``sampled4`` at 4 stratified times; the run folder then ends in
``-sampled`` or ``-sampled4``). Finished runs
(``results.json`` present) are skipped. ``--preset small`` runs the training-cost comparison::

    python benchmarks/mnist/full_runs.py --preset small --out runs/mnist-small-cost --sequential \
        --runs none:0:0 r3:10000:0 r3:10000:0:sampled4 none:0:1 r3:10000:1 r3:10000:1:sampled4

``--sequential`` runs one at a time, so each has the machine to itself and the training times
compare (side by side, a run that finishes early frees the cores for the others).
``--taylor-method nested`` computes R_K with nested JVPs instead of the default incremental mode
(the same values to 1e-10, ``tests/test_mnist_classifier.py``), for a JAX whose jaxpr internals
the incremental interpreter does not support yet.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import sys
import time

DEFAULT_RUNS = ["none:0:0", "none:0:1", "r3:10000:0", "r3:10000:1"]


def parse(spec: str) -> tuple[str, float, int, str]:
    """``reg:lam:seed[:quadrature]``; quadrature ``integrated`` (default), ``sampled`` or ``sampled<M>``."""
    reg, lam, seed, *quad = spec.split(":")
    return reg, float(lam), int(seed), (quad or ["integrated"])[0]


def quadrature(q: str) -> dict:
    """``sampled4`` → quadrature="sampled", samples=4."""
    if q.startswith("sampled"):
        return dict(quadrature="sampled", samples=int(q[7:] or 1))
    return dict(quadrature=q)


def run_name(reg: str, lam: float, seed: int, quadrature: str = "integrated") -> str:
    return f"{reg}-lam{lam:g}-seed{seed}" + ("" if quadrature == "integrated" else f"-{quadrature}")


def _one(spec: str, out: str, preset: str, taylor_method: str | None, log: str) -> None:
    sys.stdout = sys.stderr = open(log, "a", buffering=1)
    import jax

    jax.config.update("jax_enable_x64", True)
    from taynode.studies import mnist

    if taylor_method:
        mnist.parse_regularizers = functools.partial(mnist.parse_regularizers, taylor_method=taylor_method)
    reg, lam, seed, quad = parse(spec)
    cfg = mnist.config(preset, reg=reg, lam=lam, seed=seed, **quadrature(quad))
    mnist.run(cfg, os.path.join(out, run_name(reg, lam, seed, quad)), resume=True, progress=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/mnist-full")
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="reg:lam:seed specs (default: %(default)s)")
    p.add_argument("--preset", default="full")
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which every run is stopped")
    p.add_argument("--taylor-method", default=None, help="incremental (default), nested or jet")
    p.add_argument("--sequential", action="store_true", help="one run at a time (fair training times), not side by side")
    ns = p.parse_args(argv)
    os.makedirs(ns.out, exist_ok=True)
    todo = []
    for spec in ns.runs:
        name = run_name(*parse(spec))
        if os.path.exists(os.path.join(ns.out, name, "results.json")):
            print(f"{name}: finished", flush=True)
            continue
        todo.append((spec, os.path.join(ns.out, f"{name}.out")))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_one, args=(spec, ns.out, ns.preset, ns.taylor_method, log)) for spec, log in todo]
    deadline = None if ns.time_limit is None else time.monotonic() + ns.time_limit
    # side by side, or one after another (each run then has the machine to itself: fair training times)
    for group in ([[pr] for pr in procs] if ns.sequential else [procs]):
        for pr in group:
            pr.start()
        while any(pr.is_alive() for pr in group):
            if deadline is not None and time.monotonic() > deadline:
                for pr in group:
                    if pr.is_alive():
                        pr.kill()
                break
            time.sleep(1)
        for pr in group:
            pr.join()
        if deadline is not None and time.monotonic() > deadline:
            print(f"time limit of {ns.time_limit:g} s reached; runs stopped, continue with the same command", flush=True)
            break
    failed = [spec for (spec, _), pr in zip(todo, procs) if pr.exitcode not in (0, -9, None)]
    for spec in failed:
        print(f"{spec}: failed (see its .out file)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
