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
(:func:`~ott_enot.data.sampling.inverse_cdf`, :math:`O(\text{batch} \cdot
\log n)`), with replacement; splits, weights and keys are the stream core's
(:mod:`ott_enot.data.sampling`), as for :class:`~ott_enot.PointCloudStream`.
"""
import numbers
from typing import (Any, Dict, Hashable, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct

from ott_enot import checks
from ott_enot.data import sampling as sampling_lib

__all__ = ["PaddedClouds", "ConditionalStream", "ValidationGroups",
           "condition_vectors", "is_one_hot"]

SAMPLING = ("balanced", "proportional")


class ValidationGroups(NamedTuple):
  """The conditions of a family, in order: which conditions a feed's
  validation batches ``[K, n, d]`` are of.

  Attributes:
    labels: The conditions' labels, in the order of the batches' first axis.
    trained: Whether each is trained on (held-out ones are only reported).
    vectors: ``[K, k]``, their condition vectors.
  """
  labels: Tuple[Hashable, ...]
  trained: Tuple[bool, ...]
  vectors: np.ndarray

  @property
  def table(self) -> Dict[Hashable, np.ndarray]:
    """``{label: condition vector}``."""
    return {l: self.vectors[j] for j, l in enumerate(self.labels)}


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
  def create(cls, clouds: Sequence[sampling_lib.Split]) -> "PaddedClouds":
    """From the splits of the ``K`` conditions (weights :obj:`None`:
    uniform)."""
    n_max = max(c.points.shape[0] for c in clouds)
    dim = clouds[0].points.shape[1]
    points = np.zeros((len(clouds), n_max, dim), clouds[0].points.dtype)
    cdf = np.ones((len(clouds), n_max), np.float32)
    for j, (p, w) in enumerate(clouds):
      w = np.full(len(p), 1.0 / len(p)) if w is None else w
      points[j, :len(p)] = p
      points[j, len(p):] = p[-1]
      cdf[j, :len(p)] = np.cumsum(w) / np.sum(w)
    counts = np.asarray([len(c.points) for c in clouds], np.int32)
    return cls(jnp.asarray(points), jnp.asarray(cdf), jnp.asarray(counts))

  def sample(self, key: jax.Array, which: jnp.ndarray) -> jnp.ndarray:
    """One point of condition ``which[i]`` per row, ``[b] -> [b, d]``."""
    u = jax.random.uniform(key, which.shape)
    idx = sampling_lib.inverse_cdf(self.cdf, which, u)
    idx = jnp.minimum(idx, self.counts[which] - 1)
    return self.points[which, idx]


def condition_vectors(
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
      vectors = np.asarray([[float(l)] for l in labels], np.float32)
    else:
      vectors = np.eye(len(labels), dtype=np.float32)
  else:
    vectors = _given_vectors(labels, conditions)
  if dim_cond is not None:
    checks.check_conditions("conditions", vectors, dim_cond)
  elif not np.all(np.isfinite(vectors)):
    raise ValueError("`conditions` contains NaN or inf entries.")
  _, first = np.unique(vectors, axis=0, return_index=True)
  if len(first) != len(labels):
    raise ValueError(
        "Two labels have the same condition vector: the model could not "
        "tell their maps apart; give each condition its own vector."
    )
  return vectors


def _given_vectors(labels: Sequence[Hashable],
                   conditions: Mapping[Hashable, Any]) -> np.ndarray:
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
  return np.stack(rows)


def is_one_hot(vectors: np.ndarray) -> bool:
  """Whether the condition vectors ``[K, k]`` are distinct one-hot vectors."""
  return (vectors.shape[1] == vectors.shape[0] and
          bool(np.all((vectors == 0) | (vectors == 1))) and
          bool(np.all(vectors.sum(axis=1) == 1)))


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
    vectors: ``[K, k]``, the condition vectors.
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
  vectors: jnp.ndarray
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
    return self.vectors.shape[-1]

  @property
  def table(self) -> Dict[Hashable, np.ndarray]:
    """``{label: condition vector}``."""
    return self.validation_groups.table

  @property
  def validation_groups(self) -> ValidationGroups:
    """The conditions of :meth:`valid_step`'s batches, in order."""
    return ValidationGroups(self.labels, self.trained,
                            np.asarray(self.vectors))

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
      conditions: ``{label: vector [k]}`` (see :func:`condition_vectors` for
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
    labels, holdout = _check_family(problems, batch_size, sampling, holdout)
    vectors = condition_vectors(labels, conditions, dim_cond)
    valid_fraction = sampling_lib.check_valid_fraction(valid_fraction)
    if valid_batch_size is not None:
      checks.check_positive_int("valid_batch_size", valid_batch_size)
    key = jax.random.key(0) if rng is None else rng
    splits = [
        _split_problem(jax.random.fold_in(key, j), label, problems[label],
                       0.0 if label in holdout else valid_fraction)
        for j, label in enumerate(labels)
    ]
    if len({s[0][0].points.shape[1] for s in splits}) != 1:
      raise ValueError(
          f"The conditions' points have different dimensions "
          f"{sorted({s[0][0].points.shape[1] for s in splits})}."
      )
    if valid_batch_size is None:  # no more rows than the smallest split
      smallest = min(len(s[k][1].points) for s in splits for k in (0, 1))
      valid_batch_size = max(min(batch_size, 512, smallest), 2)
    trained = tuple(l not in holdout for l in labels)
    sizes = np.asarray([len(s[0][0].points) for s in splits], np.float64)
    probs = np.where(trained, 1.0 if sampling == "balanced" else sizes, 0.0)
    clouds = lambda side, part: PaddedClouds.create(
        [s[side][part] for s in splits])
    return cls(
        train_source=clouds(0, 0),
        train_target=clouds(1, 0),
        valid_source=clouds(0, 1),
        valid_target=clouds(1, 1),
        vectors=jnp.asarray(vectors),
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
    """Training batch ``index`` (pure): ``(x[b, d], y[b, d], cond[b, k])``,
    row ``i`` of condition ``j_i`` drawn by ``train_probs``, with the
    keys of :func:`~ott_enot.data.sampling.batch_keys`.

    Args:
      key: The stream's key.
      index: The batch's number (a traced integer in a fused loop).

    Returns:
      ``(x[b, d], y[b, d], cond[b, k])``.
    """
    k_cond, k_source, k_target = sampling_lib.batch_keys(
        key, sampling_lib.TRAIN, index)
    which = jax.random.choice(
        k_cond, self.vectors.shape[0], (self.batch_size,), p=self.train_probs
    )
    return (self.train_source.sample(k_source, which),
            self.train_target.sample(k_target, which), self.vectors[which])

  def valid_step(self, key: jax.Array, index: jnp.ndarray
                ) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Validation batch ``index`` (pure): one batch per condition,
    ``(x[K, n, d], y[K, n, d], cond[K, n, k])``, with the keys of
    :func:`~ott_enot.data.sampling.batch_keys`.

    Args:
      key: The stream's key.
      index: The validation's number.

    Returns:
      ``(x[K, n, d], y[K, n, d], cond[K, n, k])`` for the ``K``
      conditions (held-out ones included).
    """
    K, n = self.vectors.shape[0], self.valid_batch_size
    _, k_source, k_target = sampling_lib.batch_keys(
        key, sampling_lib.VALID, index)
    which = jnp.repeat(jnp.arange(K), n)
    shape = lambda a: a.reshape((K, n) + a.shape[1:])
    return (shape(self.valid_source.sample(k_source, which)),
            shape(self.valid_target.sample(k_target, which)),
            shape(self.vectors[which]))


def _check_family(problems: Any, batch_size: Any, how: Any,
                  holdout: Sequence[Hashable]) -> Tuple[tuple, tuple]:
  """The labels and held-out labels of a family, checked."""
  if not isinstance(problems, Mapping) or not problems:
    raise ValueError(
        "`problems` must be a non-empty dict {label: PointCloud | "
        "LinearProblem | (x, y)}, one OT problem per condition."
    )
  checks.check_positive_int("batch_size", batch_size)
  if how not in SAMPLING:
    raise ValueError(f"`sampling` must be one of {SAMPLING}, got {how!r}.")
  labels, holdout = tuple(problems), tuple(holdout)
  unknown = [l for l in holdout if l not in problems]
  if unknown:
    raise ValueError(
        f"`holdout` names {unknown}, which are not labels of the data "
        f"{list(labels)}."
    )
  if len(set(holdout)) == len(labels):
    raise ValueError(
        "`holdout` holds out every condition: keep at least one to train on."
    )
  return labels, holdout


def _split_problem(key: jax.Array, label: Hashable, problem: Any,
                   fraction: float) -> Tuple[tuple, tuple]:
  """``((source_train, source_valid), (target_train, target_valid))`` of one
  condition: a held-out condition (``fraction=0``) validates on all its
  points."""
  name = f"problems[{label!r}]"
  if isinstance(problem, tuple) and len(problem) == 2:
    x, y, a, b = *problem, None, None
  else:
    try:
      x, y, a, b = sampling_lib.problem_arrays(problem, name)
    except TypeError as err:
      raise TypeError(f"`{name}`: {err}") from err
  x = sampling_lib.as_points(f"{name} source", x)
  y = sampling_lib.as_points(f"{name} target", y)
  if x.shape[1] != y.shape[1]:
    raise ValueError(
        f"`{name}` has source points of dimension {x.shape[1]} and target "
        f"points of dimension {y.shape[1]}."
    )
  out = []
  for side, pts, w, k, weights in zip(("source", "target"), (x, y), (a, b),
                                      jax.random.split(key), "ab"):
    w = sampling_lib.as_weights(f"{name}.{weights}", w, pts.shape[0])
    train, valid = sampling_lib.split_measure(k, pts, w, fraction,
                                              f"{name} {side}")
    out.append((train, train if valid is None else valid))
  return tuple(out)
