"""The Taylor-series integrator under its first name: :mod:`taynode.ode.taylor_method` (the
integrator) and :mod:`taynode.ode.steps` (Jorba & Zou's step and order rules)."""

from .ode.steps import jorba_zou_order, jorba_zou_step
from .ode.taylor_method import horner, integrate_taylor, taylor_coefficients, taylor_solve

__all__ = ["horner", "integrate_taylor", "jorba_zou_order", "jorba_zou_step", "taylor_coefficients", "taylor_solve"]
