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

Beyond one machine (not tested here): call ``jax.distributed.initialize()``
in every process first, then build the mesh over all processes' devices
(``batch_mesh(jax.devices())``) and train with ``fit`` (batches are sampled
on the devices, so every process runs the same program on the same data).
"""
import dataclasses
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_mesh", "DataParallel"]


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

  def replicate(self, tree: Any) -> Any:
    """Place every leaf of ``tree`` on all devices (parameters, data)."""
    if self.mesh is None:
      return jax.device_put(tree)
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
    the devices."""
    if self.mesh is None:
      return jax.device_put(tree)
    return jax.device_put(tree, self._sharding(None, self.mesh.axis_names))

  def constrain_batch(self, tree: Any) -> Any:
    """Inside jitted code: batches ``[n, d]`` split along ``n``."""
    if self.mesh is None:
      return tree
    return jax.lax.with_sharding_constraint(
        tree, self._sharding(self.mesh.axis_names)
    )
