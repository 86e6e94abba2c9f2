r"""Where training batches come from: one pytree type, two host-side feeds.

Inside the compiled chunk of steps (:func:`ott_enot.training.run_chunk`) the
batches come from a :class:`BatchSource`, a pytree whose *type* carries the
sampling code and whose leaves carry the data, so that ``jax.jit`` caches the
chunk program by type and structure:

- :class:`StackedBatches`: batches the host stacked for a window of steps,
  ``xs[W, n, d]``, ``ys[W, n, d]``; position ``i`` of the window is step
  ``first + i``.
- :class:`StreamBatches`: batches sampled on the device from a
  :class:`~ott_enot.data.PointCloudStream` and a key, step ``k`` using the
  ``k``-th batches of ``stream.loaders(key)``.
- :class:`SamplerBatches`: batches sampled on the device by a user's pure
  ``sampler(key) -> (x[n, d], y[n, d])`` (a static field: the function is
  part of the type), step ``k`` using ``fold_in(fold_in(key, 0), k)``.

On the host a feed hands the loop one source per window and the validation
batches: :class:`DeviceFeed` returns its on-device source every time;
:class:`IteratorFeed` pulls, checks and stacks batches from the user's four
iterators. :meth:`DeviceFeed.prepare` / :meth:`IteratorFeed.prepare` check the
first batches and decide where the arrays live: with a
:class:`~ott_enot.sharding.DataParallel` mesh, on-device sources are
replicated and stacked batches are split along their batch axis.
"""
import itertools
from typing import Any, Callable, Iterator, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct

from ott_enot import checks
from ott_enot import data as data_lib
from ott_enot import sharding

__all__ = [
    "BatchSource",
    "StackedBatches",
    "StreamBatches",
    "SamplerBatches",
    "DeviceFeed",
    "IteratorFeed",
]

Batch = Tuple[jnp.ndarray, jnp.ndarray]


class BatchSource(struct.PyTreeNode):
  """Batches of one window of steps, as seen inside the compiled chunk."""

  def train_batch(self, i: jnp.ndarray, step: jnp.ndarray) -> Batch:
    """``(x[n, d], y[n, d])`` for position ``i`` of the window, global ``step``."""
    raise NotImplementedError

  def valid_batch(self, count: jnp.ndarray) -> Batch:
    """The ``count``-th validation pair (on-device sources only)."""
    raise NotImplementedError(
        f"{type(self).__name__} has no on-device validation batches."
    )


class StackedBatches(BatchSource):
  """Host batches stacked for a window: ``xs[W, n, d]``, ``ys[W, n, d]``."""
  xs: jnp.ndarray
  ys: jnp.ndarray

  def train_batch(self, i, step):  # noqa: D102
    del step
    return self.xs[i], self.ys[i]


class StreamBatches(BatchSource):
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


class SamplerBatches(BatchSource):
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
def _valid_batch(source: BatchSource, count: jnp.ndarray) -> Batch:
  return source.valid_batch(count)


class DeviceFeed:
  """Feed of an on-device :class:`BatchSource` (the same for every window).

  Args:
    source: A :class:`StreamBatches` or :class:`SamplerBatches`.
    batch_name: What sets the batch size, for error messages.
  """

  def __init__(self, source: BatchSource, batch_name: str = "`batch_size`"):
    self.source = source
    self.batch_name = batch_name

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the batch size splits over the devices; replicate the source.

    The data were checked when the source was built.

    Raises:
      ValueError: if the batch does not split over ``parallel``'s devices.
    """
    del validation
    x, _ = jax.eval_shape(
        self.source.train_batch, jnp.int32(0), jnp.int32(0)
    )
    parallel.check_batch_size(x.shape[0], self.batch_name)
    self.source = parallel.replicate(self.source)

  def compile_valid(self, parallel: sharding.DataParallel) -> Batch:
    """Compile the validation sampler ahead of time (call after
    :meth:`prepare`); returns the abstract validation pair."""
    count = jax.ShapeDtypeStruct((), jnp.int32)
    _valid_batch.lower(self.source, count).compile()
    return parallel.replicated_like(
        jax.eval_shape(self.source.valid_batch, count)
    )

  def window(self, first: int, steps: Sequence[int], size: int) -> BatchSource:
    """The source for a window; sampling happens inside the chunk."""
    del first, steps, size
    return self.source

  def valid(self, count: int) -> Batch:
    """The ``count``-th validation pair, sampled on the device."""
    return _valid_batch(self.source, jnp.asarray(count, jnp.int32))


class IteratorFeed:
  """Batches from the user's four iterators, checked and stacked per window.

  Training step ``k`` takes the next batch of ``trainloader_source`` and of
  ``trainloader_target`` (as ott does); every validation takes the next of
  the two validation iterators. Batches are checked on the host (shape,
  NaN/inf, unit norm on the sphere) before they reach the device.

  Args:
    loaders: ``(trainloader_source, trainloader_target, validloader_source,
      validloader_target)``.
    dim: Dimension of the points.
    on_sphere: Check that points are unit vectors.
  """

  names = ("trainloader_source", "trainloader_target", "validloader_source",
           "validloader_target")

  def __init__(self, loaders: Sequence[Iterator[Any]], dim: int,
               on_sphere: bool):
    self.iters = [iter(it) for it in loaders]
    self.dim = dim
    self.on_sphere = on_sphere
    self.parallel = sharding.DataParallel()
    self._valid_avals = ()

  def prepare(self, parallel: sharding.DataParallel, validation: bool) -> None:
    """Check the first batches (training, and validation if it will run);
    stack later windows with the batch axis split over ``parallel``'s devices.

    Raises:
      ValueError: naming the iterator, for an empty iterator, a bad batch or
        a training batch that does not split over the devices, before
        anything compiles.
    """
    self._valid_avals = ()
    for j in (0, 1, 2, 3) if validation else (0, 1):
      try:
        first = next(self.iters[j])
      except StopIteration:
        raise ValueError(
            f"`{self.names[j]}` is empty: it must yield batches."
        ) from None
      first = checks.check_batch(self.names[j], first, self.dim,
                                 self.on_sphere)
      if j < 2:
        parallel.check_batch_size(
            first.shape[0], f"The batch size of `{self.names[j]}`"
        )
      else:
        self._valid_avals += (jax.ShapeDtypeStruct(first.shape, first.dtype),)
      self.iters[j] = itertools.chain([first], self.iters[j])
    self.parallel = parallel

  def compile_valid(self, parallel: sharding.DataParallel) -> Batch:
    """The abstract validation pair (nothing to compile: batches come from
    the host); call after :meth:`prepare` with ``validation=True``."""
    return parallel.replicated_like(self._valid_avals)

  def _pair(self, a: int, b: int) -> Tuple[np.ndarray, np.ndarray]:
    names = (self.names[a], self.names[b])
    try:
      x, y = next(self.iters[a]), next(self.iters[b])
    except StopIteration:
      raise ValueError(
          f"`{names[0]}` or `{names[1]}` ran out of batches; pass iterators "
          f"that yield at least as many batches as `num_train_iters` needs "
          f"(e.g. infinite generators). The solver keeps the state of the "
          f"last completed chunk of steps."
      ) from None
    x = np.asarray(checks.check_batch(names[0], x, self.dim, self.on_sphere))
    y = np.asarray(checks.check_batch(names[1], y, self.dim, self.on_sphere))
    if x.shape[0] != y.shape[0]:
      raise ValueError(
          f"`{names[0]}` and `{names[1]}` yielded batches of {x.shape[0]} and "
          f"{y.shape[0]} points: ENOT pairs them, so they must be equal."
      )
    return x, y

  def window(self, first: int, steps: Sequence[int],
             size: int) -> StackedBatches:
    """Stack the batches of ``steps`` (consecutive) at their window positions.

    Positions of the window outside ``steps`` are masked in the chunk; they
    repeat a real batch so that every position holds valid points.

    Raises:
      ValueError: for a bad batch or an exhausted iterator, naming it.
    """
    pairs = [self._pair(0, 1) for _ in steps]
    shape = pairs[0][0].shape
    if any(p[k].shape != shape for p in pairs for k in (0, 1)):
      raise ValueError(
          "The training iterators must yield batches of one fixed size; got "
          f"sizes {sorted({p[k].shape[0] for p in pairs for k in (0, 1)})}."
      )
    offset = steps[0] - first
    xs = np.empty((size,) + shape, np.result_type(*(p[0] for p in pairs)))
    ys = np.empty((size,) + shape, np.result_type(*(p[1] for p in pairs)))
    for i in range(size):
      j = min(max(i - offset, 0), len(pairs) - 1)
      xs[i], ys[i] = pairs[j]
    return self.parallel.place_window(StackedBatches(xs, ys))

  def valid(self, count: int) -> Batch:
    """The next validation pair (on all devices with a mesh)."""
    del count
    return self.parallel.replicate(self._pair(2, 3))
