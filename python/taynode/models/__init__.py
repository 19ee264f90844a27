"""Neural-ODE models as equinox modules."""

from .mlp import ACTIVATIONS, MLPDynamics

__all__ = ["ACTIVATIONS", "MLPDynamics"]
