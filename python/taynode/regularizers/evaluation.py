"""What one evaluation of the vector field hands the regularizers (:class:`Evaluation`), and the
explicit protocol of fields that share that work (:class:`StageSharingField`)."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["Evaluation", "StageSharingField", "hutchinson_noise", "num_features", "per_example_sum_squares"]


def per_example_sum_squares(tree: Any) -> Any:
    """Sum of squares over every axis but the leading (batch) one, across all leaves."""
    return sum(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))) for x in jax.tree_util.tree_leaves(tree))


def num_features(tree: Any) -> int:
    """Features per example: the sizes of every leaf but the leading (batch) axis, summed."""
    return sum(math.prod(x.shape[1:]) for x in jax.tree_util.tree_leaves(tree))


@dataclass(frozen=True)
class Evaluation:
    r"""One evaluation of the vector field, shared by every integrand at that (t, z).

    The integrated regularizers are evaluated at every stage of every step, next to the solver's
    own f(t, z); this carries what that evaluation already computed, so an integrand need not
    recompute it (:meth:`Regularizer.integrand_at`). ``f, t, z, args, noise`` are the flow the
    regularizers measure: the solve's own for a plain field; a field that augments its state
    (the CNF's (z, Δ log p)) gives the flow of z alone.

    Attributes:
        fz: f(t, z, args) when the field shares it (the CNF), else ``None``.
        noise_vjp: :math:`\varepsilon^\top \partial f/\partial z` when the field computed it
            (the CNF's Hutchinson trace), else ``None``.
        frobenius: per example :math:`\lVert \partial f/\partial z\rVert_F^2` or its Hutchinson
            estimate :math:`\lVert \varepsilon^\top \partial f/\partial z\rVert^2` when the
            field computed it, else ``None``.
    """

    f: object
    t: object
    z: object
    args: object
    noise: object
    fz: object = None
    noise_vjp: object = None
    frobenius: object = None


class StageSharingField(eqx.Module):
    r"""Base class of vector fields that share one evaluation's work with the regularizers.

    :func:`taynode.solve` calls a field that subclasses this as ``field.evaluate(t, z, args,
    noise) -> (dz, Evaluation)`` at every stage, and the integrated regularizers read that
    :class:`Evaluation` (e.g. the CNF's: f(z) for 𝒦 and its trace's εᵀ∂f/∂z for ℬ, one vjp for
    both). Any other callable is called as ``f(t, z, args)``, whatever methods it has: a user
    model with an unrelated ``evaluate`` method is a plain field.
    """

    @abc.abstractmethod
    def evaluate(self, t: Any, z: Any, args: Any, noise: Any = None) -> tuple[Any, Evaluation]:
        """``(f(t, z, args), the Evaluation the regularizers read)``."""

    def __call__(self, t: Any, z: Any, args: Any) -> Any:
        """f(t, z, args): the first part of :meth:`evaluate`."""
        return self.evaluate(t, z, args)[0]


def hutchinson_noise(key: jax.Array, z: Any) -> Any:
    """ε ~ N(0, I) shaped like the state ``z`` (one draw per solve)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )
