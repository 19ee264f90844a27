"""What a regularized training step costs, next to an unregularized one, measured side by side.

Two tables, every row timed in the same run, round-robin (one repeat of every row, then the next
repeat), median of the repeats:

1. **Training step** (value and gradient of the task's loss) on the MNIST classifier (784 → 100 →
   784 sigmoid dynamics, batch 100) and the 2-D FFJORD model, at fixed parameters: unregularized,
   R₂, R₃, RNODE (𝒦 + ℬ), ERNODE and SRNODE (global, and their local sampled-step variants), each with ``quadrature="integrated"`` (the paper's) and
   ``"sampled"`` (one sample time per solve, and M = 4 stratified times), and on MNIST also integrated with
   ``error_control="state"`` (regularizers out of the step-size control); forward and backward NFE from ``Solution.stats``;
   the sampled estimator's relative standard deviation over 64 draws and its mean relative to
   the integrated value.
2. **Gradient through the solve** of the unregularized MNIST dynamics (tanh, batch 128) in
   float32 and float64: time of one gradient / (forward NFE · t_f + backward NFE · t_(f+VJP)),
   the ideal where every evaluation runs once and every VJP once, for several ``checkpoints``
   (90 is diffrax's own default for max_steps = 4096).

::

    python benchmarks/training_cost.py --out benchmarks/results/training_cost.md
    python benchmarks/training_cost.py --mnist-checkpoint runs/mnist-full/none-lam0-seed0/checkpoint.npz  # trained parameters

Timings on a shared machine are noisy: read the ratios within a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import taynode as tn  # noqa: E402
from taynode.models import MLPDynamics  # noqa: E402
from taynode.models.classifier import ODEClassifier, classifier_loss  # noqa: E402
from taynode.models.cnf import CNF  # noqa: E402

# the CNF keeps its integrated regularizers in its own augmented state: no state-only error control
QUADS = {
    "mnist": ("integrated", "integrated, state error", "sampled", "sampled, M=4"),
    "ffjord-2d": ("integrated", "sampled", "sampled, M=4"),
}
LOOP = 50  # evaluations per in-graph timing of f and f + VJP
QUAD_KW = {
    "-": {},
    "integrated": {},
    "integrated, state error": {"error_control": "state"},
    "sampled": {"quadrature": "sampled"},
    "sampled, M=4": {"quadrature": "sampled", "samples": 4},
}
REGS = {
    "none": ([], 0.0),
    "R2": (["r2"], 1e3),
    "R3": (["r3"], 1e4),
    "RNODE": (["kinetic", "jacobian"], 1e-2),
    "ERNODE": (["ernode"], 1e2),
    "SRNODE": (["srnode"], 1e1),
}
STEP_REGS = ("ERNODE", "SRNODE")  # summed over the accepted steps ("integrated") or at sampled steps (the local variant)


def _median_times(fns: dict, repeats: int) -> dict:
    for fn in fns.values():  # compile
        jax.block_until_ready(fn())
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def mnist_task(checkpoint=None):
    model = ODEClassifier(key=jax.random.PRNGKey(0), dtype=jnp.float32)
    if checkpoint:
        from taynode.train import load_checkpoint

        model, _, _ = load_checkpoint(checkpoint, model)
    x = jax.random.uniform(jax.random.PRNGKey(1), (100, 784), jnp.float32)
    if os.environ.get("TAYNODE_MNIST") or os.path.exists("../shared/data/mnist/mnist.npz"):
        from taynode.data import mnist

        d = mnist.load(None)
        x = jnp.asarray(mnist.as_float(d.x_test[:100], np.float32))
        y = jnp.asarray(d.y_test[:100].astype(np.int32))
    else:
        y = jnp.arange(100, dtype=jnp.int32) % 10

    def loss(m, regs, lam, key, **kw):
        value, aux = classifier_loss(m, x, y, regularizers=regs, lam=lam, key=key, rtol=1e-5, atol=1e-5, **kw)
        return value, aux | {"nfe_backward": aux["nfe"] - 2}  # the solve's stats["nfe_backward"] (adaptive backprop)

    return model, loss


def ffjord_task():
    from taynode.data import toy2d

    cnf = CNF(MLPDynamics((2, 64, 64, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float32))
    x = jnp.asarray(toy2d.sample("8gaussians", 256, seed=0), jnp.float32)

    def loss(m, regs, lam, key, **kw):
        r = m.forward(x, key=key, regularizers=regs, rtol=1e-5, atol=1e-5, **kw)
        means = {k: jnp.mean(v) for k, v in r.integrals.items()}
        nll = -jnp.mean(r.log_prob)
        return nll + lam * sum(means.values()) if means else nll, {
            "nfe": r.stats["nfe"],
            "nfe_backward": r.stats["nfe_backward"],
        } | means

    return cnf, loss


def step_table(tasks: dict, repeats: int, regs_wanted=tuple(REGS)) -> list[dict]:
    rows = []
    for task, (model, loss) in tasks.items():
        key = jax.random.PRNGKey(7)
        fns, meta = {}, {}
        for reg, (regs, lam) in ((r, REGS[r]) for r in regs_wanted):
            quads = ("-",) if not regs else ("integrated", "sampled") if reg in STEP_REGS else QUADS[task]
            for quad in quads:
                kw = QUAD_KW[quad]
                grad = eqx.filter_jit(
                    eqx.filter_value_and_grad(lambda m, k, regs=regs, lam=lam, kw=kw: loss(m, regs, lam, k, **kw), has_aux=True)
                )
                fns[(reg, quad)] = lambda grad=grad: grad(model, key)
                (_, aux), _ = grad(model, key)
                meta[(reg, quad)] = aux
        times = _median_times(fns, repeats)
        base = times[("none", "-")]
        for (reg, quad), t in times.items():
            aux = meta[(reg, quad)]
            row = dict(
                task=task,
                reg=reg,
                quadrature=quad,
                step_ms=1e3 * t,
                vs_none=t / base,
                nfe=int(aux["nfe"]),
                nfe_backward=int(aux.get("nfe_backward", -1)),
            )
            if quad.startswith("sampled"):  # the estimator's spread over sample times, against the integrated value
                names = [k for k in aux if k not in ("nfe", "nfe_backward", "ce", "acc", "nll")]
                draws = eqx.filter_jit(jax.vmap(lambda k: loss(model, REGS[reg][0], 0.0, k, **QUAD_KW[quad])[1], in_axes=0))
                vals = draws(jax.random.split(jax.random.PRNGKey(11), 64))
                ref = meta[(reg, "integrated")]
                row["rel_std"] = max(float(np.std(vals[n]) / np.mean(vals[n])) for n in names)
                row["mean_vs_integrated"] = max(abs(float(np.mean(vals[n]) / ref[n]) - 1) for n in names)
            rows.append(row)
    return rows


def gradient_table(repeats: int, checkpoints=(90, 32, 16, 8)) -> list[dict]:
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        f = MLPDynamics((784, 100, 784), "tanh", key=jax.random.PRNGKey(0), dtype=dtype)
        x = jax.random.uniform(jax.random.PRNGKey(1), (128, 784), dtype)

        # f and f + VJP timed in-graph (a loop of LOOP evaluations inside one compiled program), so
        # that per-call dispatch does not inflate the ideal
        def f_loop(m):
            return jax.lax.fori_loop(0, LOOP, lambda i, z: z + 1e-3 * m(0.5, z, None), x)

        def fvjp_loop(m):
            def body(i, carry):
                z, g = carry
                gz, gm = jax.vjp(lambda z_, m_: m_(0.5, z_, None), z, m)[1](z)
                return z + 1e-3 * gz, jax.tree_util.tree_map(jnp.add, g, eqx.filter(gm, eqx.is_inexact_array))

            return jax.lax.fori_loop(
                0, LOOP, body, (x, jax.tree_util.tree_map(jnp.zeros_like, eqx.filter(m, eqx.is_inexact_array)))
            )

        one, fvjp = eqx.filter_jit(f_loop), eqx.filter_jit(fvjp_loop)
        fwd = eqx.filter_jit(lambda m: tn.solve(m, x).z1)
        fns = {"f": lambda: one(f), "f+vjp": lambda: fvjp(f), "forward solve": lambda: fwd(f)}
        for c in checkpoints:
            g = eqx.filter_jit(eqx.filter_grad(lambda m, c=c: jnp.sum(tn.solve(m, x, checkpoints=c).z1 ** 2)))
            fns[c] = lambda g=g: g(f)
        stats = tn.solve(f, x).stats
        times = _median_times(fns, repeats)
        nfe, nb = int(stats["nfe"]), int(stats["nfe_backward"])
        times["f"], times["f+vjp"] = times["f"] / LOOP, times["f+vjp"] / LOOP
        ideal = nfe * times["f"] + nb * times["f+vjp"]
        for c in checkpoints:
            rows.append(
                dict(
                    dtype=jnp.dtype(dtype).name,
                    checkpoints=c,
                    grad_ms=1e3 * times[c],
                    nfe=nfe,
                    nfe_backward=nb,
                    f_ms=1e3 * times["f"],
                    fvjp_ms=1e3 * times["f+vjp"],
                    vs_ideal=times[c] / ideal,
                    forward_vs_nfe_f=times["forward solve"] / (nfe * times["f"]),
                )
            )
    return rows


def markdown(step_rows, grad_rows) -> str:
    out = [
        "| task | regularizer | quadrature | step ms | × unregularized | NFE fwd / bwd | sampled: rel. std, mean ÷ integrated − 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in step_rows:
        # ERNODE/SRNODE's sampled rows are the local variant, another quantity than the global sum:
        # their "mean ÷ integrated" compares two regularizers, not an estimator with its target
        est = f"{r['rel_std']:.2f} / {r['mean_vs_integrated']:.2f}" if "rel_std" in r else ""
        out.append(
            f"| {r['task']} | {r['reg']} | {r['quadrature']} | {r['step_ms']:.1f} | {r['vs_none']:.2f} | {r['nfe']} / {r['nfe_backward']} | {est} |"
        )
    out += (
        []
        if not grad_rows
        else [
            "",
            "| dtype | checkpoints | gradient ms | NFE fwd / bwd | t_f / t_(f+VJP) ms | gradient / ideal | forward / (NFE·t_f) |",
            "|---|---|---|---|---|---|---|",
        ]
    )
    for r in grad_rows:
        out.append(
            f"| {r['dtype']} | {r['checkpoints']} | {r['grad_ms']:.1f} | {r['nfe']} / {r['nfe_backward']} | {r['f_ms']:.2f} / {r['fvjp_ms']:.2f} | "
            f"{r['vs_ideal']:.2f} | {r['forward_vs_nfe_f']:.2f} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--mnist-checkpoint", help="an MNIST run's checkpoint.npz (parameters after training)")
    p.add_argument("--tables", nargs="+", default=["steps", "gradient"], choices=["steps", "gradient"])
    p.add_argument("--tasks", nargs="+", default=["mnist", "ffjord-2d"], choices=["mnist", "ffjord-2d"])
    p.add_argument("--regs", nargs="+", default=list(REGS), choices=list(REGS), help="step-table rows (none is always timed)")
    p.add_argument("--out", help="also write the markdown here")
    ns = p.parse_args(argv)
    makers = {"mnist": lambda: mnist_task(ns.mnist_checkpoint), "ffjord-2d": ffjord_task}
    regs = ["none"] + [r for r in ns.regs if r != "none"]
    steps = step_table({t: makers[t]() for t in ns.tasks}, ns.repeats, regs) if "steps" in ns.tables else []
    grads = gradient_table(ns.repeats) if "gradient" in ns.tables else []
    text = markdown(steps, grads)
    print(text)
    if ns.out:
        os.makedirs(os.path.dirname(os.path.abspath(ns.out)), exist_ok=True)
        tmp = ns.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"<!-- python benchmarks/training_cost.py {' '.join(sys.argv[1:] if argv is None else argv)} -->\n" + text)
        os.replace(tmp, ns.out)


if __name__ == "__main__":
    main()
