r"""The ENOT training step as a pure function, and the fused loop driving it.

:func:`enot_step` maps ``(ENOTTrainState, source[n, d], target[n, d], step)``
to ``(ENOTTrainState, StepMetrics)`` and never reaches into an object, so it
can be jitted, scanned over or vmapped. :func:`run_steps` runs a chunk of
steps inside one ``lax.scan``; :func:`train` dispatches chunks (one dispatch
per chunk, the state donated) with batches either sampled on the device
(:class:`SamplerSource`) or stacked from the user's iterators
(:class:`IteratorSource`), which JAX's asynchronous dispatch prepares while
the device works on the previous chunk. A step whose loss, gradients or
updated parameters are not finite is not applied: the state keeps its last
good parameters and records the step in :attr:`ENOTTrainState.diverged_at`,
and :func:`train` raises :class:`TrainingDivergedError`.
"""
import functools
import itertools
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp

from flax import struct
from flax.training import train_state

from ott_enot import checks, losses, maps

__all__ = [
    "ENOTTrainState",
    "StepMetrics",
    "TrainingDivergedError",
    "enot_step",
    "enot_metrics",
    "run_steps",
    "chunk_bounds",
    "dispatch_lengths",
    "ChunkRunner",
    "IteratorSource",
    "SamplerSource",
    "train",
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


def _finite(tree: Any) -> jnp.ndarray:
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _losses(
    state: ENOTTrainState, source: jnp.ndarray, target: jnp.ndarray, *,
    model: maps.TransportModel, expectile: float, expectile_loss_coef: float,
    forward: bool, with_grad: bool
):
  if forward:
    map_params, pot_params = state.state_f.params, state.state_g.params
    map_fn, value_fn, cost_fn = (
        model.forward_map, model.potential_g, model.training_cost
    )
    x, y = source, target
  else:
    map_params, pot_params = state.state_g.params, state.state_f.params
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

  Returns:
    ``(new_state, StepMetrics)``. If the loss, a gradient or an updated
    parameter is not finite, or the state had already diverged, ``new_state``
    keeps the old parameters and optimizer states.
  """
  metrics, grads_f, grads_g = _losses(
      state, source, target, model=model, expectile=expectile,
      expectile_loss_coef=expectile_loss_coef, forward=forward, with_grad=True
  )
  new_f = state.state_f.apply_gradients(grads=grads_f)
  new_g = state.state_g.apply_gradients(grads=grads_g)
  ok = _finite((metrics.loss, grads_f, grads_g, new_f.params, new_g.params))
  ok = ok & (state.diverged_at < 0)
  keep = lambda new, old: jax.tree_util.tree_map(
      lambda a, b: jnp.where(ok, a, b), new, old
  )
  diverged_at = jnp.where(
      ok | (state.diverged_at >= 0), state.diverged_at,
      jnp.asarray(step, jnp.int32)
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
      state, source, target, model=model, expectile=expectile,
      expectile_loss_coef=expectile_loss_coef, forward=True, with_grad=False
  )
  return metrics


# ---------------------------------------------------------------------------
# Fused chunks of steps
# ---------------------------------------------------------------------------

BatchFn = Callable[[Any, jnp.ndarray, jnp.ndarray], tuple]


def run_steps(
    state: ENOTTrainState,
    start: jnp.ndarray,
    payload: Any,
    *,
    length: int,
    first_forward: bool,
    bidirectional: bool,
    batch_fn: BatchFn,
    step_fns: Dict[bool, Callable],
) -> tuple:
  """``length`` consecutive steps from step ``start`` in one ``lax.scan`` (pure).

  The direction of each step is static: with bidirectional training the scan
  runs over pairs of steps (forward then backward, or the reverse when the
  chunk starts on a backward step), plus one last step when ``length`` is odd,
  so no ``lax.cond`` is needed on the device.

  Args:
    state: State before step ``start``.
    start: Integer scalar, the first step's number.
    payload: Data for ``batch_fn`` (stacked batches, or a sampler's data).
    length: Number of steps (static).
    first_forward: Direction of step ``start`` (static).
    bidirectional: Alternate directions (static).
    batch_fn: ``(payload, i, step) -> (x, y)`` for position ``i`` of the chunk
      and global step ``step``.
    step_fns: ``{forward: (state, x, y, step) -> (state, metrics)}``.

  Returns:
    ``(state, metrics)`` with every field of ``metrics`` of shape
    ``[length]``, in step order.
  """

  def one(state, i, forward):
    step = start + i
    x, y = batch_fn(payload, i, step)
    return step_fns[forward](state, x, y, step)

  if not bidirectional:
    return jax.lax.scan(
        lambda st, i: one(st, i, True), state, jnp.arange(length)
    )
  second = not first_forward
  pairs = length // 2

  def pair(st, p):
    st, m1 = one(st, 2 * p, first_forward)
    st, m2 = one(st, 2 * p + 1, second)
    return st, (m1, m2)

  state, (m1, m2) = jax.lax.scan(pair, state, jnp.arange(pairs))
  metrics = jax.tree.map(
      lambda a, b: jnp.stack([a, b], axis=1).reshape(-1), m1, m2
  )
  if length % 2:
    state, last = one(state, length - 1, first_forward)
    metrics = jax.tree.map(
        lambda a, b: jnp.concatenate([a, b[None]]), metrics, last
    )
  return state, metrics


def stacked_batches(payload, i, step):
  """``batch_fn`` for host batches stacked as ``(xs[L, n, d], ys[L, n, d])``."""
  del step
  xs, ys = payload
  return xs[i], ys[i]


class ChunkRunner:
  """Jitted :func:`run_steps`, compiled once per (length, first direction).

  The state argument is donated: the caller must not keep references to it.
  """

  def __init__(
      self, step_fns: Dict[bool, Callable], bidirectional: bool,
      batch_fn: BatchFn
  ):
    self.step_fns = step_fns
    self.bidirectional = bidirectional
    self.batch_fn = batch_fn
    self._compiled: Dict[tuple, Callable] = {}

  @property
  def num_compiled(self) -> int:
    """How many chunk variants this runner has compiled."""
    return len(self._compiled)

  def __call__(
      self, state: ENOTTrainState, start: int, length: int, payload: Any
  ) -> tuple:
    first_forward = not self.bidirectional or start % 2 == 0
    key = (length, first_forward)
    fn = self._compiled.get(key)
    if fn is None:
      fn = jax.jit(
          functools.partial(
              run_steps,
              length=length,
              first_forward=first_forward,
              bidirectional=self.bidirectional,
              batch_fn=self.batch_fn,
              step_fns=self.step_fns,
          ),
          donate_argnums=0,
      )
      self._compiled[key] = fn
    return fn(state, jnp.asarray(start, jnp.int32), payload)


def dispatch_lengths(
    length: int, chunk_size: int, compiled: int = 0
) -> List[int]:
  """How a chunk of ``length`` steps is dispatched: a list of scan lengths.

  Each distinct scan length compiles once. Lengths ``chunk_size``,
  ``chunk_size - 1`` (the last chunk of a run of a multiple of ``chunk_size``
  steps) and 1 run as one scan, and so does any length while fewer than
  :data:`EXACT_VARIANTS` variants are ``compiled``; after that, other
  lengths (left by a ``valid_freq`` that is no multiple of ``chunk_size``)
  run as powers of two, largest first, so a run compiles at most about
  ``2 log2(chunk_size) + 8`` variants.
  """
  if length in (chunk_size, chunk_size - 1, 1) or compiled < EXACT_VARIANTS:
    return [length]
  out, bit = [], 1 << (length.bit_length() - 1)
  while length:
    if length >= bit:
      out.append(bit)
      length -= bit
    bit >>= 1
  return out


#: Compiled chunk variants below which any chunk length runs as one scan.
EXACT_VARIANTS = 4


def chunk_bounds(
    num_train_iters: int,
    chunk_size: int,
    valid_freq: int,
    callback: bool = True,
) -> List[tuple]:
  """``(start, end)`` of each chunk, ``end`` included.

  Chunks end after every multiple of ``chunk_size`` and of ``valid_freq``, and
  after the last step, so that validation runs after exactly the steps ott
  validates at; with a ``callback`` also after step 0, so that callbacks (at
  chunk ends) fire at ``step % chunk_size == 0`` from step 0 on.
  """
  last = num_train_iters - 1
  if last < 0:
    return []
  ends = {0, last} if callback else {last}
  ends.update(range(chunk_size, last, chunk_size))
  ends.update(range(valid_freq, last, valid_freq))
  bounds, start = [], 0
  for end in sorted(ends):
    bounds.append((start, end))
    start = end + 1
  return bounds


class IteratorSource:
  """Batches from the user's four iterators, checked and stacked per chunk."""

  names = ("trainloader_source", "trainloader_target", "validloader_source",
           "validloader_target")

  def __init__(self, loaders: tuple, dim: int, on_sphere: bool):
    self.iters = [iter(it) for it in loaders]
    self.dim = dim
    self.on_sphere = on_sphere

  def peek(self, which: tuple) -> None:
    """Check the first batch of the given iterators before compiling."""
    for j in which:
      try:
        first = next(self.iters[j])
      except StopIteration:
        raise ValueError(
            f"`{self.names[j]}` is empty: it must yield batches."
        ) from None
      checks.check_batch(self.names[j], first, self.dim, self.on_sphere)
      self.iters[j] = itertools.chain([first], self.iters[j])

  def _pair(self, valid: bool):
    a, b = (2, 3) if valid else (0, 1)
    names = (self.names[a], self.names[b])
    try:
      x, y = next(self.iters[a]), next(self.iters[b])
    except StopIteration:
      raise ValueError(
          f"`{names[0]}` or `{names[1]}` ran out of batches; pass iterators "
          f"that yield at least as many batches as `num_train_iters` needs "
          f"(e.g. infinite generators)."
      ) from None
    x = checks.check_batch(names[0], x, self.dim, self.on_sphere)
    y = checks.check_batch(names[1], y, self.dim, self.on_sphere)
    if x.shape[0] != y.shape[0]:
      raise ValueError(
          f"`{names[0]}` and `{names[1]}` yielded batches of {x.shape[0]} and "
          f"{y.shape[0]} points: ENOT pairs them, so they must be equal."
      )
    return x, y

  def chunk(self, start: int, end: int) -> tuple:
    """``(xs[L, n, d], ys[L, n, d])`` for steps ``start`` to ``end``."""
    pairs = [self._pair(valid=False) for _ in range(end - start + 1)]
    stack = lambda k: jnp.stack([jnp.asarray(p[k]) for p in pairs])
    try:
      return stack(0), stack(1)
    except (ValueError, TypeError) as err:
      raise ValueError(
          "The training iterators must yield batches of one fixed size; "
          f"got varying sizes ({err})."
      ) from None

  @staticmethod
  def piece(payload: tuple, offset: int, length: int) -> tuple:
    """Steps ``offset`` to ``offset + length - 1`` of a chunk's payload."""
    if offset == 0 and length == payload[0].shape[0]:
      return payload
    return tuple(p[offset:offset + length] for p in payload)

  def valid(self, count: int) -> tuple:
    """The next validation pair."""
    del count
    x, y = self._pair(valid=True)
    return jnp.asarray(x), jnp.asarray(y)


class SamplerSource:
  """Batches sampled on the device by a pure function of a key.

  Args:
    sample_step: ``(data, key, index, valid) -> (x[n, d], y[n, d])``.
    data: Pytree argument of ``sample_step`` (e.g. a
      :class:`~ott_enot.data.PointCloudStream`).
    key: PRNG key; step ``k`` uses the ``k``-th batches.
  """

  def __init__(self, sample_step: Callable, data: Any, key: jax.Array):
    self.sample_step = sample_step
    self.data = data
    self.key = key
    self._valid = jax.jit(
        lambda d, k, i: sample_step(d, k, i, True)
    )

  def batch_fn(self, payload, i, step):
    """``batch_fn`` for :func:`run_steps`: sample step ``step`` on device."""
    del i
    data, key = payload
    return self.sample_step(data, key, step, False)

  def peek(self, which: tuple) -> None:  # noqa: D102
    del which  # the sampler's data were checked when it was built

  def chunk(self, start: int, end: int) -> tuple:  # noqa: D102
    del start, end
    return self.data, self.key

  @staticmethod
  def piece(payload: tuple, offset: int, length: int) -> tuple:  # noqa: D102
    del offset, length
    return payload

  def valid(self, count: int) -> tuple:  # noqa: D102
    return self._valid(self.data, self.key, jnp.asarray(count, jnp.int32))


def _append(logs: Dict[str, List], metrics: StepMetrics, row=None) -> None:
  for key in ("loss_f", "loss_g", "w_dist"):
    value = getattr(metrics, key)
    logs[key].append(float(value if row is None else value[row]))


def _copy(tree: Any) -> Any:
  return jax.tree.map(jnp.copy, tree)


def train(
    state: ENOTTrainState,
    *,
    runner: ChunkRunner,
    metrics_fn: Callable,
    to_potentials: Callable[[ENOTTrainState], Any],
    source: Any,
    num_train_iters: int,
    bidirectional: bool,
    log_freq: int,
    valid_freq: int,
    chunk_size: int = 1,
    callback: Optional[Callable[[int, Any], Any]] = None,
    progress_bar: bool = True,
    on_state: Optional[Callable[[ENOTTrainState], None]] = None,
) -> tuple:
  """Run ``num_train_iters`` steps in fused chunks, with ott's schedule.

  Step ``k`` goes forward when ``k`` is even or training is not
  bidirectional, backward otherwise; each step takes one batch from each
  training source. Logs hold the metrics of the steps ``k % log_freq == 0``;
  validation runs after the steps ``k != 0``, ``k % valid_freq == 0``, as in
  ott. Steps run in chunks of up to ``chunk_size`` inside one ``lax.scan``
  (one dispatch per chunk); ``callback(k, potentials)`` is called after the
  last step ``k`` of each chunk: after step 0, every multiple of
  ``chunk_size`` and of ``valid_freq``, and the last step (see
  :func:`chunk_bounds`). ``chunk_size=1`` calls it after every step, as ott
  does.

  Args:
    state: Initial state (copied; the copy is donated chunk by chunk).
    runner: The :class:`ChunkRunner`.
    metrics_fn: Jitted ``(state, x, y) -> StepMetrics`` for validation.
    to_potentials: Builds potentials from a state.
    source: :class:`IteratorSource` or :class:`SamplerSource`.
    num_train_iters: Number of steps.
    bidirectional: Alternate directions.
    log_freq: Logging period.
    valid_freq: Validation period.
    chunk_size: Most steps per dispatch.
    callback: Optional ``callback(step, potentials)``.
    progress_bar: Show a tqdm bar (steps/s and the loss).
    on_state: Called with the newest state after each chunk.

  Returns:
    ``(state, logs)`` with ott's log layout.

  Raises:
    TrainingDivergedError: if a step was not finite.
    ValueError: for bad batches, before the first step compiles.
  """
  from tqdm.auto import tqdm

  train_logs = {"loss_f": [], "loss_g": [], "w_dist": [], "directions": []}
  valid_logs = {"loss_f": [], "loss_g": [], "w_dist": []}
  logs = {"train_logs": train_logs, "valid_logs": valid_logs}
  if num_train_iters > 0:
    source.peek((0, 1))
  if num_train_iters > valid_freq:
    source.peek((2, 3))
  state = _copy(state)  # never donate buffers the caller still holds
  n_valid = 0
  with tqdm(total=num_train_iters, disable=not progress_bar,
            unit="step") as bar:
    bounds = chunk_bounds(
        num_train_iters, chunk_size, valid_freq, callback is not None
    )
    payload = source.chunk(*bounds[0]) if bounds else None
    for k, (start, end) in enumerate(bounds):
      length = end - start + 1
      pieces, offset = [], 0
      for n in dispatch_lengths(length, chunk_size, runner.num_compiled):
        piece = source.piece(payload, offset, n)
        state, part = runner(state, start + offset, n, piece)
        pieces.append(part)
        offset += n
      if k + 1 < len(bounds):  # host work while the device runs this chunk
        payload = source.chunk(*bounds[k + 1])
      metrics = jax.tree.map(lambda *a: jnp.concatenate(a), *pieces)
      if on_state is not None:
        on_state(state)
      if int(state.diverged_at) >= 0:
        raise TrainingDivergedError(
            int(state.diverged_at), to_potentials(state), logs
        )
      for step in range(start, end + 1):
        if step % log_freq == 0:
          _append(train_logs, metrics, step - start)
          forward = not bidirectional or step % 2 == 0
          train_logs["directions"].append("forward" if forward else "backward")
      bar.update(length)
      bar.set_postfix(loss=f"{float(metrics.loss[-1]):.4g}", refresh=False)
      if callback is not None:
        callback(end, to_potentials(_copy(state)))
      if end != 0 and end % valid_freq == 0:
        _append(valid_logs, metrics_fn(state, *source.valid(n_valid)))
        n_valid += 1
  return state, logs
