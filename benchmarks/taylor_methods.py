"""Forward and parameter-gradient cost of the K-th total derivative, per Taylor method.

    python benchmarks/taylor_methods.py                       # both models, K = 1…8
    python benchmarks/taylor_methods.py --model mlp --orders 1-6 --repeats 20

Models (float32, as trained):
  mlp   the MNIST dynamics of the paper: 784 → 100 → 784, tanh, time concatenated, batch 128
  conv  FFJORD-MNIST-like: 3×3 convolutions 1 → 64 → 64 → 1 channels on 28×28, softplus,
        time as an extra channel (batch 16 by default: batch 128 at K = 8 does not fit a
        2-core CPU's time budget; set --conv-batch 128 on bigger machines)

For each K and method: the jit-compiled (with --eager: op-by-op) forward dᴷz/dtᴷ and the
gradient of Σ(dᴷz/dtᴷ)² with respect to the parameters. Times are medians over repeats taken
round-robin across methods (so drifting machine load hits every method alike), in ms, plus
ratios to one f evaluation (forward) and to one value-and-grad of Σf² (gradient), the process's
CPU time per call (in the CSV), and compile times in s (with --eager: the first call's time).
Writes taylor_methods.csv and taylor_methods.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from taynode.models import MLPDynamics
from taynode.taylor import METHODS, derivatives


class ConvDynamics(eqx.Module):
    convs: list

    def __init__(self, key, channels=64):
        k = jax.random.split(key, 3)
        sizes = [(1, channels), (channels, channels), (channels, 1)]
        self.convs = [eqx.nn.Conv2d(i + 1, o, 3, padding=1, key=kk) for (i, o), kk in zip(sizes, k)]

    def __call__(self, t, z, args=None):
        h = z
        for i, conv in enumerate(self.convs):
            tt = jnp.broadcast_to(t, h.shape[:1] + (1,) + h.shape[2:]).astype(h.dtype)
            h = jax.vmap(conv)(jnp.concatenate([h, tt], axis=1))
            if i < len(self.convs) - 1:
                h = jax.nn.softplus(h)
        return h


def make(model_name, batch, key):
    k1, k2 = jax.random.split(key)
    if model_name == "mlp":
        model = MLPDynamics((784, 100, 784), "tanh", key=k1, dtype=jnp.float32)
        z = jax.random.normal(k2, (batch, 784), jnp.float32)
    else:
        model = ConvDynamics(k1)
        z = jax.random.normal(k2, (batch, 1, 28, 28), jnp.float32)
    return model, z


def timed(fn, *args):
    """Wall-clock and process CPU seconds of one call (CPU time is less sensitive than wall time
    to other jobs taking the cores)."""
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, time.process_time() - c0


def bench_model(model_name, batch, orders, methods, repeats, log, jit=True):
    model, z = make(model_name, batch, jax.random.PRNGKey(0))
    t = jnp.float32(0.5)

    f_eval = eqx.filter_jit(lambda m, z: m(t, z))
    f_vg = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, z: jnp.sum(m(t, z) ** 2)))
    base = {"f": f_eval, "vg": f_vg}
    for fn in base.values():
        timed(fn, model, z)

    wrap = eqx.filter_jit if jit else (lambda fn: fn)

    def fwd(method, K):
        return wrap(lambda m, z: derivatives(m, t, z, order=K, method=method)[-1])

    def grad(method, K):
        loss = lambda m, z: jnp.sum(derivatives(m, t, z, order=K, method=method)[-1] ** 2)  # noqa: E731
        return wrap(eqx.filter_grad(loss))

    rows = []
    for K in orders:
        fns, compile_s = {}, {}
        for method in methods:
            for kind, build in (("fwd", fwd), ("grad", grad)):
                fn = build(method, K)
                compile_s[(method, kind)] = timed(fn, model, z)[0]
                fns[(method, kind)] = fn
        samples = {key: [] for key in list(fns) + list(base)}
        for _ in range(repeats):  # round-robin
            for key, fn in list(fns.items()) + list(base.items()):
                samples[key].append(timed(fn, model, z))
        med = {key: statistics.median(w for w, _ in v) for key, v in samples.items()}
        med_cpu = {key: statistics.median(c for _, c in v) for key, v in samples.items()}
        for method in methods:
            row = dict(
                model=model_name,
                mode="jit" if jit else "eager",
                batch=batch,
                K=K,
                method=method,
                fwd_ms=1e3 * med[(method, "fwd")],
                fwd_per_f=med[(method, "fwd")] / med["f"],
                grad_ms=1e3 * med[(method, "grad")],
                grad_per_vg=med[(method, "grad")] / med["vg"],
                compile_fwd_s=compile_s[(method, "fwd")],
                compile_grad_s=compile_s[(method, "grad")],
                f_ms=1e3 * med["f"],
                vg_ms=1e3 * med["vg"],
                fwd_cpu_ms=1e3 * med_cpu[(method, "fwd")],
                grad_cpu_ms=1e3 * med_cpu[(method, "grad")],
            )
            rows.append(row)
            log(
                f"{model_name} K={K} {method:<12} fwd {row['fwd_ms']:8.2f} ms ({row['fwd_per_f']:5.1f} f)"
                f"  grad {row['grad_ms']:8.2f} ms ({row['grad_per_vg']:5.1f} vg)"
                f"  compile {row['compile_fwd_s']:.1f}/{row['compile_grad_s']:.1f} s"
            )
    return rows


def markdown(rows):
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        r0 = rs[0]
        out.append(
            f"\n**{model}** (batch {r0['batch']}; one f: {r0['f_ms']:.2f} ms, one value-and-grad "
            f"of Σf²: {r0['vg_ms']:.2f} ms at K = 1's measurement)\n"
        )
        methods = list(dict.fromkeys(r["method"] for r in rs))
        head = (
            "| K | "
            + " | ".join(f"{m} fwd ms (×f)" for m in methods)
            + " | "
            + " | ".join(f"{m} grad ms (×vg)" for m in methods)
            + " | incremental speed-up fwd / grad vs best other |"
        )
        out += [head, "|" + "---|" * (1 + 2 * len(methods) + 1)]
        for K in dict.fromkeys(r["K"] for r in rs):
            by = {r["method"]: r for r in rs if r["K"] == K}
            cells = [f"{by[m]['fwd_ms']:.2f} ({by[m]['fwd_per_f']:.1f})" for m in methods]
            cells += [f"{by[m]['grad_ms']:.2f} ({by[m]['grad_per_vg']:.1f})" for m in methods]
            others = [m for m in methods if m != "incremental"]
            if "incremental" in by and others:
                bf = min(by[m]["fwd_ms"] for m in others) / by["incremental"]["fwd_ms"]
                bg = min(by[m]["grad_ms"] for m in others) / by["incremental"]["grad_ms"]
                cells.append(f"{bf:.2f}× / {bg:.2f}×")
            else:
                cells.append("")
            out.append(f"| {K} | " + " | ".join(cells) + " |")
        comp = ", ".join(f"{m} {max(r['compile_grad_s'] for r in rs if r['method'] == m):.1f} s" for m in methods)
        out.append(f"\nLongest gradient compile (K = {max(r['K'] for r in rs)}): {comp}.")
    return "\n".join(out) + "\n"


def parse_orders(text):
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "conv", "both"], default="both")
    p.add_argument("--orders", default="1-8", help="e.g. 1-8 or 2,4,6")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--mlp-batch", type=int, default=128)
    p.add_argument("--conv-batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--eager", action="store_true", help="time the derivatives without jit (f and vg stay jitted)")
    ns = p.parse_args(argv)
    methods = ns.methods.split(",")
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; valid: {sorted(METHODS)}")
    orders = parse_orders(ns.orders)
    os.makedirs(ns.out, exist_ok=True)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs", flush=True)
    rows = []
    models = ["mlp", "conv"] if ns.model == "both" else [ns.model]
    for model in models:
        batch = ns.mlp_batch if model == "mlp" else ns.conv_batch
        rows += bench_model(model, batch, orders, methods, ns.repeats, lambda s: print(s, flush=True), jit=not ns.eager)
    tmp = os.path.join(ns.out, ".taylor_methods.csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(ns.out, "taylor_methods.csv"))
    md = markdown(rows)
    tmp = os.path.join(ns.out, ".taylor_methods.md.tmp")
    with open(tmp, "w") as fh:
        fh.write(md)
    os.replace(tmp, os.path.join(ns.out, "taylor_methods.md"))
    print(md)


if __name__ == "__main__":
    main()
