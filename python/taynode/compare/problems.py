"""The harness's problems: each one definition (:mod:`taynode.array_problems`) handed to every
implementation in its own array namespace, plus a trained neural ODE from a portable description."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import portable
from ..array_problems import FIELDS
from .x64 import float64

ECCENTRICITY = 0.6
PROBLEM_NAMES = ("lotka_volterra", "van_der_pol", "two_body", "neural_ode")


@dataclass
class Problem:
    name: str
    z0: np.ndarray  # (batch, d)
    t1: float
    jax_f: Callable  # f(t, z, args)
    numpy_f: Callable  # f(t, z) on (batch, d) arrays
    torch_f: Callable | None = None  # f(t, z) on tensors; built on demand
    spec: dict | None = None  # portable description, for backends that rebuild f
    note: str = ""


def _standard(name, z0, t1, spec=None, note=""):
    import jax.numpy as jnp

    fn = FIELDS[name]

    def torch_f(t, z):
        import torch

        return fn(torch, t, z)

    return Problem(
        name,
        np.asarray(z0, np.float64),
        float(t1),
        lambda t, z, args=None: fn(jnp, t, z),
        lambda t, z: fn(np, t, z),
        torch_f,
        spec,
        note,
    )


@float64
def neural_ode_problem(spec: dict, batch: int = 16, *, torch: bool = True) -> Problem:
    """A portable MLP description as a problem: z0 = linspace(−1, 1) per dimension, t ∈ [0, 1].

    ``torch``: also build the torch field (``torch_f``; needs torch); without it ``torch_f`` is None."""
    spec = portable.validate(spec)
    if spec["kind"] != "mlp":
        raise ValueError("the neural-ODE problem needs an 'mlp' portable description")
    d = spec["weights"][0].shape[1] - 1
    z0 = np.repeat(np.linspace(-1.0, 1.0, batch)[:, None], d, 1)
    return Problem(
        "neural_ode",
        z0,
        1.0,
        portable.jax_field(spec),
        portable.numpy_field(spec),
        portable.torch_field(spec) if torch else None,
        spec,
        note=f"MLP {[d] + [W.shape[0] for W in spec['weights']]}, {spec['activation']}, batch {batch}",
    )


def standard_problems() -> dict[str, Problem]:
    """The analytic problems by name: Lotka–Volterra and van der Pol on t ∈ [0, 10], and the
    two-body problem at eccentricity :data:`ECCENTRICITY`, each with its portable description."""
    e = ECCENTRICITY
    return {
        "lotka_volterra": _standard("lotka_volterra", [[1.0, 1.0]], 10.0, portable.problem("lotka_volterra")),
        "van_der_pol": _standard("van_der_pol", [[2.0, 0.0]], 10.0, portable.problem("van_der_pol")),
        "two_body": _standard(
            "two_body", [[1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))]], 2 * math.pi, note=f"eccentricity {e}, one period"
        ),
    }
