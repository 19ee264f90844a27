"""The comparison's neural ODE: the Fig. 1 toy model (1 → 32 → 32 → 1, tanh, λ·R₃ with λ = 1,
fitting z(1) = z(0) + z(0)³), trained with :func:`taynode.train.train`.

It reproduces ``taynode.studies.toy.train(ToyConfig(hidden=32, iters=iters, seed=seed), 1.0)``
bit for bit (the same keys, batches, optimizer and loss) without depending on the study.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from .. import portable
from .x64 import float64

if TYPE_CHECKING:
    from ..models import MLPDynamics

HIDDEN, DEPTH, ACTIVATION = 32, 2, "tanh"
LAM, ORDER = 1.0, 3
BATCH, LR, TRAIN_TOL = 64, 1e-2, 1e-6


@float64
def train_model(iters: int = 300, seed: int = 0, progress: bool = False) -> MLPDynamics:
    """The trained :class:`taynode.models.MLPDynamics` (float64)."""
    import jax
    import jax.numpy as jnp
    import optax

    from ..models import MLPDynamics
    from ..regularizers import RK
    from ..solve import solve
    from ..train import train

    key = jax.random.PRNGKey(seed)
    mkey, dkey = jax.random.split(key)
    model = MLPDynamics((1,) + (HIDDEN,) * DEPTH + (1,), ACTIVATION, key=mkey, dtype=jnp.float64)
    opt = optax.adam(optax.cosine_decay_schedule(LR, iters, alpha=0.01))
    reg = RK(ORDER)

    def loss_fn(model, z0, key):
        sol = solve(model, z0, (0.0, 1.0), rtol=TRAIN_TOL, atol=TRAIN_TOL, regularizers=[reg], key=key)
        mse = jnp.mean((sol.z1 - (z0 + z0**3)) ** 2)
        r = jnp.mean(sol.integrals[reg.name])
        return mse + LAM * r, {"mse": mse, "R": r}

    def batches(step):
        return jax.random.uniform(jax.random.fold_in(dkey, step), (BATCH, 1), jnp.float64, -1.0, 1.0)

    # train() keys step i with fold_in(PRNGKey(seed), i), as the toy study does
    with tempfile.TemporaryDirectory(prefix="taynode-neural-ode-") as run_dir:
        result = train(
            model,
            opt,
            loss_fn,
            batches,
            run_dir,
            steps=iters,
            seed=seed,
            checkpoint_every=max(iters, 1),
            log_every=max(iters, 1),
            progress=progress,
            devices=1,
        )
    return result.model


def train_neural_ode(path: str, iters: int = 300, seed: int = 0) -> dict:
    """Train the comparison's neural ODE and save its portable description to ``path``; returns
    the description."""
    spec = portable.from_model(train_model(iters, seed))
    portable.save(spec, path)
    return spec
