r"""The Latent ODE of Rubanova, Chen & Duvenaud (2019) for irregularly sampled time series,
with the speed regularizers integrated over the whole latent trajectory (Kelly et al. 2020, §6.3).

Generative model, for a record observed at times :math:`t_0 < \dots < t_{T-1}`:

.. math::

    z_0 \sim N(0, I), \qquad z(t) = z_0 + \int_{t_0}^{t} f_\theta(s, z(s))\,ds, \qquad
    x_{t_i,j} \sim N\big(\mathrm{dec}(z(t_i))_j,\ \sigma^2\big),

with :math:`f_\theta` a tanh MLP (:class:`~taynode.models.MLPDynamics`), ``dec`` a linear map
to the D observed variables, and a fixed observation noise σ (0.01 in Rubanova et al.'s
PhysioNet runs). Only observed entries (``mask = 1``) enter the likelihood.

Recognition network: a GRU (:class:`equinox.nn.GRUCell`) reads ``[x_i * m_i, m_i, Δ_i]``
backwards in time, from the last observation to the first, where Δ_i is the time from t_i to
the observation read before it (the next one in time; the window's end for the last), as
Rubanova et al.'s RNN encoder feeds Δt; it keeps its state across times with no observation at
all, so empty bins change nothing but the gaps stay visible; an MLP maps its final state to :math:`q(z_0) = N(\mu, \mathrm{diag}\,s^2)`
(returned as mean and log-std).

Decoding: the S samples :math:`z_0 = \mu + s\,\varepsilon` of every record form one batch of
:func:`taynode.solve`, with all observation times as ``ts`` and the regularizers (``"r3"``,
``"kinetic"``, ``"jacobian"``) integrated in the same solve over :math:`[t_0, t_{T-1}]`, so the
penalty covers the whole trajectory that the likelihood sees.

The training objective follows Rubanova et al.'s code (``compute_masked_likelihood`` and
``get_gaussian_likelihood``), which TayNODE reused:

* likelihood per record = mean over the D variables of (the mean log-density over that
  variable's observed times; 0 for a variable never observed in the record), so records and
  variables with many measurements do not dominate;
* KL term = :math:`\mathrm{KL}(q(z_0)\,\|\,N(0, I))` in closed form, *averaged* over latent
  dimensions, weighted by an annealed coefficient (:func:`kl_coefficient`);
* ELBO per record = mean over the S samples of the likelihood − coef·KL, or with ``iwae=True``
  Rubanova et al.'s multi-sample objective (their "IWAE" loss)
  :math:`\log \frac1S \sum_s \exp(\text{likelihood}_s - \text{coef}\cdot\mathrm{KL})`. It is
  not the IWAE bound: the closed-form KL does not depend on the sample, so this is
  log-mean-exp of the likelihoods minus the KL, which can exceed log p(x); it is kept because
  the paper's numbers come from it.

The loss is −mean(ELBO) + Σ λ_r · mean(∫ integrand_r dt). These normalizations differ from
the textbook ELBO by per-record constants, so values compare only within this code.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _validate
from ..regularizers import RegularizerSet
from ..solve import solve
from .mlp import MLPDynamics

__all__ = [
    "LatentODE",
    "gaussian_kl",
    "kl_coefficient",
    "latent_ode_loss",
    "masked_gaussian_loglik",
    "masked_mse",
]


def masked_gaussian_loglik(x: jax.Array, mean: jax.Array, mask: jax.Array, std: float | jax.Array) -> jax.Array:
    r"""Per-record log-likelihood, Rubanova et al.'s normalization.

    ``x``, ``mean``, ``mask``: (..., T, D). Returns (...,): the mean over the D variables of
    :math:`\frac{1}{n_j}\sum_{i: m_{ij}=1} \log N(x_{ij}; \mu_{ij}, \sigma^2)` (0 where
    :math:`n_j = 0`). Entries with ``mask = 0`` do not enter, whatever their values.
    """
    mask = mask.astype(mean.dtype)
    z = jnp.where(mask > 0, (x - mean) / std, 0.0)  # masked entries never touch the arithmetic
    logp = -0.5 * z**2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
    n = jnp.sum(mask, axis=-2)
    per_var = jnp.sum(logp * mask, axis=-2) / jnp.maximum(n, 1.0)
    return jnp.mean(jnp.where(n > 0, per_var, 0.0), axis=-1)


def masked_mse(x: jax.Array, mean: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error over the observed entries (all records together)."""
    mask = mask.astype(mean.dtype)
    sq = jnp.where(mask > 0, (x - mean) ** 2, 0.0)
    return jnp.sum(sq * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def gaussian_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    r"""Elementwise :math:`\mathrm{KL}(N(\mu, s^2)\,\|\,N(0, 1)) = \tfrac12(s^2 + \mu^2 - 1) - \log s`."""
    return 0.5 * (jnp.exp(2 * log_std) + mean**2 - 1.0) - log_std


def kl_coefficient(epoch: float, wait_epochs: float = 10, rate: float = 0.99) -> jax.Array:
    """Rubanova et al.'s annealing: 0 for ``wait_epochs`` epochs, then ``1 - rate**(epoch - wait)``."""
    e = jnp.floor(epoch) - wait_epochs
    return jnp.where(e < 0, 0.0, 1.0 - rate ** jnp.maximum(e, 0.0))


class LatentODE(eqx.Module):
    """GRU recognition network → q(z₀); neural ODE in the latent space; linear decoder.

    Args:
        n_vars: observed variables D (37 for PhysioNet).
        latent: latent dimension (20 in the paper).
        rec_hidden: GRU state size (40 in Rubanova et al.'s PhysioNet runs).
        rec_units: hidden width of the MLP from the GRU state to (mean, log-std).
        dyn_hidden: hidden widths of the tanh MLP dynamics (time is concatenated to each layer).
    """

    gru: eqx.nn.GRUCell
    to_q: eqx.nn.MLP
    dynamics: MLPDynamics
    decoder: eqx.nn.Linear
    n_vars: int = eqx.field(static=True)
    latent: int = eqx.field(static=True)

    def __init__(self, n_vars=37, latent=20, rec_hidden=40, rec_units=50, dyn_hidden=(50, 50), *, key, dtype=None):
        for name, v in (("n_vars", n_vars), ("latent", latent), ("rec_hidden", rec_hidden), ("rec_units", rec_units)):
            _validate.integer(name, v, 1)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.gru = eqx.nn.GRUCell(2 * n_vars + 1, rec_hidden, key=k1, dtype=dtype)
        self.to_q = eqx.nn.MLP(rec_hidden, 2 * latent, rec_units, 1, activation=jnp.tanh, key=k2, dtype=dtype)
        self.dynamics = MLPDynamics((latent, *dyn_hidden, latent), "tanh", key=k3, dtype=dtype)
        self.decoder = eqx.nn.Linear(latent, n_vars, key=k4, dtype=dtype)
        self.n_vars, self.latent = n_vars, latent

    def _check(self, values, mask, ts):
        if values.ndim != 3 or values.shape[-1] != self.n_vars or mask.shape != values.shape:
            raise ValueError(
                f"values and mask must both have shape (batch, T, {self.n_vars}), got {values.shape} and {mask.shape}"
            )
        if ts.ndim != 1 or ts.shape[0] != values.shape[1]:
            raise ValueError(f"ts must have shape (T,) = ({values.shape[1]},), got {ts.shape}")

    def encode(self, values, mask, ts):
        """q(z₀): (mean, log_std), each (batch, latent), from observations (batch, T, D) at ``ts``."""
        self._check(values, mask, ts)
        inputs = jnp.concatenate([values * mask, mask], axis=-1)
        seen = jnp.any(mask > 0, axis=-1)  # (batch, T)
        batch = values.shape[0]
        h0 = jnp.zeros((batch, self.gru.hidden_size), values.dtype)
        later0 = jnp.full((batch,), ts[-1], values.dtype)  # time of the observation read before

        def step(carry, xs):
            h, later = carry
            x, seen_t, t = xs
            dt = (later - t).astype(x.dtype)
            h_new = jax.vmap(self.gru)(jnp.concatenate([x, dt[:, None]], axis=-1), h)
            return (jnp.where(seen_t[:, None], h_new, h), jnp.where(seen_t, t, later)), None

        xs = (jnp.swapaxes(inputs, 0, 1), seen.T, jnp.asarray(ts, values.dtype))
        (h, _), _ = jax.lax.scan(step, (h0, later0), xs, reverse=True)
        out = jax.vmap(self.to_q)(h)
        return out[:, : self.latent], out[:, self.latent :]

    def decode(self, z0, ts, *, regularizers=(), key=None, **solve_kw):
        """Solve the latent ODE from ``z0`` (N, latent) through ``ts``; return the decoded means
        (T, N, D) and the :class:`~taynode.solve.Solution` (regularizer integrals, NFE)."""
        sol = solve(self.dynamics, z0, ts, regularizers=regularizers, key=key, **solve_kw)
        return sol.ys @ self.decoder.weight.T + self.decoder.bias, sol


def latent_ode_loss(
    model: LatentODE,
    values: jax.Array,
    mask: jax.Array,
    ts: jax.Array,
    key: jax.Array,
    *,
    n_samples: int = 3,
    kl_coef: float | jax.Array = 1.0,
    obs_std: float = 0.01,
    iwae: bool = False,
    regularizers: Any = (),
    lam: Any = None,
    **solve_kw: Any,
) -> tuple[jax.Array, dict]:
    """The loss of one batch and its parts (see the module docstring).

    Args:
        values, mask: (batch, T, D); ts: (T,), the observation times of the batch.
        key: PRNG key for the z₀ samples (and the Jacobian regularizer's noise).
        n_samples: z₀ samples per record (S).
        kl_coef: weight of the KL term (annealed by the caller, :func:`kl_coefficient`).
        regularizers: the run's :class:`~taynode.regularizers.RegularizerSet` with one λ per
            regularizer, parsed once by the caller (names or instances are parsed here).
        lam: optional weights λ that replace the set's, as given (they may be traced).
        solve_kw: passed to :func:`taynode.solve` (``rtol``, ``atol``, ``solver``, ``adjoint``).

    Returns ``(loss, parts)`` with ``parts`` = elbo, loglik, kl, mse, nfe and each
    regularizer's mean integral (by name).
    """
    rset = regularizers if isinstance(regularizers, RegularizerSet) else RegularizerSet.parse(regularizers)
    rset = rset.with_lam(tuple(lam)) if lam is not None else rset  # λ_i as given (they may be traced)
    if rset.regularizers and (rset.lam is None or not isinstance(rset.lam, tuple)):
        raise ValueError(f"give one weight λ per regularizer: {len(rset)} regularizers {list(rset.names)}, λ = {rset.lam}")
    regs = rset.regularizers
    _validate.integer("n_samples", n_samples, 1)
    if not obs_std > 0:
        raise ValueError(f"obs_std must be > 0, got {obs_std}")
    ekey, rkey = jax.random.split(key)
    mean, log_std = model.encode(values, mask, ts)
    batch = values.shape[0]
    eps = jax.random.normal(ekey, (n_samples, batch, model.latent), mean.dtype)
    z0 = (mean + jnp.exp(log_std) * eps).reshape(n_samples * batch, model.latent)
    xhat, sol = model.decode(z0, ts, regularizers=regs, key=rkey, **solve_kw)
    xhat = jnp.moveaxis(xhat.reshape(len(ts), n_samples, batch, model.n_vars), 0, 2)  # (S, batch, T, D)
    loglik = masked_gaussian_loglik(values[None], xhat, mask[None], obs_std)  # (S, batch)
    kl = jnp.mean(gaussian_kl(mean, log_std), axis=-1)  # (batch,)
    per_sample = loglik - kl_coef * kl
    if iwae:
        elbo = jax.scipy.special.logsumexp(per_sample, axis=0) - math.log(n_samples)
    else:
        elbo = jnp.mean(per_sample, axis=0)
    parts = {r.name: jnp.mean(sol.integrals[r.name]) for r in regs}
    loss = -jnp.mean(elbo) + (rset.penalty(parts) if regs else 0.0)
    parts |= dict(
        elbo=jnp.mean(elbo),
        loglik=jnp.mean(loglik),
        kl=jnp.mean(kl),
        mse=masked_mse(values[None], xhat, jnp.broadcast_to(mask[None], xhat.shape)),
        nfe=sol.stats["nfe"],
    )
    return loss, parts
