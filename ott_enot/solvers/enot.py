r"""The ENOT solver: ENOT's arguments checked once, the model and the method
built from them, and the faces that train on a pair of measures.

:func:`configure` is the one place that turns ENOT's arguments (those of
:class:`ENOTSolver`, shared by every ENOT face) into a
:class:`~ott_enot.methods.ENOT` method; :class:`ENOTFace` is what every ENOT
face shows of it (the cost, the dimension, the parameterisation, ...);
:class:`PairFit` trains on a pair of measures (two point clouds, an ott
geometry or problem, a sampler, ott's four loaders).
:class:`ott_enot.ExpectileNeuralDual` is :class:`ENOTSolver` with ott's
``W2NeuralDual`` face (:mod:`ott_enot.solvers.compat`).

Where batches come from (one word each): a *sampler* draws them on the
device (a pure function ``key -> (x, y)``, or a
:class:`~ott_enot.PointCloudStream` of point clouds), *loaders* are ott's
four iterators of host batches, and a *feed* is what the training loop
reads either from (:func:`ott_enot.training.inputs.feed_for`).
"""
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

import jax
import jax.numpy as jnp

import optax
from ott import utils
from ott.geometry import costs, pointcloud
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import linear_problem

from ott_enot import checks
from ott_enot import costs as costs_lib
from ott_enot.data import PointCloudStream, point_cloud_of
from ott_enot.methods import enot as enot_lib
from ott_enot.model import conjugate, networks
from ott_enot.model import parameterisations as models
from ott_enot.model.potentials import ENOTPotentials
from ott_enot.solvers import base
from ott_enot.training import inputs, optimizers

__all__ = [
    "ENOTSolver",
    "ENOTFace",
    "PairFit",
    "Configuration",
    "configure",
    "default_optimizer",
    "DEFAULT_LEARNING_RATE",
    "RUN_SETTINGS",
]

Train_t = base.Logs
Callback_t = base.Callback_t
Sampler_t = Callable[[jax.Array], Tuple[jnp.ndarray, jnp.ndarray]]
Data_t = Union[pointcloud.PointCloud, linear_problem.LinearProblem,
               PointCloudStream, Sampler_t, jnp.ndarray]
_DEFAULT_CONJUGATE = conjugate.ExpectileConjugateSolver()
#: The default optimisers' peak learning rate.
DEFAULT_LEARNING_RATE = 1e-3


def default_optimizer(
    num_train_iters: int, learning_rate: float = DEFAULT_LEARNING_RATE
) -> optimizers.OptaxCall:
  r"""The default optimiser of both networks: Adam (``b1 = 0.9``,
  ``b2 = 0.99``) with a learning rate decaying from ``learning_rate``
  (``1e-3``) to a hundredth of it along a cosine over ``num_train_iters``
  steps (then constant).

  Returned as a hashable :class:`~ott_enot.training.optimizers.OptaxCall`
  (``optax.adam(learning_rate=optax.cosine_decay_schedule(...), ...)``
  built where it is used), so that solvers of equal settings share their
  compiled programs; it has optax's ``init`` and ``update``.

  On ott's 2-D Gaussian mixtures it gives maps several times closer to the
  target than ott's default (Adam ``3e-4``, ``b1 = b2 = 0.9``, constant):
  ``benchmarks/accuracy.py`` measures both.

  .. math::

    \eta_k = \eta\left(0.01 + 0.99 \cdot \tfrac12\left(1 + \cos
    \tfrac{\pi \min(k, K)}{K}\right)\right), \qquad K =
    \max(\text{num\_train\_iters}, 1).

  Args:
    num_train_iters: :math:`K`, the steps of the decay.
    learning_rate: :math:`\eta`, the peak learning rate.

  Returns:
    An :class:`~ott_enot.training.optimizers.OptaxCall` of ``optax.adam``.
  """
  oc = optimizers.optax_call
  schedule = oc.cosine_decay_schedule(
      float(learning_rate), max(int(num_train_iters), 1), alpha=1e-2
  )
  return oc.adam(learning_rate=schedule, b1=0.9, b2=0.99)


def _enot_arguments(
    dim_data: int,
    neural_f: Optional[Any] = None,
    neural_g: Optional[Any] = None,
    optimizer_f: Optional[optax.GradientTransformation] = None,
    optimizer_g: Optional[optax.GradientTransformation] = None,
    cost_fn: Optional[costs.CostFn] = None,
    expectile: float = 0.99,
    expectile_loss_coef: float = 0.5,
    num_train_iters: int = 20000,
    valid_freq: int = 1000,
    log_freq: int = 1000,
    logging: bool = False,
    rng: Optional[jax.Array] = None,
    *,
    parameterisation: Optional[Literal["twist", "correlation",
                                       "direct"]] = None,
    bidirectional: Optional[bool] = None,
    conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver
                              ] = _DEFAULT_CONJUGATE,
    progress_bar: bool = True,
    chunk_size: int = 100,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    checkpoint_every: int = 1000,
    checkpoint_keep: int = 3,
    mesh: Optional[jax.sharding.Mesh] = None,
    keep_best: Optional[bool] = None,
    pushforward_loss_coef: float = 0.0,
) -> Dict[str, Any]:
  """ENOT's arguments, bound (the signature documented by
  :class:`ENOTSolver`)."""
  return dict(locals())


class Configuration(NamedTuple):
  """ENOT's arguments turned into parts.

  Attributes:
    method: The :class:`~ott_enot.methods.ENOT` method (its model, hyper-
      parameters, optimisers and conjugate solver).
    rng: The key of the networks' initialisation.
    run: The :class:`~ott_enot.solvers.base.Solver` settings of the runs.
    default_optimizers: Whether neither optimiser was given.
  """
  method: enot_lib.ENOT
  rng: jax.Array
  run: Dict[str, Any]
  default_optimizers: bool


#: The arguments every face passes on to :class:`~ott_enot.solvers.base.Solver`
#: (the settings of the runs).
RUN_SETTINGS = ("num_train_iters", "valid_freq", "log_freq", "logging",
                "progress_bar", "chunk_size", "checkpoint_dir",
                "checkpoint_every", "checkpoint_keep", "mesh", "keep_best")


def configure(args: Tuple[Any, ...], kwargs: Dict[str, Any], *,
              dim_cond: int = 0, conditioning: str = "concat"
             ) -> Configuration:
  """Check ENOT's arguments (``args``, ``kwargs``: those of
  :class:`ENOTSolver`) and build its parts, for networks that take
  conditions of dimension ``dim_cond`` as ``conditioning`` says.

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """
  a = _enot_arguments(*args, **kwargs)
  checks.check_hyperparameters(**{k: a[k] for k in (
      "dim_data", "expectile", "expectile_loss_coef",
      "pushforward_loss_coef", "num_train_iters",
      "valid_freq", "log_freq", "chunk_size", "cost_fn", "optimizer_f",
      "optimizer_g", "conjugate_solver", "checkpoint_dir", "checkpoint_every",
      "checkpoint_keep")})
  if not (a["keep_best"] is None or isinstance(a["keep_best"], bool)):
    raise TypeError(
        f"`keep_best` must be None, True or False, got {a['keep_best']!r}.")
  dim = int(a["dim_data"])
  cost_fn = costs_lib.canonical_cost(
      costs.SqEuclidean() if a["cost_fn"] is None else a["cost_fn"])
  neural_f = networks.as_network(a["neural_f"], "neural_f")
  neural_g = networks.as_network(a["neural_g"], "neural_g")
  name, bidirectional = models.resolve_parameterisation(
      cost_fn, a["parameterisation"], a["bidirectional"], neural_f, dim,
      dim_cond, conditioning)
  default = lambda out: networks.default_network(out, conditioning)
  if neural_f is None:
    neural_f = default(models.MODELS[name].f_outputs(dim))
  if neural_g is None:
    neural_g = default(1)
  models.check_networks(name, neural_f, neural_g, dim, dim_cond, conditioning)
  model = models.transport_model(name, cost_fn, neural_f, neural_g, dim,
                                 dim_cond, conditioning)
  optimizer = lambda given: default_optimizer(a["num_train_iters"]) if (
      given is None) else given
  method = enot_lib.ENOT(
      model, float(a["expectile"]), float(a["expectile_loss_coef"]),
      bidirectional, optimizer(a["optimizer_f"]), optimizer(a["optimizer_g"]),
      pushforward_loss_coef=float(a["pushforward_loss_coef"]),
      conjugate_solver=a["conjugate_solver"])
  return Configuration(
      method, utils.default_prng_key(a["rng"]),
      {k: a[k] for k in RUN_SETTINGS},
      a["optimizer_f"] is None and a["optimizer_g"] is None)


class ENOTFace:
  """What every ENOT face shows of its :class:`~ott_enot.methods.ENOT`
  method (``enot``: for a population, its members' method)."""

  enot: enot_lib.ENOT

  @property
  def model(self) -> models.TransportModel:
    """The :class:`~ott_enot.model.parameterisations.TransportModel`."""
    return self.enot.model

  @property
  def dim_data(self) -> int:
    """Dimension :math:`d` of the data."""
    return self.enot.model.dim

  @property
  def cost_fn(self) -> costs.CostFn:
    """The cost (ott's :class:`~ott.geometry.costs.Euclidean` is this
    package's, with finite gradients)."""
    return self.enot.model.cost_fn

  @property
  def parameterisation(self) -> str:
    """``"twist"``, ``"correlation"`` or ``"direct"``."""
    return self.enot.model.parameterisation

  @property
  def bidirectional(self) -> bool:
    """Whether training alternates forward and inverse steps."""
    return self.enot.bidirectional

  @property
  def neural_f(self) -> networks.Network:
    """The ``f`` network (an NNX module's
    :class:`~ott_enot.model.networks.NNXNetwork`)."""
    return self.enot.model.neural_f

  @property
  def neural_g(self) -> networks.Network:
    """The ``g`` network (an NNX module's
    :class:`~ott_enot.model.networks.NNXNetwork`)."""
    return self.enot.model.neural_g

  @property
  def expectile(self) -> float:
    r"""The expectile :math:`\tau`."""
    return self.enot.expectile

  @property
  def expectile_loss_coef(self) -> float:
    r"""The expectile regulariser's weight :math:`\lambda`."""
    return self.enot.expectile_loss_coef

  @property
  def pushforward_loss_coef(self) -> float:
    r"""The pushforward term's weight :math:`\mu`."""
    return self.enot.pushforward_loss_coef

  @property
  def conjugate_solver(self) -> Optional[ott_conjugate.FenchelConjugateSolver]:
    """The refinement of the c-transform in the potentials."""
    return self.enot.conjugate_solver

  @classmethod
  def from_geometry(
      cls,
      geom: Union[pointcloud.PointCloud, linear_problem.LinearProblem],
      **kwargs: Any,
  ) -> Any:
    """A solver for ``geom``: cost from ``geom.cost_fn``, dimension from points.

    Args:
      geom: An ott ``PointCloud`` or a balanced ``LinearProblem`` on one.
      kwargs: Any other argument of the solver.

    Returns:
      The solver; train it with ``fit``.
    """
    pc = point_cloud_of(geom)
    if "cost_fn" in kwargs:
      raise ValueError(
          "`from_geometry` takes the cost from `geom.cost_fn`; build the "
          "`PointCloud` with the cost you want instead of passing `cost_fn`."
      )
    return cls(int(pc.x.shape[1]), cost_fn=pc.cost_fn, **kwargs)


class PairFit(base.Solver):
  """Training on a pair of measures: ``fit`` (two point clouds, an ott
  geometry or problem, a sampler) and ott's four loaders (``__call__``),
  returning the face's :meth:`~ott_enot.solvers.base.Solver.output`."""

  def fit(
      self,
      data_or_x: Data_t,
      y: Optional[jnp.ndarray] = None,
      *,
      a: Optional[jnp.ndarray] = None,
      b: Optional[jnp.ndarray] = None,
      batch_size: int = 1024,
      valid_fraction: float = 0.1,
      replace: bool = True,
      rng: Optional[jax.Array] = None,
      callback: Optional[Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on two point clouds, an ott geometry or problem, or a sampler.

    Batches are sampled on the device inside the fused training loop: from
    points ``x [n, d]`` and ``y [m, d]`` (weights ``a``, ``b``, default
    uniform), an ott ``PointCloud`` (uniform weights) or a balanced
    ``LinearProblem`` (weights ``a``, ``b``) through a
    :class:`~ott_enot.data.PointCloudStream`, whose training split excludes
    the ``valid_fraction`` held out for validation; or from a pure function
    ``sampler(key) -> (x[n, d], y[n, d])``. Batch ``k`` of a split (training
    0, validation 1) is drawn with ``fold_in(fold_in(fold_in(rng, 1),
    split), k)``, the one key schedule of :mod:`ott_enot.data.sampling`. The
    cost matrix is never formed.

    Args:
      data_or_x: Source points ``x [n, d]`` (with ``y``); an ott
        ``PointCloud`` or a balanced ``LinearProblem`` on one, with the
        solver's cost (e.g. built by
        :meth:`~ott_enot.solvers.enot.ENOTFace.from_geometry`); a
        ``PointCloudStream``; or a sampler function.
      y: Target points ``[m, d]`` when ``data_or_x`` are source points.
      a: Source weights ``[n]`` summing to 1 (with points only).
      b: Target weights ``[m]`` summing to 1 (with points only).
      batch_size: Points per batch.
      valid_fraction: Fraction of points held out for validation.
      replace: Sample with replacement.
      rng: Key of the split and the sampling; default ``jax.random.key(0)``.
      callback: As in :meth:`__call__`.
      resume: Go on from the latest checkpoint in ``checkpoint_dir`` (its
        state, step and logs). Batches are keyed by the step, so with the
        same data and ``rng`` the resumed run equals an uninterrupted one
        (bit for bit on CPU).

    Returns:
      As :meth:`__call__`.

    Raises:
      ValueError: for an unbalanced problem, another cost or dimension than
        the solver's, bad points/weights, or a batch size that does not
        split over the devices of ``mesh``.
      ~ott_enot.training.checkpoints.CheckpointError: for ``resume=True`` without a
        usable checkpoint.
    """
    return base.Solver.fit(
        self, data_or_x, y=y, a=a, b=b, rng=rng, callback=callback,
        resume=resume, batch_size=batch_size, valid_fraction=valid_fraction,
        replace=replace
    )

  def __call__(
      self,
      trainloader_source: Iterator[jnp.ndarray],
      trainloader_target: Iterator[jnp.ndarray],
      validloader_source: Iterator[jnp.ndarray],
      validloader_target: Iterator[jnp.ndarray],
      callback: Optional[Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on ott's four loaders and return the learned potentials.

    Args:
      trainloader_source: Iterator of source batches ``[n, d]``.
      trainloader_target: Iterator of target batches ``[n, d]`` (same ``n``).
      validloader_source: Iterator of source validation batches.
      validloader_target: Iterator of target validation batches.
      callback: ``callback(step, potentials)``, called at the end of each
        chunk of steps (see ``chunk_size``; after every step with
        ``chunk_size=1``). If it raises, training stops and the solver keeps
        the state after that chunk.
      resume: Go on from the latest checkpoint in ``checkpoint_dir`` (state,
        step, logs). Pass loaders positioned at the step after it: the
        training loaders at batch ``step + 1`` and the validation ones
        after the ``num_validations`` batches already used
        (:meth:`~ott_enot.PointCloudStream.loaders` takes both positions).

    Returns:
      :class:`~ott_enot.ENOTPotentials`, or ``(potentials, logs)`` if
      ``logging=True``; ``logs["train_logs"]`` has ``loss_f``, ``loss_g``,
      ``w_dist``, ``directions`` (``"forward"``/``"inverse"``),
      ``logs["valid_logs"]`` ``loss_f``, ``loss_g``, ``w_dist``,
      ``map_cost``, ``fit`` and ``floor``.

    Raises:
      ValueError: for bad batches (the first ones before anything compiles),
        batches that do not split over the devices of ``mesh``, or a loader
        that runs out.
      ~ott_enot.TrainingDivergedError: if the loss becomes NaN/inf.

    Whatever raises (these, a callback's error, ``KeyboardInterrupt``), the
    solver keeps the state after the last completed chunk of steps (the
    last good step on divergence):
    :meth:`~ott_enot.solvers.enot.ENOTSolver.to_dual_potentials`, saving and
    further training work on it. A new call starts a new run (step 0) from
    that state.
    """
    loaders = inputs.Loaders((trainloader_source, trainloader_target,
                              validloader_source, validloader_target))
    return base.Solver.fit(self, loaders, callback=callback, resume=resume)


class ENOTSolver(PairFit, ENOTFace):
  r"""Expectile-regularised neural optimal transport (ENOT) :cite:`buzun:24`.

  Solves the dual OT problem for a cost :math:`c` between measures
  :math:`\alpha` and :math:`\beta`,

  .. math::

    \sup_{g} \inf_{T} \; \mathbb{E}_\alpha[c(x, T(x)) - g(T(x))]
    + \mathbb{E}_\beta[g(y)],

  learning the map :math:`T` (from the network ``neural_f``) and the
  potential :math:`g` (``neural_g``) jointly. Instead of an exact
  c-transform, an expectile regression pushes :math:`g` to the feasibility
  boundary :math:`f(x) + g(y) \le c(x, y)`; the objective is
  :func:`ott_enot.model.losses.enot_loss`. With bidirectional training the steps
  alternate between :math:`(f, g)` on :math:`(x, y)` and :math:`(g, f)` on
  :math:`(y, x)`, which learns the inverse map as well.

  Args:
    dim_data: Dimension :math:`d` of the data.
    neural_f: Flax module for :math:`f`: a potential (one number per point)
      or, for ``parameterisation="direct"``, the map (``d`` numbers). Any
      module acting row-wise on ``[n, d]`` works (ott's
      :class:`~ott.neural.networks.potentials.MLP`,
      :class:`~ott.neural.networks.potentials.PotentialMLP`,
      :class:`~ott.neural.networks.icnn.ICNN`, ...), Linen or Flax NNX: an
      ``nnx.Module`` (training starts from its parameters; ``rng`` does not
      choose them) or a function ``rngs -> nnx.Module`` (built from
      ``nnx.Rngs(rng)``), kept as an
      :class:`~ott_enot.model.networks.NNXNetwork`. Default: ott's Linen
      ELU MLP with hidden sizes ``[128] * 4``.
    neural_g: Flax module for the potential :math:`g` (one number per point),
      as ``neural_f``.
    optimizer_f: Optax optimizer of :math:`f`. Default
      (:func:`default_optimizer`): Adam, ``b1=0.9``, ``b2=0.99``, learning
      rate ``1e-3`` decayed along a cosine to ``1e-5`` over
      ``num_train_iters`` (ott's: Adam ``3e-4``, ``b1 = b2 = 0.9``). Solvers
      of equal settings share their compiled programs when the optimisers
      compare equal: the default does, and so does an
      :class:`~ott_enot.OptaxCall` (``ott_enot.optax_call.adam(1e-3)``); an
      optax transformation (``optax.adam(1e-3)``) is a pair of closures,
      equal only to itself, so each solver given a new one compiles its
      own programs.
    optimizer_g: Optax optimizer of :math:`g`. Same default.
    cost_fn: ott cost. Default :class:`~ott.geometry.costs.SqEuclidean`.
    expectile: Expectile level :math:`\tau \in (0, 1]`; paper: [0.9, 1.0].
    expectile_loss_coef: Weight :math:`\lambda \ge 0` of the expectile
      regulariser; paper: [0.3, 1.0]. Default 0.5 (ott's: 1.0).
    num_train_iters: Number of training steps of a run.
    valid_freq: Validate every ``valid_freq`` steps.
    log_freq: Log every ``log_freq`` steps.
    logging: Return ``(potentials, logs)`` from training.
    rng: PRNG key for the networks' initialisation.
    parameterisation: How :math:`T` comes from ``neural_f``: ``"twist"``,
      ``"correlation"`` or ``"direct"`` (one class each in
      :mod:`ott_enot.model.parameterisations`). :obj:`None`: decided by
      :func:`~ott_enot.model.parameterisations.resolve_parameterisation`
      from the networks and the cost.
    bidirectional: Alternate forward and inverse steps (learns the inverse
      map too). :obj:`None`: whenever the parameterisation has an inverse.
    conjugate_solver: Refinement of the c-transform :math:`f = g^c` (and of
      the forward map) when the potentials are built. Default
      :class:`~ott_enot.ExpectileConjugateSolver`: none, the amortised map
      is used as it is. Training never refines.
    progress_bar: Show a tqdm progress bar (steps/s, loss) while training.
    chunk_size: Training steps fused into one ``lax.scan`` dispatch (rounded
      up to an even number when bidirectional, so that the scan runs over
      static inverse/forward pairs: the chunk length). A run compiles one program for all its
      chunks, whatever ``num_train_iters``, ``valid_freq`` and ``log_freq``
      are. ``callback`` is called at the end of each chunk: after step 0,
      every multiple of ``chunk_size`` (for an odd ``chunk_size`` with
      bidirectional training also of ``chunk_size + 1``), and the last step,
      so a ``step % 1000 == 0`` check fires as in ott when ``chunk_size``
      divides 1000. ``chunk_size=1`` calls it after every step, as ott does.
      Logs and validation happen at ott's steps whatever the chunk size.
    checkpoint_dir: With a directory, training writes checkpoints there
      (:mod:`ott_enot.training.checkpoints`, orbax): the whole training state, the
      step, the logs, after the chunk that reaches each multiple of
      ``checkpoint_every`` and after the last step, keeping the latest
      ``checkpoint_keep`` (with the run's best validated parameters so
      far) and the one with the best validation ``fit/floor``.
      ``resume=True`` goes on from the latest.
    checkpoint_every: Steps between checkpoints.
    checkpoint_keep: How many of the latest checkpoints to keep.
    mesh: A :class:`jax.sharding.Mesh` to train data-parallel on its devices
      (:mod:`ott_enot.training.sharding`): every training batch is split along its
      batch axis over all devices of the mesh, the networks and optimiser
      states are replicated, and one program is compiled for the mesh.
      ``mesh=ott_enot.batch_mesh()`` uses all devices. The batch size must be
      a multiple of the number of devices. :obj:`None`: the default device.
    keep_best: Return the potentials of the run's best validation instead
      of the last ones, so that more steps never make the returned map
      worse: the validation with the lowest ``fit / floor``
      (:mod:`ott_enot.evaluation.metrics`: the map's fit at the resolution
      of the data) where every validation sees the same held-out batch
      (``fit``: point clouds, samplers), the latest within 25 % of the
      lowest with ott's loaders (their fresh batches' noise); the run's
      last step validated too. ``solver.best`` holds its step and score
      (``logs["selection"]`` too); ``solver.state`` stays the last state (to
      train on). :obj:`None` (default): so where validation can score
      (batches of at least 1,024 points), the last parameters silently
      where it cannot; ``True``: warn where it cannot; ``False``: the last,
      as ott.
    pushforward_loss_coef: Weight :math:`\mu \ge 0` of the pushforward term
      (keyword), the energy distance between the mapped batch and the
      target batch added to the map's loss in each direction, scaled by the
      batch's cost per unit of distance so that :math:`\mu` does not depend
      on the data's units (:mod:`ott_enot.model.losses` has the maths). It
      vanishes where the map pushes the source onto the target, and pulls
      points that land between the target's clusters towards its mass.
      Default 0: ENOT as published (on Gaussian pairs and the W2 pairs
      ``0.3`` leaves L2-UV within the seeds' spread, ``1`` raises it by
      10-120 %).
      On ott's 2-D mixtures at the demo's budget (4 seeds) ``0.3`` strands
      3.9 % of the forward map's points instead of 5.2 % and keeps every
      cluster within 1.21x of the target's spread (1.36x without); the
      inverse's strays 8.3 % against 7.5 %. About 2 % more time per step
      for batches of 256 (RESULTS.md, "The pushforward term").

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """


  def __init__(self, dim_data: int, *args: Any, **kwargs: Any):
    config = configure((dim_data,) + args, kwargs)
    self.enot = config.method
    self.default_optimizers = config.default_optimizers
    super().__init__(config.method, config.method.init(config.rng),
                     **config.run)
    # one jitted step per direction, for users who drive training themselves
    self.step_fns = {
        forward: jax.jit(
            lambda state, x, y, cond=None, forward=forward: enot_lib.enot_step(
                state, x, y, cond, method=self.enot, forward=forward
            )
        ) for forward in (True, False)
    }

  def init_state(
      self, rng: jax.Array, optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation
  ) -> enot_lib.ENOTTrainState:
    """Fresh networks (initialised from ``rng``) and optimiser states.

    Args:
      rng: Key of the networks' initialisation.
      optimizer_f: Optax optimiser of :math:`f`.
      optimizer_g: Optax optimiser of :math:`g`.

    Returns:
      A step-0 :class:`~ott_enot.methods.ENOTTrainState`.
    """
    return self.enot.init(rng, optimizer_f, optimizer_g)

  def to_dual_potentials(self, finetune_g: bool = True) -> ENOTPotentials:
    """The learned potentials and maps.

    Args:
      finetune_g: Refine the c-transform with ``conjugate_solver`` (ott's
        ``W2NeuralDual`` name); a no-op with the default solver.

    Returns:
      :class:`~ott_enot.ENOTPotentials`.
    """
    return self.enot.potentials(*self.selected_state().params, finetune_g)
