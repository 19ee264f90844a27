"""The explicit Runge–Kutta tableaux taynode adds to diffrax's solvers (as diffrax solvers):
the classical RK4 (fixed grid), and the order study's pairs (Fig. 2: Euler–Heun, Fehlberg 4(5))."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import numpy as np

__all__ = ["RK4", "EulerHeun", "Fehlberg45"]

_rk4_tableau = dfx.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),  # no embedded method: fixed-grid only
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(dfx.AbstractERK):
    """The classical 4th-order Runge–Kutta method (fixed grid; no error estimate)."""

    tableau: ClassVar[dfx.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


_euler_heun_tableau = dfx.ButcherTableau(
    c=np.array([1.0]),
    a_lower=(np.array([1.0]),),
    b_sol=np.array([1.0, 0.0]),  # Euler
    b_error=np.array([0.5, -0.5]),  # Euler − Heun
)


class EulerHeun(dfx.AbstractERK):
    """Euler's method with Heun's as the error estimate (no local extrapolation): order 1.

    Its second stage f(t + h, z + h f₀) is the next step's first, so it costs one f per step.
    """

    tableau: ClassVar[dfx.ButcherTableau] = _euler_heun_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 1


# Fehlberg (1969), RK4(5): the classical coefficients; b4 steps, b5 − b4 estimates the error.
_F_B4 = np.array([25 / 216, 0.0, 1408 / 2565, 2197 / 4104, -1 / 5, 0.0])
_F_B5 = np.array([16 / 135, 0.0, 6656 / 12825, 28561 / 56430, -9 / 50, 2 / 55])
_fehlberg_tableau = dfx.ButcherTableau(
    c=np.array([1 / 4, 3 / 8, 12 / 13, 1.0, 1 / 2]),
    a_lower=(
        np.array([1 / 4]),
        np.array([3 / 32, 9 / 32]),
        np.array([1932 / 2197, -7200 / 2197, 7296 / 2197]),
        np.array([439 / 216, -8.0, 3680 / 513, -845 / 4104]),
        np.array([-8 / 27, 2.0, -3544 / 2565, 1859 / 4104, -11 / 40]),
    ),
    b_sol=_F_B4,
    b_error=_F_B4 - _F_B5,
)


class Fehlberg45(dfx.AbstractERK):
    """Fehlberg's RK4(5) stepping with its 4th-order solution: order 4, six stages."""

    tableau: ClassVar[dfx.ButcherTableau] = _fehlberg_tableau
    interpolation_cls: ClassVar[Callable] = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4
