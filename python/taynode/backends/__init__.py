r"""Backends: the same small set of questions, asked of another engine.

Every backend takes a portable description (:mod:`taynode.portable`) and NumPy arrays, and
answers:

``derivatives(spec, z, t, order)``
    dᵏz/dtᵏ, k = 1…K, through (t, z): an array (K, batch, d);
``solve(spec, z0, ts, method, rtol, atol)``
    a :class:`SolveResult` with the states at ``ts`` and the solver's own counts;
``rk_integral(spec, z0, t0, t1, order, rtol, atol)``
    R_K = ∫ (1/d)‖dᴷz/dtᴷ‖² |dt| per example.

``"jax"`` (the default) runs taynode itself. ``"julia"`` calls TaylorSeries.jl and
OrdinaryDiffEq.jl through juliacall; it is imported, and Julia started, only when asked for.
Training stays in JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .result import SolveResult

if TYPE_CHECKING:
    from .jax_backend import JaxBackend
    from .julia_backend import JuliaBackend

__all__ = ["BACKENDS", "SolveResult", "get_backend"]

BACKENDS = ("jax", "julia")


def get_backend(name: str = "jax") -> JaxBackend | JuliaBackend:
    """The backend called ``name`` (one of :data:`BACKENDS`); ``"julia"`` starts Julia.

    Raises ``ValueError`` for an unknown name, and whatever the backend's constructor raises
    (float64 not enabled for ``"jax"``, juliacall missing for ``"julia"``).
    """
    if name == "jax":
        from .jax_backend import JaxBackend

        return JaxBackend()
    if name == "julia":
        from .julia_backend import JuliaBackend

        return JuliaBackend()
    raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
