r"""The ENOT solver: validation of the user's choices, wiring, and the state.

:class:`ENOTSolver` is the plain core: it checks its arguments, builds the
:class:`~ott_enot.maps.TransportModel` and the initial
:class:`~ott_enot.step.ENOTTrainState`, turns what it is given to train on
into a feed (:mod:`ott_enot.feeds`), and runs :func:`ott_enot.loop.train`.
It holds the training state between runs, assigned back in one place
whatever raises. :class:`ott_enot.ExpectileNeuralDual` is this core with
ott's ``W2NeuralDual`` face (:mod:`ott_enot.compat`).

Where batches come from (one word each): a *sampler* draws them on the
device (a pure function ``key -> (x, y)``, or a
:class:`~ott_enot.data.PointCloudStream` of point clouds), *loaders* are
ott's four iterators of host batches, and a *feed* is what the training loop
reads either from.
"""
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    Optional,
    Tuple,
    Union,
)

import jax
import jax.numpy as jnp

import optax
from flax import linen as nn
from ott import utils
from ott.geometry import costs, pointcloud
from ott.neural.networks import potentials as ott_potentials
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import linear_problem

from ott_enot import checkpoints, checks, conjugate, data, feeds, loop, maps
from ott_enot import potentials, sharding
from ott_enot import costs as enot_costs
from ott_enot import step as step_lib

__all__ = ["ENOTSolver", "default_optimizer"]

Train_t = Dict[Literal["train_logs", "valid_logs"], Dict[str, List[Any]]]
Callback_t = Callable[[int, potentials.ENOTPotentials], Any]
Sampler_t = Callable[[jax.Array], Tuple[jnp.ndarray, jnp.ndarray]]
Data_t = Union[pointcloud.PointCloud, linear_problem.LinearProblem,
               data.PointCloudStream, Sampler_t, jnp.ndarray]
_DEFAULT_CONJUGATE = conjugate.ExpectileConjugateSolver()


def _default_mlp(out: int) -> nn.Module:
  """ott's default ENOT network: an ELU MLP with hidden sizes ``[128] * 4``."""
  return ott_potentials.MLP(
      dim_hidden=[128, 128, 128, 128, out], act_fn=jax.nn.elu
  )


DEFAULT_LEARNING_RATE = 1e-3


def default_optimizer(
    num_train_iters: int, learning_rate: float = DEFAULT_LEARNING_RATE
) -> optax.GradientTransformation:
  """The default optimiser of both networks: Adam (``b1 = 0.9``,
  ``b2 = 0.99``) with a learning rate decaying from ``learning_rate``
  (``1e-3``) to a hundredth of it along a cosine over ``num_train_iters``
  steps (then constant).

  On ott's 2-D Gaussian mixtures it gives maps several times closer to the
  target than ott's default (Adam ``3e-4``, ``b1 = b2 = 0.9``, constant):
  ``benchmarks/accuracy.py`` measures both.
  """
  schedule = optax.cosine_decay_schedule(
      learning_rate, max(int(num_train_iters), 1), alpha=1e-2
  )
  return optax.adam(learning_rate=schedule, b1=0.9, b2=0.99)


class ENOTSolver:
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
  :func:`ott_enot.losses.enot_loss`. With bidirectional training the steps
  alternate between :math:`(f, g)` on :math:`(x, y)` and :math:`(g, f)` on
  :math:`(y, x)`, which learns the inverse map as well.

  Args:
    dim_data: Dimension :math:`d` of the data.
    neural_f: Flax module for :math:`f`: a potential (one number per point)
      or, for ``parameterisation="direct"``, the map (``d`` numbers). Any
      module acting row-wise on ``[n, d]`` works (ott's
      :class:`~ott.neural.networks.potentials.MLP`,
      :class:`~ott.neural.networks.potentials.PotentialMLP`,
      :class:`~ott.neural.networks.icnn.ICNN`, ...). Default: ELU MLP with
      hidden sizes ``[128] * 4``.
    neural_g: Flax module for the potential :math:`g` (one number per point).
    optimizer_f: Optax optimizer of :math:`f`. Default
      (:func:`default_optimizer`): Adam, ``b1=0.9``, ``b2=0.99``, learning
      rate ``1e-3`` decayed along a cosine to ``1e-5`` over
      ``num_train_iters`` (ott's: Adam ``3e-4``, ``b1 = b2 = 0.9``).
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
      ``"correlation"`` or ``"direct"`` (see :mod:`ott_enot.maps`).
      :obj:`None`: decided by :func:`ott_enot.maps.resolve_parameterisation`
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
      static inverse/forward pairs). A run compiles one program for all its
      chunks, whatever ``num_train_iters``, ``valid_freq`` and ``log_freq``
      are. ``callback`` is called at the end of each chunk: after step 0,
      every multiple of ``chunk_size`` (for an odd ``chunk_size`` with
      bidirectional training also of ``chunk_size + 1``), and the last step,
      so a ``step % 1000 == 0`` check fires as in ott when ``chunk_size``
      divides 1000. ``chunk_size=1`` calls it after every step, as ott does.
      Logs and validation happen at ott's steps whatever the chunk size.
    checkpoint_dir: With a directory, training writes checkpoints there
      (:mod:`ott_enot.checkpoints`, orbax): the whole training state, the
      step, the logs, after the chunk that reaches each multiple of
      ``checkpoint_every`` and after the last step, keeping the latest
      ``checkpoint_keep`` and the one with the best validation ``w_dist``.
      ``resume=True`` goes on from the latest.
    checkpoint_every: Steps between checkpoints.
    checkpoint_keep: How many of the latest checkpoints to keep.
    mesh: A :class:`jax.sharding.Mesh` to train data-parallel on its devices
      (:mod:`ott_enot.sharding`): every training batch is split along its
      batch axis over all devices of the mesh, the networks and optimiser
      states are replicated, and one program is compiled for the mesh.
      ``mesh=ott_enot.batch_mesh()`` uses all devices. The batch size must be
      a multiple of the number of devices. :obj:`None`: the default device.

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """

  def __init__(
      self,
      dim_data: int,
      neural_f: Optional[nn.Module] = None,
      neural_g: Optional[nn.Module] = None,
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
  ):
    checks.check_hyperparameters(
        dim_data=dim_data,
        expectile=expectile,
        expectile_loss_coef=expectile_loss_coef,
        num_train_iters=num_train_iters,
        valid_freq=valid_freq,
        log_freq=log_freq,
        chunk_size=chunk_size,
        cost_fn=cost_fn,
        optimizer_f=optimizer_f,
        optimizer_g=optimizer_g,
        conjugate_solver=conjugate_solver,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        checkpoint_keep=checkpoint_keep,
    )
    self.dim_data = int(dim_data)
    self.cost_fn = enot_costs.canonical_cost(
        costs.SqEuclidean() if cost_fn is None else cost_fn
    )
    self.parameterisation, self.bidirectional = maps.resolve_parameterisation(
        self.cost_fn, parameterisation, bidirectional, neural_f, self.dim_data,
        self.dim_cond, self.conditioning
    )
    if neural_f is None:
      neural_f = self._default_network(
          self.dim_data if self.parameterisation == "direct" else 1
      )
    neural_g = self._default_network(1) if neural_g is None else neural_g
    maps.check_networks(self.parameterisation, neural_f, neural_g, dim_data,
                        self.dim_cond, self.conditioning)
    self.neural_f, self.neural_g = neural_f, neural_g
    self.expectile = float(expectile)
    self.expectile_loss_coef = float(expectile_loss_coef)
    self.num_train_iters = num_train_iters
    self.valid_freq = valid_freq
    self.log_freq = log_freq
    self.logging = logging
    self.conjugate_solver = conjugate_solver
    self.progress_bar = progress_bar
    self.chunk_size = int(chunk_size)
    self.checkpoint_dir = checkpoint_dir
    self.checkpoint_every = int(checkpoint_every)
    self.checkpoint_keep = int(checkpoint_keep)
    self.parallel = sharding.DataParallel.create(mesh)
    self.default_optimizers = optimizer_f is None and optimizer_g is None
    self.model = maps.TransportModel(
        self.parameterisation, self.cost_fn, self.neural_f, self.neural_g,
        self.dim_data, self.dim_cond, self.conditioning
    )
    self.state = self._initial_state(
        utils.default_prng_key(rng),
        default_optimizer(num_train_iters) if optimizer_f is None else
        optimizer_f,
        default_optimizer(num_train_iters) if optimizer_g is None else
        optimizer_g,
    )
    # one jitted step per direction, for users who drive training themselves
    config = self.step_config()
    self.step_fns = {
        forward: jax.jit(
            lambda state, x, y, c=None, forward=forward: step_lib.train_step(
                state, x, y, c, config=config, forward=forward
            )
        ) for forward in (True, False)
    }

  #: Dimension of the condition the networks take (0: none; see
  #: :class:`~ott_enot.ConditionalExpectileNeuralDual`).
  dim_cond: int = 0
  #: How the networks take it (:mod:`ott_enot.networks`).
  conditioning: str = "concat"

  def _default_network(self, out: int) -> nn.Module:
    """The network used when none is given, with ``out`` outputs per point."""
    return _default_mlp(out)

  def init_state(
      self, rng: jax.Array, optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation
  ) -> step_lib.ENOTTrainState:
    """Fresh networks (initialised from ``rng``) and optimiser states."""
    rng_f, rng_g = jax.random.split(rng, 2)
    inputs = maps.network_inputs(self.dim_data, self.dim_cond,
                                 self.conditioning)
    init = lambda module, key, tx: step_lib.NetworkState.create(
        module.init(key, *inputs)["params"], tx
    )
    return step_lib.ENOTTrainState.create(
        init(self.neural_f, rng_f, optimizer_f),
        init(self.neural_g, rng_g, optimizer_g),
    )

  def _initial_state(
      self, rng: jax.Array, optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation
  ) -> Any:
    """The state a new solver trains (a population stacks its members')."""
    return self.init_state(rng, optimizer_f, optimizer_g)

  # ---- configuration ----

  def step_config(self) -> step_lib.StepConfig:
    """What a training step computes (static)."""
    return step_lib.StepConfig(
        self.model, self.expectile, self.expectile_loss_coef
    )

  def loop_config(self) -> loop.LoopConfig:
    """The static configuration of the compiled training loop."""
    return loop.LoopConfig.create(
        step=self.step_config(),
        bidirectional=self.bidirectional,
        chunk_size=self.chunk_size,
        valid_freq=self.valid_freq,
        parallel=self.parallel,
    )

  @property
  def mesh(self) -> Optional[jax.sharding.Mesh]:
    """The devices training splits each batch over (:obj:`None`: one)."""
    return self.parallel.mesh

  @classmethod
  def from_geometry(
      cls,
      geom: Union[pointcloud.PointCloud, linear_problem.LinearProblem],
      **kwargs: Any,
  ) -> "ENOTSolver":
    """A solver for ``geom``: cost from ``geom.cost_fn``, dimension from points.

    Args:
      geom: An ott ``PointCloud`` or a balanced ``LinearProblem`` on one.
      kwargs: Any other argument of the solver.

    Returns:
      The solver; train it with :meth:`fit`.
    """
    pc = data.point_cloud_of(geom)
    if "cost_fn" in kwargs:
      raise ValueError(
          "`from_geometry` takes the cost from `geom.cost_fn`; build the "
          "`PointCloud` with the cost you want instead of passing `cost_fn`."
      )
    return cls(int(pc.x.shape[1]), cost_fn=pc.cost_fn, **kwargs)

  # ---- training ----

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
  ) -> Union[potentials.ENOTPotentials, Tuple[potentials.ENOTPotentials,
                                              Train_t]]:
    """Train on two point clouds, an ott geometry or problem, or a sampler.

    Batches are sampled on the device inside the fused training loop: from
    points ``x [n, d]`` and ``y [m, d]`` (weights ``a``, ``b``, default
    uniform), an ott ``PointCloud`` (uniform weights) or a balanced
    ``LinearProblem`` (weights ``a``, ``b``) through a
    :class:`~ott_enot.data.PointCloudStream`, whose training split excludes
    the ``valid_fraction`` held out for validation; or from a pure function
    ``sampler(key) -> (x[n, d], y[n, d])`` (step ``k`` uses
    ``fold_in(key, k)``, validation ``fold_in`` of another key). The cost
    matrix is never formed.

    Args:
      data_or_x: Source points ``x [n, d]`` (with ``y``); an ott
        ``PointCloud`` or a balanced ``LinearProblem`` on one, with the
        solver's cost (e.g. built by :meth:`from_geometry`); a
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
      ~ott_enot.checkpoints.CheckpointError: for ``resume=True`` without a
        usable checkpoint.
    """
    key = jax.random.key(0) if rng is None else rng
    feed = self._device_feed(
        data_or_x, y, a, b, key, dict(
            batch_size=batch_size, valid_fraction=valid_fraction,
            replace=replace, rng=rng
        )
    )
    return self._result(self._train(feed, callback, resume))

  def _device_feed(
      self, data_or_x: Data_t, y: Any, a: Any, b: Any, key: jax.Array,
      stream_kwargs: Dict[str, Any]
  ) -> feeds.DeviceFeed:
    """The on-device feed of what :meth:`fit` was given."""
    domain = self.model.domain
    if y is None and (a is not None or b is not None):
      raise ValueError(
          "`a` and `b` weigh the points `x` and `y`: pass `fit(x, y, a=..., "
          "b=...)`, or a `LinearProblem` with its weights."
      )
    if callable(data_or_x) and not isinstance(
        data_or_x, data.PointCloudStream
    ):
      if y is not None:
        raise TypeError("`y` goes with source points, not with a sampler.")
      checks.check_sampler(data_or_x, self.dim_data)
      batches = feeds.SamplerBatches(jax.random.fold_in(key, 1), data_or_x)
      return feeds.DeviceFeed(
          batches, self.dim_data, domain, check_sampler=True,
          batch_name="The batch size of the sampler's batches"
      )
    if isinstance(data_or_x, data.PointCloudStream):
      stream = data_or_x
    elif y is not None:
      stream = data.PointCloudStream.from_arrays(
          data_or_x, y, a, b, **stream_kwargs
      )
    else:
      self._check_cost_of(data_or_x)
      stream = data.PointCloudStream.from_any(data_or_x, **stream_kwargs)
    if stream.dim != self.dim_data:
      raise ValueError(
          f"The data have points of dimension {stream.dim}, but the solver "
          f"was built with dim_data={self.dim_data}."
      )
    stream.check_domain(domain)
    batches = feeds.StreamBatches(stream, jax.random.fold_in(key, 1))
    return feeds.DeviceFeed(batches, self.dim_data, domain)

  def _check_cost_of(self, geom: Any) -> None:
    """Raise unless ``geom``'s cost is the solver's (up to numerical fixes)."""
    cost = enot_costs.canonical_cost(data.point_cloud_of(geom).cost_fn)
    same = type(cost) is type(self.cost_fn) and (
        jax.tree.structure(cost) == jax.tree.structure(self.cost_fn)
    )
    if not same:
      raise ValueError(
          f"`geom.cost_fn` is {type(cost).__name__} but the solver was built "
          f"with {type(self.cost_fn).__name__}; build the solver with "
          f"`from_geometry(geom, ...)`."
      )

  def __call__(
      self,
      trainloader_source: Iterator[jnp.ndarray],
      trainloader_target: Iterator[jnp.ndarray],
      validloader_source: Iterator[jnp.ndarray],
      validloader_target: Iterator[jnp.ndarray],
      callback: Optional[Callback_t] = None,
      resume: bool = False,
  ) -> Union[potentials.ENOTPotentials, Tuple[potentials.ENOTPotentials,
                                              Train_t]]:
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
      ``logs["valid_logs"]`` ``loss_f``, ``loss_g``, ``w_dist``.

    Raises:
      ValueError: for bad batches (the first ones before anything compiles),
        batches that do not split over the devices of ``mesh``, or a loader
        that runs out.
      ~ott_enot.TrainingDivergedError: if the loss becomes NaN/inf.

    Whatever raises (these, a callback's error, ``KeyboardInterrupt``), the
    solver keeps the state after the last completed chunk of steps (the
    last good step on divergence): :meth:`to_dual_potentials`, saving and
    further training work on it. A new call starts a new run (step 0) from
    that state.
    """
    feed = self._loader_feed(
        trainloader_source, trainloader_target, validloader_source,
        validloader_target
    )
    return self._result(self._train(feed, callback, resume))

  def _loader_feed(self, *loaders: Iterator[jnp.ndarray]) -> feeds.IteratorFeed:
    return feeds.IteratorFeed(loaders, self.dim_data, self.model.domain)

  def _result(self, logs: Train_t):
    res = self.to_dual_potentials()
    return (res, logs) if self.logging else res

  # ---- checkpoints ----

  def checkpointer(self) -> Optional[checkpoints.Checkpointer]:
    """The :class:`~ott_enot.checkpoints.Checkpointer` of ``checkpoint_dir``
    (``None`` without one)."""
    if self.checkpoint_dir is None:
      return None
    signature = checkpoints.signature(
        cost_fn=self.cost_fn, parameterisation=self.parameterisation,
        dim_data=self.dim_data, bidirectional=self.bidirectional,
        state=self.state, dim_cond=self.dim_cond,
        conditioning=self.conditioning
    )
    return checkpoints.Checkpointer(
        self.checkpoint_dir, signature=signature, keep=self.checkpoint_keep,
        every=self.checkpoint_every
    )

  def restore(self, kind: str = "latest",
              step: Optional[int] = None) -> Dict[str, Any]:
    """Load a checkpoint of ``checkpoint_dir`` into this solver.

    Args:
      kind: ``"latest"`` or ``"best"`` (by validation ``w_dist``).
      step: Which checkpoint; default the newest of ``kind``.

    Returns:
      The checkpoint's metadata: ``step`` (the last step it had done),
      ``logs``, ``num_validations``, ``w_dist`` (for the best).

    Raises:
      ~ott_enot.checkpoints.CheckpointError: if there is none, or it was
        written for another cost, parameterisation, dimension or network.
    """
    ckpt = self.checkpointer()
    if ckpt is None:
      raise ValueError(
          "This solver has no `checkpoint_dir`: build it with "
          "`checkpoint_dir=...` (the directory of the run to restore)."
      )
    try:
      self.state, meta = ckpt.restore(self.state, kind, step)
    finally:
      ckpt.close()
    return meta

  def _train(self, feed: loop.Feed, callback: Optional[Callback_t],
             resume: bool = False) -> Train_t:
    start, logs = 0, None
    if resume:
      meta = self.restore("latest")
      start, logs = meta["step"] + 1, meta["logs"]
    elif self.checkpoint_dir is not None:
      earlier = checkpoints.checkpoint_steps(self.checkpoint_dir)
      if earlier:
        raise ValueError(
            f"`checkpoint_dir` {os.fspath(self.checkpoint_dir)!r} holds "
            f"checkpoints of an earlier run (steps {list(earlier)}): pass "
            f"`resume=True` to go on from the latest, or use an empty "
            f"directory."
        )
    ckpt = self.checkpointer()
    cell = loop.StateCell(self.state)
    peers_lost = False
    try:
      return loop.train(
          cell,
          feed,
          config=self.loop_config(),
          num_train_iters=self.num_train_iters,
          log_freq=self.log_freq,
          valid_freq=self.valid_freq,
          to_potentials=self._potentials_of,
          callback=callback,
          progress_bar=self.progress_bar,
          start=start,
          logs=logs,
          checkpointer=ckpt,
      )
    except sharding.ProcessFailedError:
      peers_lost = True  # pending writes wait for the lost process: drop them
      raise
    finally:  # whatever raised: the last completed state, never a donated one
      self.state = cell.state
      if ckpt is not None:
        ckpt.close(wait=not peers_lost)

  # ---- results ----

  def _potentials_of(
      self,
      state: step_lib.ENOTTrainState,
      finetune_g: bool = True
  ) -> potentials.ENOTPotentials:
    return potentials.ENOTPotentials(
        state.f.params,
        state.g.params,
        self.model,
        self.conjugate_solver if finetune_g else None,
    )

  def to_dual_potentials(
      self, finetune_g: bool = True
  ) -> potentials.ENOTPotentials:
    """The learned potentials and maps.

    Args:
      finetune_g: Refine the c-transform with ``conjugate_solver`` (ott's
        ``W2NeuralDual`` name); a no-op with the default solver.

    Returns:
      :class:`~ott_enot.ENOTPotentials`.
    """
    return self._potentials_of(self.state, finetune_g)
