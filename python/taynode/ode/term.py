r"""The augmented field, one implementation: :class:`RegularizedTerm`, the diffrax term that
:func:`taynode.solve` integrates and that a user puts in their own ``diffrax.diffeqsolve``.

The term's state is ``(y, {name: r})`` with :math:`\dot r = \text{direction}\cdot\text{integrand}(t, y)`
for every regularizer (:mod:`taynode.regularizers`: ``"R<K>"``, ``"kinetic"``, ``"jacobian"``), so
one ``diffeqsolve`` of it returns the trajectory and each integral
:math:`\int_{t_0}^{t_1} \text{integrand}\,|dt|`, exactly as :func:`taynode.solve` integrates them::

    term = taynode.RegularizedTerm(field, "r2")
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), t0, t1, dt0, term.initial(y0), args, ...)
    ys, integrals = term.split(sol.ys)          # integrals["R2"]

``PIDController(norm=term.state_norm)`` keeps the integrals out of the error control
(``error_control="state"``); the default norm sees them too (``"all"``, the paper's).
:meth:`RegularizedTerm.sampled` is ``quadrature="sampled"``: the unbiased estimate from a dense
solution at M stratified random times (:func:`sample_times`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jax.typing import ArrayLike

from ..regularizers import Evaluation, Regularizer, RegularizerSet, StageSharingField, hutchinson_noise

__all__ = ["SAMPLE_STREAM", "RegularizedTerm", "evaluate", "sample_times"]

SAMPLE_STREAM = 0x5A  # the sample times' PRNG stream, independent of the Hutchinson noise drawn from key


def sample_times(key: jax.Array, t0: Any, t1: Any, samples: int) -> Any:
    r"""Stratified uniform times :math:`\tau_m = t_0 + (t_1 - t_0)(m + u_m)/M`, :math:`u_m \sim U[0, 1)`.

    Each :math:`\tau_m` is uniform on its own M-th of [t0, t1], so
    :math:`|t_1 - t_0|\,\frac1M\sum_m r(\tau_m)` is an unbiased estimate of
    :math:`\int r\,|dt|`; the times are monotone in the direction of integration.
    """
    u = jax.random.uniform(key, (samples,), dtype=jnp.result_type(t0))
    return t0 + (t1 - t0) * (jnp.arange(samples, dtype=u.dtype) + u) / samples


def evaluate(f_: Any, t: Any, z: Any, args: Any, noise: Any) -> tuple[Any, Evaluation]:
    """``(f(t, z, args), Evaluation)``: one evaluation of the field, shared by the integrands.

    A field whose integrands can reuse more than f(t, z) (the CNF: its trace's vjp serves ℬ)
    subclasses :class:`~taynode.regularizers.StageSharingField`. Any other callable gives an
    Evaluation without ``fz``: sharing f(z) with 𝒦 would leave the values bitwise unchanged but
    reorder the sums of the backward pass (measured: gradients moved by 3e-15 relative in
    float64, 7e-6 in float32), and the recorded runs are kept reproducible.
    """
    if isinstance(f_, StageSharingField):
        return f_.evaluate(t, z, args, noise)
    return f_(t, z, args), Evaluation(f_, t, z, args, noise, fz=None)


def _add_axis(tree):
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, (1,) + jnp.shape(x)), tree)


def _drop_axis(tree):
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, jnp.shape(x)[1:]), tree)


class _BatchOfOne(eqx.Module):
    """A one-example field ``f(t, y, args)`` seen as a batched one: ``y`` of shape (1, ...)."""

    field: Callable

    def __call__(self, t, y, args):
        return _add_axis(self.field(t, _drop_axis(y), args))


def _parse_regularizers(regularizers) -> tuple[Regularizer, ...]:
    rset = RegularizerSet.parse(regularizers)
    if rset.step_regularizers:
        names = [r.name for r in rset.step_regularizers]
        raise ValueError(
            f"RegularizedTerm cannot compute {names}: ERNODE/SRNODE sum the solver's own error or stiffness "
            "estimates over its steps, which a term does not see; use taynode.solve(..., regularizers=...) for them, "
            "or the integrands 'r<K>', 'kinetic', 'jacobian' here"
        )
    return rset.integrands


def _field_of(field_or_term) -> Callable:
    if isinstance(field_or_term, dfx.ODETerm):
        return field_or_term.vector_field
    if isinstance(field_or_term, dfx.AbstractTerm):
        raise TypeError(
            f"RegularizedTerm takes a vector field f(t, y, args) or a diffrax.ODETerm, got {type(field_or_term).__name__} "
            "(the regularizers measure an ODE's flow; SDE and control terms have none)"
        )
    if not callable(field_or_term):
        raise TypeError(f"RegularizedTerm takes a vector field f(t, y, args) or a diffrax.ODETerm, got {field_or_term!r}")
    return field_or_term


class RegularizedTerm(dfx.AbstractTerm):
    r"""A diffrax ODE term over ``(y, {name: r})``: the field and the integrand of each regularizer.

    Works with every explicit Runge–Kutta solver, step-size controller, ``SaveAt``, dense output
    and adjoint of diffrax (``BacksolveAdjoint`` differentiates the field's arrays and ``args``).

    Args:
        field_or_term: the vector field ``f(t, y, args)`` (a function or an equinox module) or a
            ``diffrax.ODETerm`` of it.
        regularizers: anything :meth:`~taynode.regularizers.RegularizerSet.parse` accepts that is
            an integrand: ``"r2"``, ``"rnode"`` (= kinetic + jacobian), ``["r3", "kinetic"]``, or
            :class:`~taynode.regularizers.Regularizer` instances.
        key: PRNG key of Hutchinson's ε (``"jacobian"``), drawn from it shaped like y: the same ε
            at every evaluation, i.e. once per solve.
        noise: ε itself, shaped like y, instead of ``key`` (what ``taynode.solve`` draws once).
        batched: ``False`` (default): y is one example, as in a ``jax.vmap``-ed diffrax model, and
            each integral is a scalar. ``True``: the leading axis of every leaf of y is the batch
            (:func:`taynode.solve`'s convention) and each integral has shape ``(batch,)``.
        direction: ``sign(t1 - t0)``; ``-1`` for a backward-in-time solve keeps the integrals
            :math:`\int \text{integrand}\,|dt| \ge 0`.
    """

    field: Callable
    regularizers: tuple = eqx.field(static=True)
    key: jax.Array | None
    noise: Any
    batched: bool = eqx.field(static=True)
    direction: ArrayLike

    def __init__(self, field_or_term, regularizers, *, key=None, noise=None, batched: bool = False, direction: ArrayLike = 1.0):
        self.field = _field_of(field_or_term)
        self.regularizers = _parse_regularizers(regularizers)
        noisy = [r.name for r in self.regularizers if r.needs_noise]
        if noisy and key is None and noise is None:
            raise ValueError(f"regularizers {noisy} need Hutchinson noise: pass key=")
        self.key, self.noise = key, noise
        self.batched = bool(batched)
        self.direction = direction

    @property
    def names(self) -> tuple[str, ...]:
        """The integrals' names, as in ``taynode.solve``'s ``Solution.integrals`` (e.g. ``"R2"``)."""
        return tuple(r.name for r in self.regularizers)

    # ---- the augmented state ---------------------------------------------------------------

    def _check_state(self, y) -> tuple[tuple[int, ...], Any]:
        """``(shape of one integral, dtype)``, or an error naming what is wrong with ``y``."""
        leaves = jax.tree_util.tree_leaves(y)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
            raise TypeError("the state y must be a floating-point array or a pytree of them")
        dtype = jnp.result_type(*leaves)
        if not self.batched:
            return (), dtype
        if any(jnp.ndim(x) == 0 for x in leaves) or len({jnp.shape(x)[0] for x in leaves}) != 1:
            raise ValueError(
                f"batched=True needs a batch of vectors: every leaf of y with the same leading (batch) axis, got shapes "
                f"{[jnp.shape(x) for x in leaves]}; pass batched=False for a single example (and jax.vmap over examples)"
            )
        return (jnp.shape(leaves[0])[0],), dtype

    def initial(self, y0) -> tuple[Any, dict]:
        """The augmented initial state ``(y0, {name: 0})``."""
        shape, dtype = self._check_state(y0)
        return y0, {name: jnp.zeros(shape, dtype) for name in self.names}

    def split(self, ys, *, time_axis: int = 0) -> tuple[Any, dict]:
        """``(trajectory, {name: integral})`` from a solution's ``ys``: the integrals over
        [t0, last saved time]. ``time_axis`` is 1 for ``ys`` of a ``jax.vmap``-ed solve."""
        if not (isinstance(ys, tuple) and len(ys) == 2 and isinstance(ys[1], dict)):
            raise TypeError("split takes the ys of a diffeqsolve of this term: a pair (trajectory, {name: integral})")
        zs, rs = ys
        return zs, {n: jnp.take(r, -1, axis=time_axis) for n, r in rs.items()}

    @staticmethod
    def state_norm(y) -> jax.Array:
        """RMS norm of the state part only: ``PIDController(norm=term.state_norm)`` keeps the
        integrals out of the step-size control (``taynode.solve``'s ``error_control="state"``)."""
        return optx.rms_norm(y[0])

    # ---- diffrax's term interface ----------------------------------------------------------

    def _noise(self, z):
        if not any(r.needs_noise for r in self.regularizers):
            return None
        if self.noise is not None:
            return self.noise
        assert self.key is not None  # __init__ asks for key= or noise= when a regularizer needs noise
        return hutchinson_noise(self.key, z)

    def integrands(self, t, z, args) -> tuple[Any, dict]:
        """``(f(t, z, args), {name: integrand})`` at one state z (no direction applied)."""
        self._check_state(z)
        if not self.regularizers:  # no integrand to share an evaluation with
            return self.field(t, z, args), {}
        noise = self._noise(z)
        if noise is not None and jax.tree_util.tree_structure(noise) != jax.tree_util.tree_structure(z):
            raise ValueError("noise must have the structure and shapes of the state y")
        if self.batched:
            dz, ev = evaluate(self.field, t, z, args, noise)
            return dz, {r.name: r.integrand_at(ev) for r in self.regularizers}
        dz = self.field(t, z, args)
        ev = Evaluation(_BatchOfOne(self.field), t, _add_axis(z), args, None if noise is None else _add_axis(noise))
        return dz, {r.name: jnp.reshape(r.integrand_at(ev), ()) for r in self.regularizers}

    def vf(self, t, y, args):
        z, _ = y
        dz, values = self.integrands(t, z, args)
        return dz, {name: self.direction * v for name, v in values.items()}

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jax.tree_util.tree_map(lambda v: jnp.asarray(control, jnp.result_type(v)) * v, vf)

    # ---- the sampled estimator -------------------------------------------------------------

    def sampled(self, solution: dfx.Solution, args=None, *, samples: int = 1, key: jax.Array | None = None) -> dict:
        r"""``{name: |t1 - t0| (1/M) Σ_m integrand(τ_m, y(τ_m))}`` from a dense solution.

        ``solution`` comes from ``diffeqsolve(..., saveat=SaveAt(dense=True))`` of the plain field
        (or of this term); y(τ) is its dense output, so the estimate is differentiable. The M
        stratified times come from ``fold_in(key, SAMPLE_STREAM)`` and ε from ``key`` (default:
        the term's), as ``taynode.solve(..., quadrature="sampled")`` draws them.
        """
        key = self.key if key is None else key
        if key is None:
            raise ValueError("the sampled estimator draws its sample times at random: pass key= (here or to the term)")
        if getattr(solution, "interpolation", None) is None:
            raise ValueError("the sampled estimator needs the dense output: solve with saveat=diffrax.SaveAt(dense=True)")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        t0, t1 = solution.t0, solution.t1
        taus = sample_times(jax.random.fold_in(key, SAMPLE_STREAM), t0, t1, samples)
        z_tau = jax.vmap(solution.evaluate)(taus)
        if isinstance(z_tau, tuple) and len(z_tau) == 2 and isinstance(z_tau[1], dict) and set(z_tau[1]) == set(self.names):
            z_tau = z_tau[0]  # a solve of this term: its state part
        term = RegularizedTerm(self.field, self.regularizers, key=key, noise=self.noise, batched=self.batched)
        return term.estimate(taus, z_tau, args, t0, t1)

    def estimate(self, taus: jax.Array, z_tau: Any, args: Any, t0: Any, t1: Any) -> dict:
        r"""``{name: |t1 - t0| (1/M) Σ_m integrand(τ_m, z_τ[m])}``: the sampled estimate from the
        states ``z_tau`` (a leading axis of M) at the times ``taus`` (from :func:`sample_times`)."""
        values = jax.vmap(lambda t, z: self.integrands(t, z, args)[1])(taus, z_tau)
        return {name: jnp.abs(t1 - t0) * jnp.mean(v, axis=0) for name, v in values.items()}
