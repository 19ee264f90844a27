r"""Speed regularizers, each an integrand that :func:`taynode.solve` appends to the ODE state.

Every regularizer maps ``(f, t, z, args, noise)`` to one value per example (the leading axis of
each state leaf is the batch axis), and the solver integrates it along the trajectory, so the
dynamics and all regularizers come out of one solve:

======================  ==========================================================  ==========
name                    integrand (per example, d = number of features)             paper
======================  ==========================================================  ==========
``"R<K>"`` (:class:`RK`) :math:`\frac1d \lVert d^K z/dt^K \rVert^2`                     TayNODE
``"kinetic"``            :math:`\lVert f(t, z) \rVert^2`                              RNODE 𝒦
``"jacobian"``           :math:`\lVert \varepsilon^\top \nabla_z f(t, z) \rVert^2`    RNODE ℬ
======================  ==========================================================  ==========

Normalization: R_K is *averaged* over the features, as in the TayNODE authors' code, so that
the paper's λ values carry over; 𝒦 and ℬ are squared norms (*summed*), as Finlay et al.
(2020) define them. ℬ is Hutchinson's estimator of :math:`\lVert\nabla_z f\rVert_F^2` with
:math:`\varepsilon \sim N(0, I)` drawn once per solve.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from .taylor import check_method, check_order, derivatives

__all__ = ["RK", "Evaluation", "JacobianFrobenius", "Kinetic", "Regularizer", "RegularizerSet", "hutchinson_noise", "parse"]


def per_example_sum_squares(tree):
    """Sum of squares over every axis but the leading (batch) one, across all leaves."""
    return sum(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))) for x in jax.tree_util.tree_leaves(tree))


def num_features(tree) -> int:
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


class Regularizer:
    """Base class: ``name`` keys the integral in :attr:`Solution.integrals`."""

    name: str
    needs_noise: bool = False

    def integrand(self, f, t, z, args, noise):
        raise NotImplementedError

    def integrand_at(self, ev: Evaluation):
        """The integrand at one evaluation of the vector field (what :func:`taynode.solve`
        integrates), reusing what ``ev`` already holds; by default :meth:`integrand`."""
        return self.integrand(ev.f, ev.t, ev.z, ev.args, ev.noise)


@dataclass(frozen=True)
class RK(Regularizer):
    """R_K = ∫ (1/d)‖dᴷz/dtᴷ‖² dt, the K-th total derivative by Taylor-mode AD."""

    order: int
    method: str = "incremental"  # fastest gradient (benchmarks/taylor_methods.py)

    def __post_init__(self):
        check_order(self.order)
        check_method(self.method)

    @property
    def name(self) -> str:
        return f"R{self.order}"

    def integrand(self, f, t, z, args, noise):
        dk = derivatives(f, t, z, args, self.order, self.method)[-1]
        return per_example_sum_squares(dk) / num_features(z)


@dataclass(frozen=True)
class Kinetic(Regularizer):
    """RNODE's kinetic energy 𝒦 = ∫ ‖f‖² dt."""

    name: str = "kinetic"

    def integrand(self, f, t, z, args, noise):
        return per_example_sum_squares(f(t, z, args))

    def integrand_at(self, ev):
        if ev.fz is None:
            return self.integrand(ev.f, ev.t, ev.z, ev.args, ev.noise)
        return per_example_sum_squares(ev.fz)  # the solver's own f(t, z)


@dataclass(frozen=True)
class JacobianFrobenius(Regularizer):
    """RNODE's ℬ = ∫ ‖εᵀ∇_z f‖² dt (Hutchinson; ε ~ N(0, I) fixed for the solve)."""

    name: str = "jacobian"
    needs_noise: bool = True

    def integrand(self, f, t, z, args, noise):
        _, vjp = jax.vjp(lambda z_: f(t, z_, args), z)
        (eps_j,) = vjp(noise)
        return per_example_sum_squares(eps_j)

    def integrand_at(self, ev):
        if ev.frobenius is not None:
            return ev.frobenius
        if ev.noise_vjp is not None:
            return per_example_sum_squares(ev.noise_vjp)
        return self.integrand(ev.f, ev.t, ev.z, ev.args, ev.noise)


def hutchinson_noise(key: jax.Array, z: Any) -> Any:
    """ε ~ N(0, I) shaped like the state ``z`` (one draw per solve)."""
    leaves, treedef = jax.tree_util.tree_flatten(z)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )


def parse(spec) -> Regularizer:
    """A regularizer from a name: ``"r3"``/``"R3"`` → RK(3), ``"kinetic"``, ``"jacobian"``."""
    if isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, str):
        s = spec.strip().lower()
        m = re.fullmatch(r"r(\d+)", s)
        if m:
            return RK(int(m.group(1)))
        if s in ("kinetic", "k"):
            return Kinetic()
        if s in ("jacobian", "jacobian_frobenius", "b", "frobenius"):
            return JacobianFrobenius()
    raise ValueError(f"unknown regularizer {spec!r}; use 'r<K>' (e.g. 'r3'), 'kinetic', 'jacobian', or a Regularizer instance")


RNODE = ("kinetic", "jacobian")  # Finlay et al.'s pair, the alias "rnode"
NO_REGULARIZERS = ("none", "")


def _parse_one(spec, taylor_method: str | None):
    """An integrand :class:`Regularizer` or a solver-heuristic one (ERNODE/SRNODE) from a name or
    instance; R_K named by a string gets ``taylor_method`` when one is given."""
    from . import solver_heuristics  # it needs nothing from here; imported late to keep this module light

    step = solver_heuristics.parse(spec)
    if step is not None:
        return step
    r = parse(spec)
    if taylor_method is not None and isinstance(spec, str) and isinstance(r, RK):
        r = RK(r.order, taylor_method)
    return r


def _check_sign(w: float, of: str) -> None:
    if not w >= 0:  # also catches NaN
        raise ValueError(f"the regularization weight λ{of} must be >= 0, got {w}")
    if not math.isfinite(w):
        raise ValueError(f"the regularization weight λ{of} must be finite, got {w}")


def _check_weight(name: str, w) -> float:
    try:
        w = float(w)
    except (TypeError, ValueError):
        raise ValueError(f"the weight λ of {name} must be a number, got {w!r}") from None
    _check_sign(w, f" of {name}")
    if w == 0:
        # the regularizer would be integrated at every step and then multiplied by 0
        raise ValueError(
            f"regularizer {name} is chosen but its weight λ is 0; pass λ > 0 (--lam), or reg 'none' to train unregularized"
        )
    return w


@dataclass(frozen=True)
class RegularizerSet:
    r"""The regularizers of one model, parsed once, with their weights λ.

    :meth:`parse` reads ``"none"``, ``"r3"``, ``"rnode"`` (= ``"kinetic+jacobian"``: RNODE's 𝒦 + ℬ),
    ``"kinetic+jacobian"``, ``"ernode"``, a list of names or :class:`Regularizer` instances. λ
    is one number shared by all (:math:`\lambda \sum_i R_i`, the MNIST and FFJORD studies'
    convention), or one per regularizer (a sequence in order, or ``{name: λ}``:
    :math:`\sum_i \lambda_i R_i`, the Latent ODE's), or ``None`` (a set to measure, no penalty).

    Attributes:
        regularizers: the parsed instances in the order of ``Solution.integrals``: the
            :mod:`taynode.regularizers` integrands, then the :mod:`taynode.solver_heuristics`
            step regularizers, each in the order given.
        lam: the shared λ (a float), the per-regularizer λ (a tuple), or ``None``.
    """

    regularizers: tuple = ()
    lam: float | tuple | None = None

    @classmethod
    def parse(cls, spec=(), lam=None, *, taylor_method: str | None = None) -> RegularizerSet:
        """Parse ``spec`` and check ``lam`` against it (see the class docstring).

        ``taylor_method`` is the Taylor-mode method of R_K named by a string (default: R_K's own).
        Errors: unknown names, a name given twice, λ < 0, NaN or inf, λ = 0 with a regularizer,
        λ > 0 with none, per-regularizer λ of the wrong length or names.
        """
        if isinstance(spec, RegularizerSet):
            return spec if lam is None else cls(spec.regularizers, cls._weights(spec.regularizers, lam))
        if isinstance(spec, (str, Regularizer)):
            s = spec.strip().lower() if isinstance(spec, str) else None
            if s in NO_REGULARIZERS:
                names = []
            elif s == "rnode":
                names = list(RNODE)
            elif s is not None:
                names = s.split("+")
            else:
                names = [spec]
        else:
            names = list(spec)
        regs = [_parse_one(n, taylor_method) for n in names]
        # integrands first, then step regularizers: the order of Solution.integrals
        regs = tuple(r for r in regs if isinstance(r, Regularizer)) + tuple(r for r in regs if not isinstance(r, Regularizer))
        seen = [r.name for r in regs]
        if len(set(seen)) != len(seen):
            raise ValueError(f"regularizers must have distinct names: {spec!r} names one regularizer twice ({seen})")
        return cls(regs, cls._weights(regs, lam))

    @staticmethod
    def _weights(regs, lam):
        if lam is None:
            return None
        names = [r.name for r in regs]
        if isinstance(lam, dict):
            given = {parse(k).name if isinstance(k, str) and not _is_step_name(k) else str(k).lower(): v for k, v in lam.items()}
            if sorted(given) != sorted(names):
                raise ValueError(f"λ per regularizer must name exactly the regularizers {names}, got {list(lam)}")
            return tuple(_check_weight(n, given[n]) for n in names)
        if isinstance(lam, (list, tuple)):
            if len(lam) != len(regs):
                raise ValueError(f"give one weight λ per regularizer: {len(regs)} regularizers {names}, {len(lam)} weights")
            return tuple(_check_weight(n, w) for n, w in zip(names, lam))
        try:
            w = float(lam)
        except (TypeError, ValueError):
            raise ValueError(f"λ must be a number, one per regularizer, or {{name: λ}}, got {lam!r}") from None
        _check_sign(w, "")
        if w > 0 and not regs:
            raise ValueError(f"λ = {w} > 0 but no regularizer is chosen (reg 'none')")
        if w == 0 and regs:
            raise ValueError(
                "a regularizer is chosen but its weight λ is 0; pass λ > 0 (--lam), or reg 'none' to train unregularized"
            )
        return w

    @property
    def names(self) -> tuple:
        return tuple(r.name for r in self.regularizers)

    @property
    def integrands(self) -> tuple:
        """The regularizers integrated (or sampled) along the trajectory."""
        return tuple(r for r in self.regularizers if isinstance(r, Regularizer))

    @property
    def step_regularizers(self) -> tuple:
        """ERNODE/SRNODE: summed over the solver's accepted steps."""
        return tuple(r for r in self.regularizers if not isinstance(r, Regularizer))

    def __iter__(self):
        return iter(self.regularizers)

    def __len__(self) -> int:
        return len(self.regularizers)

    def penalty(self, values):
        r"""Σ λ_i·R_i from ``values = {name: R_i}`` (e.g. batch means of ``Solution.integrals``).

        A shared λ is applied as :math:`\lambda \sum_i R_i`, per-regularizer ones as
        :math:`\sum_i \lambda_i R_i` (each the same arithmetic the studies used, so losses are
        unchanged to the last bit). 0 without regularizers.
        """
        if self.lam is None:
            raise ValueError("this regularizer set has no weights λ: parse it with lam=")
        if not self.regularizers:
            return 0.0
        if isinstance(self.lam, tuple):
            return sum((w * values[n] for w, n in zip(self.lam, self.names)), 0.0)
        return self.lam * sum(values[n] for n in self.names)


def _is_step_name(name: str) -> bool:
    from . import solver_heuristics

    return solver_heuristics.parse(name) is not None
