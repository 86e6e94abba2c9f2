r"""The shell every solver is: a training method, its state and the run's
settings; it trains with the engine and keeps the state whatever raises.

A face (:class:`~ott_enot.ENOTSolver`, :class:`~ott_enot.ENOTPopulation`,
:class:`~ott_enot.ConditionalExpectileNeuralDual`) validates its arguments,
builds the method and its initial state, turns what it is given into a feed
(:func:`ott_enot.training.inputs.feed_for`) and calls :meth:`Solver.train`;
everything a run shares (resume, checkpoints, the mesh, the one ``finally``
that assigns the state back) is here, once.
"""
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Union

import jax
import numpy as np

from ott_enot.training import checkpoints, feeds, inputs, loop, sharding
from ott_enot.training.method import TrainingMethod

__all__ = ["Solver", "Logs", "Callback_t"]

Logs = Dict[str, Dict[str, List[Any]]]
Callback_t = Callable[[int, Any], Any]


class Solver:
  """A training method, its state, and the settings of its runs.

  Args:
    method: The :class:`~ott_enot.training.TrainingMethod`.
    state: Its initial state.
    num_train_iters: Number of training steps of a run.
    valid_freq: Validate every ``valid_freq`` steps.
    log_freq: Log every ``log_freq`` steps.
    logging: Return ``(result, logs)`` from training (:meth:`output`).
    progress_bar: Show a tqdm progress bar while training.
    chunk_size: Training steps fused into one ``lax.scan`` dispatch (see
      :class:`~ott_enot.ENOTSolver`).
    checkpoint_dir: Directory of the run's checkpoints, or :obj:`None`.
    checkpoint_every: Steps between checkpoints.
    checkpoint_keep: How many of the latest checkpoints to keep.
    mesh: A :class:`jax.sharding.Mesh` to train data-parallel on, or
      :obj:`None` for the default device.
    keep_best: Validate after the run's last step too, and return the
      parameters of the lowest ``selection_metric`` (ENOT: ``fit/floor``)
      where every validation sees the same batch (the engine's own
      samplers and point clouds), of the latest validation within the
      method's ``selection_tolerance`` of the lowest with the loaders'
      fresh batches (:func:`~ott_enot.training.loop.selection_tolerance`),
      instead of the last ones, so that more steps never hurt
      (:class:`~ott_enot.training.loop.Best`). The state stays the last
      (to train on). :obj:`None` (default): the same where validation could
      score (the last parameters, silently, where it could not); ``True``:
      warn too where it could not; ``False``: the last, as ott.

  Attributes:
    state: The method's state: the state after the last completed chunk of
      the last run, whatever raised (and never a buffer donated to XLA).
    best: The run's best validated parameters
      (:class:`~ott_enot.training.loop.Best`: step, score, parameters), or
      :obj:`None` before any validation.
  """

  def __init__(
      self,
      method: TrainingMethod,
      state: Any,
      *,
      num_train_iters: int = 20000,
      valid_freq: int = 1000,
      log_freq: int = 1000,
      logging: bool = False,
      progress_bar: bool = True,
      chunk_size: int = 100,
      checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
      checkpoint_every: int = 1000,
      checkpoint_keep: int = 3,
      mesh: Optional[jax.sharding.Mesh] = None,
      keep_best: Optional[bool] = None,
  ):
    self.method = method
    self.state = state
    self.best: Optional[loop.Best] = None
    self.keep_best = keep_best
    self.num_train_iters = num_train_iters
    self.valid_freq = valid_freq
    self.log_freq = log_freq
    self.logging = logging
    self.progress_bar = progress_bar
    self.chunk_size = int(chunk_size)
    self.checkpoint_dir = checkpoint_dir
    self.checkpoint_every = int(checkpoint_every)
    self.checkpoint_keep = int(checkpoint_keep)
    self.parallel = sharding.DataParallel.create(mesh)

  @property
  def mesh(self) -> Optional[jax.sharding.Mesh]:
    """The devices training splits each batch over (:obj:`None`: one)."""
    return self.parallel.mesh

  def loop_config(self) -> loop.LoopConfig:
    """The static configuration of the compiled training loop."""
    return loop.LoopConfig.create(
        method=self.method,
        chunk_size=self.chunk_size,
        valid_freq=self.valid_freq,
        parallel=self.parallel,
    )

  # ---- checkpoints ----

  def checkpointer(self) -> Optional[checkpoints.Checkpointer]:
    """The :class:`~ott_enot.training.checkpoints.Checkpointer` of ``checkpoint_dir``
    (``None`` without one)."""
    if self.checkpoint_dir is None:
      return None
    return checkpoints.Checkpointer(
        self.checkpoint_dir,
        signature=checkpoints.signature(self.method.describe(), self.state),
        keep=self.checkpoint_keep, every=self.checkpoint_every,
        metric=self.method.selection_metric
    )

  def restore(self, kind: str = "latest",
              step: Optional[int] = None) -> Dict[str, Any]:
    """Load a checkpoint of ``checkpoint_dir`` into this solver.

    Args:
      kind: ``"latest"`` or ``"best"`` (by the method's
        ``selection_metric``, for ENOT ``fit/floor``).
      step: Which checkpoint; default the newest of ``kind``.

    Returns:
      The checkpoint's metadata, ``step`` (the last step it had done),
      ``logs``, ``num_validations``, ``validation_reference``,
      ``selection`` (the step and score of the run's best validation so
      far, whose parameters become ``best``).

    Raises:
      ~ott_enot.training.checkpoints.CheckpointError: if there is none, or it was
        written for another cost, parameterisation, dimension or network.
    """
    ckpt = self.checkpointer()
    if ckpt is None:
      raise ValueError(
          "This solver has no `checkpoint_dir`: build it with "
          "`checkpoint_dir=...` (the directory of the run to restore)."
      )
    try:
      self.state, meta = ckpt.restore(self.state, kind, step)
      best = ckpt.restore_best(self.method.params(self.state), kind, step)
    finally:
      ckpt.close()
    self.best = None if best is None else loop.Best(*best)
    return meta

  # ---- training ----

  def fit(self, data: Any, *, rng: Optional[jax.Array] = None,
          callback: Optional[Callback_t] = None, resume: bool = False,
          **options: Any) -> Any:
    """Train on ``data``: anything :func:`~ott_enot.training.inputs.feed_for`
    takes for the method's ``data_spec`` (a sampler, points ``x`` with
    ``y=``, an ott geometry or problem, a family of problems, a stream,
    :class:`~ott_enot.training.inputs.Loaders`), with its ``options``.

    Returns:
      :meth:`output` of the run's logs.
    """
    feed = inputs.feed_for(data, self.method.data_spec, rng=rng, **options)
    return self.output(self.train(feed, callback, resume))

  def train(self, feed: feeds.Feed, callback: Optional[Callback_t] = None,
            resume: bool = False) -> Logs:
    """Run the method on ``feed`` (:func:`ott_enot.training.loop.train`).

    Args:
      feed: A :class:`~ott_enot.training.feeds.Feed`
        (:func:`ott_enot.training.inputs.feed_for` makes one of any data).
      callback: ``callback(step, result)`` at the end of each chunk.
      resume: Go on from the latest checkpoint in ``checkpoint_dir`` (its
        state, step and logs).

    Returns:
      The run's logs.

    Raises:
      ValueError: for ``resume=False`` with a ``checkpoint_dir`` that holds
        an earlier run's checkpoints, and what
        :func:`~ott_enot.training.loop.train` raises. Whatever raises, the
        solver keeps the state after the last completed chunk.
    """
    start, logs, reference = 0, None, None
    self.best = None  # a run's best; a resumed run's comes with its checkpoint
    if resume:
      meta = self.restore("latest")
      start, logs = meta["step"] + 1, meta["logs"]
      reference = meta.get("validation_reference")
    elif self.checkpoint_dir is not None:
      earlier = checkpoints.checkpoint_steps(self.checkpoint_dir)
      if earlier:
        raise ValueError(
            f"`checkpoint_dir` {os.fspath(self.checkpoint_dir)!r} holds "
            f"checkpoints of an earlier run (steps {list(earlier)}): pass "
            f"`resume=True` to go on from the latest, or use an empty "
            f"directory."
        )
    ckpt = self.checkpointer()
    cell = loop.StateCell(self.state, self.best)
    peers_lost = False
    try:
      return loop.train(
          cell, feed, config=self.loop_config(),
          num_train_iters=self.num_train_iters, log_freq=self.log_freq,
          valid_freq=self.valid_freq, callback=callback,
          progress_bar=self.progress_bar, start=start, logs=logs,
          checkpointer=ckpt, validation_reference=reference,
          validate_last=self.keep_best is not False
          and self.method.selection_metric is not None,
      )
    except sharding.ProcessFailedError:
      peers_lost = True  # pending writes wait for the lost process: drop them
      raise
    finally:  # whatever raised: the last completed state, never a donated one
      self.state, self.best = cell.state, cell.best
      if ckpt is not None:
        ckpt.close(wait=not peers_lost)

  def kept_best(self) -> Optional[loop.Best]:
    """The run's :class:`~ott_enot.training.loop.Best` that the result is
    chosen by: :obj:`None` with ``keep_best=False`` or before any
    validation."""
    return None if self.keep_best is False else self.best

  def selected_state(self) -> Any:
    """The state whose result training returns: with ``keep_best``, the
    state with the run's best validated parameters (member by member; the
    last ones where no validation scored), else the state itself."""
    best = self.kept_best()
    if best is None:
      return self.state
    if self.keep_best and not np.isfinite(best.score).all():
      warnings.warn(
          "Validation could not choose the map to return (validation "
          "batches too small to choose by, or no finite score): returning "
          "the last state where it could not. Give validation batches of "
          "at least 1,024 points (`keep_best=None` silences this).",
          stacklevel=3)
    return self.method.with_params(
        self.state, loop.selected_params(self.method, self.state, best))

  def output(self, logs: Logs) -> Any:
    """What training returns: the method's result for
    :meth:`selected_state`, with the logs when ``logging`` (``(result,
    logs)``). A face may declare another (a population returns its result,
    logs inside)."""
    result = self.method.result(self.selected_state())
    return (result, logs) if self.logging else result
