r"""The unit sphere :math:`S^{d-1} \subset R^d`: exp and log maps, geodesic
distance, and the sphere costs.

Everything here is accurate and has finite gradients for points at any
distance, including equal points and points a subnormal distance apart
(``ott_enot.costs.numerics.norm``), and the costs are ott
:class:`~ott.geometry.costs.CostFn` pytrees, so they also work with
``PointCloud``, Sinkhorn and ott's potentials.
"""
from typing import Any

import jax.numpy as jnp
import jax.tree_util as jtu

from ott.geometry import costs

from ott_enot import checks
from ott_enot.costs import numerics
from ott_enot.costs.numerics import norm

__all__ = [
    "exp_map",
    "log_map",
    "geodesic_distance",
    "SphereGeodesic",
    "SphereGeodesicSq",
    "SphereGeodesicPower",
]


def _sinc(t: jnp.ndarray) -> jnp.ndarray:
  """:math:`\\sin(t) / t`, smooth at 0."""
  return jnp.sinc(t / jnp.pi)


def _project_tangent(x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  return v - jnp.vdot(x, v) * x


def exp_map(x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  r"""Exponential map of the unit sphere.

  .. math::

    \exp_x(v) = \cos(\|v\|)\, x + \frac{\sin \|v\|}{\|v\|}\, v,

  for :math:`v` tangent at :math:`x` (its normal part is removed first).
  Smooth at :math:`v = 0`.

  Args:
    x: Point ``[d]`` on the sphere.
    v: Vector ``[d]``.

  Returns:
    Point ``[d]`` on the sphere.
  """
  v = _project_tangent(x, v)
  t = norm(v)
  y = jnp.cos(t) * x + _sinc(t) * v
  return y / norm(y)


def log_map(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  r"""Logarithm map of the unit sphere, the inverse of :func:`exp_map`.

  .. math::

    \log_x(y) = \frac{\theta}{\sin\theta}\,(y - \langle x, y\rangle x),
    \qquad \theta = d(x, y),

  defined for :math:`y \neq -x` (within the injectivity radius :math:`\pi`).

  Args:
    x: Point ``[d]`` on the sphere.
    y: Point ``[d]`` on the sphere.

  Returns:
    Tangent vector ``[d]`` at ``x`` with norm :math:`d(x, y)`.
  """
  u = y - jnp.vdot(x, y) * x
  return u / _sinc(geodesic_distance(x, y))


def geodesic_distance(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  r"""Great-circle distance of unit vectors ``x``, ``y`` ``[d]``:

  .. math::

    d(x, y) = \arccos\langle x, y\rangle
    = 2 \operatorname{atan2}(\|x - y\|, \|x + y\|),

  evaluated with the second form, accurate near :math:`0` and :math:`\pi`,
  with finite gradients everywhere (``ott_enot.costs.numerics.norm``).
  """
  return 2.0 * jnp.arctan2(norm(x - y), norm(x + y))


class _SphereCost(costs.CostFn):
  """Base of costs on the unit sphere :math:`S^{d-1} \\subset R^d`."""

  domain = "sphere"

  @staticmethod
  def check_points(points: Any, name: str = "points") -> None:
    """Raise a ``ValueError`` if concrete ``points`` are off the sphere."""
    checks.check_on_sphere(name, points)

  def exp_map(self, x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """:func:`exp_map` after checking that ``x`` is on the sphere."""
    self.check_points(x, "x")
    return exp_map(x, v)

  def log_map(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """:func:`log_map` after checking both points are on the sphere."""
    self.check_points(x, "x")
    self.check_points(y, "y")
    return log_map(x, y)

  def geodesic_distance(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":func:`geodesic_distance` after checking both points."""
    self.check_points(x, "x")
    self.check_points(y, "y")
    return geodesic_distance(x, y)


@jtu.register_pytree_node_class
class SphereGeodesic(_SphereCost):
  r"""Geodesic (great-circle) distance on the unit sphere.

  .. math::

    c(x, y) = \arccos \langle x, y \rangle
    = 2 \operatorname{atan2}(\|x - y\|, \|x + y\|),

  evaluated with the second form, which is accurate near :math:`0` and
  :math:`\pi` and has finite gradients everywhere, including :math:`x = y`.
  A metric, so it has no invertible twist: ENOT trains its surrogate
  :class:`SphereGeodesicPower` (``surrogate_p``) through the twist, or the
  direct map on request (:func:`ott_enot.costs.twist_cost`).

  Args:
    surrogate_p: The power :math:`p > 1` of the surrogate :math:`d^p / p`
      whose twist gives ENOT's map (closer to 1: closer to an optimal map of
      :math:`d`; closer to 2: better conditioned).
  """

  def __init__(self, surrogate_p: float = 1.75):
    self.surrogate_p = numerics.power_above_one(
        "surrogate_p", surrogate_p, "a strictly convex surrogate"
    )

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Geodesic distance between unit vectors ``x`` and ``y``, ``[d]``."""
    return geodesic_distance(x, y)

  def tree_flatten(self):  # noqa: D102
    return (), (self.surrogate_p,)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del children
    return cls(*aux_data)


@jtu.register_pytree_node_class
class SphereGeodesicSq(_SphereCost):
  r"""Half squared geodesic distance on the unit sphere.

  .. math::

    c(x, y) = \tfrac12 d(x, y)^2, \qquad \nabla_x c(x, y) = -\log_x(y).

  Its twist is invertible (McCann 2001): given a potential gradient :math:`v`
  at :math:`x` (projected onto the tangent space),

  .. math::

    T(x) = \exp_x(-v),

  through the exponential map (forward) and, symmetrically, the inverse map
  from the target side; the log map recovers :math:`v` from :math:`T(x)`
  (:meth:`twist_gradient`). Valid within the injectivity radius (not for
  antipodal pairs).
  """

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Half squared geodesic distance between unit vectors, ``[d]``."""
    return 0.5 * geodesic_distance(x, y) ** 2

  def twist_operator(
      self, vec: jnp.ndarray, dual_vec: jnp.ndarray, variable: bool
  ) -> jnp.ndarray:
    r"""Invert :math:`y \mapsto \nabla_x c(x, y)` (or the second variable).

    Args:
      vec: Point ``[d]`` on the sphere (:math:`x`, or :math:`y` if
        ``variable``).
      dual_vec: Gradient ``[d]`` (its normal part is ignored).
      variable: Which variable of :math:`c` the gradient is taken in; the
        cost is symmetric, so both give :math:`\exp_{vec}(-dual\_vec)`.

    Returns:
      Point ``[d]`` on the sphere.
    """
    del variable
    return exp_map(vec, -dual_vec)

  @staticmethod
  def twist_gradient(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\nabla_x c(x, y) = -\log_x(y)`, the input of the twist."""
    return -log_map(x, y)


@jtu.register_pytree_node_class
class SphereGeodesicPower(_SphereCost):
  r"""A power of the geodesic distance on the unit sphere, :math:`p > 1`.

  .. math::

    c(x, y) = \tfrac1p\, d(x, y)^p, \qquad
    \nabla_x c(x, y) = -d(x, y)^{p - 2} \log_x(y),

  so :math:`\|\nabla_x c\| = d^{p - 1}` and the twist inverts it through the
  exponential map: given a potential gradient :math:`v` at :math:`x`
  (projected onto the tangent space), with :math:`q = p / (p - 1)`,

  .. math::

    T(x) = \exp_x\big(-\|v\|^{q - 2}\, v\big).

  Strictly convex in the distance, so its optimal map is unique; it is the
  surrogate through which ENOT learns maps for the geodesic distance
  (:class:`SphereGeodesic`, :math:`p \to 1`). ``p = 2`` is
  :class:`SphereGeodesicSq`. Valid within the injectivity radius.

  Args:
    p: The power, ``> 1``.
  """

  def __init__(self, p: float = 1.5):
    self.p = numerics.power_above_one("p", p, "strictly convex")

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """:math:`d(x, y)^p / p` of unit vectors ``[d]``."""
    return geodesic_distance(x, y) ** self.p / self.p

  def twist_operator(
      self, vec: jnp.ndarray, dual_vec: jnp.ndarray, variable: bool
  ) -> jnp.ndarray:
    r""":math:`\exp_{vec}(-\|v\|^{q - 2} v)`, :math:`v` the tangent part of
    ``dual_vec`` (symmetric cost: both variables alike)."""
    del variable
    v = _project_tangent(vec, dual_vec)
    q = self.p / (self.p - 1.0)
    return exp_map(vec, -norm(v) ** (q - 2.0) * v)

  def tree_flatten(self):  # noqa: D102
    return (), (self.p,)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del children
    return cls(*aux_data)
