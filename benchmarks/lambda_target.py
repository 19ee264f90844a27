"""λ set by a target (``taynode.train.LambdaTarget``): where λ and the held-out quantity land.

The acceptance runs of ``tests/test_target.py`` (which imports ``toy`` and ``ffjord`` from here and
asserts the ±25 % band), and three variants of the toy that ``docs/lambda-target.md`` discusses (400
steps instead of 600, and a 200-step warm-up), each from several starting λ0. One JSON file holds
every run (``benchmarks/tables.py`` writes the docs' table from it)::

    python benchmarks/lambda_target.py --out benchmarks/results/lambda_target.json   # minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from taynode import solve
from taynode.data import toy2d
from taynode.models import MLPDynamics
from taynode.models.cnf import CNF
from taynode.regularizers import RK
from taynode.train import LambdaTarget, ShuffledBatches, read_log, train

TOY_TARGET, FFJORD_TARGET = 0.01, 0.03


def _summary(run_dir, problem, target, lam0, steps, warmup, heldout) -> dict:
    """What the docs report of one run: λ's path (start, lowest, end) and the measured values."""
    lams = [r["lam"] for r in read_log(run_dir, "target")]
    train_r2 = [(r["R2"], r["step"]) for r in read_log(run_dir, "step")]
    low, low_step = min(train_r2)
    run = dict(problem=problem, target=target, lam0=lam0, steps=steps, warmup=warmup, updates=len(lams))
    return run | dict(lam_min=min(lams), lam_final=lams[-1], heldout=heldout, train_R2_min=low, train_R2_min_step=low_step)


def toy(run_dir, lam0: float, steps: int = 600, warmup: int = 0) -> dict:
    """The Fig. 1 toy (z(1) = z(0) + z(0)³, 1+1 → 16 → 16 → 1 tanh, dopri5 at 1e-5, float64, Adam with
    a cosine learning rate) with target R₂ = 0.01, λ updated every 20 steps; ``heldout``: R₂ on 200
    evenly spaced points, solved at 1e-8."""

    def loss_fn(model, z0, key, lam):
        sol = solve(model, z0, (0.0, 1.0), rtol=1e-5, atol=1e-5, regularizers=[RK(2)])
        mse, r2 = jnp.mean((sol.z1 - (z0 + z0**3)) ** 2), jnp.mean(sol.integrals["R2"])
        return mse + lam * r2, {"mse": mse, "R2": r2}

    model = MLPDynamics((1, 16, 16, 1), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    batches = lambda step: jnp.asarray(np.random.default_rng(step).uniform(-1, 1, (32, 1)))  # noqa: E731
    res = train(
        model,
        optax.adam(optax.cosine_decay_schedule(1e-2, steps, 0.1)),
        loss_fn,
        batches,
        run_dir,
        steps=steps,
        progress=False,
        target=LambdaTarget("R2", TOY_TARGET, lam0, warmup=warmup, dtype=np.float64),
    )
    z = jnp.linspace(-1.0, 1.0, 200, dtype=jnp.float64)[:, None]  # held out: not the training draws
    r2 = float(jnp.mean(solve(res.model, z, (0.0, 1.0), rtol=1e-8, atol=1e-8, regularizers=[RK(2)]).integrals["R2"]))
    return _summary(res.run_dir, "toy", TOY_TARGET, lam0, steps, warmup, r2)


def ffjord(run_dir, lam0: float) -> dict:
    """FFJORD on 8gaussians (2 → 32 → 32 → 2 tanh, Hutchinson, dopri5 at 1e-4, float32, 300 steps of
    batch 128) with target R₂ = 0.03, λ updated every 10 steps; ``heldout``: R₂ on 512 held-out points
    at 1e-6."""
    x = toy2d.sample("8gaussians", 4096, seed=0).astype(np.float32)
    cnf = CNF(MLPDynamics((2, 32, 32, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float32))

    def loss_fn(cnf, xb, key, lam):
        r = cnf.forward(xb, key=key, regularizers=(RK(2),), rtol=1e-4, atol=1e-4)
        nll, r2 = jnp.mean(-r.log_prob), jnp.mean(r.integrals["R2"])
        return nll + lam * r2, {"nll": nll, "R2": r2, "nfe": r.stats["nfe"]}

    steps = 300
    res = train(
        cnf,
        optax.adam(optax.cosine_decay_schedule(1e-2, steps, 0.1)),
        loss_fn,
        ShuffledBatches(x, 128, seed=0),
        run_dir,
        steps=steps,
        progress=False,
        target=LambdaTarget("R2", FFJORD_TARGET, lam0, every=10, dtype=np.float32),
    )
    xt = jnp.asarray(toy2d.sample("8gaussians", 512, seed=1), jnp.float32)
    r = res.model.forward(xt, key=jax.random.PRNGKey(5), regularizers=(RK(2),), rtol=1e-6, atol=1e-6)
    return _summary(res.run_dir, "ffjord", FFJORD_TARGET, lam0, steps, 0, float(jnp.mean(r.integrals["R2"])))


# (problem, λ0, steps, warm-up): the tests' acceptance runs first, then the toy's variants
RUNS = [("toy", lam0, 600, 0) for lam0 in (0.025, 0.25, 2.5)]
RUNS += [("ffjord", lam0, 300, 0) for lam0 in (0.5, 5.0, 50.0)]
RUNS += [("toy", 0.012, 400, 0)] + [("toy", lam0, 600, 200) for lam0 in (0.025, 0.25, 2.5)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/lambda_target.json")
    p.add_argument("--only", choices=["toy", "ffjord"], help="one problem's runs")
    ns = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (problem, lam0, steps, warmup) in enumerate(RUNS):
            if ns.only and problem != ns.only:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            run_dir = os.path.join(tmp, f"run{i}")
            row = toy(run_dir, lam0, steps, warmup) if problem == "toy" else ffjord(run_dir, lam0)
            row |= dict(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)
            print(json.dumps(row), flush=True)
            rows.append(row)
    info = dict(command="python " + " ".join(["benchmarks/lambda_target.py", *sys.argv[1:]]), jax=jax.__version__)
    with open(ns.out, "w", encoding="utf-8") as fh:
        json.dump(dict(info, runs=rows), fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # the toy is float64 (FFJORD sets float32 explicitly)
    sys.exit(main())
