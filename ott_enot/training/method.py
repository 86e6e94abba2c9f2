r"""The training method: what the engine trains, declared as a value.

The engine (:mod:`ott_enot.training.loop`) knows a method only through this
interface, as optax knows an optimiser through ``GradientTransformation``.
A method is a frozen dataclass (hashable, compared by value where its fields
are): it is the static configuration of the compiled programs, so equal
methods share them. ENOT (:class:`ott_enot.methods.ENOT`, one model, with or
without a condition) and a population of ENOT members
(:class:`ott_enot.methods.Population`) are methods; a new one plugs into the
loop, feeds, checkpoints, devices, progress, divergence handling and
"nothing lost" without a line of the engine changed.

The schedule: step ``k`` of a run runs phase ``k % phases`` of the method
(ENOT's bidirectional training has two, forward and inverse); a chunk's scan
is a loop over groups of ``phases`` steps, so the phase is static in the
compiled program.
"""
from typing import Any, Dict, Protocol, Tuple

import jax
import jax.numpy as jnp

from ott_enot.training.state import TrainState

__all__ = ["TrainingMethod", "Batch"]

#: A batch, ``(x[n, d], y[n, d])`` or ``(x, y, cond[n, k])`` with the rows'
#: conditions; validation batches of a family have a leading ``[K]`` axis.
Batch = Tuple[jnp.ndarray, ...]


class TrainingMethod(Protocol):
  """What the engine trains.

  Attributes:
    phases: How many static phases the schedule cycles through (step ``k``
      runs phase ``k % phases``).
    train_log_keys: The keys of ``logs["train_logs"]`` (what
      :meth:`log_row` returns).
    valid_log_keys: The keys of ``logs["valid_logs"]`` (a subset of what
      :meth:`validate` returns).
    selection_metric: The name of :meth:`selection_score` (``"fit/floor"``
      for ENOT), or :obj:`None` for a method whose validations select
      nothing. By its minimum the engine keeps the run's best validated
      parameters (:class:`~ott_enot.training.loop.Best`, what the face
      returns) and the "best" checkpoint.
    selection_tolerance: The relative noise of :meth:`selection_score`
      between fresh validation batches: with such batches (the user's
      loaders) the latest validation within it of the lowest score is kept
      (ENOT: 0.25); where every validation sees the same batch, the lowest
      (:func:`~ott_enot.training.loop.selection_tolerance`).
    divergence_advice: What to try when the method diverges (for the
      :class:`~ott_enot.TrainingDivergedError` message).
    data_spec: What its data must be
      (:class:`~ott_enot.training.inputs.DataSpec`: the dimension, a
      condition's dimension, the domain, the cost), for
      :func:`~ott_enot.training.inputs.feed_for`.
  """

  phases: int
  train_log_keys: Tuple[str, ...]
  valid_log_keys: Tuple[str, ...]
  selection_metric: Any
  selection_tolerance: float
  divergence_advice: str
  data_spec: Any

  def init(self, rng: jax.Array) -> TrainState:
    """A fresh state (networks initialised from ``rng``) at step 0."""

  def step(self, state: TrainState, batch: Batch, phase: int) -> tuple:
    """One update of the method (pure): ``(state, metrics)``.

    The engine wraps it in :func:`~ott_enot.training.state.guarded_step`,
    which applies it or not and keeps ``step`` and ``diverged``: a method
    never touches them.

    Args:
      state: The method's state.
      batch: One training batch (``(x[n, d], y[n, d])``, with conditions
        ``[n, k]`` for conditional data).
      phase: Which of the method's alternating steps (static; ``0`` for a
        method of one kind of step).

    Returns:
      ``(state, metrics)``: the updated state and a pytree of scalars
      (``[members]`` for a population) with a ``loss`` field.
    """

  def zero_metrics(self, state: TrainState) -> Any:
    """The metrics of a step that does not run (a masked group of a chunk,
    skipped on the CPU): zeros of the structure, shapes and dtypes
    :meth:`step` returns, without computing a step."""

  def params(self, state: TrainState) -> Any:
    """What validation and results read of a state (the parameters): kept
    as a snapshot after validation steps inside a chunk, and checked for
    finiteness after every step."""

  def validation_reference(self, batch: Batch) -> Any:
    """What validation needs of the validation data alone (pure): a pytree
    of arrays the engine computes once per run, on the run's first
    validation batch, keeps in the checkpoints (so that a resumed run
    validates as an uninterrupted one) and passes to every
    :meth:`validate` (ENOT: the blur and the resampling floor of the
    target sample, :class:`~ott_enot.evaluation.metrics.FitReference`);
    ``()`` when there is nothing.

    Args:
      batch: The run's first validation batch.

    Returns:
      A pytree of arrays, or ``()``.
    """

  def validate(self, params: Any, batch: Batch,
               reference: Any) -> Dict[str, jnp.ndarray]:
    """Validation metrics of ``params`` on one batch (pure), with the run's
    :meth:`validation_reference`.

    Args:
      params: What :meth:`params` reads of a state.
      batch: One validation batch.
      reference: The run's :meth:`validation_reference`.

    Returns:
      A dict of scalar arrays (``[members]`` for a population).
    """

  def selection_score(self, metrics: Dict[str, Any]) -> Any:
    """The score of one validation (host values of :meth:`validate`'s
    metrics), lower is better: a scalar, or ``[members]`` for a state of
    members (each member selected on its own)."""

  def with_params(self, state: TrainState, params: Any) -> TrainState:
    """``state`` with the parameters ``params`` (of :meth:`params`): what the
    face turns into its result for the best validated parameters.

    Args:
      state: The method's state.
      params: Parameters of :meth:`params`'s structure.

    Returns:
      The state holding ``params``.
    """

  def log_row(self, step: int, metrics: Any) -> Dict[str, Any]:
    """The row of ``logs["train_logs"]`` for ``step`` (host values).

    Args:
      step: The step the metrics are of.
      metrics: :meth:`step`'s metrics, on the host.

    Returns:
      A dict of floats (lists of floats for a population).
    """

  def describe(self) -> Dict[str, Any]:
    """A JSON description of what a checkpoint of this method must match
    (the engine adds the shapes of the state)."""

  def result(self, state: TrainState) -> Any:
    """What the user gets for a state (potentials, a population's result)."""
