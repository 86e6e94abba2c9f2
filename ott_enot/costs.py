r"""Costs for ENOT: a registry, the sphere costs, and what each cost supports.

ENOT derives the transport map :math:`T` from the ``f`` network in one of three
ways (see :mod:`ott_enot.maps`):

- ``"twist"``: :math:`T(x) = \nabla_1 c(x, \cdot)^{-1}(\nabla f(x))`, ott's
  :meth:`~ott.geometry.costs.CostFn.twist_operator`. For a translation
  invariant cost :math:`c(x, y) = h(x - y)` with :math:`h` strictly convex this
  is :math:`T(x) = x - \nabla h^*(\nabla f(x))`, so the cost must implement
  :meth:`~ott.geometry.costs.TICost.h_legendre`. Gives both directions.
- ``"correlation"``: squared Euclidean cost only; trains the equivalent
  problem with cost :math:`-\langle x, y \rangle` and convex potentials.
- ``"direct"``: the ``f`` network outputs :math:`T(x)` itself. Works with any
  cost (e.g. :class:`~ott.geometry.costs.Euclidean`), forward map only; on the
  sphere the output is normalised to unit length.

Registered costs (:func:`available_costs`):

=======================  ==========================================  ======================  ========
name                     cost                                        parameterisations       domain
=======================  ==========================================  ======================  ========
``sqeuclidean``          :math:`\|x - y\|^2` (ott ``SqEuclidean``)   twist, correlation,     R^d
                                                                     direct
``euclidean``            :math:`\|x - y\|` (ott ``Euclidean``)       direct                  R^d
``sphere_geodesic``      :math:`d(x, y) = \arccos\langle x, y\rangle`  direct                sphere
``sphere_geodesic_sq``   :math:`\tfrac12 d(x, y)^2`                  twist, direct           sphere
=======================  ==========================================  ======================  ========

Any other ott :class:`~ott.geometry.costs.TICost` with ``h_legendre`` (e.g.
``PNormP(1.5)``) supports the twist without registration;
:func:`supported_parameterisations` is the one place that answers.
"""
import dataclasses
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ott.geometry import costs
from ott.math import utils as mu

__all__ = [
    "PARAMETERISATIONS",
    "DOMAINS",
    "SPHERE_ATOL",
    "CostEntry",
    "SphereGeodesic",
    "SphereGeodesicSq",
    "register_cost",
    "get_cost",
    "available_costs",
    "cost_entry",
    "domain_of",
    "supported_parameterisations",
    "default_parameterisation",
    "has_twist",
    "sphere_exp",
    "sphere_log",
    "check_on_sphere",
]

#: All parameterisations, in order of preference for the default.
PARAMETERISATIONS: Tuple[str, ...] = ("twist", "correlation", "direct")
#: Domains a cost can live on.
DOMAINS: Tuple[str, ...] = ("euclidean", "sphere")
#: Largest :math:`|\,\|x\| - 1|` accepted for a point on the unit sphere.
SPHERE_ATOL: float = 1e-4

# ---------------------------------------------------------------------------
# The unit sphere
# ---------------------------------------------------------------------------


def check_on_sphere(
    name: str, points: Any, atol: float = SPHERE_ATOL
) -> None:
  r"""Raise if concrete ``points`` are farther than ``atol`` from the sphere.

  Traced values (inside :func:`jax.jit`) cannot be inspected and pass.

  Args:
    name: The argument's name, for the error message.
    points: Array ``[..., d]``.
    atol: Tolerance on :math:`|\,\|x\| - 1|`.

  Raises:
    ValueError: naming ``name`` and how to fix it.
  """
  if isinstance(points, jax.core.Tracer):
    return
  arr = np.asarray(points, dtype=np.float64)
  if arr.size == 0:
    return
  err = np.abs(np.linalg.norm(arr, axis=-1) - 1.0)
  worst = float(np.nanmax(err)) if np.isfinite(err).any() else np.inf
  if not np.all(err <= atol):
    raise ValueError(
        f"`{name}` has points off the unit sphere (largest | ||x|| - 1 | = "
        f"{worst:.3g} > {atol:g}); sphere costs need unit vectors: normalise "
        f"with `x / jnp.linalg.norm(x, axis=-1, keepdims=True)`."
    )


def _sinc(t: jnp.ndarray) -> jnp.ndarray:
  """:math:`\\sin(t) / t`, smooth at 0."""
  return jnp.sinc(t / jnp.pi)


def _project_tangent(x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  return v - jnp.vdot(x, v) * x


def sphere_exp(x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
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
  t = mu.norm(v)
  y = jnp.cos(t) * x + _sinc(t) * v
  return y / jnp.linalg.norm(y)


def sphere_log(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  r"""Logarithm map of the unit sphere, the inverse of :func:`sphere_exp`.

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
  theta = _geodesic(x, y)
  return u / _sinc(theta)


def _geodesic(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  # 2 atan2(|x - y|, |x + y|) = arccos <x, y> for unit vectors, accurate near
  # 0 and pi, with finite gradients everywhere (ott's norm has a custom jvp)
  return 2.0 * jnp.arctan2(mu.norm(x - y), mu.norm(x + y))


class _SphereCost(costs.CostFn):
  """Base of costs on the unit sphere :math:`S^{d-1} \\subset R^d`."""

  domain = "sphere"

  @staticmethod
  def check_points(points: Any, name: str = "points") -> None:
    """Raise a ``ValueError`` if concrete ``points`` are off the sphere."""
    check_on_sphere(name, points)

  def exp_map(self, x: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """:func:`sphere_exp` after checking that ``x`` is on the sphere."""
    self.check_points(x, "x")
    return sphere_exp(x, v)

  def log_map(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """:func:`sphere_log` after checking both points are on the sphere."""
    self.check_points(x, "x")
    self.check_points(y, "y")
    return sphere_log(x, y)

  def geodesic_distance(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`d(x, y) = \arccos\langle x, y\rangle`, after checking points."""
    self.check_points(x, "x")
    self.check_points(y, "y")
    return _geodesic(x, y)


@jtu.register_pytree_node_class
class SphereGeodesic(_SphereCost):
  r"""Geodesic (great-circle) distance on the unit sphere.

  .. math::

    c(x, y) = \arccos \langle x, y \rangle
    = 2 \operatorname{atan2}(\|x - y\|, \|x + y\|),

  evaluated with the second form, which is accurate near :math:`0` and
  :math:`\pi` and has finite gradients everywhere, including :math:`x = y`.
  A metric, so the twist is not invertible: ENOT uses the direct map.
  """

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Geodesic distance between unit vectors ``x`` and ``y``, ``[d]``."""
    return _geodesic(x, y)


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
    return 0.5 * _geodesic(x, y) ** 2

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
    return sphere_exp(vec, -dual_vec)

  @staticmethod
  def twist_gradient(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\nabla_x c(x, y) = -\log_x(y)`, the input of the twist."""
    return -sphere_log(x, y)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CostEntry:
  """What ENOT knows about a registered cost.

  Attributes:
    name: Registry name.
    factory: ``factory(**kwargs) -> CostFn``.
    cost_type: The class the factory builds (used to look costs up).
    parameterisations: Supported parameterisations, in order of preference.
    domain: ``"euclidean"`` (:math:`R^d`) or ``"sphere"`` (unit sphere).
    symmetric: The cost claims :math:`c(x, y) = c(y, x)`.
    metric: The cost claims to be a metric (symmetric, triangle inequality).
  """
  name: str
  factory: Callable[..., costs.CostFn]
  cost_type: type
  parameterisations: Tuple[str, ...]
  domain: str
  symmetric: bool = False
  metric: bool = False


_REGISTRY: Dict[str, CostEntry] = {}


def register_cost(
    name: str,
    factory: Callable[..., costs.CostFn],
    *,
    parameterisations: Tuple[str, ...],
    domain: str = "euclidean",
    cost_type: Optional[type] = None,
    symmetric: bool = False,
    metric: bool = False,
    overwrite: bool = False,
    check: bool = True,
) -> CostEntry:
  r"""Register a cost for ENOT under ``name``, after checking its claims.

  With ``check=True`` the cost ``factory()`` builds is property-tested first
  (:func:`ott_enot.testing.check_cost`, 20 examples per property, seed 0,
  a few seconds): every property its parameterisations, domain and
  ``symmetric``/``metric`` claims imply (the twist inverts the cost's
  gradient, the Legendre transform satisfies Fenchel–Young with equality at
  :math:`\nabla h`, gradients are finite on the diagonal, ...). A cost that
  fails is refused, with the property and its counterexample.

  Args:
    name: Name for :func:`get_cost`.
    factory: A :class:`~ott.geometry.costs.CostFn` subclass or a function
      returning one.
    parameterisations: Subset of :data:`PARAMETERISATIONS` the cost supports,
      most preferred first (the first is the solver's default).
    domain: ``"euclidean"`` or ``"sphere"``.
    cost_type: The class ``factory`` builds; default: ``factory`` itself if
      it is a class, else ``type(factory())``.
    symmetric: Claim :math:`c(x, y) = c(y, x)` (checked).
    metric: Claim the cost is a metric (checked: symmetry and the triangle
      inequality).
    overwrite: Replace an existing entry of the same name.
    check: Property-test the claims before registering (needs
      ``hypothesis``: ``pip install "ott-enot[testing]"``).

  Returns:
    The new :class:`CostEntry`.

  Raises:
    ValueError: for an unknown parameterisation or domain, a taken name, or
      a cost that fails a property it claims (the message has the report).
    TypeError: if the factory does not build an ott ``CostFn``.
    ImportError: if ``check=True`` and hypothesis is not installed.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
  if name in _REGISTRY and not overwrite:
    raise ValueError(
        f"A cost named {name!r} is registered already; pass overwrite=True "
        f"to replace it."
    )
  params = tuple(parameterisations)
  unknown = [p for p in params if p not in PARAMETERISATIONS]
  if not params or unknown:
    raise ValueError(
        f"`parameterisations` must be a non-empty subset of "
        f"{PARAMETERISATIONS}, got {parameterisations!r}."
    )
  if domain not in DOMAINS:
    raise ValueError(f"`domain` must be one of {DOMAINS}, got {domain!r}.")
  if cost_type is None:
    cost_type = factory if isinstance(factory, type) else type(factory())
  if not (isinstance(cost_type, type) and issubclass(cost_type, costs.CostFn)):
    raise TypeError(
        f"`factory` must build an `ott.geometry.costs.CostFn`, got "
        f"{cost_type!r}."
    )
  entry = CostEntry(
      name, factory, cost_type, params, domain, bool(symmetric or metric),
      bool(metric)
  )
  if check:
    _check_claims(entry)
  _REGISTRY[name] = entry
  return entry


def _check_claims(entry: CostEntry) -> None:
  from ott_enot import testing  # pylint: disable=import-outside-toplevel
  report = testing.check_cost(
      entry.factory(),
      parameterisations=entry.parameterisations,
      domain=entry.domain,
      symmetric=entry.symmetric,
      metric=entry.metric,
      max_examples=20,
      seed=0,
  )
  if not report.passed:
    failed = ", ".join(r.name for r in report.failures)
    raise ValueError(
        f"register_cost({entry.name!r}) refused: the cost fails {failed}, "
        f"which its claims (parameterisations={entry.parameterisations}, "
        f"domain={entry.domain!r}, symmetric={entry.symmetric}, "
        f"metric={entry.metric}) need. Fix the cost or its claims "
        f"(check=False registers it unchecked).\n{report}"
    )


def get_cost(name: str, **kwargs: Any) -> costs.CostFn:
  """Build the registered cost ``name`` (``kwargs`` go to its factory)."""
  try:
    entry = _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"Unknown cost {name!r}; available: {sorted(_REGISTRY)} (or register "
        f"one with `ott_enot.costs.register_cost`)."
    ) from None
  return entry.factory(**kwargs)


def available_costs() -> Mapping[str, CostEntry]:
  """Read-only mapping of registered names to their :class:`CostEntry`."""
  return types.MappingProxyType(dict(_REGISTRY))


def cost_entry(cost_fn: costs.CostFn) -> Optional[CostEntry]:
  """The registry entry of ``cost_fn``'s exact class, if any."""
  for entry in _REGISTRY.values():
    if type(cost_fn) is entry.cost_type:
      return entry
  return None


def _check_cost(cost_fn: Any) -> None:
  if not isinstance(cost_fn, costs.CostFn):
    raise TypeError(
        f"`cost_fn` must be an `ott.geometry.costs.CostFn`, got "
        f"{type(cost_fn).__name__}."
    )


def domain_of(cost_fn: costs.CostFn) -> str:
  """``"sphere"`` for costs on the unit sphere, ``"euclidean"`` otherwise."""
  _check_cost(cost_fn)
  entry = cost_entry(cost_fn)
  if entry is not None:
    return entry.domain
  return getattr(cost_fn, "domain", "euclidean")


# ott costs between Gaussians or time series, not points of R^d
_STRUCTURED_COSTS = (costs.Bures, costs.UnbalancedBures, costs.SoftDTW)


def _overrides(cost_fn: costs.CostFn, name: str, base: type) -> bool:
  return getattr(type(cost_fn), name, None) is not getattr(base, name)


def has_twist(cost_fn: costs.CostFn) -> bool:
  """Whether ``cost_fn`` has an invertible twist in both variables.

  True for :class:`~ott.geometry.costs.TICost` subclasses that implement
  :meth:`~ott.geometry.costs.TICost.h_legendre` (e.g.
  :class:`~ott.geometry.costs.SqEuclidean`,
  :class:`~ott.geometry.costs.PNormP` with ``p > 1``), and for other costs
  that override :meth:`~ott.geometry.costs.CostFn.twist_operator`.
  """
  if isinstance(cost_fn, costs.TICost):
    return _overrides(cost_fn, "h_legendre", costs.TICost)
  return _overrides(cost_fn, "twist_operator", costs.CostFn)


def supported_parameterisations(cost_fn: costs.CostFn) -> Tuple[str, ...]:
  """Parameterisations of the transport map that ENOT supports for a cost.

  The registry's entry for the cost's class if there is one; otherwise
  ``"twist"`` when :func:`has_twist`, and always ``"direct"``.

  Args:
    cost_fn: An ott cost function.

  Returns:
    A tuple, a subset of :data:`PARAMETERISATIONS`, most preferred first;
    empty for ott costs between structured objects (``Bures``,
    ``UnbalancedBures``, ``SoftDTW``), which ENOT cannot learn maps for.
  """
  _check_cost(cost_fn)
  entry = cost_entry(cost_fn)
  if entry is not None:
    return entry.parameterisations
  if isinstance(cost_fn, _STRUCTURED_COSTS):
    return ()
  return ("twist", "direct") if has_twist(cost_fn) else ("direct",)


def default_parameterisation(cost_fn: costs.CostFn) -> str:
  """The parameterisation used when the user does not choose one.

  The twist when the cost has one (both maps, potentials that are true
  Kantorovich potentials), the direct map otherwise.
  """
  return supported_parameterisations(cost_fn)[0]


# The built-in costs are property-tested by the test suite (tests/
# test_cost_properties.py), not at every import.
register_cost(
    "sqeuclidean",
    costs.SqEuclidean,
    parameterisations=("twist", "correlation", "direct"),
    symmetric=True,
    check=False,
)
register_cost(
    "euclidean", costs.Euclidean, parameterisations=("direct",), metric=True,
    check=False
)
register_cost(
    "sphere_geodesic",
    SphereGeodesic,
    parameterisations=("direct",),
    domain="sphere",
    metric=True,
    check=False,
)
register_cost(
    "sphere_geodesic_sq",
    SphereGeodesicSq,
    parameterisations=("twist", "direct"),
    domain="sphere",
    symmetric=True,
    check=False,
)
