r"""The ENOT training step as a pure function, and the fused loop driving it.

:func:`enot_step` maps ``(ENOTTrainState, source[n, d], target[n, d], step)``
to ``(ENOTTrainState, StepMetrics)`` and never reaches into an object, so it
can be jitted, scanned over or vmapped. A step whose loss, gradients or
updated parameters are not finite is not applied: the state keeps its last
good parameters and records the step in :attr:`ENOTTrainState.diverged_at`.

The loop runs the steps in *windows* of ``W`` consecutive steps, one compiled
program for all of them (:func:`run_chunk`, jitted once per
:class:`LoopConfig` and batch-source type): window ``j`` holds the steps
``(j - 1) W + 1, ..., j W``, so windows end at the multiples of ``W`` (and
step 0 ends the first one). A window that the run only partly covers (the
first, the last) masks the steps outside ``[lo, hi]``: they are computed on
accelerators and skipped on the CPU, and never applied. Validation after a
step inside a window uses a snapshot of the parameters taken in the scan, so
``valid_freq`` never splits a window; the validation programs compile on a
background thread while the first windows run, off the critical path.
:func:`train` dispatches the windows, keeping in a :class:`StateCell` the
newest state that no pending computation owns: whatever raises, the caller
keeps the last completed chunk's state.
"""
import contextlib
import dataclasses
import functools
import signal
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import struct
from flax.training import train_state

from ott_enot import losses, maps, sharding, sources

__all__ = [
    "ENOTTrainState",
    "StepMetrics",
    "TrainingDivergedError",
    "enot_step",
    "enot_metrics",
    "is_forward",
    "LoopConfig",
    "Window",
    "windows",
    "run_chunk",
    "StateCell",
    "train",
    "chunk_programs_compiled",
]


class ENOTTrainState(struct.PyTreeNode):
  """Both networks' train states and the divergence marker.

  Attributes:
    state_f: Train state of the ``f`` network.
    state_g: Train state of the ``g`` network.
    diverged_at: ``int32`` scalar, the first step whose loss or gradients
      were not finite, ``-1`` while all were finite.
  """
  state_f: train_state.TrainState
  state_g: train_state.TrainState
  diverged_at: jnp.ndarray

  @classmethod
  def create(
      cls, state_f: train_state.TrainState, state_g: train_state.TrainState
  ) -> "ENOTTrainState":
    """A fresh state that has not diverged."""
    return cls(state_f, state_g, jnp.asarray(-1, dtype=jnp.int32))


class StepMetrics(NamedTuple):
  """Metrics of one step (scalars).

  Attributes:
    loss: total loss.
    loss_f: loss of the ``f`` network's parameters in this step.
    loss_g: loss of the ``g`` network's parameters in this step.
    w_dist: dual estimate of the OT cost on the batch, units of ``cost_fn``.
  """
  loss: jnp.ndarray
  loss_f: jnp.ndarray
  loss_g: jnp.ndarray
  w_dist: jnp.ndarray


class TrainingDivergedError(FloatingPointError):
  """Training produced a non-finite loss or gradient.

  Attributes:
    step: The first step that was not finite (it was not applied).
    potentials: :class:`~ott_enot.ENOTPotentials` of the last good state.
    logs: The logs up to the failure.
  """

  def __init__(self, step: int, potentials: Any, logs: Dict[str, Any]):
    self.step = step
    self.potentials = potentials
    self.logs = logs
    super().__init__(
        f"ENOT training diverged at step {step}: the loss or its gradients "
        f"became NaN/inf. The solver keeps the last good state (also in "
        f"`err.potentials`). Try a smaller learning rate, a smaller "
        f"`expectile_loss_coef`, an `expectile` below 1, or check the data."
    )


def _finite(loss: jnp.ndarray, params: Any) -> jnp.ndarray:
  """Whether the loss and all updated parameters are finite.

  One global norm instead of a reduction per leaf: a NaN/inf anywhere (from
  the gradients or from the optimiser) makes the norm non-finite, and the
  compiled step stays small (this halves its compile time on the CPU).
  """
  return jnp.isfinite(loss + optax.global_norm(params))


def is_forward(step: Any, bidirectional: bool) -> Any:
  """The schedule: step ``k`` goes forward iff ``k`` is even or training is
  one-directional (as in ott). Works on ints and traced integers."""
  return (step % 2 == 0) | (not bidirectional)


def _losses(
    params_f: Any, params_g: Any, source: jnp.ndarray, target: jnp.ndarray,
    *, model: maps.TransportModel, expectile: float,
    expectile_loss_coef: float, forward: bool, with_grad: bool
):
  if forward:
    map_params, pot_params = params_f, params_g
    map_fn, value_fn, cost_fn = (
        model.forward_map, model.potential_g, model.training_cost
    )
    x, y = source, target
  else:
    map_params, pot_params = params_g, params_f
    map_fn, value_fn = model.inverse_map, model.potential_f
    cost_fn = lambda a, b: model.training_cost(b, a)
    x, y = target, source
  loss_fn = functools.partial(
      losses.enot_loss,
      map_fn=map_fn,
      value_fn=value_fn,
      cost_fn=cost_fn,
      expectile=expectile,
      expectile_loss_coef=expectile_loss_coef,
  )
  if with_grad:
    (loss, terms), (g_map, g_pot) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True
    )(map_params, pot_params, x, y)
    grads_f, grads_g = (g_map, g_pot) if forward else (g_pot, g_map)
  else:
    loss, terms = loss_fn(map_params, pot_params, x, y)
    grads_f = grads_g = None
  loss_f, loss_g = (
      (terms.map_loss, terms.potential_loss) if forward else
      (terms.potential_loss, terms.map_loss)
  )
  metrics = StepMetrics(
      loss, loss_f, loss_g, model.dual_to_cost(source, target, terms.dual)
  )
  return metrics, grads_f, grads_g


def enot_step(
    state: ENOTTrainState,
    source: jnp.ndarray,
    target: jnp.ndarray,
    step: jnp.ndarray,
    *,
    model: maps.TransportModel,
    expectile: float,
    expectile_loss_coef: float,
    forward: bool,
    active: Any = True,
) -> tuple:
  """One ENOT gradient step in one direction (pure).

  Forward: the ``f`` network gives the map source -> target, ``g`` is the
  potential. Backward: ``g`` gives the map target -> source and ``f`` is the
  potential, with the cost's arguments swapped. Both networks are updated
  from one gradient of :func:`~ott_enot.losses.enot_loss`.

  Args:
    state: Current state.
    source: Array ``[n, d]`` from the source measure.
    target: Array ``[n, d]`` from the target measure.
    step: Integer scalar, the global step number (recorded on divergence).
    model: The :class:`~ott_enot.maps.TransportModel`.
    expectile: :math:`\\tau`.
    expectile_loss_coef: :math:`\\lambda`.
    forward: Direction (static).
    active: Boolean scalar; an inactive step (a masked position of a
      window) computes but changes nothing.

  Returns:
    ``(new_state, StepMetrics)``. If the step is inactive, the state had
    already diverged, or the loss or an updated parameter is not finite (a
    non-finite gradient makes the updated parameters non-finite),
    ``new_state`` keeps the old parameters and optimizer states; the first
    non-finite active step is recorded in ``diverged_at``.
  """
  metrics, grads_f, grads_g = _losses(
      state.state_f.params, state.state_g.params, source, target, model=model,
      expectile=expectile, expectile_loss_coef=expectile_loss_coef,
      forward=forward, with_grad=True
  )
  new_f = state.state_f.apply_gradients(grads=grads_f)
  new_g = state.state_g.apply_gradients(grads=grads_g)
  finite = _finite(metrics.loss, (new_f.params, new_g.params))
  fresh = state.diverged_at < 0
  apply = finite & fresh & active
  keep = lambda new, old: jax.tree_util.tree_map(
      lambda a, b: jnp.where(apply, a, b), new, old
  )
  diverged_at = jnp.where(
      active & fresh & ~finite, jnp.asarray(step, jnp.int32),
      state.diverged_at
  )
  return ENOTTrainState(
      keep(new_f, state.state_f), keep(new_g, state.state_g), diverged_at
  ), metrics


def enot_metrics(
    state: ENOTTrainState, source: jnp.ndarray, target: jnp.ndarray, *,
    model: maps.TransportModel, expectile: float, expectile_loss_coef: float
) -> StepMetrics:
  """Forward-direction metrics on a batch, no update (validation)."""
  metrics, _, _ = _losses(
      state.state_f.params, state.state_g.params, source, target, model=model,
      expectile=expectile, expectile_loss_coef=expectile_loss_coef,
      forward=True, with_grad=False
  )
  return metrics


# ---------------------------------------------------------------------------
# One compiled program for all windows of a run
# ---------------------------------------------------------------------------


def _inner_validations(window: int, valid_freq: int) -> int:
  """Most validation steps strictly inside a window (before its last step)."""
  if valid_freq % window == 0:
    return 0  # validation steps are window ends
  if window % valid_freq == 0:
    return window // valid_freq - 1
  return (window - 2) // valid_freq + 1


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static configuration of the compiled chunk program (hashable).

  Build it with :meth:`create`. Two runs with equal configs and batch
  sources of the same type and shapes share one compiled program.

  Attributes:
    model: The :class:`~ott_enot.maps.TransportModel` (hashed by identity).
    expectile: :math:`\\tau`.
    expectile_loss_coef: :math:`\\lambda`.
    bidirectional: Alternate forward and backward steps.
    window: Steps per window (even when bidirectional, so that every window
      starts on a backward step and the scan runs over static
      (backward, forward) pairs).
    chunk_size: The requested chunk size (``window`` rounded it up to even);
      chunks also end at its multiples (see :func:`windows`).
    snapshots: Validation steps a window can hold before its end; the scan
      keeps a snapshot of the parameters after each.
    skip_masked: Skip masked steps with ``lax.cond`` (on the CPU) instead of
      computing them and discarding the result (on accelerators, where a
      conditional may synchronise with the host).
    parallel: Where the arrays live: :class:`~ott_enot.sharding.DataParallel`
      splits every batch over the devices of a mesh and replicates the
      state; the default keeps everything on one device.
  """
  model: maps.TransportModel
  expectile: float
  expectile_loss_coef: float
  bidirectional: bool
  window: int
  chunk_size: int
  snapshots: int = 0
  skip_masked: bool = False
  parallel: sharding.DataParallel = sharding.DataParallel()

  @classmethod
  def create(
      cls,
      *,
      model: maps.TransportModel,
      expectile: float,
      expectile_loss_coef: float,
      bidirectional: bool,
      chunk_size: int,
      valid_freq: int,
      backend: Optional[str] = None,
      parallel: sharding.DataParallel = sharding.DataParallel(),
  ) -> "LoopConfig":
    """The config for ``chunk_size`` steps per window (rounded up to even
    when bidirectional), validation every ``valid_freq`` steps, and the
    devices of ``parallel``."""
    window = chunk_size + (chunk_size % 2 if bidirectional else 0)
    if backend is None:
      backend = parallel.platform
    return cls(
        model=model,
        expectile=float(expectile),
        expectile_loss_coef=float(expectile_loss_coef),
        bidirectional=bool(bidirectional),
        window=window,
        chunk_size=int(chunk_size),
        snapshots=_inner_validations(window, valid_freq),
        skip_masked=backend == "cpu",
        parallel=parallel,
    )

  @property
  def step_kwargs(self) -> Dict[str, Any]:
    """Keyword arguments of :func:`enot_step` and :func:`enot_metrics`."""
    return {
        "model": self.model,
        "expectile": self.expectile,
        "expectile_loss_coef": self.expectile_loss_coef,
    }


class Window(NamedTuple):
  """Steps ``first, ..., first + W - 1`` of which ``lo, ..., hi`` are run."""
  first: int
  lo: int
  hi: int


def windows(
    num_train_iters: int, window: int, chunk_size: Optional[int] = None
) -> List[Window]:
  """The chunks of a run of ``num_train_iters`` steps, one dispatch each.

  Window ``j`` holds steps ``(j - 1) * window + 1`` to ``j * window``: step 0
  ends the first window and every multiple of ``window`` ends one. A window is
  also split after every multiple of ``chunk_size`` (when an odd chunk size
  was rounded up to an even ``window``), so the chunk ends, where callbacks
  fire, are step 0, the multiples of ``chunk_size`` and of ``window``, and
  the last step.
  """
  chunk_size = window if chunk_size is None else chunk_size
  out, last, first = [], num_train_iters - 1, 1 - window
  while max(first, 0) <= last:
    lo, end = max(first, 0), min(first + window - 1, last)
    for hi in range(lo, end + 1):
      if hi == end or hi % chunk_size == 0:
        out.append(Window(first, lo, hi))
        lo = hi + 1
    first += window
  return out


def run_chunk(
    state: ENOTTrainState,
    source: sources.BatchSource,
    first: jnp.ndarray,
    lo: jnp.ndarray,
    hi: jnp.ndarray,
    snapshot_steps: jnp.ndarray,
    *,
    config: LoopConfig,
) -> tuple:
  """One window of steps in one ``lax.scan`` (pure).

  Position ``i`` of the window is step ``first + i``; it is applied iff
  ``lo <= first + i <= hi``. With bidirectional training the scan runs over
  pairs (backward, forward): windows start on odd steps, and
  :func:`is_forward` decides statically, so the device never branches on the
  direction.

  Args:
    state: State before step ``lo``.
    source: A :class:`~ott_enot.sources.BatchSource`.
    first: Integer scalar, the window's first step.
    lo: First step to apply.
    hi: Last step to apply.
    snapshot_steps: ``int32[config.snapshots]``: steps after which to keep
      the parameters (``-1`` for unused slots).
    config: The static :class:`LoopConfig`.

  Returns:
    ``(state, metrics, snapshots)``: the state after step ``hi``,
    :class:`StepMetrics` with fields of shape ``[window]`` (zeros or
    garbage at masked positions), and ``(params_f, params_g)`` stacked over
    the snapshot slots.
  """
  group = 2 if config.bidirectional else 1
  directions = [is_forward(1 + p, config.bidirectional) for p in range(group)]
  params = lambda st: (st.state_f.params, st.state_g.params)

  def one(carry, i, forward):
    st, snaps = carry
    step = first + i
    x, y = config.parallel.constrain_batch(source.train_batch(i, step))
    active = (step >= lo) & (step <= hi)
    st, metrics = enot_step(
        st, x, y, step, forward=forward, active=active, **config.step_kwargs
    )
    if config.snapshots:
      hit = snapshot_steps == step
      snaps = jax.tree.map(
          lambda buf, p: jnp.where(
              hit.reshape(hit.shape + (1,) * p.ndim), p[None], buf
          ), snaps, params(st)
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
    zero = jnp.zeros((group,), jnp.float32)
    return carry, StepMetrics(zero, zero, zero, zero)

  def body(carry, g):
    if not config.skip_masked:
      return run_group(carry, g)
    start = first + g * group
    live = (start + group - 1 >= lo) & (start <= hi)
    return jax.lax.cond(live, run_group, skip_group, carry, g)

  snaps = jax.tree.map(
      lambda p: jnp.broadcast_to(p, (config.snapshots,) + p.shape),
      params(state)
  ) if config.snapshots else ()
  (state, snaps), metrics = jax.lax.scan(
      body, (state, snaps), jnp.arange(config.window // group)
  )
  metrics = jax.tree.map(lambda a: a.reshape(-1), metrics)
  return state, metrics, snaps


_run_chunk = jax.jit(
    run_chunk, static_argnames=("config",), donate_argnums=(0,)
)


def chunk_programs_compiled() -> int:
  """How many chunk programs this process has compiled (all solvers)."""
  return _run_chunk._cache_size()  # pylint: disable=protected-access


@functools.partial(jax.jit, static_argnames=("config",))
def _validation_metrics(
    params_f: Any, params_g: Any, x: jnp.ndarray, y: jnp.ndarray, *,
    config: LoopConfig
) -> StepMetrics:
  metrics, _, _ = _losses(
      params_f, params_g, x, y, forward=True, with_grad=False,
      **config.step_kwargs
  )
  return metrics


def _compile_validation(
    feed: Any, state: ENOTTrainState, config: LoopConfig
) -> threading.Thread:
  """Compile the validation programs on a background thread.

  Started once the first chunk is dispatched, so that it overlaps the steps
  rather than the chunk's own compilation: on the CPU the steps keep one core
  busy and this runs on the other; on accelerators it overlaps device time.
  It fills the jit caches that the first validation would otherwise fill
  mid-run (the feed's validation sampler and :func:`_validation_metrics`).
  Errors are left to the real call, which raises them in the main thread.
  """
  params = config.parallel.replicated_like(
      (state.state_f.params, state.state_g.params)
  )

  def compile_all():
    try:
      x, y = feed.compile_valid(config.parallel)
      _validation_metrics.lower(*params, x, y, config=config).compile()
    except Exception:  # pylint: disable=broad-except
      pass

  thread = threading.Thread(
      target=compile_all, name="ott_enot-compile-validation", daemon=True
  )
  thread.start()
  return thread


@jax.jit
def _fresh_copy(state: ENOTTrainState) -> ENOTTrainState:
  # a copy for the loop to donate (the caller's buffers survive), not diverged
  state = jax.tree.map(jnp.copy, state)
  return state.replace(diverged_at=jnp.asarray(-1, jnp.int32))


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


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


@dataclasses.dataclass
class StateCell:
  """The newest training state that no pending computation owns.

  :func:`train` rebinds :attr:`state` right after each chunk is dispatched
  (the input state is donated to the chunk, the output is the new state), so
  whatever raises during training, :attr:`state` is the state after the last
  completed chunk and never a donated buffer. The solver assigns it back in
  one place, in a ``finally``.
  """
  state: ENOTTrainState


def _new_logs() -> Dict[str, Dict[str, List]]:
  return {
      "train_logs": {"loss_f": [], "loss_g": [], "w_dist": [], "directions": []},
      "valid_logs": {"loss_f": [], "loss_g": [], "w_dist": []},
  }


def _append(logs: Dict[str, List], metrics: Any, row: Optional[int] = None):
  for key in ("loss_f", "loss_g", "w_dist"):
    value = getattr(metrics, key)
    logs[key].append(float(value if row is None else value[row]))


def train(
    cell: StateCell,
    feed: Any,
    *,
    config: LoopConfig,
    num_train_iters: int,
    log_freq: int,
    valid_freq: int,
    to_potentials: Callable[[ENOTTrainState], Any],
    callback: Optional[Callable[[int, Any], Any]] = None,
    progress_bar: bool = True,
    start: int = 0,
    logs: Optional[Dict[str, Dict[str, List]]] = None,
    checkpointer: Optional[Any] = None,
    checkpoint_meta: Optional[Dict[str, Any]] = None,
) -> Dict[str, Dict[str, List]]:
  """Run steps ``start, ..., num_train_iters - 1`` in windows, ott's schedule.

  Step ``k`` goes forward when :func:`is_forward` says so and takes one batch
  from each training source. Logs hold the metrics of the steps
  ``k % log_freq == 0``; validation runs after the steps ``k != 0``,
  ``k % valid_freq == 0``, as in ott, on the parameters after step ``k``.
  ``callback(k, potentials)`` is called after the last step ``k`` of each
  chunk: step 0, every multiple of ``config.chunk_size`` (and of
  ``config.window``), and the last step (see :func:`windows`).

  Args:
    cell: Holds the initial state, and afterwards (also when this raises) the
      state after the last completed chunk. The initial state is copied
      before anything is donated, so buffers the caller holds survive.
    feed: A :class:`~ott_enot.sources.DeviceFeed` or
      :class:`~ott_enot.sources.IteratorFeed`.
    config: The :class:`LoopConfig`.
    num_train_iters: Number of steps.
    log_freq: Logging period.
    valid_freq: Validation period.
    to_potentials: Builds potentials from a state.
    callback: Optional ``callback(step, potentials)``.
    progress_bar: Show a tqdm bar (steps/s and the loss).
    start: First step to run (a resumed run: the step after its checkpoint).
      The windows are those of a run from step 0, so a resumed run applies
      exactly the steps an uninterrupted one would.
    logs: The logs of steps before ``start``, extended in place.
    checkpointer: Optional :class:`~ott_enot.checkpoints.Checkpointer`: after
      each chunk that validated or reached a multiple of its ``every`` (and
      after the last step), it is handed a copy of the state, before the
      callback runs.
    checkpoint_meta: Extra metadata written with each checkpoint.

  Returns:
    The logs, laid out as ott's.

  Raises:
    TrainingDivergedError: if a step was not finite.
    ValueError: for a bad batch (the first ones before anything compiles), a
      batch that does not split over ``config.parallel``'s devices (before
      anything compiles) or an iterator that runs out.
  """
  from tqdm.auto import tqdm

  logs = _new_logs() if logs is None else logs
  train_logs, valid_logs = logs["train_logs"], logs["valid_logs"]
  plan = [
      w._replace(lo=max(w.lo, start))
      for w in windows(num_train_iters, config.window, config.chunk_size)
      if w.hi >= start
  ]
  if not plan:
    return logs
  validation = num_train_iters > valid_freq
  feed.prepare(config.parallel, validation=validation)
  cell.state = _fresh_copy(config.parallel.replicate(cell.state))
  n_valid = max(start - 1, 0) // valid_freq  # validations before `start`
  last_saved = start - 1
  compiling = None  # the validation programs' background compilation
  with tqdm(total=num_train_iters, initial=start, disable=not progress_bar,
            unit="step") as bar, contextlib.ExitStack() as stack:
    # whatever raises, no compilation outlives the run
    stack.callback(lambda: compiling is not None and compiling.join())
    steps = lambda w: range(w.lo, w.hi + 1)
    batches = feed.window(plan[0].first, steps(plan[0]), config.window)
    for k, win in enumerate(plan):
      inner = [s for s in range(max(win.lo, 1), win.hi) if s % valid_freq == 0]
      slots = np.full((config.snapshots,), -1, np.int32)
      slots[:len(inner)] = inner
      with _interrupts_deferred():
        state, metrics, snaps = _run_chunk(
            cell.state, batches, win.first, win.lo, win.hi, slots,
            config=config
        )
        cell.state = state
      if validation and compiling is None:
        compiling = _compile_validation(feed, state, config)
      if k + 1 < len(plan):  # host work while the device runs this chunk
        nxt = plan[k + 1]
        batches = feed.window(nxt.first, steps(nxt), config.window)
      metrics = jax.device_get(metrics)
      diverged = int(state.diverged_at)
      for step in steps(win):
        if step % log_freq == 0 and (diverged < 0 or step < diverged):
          _append(train_logs, metrics, step - win.first)
          forward = is_forward(step, config.bidirectional)
          train_logs["directions"].append("forward" if forward else "backward")
      if diverged >= 0:
        raise TrainingDivergedError(diverged, to_potentials(state), logs)
      bar.update(win.hi - win.lo + 1)
      bar.set_postfix(
          loss=f"{float(metrics.loss[win.hi - win.first]):.4g}", refresh=False
      )
      for step in inner + ([win.hi] if win.hi and win.hi % valid_freq == 0
                           else []):
        if step == win.hi:
          params = (state.state_f.params, state.state_g.params)
        else:
          j = inner.index(step)
          params = jax.tree.map(lambda a, j=j: a[j], snaps)
        compiling.join()
        x, y = feed.valid(n_valid)
        n_valid += 1
        _append(valid_logs, _validation_metrics(*params, x, y, config=config))
      validated = n_valid > max(win.lo - 1, 0) // valid_freq
      final = win.hi == num_train_iters - 1
      due = checkpointer is not None and checkpointer.due(
          last_saved, win.hi, final
      )
      save = checkpointer is not None and (due or validated)
      # one copy for the checkpoint and the callback: the state itself is
      # donated to the next chunk
      kept = _copy(state) if save or callback is not None else None
      if save:
        checkpointer.save(
            win.hi, kept,
            meta=dict(checkpoint_meta or {}, logs=logs,
                      num_validations=n_valid),
            w_dist=valid_logs["w_dist"][-1] if validated else None,
            latest=due,
        )
        last_saved = win.hi if due else last_saved
      if callback is not None:
        callback(win.hi, to_potentials(kept))
  return logs
