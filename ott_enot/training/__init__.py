"""The engine: it trains any training method, and nothing is lost.

Layer: above :mod:`ott_enot.data` (feeds sample its streams), below the model
and the methods, which plug into it. Nothing here knows which method runs.
Files:

- :mod:`~ott_enot.training.method`: the :class:`TrainingMethod` interface;
- :mod:`~ott_enot.training.state`: the state's contract (step counter,
  divergence flag), :class:`NetworkState`, the guard every step goes through;
- :mod:`~ott_enot.training.loop`: chunks, the compiled program, validation,
  logs, progress, callbacks, divergence, the state kept whatever raises;
- :mod:`~ott_enot.training.feeds`: where batches come from (host iterators,
  samplers and streams on the device);
- :mod:`~ott_enot.training.inputs`: what a solver was given -> a feed;
- :mod:`~ott_enot.training.sharding`: devices and processes;
- :mod:`~ott_enot.training.checkpoints`: orbax checkpoints, resume;
- :mod:`~ott_enot.training.optimizers`: optax optimisers as hashable values
  (equal settings, shared programs).
"""
from ott_enot.training import (
    checkpoints,
    feeds,
    inputs,
    loop,
    method,
    optimizers,
    sharding,
    state,
)
from ott_enot.training.inputs import DataSpec, Loaders, feed_for
from ott_enot.training.loop import LoopConfig, chunk_programs_compiled, train
from ott_enot.training.method import TrainingMethod
from ott_enot.training.optimizers import OptaxCall, optax_call
from ott_enot.training.sharding import (
    DataParallel,
    ProcessFailedError,
    batch_mesh,
)
from ott_enot.training.state import (
    NetworkState,
    TrainingDivergedError,
    TrainState,
    guarded_step,
    restart,
)

__all__ = [
    "TrainingMethod",
    "TrainState",
    "NetworkState",
    "TrainingDivergedError",
    "guarded_step",
    "restart",
    "LoopConfig",
    "train",
    "chunk_programs_compiled",
    "DataSpec",
    "Loaders",
    "feed_for",
    "DataParallel",
    "ProcessFailedError",
    "batch_mesh",
    "OptaxCall",
    "optax_call",
    "checkpoints",
    "feeds",
    "inputs",
    "loop",
    "method",
    "optimizers",
    "sharding",
    "state",
]
