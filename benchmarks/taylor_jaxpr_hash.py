"""Fingerprints of the programs a Taylor method (default: incremental) builds for
benchmarks/taylor_methods.py's models: run under two trees (PYTHONPATH=<tree>/python); equal
hashes mean the same jaxpr, so the same compiled program and the same speed, whatever the
machine's load.

    PYTHONPATH=/old/tree/python python benchmarks/taylor_jaxpr_hash.py [--method nested]
    PYTHONPATH=python python benchmarks/taylor_jaxpr_hash.py [--method nested]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taylor_methods as tm  # noqa: E402
from taynode.taylor import derivatives  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="incremental", choices=["incremental", "nested", "jet"])
    p.add_argument("--orders", default="2,4", help="e.g. 2,4 or 1-6")
    ns = p.parse_args(argv)
    method = ns.method
    t = jnp.float32(0.5)
    for model_name, batch in (("mlp", 8), ("conv", 2)):
        model, z = tm.make(model_name, batch, jax.random.PRNGKey(0))
        for K in tm.parse_orders(ns.orders):

            def fwd(m, z, K=K):
                return derivatives(m, t, z, order=K, method=method)[-1]

            grad = eqx.filter_grad(lambda m, z, fwd=fwd: jnp.sum(fwd(m, z) ** 2))
            for kind, fn in (("fwd", fwd), ("grad", grad)):
                text = str(eqx.filter_make_jaxpr(fn)(model, z)[0])
                print(model_name, K, kind, len(text.splitlines()), hashlib.md5(text.encode()).hexdigest()[:10], flush=True)


if __name__ == "__main__":
    main()
