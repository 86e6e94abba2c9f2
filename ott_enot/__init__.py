r"""ott-enot: expectile-regularised neural optimal transport for OTT-JAX.

The layers, bottom to top (each a sub-package; ``ARCHITECTURE.md`` has the
data flow and how to add a cost, a parameterisation, a feed or a method):

- :mod:`ott_enot.checks`: validation of user input (every layer);
- :mod:`ott_enot.costs`: the cost registry, the Euclidean and sphere costs,
  the property engine;
- :mod:`ott_enot.evaluation`: metrics (fit and floor, L2-UV), the W2
  benchmark;
- :mod:`ott_enot.data`: point clouds and problems -> streams of batches;
- :mod:`ott_enot.training`: the engine (the training-method interface,
  loop, feeds, devices, checkpoints);
- :mod:`ott_enot.model`: parameterisations, networks, loss, potentials;
- :mod:`ott_enot.methods`: the training methods (ENOT, a population, the
  entropic plan);
- :mod:`ott_enot.solvers`: the faces users call;
- :mod:`ott_enot.testing`: property tests of a user's cost.

Glossary (one word per concept, used everywhere):

- *measure*: the source :math:`\alpha` or the target :math:`\beta`;
  *batch*: arrays of points drawn from them, ``(x[n, d], y[n, d])`` and, for
  a conditional model, ``cond[n, k]``;
- *cost* :math:`c`: always the cost (``cost_fn``); the *condition* of a map
  :math:`T(x \mid z)` is ``cond`` in code and :math:`z` in formulas, never
  ``c``; ``conditions`` is only the user's ``{label: vector}``, ``table``
  only a ``{label: vector}`` a model knows, ``vectors`` the ``[K, k]``
  array of a family's conditions;
- *dual potentials* (``potential_f``, ``potential_g``): the dual variables
  of the problem training solves; *Kantorovich potential*
  (``kantorovich_g``, ``ENOTPotentials.f``/``g``): of the user's cost;
- *parameterisation*: how the map comes from the networks (``"twist"``,
  ``"correlation"``, ``"direct"``, one class each);
- *forward* / *inverse*: the map's direction (source -> target / target ->
  source); *bidirectional*: both, alternating;
- *pushforward term*: the energy distance between the mapped batch
  :math:`T(x)` and the target batch in a map's loss
  (``pushforward_loss_coef``); *fit*: the divergence that judges a map
  against a target sample (never a training loss);
- *training method*: what the engine trains (init, step, validate, result);
  *member*: one configuration of a population;
- *plan* :math:`\pi_\varepsilon`: the entropic OT coupling, sampled as
  :math:`y \sim \pi_\varepsilon(\cdot \mid x)`; *energy* :math:`f`: its
  potential (:math:`\pi(y \mid x) \propto e^{(f(y) - c(x,
  y))/\varepsilon}`); *chain*: one Langevin sampler state; *warm start*: ENOT's
  potential and map as the plan's start;
- *feed*: what supplies batches to the loop; *sampler*: a pure ``key ->
  batch`` on the device; *stream*: point clouds sampled on the device;
  *loaders*: ott's host iterators;
- *step*: one update; *chunk*: the steps one dispatch runs in a ``lax.scan``;
  *chunk length*: its number of steps (``chunk_size`` rounded up to the
  method's phases); *run*: one call of training.
"""
import importlib
from typing import Any

from ott_enot import versions

versions.check_ott()  # before anything imports ott's neural API

from ott_enot import _legacy  # noqa: E402  pylint: disable=wrong-import-position
from ott_enot import (
    checks,
    costs,
    data,
    evaluation,
    methods,
    model,
    solvers,
    training,
)
from ott_enot.costs import (
    SphereGeodesic,
    SphereGeodesicSq,
    available_costs,
    get_cost,
    register_cost,
)
from ott_enot.data import ConditionalStream, PointCloudStream
from ott_enot.methods import PopulationResult
from ott_enot.model import (
    ConditionalMLP,
    ConditionalPotentials,
    EntropicPotentials,
    NNXNetwork,
    ENOTPotentials,
    ExpectileConjugateSolver,
    PiecewiseMLP,
    enot_loss,
    expectile_loss,
)
from ott_enot.solvers import (
    ConditionalExpectileNeuralDual,
    ENOTPopulation,
    ENOTSolver,
    EntropicPopulation,
    EntropicSolver,
    ExpectileNeuralDual,
    default_optimizer,
)
from ott_enot.training import (
    OptaxCall,
    ProcessFailedError,
    TrainingDivergedError,
    TrainingMethod,
    batch_mesh,
    optax_call,
)

__version__ = "0.1.0"

__all__ = [
    "ExpectileNeuralDual",
    "ENOTSolver",
    "ConditionalExpectileNeuralDual",
    "ConditionalPotentials",
    "ConditionalStream",
    "ConditionalMLP",
    "PiecewiseMLP",
    "NNXNetwork",
    "ENOTPopulation",
    "EntropicSolver",
    "EntropicPopulation",
    "EntropicPotentials",
    "PopulationResult",
    "ExpectileConjugateSolver",
    "ENOTPotentials",
    "TrainingDivergedError",
    "ProcessFailedError",
    "TrainingMethod",
    "PointCloudStream",
    "batch_mesh",
    "default_optimizer",
    "OptaxCall",
    "optax_call",
    "SphereGeodesic",
    "SphereGeodesicSq",
    "get_cost",
    "register_cost",
    "available_costs",
    "expectile_loss",
    "enot_loss",
    "checks",
    "costs",
    "data",
    "evaluation",
    "methods",
    "model",
    "solvers",
    "testing",
    "training",
]

_legacy.install()


def __getattr__(name: str) -> Any:
  # `ott_enot.testing` loads hypothesis: imported when first used; the
  # flat layout's module paths (`ott_enot.step`, ...) are kept (_legacy)
  if name == "testing" or name in _legacy.MOVED:
    return importlib.import_module(f"ott_enot.{name}")
  raise AttributeError(f"module 'ott_enot' has no attribute {name!r}")
