r"""The entropic plan's face: :class:`EntropicSolver`, stochastic maps
:math:`y \sim \pi_\varepsilon(\cdot \mid x)` warm-started by ENOT.

It checks its arguments before anything compiles, builds the
:class:`~ott_enot.methods.entropic.Entropic` method and its state, and
trains with the shell every solver shares
(:class:`~ott_enot.solvers.base.Solver`: the fused loop, validation, checkpoints, the mesh, the state kept
whatever raises). With ``warm_start="train"`` (the default) its first
``fit`` trains an :class:`~ott_enot.ENOTSolver` on the same data first and
starts the plan from it.
"""
import functools
import math
import numbers
import os
from typing import (Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott import utils
from ott.geometry import costs

from ott_enot import checks
from ott_enot import costs as costs_lib
from ott_enot.methods import entropic as method_lib
from ott_enot.methods import population as methods_population
from ott_enot.model import entropic as model_lib
from ott_enot.model import networks
from ott_enot.model.potentials import ConditionalPotentials, ENOTPotentials
from ott_enot.solvers import enot as enot_face
from ott_enot.solvers import population

__all__ = ["EntropicSolver", "EntropicPopulation", "MEMBER_KEYS", "configure",
           "check_epsilon", "check_cost_gradient"]

#: The chains' settings of a warm start, as (Langevin steps per training
#: step, replay probability, MALA steps of sampling). Warm chains are
#: persistent too: fresh chains from near-perfect starts give the energy
#: almost no signal, and long chains then drift from it (measured: 59 %
#: cB-UVP after 200 sampling steps without replay, 0.9 % with; mixtures,
#: D = 16, eps = 10).
WARM_CHAINS = (10, 0.95, 200)
#: The chains' settings of a cold start, the authors' recipe (100 steps per
#: training step, 95 % replayed, 700 at test).
COLD_CHAINS = (100, 0.95, 700)


def check_epsilon(epsilon: Any) -> float:
  r""":math:`\varepsilon` as a positive finite float, else a clear error."""
  if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
    raise TypeError(
        f"`epsilon` must be a positive float, got {epsilon!r} "
        f"({type(epsilon).__name__}).")
  if not (math.isfinite(float(epsilon)) and float(epsilon) > 0):
    raise ValueError(
        f"`epsilon` must be positive and finite, got {epsilon}: it is the "
        f"entropic regularisation (the plan's spread); e.g. `epsilon=0.1`.")
  return float(epsilon)


def check_cost_gradient(cost_fn: costs.CostFn, dim: int) -> None:
  r"""Raise a ``ValueError`` unless ``cost_fn`` lives in
  :math:`\mathbb{R}^d` and has a finite gradient in :math:`y` at random
  pairs (the Langevin sampler follows :math:`\nabla_y c`)."""
  if costs_lib.domain_of(cost_fn) != "euclidean":
    raise ValueError(
        f"The entropic solver samples in R^d: costs on the sphere "
        f"({type(cost_fn).__name__}) are not supported; use a Euclidean "
        f"cost (`costs.SqEuclidean()`, `costs.PNormP(p)`, the Euclidean "
        f"distance).")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, dim)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(4, dim)), jnp.float32)
  try:
    grads = jax.vmap(jax.grad(lambda a, b: cost_fn(a, b), argnums=1))(x, y)
  except Exception as err:  # pylint: disable=broad-except
    raise ValueError(
        f"`cost_fn` ({type(cost_fn).__name__}) has no gradient in y that "
        f"jax can compute ({type(err).__name__}: {err}); the Langevin "
        f"sampler needs one.") from err
  if not bool(jnp.all(jnp.isfinite(grads))):
    raise ValueError(
        f"`cost_fn` ({type(cost_fn).__name__}) has no finite gradient in y "
        f"at random points; the Langevin sampler needs one.")


def _check_warm_start(warm_start: Any, dim: int,
                      cost_fn: costs.CostFn) -> None:
  if warm_start is None or (isinstance(warm_start, str)
                            and warm_start == "train"):
    return
  if isinstance(warm_start, ConditionalPotentials):
    raise TypeError(
        "`warm_start` must be ENOTPotentials of one problem, not "
        "ConditionalPotentials: pass `potentials.at(condition)`.")
  if not isinstance(warm_start, ENOTPotentials):
    raise TypeError(
        f"`warm_start` must be \"train\", None (a cold start) or "
        f"ENOTPotentials, got {warm_start!r}.")
  model = warm_start.model
  if model.dim != dim:
    raise ValueError(
        f"`warm_start` maps points of dimension {model.dim}, not "
        f"`dim_data` = {dim}: pass potentials of this problem.")
  if model.conditional:
    raise ValueError("`warm_start` must be an unconditional model.")
  if costs_lib.cost_key(model.cost_fn) != costs_lib.cost_key(cost_fn):
    raise ValueError(
        f"`warm_start` was trained for another cost "
        f"({type(model.cost_fn).__name__}) than `cost_fn` "
        f"({type(cost_fn).__name__}): train ENOT with this cost, or pass "
        f"`warm_start=\"train\"`.")


def _entropic_arguments(
    dim_data: int,
    epsilon: float,
    cost_fn: Optional[costs.CostFn] = None,
    energy_network: Optional[Any] = None,
    warm_start: Any = "train",
    optimizer: Optional[optax.GradientTransformation] = None,
    learning_rate: float = 1e-3,
    langevin_steps: Optional[int] = None,
    replay: Optional[float] = None,
    buffer_size: int = 4096,
    sample_steps: Optional[int] = None,
    adjusted_training: bool = True,
    num_train_iters: int = 2000,
    valid_freq: int = 500,
    log_freq: int = 100,
    logging: bool = False,
    rng: Optional[jax.Array] = None,
    *,
    warm_start_options: Optional[Dict[str, Any]] = None,
    progress_bar: bool = True,
    chunk_size: int = 100,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    checkpoint_every: int = 1000,
    checkpoint_keep: int = 3,
    mesh: Optional[jax.sharding.Mesh] = None,
    keep_best: Optional[bool] = None,
) -> Dict[str, Any]:
  """The entropic solver's arguments, bound (the signature documented by
  :class:`EntropicSolver`)."""
  return dict(locals())


class Configuration(NamedTuple):
  """The entropic solver's arguments turned into parts.

  Attributes:
    method: The :class:`~ott_enot.methods.Entropic` method.
    epsilon: :math:`\\varepsilon`.
    rng: The user's key (:meth:`~ott_enot.methods.Entropic.init_member`
      splits it: the energy and chains from one half, a trained warm
      start's ENOT from the other).
    base: ENOT's ``(params_f, params_g)`` of the warm start (an untrained
      ENOT's for ``"train"``), or ``()`` cold.
    warm_start: The given :class:`~ott_enot.ENOTPotentials`, or
      :obj:`None`.
    warm_start_solver: The :class:`~ott_enot.ENOTSolver` of
      ``warm_start="train"``, or :obj:`None`.
    learning_rate: The default optimiser's peak learning rate.
    default_optimizer: Whether no ``optimizer`` was given.
    run: The :class:`~ott_enot.solvers.base.Solver` settings of the runs.
  """
  method: method_lib.Entropic
  epsilon: float
  rng: jax.Array
  base: Any
  warm_start: Optional[ENOTPotentials]
  warm_start_solver: Optional[enot_face.ENOTSolver]
  learning_rate: float
  default_optimizer: bool
  run: Dict[str, Any]


def configure(args: Tuple[Any, ...], kwargs: Dict[str, Any]
             ) -> Configuration:
  """Check the entropic solver's arguments (``args``, ``kwargs``: those of
  :class:`EntropicSolver`) and build its parts.

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """
  a = _entropic_arguments(*args, **kwargs)
  dim = checks.check_positive_int("dim_data", a["dim_data"])
  epsilon = check_epsilon(a["epsilon"])
  checks.check_run_settings(**{k: a[k] for k in (
      "num_train_iters", "valid_freq", "log_freq", "chunk_size",
      "checkpoint_dir", "checkpoint_every", "checkpoint_keep")})
  cost_fn = costs.SqEuclidean() if a["cost_fn"] is None else a["cost_fn"]
  checks.check_cost_fn(cost_fn)
  cost_fn = costs_lib.canonical_cost(cost_fn)
  check_cost_gradient(cost_fn, dim)
  warm_start = a["warm_start"]
  _check_warm_start(warm_start, dim, cost_fn)
  warm = warm_start is not None
  steps, chance, sampling = WARM_CHAINS if warm else COLD_CHAINS
  langevin_steps = checks.check_positive_int(
      "langevin_steps",
      steps if a["langevin_steps"] is None else a["langevin_steps"])
  sample_steps = checks.check_positive_int(
      "sample_steps", sampling if a["sample_steps"] is None
      else a["sample_steps"])
  buffer_size = checks.check_positive_int("buffer_size", a["buffer_size"])
  replay = chance if a["replay"] is None else a["replay"]
  if not (isinstance(replay, numbers.Real) and 0.0 <= float(replay) <= 1.0):
    raise ValueError(f"`replay` must be a probability in [0, 1], got "
                     f"{replay!r}.")
  learning_rate = a["learning_rate"]
  if not (isinstance(learning_rate, numbers.Real)
          and math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f"`learning_rate` must be positive, got "
                     f"{learning_rate!r}.")
  optimizer = a["optimizer"]
  checks.check_optimizer("optimizer", optimizer)
  if a["warm_start_options"] is not None and not isinstance(
      a["warm_start_options"], dict):
    raise TypeError("`warm_start_options` must be a dict of ENOTSolver "
                    "arguments.")
  network = networks.as_network(a["energy_network"], "energy_network")
  if network is None:
    network = networks.default_network(1)
  if networks.NetworkInputs(dim).outputs_per_point(
      network, "energy_network") != 1:
    raise ValueError("`energy_network` must return one number per point.")
  key = utils.default_prng_key(a["rng"])
  enot_key = jax.random.split(key)[1]
  warm_start_solver, base_model, base = None, None, ()
  if isinstance(warm_start, ENOTPotentials):
    base_model = warm_start.model
    base = (warm_start.params_f, warm_start.params_g)
  elif warm:
    options = dict(num_train_iters=a["num_train_iters"],
                   progress_bar=a["progress_bar"], rng=enot_key)
    options.update(a["warm_start_options"] or {})
    warm_start_solver = enot_face.ENOTSolver(dim, cost_fn=cost_fn, **options)
    base_model = warm_start_solver.model
    base = warm_start_solver.state.params
  model = model_lib.EnergyModel(cost_fn, network, dim, base_model)
  default = optimizer is None
  if default:
    optimizer = enot_face.default_optimizer(a["num_train_iters"],
                                            float(learning_rate))
  method = method_lib.Entropic(
      model, optimizer, langevin_steps, float(replay), buffer_size,
      sample_steps, bool(a["adjusted_training"]))
  run = {k: a[k] for k in enot_face.RUN_SETTINGS}
  return Configuration(
      method, epsilon, key, base,
      warm_start if isinstance(warm_start, ENOTPotentials) else None,
      warm_start_solver, float(learning_rate), default, run)


class EntropicSolver(enot_face.PairFit):
  r"""Entropic optimal transport plans, sampled: :math:`y \sim
  \pi_\varepsilon(\cdot \mid x)`, warm-started by ENOT.

  Learns :math:`f` with :math:`\pi_\varepsilon(y \mid x) \propto
  \exp\big((f(y) - c(x, y))/\varepsilon\big)`, the plan of

  .. math::

    \min_{\pi \in \Pi(\alpha, \beta)} \int c\, d\pi + \varepsilon\,
    \mathrm{KL}(\pi \,\|\, \alpha\otimes\beta),

  by energy-guided training on its weak dual (:cite:`mokrov:24`;
  :mod:`ott_enot.methods.entropic`). ``cost_fn`` is ott's: for
  ``costs.SqEuclidean()`` (:math:`\|x - y\|^2`, the default)
  :math:`\varepsilon` is twice that of :math:`\tfrac12\|x - y\|^2`
  (``costs.PNormP(2)``); the KL and differential-entropy regularisations
  give the same plan.

  **Warm start** (the default, ``warm_start="train"``): the first ``fit``
  trains ENOT (:class:`~ott_enot.ENOTSolver`) on the same data, then the
  energy starts as ENOT's Kantorovich potential :math:`g` (:math:`f = g +
  \varepsilon\, r_\theta`, the residual learning the rest) and the chains start
  at ENOT's map :math:`T(x)` plus noise of the conditional's scale: the
  :math:`\varepsilon \to 0` limit of the plan is :math:`T`. Where the plan
  spreads (large :math:`\varepsilon`) the chains start instead at target
  points kept in the state, resampled with ENOT's semi-discrete entropic
  weights :math:`\propto e^{(g(a_j) - c(x, a_j))/\varepsilon}`
  (:meth:`~ott_enot.model.entropic.EnergyModel.start`). So training and
  sampling start near their answer. ``warm_start`` may also be trained
  :class:`~ott_enot.ENOTPotentials` of the same cost, or :obj:`None` for a
  cold start (the authors' recipe: chains from noise, 95 % replayed from a
  buffer, 100 steps per training step). For a metric cost that ENOT trains
  through a surrogate (the Euclidean distance), only the map is used.

  Args:
    dim_data: :math:`d`.
    epsilon: :math:`\varepsilon > 0`, in the units of ``cost_fn``.
    cost_fn: An ott cost on :math:`\mathbb{R}^d` with a gradient in
      :math:`y`; default ``costs.SqEuclidean()``.
    energy_network: The residual :math:`r_\theta` (Linen or NNX, one number
      per point); default ott's ELU MLP ``[128] * 4``.
    warm_start: ``"train"``, :class:`~ott_enot.ENOTPotentials`, or
      :obj:`None`.
    optimizer: Optax optimiser of the residual; default Adam with a cosine
      decay from ``learning_rate``.
    learning_rate: Peak learning rate of the default optimiser.
    langevin_steps: Langevin steps per training step (default 10 warm, 100
      cold).
    replay: Probability of replaying a chain from the buffer (default
      0.95).
    buffer_size: Chains kept in the state (at least the batch size).
    sample_steps: MALA steps of validation and the default of
      :meth:`~ott_enot.model.entropic.EntropicPotentials.sample` (default
      200 warm, 700 cold).
    adjusted_training: Metropolis-adjust the training chains (MALA); with
      ``False`` they are unadjusted (ULA, the authors').
    num_train_iters: Training steps of a run.
    valid_freq: Validate every ``valid_freq`` steps.
    log_freq: Log every ``log_freq`` steps.
    logging: Return ``(potentials, logs)`` from ``fit``.
    rng: Key of the initialisation; default ``jax.random.key(0)``.
    warm_start_options: Arguments of the :class:`~ott_enot.ENOTSolver` of
      ``warm_start="train"`` (default its own, with ``num_train_iters`` of
      this solver and its ``progress_bar``).
    progress_bar: Show a progress bar.
    chunk_size: Steps fused into one dispatch (as
      :class:`~ott_enot.ENOTSolver`'s).
    checkpoint_dir: Directory of the run's checkpoints (the chains
      included), or :obj:`None`.
    checkpoint_every: Steps between checkpoints.
    checkpoint_keep: How many of the latest checkpoints to keep.
    mesh: A :class:`jax.sharding.Mesh` to train data-parallel on.
    keep_best: Return the plan of the best validation by ``fit/floor`` of
      the draws (as :class:`~ott_enot.ENOTSolver`'s).

  Attributes:
    entropic: The :class:`~ott_enot.methods.Entropic` method (a
      population's members' method).
    warm_start: The ENOT potentials the plan started from (after the first
      ``fit`` for ``"train"``), or :obj:`None`.
    warm_start_solver: The :class:`~ott_enot.ENOTSolver` of
      ``warm_start="train"`` (its state kept whatever raises).
  """

  def __init__(self, dim_data: int, *args: Any, **kwargs: Any):
    config = configure((dim_data,) + args, kwargs)
    self.entropic = config.method
    self.warm_start = config.warm_start
    self.warm_start_solver = config.warm_start_solver
    one = lambda v: jnp.asarray(v, jnp.float32)
    hyper = method_lib.EntropicHyperparameters(one(config.epsilon), one(1.0))
    super().__init__(
        config.method,
        config.method.init_member(config.rng, hyper, config.base),
        **config.run)

  # ---- what the solver is ----

  @property
  def epsilon(self) -> float:
    r""":math:`\varepsilon`."""
    return float(self.state.epsilon)

  @property
  def cost_fn(self) -> costs.CostFn:
    """The cost :math:`c`."""
    return self.entropic.model.cost_fn

  @property
  def dim_data(self) -> int:
    """:math:`d`."""
    return self.entropic.model.dim

  @property
  def pending_warm_start(self) -> bool:
    """Whether the next ``fit`` trains ENOT first."""
    return self.warm_start_solver is not None and self.warm_start is None

  def set_warm_start(self, potentials: ENOTPotentials) -> None:
    """Start the plan from trained ENOT potentials of this solver's warm
    start model (their parameters become the state's ``base``)."""
    if potentials.model != self.entropic.model.base:
      raise ValueError(
          "`potentials` are not of this solver's ENOT model: build the "
          "solver with `warm_start=potentials` instead.")
    self.warm_start = potentials
    self.state = self.with_base(self.state,
                                (potentials.params_f, potentials.params_g))

  def with_base(self, state: Any, base: Any) -> Any:
    """``state`` with ENOT's parameters ``base``.

    Args:
      state: An :class:`~ott_enot.methods.EntropicTrainState`.
      base: ENOT's ``(params_f, params_g)``.

    Returns:
      The state with ``base`` in it (the rest unchanged).
    """
    return state.replace(base=base)

  def base_of(self, state: Any) -> Any:
    """ENOT's parameters ``(params_f, params_g)`` in ``state``."""
    return state.base

  # ---- training ----

  def fit(self, data_or_x: Any, y: Optional[jnp.ndarray] = None, *,
          resume: bool = False, **options: Any) -> Any:
    """Train on two point clouds, an ott geometry or problem, or a sampler
    (:meth:`ott_enot.solvers.enot.PairFit.fit`'s arguments). With
    ``warm_start="train"`` the first call trains ENOT on the same data
    first (``warm_start_solver``), unless it resumes a checkpoint (which
    holds ENOT's parameters).

    Args:
      data_or_x: Source points ``[n, d]`` (with ``y``), an ott
        ``PointCloud`` or ``LinearProblem``, a
        :class:`~ott_enot.PointCloudStream`, or a sampler ``key -> (x, y)``.
      y: Target points ``[m, d]`` with source points.
      resume: Go on from the solver's state (a checkpoint restored).
      options: ``batch_size``, ``rng``, ``a``, ``b``, ``valid_fraction``,
        ``replace``, ``callback`` as :meth:`ott_enot.ENOTSolver.fit`.

    Returns:
      :class:`~ott_enot.model.entropic.EntropicPotentials`, or
      ``(potentials, logs)`` with ``logging=True``; ``logs["train_logs"]``
      has ``loss``, ``acceptance``, ``step_size``, ``replayed``;
      ``logs["valid_logs"]`` ``loss``, ``acceptance``, ``step_size``,
      ``sample_cost``, ``fit``, ``floor``, ``strays``.
    """
    if self.pending_warm_start and not resume:
      enot_options = {k: options[k] for k in (
          "a", "b", "batch_size", "valid_fraction", "replace", "rng")
                      if k in options}
      potentials = self.warm_start_solver.fit(data_or_x, y, **enot_options)
      if isinstance(potentials, tuple):  # warm_start_options asked for logs
        potentials = potentials[0]
      self.set_warm_start(potentials)
    result = enot_face.PairFit.fit(self, data_or_x, y, resume=resume,
                                   **options)
    if resume and self.warm_start_solver is not None:
      # ENOT's parameters came with the checkpoint
      self.warm_start = ENOTPotentials(*self.base_of(self.state),
                                       self.entropic.model.base)
    return result

  def __call__(self, *loaders: Any, callback: Any = None,
               resume: bool = False) -> Any:
    """Train on ott's four loaders (as
    :meth:`ott_enot.solvers.enot.PairFit.__call__`).

    Raises:
      ValueError: with ``warm_start="train"`` before ENOT is trained
        (loaders cannot be replayed for it): train with ``fit`` or pass
        trained ENOT potentials as ``warm_start``.
    """
    if self.pending_warm_start and not resume:
      raise ValueError(
          "`warm_start=\"train\"` trains ENOT on the data first, which "
          "loaders cannot replay: use `fit(...)`, or build the solver with "
          "`warm_start=` trained ENOTPotentials (or None for a cold start).")
    return enot_face.PairFit.__call__(self, *loaders, callback=callback,
                                      resume=resume)


#: The keys an entropic member's dict may have.
MEMBER_KEYS = ("seed", "epsilon", "learning_rate", "learning_rate_scale")


def _member(i: int, spec: Mapping[str, Any],
            config: Configuration) -> method_lib.EntropicMember:
  epsilon = population.member_number(
      i, spec, "epsilon", config.epsilon, lambda v: v > 0, "positive")
  scale, learning_rate = population.member_learning_rate(
      i, spec, config.default_optimizer, config.learning_rate, "`optimizer`")
  return method_lib.EntropicMember(population.member_seed(i, spec), epsilon,
                                   scale, learning_rate)


class EntropicPopulation(population.PopulationFace, EntropicSolver):
  r"""A population of entropic plans trained in one compiled program: a
  sweep over :math:`\varepsilon` (the plans' spread), seeds and learning
  rates, chosen without ground truth.

  Takes every argument of :class:`EntropicSolver` (the energy network, the
  cost, the warm start, the chains' settings, steps, validation,
  checkpoints, mesh), which all members share, and ``members``: the
  per-member settings. A setting a member does not give is the
  population's (``epsilon``, learning-rate scale 1, ``rng``). One warm
  start serves every member: ``warm_start="train"`` trains one ENOT on the
  data first (ENOT's map does not depend on :math:`\varepsilon`).

  Members are :class:`~ott_enot.methods.Entropic` vmapped
  (:class:`~ott_enot.methods.Population`): each its own residual network,
  optimiser state, :math:`\varepsilon`, Langevin step size and chains, all
  on the same batches; a member whose step is not finite keeps its last
  good state while the others train on. Validation draws one sample per
  held-out :math:`x` from every member and scores the draws' fit to held-out
  target points over the resampling floor (the plan's second marginal is
  :math:`\beta` whatever :math:`\varepsilon`): :meth:`fit` returns a
  :class:`~ott_enot.PopulationResult` whose members are
  :class:`~ott_enot.EntropicPotentials`. The fit does not rank
  :math:`\varepsilon` (every exact plan has the marginal :math:`\beta`): it
  finds members that failed; choosing :math:`\varepsilon` is the user's.

  Example::

    population = ott_enot.EntropicPopulation(
        2, 0.1, members=ott_enot.solvers.population.grid(
            epsilon=[0.03, 0.3, 3.0], seed=[0, 1]))
    result = population.fit(x, y)
    print(result.format_table())
    samples = result.member(0).sample(x[:5], num_samples=16)

  Args:
    dim_data: Dimension of the data.
    epsilon: The members' :math:`\varepsilon` where they give none.
    args: The other positional arguments of :class:`EntropicSolver`.
    members: A list of dicts with keys from :data:`MEMBER_KEYS`: ``seed``
      (the residual's initialisation and the chains' noise, as
      ``rng=jax.random.key(seed)`` of a solver trained alone), ``epsilon``,
      ``learning_rate`` (the default optimiser's peak learning rate) or
      ``learning_rate_scale`` (a factor on any optimiser's updates).
      :func:`~ott_enot.solvers.population.grid` builds every combination.
    max_memory_bytes: Refuse populations whose states (chains included)
      need more (:func:`~ott_enot.solvers.population.memory_estimate`);
      default: the device's memory limit, or the host's RAM on the CPU.
    kwargs: The other keyword arguments of :class:`EntropicSolver`.

  Raises:
    TypeError, ValueError: for bad members (none, unknown keys, values out
      of range, ``learning_rate`` with a user optimiser), a population too
      large for the memory, or the solver's own bad arguments; before
      anything compiles.
  """

  def __init__(self, dim_data: int, epsilon: float, *args: Any,
               members: Sequence[Mapping[str, Any]],
               max_memory_bytes: Optional[int] = None, **kwargs: Any):
    # pylint: disable=super-init-not-called,non-parent-init-called
    config = configure((dim_data, epsilon) + args, kwargs)
    self.entropic = config.method
    self.warm_start = config.warm_start
    self.warm_start_solver = config.warm_start_solver
    self.members = population.check_members(
        members, MEMBER_KEYS, lambda i, spec: _member(i, spec, config),
        "grid(epsilon=[0.1, 1.0], seed=[0, 1])")
    population.check_seeds_choose(
        self.members, {"energy_network": self.entropic.model.network})
    method = methods_population.Population(self.entropic,
                                           tuple(self.members))
    population.check_memory(
        jax.eval_shape(functools.partial(method.member_init,
                                         base=config.base), config.rng),
        len(self.members), max_memory_bytes)
    enot_face.PairFit.__init__(
        self, method, method.init(config.rng, base=config.base),
        **config.run)

  @property
  def epsilon(self) -> np.ndarray:
    r"""The members' :math:`\varepsilon`, ``[members]``."""
    return np.asarray(self.state.members.epsilon, np.float64)

  def with_base(self, state: Any, base: Any) -> Any:
    """``state`` with ENOT's parameters ``base`` in every member.

    Args:
      state: A population's state (members stacked).
      base: ENOT's ``(params_f, params_g)``, one for all members.

    Returns:
      The state with ``base`` in every member.
    """
    return self.method.map_members(state, lambda m: m.replace(base=base))

  def base_of(self, state: Any) -> Any:
    """ENOT's parameters ``(params_f, params_g)`` (every member's are
    the same)."""
    return jax.tree.map(lambda a: a[0], state.members.base)
