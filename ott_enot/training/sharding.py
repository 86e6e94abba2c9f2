r"""Data-parallel training over a :class:`jax.sharding.Mesh` of devices.

ENOT's step is a pure function of ``(state, batch)`` whose loss is a mean over
the batch, so data parallelism is JAX's own SPMD partitioning of the one
compiled chunk program: every batch ``[n, d]`` is split along its first axis
over all devices of the mesh (``NamedSharding(mesh, P(axes))``), the
parameters and optimiser states are replicated (``P()``), and XLA inserts the
all-reduce of the gradient means. Nothing else changes: the result equals a
one-device run up to the order of floating-point sums.

.. math::

  \nabla_\theta \frac{1}{n} \sum_{i=1}^n \ell_\theta(x_i, y_i)
  = \frac{1}{D} \sum_{k=1}^{D} \nabla_\theta \frac{D}{n}
  \sum_{i \in \text{shard}_k} \ell_\theta(x_i, y_i),
  \qquad D = \text{number of devices}, \; D \mid n.

Batches sampled on the device (:meth:`~ott_enot.ExpectileNeuralDual.fit`)
are drawn shard by shard: the data are replicated, each device draws and
gathers only its rows of the batch (with ``jax_threefry_partitionable``, the
default since JAX 0.5; the numbers are the same whatever the sharding). Batches from iterators are stacked
on the host and placed with the batch axis split (``P(None, axes)`` for a
chunk ``[L, n, d]``).

Beyond one process (JAX's multi-controller runtime: one process per host,
or several on one machine): call :func:`jax.distributed.initialize` in every
process first, then build the mesh over all processes' devices
(:func:`batch_mesh` uses :func:`jax.devices`, which lists them all). Every
process runs the same program. Replicated values (parameters, a sampler's
data) must be the same on every process, and are placed on each process's
own devices only (:meth:`DataParallel.replicate`); with ``fit`` each device
draws its rows of the batch, so nothing is gathered. Iterator batches are
each process's *local* rows of the global batch, assembled with
:func:`jax.make_array_from_process_local_data`
(:meth:`DataParallel.place_chunk`): the global batch is the processes'
batches concatenated in process order. Checks of host data agree across
processes (:meth:`DataParallel.agree`), so that bad input on one process is
an error on all of them, not a hang.
"""
import dataclasses
import zlib
from typing import Any, Callable, Dict, Optional, Sequence, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_mesh", "DataParallel", "is_main_process",
           "ProcessFailedError", "fingerprint"]

#: Bytes of an error message shared between processes by
#: :meth:`DataParallel.agree`.
_MESSAGE_BYTES = 2048
_MAX_VALUES = 8
T = TypeVar("T")


class ProcessFailedError(RuntimeError):
  """A computation across processes failed: another process of the run
  stopped (killed, out of memory, or raised outside the training loop).

  Attributes:
    step: The last step applied to the state this process keeps (the
      solver's state, unharmed); the latest complete checkpoint resumes the
      run.
  """

  def __init__(self, step: int, cause: BaseException):
    self.step = step
    super().__init__(
        f"Training across {jax.process_count()} processes stopped after "
        f"step {step}: a collective with another process failed, so another "
        f"process probably died (killed, out of memory, or raised outside "
        f"the training loop; see its log). This process keeps the state "
        f"after step {step}; resume from the latest checkpoint once every "
        f"process is back. Cause: {cause}"
    )


def is_main_process() -> bool:
  """Whether this is process 0, the one that shows progress and warnings
  (always :obj:`True` in a single-process run)."""
  return jax.process_index() == 0


def fingerprint(tree: Any) -> int:
  """A 31-bit checksum (CRC-32) of every array of ``tree`` (typed keys by
  their data): equal trees, equal fingerprints."""
  crc = 0
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
        leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    crc = zlib.crc32(np.ascontiguousarray(np.asarray(leaf)).tobytes(), crc)
  return crc & 0x7FFFFFFF


def _global(leaf: Any, sharding: NamedSharding) -> jax.Array:
  """``leaf`` (the same value on every process) as a global array placed by
  ``sharding``, each process writing only its own devices' shards."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    return jax.device_put(leaf, sharding)  # already global: reshard
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
      leaf.dtype, jax.dtypes.prng_key
  ):
    data = _global(jax.random.key_data(leaf), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
  host = np.asarray(leaf)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A one-axis mesh ``("batch",)`` over ``devices`` (default: all devices).

  ``ExpectileNeuralDual(..., mesh=ott_enot.batch_mesh())`` trains on all
  devices of the machine.

  Args:
    devices: The devices; default :func:`jax.devices`.

  Returns:
    A :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("`devices` is empty: pass at least one jax.Device.")
  return Mesh(np.asarray(devices), ("batch",))


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """Where the training loop's arrays live (hashable; part of the loop config).

  With ``mesh=None`` everything goes to the default device and batches are
  not constrained. With a mesh, batches are split over all of
  its axes and everything else is replicated.

  Attributes:
    mesh: A :class:`jax.sharding.Mesh`, or :obj:`None` for one device.
  """
  mesh: Optional[Mesh] = None

  @classmethod
  def create(cls, mesh: Any) -> "DataParallel":
    """Checked constructor.

    Raises:
      TypeError: if ``mesh`` is not a :class:`jax.sharding.Mesh` or None.
    """
    if mesh is not None and not isinstance(mesh, Mesh):
      raise TypeError(
          "`mesh` must be a jax.sharding.Mesh (e.g. `ott_enot.batch_mesh()` "
          f"for all devices) or None, got {type(mesh).__name__}."
      )
    return cls(mesh)

  @property
  def num_devices(self) -> int:
    """Devices a batch is split over (1 without a mesh)."""
    return 1 if self.mesh is None else int(self.mesh.devices.size)

  @property
  def multi_process(self) -> bool:
    """Whether the mesh spans the devices of more than one process."""
    return self.mesh is not None and len(
        {d.process_index for d in self.mesh.devices.flat}
    ) > 1

  @property
  def local_devices(self) -> int:
    """Devices of the mesh that this process drives."""
    if self.mesh is None:
      return 1
    return sum(d.process_index == jax.process_index()
               for d in self.mesh.devices.flat)

  @property
  def platform(self) -> str:
    """``"cpu"``, ``"gpu"``, ``"tpu"``: the platform of the devices."""
    if self.mesh is None:
      return jax.default_backend()
    return self.mesh.devices.flat[0].platform

  def _sharding(self, *spec: Any) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(*spec))

  def check_batch_size(self, size: int, what: str) -> None:
    """Raise unless a batch of ``size`` points splits evenly over the devices.

    Args:
      size: Points per batch.
      what: Where the batch size comes from, for the message.

    Raises:
      ValueError: naming ``what``, the device count and the nearest sizes.
    """
    n = self.num_devices
    if size % n:
      lower, upper = (size // n) * n, (size // n + 1) * n
      sizes = f"{lower} or {upper}" if lower else f"{upper}"
      raise ValueError(
          f"{what} is {size}, which does not split over the {n} devices of "
          f"`mesh`: use a multiple of {n} (e.g. {sizes}), or a mesh of fewer "
          f"devices."
      )

  def check_local_batch_size(self, size: int, what: str) -> None:
    """Raise unless this process's part of a batch, ``size`` points, splits
    over this process's devices of the mesh (several processes: each yields
    its local rows of the global batch).

    Raises:
      ValueError: naming ``what``, the process, the local and global sizes.
    """
    if not self.multi_process:
      return self.check_batch_size(size, what)
    n, procs = self.local_devices, jax.process_count()
    if size % n:
      raise ValueError(
          f"{what} is {size} on process {jax.process_index()} of {procs}, "
          f"which does not split over its {n} devices of `mesh`: each "
          f"process yields its local part of the global batch (global = "
          f"{procs} x local), so the local batch must be a multiple of {n}."
      )

  def agree(self, error: Optional[str] = None,
            same: Optional[Dict[str, int]] = None) -> None:
    """Raise on every process if any process found an error.

    A check of host data (a batch, its size) runs on each process; a
    process that raised alone would leave the others waiting in the next
    collective. With several processes, this gathers every process's
    message and values (a small all-gather of a fixed size: all processes
    must call it at the same point) and raises the same error on all of
    them, naming the process. With one process it raises ``error``.

    Args:
      error: This process's error message, or :obj:`None`.
      same: Up to 8 integers that must be equal on every process, by what
        they are (e.g. ``{"batch size of `trainloader_source`": 64}``).

    Raises:
      ValueError: the first process's error, or which value differs and
        its value on each process.
    """
    same = dict(same or {})
    if not self.multi_process:
      if error is not None:
        raise ValueError(error)
      return
    if len(same) > _MAX_VALUES:
      raise ValueError(f"At most {_MAX_VALUES} values can be compared.")
    buf = np.zeros((_MESSAGE_BYTES + _MAX_VALUES,), np.int32)
    if error is not None:
      text = f"On process {jax.process_index()}: {error}".encode()
      text = text[:_MESSAGE_BYTES - 1]
      buf[:len(text)] = np.frombuffer(text, np.uint8)
    buf[_MESSAGE_BYTES:_MESSAGE_BYTES + len(same)] = list(same.values())
    everyone = np.asarray(multihost_utils.process_allgather(buf))
    for row in everyone:
      if row[0]:
        text = row[:_MESSAGE_BYTES].astype(np.uint8).tobytes().rstrip(b"\0")
        raise ValueError(text.decode(errors="replace"))
    for j, what in enumerate(same):
      column = everyone[:, _MESSAGE_BYTES + j]
      if not np.all(column == column[0]):
        values = ", ".join(
            f"process {i}: {v}" for i, v in enumerate(column))
        raise ValueError(
            f"Every process must have the same {what}; got {values}."
        )

  def checked(self, check: Callable[[], T],
              same: Optional[Callable[[T], Dict[str, int]]] = None) -> T:
    """``check()``, a check of this process's host data, agreed across
    processes (:meth:`agree`): an error on one process raises on all.

    Args:
      check: Returns a value, or raises :class:`ValueError` /
        :class:`TypeError` for bad data.
      same: Of the value: integers that must agree across processes.

    Returns:
      ``check()``'s value.
    """
    if not self.multi_process:
      return check()  # the exception as it is, traceback included
    try:
      value, error = check(), None
    except (ValueError, TypeError) as e:
      value, error = None, str(e)
    self.agree(error, None if error is not None or same is None
               else same(value))
    return value

  def replicate(self, tree: Any) -> Any:
    """Place every leaf of ``tree`` on all devices (parameters, data).

    With several processes, every process must pass the same values; each
    places them on its own devices (nothing is sent between processes).
    """
    if self.mesh is None:
      return jax.device_put(tree)
    if self.multi_process:
      return jax.tree.map(lambda a: _global(a, self._sharding()), tree)
    return jax.device_put(tree, self._sharding())

  def replicated_like(self, tree: Any) -> Any:
    """Abstract values of ``tree``'s leaves placed as :meth:`replicate` does.

    :class:`jax.ShapeDtypeStruct` leaves (with the replicated sharding on a
    mesh), to compile a program ahead of time for arguments that will be
    replicated.
    """
    sharding = None if self.mesh is None else self._sharding()
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(
            np.shape(a), jax.dtypes.canonicalize_dtype(a.dtype),
            sharding=sharding
        ), tree
    )

  def place_chunk(self, tree: Any) -> Any:
    """Place a chunk's stacked batches ``[L, n, d]`` with ``n`` split over
    the devices.

    With several processes, ``n`` is this process's rows: the global batch
    is every process's rows, concatenated in process order
    (:func:`jax.make_array_from_process_local_data`).
    """
    if self.mesh is None:
      return jax.device_put(tree)
    return self._place_split(tree, self._sharding(None, self.mesh.axis_names))

  def _place_split(self, tree: Any, sharding: NamedSharding) -> Any:
    if self.multi_process:
      return jax.tree.map(
          lambda a: jax.make_array_from_process_local_data(
              sharding, np.asarray(a)), tree)
    return jax.device_put(tree, sharding)

  def global_rows(self, rows: int) -> int:
    """Rows of a global batch whose local parts have ``rows`` rows (each
    process yields ``rows``)."""
    return rows * (jax.process_count() if self.multi_process else 1)

  def place_batch(self, tree: Any) -> Any:
    """Place host batches ``[n, d]`` (validation) on all devices; with
    several processes ``n`` is this process's rows, and every process gets
    the global batch (the local parts gathered in process order)."""
    if self.multi_process:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    return self.replicate(tree)

  def constrain_batch(self, tree: Any) -> Any:
    """Inside jitted code: batches ``[n, d]`` split along ``n``."""
    if self.mesh is None:
      return tree
    return jax.lax.with_sharding_constraint(
        tree, self._sharding(self.mesh.axis_names)
    )
