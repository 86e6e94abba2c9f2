r"""Training streams from ott geometries and linear problems.

A :class:`PointCloudStream` holds the points and weights of both measures of
an ott :class:`~ott.geometry.pointcloud.PointCloud` (uniform weights) or a
balanced :class:`~ott.problems.linear.linear_problem.LinearProblem` (weights
``a``, ``b``), split into disjoint training and validation parts. It gives

- :meth:`PointCloudStream.loaders`: the four iterators that
  :class:`~ott_enot.ExpectileNeuralDual` takes, and
- :meth:`PointCloudStream.sample`: the same sampling as a pure function
  ``(stream, key) -> (x[batch, d], y[batch, d])``, so that a fused training
  loop samples on the device. The stream is a pytree whose leaves are the
  data, so pass it as an argument to jitted code rather than closing over it.

Sampling costs :math:`O(\text{batch} \cdot \log n)` with replacement (inverse
CDF on the cumulative weights) and :math:`O(n)` without (Gumbel top-k, no
point twice in a batch). Memory is :math:`O(n + m)`: the :math:`n \times m`
cost matrix is never formed.
"""
import functools
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

from ott_enot import checks
from ott_enot.data import sampling
from ott_enot.data.sampling import as_points, as_weights

__all__ = ["WeightedPoints", "PointCloudStream"]


@jtu.register_pytree_node_class
class WeightedPoints:
  r"""One discrete measure :math:`\sum_i w_i \delta_{x_i}` and its sampler.

  Args:
    points: Array ``[n, d]``.
    weights: Array ``[n]`` summing to 1, or :obj:`None` for uniform weights.
    batch_size: Points per batch.
    replace: Draw with replacement (i.i.d. from the weights) or without (no
      point twice in a batch).
  """

  def __init__(
      self,
      points: jnp.ndarray,
      weights: Optional[jnp.ndarray],
      batch_size: int,
      replace: bool = True,
  ):
    self.points = points
    self.weights = weights
    self.batch_size = batch_size
    self.replace = replace

  @property
  def size(self) -> int:
    """Number of points :math:`n`."""
    return self.points.shape[0]

  def sample(self, key: jax.Array) -> jnp.ndarray:
    """A batch ``[batch_size, d]`` drawn according to the weights (pure)."""
    n, b = self.size, self.batch_size
    if self.replace:
      if self.weights is None:
        idx = jax.random.randint(key, (b,), 0, n)
      else:
        cdf = jnp.cumsum(self.weights)[None]
        u = jax.random.uniform(key, (b,), maxval=cdf[0, -1])
        which = jnp.zeros((b,), jnp.int32)
        idx = jnp.minimum(sampling.inverse_cdf(cdf, which, u), n - 1)
    else:
      logits = (
          jnp.zeros(n) if self.weights is None else
          jnp.where(self.weights > 0, jnp.log(self.weights), -jnp.inf)
      )
      _, idx = jax.lax.top_k(logits + jax.random.gumbel(key, (n,)), b)
    return self.points[idx]

  def tree_flatten(self):  # noqa: D102
    return (self.points, self.weights), (self.batch_size, self.replace)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    return cls(*children, *aux_data)


def _measure(split: Optional[sampling.Split], batch_size: int, replace: bool,
             name: str) -> Optional[WeightedPoints]:
  if split is None:
    return None
  if not replace and batch_size > len(split.points):
    raise ValueError(
        f"`batch_size={batch_size}` is larger than a split of `{name}` "
        f"({len(split.points)} points) and `replace=False`; use replace=True, "
        f"a smaller batch_size or a smaller valid_fraction."
    )
  weights = None if split.weights is None else jnp.asarray(
      split.weights, jnp.float32)
  return WeightedPoints(jnp.asarray(split.points), weights, batch_size, replace)



def _validation_batch(valid: Sequence[Optional[sampling.Split]],
                      batch_size: int, replace: bool
                     ) -> Tuple[List[int], bool]:
  """The size of each measure's validation batches, and whether they are
  drawn with replacement.

  Uniform validation splits give batches of distinct points, as many as
  both splits hold up to :data:`~ott_enot.data.sampling.VALID_POINTS` (a
  whole multiple of ``batch_size``, so that they split over the devices as
  training batches do): a sample drawn with replacement from a small split repeats points,
  and its halves share them, which shrinks the resampling floor. Weighted
  splits, or none: ``batch_size`` points (fewer without replacement from a
  smaller split), drawn as training draws.
  """
  if any(v is None or v.weights is not None for v in valid) or min(
      len(v.points) for v in valid) < batch_size:
    return [batch_size if replace or v is None else min(
        batch_size, len(v.points)) for v in valid], replace
  room = min(len(v.points) for v in valid)
  wanted = min(room, max(batch_size, sampling.VALID_POINTS))
  return [batch_size * (wanted // batch_size)] * len(valid), False


@jtu.register_pytree_node_class
class PointCloudStream:
  r"""Training and validation samplers for both measures of an OT problem.

  Build it with :meth:`from_geometry` (a
  :class:`~ott.geometry.pointcloud.PointCloud`, uniform weights) or
  :meth:`from_problem` (a balanced
  :class:`~ott.problems.linear.linear_problem.LinearProblem`), or directly
  from arrays with :meth:`from_arrays`.

  The stream holds the points only: the cost is the solver's, checked
  against ``geom.cost_fn`` by :meth:`~ott_enot.ExpectileNeuralDual.fit`.

  Args:
    train_source: :class:`WeightedPoints` of the source's training split.
    train_target: Same for the target.
    valid_source: Source validation split (:obj:`None` without validation).
    valid_target: Target validation split.
  """

  def __init__(
      self,
      train_source: WeightedPoints,
      train_target: WeightedPoints,
      valid_source: Optional[WeightedPoints],
      valid_target: Optional[WeightedPoints],
  ):
    self.train_source = train_source
    self.train_target = train_target
    self.valid_source = valid_source
    self.valid_target = valid_target

  @property
  def dim(self) -> int:
    """Dimension :math:`d` of the points."""
    return self.train_source.points.shape[1]

  @classmethod
  def from_arrays(
      cls,
      x: Any,
      y: Any,
      a: Any = None,
      b: Any = None,
      *,
      batch_size: int = 1024,
      valid_fraction: float = 0.1,
      replace: bool = True,
      rng: Optional[jax.Array] = None,
  ) -> "PointCloudStream":
    """Stream from points ``x [n, d]``, ``y [m, d]`` and weights ``a``, ``b``.

    Args:
      x: Source points ``[n, d]``.
      y: Target points ``[m, d]``.
      a: Source weights ``[n]`` summing to 1, :obj:`None` for uniform.
      b: Target weights ``[m]``.
      batch_size: Points per training batch, for both measures.
      valid_fraction: Fraction of each measure's points held out for
        validation, in ``[0, 1)``; the split is disjoint from training.
        Validation batches of uniform clouds hold distinct points, up to
        :data:`~ott_enot.data.sampling.VALID_POINTS` (a multiple of
        ``batch_size``, at most the smaller split); of weighted clouds,
        ``batch_size`` points drawn as training draws.
      replace: Sample training batches with replacement.
      rng: Key of the split (sampling keys are given to :meth:`loaders` /
        :meth:`sample`). Default ``jax.random.key(0)``.

    Raises:
      ValueError, TypeError: for empty clouds, mismatched dimensions, NaN/inf
        points, bad weights, or a batch larger than a split without
        replacement, naming the argument.
    """
    checks.check_positive_int("batch_size", batch_size)
    valid_fraction = sampling.check_valid_fraction(valid_fraction)
    x, y = as_points("x", x), as_points("y", y)
    if x.shape[1] != y.shape[1]:
      raise ValueError(
          f"`x` and `y` must have the same dimension, got {x.shape[1]} and "
          f"{y.shape[1]}."
      )
    a, b = as_weights("a", a, x.shape[0]), as_weights("b", b, y.shape[0])
    key = jax.random.key(0) if rng is None else rng
    kx, ky = jax.random.split(key)
    splits = [sampling.split_measure(k, pts, w, valid_fraction, name)
              for pts, w, k, name in ((x, a, kx, "x"), (y, b, ky, "y"))]
    sizes, valid_replace = _validation_batch(
        [valid for _, valid in splits], batch_size, replace)
    (tr_x, va_x), (tr_y, va_y) = [
        (_measure(train, batch_size, replace, name),
         _measure(valid, size, valid_replace, name))
        for (train, valid), name, size in zip(splits, ("x", "y"), sizes)]
    return cls(tr_x, tr_y, va_x, va_y)

  @classmethod
  def from_geometry(
      cls, geom: pointcloud.PointCloud, **kwargs: Any
  ) -> "PointCloudStream":
    """Stream from a :class:`~ott.geometry.pointcloud.PointCloud` (uniform).

    ``kwargs`` are those of :meth:`from_arrays`. Only ``geom.x`` and
    ``geom.y`` are read; the cost matrix is never formed.
    """
    if not isinstance(geom, pointcloud.PointCloud):
      raise TypeError(
          f"`geom` must be an ott `PointCloud` (ENOT needs the points), got "
          f"{type(geom).__name__}."
      )
    return cls.from_arrays(geom.x, geom.y, **kwargs)

  @classmethod
  def from_problem(
      cls, prob: linear_problem.LinearProblem, **kwargs: Any
  ) -> "PointCloudStream":
    """Stream from a balanced ``LinearProblem`` on a ``PointCloud``.

    Raises:
      ValueError: if the problem is unbalanced (``tau_a`` or ``tau_b`` < 1).
    """
    if not isinstance(prob, linear_problem.LinearProblem):
      raise TypeError(
          f"`prob` must be an ott `LinearProblem`, got {type(prob).__name__}."
      )
    return cls.from_arrays(*sampling.problem_arrays(prob, "prob"), **kwargs)

  @classmethod
  def from_any(
      cls, data: Union[pointcloud.PointCloud, linear_problem.LinearProblem],
      **kwargs: Any
  ) -> "PointCloudStream":
    """:meth:`from_geometry` or :meth:`from_problem`, by type."""
    return cls.from_arrays(*sampling.problem_arrays(data), **kwargs)

  def check_domain(self, domain: str) -> None:
    """Check every split's points for ``domain`` (unit vectors on the
    sphere; shapes and NaN/inf were checked when the stream was built).

    Raises:
      ValueError: naming the split, for points off the sphere.
    """
    if domain == "euclidean":
      return
    for name, part in zip(
        ("x (training split)", "y (training split)", "x (validation split)",
         "y (validation split)"), self._measures()
    ):
      checks.check_points(name, part.points, domain=domain)

  def sample(
      self, key: jax.Array, valid: bool = False
  ) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """One pair of batches ``(x[batch, d], y[batch, d])`` drawn with ``key``
    (pure, jittable).

    One independent draw: the source batch with ``split(key)[0]``, the
    target batch with ``split(key)[1]``. :meth:`sample_step` and
    :meth:`loaders` key their ``i``-th batches differently (one key per
    measure and split, folded with ``i``), so ``sample(key)`` is not their
    first batch.

    Args:
      key: PRNG key.
      valid: Sample the validation split instead of the training split.

    Returns:
      ``(x, y)``, each ``[batch_size, d]``.

    Raises:
      ValueError: for ``valid=True`` on a stream without a validation split.
    """
    src, tgt = (
        (self.valid_source, self.valid_target) if valid else
        (self.train_source, self.train_target)
    )
    if src is None:
      raise ValueError(
          "This stream has no validation split; build it with "
          "valid_fraction > 0."
      )
    kx, ky = jax.random.split(key)
    return src.sample(kx), tgt.sample(ky)

  def _measures(self) -> Tuple[WeightedPoints, ...]:
    return (
        self.train_source,
        self.train_target,
        self.valid_source or self.train_source,
        self.valid_target or self.train_target,
    )

  def sample_step(
      self, key: jax.Array, index: jnp.ndarray, valid: bool = False
  ) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """The ``index``-th pair of batches of :meth:`loaders` (pure, jittable).

    A fused training loop calls this on the device with the step number (or
    the validation count) and gets the same batches as the iterators of
    ``loaders(key)`` yield: the source and target batches are drawn with the
    source and target keys of :func:`ott_enot.data.sampling.batch_keys`.
    Without a validation split, ``valid=True`` samples the training split
    with the validation keys.

    Args:
      key: The stream's key (``rng`` of :meth:`loaders`).
      index: The batch's number ``i`` (a traced integer in a fused loop).
      valid: The validation split's ``i``-th batches instead.

    Returns:
      ``(x, y)``, each ``[batch_size, d]``.
    """
    split = sampling.VALID if valid else sampling.TRAIN
    _, k_source, k_target = sampling.batch_keys(key, split, index)
    source, target = self._measures()[2 * split:2 * split + 2]
    return source.sample(k_source), target.sample(k_target)

  def valid_step(self, key: jax.Array,
                 index: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """The ``index``-th validation pair of batches (``sample_step(key,
    index, valid=True)``).

    Args:
      key: The stream's key.
      index: The validation's number.

    Returns:
      ``(x, y)``, each ``[batch_size, d]``.
    """
    return self.sample_step(key, index, valid=True)

  @property
  def dim_cond(self) -> int:
    """Always 0 (the batches carry no condition)."""
    return 0

  @property
  def validation_groups(self) -> None:
    """:obj:`None`: one validation batch, not one per condition."""
    return None

  def loaders(
      self,
      rng: Optional[jax.Array] = None,
      start: int = 0,
      valid_start: int = 0,
      *,
      process_index: Optional[int] = None,
      process_count: Optional[int] = None,
  ) -> Tuple[Iterator[np.ndarray], ...]:
    """The four iterators :class:`~ott_enot.ExpectileNeuralDual` takes.

    ``(train_source, train_target, valid_source, valid_target)``, infinite and
    deterministic for ``rng`` (default ``jax.random.key(0)``); the ``i``-th
    batches are those of ``sample_step(rng, i)``. Without a validation split,
    the validation iterators sample the training split.

    With several processes (:func:`jax.distributed.initialize`), each
    process's iterators yield its share of every batch: rows
    ``[p * b / P, (p + 1) * b / P)`` of the batch of ``b`` points, for
    process ``p`` of ``P``, the local part that a mesh over all processes
    assembles into the global batch.

    Args:
      rng: Key of the sampling.
      start: Index of the first training batch: to resume a run from a
        checkpoint of step ``k``, ``k + 1``.
      valid_start: Index of the first validation batch: to resume, the
        checkpoint's ``num_validations``.
      process_index: Whose share to yield; default
        :func:`jax.process_index`.
      process_count: Into how many shares a batch is split; default
        :func:`jax.process_count` (1: whole batches).

    Returns:
      ``(train_source, train_target, valid_source, valid_target)``,
      infinite iterators of numpy batches ``[batch_size / P, d]``.

    Raises:
      ValueError: if a batch does not split into ``process_count`` equal
        shares, or ``process_index`` is not one of them.
    """
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    if count < 1 or not 0 <= index < count:
      raise ValueError(
          f"`process_index` must be in [0, `process_count`), with "
          f"`process_count` >= 1; got {index} and {count}."
      )
    for measure in self._measures():
      if measure.batch_size % count:
        raise ValueError(
            f"The batch size {measure.batch_size} does not split into "
            f"{count} equal shares (one per process): use a multiple of "
            f"{count}."
        )
    key = jax.random.key(0) if rng is None else rng

    def iterate(j: int, i: int) -> Iterator[np.ndarray]:
      measure, split, role = self._measures()[j], j // 2, 1 + j % 2
      while True:  # host arrays, as a data pipeline yields them
        yield from np.asarray(_draw_block(
            measure, key, jnp.asarray(i, jnp.int32), _BLOCK, split, role,
            index, count))
        i += _BLOCK

    firsts = (int(start), int(start), int(valid_start), int(valid_start))
    return tuple(iterate(j, i) for j, i in enumerate(firsts))

  def tree_flatten(self):  # noqa: D102
    return (
        self.train_source, self.train_target, self.valid_source,
        self.valid_target
    ), None

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del aux_data
    return cls(*children)


#: Batches :meth:`PointCloudStream.loaders` draws per dispatch.
_BLOCK = 64


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _draw_block(measure: WeightedPoints, key: jax.Array, first: jnp.ndarray,
                count: int, split: int, role: int, index: int,
                shares: int) -> jnp.ndarray:
  """Batches ``first, ..., first + count - 1`` of ``measure`` of ``split``,
  each drawn with key ``role`` of :func:`~ott_enot.data.sampling.batch_keys`
  (as :meth:`PointCloudStream.sample_step`), rows of share ``index`` of
  ``shares``: ``[count, batch / shares, d]``."""
  keys = jax.vmap(lambda i: sampling.batch_keys(key, split, i)[role])(
      first + jnp.arange(count))
  share = measure.batch_size // shares
  return jax.vmap(measure.sample)(keys)[:, index * share:(index + 1) * share]
