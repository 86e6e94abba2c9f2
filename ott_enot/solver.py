r"""``ExpectileNeuralDual``: ENOT as a drop-in ott neural dual solver."""
import functools
import os
import warnings
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
from flax.training import train_state
from ott import utils
from ott.geometry import costs, pointcloud
from ott.neural.methods import neuraldual
from ott.neural.networks import potentials as ott_potentials
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import linear_problem

from ott_enot import checkpoints, checks, conjugate, data, maps, potentials
from ott_enot import sharding, sources
from ott_enot import training
from ott_enot import costs as enot_costs

__all__ = ["ExpectileNeuralDual"]

Train_t = Dict[Literal["train_logs", "valid_logs"], Dict[str, List[Any]]]
Callback_t = neuraldual.Callback_t
_DEFAULT_CONJUGATE = conjugate.ExpectileConjugateSolver()


def _warn_unused_w2_options(
    *, num_inner_iters: int, pos_weights: Optional[bool],
    beta: Optional[float], amortization_loss: Optional[str],
    parallel_updates: bool
) -> None:
  """Warn about ``W2NeuralDual`` keywords that ENOT accepts but does not use."""
  ignored = []
  if num_inner_iters != 1:
    ignored.append(f"num_inner_iters={num_inner_iters!r}")
  if pos_weights is not None:
    ignored.append(f"pos_weights={pos_weights!r}")
  if beta is not None:
    ignored.append(f"beta={beta!r}")
  if amortization_loss not in (None, "objective"):
    ignored.append(f"amortization_loss={amortization_loss!r}")
  if not parallel_updates:
    ignored.append("parallel_updates=False")
  if ignored:
    warnings.warn(
        f"ExpectileNeuralDual ignores the W2NeuralDual option(s) "
        f"{', '.join(ignored)}: ENOT updates both networks from one gradient "
        f"with its own (objective) amortisation and uses the networks as "
        f"given.",
        UserWarning,
        stacklevel=3,
    )


class ExpectileNeuralDual(neuraldual.W2NeuralDual):
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

  Drop-in for ott's :class:`~ott.neural.methods.neuraldual.W2NeuralDual` and
  ott's ``ExpectileNeuralDual`` (0.4.7 to 0.6.0): the positional arguments
  are those of ott 0.6.0's ``ExpectileNeuralDual``; ott 0.4.7-0.5.1's
  ``is_bidirectional`` and ``use_dot_product`` and ``W2NeuralDual``'s
  ``conjugate_solver`` are keywords.

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
    optimizer_f: Optax optimizer of :math:`f`. Default: Adam, ``lr=3e-4``,
      ``b1=0.9``, ``b2=0.9`` (ott's).
    optimizer_g: Optax optimizer of :math:`g`. Same default.
    cost_fn: ott cost. Default :class:`~ott.geometry.costs.SqEuclidean`.
    expectile: Expectile level :math:`\tau \in (0, 1]`; paper: [0.9, 1.0].
    expectile_loss_coef: Weight :math:`\lambda \ge 0` of the expectile
      regulariser; paper: [0.3, 1.0].
    num_train_iters: Number of training steps.
    valid_freq: Validate every ``valid_freq`` steps.
    log_freq: Log every ``log_freq`` steps.
    logging: Return ``(potentials, logs)`` from :meth:`__call__`.
    rng: PRNG key for the networks' initialisation.
    is_bidirectional: Alternate forward and backward steps (ott 0.4.7-0.5.1
      keyword). :obj:`None`: whenever the parameterisation has an inverse
      map. With the default networks, ``False`` selects the direct map, as in
      ott 0.5.1; see :func:`ott_enot.maps.resolve_parameterisation`.
    use_dot_product: Train in correlation form (ott 0.4.7-0.5.1 keyword),
      the same as ``parameterisation="correlation"``.
    parameterisation: How :math:`T` comes from ``neural_f``: ``"twist"``,
      ``"correlation"`` or ``"direct"`` (see :mod:`ott_enot.maps`).
      :obj:`None`: the direct map if ``neural_f`` outputs ``d`` numbers per
      point, else the cost's default
      (:func:`ott_enot.costs.default_parameterisation`).
    conjugate_solver: Refinement of the c-transform :math:`f = g^c` (and of
      the forward map) when the potentials are built, as in
      ``W2NeuralDual``. Default :class:`~ott_enot.ExpectileConjugateSolver`:
      none, the amortised map is used as it is. Training never refines.
    progress_bar: Show a tqdm progress bar (steps/s, loss) while training.
    chunk_size: Training steps fused into one ``lax.scan`` dispatch (rounded
      up to an even number when bidirectional, so that the scan runs over
      static backward/forward pairs). A run compiles one program for all its
      chunks, whatever ``num_train_iters``, ``valid_freq`` and ``log_freq``
      are. ``callback`` is called at the end of each chunk: after step 0,
      every multiple of ``chunk_size`` (for an odd ``chunk_size`` with
      bidirectional training also of ``chunk_size + 1``), and the last step,
      so a ``step % 1000 == 0`` check fires as in ott when ``chunk_size``
      divides 1000. ``chunk_size=1`` calls it after every step, as ott does
      (each step is then a dispatch of a pair with one step masked). Logs
      and validation happen at ott's steps whatever the chunk size.
    checkpoint_dir: With a directory, training writes checkpoints there
      (:mod:`ott_enot.checkpoints`, orbax): the whole training state, the
      step, the logs, after the chunk that reaches each multiple of
      ``checkpoint_every`` and after the last step, keeping the latest
      ``checkpoint_keep`` and the one with the best validation ``w_dist``.
      ``resume=True`` (in :meth:`fit` and :meth:`__call__`) goes on from the
      latest.
    checkpoint_every: Steps between checkpoints.
    checkpoint_keep: How many of the latest checkpoints to keep.
    mesh: A :class:`jax.sharding.Mesh` to train data-parallel on its devices
      (:mod:`ott_enot.sharding`): every training batch is split along its
      batch axis over all devices of the mesh, the networks and optimiser
      states are replicated, and one program is compiled for the mesh.
      ``mesh=ott_enot.batch_mesh()`` uses all devices. The batch size must be
      a multiple of the number of devices. :obj:`None`: the default device.
    back_and_forth: ``W2NeuralDual``'s name for ``is_bidirectional``.
    num_inner_iters: ``W2NeuralDual`` option without meaning in ENOT (both
      networks are updated from one gradient each step); warns unless 1.
    pos_weights: ``W2NeuralDual`` option for ICNNs; ENOT uses the networks as
      given and does not need convexity; warns if set.
    beta: ``W2NeuralDual`` option (weight penalty); warns if set.
    amortization_loss: ENOT's amortisation is the ``"objective"`` form
      (:math:`\mathbb{E}[c(x, T(x)) - g(T(x))]`); warns for ``"regression"``.
    parallel_updates: ENOT always updates both networks together; warns if
      ``False``.

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
      expectile_loss_coef: float = 1.0,
      num_train_iters: int = 20000,
      valid_freq: int = 1000,
      log_freq: int = 1000,
      logging: bool = False,
      rng: Optional[jax.Array] = None,
      *,
      is_bidirectional: Optional[bool] = None,
      use_dot_product: bool = False,
      parameterisation: Optional[Literal["twist", "correlation",
                                         "direct"]] = None,
      conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver
                                ] = _DEFAULT_CONJUGATE,
      progress_bar: bool = True,
      chunk_size: int = 100,
      checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
      checkpoint_every: int = 1000,
      checkpoint_keep: int = 3,
      mesh: Optional[jax.sharding.Mesh] = None,
      back_and_forth: Optional[bool] = None,
      num_inner_iters: int = 1,
      pos_weights: Optional[bool] = None,
      beta: Optional[float] = None,
      amortization_loss: Optional[str] = None,
      parallel_updates: bool = True,
  ):
    _warn_unused_w2_options(
        num_inner_iters=num_inner_iters,
        pos_weights=pos_weights,
        beta=beta,
        amortization_loss=amortization_loss,
        parallel_updates=parallel_updates,
    )
    if back_and_forth is not None:
      if is_bidirectional is not None and bool(is_bidirectional) != bool(
          back_and_forth
      ):
        raise ValueError(
            f"`back_and_forth={back_and_forth}` (W2NeuralDual's name) and "
            f"`is_bidirectional={is_bidirectional}` disagree; pass one."
        )
      is_bidirectional = back_and_forth
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
    )
    if conjugate_solver is not None and not isinstance(
        conjugate_solver, ott_conjugate.FenchelConjugateSolver
    ):
      raise TypeError(
          "`conjugate_solver` must be an ott `FenchelConjugateSolver` (e.g. "
          "`conjugate.FenchelConjugateLBFGS()`) or None, got "
          f"{type(conjugate_solver).__name__}."
      )
    self.cost_fn = costs.SqEuclidean() if cost_fn is None else cost_fn
    f_outputs_map = None
    if isinstance(neural_f, nn.Module):
      per_point = maps.outputs_per_point(neural_f, dim_data)
      f_outputs_map = per_point == dim_data and (
          dim_data > 1 or is_bidirectional is False
      )
    self.parameterisation, bidirectional = maps.resolve_parameterisation(
        self.cost_fn, parameterisation, is_bidirectional, use_dot_product,
        f_outputs_map
    )
    self.is_bidirectional = bidirectional
    self.use_dot_product = self.parameterisation == "correlation"
    self.expectile = float(expectile)
    self.expectile_loss_coef = float(expectile_loss_coef)
    self.progress_bar = progress_bar
    self.chunk_size = int(chunk_size)
    self.dim_data = int(dim_data)
    checks.check_positive_int("checkpoint_every", checkpoint_every)
    checks.check_positive_int("checkpoint_keep", checkpoint_keep)
    if checkpoint_dir is not None and not isinstance(
        checkpoint_dir, (str, os.PathLike)
    ):
      raise TypeError(
          "`checkpoint_dir` must be a path (str or os.PathLike), got "
          f"{type(checkpoint_dir).__name__}."
      )
    self.checkpoint_dir = checkpoint_dir
    self.checkpoint_every = int(checkpoint_every)
    self.checkpoint_keep = int(checkpoint_keep)
    self.parallel = sharding.DataParallel.create(mesh)

    if optimizer_f is None:
      optimizer_f = optax.adam(learning_rate=3e-4, b1=0.9, b2=0.9)
    if optimizer_g is None:
      optimizer_g = optax.adam(learning_rate=3e-4, b1=0.9, b2=0.9)
    if neural_f is None:
      out = dim_data if self.parameterisation == "direct" else 1
      neural_f = ott_potentials.MLP(
          dim_hidden=[128, 128, 128, 128, out], act_fn=jax.nn.elu
      )
    if neural_g is None:
      neural_g = ott_potentials.MLP(
          dim_hidden=[128, 128, 128, 128, 1], act_fn=jax.nn.elu
      )
    maps.check_networks(self.parameterisation, neural_f, neural_g, dim_data)

    # W2NeuralDual's attributes, with the values that describe what ENOT does
    # (its __init__ would store L-BFGS-specific defaults that ENOT ignores)
    self.num_train_iters = num_train_iters
    self.valid_freq = valid_freq
    self.log_freq = log_freq
    self.logging = logging
    self.conjugate_solver = conjugate_solver
    self.back_and_forth = bidirectional
    self.num_inner_iters = 1
    self.parallel_updates = True
    self.amortization_loss = "objective"
    self.pos_weights = False
    self.beta = 0.0
    self.neural_f, self.neural_g = neural_f, neural_g
    self.setup(
        utils.default_prng_key(rng), neural_f, neural_g, dim_data, optimizer_f,
        optimizer_g
    )

  def setup(
      self,
      rng: jax.Array,
      neural_f: nn.Module,
      neural_g: nn.Module,
      dim_data: int,
      optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation,
  ) -> None:
    """Initialise the networks' train states and the step functions."""
    self.model = maps.TransportModel(
        self.parameterisation, self.cost_fn, neural_f, neural_g, dim_data
    )
    rng_f, rng_g = jax.random.split(utils.default_prng_key(rng), 2)
    init = lambda module, key, tx: train_state.TrainState.create(
        apply_fn=module.apply,
        params=module.init(key, jnp.ones((1, dim_data)))["params"],
        tx=tx,
    )
    self.state = training.ENOTTrainState.create(
        init(neural_f, rng_f, optimizer_f), init(neural_g, rng_g, optimizer_g)
    )
    # one jitted step per direction, for users who drive training themselves
    self.step_fns = {
        forward: jax.jit(
            functools.partial(
                training.enot_step,
                forward=forward,
                **self.loop_config().step_kwargs,
            )
        ) for forward in (True, False)
    }
    self.train_fn = self.train_neuraldual

  def loop_config(self) -> training.LoopConfig:
    """The static configuration of the compiled training loop."""
    return training.LoopConfig.create(
        model=self.model,
        expectile=self.expectile,
        expectile_loss_coef=self.expectile_loss_coef,
        bidirectional=self.is_bidirectional,
        chunk_size=self.chunk_size,
        valid_freq=self.valid_freq,
        parallel=self.parallel,
    )

  @classmethod
  def from_geometry(
      cls,
      geom: Union[pointcloud.PointCloud, linear_problem.LinearProblem],
      **kwargs: Any,
  ) -> "ExpectileNeuralDual":
    """A solver for ``geom``: cost from ``geom.cost_fn``, dimension from points.

    Args:
      geom: An ott ``PointCloud`` or a balanced ``LinearProblem`` on one.
      kwargs: Any other argument of :class:`ExpectileNeuralDual`.

    Returns:
      The solver; train it with :meth:`fit`.
    """
    pc = geom.geom if isinstance(geom, linear_problem.LinearProblem) else geom
    if not isinstance(pc, pointcloud.PointCloud):
      raise TypeError(
          f"`geom` must be an ott `PointCloud` or a `LinearProblem` on one, "
          f"got {type(pc).__name__}."
      )
    if "cost_fn" in kwargs:
      raise ValueError(
          "`from_geometry` takes the cost from `geom.cost_fn`; build the "
          "`PointCloud` with the cost you want instead of passing `cost_fn`."
      )
    return cls(int(pc.x.shape[1]), cost_fn=pc.cost_fn, **kwargs)

  def fit(
      self,
      geom: Union[pointcloud.PointCloud, linear_problem.LinearProblem,
                  data.PointCloudStream, Callable[[jax.Array], tuple]],
      *,
      batch_size: int = 1024,
      valid_fraction: float = 0.1,
      replace: bool = True,
      rng: Optional[jax.Array] = None,
      callback: Optional[Callback_t] = None,
      resume: bool = False,
  ) -> Union[potentials.ENOTPotentials, Tuple[potentials.ENOTPotentials,
                                              Train_t]]:
    """Train on an ott geometry, a linear problem or a pure sampler.

    Batches are sampled on the device inside the fused training loop: from a
    ``PointCloud`` (uniform weights) or balanced ``LinearProblem`` (weights
    ``a``, ``b``) through a :class:`~ott_enot.data.PointCloudStream`, whose
    training split excludes the ``valid_fraction`` held out for validation;
    or from a pure function ``sampler(key) -> (x[n, d], y[n, d])`` (step
    ``k`` uses ``fold_in(key, k)``, validation ``fold_in`` of another key).
    The cost matrix is never formed.

    Args:
      geom: An ott ``PointCloud`` or a balanced ``LinearProblem`` on one, with
        the solver's cost (e.g. built by :meth:`from_geometry`); a
        ``PointCloudStream``; or a sampler function.
      batch_size: Points per batch.
      valid_fraction: Fraction of points held out for validation.
      replace: Sample with replacement.
      rng: Key of the split and the sampling; default ``jax.random.key(0)``.
      callback: As in :meth:`__call__`.
      resume: Go on from the latest checkpoint in ``checkpoint_dir`` (its
        state, step and logs). Batches are keyed by the step, so with the
        same ``geom`` and ``rng`` the resumed run equals an uninterrupted one
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
    if callable(geom) and not isinstance(geom, data.PointCloudStream):
      return self._fit_sampler(
          geom, jax.random.fold_in(key, 1), callback, resume
      )
    stream = geom if isinstance(geom, data.PointCloudStream) else (
        data.PointCloudStream.from_any(
            geom, batch_size=batch_size, valid_fraction=valid_fraction,
            replace=replace, rng=rng
        )
    )
    if stream.dim != self.dim_data:
      raise ValueError(
          f"`geom` has points of dimension {stream.dim}, but the solver was "
          f"built with dim_data={self.dim_data}."
      )
    same = stream.cost_fn is None or (
        type(stream.cost_fn) is type(self.cost_fn) and
        jax.tree.structure(stream.cost_fn) == jax.tree.structure(self.cost_fn)
    )
    if not same:
      raise ValueError(
          f"`geom.cost_fn` is {type(stream.cost_fn).__name__} but the solver "
          f"was built with {type(self.cost_fn).__name__}; build the solver "
          f"with `ExpectileNeuralDual.from_geometry(geom, ...)`."
      )
    if self.model.on_sphere:
      for name, part in (("geom.x", stream.train_source.points),
                         ("geom.y", stream.train_target.points)):
        enot_costs.check_on_sphere(name, part)
    # the cost is not needed for sampling: leave it out of the program's key
    stream = data.PointCloudStream(
        stream.train_source, stream.train_target, stream.valid_source,
        stream.valid_target
    )
    source = sources.StreamBatches(stream, jax.random.fold_in(key, 1))
    return self._finish(
        self._train(sources.DeviceFeed(source), callback, resume)
    )

  def _fit_sampler(
      self, sampler: Callable[[jax.Array], tuple], key: jax.Array,
      callback: Optional[Callback_t], resume: bool
  ):
    try:
      out = jax.eval_shape(sampler, jax.random.key(0))
    except Exception as err:  # noqa: BLE001 - report what the sampler did
      raise TypeError(
          "`geom` was taken as a sampler `key -> (x, y)` but calling it on a "
          f"PRNG key failed: {err}"
      ) from err
    shapes = [getattr(o, "shape", None) for o in out] if isinstance(
        out, (tuple, list)
    ) else None
    if (shapes is None or len(shapes) != 2 or
        any(s is None or len(s) != 2 or s[1] != self.dim_data for s in shapes)
        or shapes[0][0] != shapes[1][0]):
      raise ValueError(
          "A sampler passed to `fit` must return a pair (x, y) of arrays of "
          f"shape [n, {self.dim_data}] with the same n; got {out}."
      )
    source = sources.SamplerBatches(key, sampler)
    feed = sources.DeviceFeed(source, "The batch size of the sampler's batches")
    return self._finish(self._train(feed, callback, resume))

  def _finish(self, logs: Train_t):
    res = self.to_dual_potentials()
    return (res, logs) if self.logging else res

  @property
  def mesh(self) -> Optional[jax.sharding.Mesh]:
    """The devices training splits each batch over (:obj:`None`: one)."""
    return self.parallel.mesh

  # ott's W2NeuralDual exposes the two train states as attributes
  @property
  def state_f(self) -> train_state.TrainState:
    """Train state of the ``f`` network."""
    return self.state.state_f

  @property
  def state_g(self) -> train_state.TrainState:
    """Train state of the ``g`` network."""
    return self.state.state_g

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
    """Train and return the learned potentials.

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
        step, logs). Pass iterators positioned at the step after it: the
        training iterators at batch ``step + 1`` and the validation ones
        after the ``num_validations`` batches already used
        (:meth:`~ott_enot.PointCloudStream.loaders` takes both positions).

    Returns:
      :class:`~ott_enot.ENOTPotentials`, or ``(potentials, logs)`` if
      ``logging=True``; ``logs["train_logs"]`` has ``loss_f``, ``loss_g``,
      ``w_dist``, ``directions``, ``logs["valid_logs"]`` ``loss_f``,
      ``loss_g``, ``w_dist``.

    Raises:
      ValueError: for bad batches (the first ones before anything compiles),
        batches that do not split over the devices of ``mesh``, or an
        iterator that runs out.
      ~ott_enot.TrainingDivergedError: if the loss becomes NaN/inf.

    Whatever raises (these, a callback's error, ``KeyboardInterrupt``), the
    solver keeps the state after the last completed chunk of steps (the
    last good step on divergence): :meth:`to_dual_potentials`, saving and
    further training work on it. A new call starts a new run (step 0) from
    that state.
    """
    return self._finish(self.train_neuraldual(
        trainloader_source,
        trainloader_target,
        validloader_source,
        validloader_target,
        callback=callback,
        resume=resume,
    ))

  def train_neuraldual(
      self,
      trainloader_source: Iterator[jnp.ndarray],
      trainloader_target: Iterator[jnp.ndarray],
      validloader_source: Iterator[jnp.ndarray],
      validloader_target: Iterator[jnp.ndarray],
      callback: Optional[Callback_t] = None,
      resume: bool = False,
  ) -> Train_t:
    """Train for ``num_train_iters`` steps on the iterators; return the logs.

    Whatever raises (a bad batch, an iterator that runs out, a callback,
    ``KeyboardInterrupt``, :class:`~ott_enot.TrainingDivergedError`), the
    solver keeps the state after the last completed chunk of steps: its
    potentials can be built, saved, and trained on.
    """
    feed = sources.IteratorFeed(
        (trainloader_source, trainloader_target, validloader_source,
         validloader_target), self.dim_data, self.model.on_sphere
    )
    return self._train(feed, callback, resume)

  # W2NeuralDual's two training loops both mean "train" for ENOT
  train_neuraldual_parallel = train_neuraldual
  train_neuraldual_alternating = train_neuraldual

  def get_step_fn(self, train: bool, to_optimize: str):
    """Not available: ENOT has no W2NeuralDual step functions.

    Raises:
      NotImplementedError: use :attr:`step_fns` (``{forward: step}``, jitted
        :func:`~ott_enot.training.enot_step`) instead.
    """
    raise NotImplementedError(
        "ExpectileNeuralDual has no W2NeuralDual step functions "
        f"(get_step_fn(train={train!r}, to_optimize={to_optimize!r})); use "
        "`solver.step_fns[forward](state, x, y, step)`, the jitted "
        "`ott_enot.training.enot_step`."
    )

  def checkpointer(self) -> Optional[checkpoints.Checkpointer]:
    """The :class:`~ott_enot.checkpoints.Checkpointer` of ``checkpoint_dir``
    (``None`` without one)."""
    if self.checkpoint_dir is None:
      return None
    return checkpoints.Checkpointer(
        self.checkpoint_dir, keep=self.checkpoint_keep,
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
      state, meta = ckpt.restore(self, kind, step)
    finally:
      ckpt.close()
    self.state = state
    return meta

  def _train(self, feed: Any, callback: Optional[Callback_t],
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
    cell = training.StateCell(self.state)
    try:
      return training.train(
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
          checkpoint_meta=None if ckpt is None else {
              "signature": checkpoints.signature(self)
          },
      )
    finally:  # whatever raised: the last completed state, never a donated one
      self.state = cell.state
      if ckpt is not None:
        ckpt.close()

  def _potentials_of(
      self,
      state: training.ENOTTrainState,
      finetune_g: bool = True
  ) -> potentials.ENOTPotentials:
    return potentials.ENOTPotentials(
        state.state_f.params,
        state.state_g.params,
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
