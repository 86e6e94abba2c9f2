"""ott-enot: expectile-regularised neural optimal transport for OTT-JAX."""
from ott_enot import (
    checkpoints,
    checks,
    compat,
    conditional,
    conditional_data,
    conjugate,
    costs,
    data,
    feeds,
    loop,
    losses,
    maps,
    metrics,
    networks,
    numerics,
    population,
    potentials,
    properties,
    sharding,
    solver,
    sphere,
    step,
    testing,
)
from ott_enot.compat import ExpectileNeuralDual
from ott_enot.conditional import (
    ConditionalExpectileNeuralDual,
    ConditionalPotentials,
)
from ott_enot.conditional_data import ConditionalStream
from ott_enot.conjugate import ExpectileConjugateSolver
from ott_enot.costs import (
    SphereGeodesic,
    SphereGeodesicSq,
    available_costs,
    get_cost,
    register_cost,
)
from ott_enot.data import PointCloudStream
from ott_enot.losses import enot_loss, expectile_loss
from ott_enot.networks import ConditionalMLP
from ott_enot.population import ENOTPopulation, PopulationResult
from ott_enot.potentials import ENOTPotentials
from ott_enot.sharding import ProcessFailedError, batch_mesh
from ott_enot.solver import ENOTSolver
from ott_enot.step import TrainingDivergedError

__version__ = "0.1.0"

__all__ = [
    "ExpectileNeuralDual",
    "ENOTSolver",
    "ConditionalExpectileNeuralDual",
    "ConditionalPotentials",
    "ConditionalStream",
    "ConditionalMLP",
    "ENOTPopulation",
    "PopulationResult",
    "ExpectileConjugateSolver",
    "ENOTPotentials",
    "TrainingDivergedError",
    "ProcessFailedError",
    "PointCloudStream",
    "batch_mesh",
    "SphereGeodesic",
    "SphereGeodesicSq",
    "get_cost",
    "register_cost",
    "available_costs",
    "expectile_loss",
    "enot_loss",
    "checkpoints",
    "checks",
    "compat",
    "conditional",
    "conditional_data",
    "conjugate",
    "costs",
    "data",
    "feeds",
    "loop",
    "losses",
    "maps",
    "metrics",
    "networks",
    "numerics",
    "population",
    "potentials",
    "properties",
    "sharding",
    "solver",
    "sphere",
    "step",
    "testing",
]
