"""The faces users call: the solvers.

Layer: the top (above the methods, the model and the engine). A face checks
its arguments, builds the model description and the training method, turns
what it is given into a feed and runs the engine. Files:

- :mod:`~ott_enot.solvers.base`: :class:`Solver`, the shell every face is
  (its state kept whatever raises, checkpoints, resume, the mesh);
- :mod:`~ott_enot.solvers.enot`: ENOT's arguments
  (:func:`~ott_enot.solvers.enot.configure`), :class:`ENOTSolver`,
  :func:`default_optimizer`;
- :mod:`~ott_enot.solvers.compat`: :class:`ExpectileNeuralDual`, ott's
  ``W2NeuralDual`` face;
- :mod:`~ott_enot.solvers.conditional`:
  :class:`ConditionalExpectileNeuralDual`;
- :mod:`~ott_enot.solvers.population`: :class:`ENOTPopulation`;
- :mod:`~ott_enot.solvers.entropic`: :class:`EntropicSolver`, the entropic
  plan warm-started by ENOT, and :class:`EntropicPopulation`.
"""
from ott_enot.solvers import (
    base,
    compat,
    conditional,
    enot,
    entropic,
    population,
)
from ott_enot.solvers.base import Solver
from ott_enot.solvers.compat import ExpectileNeuralDual
from ott_enot.solvers.conditional import ConditionalExpectileNeuralDual
from ott_enot.solvers.enot import ENOTSolver, default_optimizer
from ott_enot.solvers.entropic import EntropicPopulation, EntropicSolver
from ott_enot.solvers.population import ENOTPopulation, grid

__all__ = [
    "Solver",
    "ENOTSolver",
    "ExpectileNeuralDual",
    "ConditionalExpectileNeuralDual",
    "ENOTPopulation",
    "EntropicSolver",
    "EntropicPopulation",
    "default_optimizer",
    "grid",
    "base",
    "compat",
    "conditional",
    "enot",
    "entropic",
    "population",
]
