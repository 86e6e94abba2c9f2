r"""The stream core: what every stream of batches shares.

:class:`~ott_enot.data.PointCloudStream` (one OT problem) and
:class:`~ott_enot.data.ConditionalStream` (a family of problems indexed by a
condition) are built and sampled by the same pieces, each decided here once:

- the points and weights of a measure, checked (:func:`as_points`,
  :func:`as_weights`), and of an ott problem (:func:`problem_arrays`: a
  ``PointCloud`` or a *balanced* ``LinearProblem``);
- the disjoint training and validation splits of a measure
  (:func:`split_measure`), with their weights renormalised;
- inverse-CDF sampling (:func:`inverse_cdf`), :math:`O(\text{batch} \cdot
  \log n)` time and memory, for one measure or for a padded family of them;
- the one key schedule (:func:`batch_keys`): batch ``index`` of a split
  (:data:`TRAIN` or :data:`VALID`) is drawn with ``fold_in(fold_in(key,
  split), index)``, split into the keys of the rows' conditions, the source
  and the target. A user's sampler ``key -> batch`` gets the same
  ``fold_in(fold_in(key, split), index)``.
"""
import math
import numbers
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

from ott_enot import checks

__all__ = [
    "TRAIN",
    "VALID",
    "WEIGHT_ATOL",
    "batch_key",
    "batch_keys",
    "as_points",
    "as_weights",
    "point_cloud_of",
    "problem_arrays",
    "Split",
    "check_valid_fraction",
    "split_indices",
    "split_measure",
    "inverse_cdf",
]

#: The splits of a stream, as the key schedule numbers them.
TRAIN, VALID = 0, 1
#: Largest :math:`|\sum_i w_i - 1|` accepted for weights.
WEIGHT_ATOL = 1e-4


def batch_key(key: jax.Array, split: int, index: Any) -> jax.Array:
  """The key of batch ``index`` of ``split``: ``fold_in(fold_in(key, split),
  index)`` (what a user's sampler is called with)."""
  return jax.random.fold_in(jax.random.fold_in(key, split), index)


def batch_keys(key: jax.Array, split: int,
               index: Any) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """``(cond_key, source_key, target_key)`` of batch ``index`` of ``split``:
  :func:`batch_key` split in three (the rows' conditions, the source
  points, the target points)."""
  k_cond, k_source, k_target = jax.random.split(batch_key(key, split, index), 3)
  return k_cond, k_source, k_target


def as_points(name: str, arr: Any) -> np.ndarray:
  """``arr`` checked as points ``[n, d]`` (:func:`ott_enot.checks.check_points`),
  as a floating host array."""
  arr = np.asarray(checks.check_points(name, arr))
  if not np.issubdtype(arr.dtype, np.floating):
    arr = arr.astype(np.float32)
  return arr


def as_weights(name: str, w: Any, n: int) -> Optional[np.ndarray]:
  """Weights ``[n]`` checked (finite, non-negative, summing to 1);
  :obj:`None` for uniform weights (also when given uniform ones).

  Raises:
    ValueError: naming ``name``, for another shape, negative or non-finite
      entries, or a sum other than 1.
  """
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


def point_cloud_of(geom: Any) -> pointcloud.PointCloud:
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


def problem_arrays(
    problem: Any, name: str = "geom"
) -> Tuple[Any, Any, Optional[Any], Optional[Any]]:
  """``(x, y, a, b)`` of an ott ``PointCloud`` (uniform weights: ``a = b =
  None``) or of a balanced ``LinearProblem`` on one (its weights).

  Raises:
    TypeError: for anything else.
    ValueError: naming ``name``, for an unbalanced problem.
  """
  pc = point_cloud_of(problem)
  if not isinstance(problem, linear_problem.LinearProblem):
    return pc.x, pc.y, None, None
  if not problem.is_balanced:
    raise ValueError(
        f"`{name}` is unbalanced (tau_a={problem.tau_a}, "
        f"tau_b={problem.tau_b}): ENOT solves balanced OT; use tau_a = "
        f"tau_b = 1."
    )
  return pc.x, pc.y, problem.a, problem.b


#: Points per validation batch that the package draws itself (uniform point
#: clouds: distinct held-out points, at most the validation split; samplers:
#: several draws): the fit's resolution grows with the sample, and training
#: returns the best validation's map (ENOT's fit on halves of 256 points
#: varies by tens of per cent from batch to batch).
VALID_POINTS = 2048


class Split(NamedTuple):
  """One split of a measure: ``points [n, d]`` and ``weights [n]`` summing to
  1 (:obj:`None`: uniform)."""
  points: np.ndarray
  weights: Optional[np.ndarray]


def check_valid_fraction(valid_fraction: Any) -> float:
  """``valid_fraction`` as a float in ``[0, 1)``, else a ``ValueError``."""
  if isinstance(valid_fraction, bool) or not isinstance(
      valid_fraction, numbers.Real
  ) or not 0.0 <= valid_fraction < 1.0:
    raise ValueError(
        f"`valid_fraction` must be a float in [0, 1), got {valid_fraction!r}."
    )
  return float(valid_fraction)


def split_indices(
    key: jax.Array, n: int, weights: Optional[np.ndarray], fraction: float,
    name: str
) -> Tuple[np.ndarray, np.ndarray]:
  """Disjoint train / valid index sets, the valid one of ``ceil(fraction *
  n)`` points drawn with ``key``.

  Raises:
    ValueError: naming ``name``, if no training point is left.
  """
  n_valid = math.ceil(fraction * n) if fraction > 0 else 0
  if n_valid >= n:
    raise ValueError(
        f"`valid_fraction={fraction}` leaves no training points in `{name}` "
        f"({n} points); use a smaller fraction."
    )
  perm = np.asarray(jax.random.permutation(key, n))
  return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def split_measure(
    key: jax.Array, points: np.ndarray, weights: Optional[np.ndarray],
    fraction: float, name: str
) -> Tuple[Split, Optional[Split]]:
  """The training and validation splits of a measure (:func:`split_indices`),
  each with its weights renormalised; :obj:`None` for an empty validation
  split.

  Raises:
    ValueError: naming ``name``, for a split of zero weight.
  """
  parts = []
  for what, idx in zip(("training", "validation"),
                       split_indices(key, points.shape[0], weights, fraction,
                                     name)):
    if not len(idx):
      parts.append(None)
      continue
    w = None
    if weights is not None:
      total = weights[idx].sum()
      if total <= 0:
        raise ValueError(f"The {what} split of `{name}` has zero weight.")
      w = weights[idx] / total
    parts.append(Split(points[idx], w))
  return parts[0], parts[1]


def inverse_cdf(cdf: jnp.ndarray, which: jnp.ndarray,
                u: jnp.ndarray) -> jnp.ndarray:
  r"""Inverse-CDF sampling of rows of a padded family of measures.

  For row ``i``: the number of entries of ``cdf[which_i]`` that are at most
  ``u_i`` (``jnp.searchsorted(..., side="right")``), found by binary search
  in :math:`O(\log n)` gathers of one entry per row, so that nothing of size
  ``rows x n`` is formed.

  Args:
    cdf: ``[K, n]``, each measure's cumulative weights (non-decreasing).
    which: ``int[b]``, the measure of each row.
    u: ``[b]``, uniform draws on ``[0, cdf[which, -1])``.

  Returns:
    ``int32[b]``, indices in ``[0, n]`` (``n`` only if ``u`` reaches the
    total; clip to the measure's last point).
  """
  n = cdf.shape[1]
  pos = jnp.zeros(which.shape, jnp.int32)
  step = 1 << (n.bit_length() - 1)  # the largest power of two <= n
  while step:
    cand = pos + step
    inside = cand <= n
    below = cdf[which, jnp.minimum(cand, n) - 1] <= u
    pos = jnp.where(inside & below, cand, pos)
    step >>= 1
  return pos
