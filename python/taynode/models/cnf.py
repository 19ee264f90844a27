r"""FFJORD continuous normalizing flows (Grathwohl et al. 2019) with RNODE and TayNODE regularizers.

A data point :math:`x` is carried to :math:`z(T)` by :math:`\dot z = f(t, z)` from
:math:`z(0) = x`; the log-density changes along the way by the instantaneous change of variables

.. math::  \frac{d}{dt}\,\Delta(t) = -\operatorname{tr}\frac{\partial f}{\partial z}(t, z(t)),
           \qquad \Delta(0) = 0,\qquad
           \log p(x) = \log \mathcal N\big(z(T); 0, I\big) - \Delta(T).

(Equivalently, the flow read as a sampler integrates from :math:`z(T) \sim \mathcal N(0, I)`
back to :math:`t = 0`; for :math:`f = Az`, :math:`\log p(x) = \log\mathcal N(e^{AT}x) +
T\operatorname{tr}A`.) :math:`T = 1` by default, fixed as in RNODE and the TayNODE code.

The trace, per example:

``trace="hutchinson"`` (FFJORD)
    :math:`\operatorname{tr} J \approx \varepsilon^\top J \varepsilon` with one vector–Jacobian
    product :math:`\varepsilon^\top J`; :math:`\varepsilon` (``noise="gaussian"`` or
    ``"rademacher"``) is drawn once per solve and passed to the dynamics through the solver's
    ``args``, so it is the same at every evaluation of the solve.
``trace="exact"``
    :math:`\sum_i (J e_i)_i` from d Jacobian–vector products (d = features per example):
    for small d (2-D toys, tests).

Regularizers integrated in the same solve (one value per example, as :mod:`taynode.regularizers`
defines them, so names and normalizations agree with :func:`taynode.solve`):

* ``"kinetic"`` 𝒦 = ∫‖f‖² dt, from the f the trace's vjp already returns;
* ``"jacobian"`` ℬ = ∫‖εᵀ∂f/∂z‖² dt, the *same* vjp :math:`\varepsilon^\top J` that the
  Hutchinson trace uses (one vjp per evaluation serves both, as in RNODE); with
  ``trace="exact"`` it is the exact :math:`\lVert J\rVert_F^2 = \sum_i \lVert J e_i\rVert^2`;
* ``"R<K>"`` (:class:`~taynode.regularizers.RK`) = ∫ (1/d)‖dᴷz/dtᴷ‖² dt of the flow of z
  alone (the log-density state does not enter f), by Taylor-mode AD; the TayNODE code used
  R₂ for FFJORD.

The per-example Jacobian products assume f treats the examples of a batch independently (no
batch statistics), which holds for every model here.

Architectures: :class:`ConcatSquashMLP` (FFJORD's ``ConcatSquashLinear`` layers, softplus: the
tabular model), :class:`~taynode.models.MLPDynamics` (small MLP for 2-D toys, time
concatenated) and :class:`ConvDynamics` (3×3 convolutions, 64 channels, softplus, time as an
extra input channel, single scale: the MNIST model).

Images: :func:`dequantize_logit` (uniform dequantization, then the logit transform with
:math:`\alpha`; its log-determinant is returned) and :func:`bits_per_dim`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import regularizers as _reg
from .._jax import is_tracer
from ..solve import solve
from .mlp import activation as _activation

__all__ = [
    "CNF",
    "ConcatSquashLinear",
    "ConcatSquashMLP",
    "ConvDynamics",
    "FlowResult",
    "bits_per_dim",
    "dequantize_logit",
    "draw_noise",
    "standard_normal_logprob",
    "MAX_EXACT_TRACE_DIM",
]

TRACES = ("hutchinson", "exact")
NOISES = ("gaussian", "rademacher")
MAX_EXACT_TRACE_DIM = 1024  # the exact trace costs d JVPs per evaluation


def _feature_axes(x):
    return tuple(range(1, x.ndim))


def standard_normal_logprob(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) per example (summed over every axis but the leading batch axis)."""
    d = math.prod(z.shape[1:])
    return -0.5 * jnp.sum(jnp.square(z), axis=_feature_axes(z)) - 0.5 * d * math.log(2 * math.pi)


def draw_noise(key: jax.Array, like: jax.Array, kind: str = "gaussian") -> jax.Array:
    """Hutchinson's ε shaped like ``like``: N(0, I) (the draw of
    :func:`taynode.regularizers.hutchinson_noise`, so one key gives the same ε there) or
    Rademacher ±1."""
    if kind == "gaussian":
        return _reg.hutchinson_noise(key, like)
    if kind == "rademacher":
        return jax.random.rademacher(key, like.shape, like.dtype)
    raise ValueError(f"unknown noise {kind!r}; valid: {list(NOISES)}")


# --------------------------------------------------------------------------------------------
# Architectures


class ConcatSquashLinear(eqx.Module):
    r"""FFJORD's ``ConcatSquashLinear``: :math:`(Wx + b)\,\sigma(w_g t + b_g) + w_b t`."""

    weight: jax.Array
    bias: jax.Array
    gate_weight: jax.Array
    gate_bias: jax.Array
    hyper_bias: jax.Array

    def __init__(self, n_in: int, n_out: int, *, key, dtype=None):
        k1, k2, k3 = jax.random.split(key, 3)
        lin = eqx.nn.Linear(n_in, n_out, key=k1, dtype=dtype)
        gate = eqx.nn.Linear(1, n_out, key=k2, dtype=dtype)
        hyper = eqx.nn.Linear(1, n_out, use_bias=False, key=k3, dtype=dtype)
        self.weight, self.bias = lin.weight, lin.bias
        self.gate_weight, self.gate_bias = gate.weight[:, 0], gate.bias
        self.hyper_bias = hyper.weight[:, 0]

    def __call__(self, t, x):
        t = jnp.asarray(t, x.dtype)
        return (x @ self.weight.T + self.bias) * jax.nn.sigmoid(t * self.gate_weight + self.gate_bias) + t * self.hyper_bias


class ConcatSquashMLP(eqx.Module):
    """dz/dt from ConcatSquash layers ``sizes = (d, h1, ..., d)`` with ``activation`` between
    them (softplus: the paper's tabular FFJORD; tanh: FFJORD's toys). Input (batch, d)."""

    layers: list
    activation: str = eqx.field(static=True)

    def __init__(self, sizes, activation: str = "softplus", *, key, dtype=None):
        _activation(activation)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least input and output sizes, got {sizes}")
        if sizes[0] != sizes[-1]:
            raise ValueError(f"a flow's dynamics map R^d to R^d: sizes must start and end with d, got {sizes}")
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [ConcatSquashLinear(a, b, key=k, dtype=dtype) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        self.activation = activation

    def __call__(self, t, z, args=None):
        return _apply_layers(self.layers, self.activation, t, z)


def _apply_layers(layers, activation, t, h):
    """``layer(t, h)`` in turn, with the activation between layers (not after the last)."""
    act = _activation(activation)
    for i, layer in enumerate(layers):
        h = layer(t, h)
        if i < len(layers) - 1:
            h = act(h)
    return h


class ConcatConv2d(eqx.Module):
    """A 3×3 convolution (stride 1, same padding) whose input gets time as one more channel."""

    weight: jax.Array  # (out, in + 1, k, k)
    bias: jax.Array  # (out,)

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, key, dtype=None):
        conv = eqx.nn.Conv2d(c_in + 1, c_out, kernel, padding=kernel // 2, key=key, dtype=dtype)
        self.weight, self.bias = conv.weight, conv.bias[:, 0, 0]

    def __call__(self, t, x):
        tt = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0], 1) + x.shape[2:])
        h = jnp.concatenate([tt, x], axis=1)
        out = jax.lax.conv_general_dilated(h, self.weight, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + self.bias[None, :, None, None]


class ConvDynamics(eqx.Module):
    """The MNIST CNF's dynamics (single scale): ``layers`` ConcatConv2d 3×3 layers
    ``channels → hidden → … → channels`` with softplus between them. Input (batch, C, H, W)."""

    layers: list
    activation: str = eqx.field(static=True)

    def __init__(self, channels: int = 1, hidden: int = 64, layers: int = 3, activation: str = "softplus", *, key, dtype=None):
        _activation(activation)
        if layers < 1 or hidden < 1 or channels < 1:
            raise ValueError(f"channels, hidden and layers must be >= 1, got {channels}, {hidden}, {layers}")
        sizes = [channels] + [hidden] * (layers - 1) + [channels]
        keys = jax.random.split(key, layers)
        self.layers = [ConcatConv2d(a, b, key=k, dtype=dtype) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        self.activation = activation

    def __call__(self, t, z, args=None):
        if z.ndim != 4:
            raise ValueError(f"ConvDynamics expects images of shape (batch, channels, height, width), got {z.shape}")
        return _apply_layers(self.layers, self.activation, t, z)


# --------------------------------------------------------------------------------------------
# The flow


class _Flow(_reg.StageSharingField):
    r"""The flow's vector field on the state ``(z, Δ)``: ``(f(t, z), −tr ∂f/∂z)``, as
    :func:`taynode.solve` integrates it; args are ``(the dynamics' args, ε)``.

    :meth:`evaluate` also hands the regularizers of the flow of z alone what this evaluation
    computed (:class:`~taynode.regularizers.Evaluation`): f(z) for 𝒦, and the trace's
    εᵀ∂f/∂z (Hutchinson) or Jacobian columns (exact) for ℬ, so one vjp per evaluation serves
    the trace and ℬ.
    """

    dynamics: object
    trace: str = eqx.field(static=True)

    def evaluate(self, t, y, args, noise=None):
        """``((f(t, z), −tr ∂f/∂z), Evaluation)`` at the state ``y = (z, Δ)``."""
        z = y[0]
        user_args, eps = args  # ε travels in args: the CNF draws it (Gaussian or Rademacher), not solve

        def f(z_):
            return self.dynamics(t, z_, user_args)

        b = z.shape[0]
        if self.trace == "exact":
            fz, jvp = jax.linearize(f, z)
            d = math.prod(z.shape[1:])
            basis = jnp.broadcast_to(jnp.eye(d, dtype=z.dtype)[:, None, :], (d, b, d)).reshape((d,) + z.shape)
            cols = jax.vmap(jvp)(basis).reshape(d, b, d)  # cols[i, n] = J_n e_i
            div = jnp.einsum("ini->n", cols)
            frob, eps_j = jnp.sum(jnp.square(cols), axis=(0, 2)), None
        else:
            fz, vjp = jax.vjp(f, z)
            (eps_j,) = vjp(eps)  # εᵀJ, per example: serves the trace and ℬ
            div = jnp.sum((eps_j * eps).reshape(b, -1), axis=1)
            frob = _reg.per_example_sum_squares(eps_j)
        ev = _reg.Evaluation(self.dynamics, t, z, user_args, eps, fz, noise_vjp=eps_j, frobenius=frob)
        return (fz, -div), ev


class _FlowRegularizer(_reg.Regularizer):
    """A regularizer of the flow of z alone, on the state (z, Δ) of :class:`_Flow`: integrated,
    it reads the flow's own evaluation; sampled (``integrand``), it evaluates the flow afresh at
    (t, z(t)), with the same ε (or the exact Frobenius norm). ε lives in args, so
    ``needs_noise`` stays False and :func:`taynode.solve` draws none."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def integrand(self, f, t, y, args, noise):
        return self.inner.integrand_at(f.evaluate(t, y, args, noise)[1])

    def integrand_at(self, ev):
        return self.inner.integrand_at(ev)


class FlowResult(eqx.Module):
    """What :meth:`CNF.forward` returns (one entry per example where it has a batch axis).

    Attributes:
        z: z(T), the data mapped to the base space.
        delta_logp: Δ(T) = −∫₀ᵀ tr(∂f/∂z) dt.
        log_prob: log p(x) = log N(z(T)) − Δ(T).
        integrals: ``{name: ∫₀ᵀ integrand dt}`` for each regularizer.
        stats: the solve's ``nfe``, ``steps``, ``rejected``, ``attempted``.
    """

    z: jax.Array
    delta_logp: jax.Array
    log_prob: jax.Array
    integrals: dict
    stats: dict


def _flow_regularizers(regularizers) -> _reg.RegularizerSet:
    """The set parsed once: integrands as :class:`_FlowRegularizer` (they measure z alone), the
    solver-heuristic ones (ERNODE, SRNODE) as they are (they measure the solver's state (z, Δ))."""
    rset = regularizers if isinstance(regularizers, _reg.RegularizerSet) else _reg.RegularizerSet.parse(regularizers)
    return _reg.RegularizerSet(tuple(_FlowRegularizer(r) for r in rset.integrands) + rset.step_regularizers)


def _check_end_time(t1):
    """A concrete end time must be finite and > 0; a traced one (STEER's draw) is taken as is."""
    if is_tracer(t1):
        return t1
    v = float(t1)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"t1 must be a finite number > 0, got {t1!r}")
    return t1


class CNF(eqx.Module):
    """A continuous normalizing flow with base N(0, I) at ``t1`` and data at t = 0.

    Args:
        dynamics: ``f(t, z, args)`` on a batch, e.g. :class:`ConcatSquashMLP`.
        t1: the flow's end time T > 0 (default 1).
        trace: ``"hutchinson"`` (default) or ``"exact"``.
        noise: Hutchinson's ε, ``"gaussian"`` (default) or ``"rademacher"``.
    """

    dynamics: object
    t1: float = eqx.field(static=True, default=1.0)
    trace: str = eqx.field(static=True, default="hutchinson")
    noise: str = eqx.field(static=True, default="gaussian")

    def __check_init__(self):
        if self.trace not in TRACES:
            raise ValueError(f"unknown trace {self.trace!r}; valid: {list(TRACES)}")
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; valid: {list(NOISES)}")
        if not (isinstance(self.t1, (int, float)) and math.isfinite(self.t1) and self.t1 > 0):
            raise ValueError(f"t1 must be a finite number > 0, got {self.t1!r}")

    def _noise(self, key, noise, x):
        if self.trace == "exact":
            return None
        if noise is not None:
            if jnp.shape(noise) != jnp.shape(x):
                raise ValueError(f"noise has shape {jnp.shape(noise)}, the data {jnp.shape(x)}; they must match")
            return jnp.asarray(noise, x.dtype)
        if key is None:
            raise ValueError("the Hutchinson trace needs noise: pass key= (or noise=, or use trace='exact')")
        return draw_noise(key, x, self.noise)

    def _check_dim(self, x):
        d = math.prod(x.shape[1:])
        if self.trace == "exact" and d > MAX_EXACT_TRACE_DIM:
            raise ValueError(
                f"trace='exact' needs {d} JVPs per evaluation for {d} features; use trace='hutchinson' above {MAX_EXACT_TRACE_DIM}"
            )

    def forward(self, x, *, key=None, noise=None, regularizers=(), args=None, t1=None, **solve_kw) -> FlowResult:
        """Map data ``x`` (batch, ...) to z(T) with Δ and the regularizers' integrals.

        ``key`` draws Hutchinson's ε (or pass ``noise`` of x's shape); ``regularizers`` are a
        :class:`~taynode.regularizers.RegularizerSet` (parsed once per run), or names or :class:`~taynode.regularizers.Regularizer` instances (``"kinetic"``,
        ``"jacobian"``, ``"r2"``, …) of the flow of z, and the solver heuristics ``"ernode"``,
        ``"srnode"`` (:mod:`taynode.regularizers.heuristics`) of the solve of (z, Δ); ``solve_kw`` go
        to :func:`taynode.solve` (``solver``, ``steps``, ``rtol``, ``atol``, ``max_steps``,
        ``adjoint``, ``quadrature``, ``samples``, ``error_control``); with
        ``quadrature="sampled"`` the regularizers are evaluated at times drawn from ``key``.
        ``t1``: the end time T of this solve (default the model's), may be traced (STEER:
        :func:`taynode.models.classifier.steer_end_time`).
        """
        x = jnp.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"x needs a leading batch axis and at least one feature axis, got shape {x.shape}")
        self._check_dim(x)
        t1 = self.t1 if t1 is None else _check_end_time(t1)
        regs = _flow_regularizers(regularizers)
        eps = self._noise(key, noise, x)
        y0 = (x, jnp.zeros((x.shape[0],), x.dtype))
        sol = solve(_Flow(self.dynamics, self.trace), y0, (0.0, t1), (args, eps), regularizers=regs, key=key, **solve_kw)
        z, delta = sol.z1
        return FlowResult(
            z=z, delta_logp=delta, log_prob=standard_normal_logprob(z) - delta, integrals=sol.integrals, stats=sol.stats
        )

    def log_prob(self, x, **kw):
        """log p(x) per example (see :meth:`forward` for the arguments)."""
        return self.forward(x, **kw).log_prob

    def sample(self, key, n: int, shape, *, args=None, dtype=None, **solve_kw):
        """``n`` samples: z(T) ~ N(0, I) of feature ``shape``, integrated back to t = 0."""
        dtype = dtype or jnp.result_type(float)
        zT = jax.random.normal(key, (n, *tuple(shape)), dtype)
        sol = solve(self.dynamics, zT, (self.t1, 0.0), args, **solve_kw)
        return sol.z1

    def sample_with_log_prob(self, key, n: int, shape, *, noise_key=None, args=None, dtype=None, **solve_kw):
        """``(x, log p(x))`` by integrating (z, Δ) backwards from z(T) ~ N(0, I):
        log p(x) = log N(z(T)) + ∫₀ᵀ tr(∂f/∂z) dt, the trace exact or Hutchinson (``noise_key``)."""
        dtype = dtype or jnp.result_type(float)
        zT = jax.random.normal(key, (n, *tuple(shape)), dtype)
        self._check_dim(zT)
        eps = self._noise(noise_key, None, zT)
        sol = solve(_Flow(self.dynamics, self.trace), (zT, jnp.zeros((n,), dtype)), (self.t1, 0.0), (args, eps), **solve_kw)
        x, delta0 = sol.z1
        return x, standard_normal_logprob(zT) + delta0


# --------------------------------------------------------------------------------------------
# Images


def dequantize_logit(
    key: jax.Array, x: jax.Array, alpha: float = 1e-6, levels: int = 256, dtype: jnp.dtype | type | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Uniform dequantization and the logit transform of integer images ``x`` in
    {0, …, levels−1} (batch, ...).

    .. math::  v = (x + u)/L,\ u \sim U[0, 1)^D;\qquad s = \alpha + (1 - 2\alpha)v;\qquad
               y = \log s - \log(1 - s),

    and ``logdet`` = :math:`\sum \log|dy/dv| = \sum [\log(1-2\alpha) - \log s - \log(1-s)]` per
    example, so :math:`\log p_v(v) = \log p_y(y) + \text{logdet}`. FFJORD used α = 1e-6
    (MNIST) and α = 0.05 (CIFAR-10).

    Returns:
        ``(y, logdet)`` in ``dtype`` (default: JAX's default float).
    """
    if not 0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
    x = jnp.asarray(x)
    dtype = dtype or jnp.result_type(float)
    xf = x.astype(dtype)
    u = jax.random.uniform(key, x.shape, dtype)
    v = (xf + u) / levels
    s = alpha + (1 - 2 * alpha) * v
    y = jnp.log(s) - jnp.log1p(-s)
    logdet = jnp.sum(math.log1p(-2 * alpha) - jnp.log(s) - jnp.log1p(-s), axis=_feature_axes(x))
    return y, logdet


def bits_per_dim(log_prob_y: jax.Array, logdet: jax.Array, dims: int, levels: int = 256) -> jax.Array:
    r"""Bits per dimension of the discrete images from the flow's ``log_prob_y`` of the
    logit-space ``y`` and the preprocessing's ``logdet`` (from :func:`dequantize_logit`):

    .. math::  \text{bpd} = -\frac{\log p_y(y) + \text{logdet} - D\log L}{D \log 2},

    the dequantized density on :math:`[0, L)^D` being :math:`p_v / L^D` (a lower bound on the
    discrete log-likelihood).
    """
    return -(log_prob_y + logdet - dims * math.log(levels)) / (dims * math.log(2))
