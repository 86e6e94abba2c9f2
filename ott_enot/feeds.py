r"""Feeds: where the loop's batches come from.

Inside the compiled chunk (:func:`ott_enot.loop.run_chunk`) the batches come
from a :class:`ChunkBatches`, a pytree whose *type* carries the sampling code
and whose leaves carry the data, so that ``jax.jit`` caches the chunk program
by type and structure:

- :class:`StackedBatches`: batches the host stacked for a chunk,
  ``xs[L, n, d]``, ``ys[L, n, d]``; position ``i`` of the scan is step
  ``first + i``.
- :class:`StreamBatches`: batches sampled on the device from a
  :class:`~ott_enot.data.PointCloudStream` and a key, step ``k`` using the
  ``k``-th batches of ``stream.loaders(key)``.
- :class:`SamplerBatches`: batches sampled on the device by a user's pure
  ``sampler(key) -> (x[n, d], y[n, d])`` (a static field: the function is
  part of the type), step ``k`` using ``fold_in(fold_in(key, 0), k)``.

On the host a *feed* (the :class:`~ott_enot.loop.Feed` protocol) hands the
loop each chunk's batches and the validation batches: :class:`DeviceFeed`
returns its on-device batches every time (a sampler, drawing on the device);
:class:`IteratorFeed` pulls, checks and stacks batches from the user's four
*loaders* (ott's iterators). ``prepare`` checks the first batches before
anything compiles and decides where the arrays live: with a
:class:`~ott_enot.sharding.DataParallel` mesh, on-device batches are
replicated and stacked batches are split along their batch axis.
"""
import itertools
from typing import Any, Callable, Iterator, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct

from ott_enot import checks
from ott_enot import data as data_lib
from ott_enot import sharding

__all__ = [
    "ChunkBatches",
    "StackedBatches",
    "StreamBatches",
    "SamplerBatches",
    "DeviceFeed",
    "IteratorFeed",
]

Batch = Tuple[jnp.ndarray, jnp.ndarray]


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
  """Host batches stacked for a chunk: ``xs[L, n, d]``, ``ys[L, n, d]``."""
  xs: jnp.ndarray
  ys: jnp.ndarray

  def train_batch(self, i, step):  # noqa: D102
    del step
    return self.xs[i], self.ys[i]


class StreamBatches(ChunkBatches):
  """Batches sampled on the device from a :class:`~ott_enot.PointCloudStream`.

  Step ``k`` gets ``stream.sample_step(key, k)``, the ``k``-th batches of
  ``stream.loaders(key)``; validation ``count`` gets
  ``stream.sample_step(key, count, valid=True)``.
  """
  stream: data_lib.PointCloudStream
  key: jax.Array

  def train_batch(self, i, step):  # noqa: D102
    del i
    return self.stream.sample_step(self.key, step)

  def valid_batch(self, count):  # noqa: D102
    return self.stream.sample_step(self.key, count, valid=True)


class SamplerBatches(ChunkBatches):
  """Batches from a pure ``sampler(key) -> (x[n, d], y[n, d])`` on the device.

  Step ``k`` uses ``fold_in(fold_in(key, 0), k)``, validation ``count`` uses
  ``fold_in(fold_in(key, 1), count)``. The sampler is a static field: calls
  with the same function reuse the compiled program.
  """
  key: jax.Array
  sampler: Callable[[jax.Array], Batch] = struct.field(pytree_node=False)

  def _draw(self, stream: int, index: jnp.ndarray) -> Batch:
    key = jax.random.fold_in(jax.random.fold_in(self.key, stream), index)
    return self.sampler(key)

  def train_batch(self, i, step):  # noqa: D102
    del i
    return self._draw(0, step)

  def valid_batch(self, count):  # noqa: D102
    return self._draw(1, count)


@jax.jit
def _valid_batch(batches: ChunkBatches, count: jnp.ndarray) -> Batch:
  return batches.valid_batch(count)


@jax.jit
def _first_batch(batches: ChunkBatches) -> Batch:
  return batches.train_batch(jnp.int32(0), jnp.int32(0))


class DeviceFeed:
  """Feed of on-device :class:`ChunkBatches` (the same for every chunk).

  Args:
    batches: A :class:`StreamBatches` or :class:`SamplerBatches`.
    dim: Dimension of the points.
    domain: ``"euclidean"`` or ``"sphere"``.
    batch_name: What sets the batch size, for error messages.
    check_sampler: Draw the sampler's first batch and check its points
      (a stream's points were checked when it was built).
  """

  def __init__(self, batches: ChunkBatches, dim: int,
               domain: str = "euclidean", *, batch_name: str = "`batch_size`",
               check_sampler: bool = False):
    self.source = batches
    self.dim, self.domain = dim, domain
    self.batch_name = batch_name
    self.check_sampler = check_sampler

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
      x, _ = jax.eval_shape(_first_batch, self.source)
      if self.check_sampler:
        for arr in _first_batch(self.source):
          checks.check_points("sampler", arr, self.dim, self.domain,
                              source="yielded")
      parallel.check_batch_size(x.shape[0], self.batch_name)

    # several processes: the same data on every process, or an error on all
    parallel.checked(check, same=lambda _: {
        "data (a checksum of the points and key the batches are drawn "
        "from)": sharding.fingerprint(self.source)
    })
    self.source = parallel.replicate(self.source)

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """Compile the validation sampling ahead of time (after :meth:`prepare`);
    the abstract validation batch."""
    count = jax.ShapeDtypeStruct((), jnp.int32)
    _valid_batch.lower(self.source, count).compile()
    return parallel.replicated_like(
        jax.eval_shape(self.source.valid_batch, count)
    )

  def batches(self, steps: Sequence[int], first: int,
              length: int) -> ChunkBatches:
    """The on-device batches; sampling happens inside the chunk."""
    del steps, first, length
    return self.source

  def valid_batch(self, count: int) -> Batch:
    """The ``count``-th validation batch, sampled on the device."""
    return _valid_batch(self.source, jnp.asarray(count, jnp.int32))


class IteratorFeed:
  """Batches from the user's four loaders, checked and stacked per chunk.

  Training step ``k`` takes the next batch of ``trainloader_source`` and of
  ``trainloader_target`` (as ott does); every validation takes the next of
  the two validation loaders. Batches are checked on the host
  (:func:`~ott_enot.checks.check_points`: shape, NaN/inf, unit norm on the
  sphere) before they reach the device.

  Args:
    loaders: ``(trainloader_source, trainloader_target, validloader_source,
      validloader_target)``.
    dim: Dimension of the points.
    domain: ``"euclidean"`` or ``"sphere"``.
  """

  names = ("trainloader_source", "trainloader_target", "validloader_source",
           "validloader_target")

  def __init__(self, loaders: Sequence[Iterator[Any]], dim: int,
               domain: str = "euclidean"):
    self.iters = [iter(it) for it in loaders]
    self.dim = dim
    self.domain = domain
    self.parallel = sharding.DataParallel()
    self._valid_avals = ()

  def _check(self, j: int, batch: Any) -> np.ndarray:
    return checks.check_points(
        self.names[j], batch, self.dim, self.domain, source="yielded"
    )

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the first batches (training, and validation if it will run);
    stack later chunks with the batch axis split over ``parallel``'s devices.

    With several processes each loader yields this process's rows of the
    global batch; the checks agree across processes
    (:meth:`~ott_enot.sharding.DataParallel.agree`).

    Raises:
      ValueError: naming the loader (and the process), for an empty loader,
        a bad batch or a training batch that does not split over the
        devices, before anything compiles.
    """
    self.parallel = parallel

    def check_firsts():
      firsts = []
      for j in (0, 1, 2, 3) if validation else (0, 1):
        try:
          first = next(self.iters[j])
        except StopIteration:
          raise ValueError(
              f"`{self.names[j]}` is empty: it must yield batches."
          ) from None
        first = self._check(j, first)
        if j < 2:
          parallel.check_local_batch_size(
              first.shape[0], f"The batch size of `{self.names[j]}`"
          )
        firsts.append(first)
        self.iters[j] = itertools.chain([first], self.iters[j])
      return firsts

    firsts = parallel.checked(check_firsts, same=lambda firsts: {
        f"batch size of `{self.names[j]}`": f.shape[0]
        for j, f in enumerate(firsts)
    })
    self._valid_avals = tuple(
        jax.ShapeDtypeStruct((parallel.global_rows(f.shape[0]),) + f.shape[1:],
                             f.dtype) for f in firsts[2:]
    )

  def abstract_valid_batch(self, parallel: sharding.DataParallel) -> Batch:
    """The abstract validation batch (nothing to compile: batches come from
    the host); call after :meth:`prepare` with ``validation=True``."""
    return parallel.replicated_like(self._valid_avals)

  def _pair(self, a: int, b: int) -> Tuple[np.ndarray, np.ndarray]:
    try:
      x, y = next(self.iters[a]), next(self.iters[b])
    except StopIteration:
      raise ValueError(
          f"`{self.names[a]}` or `{self.names[b]}` ran out of batches; pass "
          f"iterators that yield at least as many batches as "
          f"`num_train_iters` needs (e.g. infinite generators). The solver "
          f"keeps the state of the last completed chunk of steps."
      ) from None
    x, y = np.asarray(self._check(a, x)), np.asarray(self._check(b, y))
    if x.shape[0] != y.shape[0]:
      raise ValueError(
          f"`{self.names[a]}` and `{self.names[b]}` yielded batches of "
          f"{x.shape[0]} and {y.shape[0]} points: ENOT pairs them, so they "
          f"must be equal."
      )
    return x, y

  def _pairs(self, count: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The next ``count`` training pairs, of one fixed size."""
    pairs = [self._pair(0, 1) for _ in range(count)]
    shape = pairs[0][0].shape
    if any(p[k].shape != shape for p in pairs for k in (0, 1)):
      raise ValueError(
          "The training loaders must yield batches of one fixed size; got "
          f"sizes {sorted({p[k].shape[0] for p in pairs for k in (0, 1)})}."
      )
    return pairs

  def batches(self, steps: Sequence[int], first: int,
              length: int) -> StackedBatches:
    """Stack the batches of ``steps`` (consecutive) at their scan positions.

    Positions of the scan outside ``steps`` are masked in the chunk; they
    repeat a real batch so that every position holds valid points.

    Raises:
      ValueError: for a bad batch or an exhausted loader, naming it (and,
        with several processes, the process: on every process).
    """
    pairs = self.parallel.checked(lambda: self._pairs(len(steps)))
    shape = pairs[0][0].shape
    offset = steps[0] - first
    xs = np.empty((length,) + shape, np.result_type(*(p[0] for p in pairs)))
    ys = np.empty((length,) + shape, np.result_type(*(p[1] for p in pairs)))
    for i in range(length):
      j = min(max(i - offset, 0), len(pairs) - 1)
      xs[i], ys[i] = pairs[j]
    return self.parallel.place_chunk(StackedBatches(xs, ys))

  def valid_batch(self, count: int) -> Batch:
    """The next validation batch (on all devices with a mesh)."""
    del count
    return self.parallel.place_batch(
        self.parallel.checked(lambda: self._pair(2, 3)))
