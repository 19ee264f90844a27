"""MLP dynamics f(t, z, args) with time concatenated to the input of every layer's input."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The JAX activation called ``name`` (a key of :data:`ACTIVATIONS`); ``ValueError`` naming the valid ones otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}") from None


class MLPDynamics(eqx.Module):
    """dz/dt = MLP([z, t]) on a batch of states of shape (batch, dim).

    ``sizes = (dim, h1, ..., dim)``; time is concatenated to the input of every layer, as in
    the paper's MNIST and toy models.
    """

    layers: list
    activation: str = eqx.field(static=True)

    def __init__(self, sizes, activation: str = "tanh", *, key, dtype=None):
        globals()["activation"](activation)  # validate the name early
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least input and output sizes, got {sizes}")
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [eqx.nn.Linear(n_in + 1, n_out, key=k, dtype=dtype) for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys)]
        self.activation = activation

    def __call__(self, t, z, args=None):
        act = ACTIVATIONS[self.activation]
        h = z
        for i, layer in enumerate(self.layers):
            tt = jnp.broadcast_to(jnp.asarray(t, h.dtype), h.shape[:-1] + (1,))
            h = jnp.concatenate([h, tt], axis=-1) @ layer.weight.T + layer.bias
            if i < len(self.layers) - 1:
                h = act(h)
        return h
