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

import re
from dataclasses import dataclass
from typing import Any

import jax

from ..taylor import check_method, check_order, derivatives
from .evaluation import Evaluation, num_features, per_example_sum_squares

__all__ = ["RK", "JacobianFrobenius", "Kinetic", "Regularizer", "parse"]


class Regularizer:
    """Base class: ``name`` keys the integral in :attr:`Solution.integrals`."""

    name: str
    needs_noise: bool = False

    def integrand(self, f: Any, t: Any, z: Any, args: Any, noise: Any) -> Any:
        """The per-example integrand at (t, z) of the flow of ``f``."""
        raise NotImplementedError

    def integrand_at(self, ev: Evaluation) -> Any:
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
        """``"R<K>"``, the key of its integral."""
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


def parse(spec: Any) -> Regularizer:
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
