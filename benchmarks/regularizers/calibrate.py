"""λ for every regularizer of ``taynode study regularizers``: the same initial weight as TayNODE's.

For each task, at its trained *unregularized* model (a finished run of that task's CPU preset,
seed 0) and one training batch, solve once per regularizer in its training setting and set

    λ_method = λ_TayNODE · R_TayNODE / R_method,

so every method starts with the penalty TayNODE's λ puts on that model (the rule the reduced-MNIST
FFJORD rows use; Pal et al. tuned per method instead). RNODE's λ weighs 𝒦 and ℬ each, so R_RNODE
= 𝒦 + ℬ. Writes ``calibration.json`` and prints the table::

    python benchmarks/regularizers/calibrate.py --mnist runs/mnist-small-cost/none-lam0-seed0 \
        --latent runs/latent-cpu/none-lam0-seed0 --ffjord runs/ffjord-seeds/8gaussians-seed0/runs/adaptive_none
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from taynode.studies import write_json

METHODS = {"rnode": ("kinetic", "jacobian"), "ernode": ("ernode",), "srnode": ("srnode",)}


def _values(loss_aux, names):
    return float(sum(np.asarray(loss_aux[n]) for n in names))


def mnist_values(run_dir, lam_tay):
    from taynode.models.classifier import classifier_loss, parse_regularizers
    from taynode.studies import mnist
    from taynode.train import load_checkpoint

    cfg = mnist.config("small", seed=0)
    model = load_checkpoint(os.path.join(run_dir, "checkpoint.npz"), mnist.make_model(cfg))[0]
    (x, y), _, _ = mnist.load_data(cfg)
    x, y = jnp.asarray(x[: cfg.batch]), jnp.asarray(y[: cfg.batch])
    tol = dict(rtol=cfg.train_tol, atol=cfg.train_tol, solver=cfg.solver, max_steps=cfg.max_steps)
    key = jax.random.PRNGKey(0)
    out = {}
    for method, names in ({"taynode": ("r3",)} | METHODS).items():
        _, aux = classifier_loss(model, x, y, regularizers=parse_regularizers("+".join(names)), lam=1.0, key=key, **tol)
        out[method] = _values(aux, [n if n != "r3" else "R3" for n in names])
    return out


def latent_values(run_dir, lam_tay):
    from taynode.data import physionet
    from taynode.models.latent_ode import latent_ode_loss
    from taynode.regularizers import RegularizerSet
    from taynode.studies import latent
    from taynode.train import load_checkpoint

    cfg = latent.preset("cpu", seed=0)
    split, ts = latent.load_data(cfg)
    model = load_checkpoint(
        os.path.join(run_dir, "checkpoint.npz"), latent.make_model(cfg, len(physionet.VARIABLES), jnp.float32)
    )[0]
    values = jnp.asarray(split.train.values[: cfg.batch], jnp.float32)
    mask = jnp.asarray(split.train.mask[: cfg.batch], jnp.float32)
    out = {}
    for method, names in ({"taynode": ("r3",)} | METHODS).items():
        rset = RegularizerSet.parse("+".join(names), lam=1.0)
        _, parts = latent_ode_loss(
            model,
            values,
            mask,
            jnp.asarray(ts, jnp.float32),
            jax.random.PRNGKey(0),
            n_samples=cfg.n_samples,
            iwae=cfg.iwae,
            obs_std=cfg.obs_std,
            regularizers=rset.regularizers,
            lam=[1.0] * len(names),
            rtol=cfg.train_tol,
            atol=cfg.train_tol,
        )
        out[method] = _values(parts, [r.name for r in rset.regularizers])
    return out


def ffjord_values(run_dir, lam_tay):
    from taynode.studies import ffjord
    from taynode.train import load_checkpoint

    cfg = ffjord.preset("cpu", seed=0, fixed_steps=())
    train_x, _ = ffjord.load_data(cfg)
    cnf = load_checkpoint(os.path.join(run_dir, "checkpoint.npz"), ffjord.make_cnf(cfg, train_x.shape[1:]))[0]
    x = jnp.asarray(train_x[: cfg.batch])
    out = {}
    for method, names in ({"taynode": ("r2",)} | METHODS).items():
        regs, _ = ffjord.regularizers(cfg, "+".join(names), 1.0)
        r = cnf.forward(x, key=jax.random.PRNGKey(0), regularizers=regs, solver="dopri5", rtol=cfg.train_tol, atol=cfg.train_tol)
        out[method] = float(sum(jnp.mean(r.integrals[reg.name]) for reg in regs))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist")
    p.add_argument("--latent")
    p.add_argument("--ffjord")
    p.add_argument("--lam-ffjord", type=float, default=0.5, help="TayNODE's λ (R2) on 8gaussians FFJORD")
    p.add_argument("--lam-mnist", type=float, default=1e4, help="TayNODE's λ (R3) on MNIST small")
    p.add_argument("--lam-latent", type=float, default=2.0, help="TayNODE's λ (R3) on the Latent ODE cpu preset")
    p.add_argument("--out", default="benchmarks/regularizers/calibration.json")
    ns = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    result = {}
    if os.path.exists(ns.out):  # tasks not given keep their earlier calibration
        with open(ns.out) as fh:
            result = json.load(fh)
    for task, path, fn, lam in (
        ("mnist", ns.mnist, mnist_values, ns.lam_mnist),
        ("latent", ns.latent, latent_values, ns.lam_latent),
        ("ffjord", ns.ffjord, ffjord_values, ns.lam_ffjord),
    ):
        if path is None:
            continue
        vals = fn(path, lam)
        lams = {m: lam * vals["taynode"] / v for m, v in vals.items() if m != "taynode"} | {"taynode": lam}
        result[task] = dict(run=path, values=vals, lam=lams)
        print(task, json.dumps(result[task], indent=1))
    write_json(ns.out, result)


if __name__ == "__main__":
    main()
