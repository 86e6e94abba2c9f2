"""ott-enot: expectile-regularised neural optimal transport for OTT-JAX."""
from ott_enot import checks, conjugate, costs, losses, maps, potentials, training
from ott_enot.conjugate import ExpectileConjugateSolver
from ott_enot.losses import enot_loss, expectile_loss
from ott_enot.potentials import ENOTPotentials
from ott_enot.solver import ExpectileNeuralDual
from ott_enot.training import TrainingDivergedError

__version__ = "0.1.0"

__all__ = [
    "ExpectileNeuralDual",
    "ExpectileConjugateSolver",
    "ENOTPotentials",
    "TrainingDivergedError",
    "expectile_loss",
    "enot_loss",
    "costs",
    "conjugate",
    "checks",
    "losses",
    "maps",
    "potentials",
    "training",
]
