"""Data-parallel training step on the MNIST classifier: one global adaptive solve vs one per shard.

    python benchmarks/data_parallel.py                 # 1, 2 and 4 forced CPU devices, a few minutes on 2 cores
    python benchmarks/data_parallel.py --devices 2 4 8 --batch 128 --steps 5
    python benchmarks/data_parallel.py --dtype float64 --tol 1.4e-8 --checkpoint runs/mnist-full/none-lam0-seed0/checkpoint.npz

For each device count N a fresh subprocess starts JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` and builds the training step of
:func:`taynode.train.train` for the paper's classifier (784 → 100 → 784 sigmoid MLP dynamics,
dopri5, float32, rtol = atol = 1e-5: the ``small`` preset) in both modes of
:mod:`taynode.train.parallel`:

* ``global``: ``jit`` with the batch sharded; one step-size sequence for the whole batch;
* ``per-shard``: ``shard_map``; each shard its own adaptive solve; gradients ``pmean``-ed.

It prints a markdown table with, per mode: the median wall time of a step (after compilation),
the NFE of each shard's forward solve (the global mode's solve is one number for every shard),
the spread max/mean of the per-shard NFE (the straggler factor: the slowest shard sets the
pace), and the cross-device collectives in the compiled step (``compile().as_text()``: all
of them, and those inside a while loop, which run once per solver step).

The forced devices of one process share this machine's cores, so the wall times measure
overhead and collectives, not speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def collectives(hlo: str) -> dict:
    """Counts of collective ops in an HLO module's text: in all, and inside while loops
    (bodies and conditions, and everything they call)."""
    comps, name = {}, None
    for line in hlo.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if m and not line.startswith(" "):
            name = m.group(1)
            comps[name] = []
        elif name is not None:
            comps[name].append(line)
    calls = {
        c: set(
            re.findall(
                r"(?:body|condition|to_apply|calls|branch_computations|true_computation|false_computation)=\{?%?([\w.\-, %]+)\}?",
                "\n".join(ls),
            )
        )
        for c, ls in comps.items()
    }
    calls = {c: {n.strip().lstrip("%") for grp in v for n in grp.split(",")} for c, v in calls.items()}
    looped = set()
    for ls in comps.values():
        for ln in ls:
            for n in re.findall(r"(?:body|condition)=%?([\w.\-]+)", ln):
                looped.add(n)
    stack = list(looped)
    while stack:
        c = stack.pop()
        for n in calls.get(c, ()):
            if n not in looped:
                looped.add(n)
                stack.append(n)

    def count(lines):
        return sum(len(re.findall(rf"\b{op}(?:-start)?\(", ln)) for ln in lines for op in COLLECTIVES)

    total = sum(count(ls) for ls in comps.values())
    in_loops = sum(count(ls) for c, ls in comps.items() if c in looped)
    return dict(total=total, in_loops=in_loops)


WORKER = textwrap.dedent(
    r"""
    import json, os, sys, time
    n, batch, steps, tol, dtype = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[6]
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    import jax, jax.numpy as jnp, numpy as np, optax, equinox as eqx
    jax.config.update("jax_enable_x64", dtype == "float64")
    npdt, jdt = (np.float64, jnp.float64) if dtype == "float64" else (np.float32, jnp.float32)
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[5])))
    from data_parallel import collectives
    from taynode.models.classifier import ODEClassifier, classifier_loss
    from taynode.train.parallel import DataParallel
    from taynode.data import mnist as mnist_data

    try:
        d = mnist_data.load()
        x = mnist_data.as_float(d.x_train[: batch * steps], npdt); y = d.y_train[: batch * steps].astype(np.int32)
        source = "MNIST"
    except Exception as e:  # no data here: random images, said so in the table
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(batch * steps, 784)).astype(npdt); y = rng.integers(0, 10, batch * steps).astype(np.int32)
        source = f"random images ({type(e).__name__})"
    model = ODEClassifier(key=jax.random.PRNGKey(0), dtype=jnp.float32)
    if len(sys.argv) > 7 and sys.argv[7]:  # trained parameters (a float32 MNIST checkpoint)
        from taynode.train import load_checkpoint
        model, _, _ = load_checkpoint(sys.argv[7], model)
        source += ", trained parameters"
    model = jax.tree_util.tree_map(lambda a: a.astype(jdt) if eqx.is_inexact_array(a) else a, model)
    opt = optax.sgd(0.1, momentum=0.9)
    kw = dict(rtol=tol, atol=tol, solver="dopri5", max_steps=4096)
    def loss_fn(m, b, k):
        return classifier_loss(m, b[0], b[1], key=k, **kw)
    nfe_fn = eqx.filter_jit(lambda m, xb: m.flow(xb, **kw).stats["nfe"])
    out = dict(devices=n, batch=batch, source=source, rows=[])
    for mode in ("global", "per-shard"):
        dp = DataParallel(n, mode)
        step = dp.step(loss_fn, opt)
        mdl, ost = dp.replicate((model, opt.init(eqx.filter(model, eqx.is_inexact_array))))
        key = dp.replicate(jax.random.PRNGKey(0))
        b0 = dp.put_batch((x[:batch], y[:batch]))
        t0 = time.perf_counter()
        hlo = step.lower(mdl, ost, b0, key).compile().compiled.as_text()
        compile_s = time.perf_counter() - t0
        times, nfes = [], []
        m_, o_ = mdl, ost
        for s in range(steps + 1):
            xb, yb = x[s * batch % len(x):][:batch], y[s * batch % len(y):][:batch]
            t0 = time.perf_counter()
            m2, o2, loss, aux, fin, _ = step(m_, o_, dp.put_batch((xb, yb)), key)
            float(loss)
            if s:
                times.append(time.perf_counter() - t0)
            # forward NFE of each shard's rows (per-shard mode) or of the whole batch (global)
            m1 = dp.local_copy(m_)
            if mode == "global":
                nfes.append([int(nfe_fn(m1, xb))] * n)
            else:
                nfes.append([int(nfe_fn(m1, xs)) for xs in np.split(xb, n)])
            m_, o_ = m2, o2
        out["rows"].append(dict(mode=mode, step_ms=1e3 * float(np.median(times)), compile_s=compile_s, nfe=nfes,
                                collectives=collectives(hlo)))
    print("RESULT " + json.dumps(out))
    """
)


def run_one(n: int, batch: int, steps: int, tol: float, dtype: str = "float32", checkpoint: str = "") -> dict:
    here = os.path.abspath(__file__)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-c", WORKER, str(n), str(batch), str(steps), str(tol), here, dtype, checkpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not line:
        raise RuntimeError(f"the {n}-device run failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(line[0][len("RESULT ") :])


def table(results: list[dict]) -> str:
    import numpy as np

    out = [
        "| devices | mode | step ms (median) | NFE per shard, each step | straggler: mean over steps of max/mean NFE | collectives in compiled step: all / in while loops |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["rows"]:
            nfe = np.array(r["nfe"], float)
            spread = float(np.mean(nfe.max(1) / nfe.mean(1)))
            shown = "; ".join("/".join(str(int(v)) for v in row) for row in nfe)
            c = r["collectives"]
            out.append(
                f"| {res['devices']} | {r['mode']} | {r['step_ms']:.0f} | {shown} | {spread:.3f} | {c['total']} / {c['in_loops']} |"
            )
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--batch", type=int, default=128, help="global batch (divisible by every device count)")
    p.add_argument("--steps", type=int, default=4, help="timed steps after the first")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument(
        "--checkpoint",
        default="",
        help="an MNIST run's checkpoint.npz: measure at trained parameters (e.g. runs/mnist-full/none-lam0-seed0/checkpoint.npz)",
    )
    a = p.parse_args(argv)
    results = [
        run_one(n, a.batch, a.steps, a.tol, a.dtype, os.path.abspath(a.checkpoint) if a.checkpoint else "") for n in a.devices
    ]
    print(
        f"MNIST classifier (784-100-784 sigmoid, dopri5, {a.dtype}, tol {a.tol:g}), global batch {a.batch}, data: {results[0]['source']}\n"
    )
    print(table(results))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
