"""FLOPs and matmuls of the K-th total derivative per Taylor method, from XLA's cost analysis of
the compiled programs (deterministic: independent of machine load, unlike the timings of
taylor_methods.py, whose models it reuses).

    python benchmarks/taylor_flops.py                     # MNIST MLP, K = 1…8
    python benchmarks/taylor_flops.py --model conv --orders 1-6

For each K and method: MFLOP, MB accessed and the number of dot/convolution ops of the jitted
forward dᴷz/dtᴷ and of the gradient of Σ(dᴷz/dtᴷ)² with respect to the parameters, and the
ratio of the better other method's gradient FLOPs to incremental's: an upper bound on the
gradient speed-up if time follows FLOPs. Writes taylor_flops_<model>.md to --out.
"""

from __future__ import annotations

import argparse
import os

import equinox as eqx
import jax
import jax.numpy as jnp

from taylor_methods import make, parse_orders
from taynode.taylor import METHODS, derivatives


def cost(fn, model):
    params, static = eqx.partition(model, eqx.is_array)
    compiled = jax.jit(lambda p: fn(eqx.combine(p, static))).lower(params).compile()
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    hlo = compiled.as_text()
    return ca.get("flops", 0.0) / 1e6, ca.get("bytes accessed", 0.0) / 1e6, hlo.count(" dot(") + hlo.count(" convolution(")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "conv"], default="mlp")
    p.add_argument("--orders", default="1-8", help="e.g. 1-8 or 2,4,6")
    p.add_argument("--batch", type=int, default=None, help="default 128 (mlp), 16 (conv)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    batch = a.batch or (128 if a.model == "mlp" else 16)
    model, z = make(a.model, batch, jax.random.PRNGKey(0))
    t = jnp.float32(0.5)
    lines = [
        f"**{a.model}** (batch {batch}; XLA cost analysis of the compiled programs: MFLOP / dot+conv ops)",
        "",
        "| K | "
        + " | ".join(f"{m} fwd" for m in METHODS)
        + " | "
        + " | ".join(f"{m} grad" for m in METHODS)
        + " | gradient FLOPs, better other / incremental |",
        "|---" * (2 * len(METHODS) + 2) + "|",
    ]
    for K in parse_orders(a.orders):
        fwd, grad = {}, {}
        for m in METHODS:
            d = lambda mod, m=m: derivatives(mod, t, z, order=K, method=m)[-1]  # noqa: E731
            fwd[m] = cost(d, model)
            grad[m] = cost(eqx.filter_grad(lambda mod, d=d: jnp.sum(d(mod) ** 2)), model)
        best_other = min(grad[m][0] for m in METHODS if m != "incremental")
        cells = [f"{fwd[m][0]:.0f} / {fwd[m][2]}" for m in METHODS] + [f"{grad[m][0]:.0f} / {grad[m][2]}" for m in METHODS]
        lines.append(f"| {K} | " + " | ".join(cells) + f" | {best_other / grad['incremental'][0]:.2f}× |")
        print(lines[-1], flush=True)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"taylor_flops_{a.model}.md")
    with open(path + ".tmp", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
