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
import math
import numbers
from typing import Any, Iterator, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

from ott_enot import checks

__all__ = ["WeightedPoints", "PointCloudStream", "point_cloud_of"]

WEIGHT_ATOL = 1e-4


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
        cdf = jnp.cumsum(self.weights)
        u = jax.random.uniform(key, (b,), maxval=cdf[-1])
        idx = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)
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


def as_points(name: str, arr: Any) -> np.ndarray:
  arr = np.asarray(checks.check_points(name, arr))
  if not np.issubdtype(arr.dtype, np.floating):
    arr = arr.astype(np.float32)
  return arr


def as_weights(name: str, w: Any, n: int) -> Optional[np.ndarray]:
  if w is None:
    return None
  w = np.asarray(w, dtype=np.float64)
  if w.shape != (n,):
    raise ValueError(
        f"`{name}` must have shape ({n},) to match the points, got {w.shape}."
    )
  if not np.all(np.isfinite(w)) or np.any(w < 0):
    raise ValueError(f"`{name}` must be finite and non-negative.")
  total = float(w.sum())
  if abs(total - 1.0) > WEIGHT_ATOL:
    raise ValueError(
        f"`{name}` must sum to 1 (within {WEIGHT_ATOL:g}), got {total:.6g}; "
        f"normalise with `w / w.sum()`, or pass tau_a/tau_b < 1 solvers "
        f"(unbalanced OT) elsewhere: ENOT solves balanced problems."
    )
  if np.allclose(w, 1.0 / n, rtol=1e-6, atol=0.0):  # uniform, also in float32
    return None
  return w


def split_indices(
    key: jax.Array, n: int, weights: Optional[np.ndarray], fraction: float,
    name: str
) -> Tuple[np.ndarray, np.ndarray]:
  """Disjoint train / valid index sets, the valid one of ceil(frac * n)."""
  n_valid = math.ceil(fraction * n) if fraction > 0 else 0
  if n_valid >= n:
    raise ValueError(
        f"`valid_fraction={fraction}` leaves no training points in `{name}` "
        f"({n} points); use a smaller fraction."
    )
  perm = np.asarray(jax.random.permutation(key, n))
  valid, train = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
  if weights is not None and weights[train].sum() <= 0:
    raise ValueError(f"The training split of `{name}` has zero weight.")
  return train, valid


def _measure(points, weights, idx, batch_size, replace, name):
  w = None
  if weights is not None:
    w = weights[idx]
    total = w.sum()
    if total <= 0:
      raise ValueError(f"The validation split of `{name}` has zero weight.")
    w = jnp.asarray(w / total, jnp.float32)
  if not replace and batch_size > len(idx):
    raise ValueError(
        f"`batch_size={batch_size}` is larger than a split of `{name}` "
        f"({len(idx)} points) and `replace=False`; use replace=True, a "
        f"smaller batch_size or a smaller valid_fraction."
    )
  return WeightedPoints(
      jnp.asarray(points[idx]), w, batch_size, replace
  )


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
      batch_size: Points per batch, for both measures.
      valid_fraction: Fraction of each measure's points held out for
        validation, in ``[0, 1)``; the split is disjoint from training.
      replace: Sample with replacement.
      rng: Key of the split (sampling keys are given to :meth:`loaders` /
        :meth:`sample`). Default ``jax.random.key(0)``.

    Raises:
      ValueError, TypeError: for empty clouds, mismatched dimensions, NaN/inf
        points, bad weights, or a batch larger than a split without
        replacement, naming the argument.
    """
    checks.check_positive_int("batch_size", batch_size)
    if isinstance(valid_fraction, bool) or not isinstance(
        valid_fraction, numbers.Real
    ) or not 0.0 <= valid_fraction < 1.0:
      raise ValueError(
          f"`valid_fraction` must be a float in [0, 1), got {valid_fraction!r}."
      )
    x, y = as_points("x", x), as_points("y", y)
    if x.shape[1] != y.shape[1]:
      raise ValueError(
          f"`x` and `y` must have the same dimension, got {x.shape[1]} and "
          f"{y.shape[1]}."
      )
    a, b = as_weights("a", a, x.shape[0]), as_weights("b", b, y.shape[0])
    key = jax.random.key(0) if rng is None else rng
    kx, ky = jax.random.split(key)
    parts = []
    for pts, w, k, name in ((x, a, kx, "x"), (y, b, ky, "y")):
      train, valid = split_indices(k, pts.shape[0], w, valid_fraction, name)
      tr = _measure(pts, w, train, batch_size, replace, name)
      va = _measure(
          pts, w, valid, min(batch_size, len(valid)) if not replace else
          batch_size, replace, name
      ) if len(valid) else None
      parts.append((tr, va))
    (tr_x, va_x), (tr_y, va_y) = parts
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
    if not prob.is_balanced:
      raise ValueError(
          f"ENOT solves balanced OT, but the problem has tau_a={prob.tau_a}, "
          f"tau_b={prob.tau_b}; use tau_a = tau_b = 1."
      )
    if not isinstance(prob.geom, pointcloud.PointCloud):
      raise TypeError(
          f"`prob.geom` must be an ott `PointCloud`, got "
          f"{type(prob.geom).__name__}."
      )
    geom = prob.geom
    return cls.from_arrays(geom.x, geom.y, prob.a, prob.b, **kwargs)

  @classmethod
  def from_any(
      cls, data: Union[pointcloud.PointCloud, linear_problem.LinearProblem],
      **kwargs: Any
  ) -> "PointCloudStream":
    """:meth:`from_geometry` or :meth:`from_problem`, by type."""
    if isinstance(data, linear_problem.LinearProblem):
      return cls.from_problem(data, **kwargs)
    return cls.from_geometry(data, **kwargs)

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
    ``loaders(key)`` yield. Without a validation split, ``valid=True`` samples
    the training split with the validation keys.
    """
    keys = jax.random.split(key, 4)
    first = 2 if valid else 0
    measures = self._measures()
    return tuple(
        measures[first + j].sample(jax.random.fold_in(keys[first + j], index))
        for j in (0, 1)
    )

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
    keys = jax.random.split(key, 4)

    def iterate(measure: WeightedPoints, k: jax.Array,
                i: int) -> Iterator[np.ndarray]:
      while True:  # host arrays, as a data pipeline yields them
        yield from np.asarray(_draw_block(
            measure, k, jnp.asarray(i, jnp.int32), _BLOCK, index, count))
        i += _BLOCK

    firsts = (int(start), int(start), int(valid_start), int(valid_start))
    return tuple(
        iterate(m, k, i) for m, k, i in zip(self._measures(), keys, firsts)
    )

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


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _draw_block(measure: WeightedPoints, key: jax.Array, first: jnp.ndarray,
                count: int, index: int, shares: int) -> jnp.ndarray:
  """Batches ``first, ..., first + count - 1`` of ``measure`` keyed by
  ``fold_in(key, i)`` (as :meth:`PointCloudStream.sample_step`), rows of
  share ``index`` of ``shares``: ``[count, batch / shares, d]``."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(
      first + jnp.arange(count))
  share = measure.batch_size // shares
  return jax.vmap(measure.sample)(keys)[:, index * share:(index + 1) * share]


def point_cloud_of(
    geom: Union[pointcloud.PointCloud, linear_problem.LinearProblem]
) -> pointcloud.PointCloud:
  """The ``PointCloud`` of a ``PointCloud`` or of a ``LinearProblem`` on one.

  Raises:
    TypeError: for anything else.
  """
  pc = geom.geom if isinstance(geom, linear_problem.LinearProblem) else geom
  if not isinstance(pc, pointcloud.PointCloud):
    raise TypeError(
        f"`geom` must be an ott `PointCloud` or a `LinearProblem` on one, got "
        f"{type(pc).__name__}; or pass points: `fit(x, y)`."
    )
  return pc
