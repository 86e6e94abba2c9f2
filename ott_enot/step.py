r"""The training state and the ENOT step, as pure functions of pytrees.

:func:`enot_step` maps ``(ENOTTrainState, x[n, d], y[n, d])`` to
``(ENOTTrainState, StepMetrics)`` and never reaches into an object, so it can
be jitted, scanned over, vmapped or sharded. The state carries the one step
counter of a run (:attr:`ENOTTrainState.step`, the number of the next step):
a step that is applied advances it; a step whose loss or updated parameters
are not finite is not applied, leaves the counter at its number and marks the
state :attr:`~ENOTTrainState.diverged`, after which no step applies.

Glossary (shared by :mod:`ott_enot.loop`, :mod:`ott_enot.feeds` and the
solver): the *source* and *target* are the two measures; a *batch* is a pair
``(x[n, d], y[n, d])`` of points drawn from them; a step goes *forward*
(``f`` gives the map source -> target, ``g`` is the potential) or *inverse*
(``g`` gives the map target -> source, ``f`` is the potential, the cost's
arguments swapped); *bidirectional* training alternates inverse and forward
steps, as ott does.
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from flax import struct

from ott_enot import losses, maps

__all__ = [
    "NetworkState",
    "ENOTTrainState",
    "Hyperparameters",
    "PopulationState",
    "StepConfig",
    "StepMetrics",
    "ValidationMetrics",
    "TrainingDivergedError",
    "is_forward",
    "enot_step",
    "train_step",
    "validation_metrics",
]

Params = Any


class NetworkState(struct.PyTreeNode):
  """One network's parameters and optax optimiser state.

  Attributes:
    params: The network's parameters.
    opt_state: The optimiser's state.
    tx: The optax optimiser (static).
  """
  params: Params
  opt_state: optax.OptState
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: Params,
             tx: optax.GradientTransformation) -> "NetworkState":
    """Parameters with a fresh optimiser state."""
    return cls(params, tx.init(params), tx)

  def apply_gradients(self, grads: Params,
                      scale: Optional[jnp.ndarray] = None) -> "NetworkState":
    """One optimiser update: ``params + scale * tx.update(grads)``.

    ``scale`` (default 1) multiplies the optimiser's updates: for Adam, SGD
    and their schedules, the same as multiplying the learning rate.
    """
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    if scale is not None:
      updates = jax.tree.map(lambda u: (scale * u).astype(u.dtype), updates)
    return self.replace(
        params=optax.apply_updates(self.params, updates), opt_state=opt_state
    )


class ENOTTrainState(struct.PyTreeNode):
  """Both networks' states and the step counter of the run.

  Attributes:
    f: State of the ``f`` network (the forward map, or its potential).
    g: State of the ``g`` network (the potential; the inverse map's
      potential when bidirectional).
    step: ``int32`` scalar, the number of the next step of the run (the
      steps ``0, ..., step - 1`` are applied).
    diverged: ``bool`` scalar: step ``step`` was not finite and was not
      applied; no later step applies.
  """
  f: NetworkState
  g: NetworkState
  step: jnp.ndarray
  diverged: jnp.ndarray

  @classmethod
  def create(cls, f: NetworkState, g: NetworkState) -> "ENOTTrainState":
    """A state at step 0 that has not diverged."""
    return cls(f, g, jnp.asarray(0, jnp.int32), jnp.asarray(False))

  @property
  def hyper(self) -> None:
    """One model's hyper-parameters are :class:`StepConfig`'s: :obj:`None`
    (a :class:`PopulationState` holds its members')."""
    return None

  @property
  def params(self) -> tuple:
    """``(params_f, params_g)``."""
    return self.f.params, self.g.params

  def restart(self, step: Any = 0) -> "ENOTTrainState":
    """The same networks at ``step`` of a new run, not diverged."""
    return self.replace(
        step=jnp.asarray(step, jnp.int32), diverged=jnp.asarray(False)
    )


class Hyperparameters(struct.PyTreeNode):
  r"""Per-member scalars of a population (:mod:`ott_enot.population`).

  Arrays of shape ``[members]`` in a :class:`PopulationState`, scalars inside
  one member's step. They replace :class:`StepConfig`'s ``expectile`` and
  ``expectile_loss_coef`` and scale the optimisers' updates, so that members
  with different values run in one vmapped program.

  Attributes:
    expectile: :math:`\tau \in (0, 1]`.
    expectile_loss_coef: :math:`\lambda \ge 0`.
    learning_rate_scale: Factor on both optimisers' updates (for Adam and
      SGD, with or without a schedule, a factor on the learning rate).
  """
  expectile: jnp.ndarray
  expectile_loss_coef: jnp.ndarray
  learning_rate_scale: jnp.ndarray


class PopulationState(struct.PyTreeNode):
  """The states of a population of ENOT models, stacked on a leading axis.

  Every member is an independent :class:`ENOTTrainState` (its own networks,
  optimiser states, step counter and divergence flag) with its own
  :class:`Hyperparameters`; :func:`train_step` vmaps :func:`enot_step` over
  them, with every member seeing the same batch.

  Attributes:
    members: An :class:`ENOTTrainState` whose leaves have a leading axis of
      size ``members``.
    hyper: :class:`Hyperparameters` of shape ``[members]``.
  """
  members: ENOTTrainState
  hyper: Hyperparameters

  @property
  def size(self) -> int:
    """The number of members."""
    return int(self.members.step.shape[0])

  @property
  def step(self) -> jnp.ndarray:
    """``int32[members]``: each member's next step."""
    return self.members.step

  @property
  def diverged(self) -> jnp.ndarray:
    """``bool[members]``: which members stopped on a non-finite step."""
    return self.members.diverged

  @property
  def params(self) -> tuple:
    """``(params_f, params_g)``, stacked over the members."""
    return self.members.params

  def member(self, i: int) -> ENOTTrainState:
    """Member ``i``'s state (its hyper-parameters are :attr:`hyper`'s)."""
    return jax.tree.map(lambda a: a[i], self.members)

  def restart(self, step: Any = 0) -> "PopulationState":
    """The same networks at ``step`` of a new run (``step = 0``: every member
    live again) or of a resumed one (``step > 0``: a member that diverged
    before stays frozen where it stopped, as in an uninterrupted run)."""
    step = jnp.asarray(step, jnp.int32)
    frozen = self.members.diverged & (step > 0)
    members = self.members.replace(
        step=jnp.where(frozen, self.members.step, step), diverged=frozen
    )
    return self.replace(members=members)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  r"""What a step computes (static, hashable).

  Attributes:
    model: The :class:`~ott_enot.maps.TransportModel` (hashed by identity).
    expectile: :math:`\tau \in (0, 1]`.
    expectile_loss_coef: :math:`\lambda \ge 0`.
  """
  model: maps.TransportModel
  expectile: float
  expectile_loss_coef: float


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


def is_forward(step: Any, bidirectional: bool) -> Any:
  """The schedule: step ``k`` goes forward iff ``k`` is even or training is
  not bidirectional (as in ott). Works on ints and traced integers."""
  return (step % 2 == 0) | (not bidirectional)


def _objective(
    config: StepConfig, forward: bool,
    hyper: Optional[Hyperparameters] = None,
    c: Optional[jnp.ndarray] = None,
) -> Callable[..., tuple]:
  """:func:`~ott_enot.losses.enot_loss` of one direction:
  ``(map_params, potential_params, x, y) -> (loss, terms)``, with the
  expectile and its weight of ``hyper`` if given, else of ``config``; with
  conditions ``c[n, k]`` the map and the potential of row ``i`` are those at
  ``c_i`` (ENOT's terms are per row: ``x_i``, ``y_i`` and ``c_i`` belong to
  one condition)."""
  model = config.model
  if hyper is None:
    expectile, coef = config.expectile, config.expectile_loss_coef
  else:
    expectile, coef = hyper.expectile, hyper.expectile_loss_coef
  if forward:
    map_fn, value_fn, cost_fn = (
        model.forward_map, model.potential_g, model.training_cost
    )
  else:
    map_fn, value_fn = model.inverse_map, model.potential_f
    cost_fn = lambda a, b: model.training_cost(b, a)
  if c is not None:
    map_fn = functools.partial(map_fn, c=c)
    value_fn = functools.partial(value_fn, c=c)
  return functools.partial(
      losses.enot_loss,
      map_fn=map_fn,
      value_fn=value_fn,
      cost_fn=cost_fn,
      expectile=expectile,
      expectile_loss_coef=coef,
  )


def _metrics(
    config: StepConfig, forward: bool, x: jnp.ndarray, y: jnp.ndarray,
    loss: jnp.ndarray, terms: losses.ENOTLossTerms
) -> StepMetrics:
  loss_f, loss_g = (
      (terms.map_loss, terms.potential_loss) if forward else
      (terms.potential_loss, terms.map_loss)
  )
  return StepMetrics(
      loss, loss_f, loss_g, config.model.dual_to_cost(x, y, terms.dual)
  )


def _finite(loss: jnp.ndarray, params: Any) -> jnp.ndarray:
  """Whether the loss and all updated parameters are finite.

  One global norm instead of a reduction per leaf: a NaN/inf anywhere (from
  the gradients or from the optimiser) makes the norm non-finite, and the
  compiled step stays small (this halves its compile time on the CPU).
  """
  return jnp.isfinite(loss + optax.global_norm(params))


def enot_step(
    state: ENOTTrainState,
    x: jnp.ndarray,
    y: jnp.ndarray,
    c: Optional[jnp.ndarray] = None,
    *,
    config: StepConfig,
    forward: bool,
    active: Any = True,
    hyper: Optional[Hyperparameters] = None,
) -> tuple:
  """One ENOT gradient step in one direction (pure).

  Forward: the ``f`` network gives the map source -> target and ``g`` is the
  potential. Inverse: ``g`` gives the map target -> source and ``f`` is the
  potential, with the cost's arguments swapped. Both networks are updated
  from one gradient of :func:`~ott_enot.losses.enot_loss`.

  Args:
    state: Current state.
    x: Array ``[n, d]`` from the source measure.
    y: Array ``[n, d]`` from the target measure.
    c: Conditions ``[n, k]`` of a conditional model (row ``i``'s ``x_i``
      and ``y_i`` belong to condition ``c_i``), else :obj:`None`.
    config: The static :class:`StepConfig`.
    forward: Direction (static).
    active: Boolean scalar; an inactive step (a masked position of a chunk)
      computes but changes nothing.
    hyper: Scalar :class:`Hyperparameters` (a population's member) instead
      of ``config``'s expectile and weight, and a factor on the updates.

  Returns:
    ``(new_state, StepMetrics)``. The step applies (and ``step`` advances)
    iff it is active, the state has not diverged, and the loss and the
    updated parameters are finite (a non-finite gradient makes the updated
    parameters non-finite); an active non-finite step marks the state
    ``diverged`` instead.
  """
  objective = _objective(config, forward, hyper, c)
  map_params, pot_params = (
      state.params if forward else state.params[::-1]
  )
  a, b = (x, y) if forward else (y, x)
  (loss, terms), (g_map, g_pot) = jax.value_and_grad(
      objective, argnums=(0, 1), has_aux=True
  )(map_params, pot_params, a, b)
  grads_f, grads_g = (g_map, g_pot) if forward else (g_pot, g_map)
  scale = None if hyper is None else hyper.learning_rate_scale
  new_f = state.f.apply_gradients(grads_f, scale)
  new_g = state.g.apply_gradients(grads_g, scale)
  finite = _finite(loss, (new_f.params, new_g.params))
  live = active & ~state.diverged
  apply = live & finite
  keep = lambda new, old: jax.tree_util.tree_map(
      lambda p, q: jnp.where(apply, p, q), new, old
  )
  new_state = ENOTTrainState(
      keep(new_f, state.f),
      keep(new_g, state.g),
      state.step + apply.astype(jnp.int32),
      state.diverged | (live & ~finite),
  )
  return new_state, _metrics(config, forward, x, y, loss, terms)


def train_step(
    state: Any,
    x: jnp.ndarray,
    y: jnp.ndarray,
    c: Optional[jnp.ndarray] = None,
    *,
    config: StepConfig,
    forward: bool,
    active: Any = True,
) -> tuple:
  """:func:`enot_step` of one model, or of every member of a population.

  The one place that decides how a state steps: an :class:`ENOTTrainState`
  takes :func:`enot_step`; a :class:`PopulationState` takes it vmapped over
  its members, each with its own :class:`Hyperparameters`, all on the same
  batch ``(x, y)``.

  Args:
    state: :class:`ENOTTrainState` or :class:`PopulationState`.
    x: Source batch ``[n, d]``.
    y: Target batch ``[n, d]``.
    c: Conditions ``[n, k]`` (conditional models), else :obj:`None`.
    config: The static :class:`StepConfig`.
    forward: Direction (static).
    active: Boolean scalar, or ``[members]`` for a population.

  Returns:
    ``(new_state, StepMetrics)``; for a population the metrics have shape
    ``[members]``.
  """
  if not isinstance(state, PopulationState):
    return enot_step(
        state, x, y, c, config=config, forward=forward, active=active
    )
  member_step = lambda member, hyper, live: enot_step(
      member, x, y, c, config=config, forward=forward, active=live,
      hyper=hyper
  )
  active = jnp.broadcast_to(active, state.step.shape)
  members, metrics = jax.vmap(member_step)(state.members, state.hyper, active)
  return state.replace(members=members), metrics


class ValidationMetrics(NamedTuple):
  """Metrics of a validation batch (scalars), forward direction.

  Attributes:
    loss: total loss.
    loss_f: loss of the ``f`` network's parameters.
    loss_g: loss of the ``g`` network's parameters.
    w_dist: dual estimate of the OT cost of the training problem (for a
      metric cost trained through its surrogate, the surrogate's).
    map_cost: :math:`\overline{c(x, T(x))}`, the cost of the learned map
      in the units of ``cost_fn``.
  """
  loss: jnp.ndarray
  loss_f: jnp.ndarray
  loss_g: jnp.ndarray
  w_dist: jnp.ndarray
  map_cost: jnp.ndarray


def validation_metrics(
    params_f: Params, params_g: Params, x: jnp.ndarray, y: jnp.ndarray,
    c: Optional[jnp.ndarray] = None, *,
    config: StepConfig, hyper: Optional[Hyperparameters] = None
) -> Tuple[ValidationMetrics, jnp.ndarray]:
  """:class:`ValidationMetrics` on a batch and the mapped points ``T(x)``
  ``[n, d]`` (for :func:`ott_enot.metrics.fit_and_floor`); no update.
  ``c``: a conditional model's conditions ``[n, k]``; ``hyper``: a
  population member's expectile and weight."""
  model = config.model
  loss, terms = _objective(config, True, hyper, c)(params_f, params_g, x, y)
  step = _metrics(config, True, x, y, loss, terms)
  mapped = model.forward_map(params_f, x, c)
  map_cost = jnp.mean(jax.vmap(model.cost_fn)(x, mapped))
  return ValidationMetrics(*step, map_cost), mapped
