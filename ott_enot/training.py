r"""The ENOT training step as a pure function, and the loop that drives it.

:func:`enot_step` maps ``(ENOTTrainState, source[n, d], target[n, d], step)``
to ``(ENOTTrainState, StepMetrics)`` and never reaches into an object, so it
can be jitted, scanned over or vmapped. A step whose loss or gradients are not
finite is not applied: the state keeps its last good parameters and records
the step in :attr:`ENOTTrainState.diverged_at`, and :func:`train` raises
:class:`TrainingDivergedError`.
"""
import functools
import itertools
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct
from flax.training import train_state

from ott_enot import checks, losses, maps

__all__ = [
    "ENOTTrainState",
    "StepMetrics",
    "TrainingDivergedError",
    "enot_step",
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


def _peek(iterator: Iterator[Any], name: str, dim: int, on_sphere: bool):
  try:
    first = next(iterator)
  except StopIteration:
    raise ValueError(f"`{name}` is empty: it must yield batches.") from None
  checks.check_batch(name, first, dim, on_sphere)
  return itertools.chain([first], iterator)


def _next_pair(src_it, tgt_it, names, dim, on_sphere):
  try:
    x, y = next(src_it), next(tgt_it)
  except StopIteration:
    raise ValueError(
        f"`{names[0]}` or `{names[1]}` ran out of batches; pass iterators "
        f"that yield at least as many batches as `num_train_iters` needs "
        f"(e.g. infinite generators)."
    ) from None
  x = checks.check_batch(names[0], x, dim, on_sphere)
  y = checks.check_batch(names[1], y, dim, on_sphere)
  if x.shape[0] != y.shape[0]:
    raise ValueError(
        f"`{names[0]}` and `{names[1]}` yielded batches of {x.shape[0]} and "
        f"{y.shape[0]} points: ENOT pairs them, so they must be equal."
    )
  return jnp.asarray(x), jnp.asarray(y)


def _append(logs: Dict[str, List], metrics: StepMetrics) -> None:
  for key in ("loss_f", "loss_g", "w_dist"):
    logs[key].append(float(getattr(metrics, key)))


def train(
    state: ENOTTrainState,
    *,
    step_fns: Dict[bool, Callable],
    metrics_fn: Callable,
    to_potentials: Callable[[ENOTTrainState], Any],
    loaders: tuple,
    dim: int,
    on_sphere: bool,
    num_train_iters: int,
    bidirectional: bool,
    log_freq: int,
    valid_freq: int,
    callback: Optional[Callable[[int, Any], Any]] = None,
    progress_bar: bool = True,
    on_state: Optional[Callable[[ENOTTrainState], None]] = None,
) -> tuple:
  """Run ``num_train_iters`` steps with ott's schedule and logging.

  Step ``k`` goes forward when ``k`` is even or training is not
  bidirectional, backward otherwise; each step takes one batch from each
  train iterator. Logs at ``k % log_freq == 0``, validates at ``k != 0`` and
  ``k % valid_freq == 0``, calls ``callback(k, potentials)`` after every step,
  as ott's solvers do.

  Args:
    state: Initial state.
    step_fns: ``{forward: jitted (state, x, y, k) -> (state, metrics)}``.
    metrics_fn: Jitted ``(state, x, y) -> StepMetrics`` for validation.
    to_potentials: Builds potentials from a state.
    loaders: ``(train_source, train_target, valid_source, valid_target)``.
    dim: Dimension of the points.
    on_sphere: Check that batches are unit vectors.
    num_train_iters: Number of steps.
    bidirectional: Alternate directions.
    log_freq: Logging period.
    valid_freq: Validation period.
    callback: Optional ``callback(step, potentials)``.
    progress_bar: Show a tqdm bar.
    on_state: Called with the newest state after each step (the solver keeps
      it, so that an interruption leaves the last state in place).

  Returns:
    ``(state, logs)`` with ott's log layout.

  Raises:
    TrainingDivergedError: if a step was not finite.
    ValueError: for bad batches, before the first step compiles.
  """
  from tqdm.auto import tqdm

  names = ("trainloader_source", "trainloader_target", "validloader_source",
           "validloader_target")
  train_src, train_tgt, valid_src, valid_tgt = (iter(it) for it in loaders)
  if num_train_iters > 0:
    train_src = _peek(train_src, names[0], dim, on_sphere)
    train_tgt = _peek(train_tgt, names[1], dim, on_sphere)
  if num_train_iters > valid_freq:
    valid_src = _peek(valid_src, names[2], dim, on_sphere)
    valid_tgt = _peek(valid_tgt, names[3], dim, on_sphere)

  train_logs = {"loss_f": [], "loss_g": [], "w_dist": [], "directions": []}
  valid_logs = {"loss_f": [], "loss_g": [], "w_dist": []}
  logs = {"train_logs": train_logs, "valid_logs": valid_logs}

  def check_diverged(state):
    step = int(state.diverged_at)
    if step >= 0:
      raise TrainingDivergedError(step, to_potentials(state), logs)

  with tqdm(total=num_train_iters, disable=not progress_bar) as bar:
    for step in range(num_train_iters):
      forward = not bidirectional or step % 2 == 0
      x, y = _next_pair(train_src, train_tgt, names[:2], dim, on_sphere)
      state, metrics = step_fns[forward](state, x, y, np.int32(step))
      if on_state is not None:
        on_state(state)
      if step % log_freq == 0:
        check_diverged(state)
        _append(train_logs, metrics)
        train_logs["directions"].append("forward" if forward else "backward")
        bar.set_postfix(loss=float(metrics.loss), w_dist=train_logs["w_dist"][-1])
      if callback is not None:
        callback(step, to_potentials(state))
      if step != 0 and step % valid_freq == 0:
        vx, vy = _next_pair(valid_src, valid_tgt, names[2:], dim, on_sphere)
        _append(valid_logs, metrics_fn(state, vx, vy))
      bar.update(1)
  check_diverged(state)
  return state, logs
