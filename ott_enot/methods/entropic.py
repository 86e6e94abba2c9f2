r"""The entropic plan as a training method: energy-guided training with
Langevin chains that live in the state.

:class:`Entropic` learns :math:`f` of the plan :math:`\pi(y \mid x) \propto
\exp((f(y) - c(x, y))/\varepsilon)` (:mod:`ott_enot.model.entropic`) on the
weak dual of entropic OT :cite:`mokrov:24`,

.. math::

  \max_f\ \mathbb{E}_\beta f(y) - \varepsilon\, \mathbb{E}_\alpha \log
  \int e^{(f(y) - c(x, y))/\varepsilon} dy,

whose gradient is :math:`\mathbb{E}_\beta \nabla f - \mathbb{E}_{x \sim
\alpha, y \sim \pi_f(\cdot \mid x)} \nabla f`: one step draws chains
:math:`\hat y_i \sim \pi_f(\cdot \mid x_i)` (Langevin, without gradient)
and descends

.. math::

  \mathcal L(\theta) = \overline{r_\theta(\hat y_i)} -
  \overline{r_\theta(y_j)}

(in units of :math:`\log \pi`). Chains live in the state: a buffer of
``buffer_size`` pairs :math:`(x, \hat y)`; a step takes ``n`` of them (a
batch's worth), replays each with probability ``replay`` (persistent chains,
the authors': 0.95 by default) or starts it afresh at the batch's :math:`x_i`
(:meth:`~ott_enot.model.entropic.EnergyModel.start`: near ENOT's plan when
warm, noise when cold), runs ``langevin_steps`` steps and writes them back. So checkpoints hold the chains, and a resumed run goes on
with the same chains bit for bit. The Langevin step size adapts once per
step to the chains' acceptance (:func:`ott_enot.model.langevin.adapt_log_step`);
the first step calibrates it and the chains' spread from the batch
(:func:`calibration`).
"""
import dataclasses
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ott_enot.evaluation import metrics as metrics_lib
from ott_enot.methods.enot import SELECTION_TOLERANCE, fit_selection_score
from ott_enot.methods.enot import _value  # the log rows' one conversion
from ott_enot.model import entropic as model_lib
from ott_enot.model import langevin
from ott_enot.training import checkpoints
from ott_enot.training.inputs import DataSpec
from ott_enot.training.state import NetworkState, restart

__all__ = [
    "Entropic",
    "EntropicTrainState",
    "EntropicHyperparameters",
    "EntropicMember",
    "ChainBuffer",
    "EntropicStepMetrics",
    "calibration",
    "energy_loss",
]

Params = Any


class ChainBuffer(struct.PyTreeNode):
  """The persistent chains: pairs ``(x, y)`` and whether each slot holds
  one.

  Attributes:
    x: ``[buffer_size, d]``, the chains' source points.
    y: ``[buffer_size, d]``, the chains' states.
    filled: ``[buffer_size]`` bool.
  """
  x: jnp.ndarray
  y: jnp.ndarray
  filled: jnp.ndarray


class EntropicTrainState(struct.PyTreeNode):
  r"""Everything a run of :class:`Entropic` changes.

  Attributes:
    energy: The residual network's parameters and optimiser state.
    base: ENOT's ``(params_f, params_g)`` of the warm start, or ``()``.
    epsilon: :math:`\varepsilon`.
    log_step: :math:`\log h` of the Langevin steps.
    chain_loc: ``[d]``, where cold chains start.
    chain_scale: ``[d]``, the spread of fresh chains' starts.
    anchors: ``[anchors, d]``, target points for warm chains' starts (the
      first batch's, then each batch's replacing random ones).
    calibrated: Whether the first step has set ``log_step`` and the chains'
      spread from the data.
    chains: The :class:`ChainBuffer`.
    key: The raw key data of the chains' noise (``uint32``; step ``k``
      draws with ``fold_in(key, k)``).
    step: The run's next step.
    diverged: A step was not finite.
  """
  energy: NetworkState
  base: Any
  epsilon: jnp.ndarray
  log_step: jnp.ndarray
  chain_loc: jnp.ndarray
  chain_scale: jnp.ndarray
  anchors: jnp.ndarray
  calibrated: jnp.ndarray
  chains: ChainBuffer
  key: jnp.ndarray
  step: jnp.ndarray
  diverged: jnp.ndarray

  def with_progress(self, step: jnp.ndarray,
                    diverged: jnp.ndarray) -> "EntropicTrainState":
    """The same state with this step counter and divergence flag."""
    return self.replace(step=step, diverged=diverged)

  def restart(self, step: Any = 0) -> "EntropicTrainState":
    """The same state at ``step`` of a run."""
    return restart(self, step)

  @property
  def params(self) -> model_lib.EntropicParams:
    """The :class:`~ott_enot.model.entropic.EntropicParams`."""
    return model_lib.EntropicParams(
        self.energy.params, self.base, self.epsilon, self.log_step,
        self.chain_loc, self.chain_scale, self.anchors)


class EntropicHyperparameters(struct.PyTreeNode):
  r"""Per-member scalars of an entropic population
  (:class:`~ott_enot.methods.Population`): arrays ``[members]`` in its
  state, scalars inside a member's step.

  Attributes:
    epsilon: :math:`\varepsilon` (a member's state holds it from its
      start: :meth:`Entropic.init_member`).
    learning_rate_scale: Factor on the residual's optimiser updates.
  """
  epsilon: jnp.ndarray
  learning_rate_scale: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class EntropicMember:
  r"""One entropic member's settings.

  Attributes:
    seed: Seed of its residual network's initialisation and its chains
      (``jax.random.key(seed)``, as ``rng=`` of an
      :class:`~ott_enot.EntropicSolver` trained alone), or :obj:`None` for
      the population's ``rng``.
    epsilon: :math:`\varepsilon > 0`, in the units of the cost.
    learning_rate_scale: Factor on the optimiser's updates.
    learning_rate: The peak learning rate of the default optimiser, when the
      member was given one.
  """
  seed: Optional[int]
  epsilon: float
  learning_rate_scale: float = 1.0
  learning_rate: Optional[float] = None

  def as_dict(self) -> Dict[str, Any]:
    """The settings a user gave or would give (no derived ones)."""
    out = {"seed": self.seed, "epsilon": self.epsilon}
    if self.learning_rate is not None:
      out["learning_rate"] = self.learning_rate
    else:
      out["learning_rate_scale"] = self.learning_rate_scale
    return out


class EntropicStepMetrics(NamedTuple):
  r"""Metrics of one step (scalars).

  Attributes:
    loss: :math:`\mathcal L`, mean :math:`r_\theta` on the chains minus on
      the target batch.
    acceptance: The chains' mean Metropolis-Hastings acceptance probability.
    step_size: :math:`h` used by the step.
    replayed: The share of chains replayed from the buffer.
  """
  loss: jnp.ndarray
  acceptance: jnp.ndarray
  step_size: jnp.ndarray
  replayed: jnp.ndarray


def calibration(model: model_lib.EnergyModel, x: jnp.ndarray, y: jnp.ndarray,
                epsilon: jnp.ndarray, rng: jax.Array
               ) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  r"""The first step's ``(log_step, chain_loc, chain_scale)`` from a batch.

  With :math:`\kappa` the cost's curvature in :math:`y`
  (:func:`~ott_enot.model.entropic.cost_curvature`) and :math:`v_k` the
  target batch's variance per coordinate, a conditional's variance is at
  most about :math:`\sigma_k^2 = \min(\varepsilon/\kappa, v_k)` (the cost's
  scale for small :math:`\varepsilon`, the target's spread for large):
  warm chains start at :math:`T(x) + \sigma\odot\xi`; cold chains at the
  target's mean plus its standard deviation times :math:`\xi` (noise, as
  the authors' recipe); the first step size is :math:`h = \tfrac12
  \overline{\sigma^2}\, d^{-1/3}` (MALA's scaling), adapted from there.
  """
  d = x.shape[-1]
  kappa = model_lib.cost_curvature(model.cost_fn, x[:64], y[:64], rng)
  variance = jnp.var(y, axis=0) + 1e-12
  spread = jnp.minimum(epsilon / kappa, variance)
  log_step = jnp.log(0.5 * jnp.mean(spread) * d ** (-1.0 / 3.0))
  if model.warm:
    return log_step, jnp.zeros((d,), y.dtype), jnp.sqrt(spread)
  return log_step, jnp.mean(y, axis=0), jnp.sqrt(variance)


def energy_loss(model: model_lib.EnergyModel, energy: Params,
                chains: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  r"""The loss of the weak dual's gradient, :math:`\overline{r_\theta
  (\hat y_i)} - \overline{r_\theta(y_j)}` for chains ``[n, d]``
  (treated as constants) and target points ``[m, d]``: its gradient in
  :math:`\theta` is :math:`(\mathbb{E}_{\hat\pi}\nabla f -
  \mathbb{E}_\beta \nabla f)/\varepsilon`, zero when the chains are
  distributed as the plan's second marginal."""
  chains = jax.lax.stop_gradient(chains)
  return (jnp.mean(model.residual(energy, chains))
          - jnp.mean(model.residual(energy, targets)))


@dataclasses.dataclass(frozen=True)
class Entropic:
  r"""The entropic plan as a training method (module docstring).

  Attributes:
    model: The :class:`~ott_enot.model.entropic.EnergyModel`.
    optimizer: Optax optimiser of the energy's residual.
    langevin_steps: Langevin steps of the chains per training step.
    replay: Probability that a chain is replayed from the buffer rather
      than started afresh.
    buffer_size: Chains kept in the state (at least the batch size).
    sample_steps: MALA steps of validation's chains and the default of
      :meth:`~ott_enot.model.entropic.EntropicPotentials.sample`.
    adjusted_training: Train with MALA's chains (else ULA's).
    anchors: Target points kept in the state for warm chains' starts.
  """
  model: model_lib.EnergyModel
  optimizer: optax.GradientTransformation
  langevin_steps: int = 10
  replay: float = 0.95
  buffer_size: int = 4096
  sample_steps: int = 200
  adjusted_training: bool = True
  anchors: int = 1024

  phases = 1
  train_log_keys = ("loss", "acceptance", "step_size", "replayed")
  valid_log_keys = ("loss", "acceptance", "step_size", "sample_cost", "fit",
                    "floor", "strays")
  selection_metric = "fit/floor"
  selection_tolerance = SELECTION_TOLERANCE
  divergence_advice = (
      "Try a smaller learning rate, more `langevin_steps`, or check the "
      "data's scale against `epsilon`.")

  @property
  def data_spec(self) -> Any:
    """The points' :class:`~ott_enot.training.inputs.DataSpec`."""
    return DataSpec(self.model.dim, 0, "euclidean", self.model.cost_fn)

  def init(self, rng: jax.Array, epsilon: float,
           base: Any = ()) -> EntropicTrainState:
    """A fresh state: the energy initialised from ``rng``, ENOT's
    parameters ``base`` (``()`` cold), an empty chain buffer."""
    energy_key, chain_key = jax.random.split(rng)
    d, size = self.model.dim, int(self.buffer_size)
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)
    return EntropicTrainState(
        energy=NetworkState.create(self.model.init_energy(energy_key),
                                   self.optimizer),
        base=base,
        epsilon=jnp.asarray(epsilon, jnp.float32),
        log_step=jnp.asarray(0.0, jnp.float32),
        chain_loc=zeros(d), chain_scale=jnp.ones((d,), jnp.float32),
        anchors=zeros(int(self.anchors), d), calibrated=jnp.asarray(False),
        chains=ChainBuffer(zeros(size, d), zeros(size, d),
                           jnp.zeros((size,), bool)),
        key=jax.random.key_data(chain_key),
        step=jnp.asarray(0, jnp.int32), diverged=jnp.asarray(False))

  def step(self, state: EntropicTrainState, batch: Tuple[jnp.ndarray, ...],
           phase: int, hyper: Optional[EntropicHyperparameters] = None
          ) -> tuple:
    r"""One step (unguarded; the engine guards it); ``hyper``: a population
    member's scalars (its learning-rate scale; its :math:`\varepsilon` is
    the state's)."""
    del phase
    x, y = batch[0], batch[1]
    n, size = x.shape[0], self.buffer_size
    if n > size:
      raise ValueError(
          f"`buffer_size` ({size}) must hold a batch's chains: it is smaller "
          f"than the batch size {n}; pass `buffer_size >= {n}`.")
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    keys = jax.random.split(key, 6)
    calibrated = calibration(self.model, x, y, state.epsilon, keys[0])
    log_step, chain_loc, chain_scale = (
        jnp.where(state.calibrated, old, new) for old, new in zip(
            (state.log_step, state.chain_loc, state.chain_scale), calibrated))
    # the anchors: the first batch's targets (tiled), then each batch's
    # replacing random ones
    count = state.anchors.shape[0]
    first = y[jnp.arange(count) % n]
    replaced = jax.random.permutation(keys[5], count)[:min(n, count)]
    anchors = jnp.where(state.calibrated,
                        state.anchors.at[replaced].set(y[:replaced.shape[0]]),
                        first)
    state = state.replace(log_step=log_step, chain_loc=chain_loc,
                          chain_scale=chain_scale, anchors=anchors,
                          calibrated=jnp.asarray(True))
    params = jax.lax.stop_gradient(state.params)
    buffer = state.chains
    slots = jax.random.permutation(keys[1], size)[:n]
    replayed = buffer.filled[slots] & (
        jax.random.uniform(keys[2], (n,)) < self.replay)
    fresh = self.model.start(params, x, keys[3])
    pick = lambda old, new: jnp.where(replayed[:, None], old, new)
    xs, ys = pick(buffer.x[slots], x), pick(buffer.y[slots], fresh)
    ys, info = langevin.langevin(
        lambda z: self.model.log_density(params, xs, z), ys, log_step,
        self.langevin_steps, keys[4], adjusted=self.adjusted_training)
    ys = jax.lax.stop_gradient(ys)
    loss, grads = jax.value_and_grad(energy_loss, argnums=1)(
        self.model, state.energy.params, ys, y)
    new = state.replace(
        energy=state.energy.apply_gradients(
            grads, None if hyper is None else hyper.learning_rate_scale),
        log_step=langevin.adapt_log_step(log_step, info.acceptance),
        chains=ChainBuffer(buffer.x.at[slots].set(xs),
                           buffer.y.at[slots].set(ys),
                           buffer.filled.at[slots].set(True)))
    return new, EntropicStepMetrics(
        loss, info.acceptance, jnp.exp(log_step),
        jnp.mean(replayed.astype(jnp.float32)))

  def zero_metrics(self, state: EntropicTrainState) -> EntropicStepMetrics:
    """Zeros shaped as the step counter."""
    zero = jnp.zeros(jnp.shape(state.step), jnp.float32)
    return EntropicStepMetrics(zero, zero, zero, zero)

  def params(self, state: EntropicTrainState) -> model_lib.EntropicParams:
    """The :class:`~ott_enot.model.entropic.EntropicParams` of a state."""
    return state.params

  def validation_reference(
      self, batch: Tuple[jnp.ndarray, ...]) -> metrics_lib.FitReference:
    """The target sample's blur, floor and stray radius
    (:func:`ott_enot.evaluation.metrics.fit_reference`)."""
    return metrics_lib.fit_reference(batch[1])

  def validate(self, params: model_lib.EntropicParams,
               batch: Tuple[jnp.ndarray, ...],
               reference: metrics_lib.FitReference) -> dict:
    r"""One MALA draw :math:`\hat y_i \sim \pi(\cdot \mid x_i)` per
    validation source point (``sample_steps`` steps, a fixed key): the loss,
    the acceptance, the step size, ``sample_cost`` :math:`\overline{c(x_i,
    \hat y_i)}`, and the fit of the draws to the target batch beside its
    floor (the plan's second marginal is :math:`\beta`:
    :func:`ott_enot.evaluation.metrics.validation_fit`)."""
    metrics, drawn = self.member_validation(params, batch)
    return dict(metrics, **metrics_lib.validation_fit(drawn, batch[1],
                                                      reference))

  def selection_score(self, metrics: Dict[str, Any]) -> Any:
    """``fit / floor`` of the draws' marginal
    (:func:`~ott_enot.methods.enot.fit_selection_score`)."""
    return fit_selection_score(metrics)

  def with_params(self, state: EntropicTrainState,
                  params: model_lib.EntropicParams) -> EntropicTrainState:
    """``state`` with these parameters (energy, step size, chains'
    starts)."""
    return state.replace(
        energy=state.energy.replace(params=params.energy),
        log_step=params.log_step, chain_loc=params.chain_loc,
        chain_scale=params.chain_scale, anchors=params.anchors)

  def log_row(self, step: int, metrics: EntropicStepMetrics
             ) -> Dict[str, Any]:
    """The step's loss, acceptance, step size and replayed share."""
    del step
    return {k: _value(v) for k, v in metrics._asdict().items()}

  def describe(self) -> Dict[str, Any]:
    """What a checkpoint must match: the cost, the dimension, warm or cold,
    the chains' settings."""
    return {
        "method": "entropic",
        "cost": checkpoints.describe_cost(self.model.cost_fn),
        "dim_data": int(self.model.dim),
        "warm": bool(self.model.warm),
        "base_energy": bool(self.model.base_energy),
        "langevin_steps": int(self.langevin_steps),
        "buffer_size": int(self.buffer_size),
    }

  # ---- as a population's member (:class:`~ott_enot.methods.Population`) ----

  #: The validation entries a population's table shows beside the fit.
  member_table_keys = ("sample_cost", "acceptance")

  def hyperparameters(self, members: Sequence[EntropicMember]
                     ) -> EntropicHyperparameters:
    """The members' :class:`EntropicHyperparameters`, ``[members]``."""
    return EntropicHyperparameters(*(
        jnp.asarray([getattr(m, name) for m in members], jnp.float32)
        for name in ("epsilon", "learning_rate_scale")))

  def init_member(self, rng: jax.Array, hyper: EntropicHyperparameters,
                  base: Any = ()) -> EntropicTrainState:
    r"""A fresh state as :class:`~ott_enot.EntropicSolver` ``(rng=rng)``
    makes it: :meth:`init` from the first half of ``rng`` (the second
    seeds a warm start's ENOT), with the member's :math:`\varepsilon` and
    ENOT's parameters ``base`` (shared by the members)."""
    return self.init(jax.random.split(rng)[0], hyper.epsilon, base)

  def member_validation(
      self, params: model_lib.EntropicParams, batch: Tuple[jnp.ndarray, ...],
      hyper: Optional[EntropicHyperparameters] = None
  ) -> Tuple[Dict[str, Any], jnp.ndarray]:
    """The validation metrics but the fit (``loss``, ``acceptance``,
    ``step_size``, ``sample_cost``, ``points``) and the draws ``[n, d]``
    whose fit :meth:`validate` measures."""
    del hyper  # the parameters hold epsilon
    x, y = batch[0], batch[1]
    samples, info = model_lib.sample_plan(
        self.model, params, x, jax.random.key(0), num_samples=1,
        num_steps=self.sample_steps, adjusted=True,
        adapt_steps=self.sample_steps // 4)
    drawn = samples[:, 0]
    loss = energy_loss(self.model, params.energy, drawn, y)
    cost = jnp.mean(jax.vmap(self.model.cost_fn)(x, drawn))
    return dict(loss=loss, acceptance=info.acceptance,
                step_size=jnp.exp(params.log_step), sample_cost=cost,
                points=y.shape[-2]), drawn

  def pushforward(self, potentials: model_lib.EntropicPotentials,
                  x: jnp.ndarray) -> jnp.ndarray:
    r"""One draw :math:`\hat y_i \sim \pi(\cdot \mid x_i)` per point
    ``[n, d]`` (a fixed key), as validation draws them."""
    return potentials.sample(x, 1, jax.random.key(0))[:, 0]

  def result(self, state: EntropicTrainState
            ) -> model_lib.EntropicPotentials:
    """The :class:`~ott_enot.model.entropic.EntropicPotentials` of a
    state."""
    return model_lib.EntropicPotentials(state.params, self.model,
                                        self.sample_steps)
