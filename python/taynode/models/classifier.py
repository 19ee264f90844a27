r"""The paper's MNIST classifier: a neural ODE on the flattened image, then a linear read-out.

.. math::
    z(0) = x \in \mathbb{R}^{784},\qquad \dot z = f_\theta(t, z) = W_2\,\sigma(W_1 [z, t] + b_1)
    + \ldots,\qquad \text{logits} = A\, z(1) + c,

with :math:`f_\theta` an MLP 784 → 100 → 784 (time concatenated to each layer's input, sigmoid or
softplus; :class:`~taynode.models.MLPDynamics`). The loss is

.. math:: \mathcal L = \text{cross-entropy} + \lambda \sum_{r} \tfrac{1}{B}\sum_{b} \int_0^1 r(t, z_b)\,dt,

where the regularizers' integrals come out of the same :func:`taynode.solve` call as z(1) and
one λ weighs each of them: ``"none"``, ``"r<K>"`` (R_K), or ``"kinetic+jacobian"`` / ``"rnode"``
(RNODE's 𝒦 + ℬ).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import regularizers as _reg
from ..solve import solve
from .mlp import MLPDynamics

__all__ = ["ODEClassifier", "classifier_loss", "parse_regularizers", "steer_end_time", "steer_times"]

RNODE = _reg.RNODE


TAYLOR_METHOD = "incremental"  # R_K's Taylor method when named by a string (parse_regularizers)


def parse_regularizers(spec: Any, taylor_method: str = TAYLOR_METHOD) -> tuple:
    """``"none"`` → (), ``"r3"`` → (RK(3),), ``"kinetic+jacobian"`` or ``"rnode"`` → (𝒦, ℬ);
    a list of names or instances works too. Unknown names raise ValueError
    (:meth:`taynode.regularizers.RegularizerSet.parse`).

    R_K parsed from a name uses ``taylor_method`` (default ``"incremental"``, the project's
    fastest; ``tests/test_mnist_classifier.py`` checks that its R_K and gradients agree with
    ``"nested"`` on the classifier to 1e-10. Not ``"jet"``: under ``jax.jit`` it returned NaN or
    wrong values for this 784-dimensional float32 MLP here, nondeterministically).
    """
    return _reg.RegularizerSet.parse(spec, taylor_method=taylor_method).regularizers


def check_lam(lam: float, regs) -> float:
    """λ for the regularizers ``regs``: >= 0, > 0 exactly when there is a regularizer."""
    return _reg.RegularizerSet.parse(tuple(regs), lam=lam).lam


class ODEClassifier(eqx.Module):
    """Image → ODE flow over t ∈ [0, 1] → linear layer to the class logits."""

    dynamics: MLPDynamics
    head: eqx.nn.Linear

    def __init__(
        self, dim: int = 784, hidden: int = 100, classes: int = 10, activation: str = "sigmoid", *, key, dtype=jnp.float32
    ):
        if activation not in ("sigmoid", "softplus", "tanh"):
            raise ValueError(f"activation must be 'sigmoid' or 'softplus' (the paper's) or 'tanh', got {activation!r}")
        k1, k2 = jax.random.split(key)
        self.dynamics = MLPDynamics((dim, hidden, dim), activation, key=k1, dtype=dtype)
        self.head = eqx.nn.Linear(dim, classes, key=k2, dtype=dtype)

    def flow(self, x, *, regularizers=(), key=None, t1=1.0, **solve_kw):
        """Solve the ODE from the flattened images ``x`` (batch, dim) over [0, t1]; the :class:`Solution`."""
        return solve(self.dynamics, x, (0.0, t1), regularizers=regularizers, key=key, **solve_kw)

    def logits(self, z1):
        return z1 @ self.head.weight.T + self.head.bias

    def __call__(self, x, **solve_kw):
        """``(logits, solution)`` for the flattened images ``x``."""
        sol = self.flow(x, **solve_kw)
        return self.logits(sol.z1), sol


def steer_end_time(key: jax.Array, b: float, t1: float = 1.0) -> jax.Array:
    """STEER (Ghosh, Behl, Dupont, Torr & Namboodiri 2020): the end time drawn uniformly from
    [t1 − b, t1 + b] for a training step, so the model cannot rely on one exact end time."""
    if not 0 <= b < t1:
        raise ValueError(f"STEER's half-width b must be in [0, t1) = [0, {t1:g}), got {b}")
    return t1 + jax.random.uniform(jax.random.fold_in(key, STEER_STREAM), (), minval=-b, maxval=b)


STEER_STREAM = 0x57  # the end time's PRNG stream, apart from the regularizers' noise and sample times


def steer_times(key: jax.Array, ts: jax.Array, b: float = 1.0) -> jax.Array:
    r"""STEER for a time series: every observation time after the first moved at random.

    Pal et al.'s RegNeuralDE.jl (``experiments/latent_ode.jl``) trains the Latent ODE on
    ``t[2:end] .+ (2 rand − 1) .* δt ./ 2``; here, with :math:`u_i \sim U[-1, 1)`,

    .. math::  t'_0 = t_0,\qquad t'_i = \operatorname{clip}\big(t_i + u_i\, b\, m_i/2,\ t_0,\ t_{T-1}\big),
               \qquad m_i = \min(t_i - t_{i-1},\ t_{i+1} - t_i)

    (:math:`m_{T-1} = t_{T-1} - t_{T-2}`). On a uniform grid :math:`m_i` is Pal's δt, so b = 1 is
    their rule; taking the smaller neighbouring gap keeps uneven times strictly increasing (with
    δt alone a time after a long gap could pass the next one), which :func:`taynode.solve` needs.

    Args:
        key: PRNG key (its STEER stream is used, as :func:`steer_end_time`).
        ts: (T,) strictly increasing times, T >= 2.
        b: in (0, 1], the fraction of the half-gap a time may move.
    """
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 1:
        raise ValueError(f"STEER's b scales half the gap between observation times and must be in (0, 1], got {b!r}")
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2 or not jnp.issubdtype(ts.dtype, jnp.floating):
        raise ValueError(f"ts must be a 1-D floating-point array of at least two times, got shape {ts.shape}, dtype {ts.dtype}")
    try:  # checked when the times are known (a traced ts is the caller's to keep sorted)
        known = np.asarray(ts)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        known = None
    if known is not None and not np.all(np.diff(known) > 0):
        raise ValueError(f"ts must be strictly increasing, got {known}")
    gaps = jnp.diff(ts)
    half = 0.5 * b * jnp.minimum(gaps, jnp.concatenate([gaps[1:], gaps[-1:]]))
    u = jax.random.uniform(jax.random.fold_in(key, STEER_STREAM), gaps.shape, ts.dtype, minval=-1.0, maxval=1.0)
    return jnp.concatenate([ts[:1], jnp.clip(ts[1:] + u * half, ts[0], ts[-1])])


def classifier_loss(
    model: ODEClassifier,
    x: jax.Array,
    y: jax.Array,
    *,
    regularizers: Any = (),
    lam: Any = None,
    key: jax.Array | None = None,
    **solve_kw: Any,
) -> tuple[jax.Array, dict]:
    """``(loss, aux)``: cross-entropy + λ·Σ mean regularizer integrals, from one solve.

    ``regularizers`` is the run's :class:`~taynode.regularizers.RegularizerSet` with its λ,
    parsed once by the caller; ``lam`` (optional) replaces that λ as given (it may be traced).
    Regularizer instances (or names) without a set are parsed here.

    ``aux`` holds ``ce``, ``acc`` (batch accuracy), ``nfe`` of the training solve, and the mean
    integral of each regularizer under its name (e.g. ``R3``).
    """
    rset = regularizers if isinstance(regularizers, _reg.RegularizerSet) else _reg.RegularizerSet.parse(regularizers)
    if lam is not None:
        rset = rset.with_lam(lam)  # one λ for all, checked by the caller (check_lam)
    logits, sol = model(x, regularizers=rset, key=key, **solve_kw)
    ce = jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    regs = {name: jnp.mean(v) for name, v in sol.integrals.items()}
    loss = ce + rset.penalty(regs) if regs else ce
    acc = jnp.mean(jnp.argmax(logits, axis=1) == y)
    return loss, dict(ce=ce, acc=acc, nfe=sol.stats["nfe"]) | regs
