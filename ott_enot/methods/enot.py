r"""ENOT as a training method: its state, its pure step, its validation, its
result.

:class:`ENOT` is the method (a frozen, hashable value: the static
configuration of the compiled programs) for one model, with or without a
condition (a conditional model's batches carry the rows' conditions ``cond[n,
k]`` third, and its networks take them). Its step maps ``(ENOTTrainState,
batch)`` to ``(ENOTTrainState, StepMetrics)`` and never reaches into an
object, so it can be jitted, scanned over, vmapped or sharded; the engine
guards it (:func:`~ott_enot.training.state.guarded_step`: the step counter,
divergence), and :func:`enot_step` is that guarded step for one direction.

Glossary: the *source* and *target* are the two measures; a *batch* is
``(x[n, d], y[n, d])`` drawn from them (and ``cond[n, k]``, row ``i``'s
condition); a step goes *forward* (``f`` gives the map source -> target,
``g`` is the potential) or *inverse* (``g`` gives the map target -> source,
``f`` is the potential, the cost's arguments swapped); *bidirectional*
training alternates inverse and forward steps, as ott does (phase 0 is
forward, phase 1 inverse).
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import struct
from ott.neural.networks.layers import conjugate as ott_conjugate

from ott_enot.evaluation import metrics as metrics_lib
from ott_enot.model import losses
from ott_enot.model.parameterisations import TransportModel
from ott_enot.model.potentials import ConditionalPotentials, ENOTPotentials
from ott_enot.training.state import (
    NetworkState,
    TrainingDivergedError,
    guarded_step,
    restart,
)

__all__ = [
    "ENOT",
    "SELECTION_POINTS",
    "SELECTION_TOLERANCE",
    "ENOTTrainState",
    "NetworkState",
    "Hyperparameters",
    "StepMetrics",
    "ValidationMetrics",
    "TrainingDivergedError",
    "is_forward",
    "fit_selection_score",
    "enot_step",
    "validation_metrics",
]

Params = Any
#: The fewest validation points by whose fit training chooses the map it
#: returns (:meth:`ENOT.selection_score`): on halves of 512 points a fresh
#: sample's fit / floor varies by about 20 % from batch to batch, on halves
#: of 256 by 50 %.
SELECTION_POINTS = 1024
#: The relative noise of ``fit / floor`` between fresh batches of that size:
#: with the user's loaders the returned map is the latest validation's
#: within it of the lowest; where every validation sees the same batch, the
#: lowest's (:func:`~ott_enot.training.loop.selection_tolerance`).
SELECTION_TOLERANCE = 0.25


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
  def params(self) -> tuple:
    """``(params_f, params_g)``."""
    return self.f.params, self.g.params

  def with_progress(self, step: jnp.ndarray,
                    diverged: jnp.ndarray) -> "ENOTTrainState":
    """The same networks with this step counter and divergence flag."""
    return self.replace(step=step, diverged=diverged)

  def restart(self, step: Any = 0) -> "ENOTTrainState":
    """The same networks at ``step`` of a run
    (:func:`~ott_enot.training.state.restart`)."""
    return restart(self, step)


class Hyperparameters(struct.PyTreeNode):
  r"""Per-member scalars of a population (:mod:`ott_enot.methods.population`).

  Arrays of shape ``[members]`` in a population's state, scalars inside one
  member's step. They replace :class:`ENOT`'s ``expectile`` and
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


class ValidationMetrics(NamedTuple):
  r"""Metrics of a validation batch (scalars), forward direction.

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


def fit_selection_score(metrics: Dict[str, Any]) -> Any:
  """``fit / floor`` of a validation's host metrics (``fit``, ``floor``,
  ``points``), lower is better, or ``inf`` (no choice) for validation
  batches of fewer than :data:`SELECTION_POINTS` points: the one rule of
  every method that selects by the fit."""
  score = np.asarray(metrics["fit"], np.float64) / np.asarray(
      metrics["floor"], np.float64)
  points = np.min(metrics["points"])
  return score if points >= SELECTION_POINTS else np.full_like(score, np.inf)


def is_forward(step: Any, bidirectional: bool) -> Any:
  """The schedule: step ``k`` goes forward iff ``k`` is even or training is
  not bidirectional (as in ott). Works on ints and traced integers."""
  return (step % 2 == 0) | (not bidirectional)


def _value(a: Any) -> Any:
  """A float, or a list of floats (one per member of a population)."""
  return np.asarray(a, np.float64).tolist()


@dataclasses.dataclass(frozen=True)
class ENOT:
  r"""Expectile-regularised neural OT :cite:`buzun:24` as a training method.

  Learns the map :math:`T` (from the ``f`` network) and the potential
  :math:`g` jointly on the objective :func:`ott_enot.model.losses.enot_loss`
  (the expectile regression pushes :math:`g` to the feasibility boundary
  :math:`f(x) + g(y) \le c(x, y)` instead of an exact c-transform); with
  bidirectional training the phases alternate between :math:`(f, g)` on
  :math:`(x, y)` (phase 0, forward) and :math:`(g, f)` on :math:`(y, x)`
  (phase 1, inverse).

  Attributes:
    model: The :class:`~ott_enot.model.parameterisations.TransportModel`.
    expectile: :math:`\tau \in (0, 1]`.
    expectile_loss_coef: :math:`\lambda \ge 0`.
    bidirectional: Alternate inverse and forward steps.
    optimizer_f: Optax optimiser of ``f`` (for :meth:`init`).
    optimizer_g: Optax optimiser of ``g``.
    pushforward_loss_coef: :math:`\mu \ge 0`, the weight of the
      pushforward term in the maps' loss (:mod:`ott_enot.model.losses`; 0:
      none, ENOT as published).
    conjugate_solver: Refinement of the c-transform in the potentials
      :meth:`result` builds (not compared: training never refines).
    table: A conditional model's ``{label: vector}`` of labelled conditions,
      for the potentials (not compared).
  """
  model: TransportModel
  expectile: float = 0.99
  expectile_loss_coef: float = 0.5
  bidirectional: bool = True
  optimizer_f: Optional[optax.GradientTransformation] = None
  optimizer_g: Optional[optax.GradientTransformation] = None
  pushforward_loss_coef: float = 0.0
  conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver] = (
      dataclasses.field(default=None, compare=False))
  table: Optional[Dict[Any, np.ndarray]] = dataclasses.field(
      default=None, compare=False)

  train_log_keys = ("loss_f", "loss_g", "w_dist", "directions")
  valid_log_keys = ("loss_f", "loss_g", "w_dist", "map_cost", "fit", "floor",
                    "strays")
  selection_metric = "fit/floor"
  selection_tolerance = SELECTION_TOLERANCE
  divergence_advice = (
      "Try a smaller learning rate, a smaller `expectile_loss_coef`, an "
      "`expectile` below 1, or check the data."
  )

  @property
  def phases(self) -> int:
    """2 when bidirectional (forward, inverse), else 1."""
    return 2 if self.bidirectional else 1

  @property
  def data_spec(self) -> Any:
    """The model's :class:`~ott_enot.training.inputs.DataSpec`."""
    return self.model.data_spec

  def init(self, rng: jax.Array,
           optimizer_f: Optional[optax.GradientTransformation] = None,
           optimizer_g: Optional[optax.GradientTransformation] = None
          ) -> ENOTTrainState:
    """Fresh networks (initialised from ``rng``) and optimiser states (of
    the given optimisers, default the method's)."""
    rng_f, rng_g = jax.random.split(rng, 2)
    inputs = self.model.inputs
    create = lambda module, key, tx: NetworkState.create(
        inputs.init(module, key), tx)
    return ENOTTrainState.create(
        create(self.model.neural_f, rng_f, optimizer_f or self.optimizer_f),
        create(self.model.neural_g, rng_g, optimizer_g or self.optimizer_g),
    )

  def step(self, state: ENOTTrainState, batch: Tuple[jnp.ndarray, ...],
           phase: int, hyper: Optional[Hyperparameters] = None) -> tuple:
    """One gradient step of phase ``phase`` (0: forward, 1: inverse),
    unguarded (the engine guards it); ``hyper``: a population member's
    scalars."""
    return _update(self, state, *batch, forward=phase == 0, hyper=hyper)

  def zero_metrics(self, state: ENOTTrainState) -> StepMetrics:
    """Zeros in :class:`StepMetrics`' fields, shaped as the step counter (a
    scalar, or ``[members]`` for a population's stacked members)."""
    zero = jnp.zeros(jnp.shape(state.step), jnp.float32)
    return StepMetrics(zero, zero, zero, zero)

  def params(self, state: ENOTTrainState) -> tuple:
    """``(params_f, params_g)``."""
    return state.params

  def validation_reference(
      self, batch: Tuple[jnp.ndarray, ...]) -> metrics_lib.FitReference:
    """The blurs, the resampling floors and the stray radius of the target
    sample (:func:`ott_enot.evaluation.metrics.fit_reference`), computed
    once per run."""
    return metrics_lib.fit_reference(batch[1])

  def validate(self, params: tuple, batch: Tuple[jnp.ndarray, ...],
               reference: metrics_lib.FitReference,
               hyper: Optional[Hyperparameters] = None) -> dict:
    """:class:`ValidationMetrics`' fields and the fit of the mapped points
    to the target batch beside the reference's floor (``fit``, ``floor``,
    ``strays``: :func:`ott_enot.evaluation.metrics.validation_fit`)."""
    metrics, mapped = self.member_validation(params, batch, hyper)
    return dict(metrics, **metrics_lib.validation_fit(mapped, batch[1],
                                                      reference))

  # ---- as a population's member (:class:`~ott_enot.methods.Population`) ----

  #: The validation entries a population's table shows beside the fit.
  member_table_keys = ("w_dist", "map_cost")

  def hyperparameters(self, members: Sequence[Any]) -> Hyperparameters:
    """The members' :class:`Hyperparameters`, ``[members]`` (from their
    ``expectile``, ``expectile_loss_coef``, ``learning_rate_scale``)."""
    return Hyperparameters(*(
        jnp.asarray([getattr(m, name) for m in members], jnp.float32)
        for name in ("expectile", "expectile_loss_coef",
                     "learning_rate_scale")))

  def init_member(self, rng: jax.Array, hyper: Hyperparameters
                 ) -> ENOTTrainState:
    """A member's fresh state: :meth:`init` (the member's scalars live in
    ``hyper``, not in the state)."""
    del hyper
    return self.init(rng)

  def member_validation(self, params: tuple, batch: Tuple[jnp.ndarray, ...],
                        hyper: Optional[Hyperparameters] = None
                       ) -> Tuple[Dict[str, Any], jnp.ndarray]:
    """:class:`ValidationMetrics`' fields (and ``points``) and the mapped
    points :math:`T(x)` ``[n, d]`` whose fit :meth:`validate` measures."""
    metrics, mapped = validation_metrics(*params, *batch, method=self,
                                         hyper=hyper)
    return dict(metrics._asdict(), points=batch[1].shape[-2]), mapped

  def pushforward(self, potentials: Any, x: jnp.ndarray) -> jnp.ndarray:
    r""":math:`T(x)` ``[n, d]``: the points whose fit judges a member."""
    return potentials.transport(x)

  def selection_score(self, metrics: Dict[str, Any]) -> Any:
    """``fit / floor`` (lower is better): the map's fit at the resolution of
    the data beside what a fresh target sample scores. Not ``w_dist``: the
    dual estimate can be within 1 % of the OT cost while the map misses the
    target (maps that land on the near edge of their targets). ``inf`` (no
    choice: the last state is returned) for validation batches of fewer
    than :data:`SELECTION_POINTS` points, whose fit varies too much from
    batch to batch to choose by."""
    return fit_selection_score(metrics)

  def with_params(self, state: ENOTTrainState,
                  params: tuple) -> ENOTTrainState:
    """``state`` with the networks' parameters ``(params_f, params_g)``."""
    params_f, params_g = params
    return state.replace(f=state.f.replace(params=params_f),
                         g=state.g.replace(params=params_g))

  def log_row(self, step: int, metrics: StepMetrics) -> Dict[str, Any]:
    """``loss_f``, ``loss_g``, ``w_dist`` and the step's direction."""
    forward = is_forward(step, self.bidirectional)
    return {"loss_f": _value(metrics.loss_f), "loss_g": _value(metrics.loss_g),
            "w_dist": _value(metrics.w_dist),
            "directions": "forward" if forward else "inverse"}

  def describe(self) -> Dict[str, Any]:
    """The model's description and the direction schedule."""
    return dict(self.model.describe(), bidirectional=bool(self.bidirectional))

  def potentials(self, params_f: Params, params_g: Params,
                 finetune_g: bool = True) -> Any:
    """:class:`~ott_enot.ENOTPotentials` of the parameters
    (:class:`~ott_enot.ConditionalPotentials` for a conditional model),
    with the conjugate solver if ``finetune_g``."""
    solver = self.conjugate_solver if finetune_g else None
    if self.model.conditional:
      return ConditionalPotentials(params_f, params_g, self.model, solver,
                                   self.table)
    return ENOTPotentials(params_f, params_g, self.model, solver)

  def result(self, state: ENOTTrainState) -> Any:
    """The potentials of a state (:meth:`potentials`)."""
    return self.potentials(*state.params)


def _objective(method: ENOT, forward: bool,
               hyper: Optional[Hyperparameters] = None,
               cond: Optional[jnp.ndarray] = None) -> Callable[..., tuple]:
  """:func:`~ott_enot.model.losses.enot_loss` of one direction:
  ``(map_params, potential_params, x, y) -> (loss, terms)``, with the
  expectile and its weight of ``hyper`` if given, else of ``method``; with
  conditions ``cond[n, k]`` the map and the potential of row ``i`` are those
  at ``cond_i`` (ENOT's terms are per row: ``x_i``, ``y_i`` and ``cond_i``
  belong to one condition)."""
  model = method.model
  if hyper is None:
    expectile, coef = method.expectile, method.expectile_loss_coef
  else:
    expectile, coef = hyper.expectile, hyper.expectile_loss_coef
  if forward:
    map_fn, potential_fn = model.forward_map, model.potential_g
    cost_fn = model.training_cost
  else:
    map_fn, potential_fn = model.inverse_map, model.potential_f
    cost_fn = lambda a, b: model.training_cost(b, a)
  if cond is not None:
    map_fn = functools.partial(map_fn, cond=cond)
    potential_fn = functools.partial(potential_fn, cond=cond)
  user_cost = jax.vmap(model.cost_fn)
  return functools.partial(
      losses.enot_loss,
      map_fn=map_fn,
      potential_fn=potential_fn,
      cost_fn=cost_fn,
      expectile=expectile,
      expectile_loss_coef=coef,
      pushforward_loss_coef=method.pushforward_loss_coef,
      unit_cost_fn=user_cost if forward else lambda a, b: user_cost(b, a),
  )


def _metrics(method: ENOT, forward: bool, x: jnp.ndarray, y: jnp.ndarray,
             loss: jnp.ndarray, terms: losses.ENOTLossTerms) -> StepMetrics:
  loss_f, loss_g = (
      (terms.map_loss, terms.potential_loss) if forward else
      (terms.potential_loss, terms.map_loss)
  )
  return StepMetrics(
      loss, loss_f, loss_g, method.model.dual_to_cost(x, y, terms.dual)
  )


def _update(method: ENOT, state: ENOTTrainState, x: jnp.ndarray,
            y: jnp.ndarray, cond: Optional[jnp.ndarray] = None, *,
            forward: bool,
            hyper: Optional[Hyperparameters] = None) -> tuple:
  """Both networks updated from one gradient of the loss of a direction;
  the step counter and divergence flag untouched (the guard's)."""
  objective = _objective(method, forward, hyper, cond)
  map_params, pot_params = (
      state.params if forward else state.params[::-1]
  )
  a, b = (x, y) if forward else (y, x)
  (loss, terms), (g_map, g_pot) = jax.value_and_grad(
      objective, argnums=(0, 1), has_aux=True
  )(map_params, pot_params, a, b)
  grads_f, grads_g = (g_map, g_pot) if forward else (g_pot, g_map)
  scale = None if hyper is None else hyper.learning_rate_scale
  new = state.replace(f=state.f.apply_gradients(grads_f, scale),
                      g=state.g.apply_gradients(grads_g, scale))
  return new, _metrics(method, forward, x, y, loss, terms)


def enot_step(
    state: ENOTTrainState,
    x: jnp.ndarray,
    y: jnp.ndarray,
    cond: Optional[jnp.ndarray] = None,
    *,
    method: ENOT,
    forward: bool,
    active: Any = True,
    hyper: Optional[Hyperparameters] = None,
) -> tuple:
  """One ENOT gradient step in one direction (pure), guarded.

  Forward: the ``f`` network gives the map source -> target and ``g`` is the
  potential. Inverse: ``g`` gives the map target -> source and ``f`` is the
  potential, with the cost's arguments swapped. Both networks are updated
  from one gradient of :func:`~ott_enot.model.losses.enot_loss`.

  Args:
    state: Current state.
    x: Array ``[n, d]`` from the source measure.
    y: Array ``[n, d]`` from the target measure.
    cond: Conditions ``[n, k]`` of a conditional model (row ``i``'s ``x_i``
      and ``y_i`` belong to condition ``cond_i``), else :obj:`None`.
    method: The static :class:`ENOT`.
    forward: Direction (static).
    active: Boolean scalar; an inactive step (a masked position of a chunk)
      computes but changes nothing.
    hyper: Scalar :class:`Hyperparameters` (a population's member) instead
      of ``method``'s expectile and weight, and a factor on the updates.

  Returns:
    ``(new_state, StepMetrics)``. The step applies (and ``step`` advances)
    iff it is active, the state has not diverged, and the loss and the
    updated parameters are finite
    (:func:`~ott_enot.training.state.guarded_step`); an active non-finite
    step marks the state ``diverged`` instead.
  """
  update = lambda s: _update(method, s, x, y, cond, forward=forward,
                             hyper=hyper)
  return guarded_step(update, state, method.params, active)


def validation_metrics(
    params_f: Params, params_g: Params, x: jnp.ndarray, y: jnp.ndarray,
    cond: Optional[jnp.ndarray] = None, *,
    method: ENOT, hyper: Optional[Hyperparameters] = None
) -> Tuple[ValidationMetrics, jnp.ndarray]:
  """:class:`ValidationMetrics` on a batch and the mapped points ``T(x)``
  ``[n, d]`` (for :func:`ott_enot.evaluation.metrics.fit_and_floor`); no
  update. ``cond``: a conditional model's conditions ``[n, k]``; ``hyper``:
  a population member's expectile and weight."""
  model = method.model
  loss, terms = _objective(method, True, hyper, cond)(params_f, params_g, x, y)
  step = _metrics(method, True, x, y, loss, terms)
  mapped = model.forward_map(params_f, x, cond)
  map_cost = jnp.mean(jax.vmap(model.cost_fn)(x, mapped))
  return ValidationMetrics(*step, map_cost), mapped
