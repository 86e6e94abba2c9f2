r"""A family of OT problems indexed by conditions, sampled on the device.

A :class:`ConditionalStream` holds ``K`` pairs of point clouds (one ott
``PointCloud`` or balanced ``LinearProblem`` per *condition*), each with its
condition vector :math:`c_j \in \mathbb{R}^k`, split into disjoint training
and validation parts. A training batch has rows of several conditions: row
:math:`i` draws a condition :math:`j_i`, then :math:`x_i` from the source
and :math:`y_i` from the target *of that condition* (by their weights ``a``,
``b``), so :math:`(x_i, y_i, c_{j_i})` always belong together, as ENOT's
per-row terms need. Conditions are drawn

- ``"balanced"`` (the default): uniformly over the trained conditions, so
  that every condition's map gets the same share of the steps, however many
  points it has (a small condition is not drowned out, and the map's
  quality does not vary with the conditions' sizes, which is what lets it
  interpolate between them); or
- ``"proportional"``: in proportion to the conditions' numbers of (training
  source) points, as if the conditions' data were pooled.

With unlimited capacity both give the same maps (each condition's terms are
its own expectations); they differ in where a finite network spends its
capacity. ``holdout`` conditions are never drawn for training: all their
points serve validation, reported per condition beside the trained ones.

Clouds of different sizes are padded to one array ``[K, n_max, d]``;
sampling is by inverse CDF on each condition's cumulative weights
(:math:`O(\text{batch} \cdot \log n)`), with replacement.
"""
import numbers
from typing import Any, Dict, Hashable, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct
from ott.problems.linear import linear_problem

from ott_enot import checks
from ott_enot import data as data_lib

__all__ = ["PaddedClouds", "ConditionalStream", "condition_table"]

SAMPLING = ("balanced", "proportional")


class PaddedClouds(struct.PyTreeNode):
  """``K`` weighted point clouds padded to one array.

  Attributes:
    points: ``[K, n_max, d]``.
    cdf: ``[K, n_max]``, each condition's cumulative weights (1 from its
      last point on).
    counts: ``int32[K]``, each condition's number of points.
  """
  points: jnp.ndarray
  cdf: jnp.ndarray
  counts: jnp.ndarray

  @classmethod
  def create(cls, clouds: Sequence[Tuple[np.ndarray, np.ndarray]]
            ) -> "PaddedClouds":
    """From ``[(points[n_j, d], weights[n_j]), ...]`` (weights sum to 1)."""
    n_max = max(p.shape[0] for p, _ in clouds)
    dim = clouds[0][0].shape[1]
    points = np.zeros((len(clouds), n_max, dim), clouds[0][0].dtype)
    cdf = np.ones((len(clouds), n_max), np.float32)
    for j, (p, w) in enumerate(clouds):
      points[j, :len(p)] = p
      points[j, len(p):] = p[-1]
      cdf[j, :len(p)] = np.cumsum(w) / np.sum(w)
    counts = np.asarray([len(p) for p, _ in clouds], np.int32)
    return cls(jnp.asarray(points), jnp.asarray(cdf), jnp.asarray(counts))

  def sample(self, key: jax.Array, which: jnp.ndarray) -> jnp.ndarray:
    """One point of condition ``which[i]`` per row, ``[b] -> [b, d]``."""
    u = jax.random.uniform(key, which.shape)
    idx = jax.vmap(
        lambda cdf, v: jnp.searchsorted(cdf, v, side="right")
    )(self.cdf[which], u)
    idx = jnp.minimum(idx, self.counts[which] - 1)
    return self.points[which, idx]


def condition_table(
    labels: Sequence[Hashable], conditions: Optional[Mapping[Hashable, Any]],
    dim_cond: Optional[int] = None
) -> np.ndarray:
  """The condition vectors of ``labels``, ``float32[K, k]``.

  ``conditions`` maps each label to its vector (a number is a vector of one);
  without it, labels that are numbers are their own one-dimensional
  conditions and other labels get one-hot vectors (which cannot generalise
  to unseen conditions: see :meth:`ConditionalStream.from_problems`).

  Raises:
    ValueError: for a label without a vector, vectors of different or
      wrong dimension (``dim_cond``), NaN/inf, or labels whose vectors
      coincide.
  """
  if conditions is None:
    if all(isinstance(l, numbers.Real) and not isinstance(l, bool)
           for l in labels):
      table = np.asarray([[float(l)] for l in labels], np.float32)
    else:
      table = np.eye(len(labels), dtype=np.float32)
  else:
    missing = [l for l in labels if l not in conditions]
    if missing:
      raise ValueError(
          f"`conditions` has no vector for the labels {missing}: give every "
          f"label of the data its condition vector."
      )
    rows = []
    for label in labels:
      v = np.atleast_1d(np.asarray(conditions[label], np.float32))
      if v.ndim != 1:
        raise ValueError(
            f"`conditions[{label!r}]` has shape {v.shape}: a condition is "
            f"one vector [k]."
        )
      rows.append(v)
    if len({r.shape for r in rows}) != 1:
      raise ValueError(
          f"The condition vectors have different dimensions "
          f"{sorted({r.shape[0] for r in rows})}: they must all have the "
          f"solver's dim_cond."
      )
    table = np.stack(rows)
  if dim_cond is not None:
    checks.check_conditions("conditions", table, dim_cond)
  elif not np.all(np.isfinite(table)):
    raise ValueError("`conditions` contains NaN or inf entries.")
  _, first = np.unique(table, axis=0, return_index=True)
  if len(first) != len(labels):
    raise ValueError(
        "Two labels have the same condition vector: the model could not "
        "tell their maps apart; give each condition its own vector."
    )
  return table


def is_one_hot(table: np.ndarray) -> bool:
  """Whether the conditions are distinct one-hot vectors."""
  return (table.shape[1] == table.shape[0] and
          bool(np.all((table == 0) | (table == 1))) and
          bool(np.all(table.sum(axis=1) == 1)))


def _split_cloud(key, points, weights, fraction, name):
  """Training and validation ``(points, weights)`` of one cloud."""
  train, valid = data_lib.split_indices(key, points.shape[0], weights,
                                        fraction, name)
  part = lambda idx: (
      points[idx],
      np.full(len(idx), 1.0 / len(idx)) if weights is None else
      weights[idx] / weights[idx].sum()
  )
  if len(valid) and weights is not None and weights[valid].sum() <= 0:
    raise ValueError(f"The validation split of `{name}` has zero weight.")
  return part(train), part(valid) if len(valid) else part(train)


class ConditionalStream(struct.PyTreeNode):
  """Training and validation samplers of a family of OT problems.

  Build it with :meth:`from_problems`. A pytree (the points are its leaves;
  sizes, labels and which conditions train are static), so that the fused
  training loop samples it on the device.

  Attributes:
    train_source: :class:`PaddedClouds` of the sources' training splits.
    train_target: Same for the targets.
    valid_source: The sources' validation splits (a held-out condition:
      all its points).
    valid_target: Same for the targets.
    conditions: ``[K, k]``, the condition vectors.
    train_probs: ``[K]``, how often a training row is of each condition
      (0 for held-out conditions).
    batch_size: Rows of a training batch.
    valid_batch_size: Rows of each condition's validation batch.
    labels: The conditions' labels, in order.
    trained: Whether each condition is trained on (not held out).
  """
  train_source: PaddedClouds
  train_target: PaddedClouds
  valid_source: PaddedClouds
  valid_target: PaddedClouds
  conditions: jnp.ndarray
  train_probs: jnp.ndarray
  batch_size: int = struct.field(pytree_node=False)
  valid_batch_size: int = struct.field(pytree_node=False)
  labels: Tuple[Hashable, ...] = struct.field(pytree_node=False)
  trained: Tuple[bool, ...] = struct.field(pytree_node=False)

  @property
  def dim(self) -> int:
    """Dimension :math:`d` of the points."""
    return self.train_source.points.shape[-1]

  @property
  def dim_cond(self) -> int:
    """Dimension :math:`k` of the conditions."""
    return self.conditions.shape[-1]

  @property
  def table(self) -> Dict[Hashable, np.ndarray]:
    """``{label: condition vector}``."""
    table = np.asarray(self.conditions)
    return {l: table[j] for j, l in enumerate(self.labels)}

  @classmethod
  def from_problems(
      cls,
      problems: Mapping[Hashable, Any],
      conditions: Optional[Mapping[Hashable, Any]] = None,
      *,
      dim_cond: Optional[int] = None,
      batch_size: int = 1024,
      valid_batch_size: Optional[int] = None,
      valid_fraction: float = 0.1,
      sampling: str = "balanced",
      holdout: Sequence[Hashable] = (),
      rng: Optional[jax.Array] = None,
  ) -> "ConditionalStream":
    """A stream from ``{label: PointCloud | LinearProblem | (x, y)}``.

    Args:
      problems: Each condition's OT problem: an ott ``PointCloud`` (uniform
        weights), a balanced ``LinearProblem`` (its weights ``a``, ``b``
        are respected) or a pair of arrays ``(x[n, d], y[m, d])``.
      conditions: ``{label: vector [k]}`` (see :func:`condition_table` for
        the default).
      dim_cond: The dimension the vectors must have (the solver's).
      batch_size: Rows of a training batch (of mixed conditions).
      valid_batch_size: Rows of each condition's validation batch (drawn
        with replacement); default ``min(batch_size, 512)`` or the smallest
        validation split, whichever is smaller.
      valid_fraction: Fraction of each trained condition's points held out
        for validation.
      sampling: ``"balanced"`` or ``"proportional"`` (module docstring).
      holdout: Labels never trained on, kept for validation.
      rng: Key of the splits; default ``jax.random.key(0)``.

    Raises:
      ValueError, TypeError: naming the label, for empty data, a label of
        ``holdout`` that is not in ``problems``, nothing left to train on,
        points of another dimension, unbalanced problems, bad weights or
        condition vectors.
    """
    if not isinstance(problems, Mapping) or not problems:
      raise ValueError(
          "`problems` must be a non-empty dict {label: PointCloud | "
          "LinearProblem | (x, y)}, one OT problem per condition."
      )
    checks.check_positive_int("batch_size", batch_size)
    if sampling not in SAMPLING:
      raise ValueError(
          f"`sampling` must be one of {SAMPLING}, got {sampling!r}."
      )
    labels = tuple(problems)
    holdout = tuple(holdout)
    unknown = [l for l in holdout if l not in problems]
    if unknown:
      raise ValueError(
          f"`holdout` names {unknown}, which are not labels of the data "
          f"{list(labels)}."
      )
    if len(set(holdout)) == len(labels):
      raise ValueError(
          "`holdout` holds out every condition: keep at least one to train "
          "on."
      )
    table = condition_table(labels, conditions, dim_cond)
    if valid_batch_size is not None:
      checks.check_positive_int("valid_batch_size", valid_batch_size)
    key = jax.random.key(0) if rng is None else rng
    parts, dims = [], set()
    for j, label in enumerate(labels):
      x, y, a, b = _arrays(label, problems[label])
      dims.add(x.shape[1])
      kx, ky = jax.random.split(jax.random.fold_in(key, j))
      fraction = 0.0 if label in holdout else valid_fraction
      parts.append((
          _split_cloud(kx, x, a, fraction, f"problems[{label!r}] source"),
          _split_cloud(ky, y, b, fraction, f"problems[{label!r}] target"),
      ))
    if len(dims) != 1:
      raise ValueError(
          f"The conditions' points have different dimensions {sorted(dims)}."
      )
    if valid_batch_size is None:  # no more rows than the smallest split
      smallest = min(len(p[k][1][0]) for p in parts for k in (0, 1))
      valid_batch_size = max(min(batch_size, 512, smallest), 2)
    trained = tuple(l not in holdout for l in labels)
    sizes = np.asarray([p[0][0][0].shape[0] for p in parts], np.float64)
    probs = np.where(trained, 1.0 if sampling == "balanced" else sizes, 0.0)
    return cls(
        train_source=PaddedClouds.create([p[0][0] for p in parts]),
        train_target=PaddedClouds.create([p[1][0] for p in parts]),
        valid_source=PaddedClouds.create([p[0][1] for p in parts]),
        valid_target=PaddedClouds.create([p[1][1] for p in parts]),
        conditions=jnp.asarray(table),
        train_probs=jnp.asarray(probs / probs.sum(), jnp.float32),
        batch_size=int(batch_size),
        valid_batch_size=int(valid_batch_size),
        labels=labels,
        trained=trained,
    )

  def check_domain(self, domain: str) -> None:
    """Check every cloud's points for ``domain`` (unit vectors on the
    sphere)."""
    if domain == "euclidean":
      return
    for name, part in (("source", self.train_source),
                       ("target", self.train_target),
                       ("source", self.valid_source),
                       ("target", self.valid_target)):
      for j, label in enumerate(self.labels):
        pts = np.asarray(part.points[j, :int(part.counts[j])])
        checks.check_points(f"problems[{label!r}] {name}", pts, domain=domain)

  def sample_step(self, key: jax.Array, index: jnp.ndarray
                 ) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Training batch ``index`` (pure): ``(x[b, d], y[b, d], c[b, k])``,
    row ``i`` of condition ``j_i`` drawn by :attr:`train_probs`; keyed by
    ``fold_in(fold_in(key, 0), index)``."""
    step_key = jax.random.fold_in(jax.random.fold_in(key, 0), index)
    kj, kx, ky = jax.random.split(step_key, 3)
    which = jax.random.choice(
        kj, self.conditions.shape[0], (self.batch_size,), p=self.train_probs
    )
    return (self.train_source.sample(kx, which),
            self.train_target.sample(ky, which), self.conditions[which])

  def valid_step(self, key: jax.Array, index: jnp.ndarray
                ) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Validation batch ``index`` (pure): one batch per condition,
    ``(x[K, n, d], y[K, n, d], c[K, n, k])``; keyed by
    ``fold_in(fold_in(key, 1), index)``."""
    K, n = self.conditions.shape[0], self.valid_batch_size
    kx, ky = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(key, 1), index))
    which = jnp.repeat(jnp.arange(K), n)
    shape = lambda a: a.reshape((K, n) + a.shape[1:])
    return (shape(self.valid_source.sample(kx, which)),
            shape(self.valid_target.sample(ky, which)),
            shape(self.conditions[which]))


def _arrays(label: Hashable, problem: Any):
  """``(x, y, a, b)`` of one condition's problem (weights :obj:`None` if
  uniform)."""
  if isinstance(problem, tuple) and len(problem) == 2:
    x, y = problem
    a = b = None
  else:
    try:
      pc = data_lib.point_cloud_of(problem)
    except (TypeError, ValueError) as err:
      raise type(err)(f"`problems[{label!r}]`: {err}") from err
    x, y = pc.x, pc.y
    a = b = None
    if isinstance(problem, linear_problem.LinearProblem):
      a, b = problem.a, problem.b
    if isinstance(problem, linear_problem.LinearProblem
                 ) and not problem.is_balanced:
      raise ValueError(
          f"`problems[{label!r}]` is unbalanced (tau_a={problem.tau_a}, "
          f"tau_b={problem.tau_b}); ENOT solves balanced OT."
      )
  name = f"problems[{label!r}]"
  x = data_lib.as_points(f"{name} source", x)
  y = data_lib.as_points(f"{name} target", y)
  if x.shape[1] != y.shape[1]:
    raise ValueError(
        f"`{name}` has source points of dimension {x.shape[1]} and target "
        f"points of dimension {y.shape[1]}."
    )
  a = data_lib.as_weights(f"{name}.a", a, x.shape[0])
  b = data_lib.as_weights(f"{name}.b", b, y.shape[0])
  return x, y, a, b
