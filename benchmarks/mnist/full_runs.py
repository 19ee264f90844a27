"""Run (or continue) the MNIST headline runs of the ``full`` preset side by side, then stop.

Each run is ``taynode.studies.mnist.run(config("full", reg=…, lam=…, seed=…), OUT/<name>,
resume=True)`` in its own process, so an interrupted run continues from its last checkpoint
(atomic, every 200 steps) the next time this script starts. ``--time-limit`` ends every run
process at a deadline (SIGKILL: a checkpoint is either the old one or the new one, never torn),
so the script can be given a fixed slice of a machine::

    python benchmarks/mnist/full_runs.py --out runs/mnist-full --time-limit 3600
    python benchmarks/mnist/full_runs.py --out runs/mnist-full --runs none:0:0 r3:10000:0

A run spec (:mod:`taynode.studies.batch`) is ``reg:lam:seed`` or ``reg:lam:seed:quadrature`` (``sampled``: the regularizer at one
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
import sys

DEFAULT_RUNS = ["none:0:0", "none:0:1", "r3:10000:0", "r3:10000:1"]


def _one(spec, run_dir, preset: str, taylor_method: str | None) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from taynode.studies import mnist

    if taylor_method:
        mnist.parse_regularizers = functools.partial(mnist.parse_regularizers, taylor_method=taylor_method)
    cfg = mnist.config(preset, reg=spec.reg, lam=spec.lam, seed=spec.seed, **spec.quadrature_kwargs())
    mnist.run(cfg, run_dir, resume=True, progress=False)


def main(argv=None) -> int:
    from taynode.studies.batch import parse_spec, run_all

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/mnist-full")
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="reg:lam:seed specs (default: %(default)s)")
    p.add_argument("--preset", default="full")
    p.add_argument("--time-limit", type=float, default=None, help="seconds after which every run is stopped")
    p.add_argument("--taylor-method", default=None, help="incremental (default), nested or jet")
    p.add_argument("--sequential", action="store_true", help="one run at a time (fair training times), not side by side")
    ns = p.parse_args(argv)
    failed = run_all(
        _one,
        [parse_spec(s) for s in ns.runs],
        ns.out,
        args=(ns.preset, ns.taylor_method),
        time_limit=ns.time_limit,
        sequential=ns.sequential,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
