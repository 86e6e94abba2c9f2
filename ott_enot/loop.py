r"""The training loop: chunks of steps, one compiled program per run.

Glossary: a *run* is one call of training (steps ``0, ...,
num_train_iters - 1``, ott's numbering); a *chunk* is the steps one dispatch
runs inside one ``lax.scan``; a *feed* (:class:`Feed`) supplies each chunk's
batches and the validation batches.

Every chunk is a scan over ``L = config.chunk_length`` consecutive steps
``first, ..., first + L - 1`` with ``first = 1 - L, 1, L + 1, 2L + 1, ...``,
so scans end at the multiples of ``L`` (step 0 ends the first). A chunk
applies the steps ``lo, ..., hi`` of its scan (a run starts, ends and is
split at the multiples of ``chunk_size`` inside scans: :func:`plan_chunks`)
and masks the others. One program (:func:`run_chunk`, jitted once per
:class:`LoopConfig` and batch type) therefore serves every chunk of every run.
Validation after a step inside a chunk uses a snapshot of the parameters
taken in the scan; the validation programs compile on a background thread
while the first chunks run.

:func:`train` reads as what happens per chunk: dispatch it (the state is
donated to XLA; :class:`StateCell` always holds a state no pending
computation owns, so whatever raises, the caller keeps the last completed
chunk's state), prepare the next chunk's batches while the device works,
record the logs, stop on divergence, update the progress bar, validate,
hand the state to the checkpointer and to the callback.
"""
import contextlib
import dataclasses
import functools
import signal
import threading
from typing import (
    Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Protocol,
    Sequence, Tuple,
)

import jax
import jax.numpy as jnp
import numpy as np

from ott_enot import feeds, metrics as metrics_lib, sharding
from ott_enot import step as step_lib

__all__ = [
    "Feed",
    "LoopConfig",
    "Chunk",
    "plan_chunks",
    "run_chunk",
    "validate",
    "StateCell",
    "train",
    "chunk_programs_compiled",
]

Logs = Dict[str, Dict[str, List[Any]]]
Batch = Tuple[jnp.ndarray, jnp.ndarray]


class Feed(Protocol):
  """What supplies the loop with batches (:mod:`ott_enot.feeds`)."""

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the first batches before anything compiles; decide where the
    arrays live. ``validation``: whether validation batches will be asked."""

  def batches(self, steps: Sequence[int], first: int,
              length: int) -> feeds.ChunkBatches:
    """The batches of the ``steps`` of a scan of ``length`` from ``first``."""

  def valid_batch(self, count: int) -> Batch:
    """The ``count``-th validation batch of the run, on the devices."""

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """Shapes, dtypes and shardings of the validation batches; may compile
    their sampling (called on a background thread after :meth:`prepare`)."""

  #: Per-condition validation: ``(labels, trained)`` of the conditions whose
  #: validation batches ``[K, n, d]`` the feed returns (:obj:`None`: batches
  #: of mixed rows, or no condition).
  conditions: Optional[Tuple[tuple, tuple]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static configuration of the compiled chunk program (hashable).

  Build it with :meth:`create`. Two runs with equal configs and batches of
  the same type and shapes share one compiled program.

  Attributes:
    step: What a step computes (:class:`~ott_enot.step.StepConfig`).
    bidirectional: Alternate inverse and forward steps.
    chunk_length: Steps per scan: ``chunk_size``, rounded up to even when
      bidirectional so that the scan runs over static (inverse, forward)
      pairs.
    chunk_size: The requested chunk size; chunks also end at its multiples.
    snapshots: Validation steps a chunk can hold before its end; the scan
      keeps a snapshot of the parameters after each.
    skip_masked: Skip masked steps with ``lax.cond`` (on the CPU) instead of
      computing them and discarding the result (on accelerators, where a
      conditional may synchronise with the host).
    parallel: Where the arrays live: :class:`~ott_enot.sharding.DataParallel`
      splits every batch over the devices of a mesh and replicates the
      state; the default keeps everything on one device.
  """
  step: step_lib.StepConfig
  bidirectional: bool
  chunk_length: int
  chunk_size: int
  snapshots: int = 0
  skip_masked: bool = False
  parallel: sharding.DataParallel = sharding.DataParallel()

  @classmethod
  def create(
      cls,
      *,
      step: step_lib.StepConfig,
      bidirectional: bool,
      chunk_size: int,
      valid_freq: int,
      backend: Optional[str] = None,
      parallel: sharding.DataParallel = sharding.DataParallel(),
  ) -> "LoopConfig":
    """The config for chunks of ``chunk_size`` steps (rounded up to even
    when bidirectional), validation every ``valid_freq`` steps, and the
    devices of ``parallel``."""
    length = chunk_size + (chunk_size % 2 if bidirectional else 0)
    if backend is None:
      backend = parallel.platform
    return cls(
        step=step,
        bidirectional=bool(bidirectional),
        chunk_length=length,
        chunk_size=int(chunk_size),
        snapshots=_inner_validations(length, valid_freq),
        skip_masked=backend == "cpu",
        parallel=parallel,
    )


def _inner_validations(length: int, valid_freq: int) -> int:
  """Most validation steps strictly inside a scan (before its last step)."""
  if valid_freq % length == 0:
    return 0  # validation steps are scan ends
  if length % valid_freq == 0:
    return length // valid_freq - 1
  return (length - 2) // valid_freq + 1


class Chunk(NamedTuple):
  """One dispatch: a scan over steps ``first, ..., first + L - 1`` that
  applies ``lo, ..., hi``."""
  first: int
  lo: int
  hi: int

  @property
  def steps(self) -> range:
    """The steps the chunk applies."""
    return range(self.lo, self.hi + 1)


def plan_chunks(
    num_train_iters: int, length: int, chunk_size: Optional[int] = None,
    start: int = 0
) -> List[Chunk]:
  """The chunks of the steps ``start, ..., num_train_iters - 1`` of a run.

  Scan ``j`` holds steps ``(j - 1) * length + 1`` to ``j * length``: step 0
  ends the first scan and every multiple of ``length`` ends one. A scan is
  also split after every multiple of ``chunk_size`` (when an odd chunk size
  was rounded up to an even ``length``), so chunks end, and callbacks fire,
  at step 0, the multiples of ``chunk_size`` and of ``length``, and the last
  step. A resumed run (``start > 0``) gets the chunks an uninterrupted run
  would, from ``start`` on.
  """
  chunk_size = length if chunk_size is None else chunk_size
  out, last, first = [], num_train_iters - 1, 1 - length
  while max(first, 0) <= last:
    lo, end = max(first, 0), min(first + length - 1, last)
    for hi in range(lo, end + 1):
      if hi == end or hi % chunk_size == 0:
        if hi >= start:
          out.append(Chunk(first, max(lo, start), hi))
        lo = hi + 1
    first += length
  return out


_traces = [0]


def run_chunk(
    state: step_lib.ENOTTrainState,
    batches: feeds.ChunkBatches,
    first: jnp.ndarray,
    hi: jnp.ndarray,
    snapshot_steps: jnp.ndarray,
    *,
    config: LoopConfig,
) -> tuple:
  """One chunk of steps in one ``lax.scan`` (pure).

  Position ``i`` of the scan is step ``first + i``; it applies iff it is the
  state's next step (``state.step``) and ``<= hi``, so a chunk applies the
  steps ``state.step, ..., hi`` and a diverged state stops where it is. With
  bidirectional training the scan runs over (inverse, forward) pairs: scans
  start on odd steps, and :func:`~ott_enot.step.is_forward` decides
  statically, so the device never branches on the direction.

  Args:
    state: State before the chunk (``state.step`` is its first step): an
      :class:`~ott_enot.step.ENOTTrainState`, or a
      :class:`~ott_enot.step.PopulationState` whose members step together
      (:func:`~ott_enot.step.train_step`), each applying a position iff it
      is that member's next step.
    batches: A :class:`~ott_enot.feeds.ChunkBatches`.
    first: Integer scalar, the scan's first step.
    hi: Last step to apply.
    snapshot_steps: ``int32[config.snapshots]``: steps after which to keep
      the parameters (``-1`` for unused slots).
    config: The static :class:`LoopConfig`.

  Returns:
    ``(state, metrics, snapshots)``: the state after step ``hi``,
    :class:`~ott_enot.step.StepMetrics` with fields of shape
    ``[chunk_length]`` (``[chunk_length, members]`` for a
    :class:`~ott_enot.step.PopulationState`; zeros or garbage at masked
    positions), and ``(params_f, params_g)`` stacked over the snapshot
    slots.
  """
  _traces[0] += 1  # once per compiled program (see chunk_programs_compiled)
  group = 2 if config.bidirectional else 1
  directions = [
      step_lib.is_forward(1 + p, config.bidirectional) for p in range(group)
  ]

  def one(carry, i, forward):
    st, snaps = carry
    k = first + i
    batch = config.parallel.constrain_batch(batches.train_batch(i, k))
    active = (k == st.step) & (k <= hi)
    st, metrics = step_lib.train_step(
        st, *batch, config=config.step, forward=forward, active=active
    )
    if config.snapshots:
      hit = snapshot_steps == k
      snaps = jax.tree.map(
          lambda buf, p: jnp.where(
              hit.reshape(hit.shape + (1,) * p.ndim), p[None], buf
          ), snaps, st.params
      )
    return (st, snaps), metrics

  def run_group(carry, g):
    out = []
    for p, forward in enumerate(directions):
      carry, metrics = one(carry, g * group + p, forward)
      out.append(metrics)
    return carry, jax.tree.map(lambda *a: jnp.stack(a), *out)

  def skip_group(carry, g):
    del g
    zero = jnp.zeros((group,) + state.step.shape, jnp.float32)
    return carry, step_lib.StepMetrics(zero, zero, zero, zero)

  def body(carry, g):
    if not config.skip_masked:
      return run_group(carry, g)
    start = first + g * group
    # a population's live members share the largest step counter
    live = (start + group - 1 >= jnp.max(carry[0].step)) & (start <= hi)
    return jax.lax.cond(live, run_group, skip_group, carry, g)

  snaps = jax.tree.map(
      lambda p: jnp.broadcast_to(p, (config.snapshots,) + p.shape),
      state.params
  ) if config.snapshots else ()
  (state, snaps), metrics = jax.lax.scan(
      body, (state, snaps), jnp.arange(config.chunk_length // group)
  )
  metrics = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), metrics)
  return state, metrics, snaps


_run_chunk = jax.jit(
    run_chunk, static_argnames=("config",), donate_argnums=(0,)
)


def chunk_programs_compiled() -> int:
  """How many chunk programs this process has compiled (all solvers).

  Counts the traces of :func:`run_chunk`: jit traces once for each new
  program, whether it then compiles it or reads it from a persistent
  compilation cache.
  """
  return _traces[0]


def validate(
    params: tuple, hyper: Optional[step_lib.Hyperparameters], x: jnp.ndarray,
    y: jnp.ndarray, c: Optional[jnp.ndarray] = None, *,
    config: step_lib.StepConfig
) -> tuple:
  """Validation metrics and the fit beside the floor (pure).

  Args:
    params: ``(params_f, params_g)``, stacked over the members of a
      population when ``hyper`` is given.
    hyper: The population's :class:`~ott_enot.step.Hyperparameters`, or
      :obj:`None` for one model.
    x: Validation source batch ``[n, d]``, or ``[K, n, d]``: one batch per
      condition of a conditional model.
    y: Validation target batch, shaped as ``x``.
    c: A conditional model's conditions ``[n, k]`` (``[K, n, k]``).
    config: The static :class:`~ott_enot.step.StepConfig`.

  Returns:
    A dict of :class:`~ott_enot.step.ValidationMetrics`' fields, ``fit`` and
    ``floor`` (:func:`ott_enot.metrics.fit_and_floor`): scalars, or
    ``[members]`` (``floor`` stays a scalar: it depends on ``y`` only); with
    one batch per condition, a leading axis ``[K]``.
  """
  if x.ndim == 3:  # one batch per condition: the metrics of each
    return jax.vmap(
        lambda *batch: validate(params, hyper, *batch, config=config)
    )(x, y, c)
  if hyper is None:
    metrics, mapped = step_lib.validation_metrics(
        *params, x, y, c, config=config)
  else:
    metrics, mapped = jax.vmap(
        lambda p, h: step_lib.validation_metrics(
            *p, x, y, c, config=config, hyper=h
        )
    )(params, hyper)
  fit, floor = metrics_lib.fit_and_floor(mapped, y)
  return dict(metrics._asdict(), fit=fit, floor=floor)


_validate = jax.jit(validate, static_argnames=("config",))


class StateCell:
  """The newest training state that no pending computation owns.

  :func:`train` rebinds :attr:`state` right after each chunk is dispatched
  (the input state is donated to the chunk, the output is the new state), so
  whatever raises during training, :attr:`state` is the state after the last
  completed chunk and never a donated buffer. The solver assigns it back in
  one place, in a ``finally``.
  """

  def __init__(self, state: step_lib.ENOTTrainState):
    self.state = state
    self.verified = None  # several processes: the last complete chunk's


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
  """Hold back Ctrl-C while a chunk is dispatched and its output recorded.

  Between donating the input state and storing the output there must be no
  ``KeyboardInterrupt``, or both would be lost. Outside the main thread
  (where signals are never delivered) this does nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda sig, frame: received.append(1))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    if received:
      if callable(previous):
        previous(signal.SIGINT, None)
      elif previous == signal.SIG_DFL:
        raise KeyboardInterrupt


def _dispatch(cell: StateCell, batches: feeds.ChunkBatches, chunk: Chunk,
              slots: np.ndarray, config: LoopConfig) -> tuple:
  """Run a chunk on the device; the cell holds its output state at once."""
  with _interrupts_deferred():
    state, metrics, snaps = _run_chunk(
        cell.state, batches, chunk.first, chunk.hi, slots, config=config
    )
    cell.state = state
  return state, metrics, snaps


@contextlib.contextmanager
def _peers_watched(cell: StateCell,
                   parallel: sharding.DataParallel) -> Iterator[None]:
  """Several processes: turn a failed collective (another process died)
  into a :class:`~ott_enot.sharding.ProcessFailedError`, the cell holding
  the state of the last chunk this process saw complete.

  A collective that fails poisons the outputs of its chunk, and the chunk's
  input was donated; so with several processes the loop keeps one more
  copy of the state, taken as each chunk completes (:func:`train`'s
  ``cell.verified``).
  """
  if not parallel.multi_process:
    yield
    return
  cell.verified = _copy(cell.state)
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    cell.state = cell.verified
    raise sharding.ProcessFailedError(
        int(np.max(jax.device_get(cell.state.step))) - 1, e) from e
  finally:
    cell.verified = None


@jax.jit
def _restart(state: step_lib.ENOTTrainState,
             start: jnp.ndarray) -> step_lib.ENOTTrainState:
  # a copy for the loop to donate (the caller's buffers survive), at `start`
  return jax.tree.map(jnp.copy, state).restart(start)


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def new_logs() -> Logs:
  """Empty logs, laid out as ott's."""
  return {
      "train_logs": {"loss_f": [], "loss_g": [], "w_dist": [], "directions": []},
      "valid_logs": {"loss_f": [], "loss_g": [], "w_dist": [], "map_cost": [],
                     "fit": [], "floor": []},
  }


def _value(a: Any) -> Any:
  """A float, or a list of floats (one per member of a population)."""
  return np.asarray(a, np.float64).tolist()


def _append(logs: Dict[str, List], metrics: Any, row: int):
  for key in ("loss_f", "loss_g", "w_dist"):
    logs[key].append(_value(getattr(metrics, key)[row]))


def _log_steps(logs: Logs, chunk: Chunk, metrics: step_lib.StepMetrics,
               done: int, log_freq: int, bidirectional: bool) -> None:
  """Log the applied steps ``k < done`` of the chunk with ``k % log_freq
  == 0``."""
  rows = logs["train_logs"]
  for k in chunk.steps:
    if k % log_freq == 0 and k < done:
      _append(rows, metrics, k - chunk.first)
      forward = step_lib.is_forward(k, bidirectional)
      rows["directions"].append("forward" if forward else "inverse")


class _Validation:
  """Validation at ott's steps (``k != 0``, ``k % valid_freq == 0``) on the
  parameters after step ``k``, with the feed's validation batches.

  Owns the count of validation batches used and the background compilation
  of the validation programs; as a context manager it makes sure that no
  compilation outlives the run.
  """

  def __init__(self, feed: Feed, config: LoopConfig, valid_freq: int,
               num_train_iters: int, start: int):
    self.feed, self.config, self.freq = feed, config, valid_freq
    self.enabled = num_train_iters > valid_freq
    self.count = max(start - 1, 0) // valid_freq  # validations before start
    self._compiling: Optional[threading.Thread] = None

  def __enter__(self) -> "_Validation":
    return self

  def __exit__(self, *exc) -> None:
    if self._compiling is not None:
      self._compiling.join()

  def inner_steps(self, chunk: Chunk) -> List[int]:
    """The validation steps strictly inside a chunk (need snapshots)."""
    return [k for k in range(max(chunk.lo, 1), chunk.hi) if k % self.freq == 0]

  def slots(self, chunk: Chunk) -> np.ndarray:
    """The chunk's snapshot steps, padded with -1 to the static count."""
    slots = np.full((self.config.snapshots,), -1, np.int32)
    inner = self.inner_steps(chunk)
    slots[:len(inner)] = inner
    return slots

  def compile_in_background(self, state: step_lib.ENOTTrainState) -> None:
    """Compile the validation programs on a background thread (once).

    Called once the first chunk is dispatched, so that it overlaps the
    steps rather than the chunk's own compilation: on the CPU the steps keep
    one core busy and this runs on the other; on accelerators it overlaps
    device time. It fills the jit caches that the first validation would
    otherwise fill mid-run. Errors are left to the real call, which raises
    them in the main thread.
    """
    if not self.enabled or self._compiling is not None:
      return
    params = self.config.parallel.replicated_like(state.params)
    hyper = state.hyper  # a population's; None for one model
    if hyper is not None:
      hyper = self.config.parallel.replicated_like(hyper)

    def compile_all():
      try:
        batch = self.feed.abstract_valid_batch(self.config.parallel)
        _validate.lower(params, hyper, *batch,
                        config=self.config.step).compile()
      except Exception:  # pylint: disable=broad-except
        pass

    self._compiling = threading.Thread(
        target=compile_all, name="ott_enot-compile-validation", daemon=True
    )
    self._compiling.start()

  def after_chunk(self, chunk: Chunk, state: step_lib.ENOTTrainState,
                  snapshots: Any, logs: Logs) -> Optional[float]:
    """Validate after the chunk's validation steps; the last ``w_dist``
    (``None`` if none ran, or for a population)."""
    inner = self.inner_steps(chunk)
    steps = inner + ([chunk.hi] if chunk.hi and chunk.hi % self.freq == 0
                     else [])
    w_dist = None
    for k in steps:
      if k == chunk.hi:
        params = state.params
      else:
        j = inner.index(k)
        params = jax.tree.map(lambda a, j=j: a[j], snapshots)
      if self._compiling is not None:
        self._compiling.join()
      batch = self.feed.valid_batch(self.count)
      self.count += 1
      row = jax.device_get(
          _validate(params, state.hyper, *batch, config=self.config.step)
      )
      conditions = getattr(self.feed, "conditions", None)
      if conditions is not None:
        row = _per_condition(logs, conditions, row)
      for key, values in logs["valid_logs"].items():
        values.append(_value(row[key]))
      w_dist = float(row["w_dist"]) if np.ndim(row["w_dist"]) == 0 else None
    return w_dist


def _per_condition(logs: Logs, conditions: Tuple[tuple, tuple],
                   row: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Record a validation of one batch per condition in
  ``logs["condition_logs"]``; return the overall row: the mean over the
  conditions trained on (held-out ones are only recorded)."""
  labels, trained = conditions
  per = logs.setdefault("condition_logs", {
      "labels": list(labels),
      "trained": [bool(t) for t in trained],
      **{key: [] for key in logs["valid_logs"]},
  })
  mask = np.asarray(trained, bool)
  for key in logs["valid_logs"]:
    per[key].append(_value(row[key]))
  return {key: np.mean(np.asarray(v)[mask], axis=0) for key, v in row.items()}


class _Progress:
  """A tqdm bar of the run's steps (steps/s and the loss)."""

  def __init__(self, total: int, start: int, enabled: bool):
    from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel
    # several processes: one bar, process 0's
    enabled = enabled and sharding.is_main_process()
    self.bar = tqdm(total=total, initial=start, disable=not enabled,
                    unit="step")

  def __enter__(self) -> "_Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.bar.close()

  def update(self, chunk: Chunk, metrics: step_lib.StepMetrics) -> None:
    self.bar.update(len(chunk.steps))
    loss = np.asarray(metrics.loss[chunk.hi - chunk.first])
    # a population: the median loss over its members
    self.bar.set_postfix(loss=f"{float(np.median(loss)):.4g}", refresh=False)


def train(
    cell: StateCell,
    feed: Feed,
    *,
    config: LoopConfig,
    num_train_iters: int,
    log_freq: int,
    valid_freq: int,
    to_potentials: Callable[[step_lib.ENOTTrainState], Any],
    callback: Optional[Callable[[int, Any], Any]] = None,
    progress_bar: bool = True,
    start: int = 0,
    logs: Optional[Logs] = None,
    checkpointer: Optional[Any] = None,
) -> Logs:
  """Run steps ``start, ..., num_train_iters - 1`` in chunks, ott's schedule.

  Step ``k`` goes forward when :func:`~ott_enot.step.is_forward` says so and
  takes one training batch. Logs hold the metrics of the steps
  ``k % log_freq == 0``; validation runs after the steps ``k != 0``,
  ``k % valid_freq == 0``, as in ott, on the parameters after step ``k``.
  ``callback(k, potentials)`` is called after the last step ``k`` of each
  chunk (see :func:`plan_chunks`).

  Args:
    cell: Holds the initial state, and afterwards (also when this raises) the
      state after the last completed chunk. The initial state is copied
      before anything is donated, so buffers the caller holds survive.
    feed: The :class:`Feed` of the run's batches.
    config: The :class:`LoopConfig`.
    num_train_iters: Number of steps of the run.
    log_freq: Logging period.
    valid_freq: Validation period.
    to_potentials: Builds potentials from a state.
    callback: Optional ``callback(step, potentials)``.
    progress_bar: Show a tqdm bar (steps/s and the loss).
    start: First step to run (a resumed run: the checkpoint's ``step``). A
      resumed run applies exactly the steps an uninterrupted one would.
    logs: The logs of the steps before ``start``, extended in place.
    checkpointer: Optional :class:`~ott_enot.checkpoints.Checkpointer`,
      told about every chunk (it decides what to write) before the callback.

  Returns:
    The logs, laid out as ott's.

  Raises:
    ~ott_enot.TrainingDivergedError: if a step was not finite.
    ValueError: for a bad batch (the first ones before anything compiles), a
      batch that does not split over ``config.parallel``'s devices (before
      anything compiles) or an iterator that runs out.
  """
  logs = new_logs() if logs is None else logs
  length = config.chunk_length
  chunks = plan_chunks(num_train_iters, length, config.chunk_size, start)
  if not chunks:
    return logs
  validation = _Validation(feed, config, valid_freq, num_train_iters, start)
  feed.prepare(config.parallel, validation=validation.enabled)
  cell.state = _restart(config.parallel.replicate(cell.state), start)
  with _Progress(num_train_iters, start, progress_bar) as progress, \
      validation, _peers_watched(cell, config.parallel):
    batches = feed.batches(chunks[0].steps, chunks[0].first, length)
    for k, chunk in enumerate(chunks):
      state, metrics, snapshots = _dispatch(
          cell, batches, chunk, validation.slots(chunk), config
      )
      validation.compile_in_background(state)
      if k + 1 < len(chunks):  # host work while the device runs this chunk
        nxt = chunks[k + 1]
        batches = feed.batches(nxt.steps, nxt.first, length)
      metrics = jax.device_get(metrics)
      done = int(np.max(state.step))  # a population: its live members' step
      # one copy of the state for the checkpoint, the callback and (several
      # processes) the fallback of `_peers_watched`, made only if asked for:
      # the state itself is donated to the next chunk
      kept = functools.cache(lambda state=state: _copy(state))
      if config.parallel.multi_process:  # this chunk is complete: keep it
        cell.verified = kept()
      _log_steps(logs, chunk, metrics, done, log_freq, config.bidirectional)
      if bool(np.all(state.diverged)):  # a population: every member
        raise step_lib.TrainingDivergedError(done, to_potentials(state), logs)
      progress.update(chunk, metrics)
      w_dist = validation.after_chunk(chunk, state, snapshots, logs)
      if checkpointer is not None:
        checkpointer.after_chunk(
            chunk.lo, chunk.hi, kept, final=chunk.hi == num_train_iters - 1,
            w_dist=w_dist,
            meta={"logs": logs, "num_validations": validation.count},
        )
      if callback is not None:
        callback(chunk.hi, to_potentials(kept()))
  return logs
