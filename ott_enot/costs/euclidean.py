r"""The Euclidean distance with finite gradients at any distance, and its
powers :math:`\|x - y\|^p / p` (the surrogate through which ENOT learns maps
for the distance)."""
import jax.numpy as jnp
import jax.tree_util as jtu

from ott.geometry import costs

from ott_enot.costs import numerics

__all__ = ["Euclidean", "EuclideanPower"]


@jtu.register_pytree_node_class
class Euclidean(costs.Euclidean):
  r"""ott's :class:`~ott.geometry.costs.Euclidean`, :math:`c(x, y) = \|x -
  y\|`, with finite gradients for points any distance apart.

  ott 0.6.0's has an infinite or NaN gradient where :math:`\|x - y\|^2`
  underflows (e.g. :math:`x = 10^{-30}`, :math:`y = 0` in float32); this
  one computes the norm with ``ott_enot.costs.numerics.norm``. It is the
  registry's ``"euclidean"``, and the solver trains with it when given ott's.
  A metric, so it has no invertible twist: ENOT trains its surrogate
  :class:`EuclideanPower` (``surrogate_p``) through the twist.

  Args:
    surrogate_p: The power :math:`p > 1` of the surrogate
      :math:`\|x - y\|^p / p` whose twist gives ENOT's map (closer to 1:
      closer to an optimal map of the distance; closer to 2: better
      conditioned).
  """

  def __init__(self, surrogate_p: float = 1.75):
    super().__init__()
    self.surrogate_p = numerics.power_above_one(
        "surrogate_p", surrogate_p, "a strictly convex surrogate"
    )

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\|x - y\|` of two points ``[d]``."""
    return numerics.norm(x - y)

  def tree_flatten(self):  # noqa: D102
    return (), (self.surrogate_p,)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del children
    return cls(*aux_data)


@jtu.register_pytree_node_class
class EuclideanPower(costs.TICost):
  r"""A power of the Euclidean distance, :math:`p > 1`.

  .. math::

    c(x, y) = h(x - y), \qquad h(z) = \tfrac1p \|z\|^p, \qquad
    h^*(w) = \tfrac1q \|w\|^q, \quad \tfrac1p + \tfrac1q = 1,

  so the twist is :math:`T(x) = x - \|\nabla f(x)\|^{q - 2}\, \nabla f(x)`
  (:meth:`~ott.geometry.costs.TICost.twist_operator`), well conditioned for
  :math:`p` away from 1. Strictly convex, so its optimal map is unique; it is
  the surrogate through which ENOT learns maps for the Euclidean distance
  (:math:`p \to 1`). ``p = 2`` is half of
  :class:`~ott.geometry.costs.SqEuclidean`. Norms by
  ``ott_enot.costs.numerics.norm`` (finite gradients at any distance).

  Args:
    p: The power, ``> 1``.
  """

  def __init__(self, p: float = 1.5):
    self.p = numerics.power_above_one("p", p, "strictly convex")

  def h(self, z: jnp.ndarray) -> jnp.ndarray:  # noqa: D102
    return numerics.norm(z) ** self.p / self.p

  def h_legendre(self, z: jnp.ndarray) -> jnp.ndarray:  # noqa: D102
    q = self.p / (self.p - 1.0)
    return numerics.norm(z) ** q / q

  def tree_flatten(self):  # noqa: D102
    return (), (self.p,)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del children
    return cls(*aux_data)
