"""Minibatches as a pure function of the step, so a resumed run sees exactly the same batches."""

from __future__ import annotations

import jax
import numpy as np

from .. import _validate


class ShuffledBatches:
    """``batches(step)`` → the step's minibatch: epochs of a fresh permutation, without replacement.

    Epoch ``e`` uses the permutation drawn from ``numpy.random.default_rng([seed, e])``; step
    ``s`` is batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``. The last partial
    batch of an epoch is dropped (every step has the same shape, so the step is compiled once).

    Args:
        data: a pytree of NumPy arrays sharing their leading (example) axis, e.g. ``(x, y)``.
        batch_size: examples per step, ``1 <= batch_size <= n``.
        seed: the shuffling seed.
    """

    def __init__(self, data, batch_size: int, seed: int = 0):
        leaves = jax.tree_util.tree_leaves(data)
        if not leaves:
            raise ValueError("data has no arrays")
        n = {np.shape(x)[0] for x in leaves}
        if len(n) != 1:
            raise ValueError(f"every array in data needs the same leading (example) axis, got lengths {sorted(n)}")
        self.n = n.pop()
        _validate.integer("batch_size", batch_size, 1, self.n, hint=" (the number of examples)")
        self.data = jax.tree_util.tree_map(np.asarray, data)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = self.n // self.batch_size
        self._epoch, self._perm = None, None

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def __call__(self, step: int):
        epoch, i = divmod(int(step), self.steps_per_epoch)
        idx = self.permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        return jax.tree_util.tree_map(lambda x: x[idx], self.data)
