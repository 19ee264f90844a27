"""A tiny data-parallel training run for tests/test_data_parallel.py, started as a subprocess so
that the number of (forced CPU) devices and the multi-process runtime are set before JAX starts.

    python tests/dp_worker.py RUN_DIR --model classifier|cnf --devices N [--local-devices L]
        [--steps S] [--kill-at K] [--sharding global|per-shard] [--fixed-steps M] [--batch B]
        [--coordinator HOST:PORT --num-processes P --process-id I --timeout T] [--target R2]

--target R2: λ is set by a LambdaTarget on the regularizer's mean value (every 2 steps) instead
of being fixed at 0.1, so λ reaches loss_fn as a replicated input of the step.

Exit status 3 with the message on stderr for a :class:`DistributedError` (as the CLI does).
"""

import argparse
import os
import signal
import sys

p = argparse.ArgumentParser()
p.add_argument("run_dir")
p.add_argument("--model", default="classifier")
p.add_argument("--devices", type=int)
p.add_argument("--local-devices", type=int, default=1, help="forced CPU devices of this process")
p.add_argument("--steps", type=int, default=4)
p.add_argument("--kill-at", type=int, default=-1)
p.add_argument("--sharding", default="global")
p.add_argument("--fixed-steps", type=int)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--coordinator")
p.add_argument("--num-processes", type=int)
p.add_argument("--process-id", type=int)
p.add_argument("--timeout", type=int, default=20)
p.add_argument("--heartbeat", type=int, default=10)
p.add_argument("--target", type=float, help="target for the mean R2 (λ set by LambdaTarget, from 0.1)")
a = p.parse_args()
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={a.local_devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
from taynode.train.parallel import DistributedError, init_distributed  # noqa: E402

try:
    if a.coordinator:
        init_distributed(a.coordinator, a.num_processes, a.process_id, timeout=a.timeout, heartbeat_timeout=a.heartbeat)

    import equinox as eqx  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
    import numpy as np  # noqa: E402
    import optax  # noqa: E402

    from taynode.models import MLPDynamics  # noqa: E402
    from taynode.models.classifier import ODEClassifier, classifier_loss, parse_regularizers  # noqa: E402
    from taynode.models.cnf import CNF  # noqa: E402
    from taynode.train import LambdaTarget, ShuffledBatches, train  # noqa: E402

    rng = np.random.default_rng(0)
    solve_kw = dict(solver="rk4", steps=a.fixed_steps) if a.fixed_steps else dict(solver="dopri5", rtol=1e-7, atol=1e-7)
    if a.model == "classifier":
        data = (rng.normal(size=(48, 6)), rng.integers(0, 3, 48).astype(np.int32))
        model = ODEClassifier(dim=6, hidden=8, classes=3, activation="softplus", key=jax.random.PRNGKey(0), dtype=jnp.float64)
        regs = parse_regularizers("r2")

        def loss_fn(m, b, key, lam=0.1):
            return classifier_loss(m, b[0], b[1], regularizers=regs, lam=lam, key=key, **solve_kw)
    else:
        data = rng.normal(size=(48, 2)) * np.array([1.0, 0.5])
        model = CNF(MLPDynamics((2, 8, 2), "softplus", key=jax.random.PRNGKey(0), dtype=jnp.float64))

        def loss_fn(cnf, x, key, lam=0.1):  # Hutchinson noise from the step's key, and R2 in the same solve
            r = cnf.forward(x, key=key, regularizers=["r2"], **solve_kw)
            nll, r2 = -jnp.mean(r.log_prob), jnp.mean(r.integrals["R2"])
            return nll + lam * r2, {"nll": nll, "nfe": r.stats["nfe"], "R2": r2}

    inner = ShuffledBatches(data, a.batch, seed=1)

    def batches(step):
        if step == a.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return inner(step)

    batches.steps_per_epoch = inner.steps_per_epoch
    target = None if a.target is None else LambdaTarget("R2", a.target, 0.1, every=2, dtype=np.float64)
    res = train(
        model,
        optax.adam(1e-2),
        loss_fn,
        batches,
        a.run_dir,
        steps=a.steps,
        seed=5,
        checkpoint_every=2,
        resume=True,
        progress=False,
        config={"model": a.model},
        devices=a.devices,
        sharding=a.sharding,
        target=target,
        evaluate=lambda m: {"norm": float(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array))))},
    )
    print(f"DONE process {jax.process_index()} devices {res.parallel.size} step {res.step}", flush=True)
except DistributedError as e:
    print(f"DistributedError: {e}", file=sys.stderr, flush=True)
    os._exit(3)  # not JAX's atexit shutdown, which would wait on the dead peer
