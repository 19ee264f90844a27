"""What a backend's solve returns (its own module, so the backends need not import the package)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SolveResult"]


@dataclass(frozen=True)
class SolveResult:
    """A backend's solve: the states at the output times, NFE, accepted and rejected steps."""

    ys: np.ndarray  # (len(ts), batch, d)
    nfe: int
    accepted: int
    rejected: int
