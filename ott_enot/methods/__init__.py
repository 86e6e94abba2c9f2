"""The training methods: what the engine trains.

Layer: above the model (whose maps, losses and potentials they use) and the
engine (whose interface, :class:`~ott_enot.training.TrainingMethod`, they
implement); below the solvers (the faces). Files:

- :mod:`~ott_enot.methods.enot`: :class:`ENOT` (one model, with or without a
  condition), its state and pure step;
- :mod:`~ott_enot.methods.population`: :class:`Population` (members of one
  method, ENOT's or the entropic plan's, in one program) and its
  :class:`PopulationResult`;
- :mod:`~ott_enot.methods.entropic`: :class:`Entropic`, the entropic plan
  (energy-guided, Langevin chains in the state).
"""
from ott_enot.methods import enot, entropic, population
from ott_enot.methods.enot import (
    ENOT,
    ENOTTrainState,
    Hyperparameters,
    StepMetrics,
    ValidationMetrics,
    enot_step,
    is_forward,
    validation_metrics,
)
from ott_enot.methods.entropic import (
    Entropic,
    EntropicHyperparameters,
    EntropicMember,
    EntropicTrainState,
)
from ott_enot.methods.population import (
    Member,
    Population,
    PopulationResult,
    PopulationState,
)

__all__ = [
    "ENOT",
    "Entropic",
    "EntropicTrainState",
    "EntropicHyperparameters",
    "EntropicMember",
    "ENOTTrainState",
    "Hyperparameters",
    "StepMetrics",
    "ValidationMetrics",
    "enot_step",
    "is_forward",
    "validation_metrics",
    "Population",
    "PopulationState",
    "PopulationResult",
    "Member",
    "enot",
    "entropic",
    "population",
]
