r"""Feeds: where the loop's batches come from.

Inside the compiled chunk (:func:`ott_enot.training.loop.run_chunk`) the
batches come from a :class:`ChunkBatches`, a pytree whose *type* carries the
sampling code and whose leaves carry the data, so that ``jax.jit`` caches the
chunk program by type and structure:

- :class:`StackedBatches`: batches the host stacked for a chunk,
  ``xs[L, n, d]``, ``ys[L, n, d]`` (and the rows' conditions ``conds[L, n,
  k]``), ``L`` the chunk length; position ``i`` of the scan is step ``first
  + i``.
- :class:`StreamBatches`: batches sampled on the device from a stream
  (:class:`~ott_enot.PointCloudStream` or
  :class:`~ott_enot.ConditionalStream`) and a key: step ``k`` gets
  ``stream.sample_step(key, k)``, validation ``count``
  ``stream.valid_step(key, count)``.
- :class:`SamplerBatches`: batches sampled on the device by a user's pure
  ``sampler(key) -> (x[n, d], y[n, d])`` (or ``(x, y, cond[n, k])``; a
  static field: the function is part of the type), step ``k`` using the key
  schedule's :func:`~ott_enot.data.sampling.batch_key`.

On the host a *feed* (the :class:`Feed` protocol) hands the loop each
chunk's batches and the validation batches: :class:`DeviceFeed` returns its
on-device batches every time (sampling happens on the device);
:class:`IteratorFeed` pulls, checks and stacks batches from the user's
*loaders* (ott's iterators). ``prepare`` checks the first batches before
anything compiles and decides where the arrays live: with a
:class:`~ott_enot.training.sharding.DataParallel` mesh, on-device batches are
replicated and stacked batches are split along their batch axis.
"""
import itertools
from typing import (Any, Callable, Iterator, List, Optional, Protocol,
                    Sequence, Tuple)

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct

from ott_enot import checks
from ott_enot.data import ValidationGroups
from ott_enot.data import sampling
from ott_enot.training import sharding

__all__ = [
    "Feed",
    "ChunkBatches",
    "StackedBatches",
    "StreamBatches",
    "SamplerBatches",
    "DeviceFeed",
    "IteratorFeed",
]

Batch = Tuple[jnp.ndarray, ...]


class Feed(Protocol):
  """What supplies the loop with batches.

  Attributes:
    validation_groups: For per-condition validation, the
      :class:`~ott_enot.data.ValidationGroups` (labels, trained) of the
      conditions whose validation batches ``[K, n, d]`` the feed returns;
      :obj:`None`: one validation batch (of mixed rows, or no condition).
    repeats_validation: Whether every validation of a run sees the same
      batch (then two validations' scores differ only by their maps, and
      the lowest is the best map; a feed without the attribute gives fresh
      batches).
  """

  validation_groups: Optional[ValidationGroups]
  repeats_validation: bool

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the first batches before anything compiles; decide where the
    arrays live. ``validation``: whether validation batches will be asked."""

  def batches(self, steps: Sequence[int], first: int,
              chunk_length: int) -> "ChunkBatches":
    """The batches of the ``steps`` of a scan of ``chunk_length`` steps from
    ``first``."""

  def valid_batch(self, count: int) -> Batch:
    """The ``count``-th validation batch of the run, on the devices (the
    first one again for a feed that ``repeats_validation``)."""

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """Shapes, dtypes and shardings of the validation batches; may compile
    their sampling (called on a background thread after :meth:`prepare`)."""


class ChunkBatches(struct.PyTreeNode):
  """The batches of one chunk, as seen inside the compiled chunk program."""

  def train_batch(self, i: jnp.ndarray, step: jnp.ndarray) -> Batch:
    """``(x[n, d], y[n, d])`` for position ``i`` of the scan, run ``step``."""
    raise NotImplementedError

  def valid_batch(self, count: jnp.ndarray) -> Batch:
    """The ``count``-th validation batch (on-device batches only)."""
    raise NotImplementedError(
        f"{type(self).__name__} has no on-device validation batches."
    )


class StackedBatches(ChunkBatches):
  """Host batches stacked for a chunk: ``xs[L, n, d]``, ``ys[L, n, d]`` and,
  for a conditional model, the rows' conditions ``conds[L, n, k]``."""
  xs: jnp.ndarray
  ys: jnp.ndarray
  conds: Optional[jnp.ndarray] = None

  def train_batch(self, i, step):  # noqa: D102
    del step
    if self.conds is None:
      return self.xs[i], self.ys[i]
    return self.xs[i], self.ys[i], self.conds[i]


class StreamBatches(ChunkBatches):
  """Batches sampled on the device from a stream and a key.

  Step ``k`` gets ``stream.sample_step(key, k)``; validation ``count`` gets
  ``stream.valid_step(key, count)`` (one batch per condition for a
  :class:`~ott_enot.ConditionalStream`). The stream is any pytree with these
  two pure methods (:class:`~ott_enot.PointCloudStream`,
  :class:`~ott_enot.ConditionalStream`).
  """
  stream: Any
  key: jax.Array

  def train_batch(self, i, step):  # noqa: D102
    del i
    return self.stream.sample_step(self.key, step)

  def valid_batch(self, count):  # noqa: D102
    return self.stream.valid_step(self.key, count)


class SamplerBatches(ChunkBatches):
  """Batches from a pure ``sampler(key) -> (x[n, d], y[n, d])`` (or ``(x, y,
  cond[n, k])`` for a conditional model) on the device.

  Step ``k`` uses ``batch_key(key, TRAIN, k)``; validation ``count`` the
  ``valid_draws`` batches of ``batch_key(key, VALID, count * valid_draws +
  j)`` (:func:`~ott_enot.data.sampling.batch_key`: ``fold_in(fold_in(key,
  split), index)``), concatenated. The sampler and the number of draws are
  static fields: calls with the same function reuse the compiled program.
  """
  key: jax.Array
  sampler: Callable[[jax.Array], Batch] = struct.field(pytree_node=False)
  valid_draws: int = struct.field(pytree_node=False, default=1)

  @classmethod
  def of(cls, key: jax.Array, sampler: Callable[[jax.Array], Batch],
         points: Optional[int] = None) -> "SamplerBatches":
    """Batches of ``sampler`` whose validation batches hold at least
    ``points`` rows (whole draws of the sampler; :obj:`None`:
    :data:`~ott_enot.data.sampling.VALID_POINTS`)."""
    points = sampling.VALID_POINTS if points is None else int(points)
    rows = jax.eval_shape(sampler, key)[0].shape[0]
    return cls(key, sampler, max(1, -(-points // rows)))

  def train_batch(self, i, step):  # noqa: D102
    del i
    return self.sampler(sampling.batch_key(self.key, sampling.TRAIN, step))

  def valid_batch(self, count):  # noqa: D102
    draws = [self.sampler(sampling.batch_key(
        self.key, sampling.VALID, count * self.valid_draws + j))
             for j in range(self.valid_draws)]
    return tuple(jnp.concatenate(parts) for parts in zip(*draws))


@jax.jit
def _valid_batch(batches: ChunkBatches, count: jnp.ndarray) -> Batch:
  return batches.valid_batch(count)


@jax.jit
def _first_batch(batches: ChunkBatches) -> Batch:
  return batches.train_batch(jnp.int32(0), jnp.int32(0))


class DeviceFeed:
  """Feed of on-device :class:`ChunkBatches` (the same for every chunk).

  Every validation of a run sees the same batch, the batches' first
  (``valid_batch(0)``: held-out points of a point cloud, or a sampler's
  first validation draw), drawn once: a fixed validation set, so that the
  validations' scores compare the maps and not the batches
  (``repeats_validation``).

  Args:
    batches: A :class:`StreamBatches` or :class:`SamplerBatches`.
    dim: Dimension of the points.
    domain: ``"euclidean"`` or ``"sphere"``.
    batch_name: What sets the batch size, for error messages.
    check_sampler: Draw the sampler's first batch and check its points
      (a stream's points were checked when it was built).
    dim_cond: Dimension of the conditions a conditional sampler returns
      third (0: none).
    validation_groups: For per-condition validation batches (a
      :class:`~ott_enot.ConditionalStream`), their
      :class:`~ott_enot.data.ValidationGroups` (:obj:`None`: one validation
      batch).
  """

  def __init__(self, batches: ChunkBatches, dim: int,
               domain: str = "euclidean", *, batch_name: str = "`batch_size`",
               check_sampler: bool = False, dim_cond: int = 0,
               validation_groups: Optional[ValidationGroups] = None):
    self.chunk_batches = batches
    self.dim, self.domain = dim, domain
    self.batch_name = batch_name
    self.check_sampler = check_sampler
    self.dim_cond = dim_cond
    self.validation_groups = validation_groups
    self.repeats_validation = True
    self._valid: Optional[Batch] = None

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check that the batch splits over the devices (and, for a sampler,
    its first batch's points); replicate the batches.

    Raises:
      ValueError: for NaN/inf or off-sphere points in a sampler's first
        batch, or a batch that does not split over ``parallel``'s devices;
        with several processes, also for data that differ between them
        (on every process, naming the process).
    """
    del validation

    def check():
      x = jax.eval_shape(_first_batch, self.chunk_batches)[0]
      if self.check_sampler:
        first = _first_batch(self.chunk_batches)
        for arr in first[:2]:
          checks.check_points("sampler", arr, self.dim, self.domain,
                              source="yielded")
        if self.dim_cond:
          checks.check_conditions("sampler", first[2], self.dim_cond,
                                  x.shape[0], source="yielded")
      parallel.check_batch_size(x.shape[0], self.batch_name)

    # several processes: the same data on every process, or an error on all
    parallel.checked(check, same=lambda _: {
        "data (a checksum of the points and key the batches are drawn "
        "from)": sharding.fingerprint(self.chunk_batches)
    })
    self.chunk_batches = parallel.replicate(self.chunk_batches)

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """Compile the validation sampling ahead of time (after :meth:`prepare`);
    the abstract validation batch."""
    count = jax.ShapeDtypeStruct((), jnp.int32)
    _valid_batch.lower(self.chunk_batches, count).compile()
    return parallel.replicated_like(
        jax.eval_shape(self.chunk_batches.valid_batch, count)
    )

  def batches(self, steps: Sequence[int], first: int,
              chunk_length: int) -> ChunkBatches:
    """The on-device batches; sampling happens inside the chunk."""
    del steps, first, chunk_length
    return self.chunk_batches

  def valid_batch(self, count: int) -> Batch:
    """The run's validation batch (whatever ``count``), sampled on the
    device once."""
    del count
    if self._valid is None:
      self._valid = _valid_batch(self.chunk_batches, jnp.asarray(0, jnp.int32))
    return self._valid


class IteratorFeed:
  """Batches from the user's loaders, checked and stacked per chunk.

  Training step ``k`` takes the next batch of ``trainloader_source`` and of
  ``trainloader_target`` (as ott does); every validation takes the next of
  the two validation loaders. Batches are checked on the host
  (:func:`~ott_enot.checks.check_points`: shape, NaN/inf, unit norm on the
  sphere) before they reach the device.

  A conditional model (``dim_cond > 0``) takes six loaders: source, target
  and condition, for training then validation; row ``i`` of a step's three
  batches is one pair ``(x_i, y_i)`` of condition ``cond_i``. The source and
  target loaders may yield ``(points, labels)`` with integer labels
  ``[n]`` naming each row's condition: then the labels of source and target
  rows must agree, and rows of one label must carry one condition vector
  (checked on every batch).

  Args:
    loaders: ``(trainloader_source, trainloader_target, validloader_source,
      validloader_target)``; with ``dim_cond``, ``(trainloader_source,
      trainloader_target, trainloader_condition, validloader_source,
      validloader_target, validloader_condition)``.
    dim: Dimension of the points.
    domain: ``"euclidean"`` or ``"sphere"``.
    dim_cond: Dimension of the conditions (0: an unconditional model).
  """

  def __init__(self, loaders: Sequence[Iterator[Any]], dim: int,
               domain: str = "euclidean", dim_cond: int = 0):
    roles = ("source", "target") + (("condition",) if dim_cond else ())
    self.names = tuple(
        f"{split}loader_{role}" for split in ("train", "valid") for role in roles
    )
    if len(loaders) != len(self.names):
      raise TypeError(
          f"Expected {len(self.names)} loaders ({', '.join(self.names)}), got "
          f"{len(loaders)}."
      )
    self.iters = [iter(it) for it in loaders]
    self.train_group = tuple(range(len(roles)))
    self.valid_group = tuple(range(len(roles), 2 * len(roles)))
    self.dim = dim
    self.domain = domain
    self.dim_cond = dim_cond
    self.validation_groups = None  # one validation batch of mixed rows
    self.repeats_validation = False  # the next batch of the loaders
    self.parallel = sharding.DataParallel()
    self._valid_avals = ()

  def _check(self, j: int, batch: Any) -> Tuple[np.ndarray, Any]:
    """A loader's batch checked: ``(array, labels or None)``."""
    name = self.names[j]
    if name.endswith("condition"):
      return checks.check_conditions(
          name, batch, self.dim_cond, source="yielded"), None
    labels = None
    if self.dim_cond and isinstance(batch, tuple) and len(batch) == 2:
      batch, labels = batch
    arr = checks.check_points(name, batch, self.dim, self.domain,
                              source="yielded")
    if labels is not None:
      labels = np.asarray(labels)
      if labels.shape != (arr.shape[0],) or not np.issubdtype(
          labels.dtype, np.integer):
        raise ValueError(
            f"`{name}` yielded labels of shape {labels.shape} and dtype "
            f"{labels.dtype} for {arr.shape[0]} points: labels must be "
            f"integers [n], one per row."
        )
    return arr, labels

  def _draw(self, group: Tuple[int, ...]) -> Tuple[np.ndarray, ...]:
    """The next batch of each loader of ``group``, checked together."""
    try:
      raw = [next(self.iters[j]) for j in group]
    except StopIteration:
      names = " / ".join(f"`{self.names[j]}`" for j in group)
      raise ValueError(
          f"{names} ran out of batches; pass iterators that yield at least "
          f"as many batches as `num_train_iters` needs (e.g. infinite "
          f"generators). The solver keeps the state of the last completed "
          f"chunk of steps."
      ) from None
    return self._checked(group, raw)

  def _checked(self, group: Tuple[int, ...],
               raw: Sequence[Any]) -> Tuple[np.ndarray, ...]:
    """The batches ``raw`` of the loaders of ``group``, checked together."""
    checked = [self._check(j, r) for j, r in zip(group, raw)]
    arrays = tuple(np.asarray(a) for a, _ in checked)
    rows = [a.shape[0] for a in arrays]
    if len(set(rows)) != 1:
      sizes = ", ".join(
          f"`{self.names[j]}` {n}" for j, n in zip(group, rows))
      raise ValueError(
          f"The loaders yielded batches of different sizes ({sizes}): ENOT "
          f"pairs row i of each, so they must be equal."
      )
    if self.dim_cond:
      _check_rows_of_one_condition(
          [self.names[j] for j in group], arrays[2], checked[0][1],
          checked[1][1])
    return arrays

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the first batches (training, and validation if it will run);
    stack later chunks with the batch axis split over ``parallel``'s devices.

    With several processes each loader yields this process's rows of the
    global batch; the checks agree across processes
    (:meth:`~ott_enot.training.sharding.DataParallel.agree`).

    Raises:
      ValueError: naming the loader (and the process), for an empty loader,
        a bad batch or a training batch that does not split over the
        devices, before anything compiles.
    """
    self.parallel = parallel
    groups = (self.train_group, self.valid_group) if validation else (
        self.train_group,)

    def check_firsts():
      firsts = []
      for group in groups:
        raw = []
        for j in group:
          try:
            raw.append(next(self.iters[j]))
          except StopIteration:
            raise ValueError(
                f"`{self.names[j]}` is empty: it must yield batches."
            ) from None
          # training starts with this batch
          self.iters[j] = itertools.chain([raw[-1]], self.iters[j])
        batch = self._checked(group, raw)
        if group is self.train_group:
          parallel.check_local_batch_size(
              batch[0].shape[0], f"The batch size of `{self.names[0]}`")
        firsts.extend(batch)
      return firsts

    firsts = parallel.checked(check_firsts, same=lambda firsts: {
        f"batch size of `{self.names[j]}`": f.shape[0]
        for j, f in enumerate(firsts)
    })
    self._valid_avals = tuple(
        jax.ShapeDtypeStruct((parallel.global_rows(f.shape[0]),) + f.shape[1:],
                             f.dtype) for f in firsts[len(self.train_group):]
    )

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """The abstract validation batch (nothing to compile: batches come from
    the host); call after :meth:`prepare` with ``validation=True``."""
    return parallel.replicated_like(self._valid_avals)

  def _train_batches(self, count: int) -> List[Tuple[np.ndarray, ...]]:
    """The next ``count`` training batches, of one fixed size."""
    batches = [self._draw(self.train_group) for _ in range(count)]
    shape = batches[0][0].shape
    if any(b[k].shape[0] != shape[0] for b in batches for k in (0, 1)):
      raise ValueError(
          "The training loaders must yield batches of one fixed size; got "
          f"sizes {sorted({b[k].shape[0] for b in batches for k in (0, 1)})}."
      )
    return batches

  def batches(self, steps: Sequence[int], first: int,
              chunk_length: int) -> StackedBatches:
    """Stack the batches of ``steps`` (consecutive) at their scan positions.

    Positions of the scan outside ``steps`` are masked in the chunk; they
    repeat a real batch so that every position holds valid points.

    Raises:
      ValueError: for a bad batch or an exhausted loader, naming it (and,
        with several processes, the process: on every process).
    """
    drawn = self.parallel.checked(lambda: self._train_batches(len(steps)))
    offset = steps[0] - first
    stacked = []
    for k in range(len(drawn[0])):
      arr = np.empty((chunk_length,) + drawn[0][k].shape,
                     np.result_type(*(b[k] for b in drawn)))
      for i in range(chunk_length):
        arr[i] = drawn[min(max(i - offset, 0), len(drawn) - 1)][k]
      stacked.append(arr)
    return self.parallel.place_chunk(StackedBatches(*stacked))

  def valid_batch(self, count: int) -> Batch:
    """The next validation batch (on all devices with a mesh)."""
    del count
    return self.parallel.place_batch(
        self.parallel.checked(lambda: self._draw(self.valid_group)))


def _check_rows_of_one_condition(
    names: Sequence[str], conditions: np.ndarray, source_labels: Any,
    target_labels: Any
) -> None:
  """Row ``i`` of a conditional batch is one condition's: source and target
  labels agree, and rows of one label carry one condition vector.

  Raises:
    ValueError: naming the first row that breaks it, and the fix.
  """
  if source_labels is not None and target_labels is not None:
    bad = np.flatnonzero(source_labels != target_labels)
    if bad.size:
      i = int(bad[0])
      raise ValueError(
          f"Row {i} of `{names[0]}` has label {source_labels[i]} but row {i} "
          f"of `{names[1]}` has label {target_labels[i]} ({bad.size} rows "
          f"disagree): ENOT pairs x_i with y_i under one condition cond_i, so "
          f"yield each step's source and target rows in the same order of "
          f"conditions (as ott's conditional datasets do)."
      )
  labels = source_labels if source_labels is not None else target_labels
  if labels is None:
    return
  for label in np.unique(labels):
    rows = conditions[labels == label]
    if not np.all(rows == rows[0]):
      raise ValueError(
          f"Rows of label {label} carry different condition vectors in "
          f"`{names[2]}`: one label is one condition, so its rows must "
          f"have one condition vector."
      )
