r"""The engine: chunks of steps of any training method, one compiled program
per run, and nothing lost whatever raises.

Glossary: a *run* is one call of training (steps ``0, ...,
num_train_iters - 1``, ott's numbering); a *chunk* is the steps one dispatch
runs inside one ``lax.scan``; its *chunk length* ``L`` is the scan's number of
steps (the user's ``chunk_size`` rounded up to a multiple of the method's
phases); a *feed* (:class:`~ott_enot.training.feeds.Feed`) supplies each
chunk's batches and the validation batches; the *method*
(:class:`~ott_enot.training.method.TrainingMethod`) says what a step, a
validation and a result are. Nothing here knows which method runs.

Every chunk is a scan over ``L`` consecutive steps ``first, ..., first + L -
1`` with ``first = 1 - L, 1, L + 1, 2L + 1, ...``, so scans end at the
multiples of ``L`` (step 0 ends the first). A chunk applies the steps ``lo,
..., hi`` of its scan (a run starts, ends and is split at the multiples of
``chunk_size`` inside scans: :func:`plan_chunks`) and masks the others. One
program (:func:`run_chunk`, jitted once per :class:`LoopConfig` and batch
type) therefore serves every chunk of every run. Validation after a step
inside a chunk uses a snapshot of the parameters taken in the scan; the
validation programs compile on a background thread while the first chunks
run.

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
    Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple,
)

import jax
import jax.numpy as jnp
import numpy as np

from ott_enot.training import feeds, sharding
from ott_enot.training.feeds import Feed
from ott_enot.training.method import TrainingMethod
from ott_enot.training.state import (
    TrainingDivergedError,
    TrainState,
    expand_flag as _expand,
    guarded_step,
    restart,
)

__all__ = [
    "Feed",
    "LoopConfig",
    "Chunk",
    "plan_chunks",
    "run_chunk",
    "validation_reference",
    "validate",
    "StateCell",
    "Best",
    "selection_tolerance",
    "selected_params",
    "new_logs",
    "train",
    "chunk_programs_compiled",
]

Logs = Dict[str, Dict[str, List[Any]]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static configuration of the compiled chunk program (hashable).

  Build it with :meth:`create`. Two runs with equal configs and batches of
  the same type and shapes share one compiled program.

  Attributes:
    method: The :class:`~ott_enot.training.method.TrainingMethod`.
    chunk_length: Steps per scan: ``chunk_size``, rounded up to a multiple
      of the method's phases so that the scan runs over static groups of
      phases.
    chunk_size: The requested chunk size; chunks also end at its multiples.
    snapshots: Validation steps a chunk can hold before its end; the scan
      keeps a snapshot of the parameters after each.
    skip_masked: Skip masked steps with ``lax.cond`` (on the CPU) instead of
      computing them and discarding the result (on accelerators, where a
      conditional may synchronise with the host).
    parallel: Where the arrays live: :class:`~ott_enot.training.sharding.DataParallel`
      splits every batch over the devices of a mesh and replicates the
      state; the default keeps everything on one device.
  """
  method: TrainingMethod
  chunk_length: int
  chunk_size: int
  snapshots: int = 0
  skip_masked: bool = False
  parallel: sharding.DataParallel = sharding.DataParallel()

  @classmethod
  def create(
      cls,
      *,
      method: TrainingMethod,
      chunk_size: int,
      valid_freq: int,
      backend: Optional[str] = None,
      parallel: sharding.DataParallel = sharding.DataParallel(),
  ) -> "LoopConfig":
    """The config for chunks of ``chunk_size`` steps (rounded up to a
    multiple of the method's phases), validation every ``valid_freq`` steps,
    and the devices of ``parallel``."""
    phases = method.phases
    chunk_length = -(-chunk_size // phases) * phases
    if backend is None:
      backend = parallel.platform
    return cls(
        method=method,
        chunk_length=chunk_length,
        chunk_size=int(chunk_size),
        snapshots=_inner_validations(chunk_length, valid_freq),
        skip_masked=backend == "cpu",
        parallel=parallel,
    )


def _inner_validations(chunk_length: int, valid_freq: int) -> int:
  """Most validation steps strictly inside a scan (before its last step)."""
  if valid_freq % chunk_length == 0:
    return 0  # validation steps are scan ends
  if chunk_length % valid_freq == 0:
    return chunk_length // valid_freq - 1
  return (chunk_length - 2) // valid_freq + 1


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
    num_train_iters: int, chunk_length: int, chunk_size: Optional[int] = None,
    start: int = 0
) -> List[Chunk]:
  """The chunks of the steps ``start, ..., num_train_iters - 1`` of a run.

  Scan ``j`` holds steps ``(j - 1) * L + 1`` to ``j * L``, ``L =
  chunk_length``: step 0 ends the first scan and every multiple of ``L`` ends
  one. A scan is also split after every multiple of ``chunk_size`` (when a
  chunk size was rounded up to a multiple of the method's phases), so chunks
  end, and callbacks fire, at step 0, the multiples of ``chunk_size`` and of
  ``L``, and the last step. A resumed run (``start > 0``) gets the chunks an
  uninterrupted run would, from ``start`` on.
  """
  chunk_size = chunk_length if chunk_size is None else chunk_size
  out, last, first = [], num_train_iters - 1, 1 - chunk_length
  while max(first, 0) <= last:
    lo, end = max(first, 0), min(first + chunk_length - 1, last)
    for hi in range(lo, end + 1):
      if hi == end or hi % chunk_size == 0:
        if hi >= start:
          out.append(Chunk(first, max(lo, start), hi))
        lo = hi + 1
    first += chunk_length
  return out


_traces = [0]


def run_chunk(
    state: TrainState,
    batches: feeds.ChunkBatches,
    first: jnp.ndarray,
    hi: jnp.ndarray,
    snapshot_steps: jnp.ndarray,
    *,
    config: LoopConfig,
) -> tuple:
  """One chunk of steps in one ``lax.scan`` (pure).

  Position ``i`` of the scan is step ``first + i``; it applies iff it is the
  state's next step (``state.step``) and ``<= hi``
  (:func:`~ott_enot.training.state.guarded_step`), so a chunk applies the
  steps ``state.step, ..., hi`` and a diverged state stops where it is. The
  scan runs over groups of the method's ``phases`` steps: scans start on
  steps ``1 (mod L)``, so position ``p`` of a group runs phase ``(1 + p) %
  phases``, statically, and the device never branches on the phase.

  Args:
    state: The method's state before the chunk (``state.step`` is its first
      step; ``[members]`` step counters for a state of members, each
      applying a position iff it is that member's next step).
    batches: A :class:`~ott_enot.training.feeds.ChunkBatches`.
    first: Integer scalar, the scan's first step.
    hi: Last step to apply.
    snapshot_steps: ``int32[config.snapshots]``: steps after which to keep
      the parameters (``-1`` for unused slots).
    config: The static :class:`LoopConfig`.

  Returns:
    ``(state, metrics, snapshots)``: the state after step ``hi``, the
    method's metrics with fields of shape ``[chunk_length]`` (``[chunk_length,
    members]``; zeros or garbage at masked positions), and the method's
    parameters stacked over the snapshot slots.
  """
  _traces[0] += 1  # once per compiled program (see chunk_programs_compiled)
  method = config.method
  group = method.phases
  phases = [(1 + p) % group for p in range(group)]

  def one(carry, i, phase):
    st, snaps = carry
    k = first + i
    batch = config.parallel.constrain_batch(batches.train_batch(i, k))
    active = (k == st.step) & (k <= hi)
    st, metrics = guarded_step(
        lambda s: method.step(s, batch, phase), st, method.params, active
    )
    if config.snapshots:
      hit = snapshot_steps == k
      snaps = jax.tree.map(
          lambda buf, p: jnp.where(
              hit.reshape(hit.shape + (1,) * p.ndim), p[None], buf
          ), snaps, method.params(st)
      )
    return (st, snaps), metrics

  def run_group(carry, g):
    out = []
    for p, phase in enumerate(phases):
      carry, metrics = one(carry, g * group + p, phase)
      out.append(metrics)
    return carry, jax.tree.map(lambda *a: jnp.stack(a), *out)

  snaps = jax.tree.map(
      lambda p: jnp.broadcast_to(p, (config.snapshots,) + p.shape),
      method.params(state)
  ) if config.snapshots else ()
  def skip_group(carry, g):
    del g  # a group with no step to apply: the method's zeros, not computed
    return carry, jax.tree.map(
        lambda z: jnp.broadcast_to(z, (group,) + jnp.shape(z)),
        method.zero_metrics(carry[0]))

  def skip_or_run(carry, g):
    start = first + g * group
    # a state of members: its live members share the largest step counter
    live = (start + group - 1 >= jnp.max(carry[0].step)) & (start <= hi)
    return jax.lax.cond(live, run_group, skip_group, carry, g)

  (state, snaps), metrics = jax.lax.scan(
      skip_or_run if config.skip_masked else run_group, (state, snaps),
      jnp.arange(config.chunk_length // group)
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


def validation_reference(batch: Tuple[jnp.ndarray, ...], *,
                         method: TrainingMethod, grouped: bool = False) -> Any:
  """The method's
  :meth:`~ott_enot.training.method.TrainingMethod.validation_reference` of a
  validation batch (pure); with ``grouped``, one
  per group (a leading ``[K]`` axis)."""
  if grouped:
    return jax.vmap(lambda *b: method.validation_reference(b))(*batch)
  return method.validation_reference(batch)


def validate(params: Any, batch: Tuple[jnp.ndarray, ...], reference: Any, *,
             method: TrainingMethod, grouped: bool = False) -> dict:
  """The method's validation metrics of ``params`` on a batch (pure).

  Args:
    params: The method's parameters
      (:meth:`~ott_enot.training.method.TrainingMethod.params`).
    batch: A validation batch, ``(x[n, d], y[n, d])`` or ``(x, y,
      cond[n, k])``; with ``grouped``, one batch per condition of a family,
      every array with a leading ``[K]`` axis.
    reference: The run's :func:`validation_reference`.
    method: The static method.
    grouped: Validate each group (condition) of the batch on its own.

  Returns:
    The method's dict of metrics; with ``grouped``, each with a leading
    ``[K]`` axis.
  """
  if grouped:
    return jax.vmap(lambda r, *b: method.validate(params, b, r))(
        reference, *batch)
  return method.validate(params, batch, reference)


_validation_reference = jax.jit(validation_reference,
                                static_argnames=("method", "grouped"))
_validate = jax.jit(validate, static_argnames=("method", "grouped"))


class Best(NamedTuple):
  """The validated parameters training returns, so far: those of the latest
  validation whose score was within the run's tolerance
  (:func:`selection_tolerance`) of the lowest score until then (member by
  member for a state of members).

  With fresh validation batches (the user's loaders) the latest near-best
  rather than the lowest: scores carry the sampling noise of their batch,
  so among scores within the noise the later parameters (more steps, a
  smaller learning rate) are kept; an earlier state is returned only when
  it validated clearly better. Where every validation sees the same batch,
  the tolerance is 0: the lowest.

  Attributes:
    step: The step after which they were validated (an int, or ``[members]``
      ints).
    score: Their score (a float, or ``[members]``; ``inf`` for a member
      that has no finite score yet).
    params: The method's parameters after that step (a copy that no
      computation owns).
    lowest: The lowest score so far (a float, or ``[members]``).
  """
  step: Any
  score: Any
  params: Any
  lowest: Any

  def as_json(self, metric: str) -> Dict[str, Any]:
    """``{"step": ..., metric: ..., "lowest": ...}`` (for logs and
    checkpoints)."""
    value = lambda a: np.asarray(a, np.float64).tolist()
    return {"step": np.asarray(self.step).tolist(), metric: value(self.score),
            "lowest": value(self.lowest)}


@jax.jit
def _kept_copy(params: Any) -> Any:
  # a copy of validated parameters that no later chunk owns
  return jax.tree.map(jnp.copy, params)


@jax.jit
def _kept_members(keep: jnp.ndarray, new: Any, old: Any) -> Any:
  # member by member: the new parameters where they are kept
  return jax.tree.map(lambda n, o: jnp.where(_expand(keep, n), n, o), new,
                      old)


def _selected(best: Optional[Best], step: int, score: Any, params: Any,
              tolerance: float) -> Best:
  """``best`` after a validation of ``params`` after ``step``: they are kept
  where their score is within ``tolerance`` (relative) of the lowest so far,
  this one included; the same object when nothing is kept."""
  score = np.where(np.isfinite(score), np.asarray(score, np.float64), np.inf)
  if best is None:
    return Best(np.full(score.shape, step), score, _kept_copy(params), score)
  lowest = np.minimum(best.lowest, score)
  margin = tolerance * np.abs(lowest) if tolerance else 0.0  # not 0 * inf
  keep = np.isfinite(score) & (score <= lowest + margin)
  if not keep.any():
    return best if (lowest == best.lowest).all() else best._replace(
        lowest=lowest)
  params = (_kept_copy(params) if keep.all() else
            _kept_members(keep, params, best.params))
  return Best(np.where(keep, step, best.step), np.where(keep, score,
                                                         best.score),
              params, lowest)


def selection_tolerance(method: TrainingMethod, feed: Feed) -> float:
  """How far above the lowest score a later validation may be and still be
  kept: 0 (the lowest) where every validation sees the same batch
  (``feed.repeats_validation``: the scores differ only by the maps), else
  the method's ``selection_tolerance`` (the noise between fresh batches).

  On a finite sample on the sphere (``benchmarks/sphere.py``, 30,000 steps,
  validation every 1,000 on 1,024 of the 1,200 held-out points), the
  lowest validation was the best map on fresh points in 5 of 6 cases
  (problems A and B, up to 10,000, 20,000 and 30,000 steps), the latest
  within 25 % of it in 3 (RESULTS.md, "Selection on one validation
  batch").
  """
  if getattr(feed, "repeats_validation", False):
    return 0.0
  return float(method.selection_tolerance)


def selected_params(method: TrainingMethod, state: TrainState,
                    best: Optional[Best]) -> Any:
  """The parameters a face returns: the best validated ones where a finite
  score selected them (member by member), else the state's own."""
  current = method.params(state)
  if best is None:
    return current
  finite = np.isfinite(best.score)
  if finite.all():
    return best.params
  if not finite.any():
    return current
  return _kept_members(finite, best.params, current)


class StateCell:
  """The newest training state that no pending computation owns, and the
  run's best validated parameters.

  :func:`train` rebinds ``state`` right after each chunk is dispatched
  (the input state is donated to the chunk, the output is the new state), so
  whatever raises during training, ``state`` is the state after the last
  completed chunk and never a donated buffer; ``best`` is the
  :class:`Best` of the validations so far (copies), or :obj:`None`. The
  solver assigns both back in one place, in a ``finally``.
  """

  def __init__(self, state: TrainState, best: Optional[Best] = None):
    self.state = state
    self.best = best
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
  into a :class:`~ott_enot.training.sharding.ProcessFailedError`, the cell holding
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
def _restart(state: TrainState, start: jnp.ndarray) -> TrainState:
  # a copy for the loop to donate (the caller's buffers survive), at `start`
  return restart(jax.tree.map(jnp.copy, state), start)


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def new_logs(method: TrainingMethod) -> Logs:
  """Empty logs of the method, laid out as ott's."""
  return {
      "train_logs": {key: [] for key in method.train_log_keys},
      "valid_logs": {key: [] for key in method.valid_log_keys},
  }


def _value(a: Any) -> Any:
  """A float, or a list of floats (one per member of a population)."""
  return np.asarray(a, np.float64).tolist()


def _log_steps(logs: Logs, chunk: Chunk, metrics: Any, done: int,
               log_freq: int, method: TrainingMethod) -> None:
  """Log the applied steps ``k < done`` of the chunk with ``k % log_freq
  == 0``."""
  rows = logs["train_logs"]
  for k in chunk.steps:
    if k % log_freq == 0 and k < done:
      at_k = jax.tree.map(lambda a, j=k - chunk.first: a[j], metrics)
      for key, value in method.log_row(k, at_k).items():
        rows[key].append(value)


class _Validation:
  """Validation at ott's steps (``k != 0``, ``k % valid_freq == 0``) on the
  parameters after step ``k``, with the feed's validation batches.

  Owns the count of validation batches used, the run's validation
  reference (the method's
  :meth:`~ott_enot.training.method.TrainingMethod.validation_reference` of the
  run's first validation batch: computed once,
  or restored from a checkpoint) and the background compilation of the
  validation programs; as a context manager it makes sure that no
  compilation outlives the run.
  """

  def __init__(self, feed: Feed, config: LoopConfig, valid_freq: int,
               num_train_iters: int, start: int,
               reference: Optional[List[Any]] = None,
               validate_last: bool = False):
    self.feed, self.config, self.freq = feed, config, valid_freq
    self.last, self.validate_last = num_train_iters - 1, validate_last
    self.method = config.method
    self.groups = feed.validation_groups
    self.tolerance = selection_tolerance(self.method, feed)
    self.enabled = num_train_iters > valid_freq
    self.count = max(start - 1, 0) // valid_freq  # validations before start
    # the reference's leaves as lists: a checkpoint's, or this run's once
    # saved (then `reference` holds it on the device)
    self.restored = reference
    self.reference = None
    self._compiling: Optional[threading.Thread] = None

  def __enter__(self) -> "_Validation":
    return self

  def __exit__(self, *exc) -> None:
    if self._compiling is not None:
      self._compiling.join()

  @property
  def _grouped(self) -> bool:
    return self.groups is not None

  def inner_steps(self, chunk: Chunk) -> List[int]:
    """The validation steps strictly inside a chunk (need snapshots)."""
    return [k for k in range(max(chunk.lo, 1), chunk.hi) if k % self.freq == 0]

  def slots(self, chunk: Chunk) -> np.ndarray:
    """The chunk's snapshot steps, padded with -1 to the static count."""
    slots = np.full((self.config.snapshots,), -1, np.int32)
    inner = self.inner_steps(chunk)
    slots[:len(inner)] = inner
    return slots

  def _abstract_reference(self, batch: Any) -> Any:
    # the jitted function's: one trace, shared with its compilation
    return _validation_reference.eval_shape(
        batch, method=self.method, grouped=self._grouped)

  def _reference_of(self, batch: Any) -> Any:
    """The run's reference: restored, or computed on this batch."""
    if self.reference is None:
      if self.restored is None:
        self.reference = _validation_reference(
            batch, method=self.method, grouped=self._grouped)
      else:
        like = self._abstract_reference(batch)
        leaves, treedef = jax.tree.flatten(like)
        if len(leaves) != len(self.restored):
          raise ValueError(
              "The checkpoint's validation reference does not match the "
              "method's (another method or version wrote it).")
        self.reference = self.config.parallel.replicate(jax.tree.unflatten(
            treedef, [np.asarray(v, a.dtype).reshape(a.shape)
                      for v, a in zip(self.restored, leaves)]))
    return self.reference

  def saved_reference(self) -> Optional[List[Any]]:
    """The reference as JSON values (for the checkpoints' metadata; read
    from the device once)."""
    if self.restored is None and self.reference is not None:
      self.restored = [np.asarray(a).tolist() for a in
                       jax.tree.leaves(jax.device_get(self.reference))]
    return self.restored

  def compile_in_background(self, state: TrainState) -> None:
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
    params = self.config.parallel.replicated_like(self.method.params(state))

    def compile_all():
      try:
        batch = self.feed.abstract_valid_batch(self.config.parallel)
        kw = dict(method=self.method, grouped=self._grouped)
        traced = _validation_reference.trace(batch, **kw)
        if self.restored is None:
          traced.lower().compile()
        reference = self.config.parallel.replicated_like(traced.out_info)
        _validate.lower(params, batch, reference, **kw).compile()
      except Exception:  # pylint: disable=broad-except
        pass

    self._compiling = threading.Thread(
        target=compile_all, name="ott_enot-compile-validation", daemon=True
    )
    self._compiling.start()

  def after_chunk(self, chunk: Chunk, state: TrainState,
                  snapshots: Any, logs: Logs, cell: StateCell) -> bool:
    """Validate after the chunk's validation steps, keeping the best
    validated parameters in ``cell.best`` (and their step and score in
    ``logs["selection"]``); whether they improved (a "best" checkpoint is
    due: one model's)."""
    inner = self.inner_steps(chunk)
    at_end = chunk.hi and (chunk.hi % self.freq == 0 or (
        self.validate_last and chunk.hi == self.last))
    steps = inner + ([chunk.hi] if at_end else [])
    metric, improved = self.method.selection_metric, False
    for k in steps:
      if k == chunk.hi:
        params = self.method.params(state)
      else:
        params = jax.tree.map(lambda a, j=inner.index(k): a[j], snapshots)
      if self._compiling is not None:
        self._compiling.join()
      batch = self.feed.valid_batch(self.count)
      self.count += 1
      row = jax.device_get(_validate(
          params, batch, self._reference_of(batch), method=self.method,
          grouped=self._grouped))
      if self._grouped:
        row = _per_condition(logs, self.groups, row)
      for key, values in logs["valid_logs"].items():
        values.append(_value(row[key]))
      if metric is not None:
        best = _selected(cell.best, k, self.method.selection_score(row),
                         params, self.tolerance)
        if best is not cell.best:
          improved |= cell.best is None or np.any(best.step != cell.best.step)
          cell.best = best
          if np.isfinite(best.score).any():
            logs["selection"] = best.as_json(metric)
    return (improved and np.ndim(cell.best.score) == 0
            and bool(np.isfinite(cell.best.score)))


def _per_condition(logs: Logs, groups: Any,
                   row: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Record a validation of one batch per condition in
  ``logs["condition_logs"]``; return the overall row: the mean over the
  conditions trained on (held-out ones are only recorded)."""
  labels, trained = groups.labels, groups.trained
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

  def update(self, chunk: Chunk, metrics: Any) -> None:
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
    callback: Optional[Callable[[int, Any], Any]] = None,
    progress_bar: bool = True,
    start: int = 0,
    logs: Optional[Logs] = None,
    checkpointer: Optional[Any] = None,
    validation_reference: Optional[List[Any]] = None,
    validate_last: bool = False,
) -> Logs:
  """Run steps ``start, ..., num_train_iters - 1`` of the config's method in
  chunks, ott's schedule.

  Step ``k`` runs the method's phase ``k % phases`` and takes one training
  batch. Logs hold the method's rows of the steps ``k % log_freq == 0``;
  validation runs after the steps ``k != 0``, ``k % valid_freq == 0``, as in
  ott, on the parameters after step ``k``. ``callback(k, result)`` is called
  after the last step ``k`` of each chunk (see :func:`plan_chunks`) with the
  method's result for the state after it.

  Args:
    cell: Holds the initial state, and afterwards (also when this raises) the
      state after the last completed chunk. The initial state is copied
      before anything is donated, so buffers the caller holds survive.
    feed: The :class:`~ott_enot.training.feeds.Feed` of the run's batches.
    config: The :class:`LoopConfig` (and so the method).
    num_train_iters: Number of steps of the run.
    log_freq: Logging period.
    valid_freq: Validation period.
    callback: Optional ``callback(step, result)``.
    progress_bar: Show a tqdm bar (steps/s and the loss).
    start: First step to run (a resumed run: the checkpoint's ``step``). A
      resumed run applies exactly the steps an uninterrupted one would.
    logs: The logs of the steps before ``start``, extended in place.
    checkpointer: Optional :class:`~ott_enot.training.checkpoints.Checkpointer`,
      told about every chunk (it decides what to write) before the callback.
    validation_reference: A resumed run's validation reference (the
      checkpoint's ``validation_reference``: leaves as lists), so that it
      validates as the uninterrupted run; default: computed on the run's
      first validation batch.
    validate_last: Validate after the run's last step too (when validation
      runs at all), so that the last parameters compete for ``cell.best``.

  Returns:
    The logs, laid out as ott's.

  Raises:
    ~ott_enot.TrainingDivergedError: if a step was not finite (every member
      of a state of members).
    ValueError: for a bad batch (the first ones before anything compiles), a
      batch that does not split over ``config.parallel``'s devices (before
      anything compiles) or an iterator that runs out.
  """
  method = config.method
  logs = new_logs(method) if logs is None else logs
  chunks = plan_chunks(num_train_iters, config.chunk_length, config.chunk_size,
                       start)
  if not chunks:
    return logs
  validation = _Validation(feed, config, valid_freq, num_train_iters, start,
                           validation_reference, validate_last)
  feed.prepare(config.parallel, validation=validation.enabled)
  cell.state = _restart(config.parallel.replicate(cell.state), start)
  if cell.best is not None:  # restored from a checkpoint: placed as the state
    cell.best = cell.best._replace(
        params=config.parallel.replicate(cell.best.params))
  with _Progress(num_train_iters, start, progress_bar) as progress, \
      validation, _peers_watched(cell, config.parallel):
    batches = feed.batches(chunks[0].steps, chunks[0].first,
                           config.chunk_length)
    for k, chunk in enumerate(chunks):
      state, metrics, snapshots = _dispatch(
          cell, batches, chunk, validation.slots(chunk), config
      )
      validation.compile_in_background(state)
      if k + 1 < len(chunks):  # host work while the device runs this chunk
        nxt = chunks[k + 1]
        batches = feed.batches(nxt.steps, nxt.first, config.chunk_length)
      metrics = jax.device_get(metrics)
      done = int(np.max(state.step))  # members: the live members' step
      # one copy of the state for the checkpoint, the callback and (several
      # processes) the fallback of `_peers_watched`, made only if asked for:
      # the state itself is donated to the next chunk
      kept = functools.cache(lambda state=state: _copy(state))
      if config.parallel.multi_process:  # this chunk is complete: keep it
        cell.verified = kept()
      _log_steps(logs, chunk, metrics, done, log_freq, method)
      if bool(np.all(state.diverged)):  # members: every member
        raise TrainingDivergedError(done, method.result(state), logs,
                                    method.divergence_advice)
      progress.update(chunk, metrics)
      improved = validation.after_chunk(chunk, state, snapshots, logs, cell)
      if checkpointer is not None:
        checkpointer.after_chunk(
            chunk.lo, chunk.hi, kept, final=chunk.hi == num_train_iters - 1,
            improved=improved, best=cell.best,
            meta={"logs": logs, "num_validations": validation.count,
                  "validation_reference": validation.saved_reference()},
        )
      if callback is not None:
        callback(chunk.hi, method.result(kept()))
  return logs
