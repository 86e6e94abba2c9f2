r"""The registry of costs: what each cost supports, where its points live,
what it claims, and which cost's twist gives ENOT's map.

ENOT derives the transport map :math:`T` from the ``f`` network in one of three
ways (one class each in :mod:`ott_enot.model.parameterisations`):

- ``"twist"``: :math:`T(x) = \nabla_1 c(x, \cdot)^{-1}(\nabla f(x))`, ott's
  :meth:`~ott.geometry.costs.CostFn.twist_operator`. For a translation
  invariant cost :math:`c(x, y) = h(x - y)` with :math:`h` strictly convex this
  is :math:`T(x) = x - \nabla h^*(\nabla f(x))`, so the cost must implement
  :meth:`~ott.geometry.costs.TICost.h_legendre`. A metric cost :math:`d` has no
  invertible twist: it trains the twist of its registered *surrogate*
  :math:`d^p / p` (:func:`twist_cost`). Gives both directions.
- ``"correlation"``: squared Euclidean cost only; trains the equivalent
  problem with cost :math:`-\langle x, y \rangle` and convex potentials.
- ``"direct"``: the ``f`` network outputs :math:`T(x)` itself. Works with any
  cost, forward map only; on the sphere the output is normalised to unit
  length.

Registered costs (:func:`available_costs`):

.. list-table::
   :header-rows: 1

   * - name
     - cost
     - parameterisations
     - domain
   * - ``sqeuclidean``
     - :math:`\|x - y\|^2` (ott ``SqEuclidean``)
     - twist, correlation, direct
     - :math:`\mathbb{R}^d`
   * - ``euclidean``
     - :math:`\|x - y\|` (:class:`Euclidean`)
     - twist (surrogate :math:`d^{1.75}/1.75`), direct
     - :math:`\mathbb{R}^d`
   * - ``euclidean_power``
     - :math:`\|x - y\|^p / p`
     - twist, direct
     - :math:`\mathbb{R}^d`
   * - ``sphere_geodesic``
     - :math:`d(x, y) = \arccos\langle x, y\rangle`
     - twist (surrogate), direct
     - sphere
   * - ``sphere_geodesic_sq``
     - :math:`\tfrac12 d(x, y)^2`
     - twist, direct
     - sphere
   * - ``sphere_geodesic_power``
     - :math:`d(x, y)^p / p`
     - twist, direct
     - sphere

Any other ott :class:`~ott.geometry.costs.TICost` with ``h_legendre`` (e.g.
``PNormP(1.5)``) supports the twist without registration;
:func:`supported_parameterisations` is the one place that answers.
"""
import dataclasses
import types
from typing import (
    Any, Callable, Dict, Hashable, Mapping, Optional, Sequence, Tuple,
)

import jax

from ott.geometry import costs

from ott_enot import checks
from ott_enot.checks import DOMAINS
from ott_enot.costs.euclidean import Euclidean, EuclideanPower
from ott_enot.costs.sphere import (
    SphereGeodesic,
    SphereGeodesicPower,
    SphereGeodesicSq,
)

__all__ = [
    "PARAMETERISATIONS",
    "CostEntry",
    "register_cost",
    "get_cost",
    "available_costs",
    "cost_entry",
    "canonical_cost",
    "cost_key",
    "domain_of",
    "supported_parameterisations",
    "default_parameterisation",
    "has_twist",
    "twist_cost",
    "claimed_properties",
]

#: All parameterisations, in order of preference for the default.
PARAMETERISATIONS: Tuple[str, ...] = ("twist", "correlation", "direct")


#: ott costs whose numerics this package fixes, and the fixed subclass.
_FIXED: Dict[type, type] = {costs.Euclidean: Euclidean}


def canonical_cost(cost_fn: costs.CostFn) -> costs.CostFn:
  """The same cost with this package's numerical fixes: :class:`Euclidean`
  for ott's :class:`~ott.geometry.costs.Euclidean`, else ``cost_fn``."""
  fixed = _FIXED.get(type(cost_fn))
  return cost_fn if fixed is None else fixed()


def cost_key(cost_fn: costs.CostFn) -> Hashable:
  """A cost as a hashable value: its class, pytree structure and parameters.

  ott's costs compare by identity (``PNormP(1.5) != PNormP(1.5)``); keyed by
  this, equal costs give equal static configurations and share compiled
  programs. A cost that is not a pytree of concrete arrays (an unregistered
  subclass, traced parameters) is keyed by identity.
  """
  leaves, treedef = jax.tree_util.tree_flatten(cost_fn)
  values = tuple(checks.array_key(leaf) for leaf in leaves)
  if any(leaf is cost_fn for leaf in leaves) or any(
      isinstance(v, checks.Identity) for v in values):
    return checks.Identity(cost_fn)
  key = (type(cost_fn), treedef, values)
  try:
    hash(key)  # the treedef holds the cost's aux data
  except TypeError:
    return checks.Identity(cost_fn)
  return key


def claimed_properties(
    cost_fn: costs.CostFn,
    parameterisations: Sequence[str],
    *,
    symmetric: bool = False,
    metric: bool = False,
) -> Tuple[str, ...]:
  """The properties a cost claims, given what ENOT is asked to do with it.

  Every cost: ``nonnegative``, ``zero_diagonal``, ``finite_gradients``,
  ``c_conjugacy``; ``symmetric`` when claimed (and for metrics), ``triangle``
  for metrics; the twist, for a cost with one of its own (:func:`has_twist`):
  ``twist_forward``, ``twist_inverse`` and, for a
  :class:`~ott.geometry.costs.TICost` with ``h_legendre``, ``fenchel_young``
  (a metric cost's twist is its surrogate's, checked as a cost of its own);
  the correlation form: ``correlation``.
  """
  unknown = [p for p in parameterisations
             if p not in PARAMETERISATIONS]
  if unknown:
    raise ValueError(
        f"`parameterisations` must be a subset of "
        f"{PARAMETERISATIONS}, got {tuple(parameterisations)!r}."
    )
  names = ["nonnegative", "zero_diagonal", "finite_gradients"]
  if symmetric or metric:
    names.append("symmetric")
  if metric:
    names.append("triangle")
  if "twist" in parameterisations and has_twist(cost_fn):
    # a metric cost's twist is its surrogate's, whose claims are its own
    if isinstance(cost_fn, costs.TICost):
      names.append("fenchel_young")
    names += ["twist_forward", "twist_inverse"]
  if "correlation" in parameterisations:
    names.append("correlation")
  names.append("c_conjugacy")
  return tuple(names)


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
    surrogate: For a metric cost :math:`d` without a twist of its own:
      ``surrogate(cost_fn)`` builds the strictly convex cost :math:`h(d)`
      (e.g. :class:`EuclideanPower`) through whose twist ENOT learns the map
      (``"twist"``); :obj:`None` otherwise. See :func:`twist_cost`.
  """
  name: str
  factory: Callable[..., costs.CostFn]
  cost_type: type
  parameterisations: Tuple[str, ...]
  domain: str
  symmetric: bool = False
  metric: bool = False
  surrogate: Optional[Callable[[costs.CostFn], costs.CostFn]] = None


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
    surrogate: Optional[Callable[[costs.CostFn], costs.CostFn]] = None,
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
    surrogate: For a metric cost with ``"twist"`` among its
      parameterisations but no twist of its own: ``surrogate(cost)`` builds
      the strictly convex cost, an increasing convex function of it (e.g.
      :class:`EuclideanPower` for the Euclidean distance), whose twist gives
      the map (its twist claims are checked too).
    overwrite: Replace an existing entry of the same name.
    check: Property-test the claims before registering.

  Returns:
    The new :class:`CostEntry`.

  Raises:
    ValueError: for an unknown parameterisation or domain, a taken name, or
      a cost that fails a property it claims (the message has the report).
    TypeError: if the factory does not build an ott ``CostFn``.
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
      bool(metric), surrogate
  )
  if "twist" in params and not (surrogate is not None
                                or _type_has_twist(cost_type)):
    raise ValueError(
        f"`parameterisations` of {name!r} include 'twist', but the cost has "
        f"no twist of its own (`h_legendre` or `twist_operator`): pass a "
        f"`surrogate`, or leave 'twist' out."
    )
  if check:
    _check_claims(entry)
  _REGISTRY[name] = entry
  return entry


def _check_claims(entry: CostEntry) -> None:
  # the property engine needs hypothesis: loaded only when a cost is checked
  from ott_enot.costs import properties  # pylint: disable=import-outside-toplevel
  cost = entry.factory()
  reports = [(cost, entry.parameterisations, entry.symmetric, entry.metric)]
  if entry.surrogate is not None and "twist" in entry.parameterisations:
    reports.append(
        (entry.surrogate(cost), ("twist",), entry.symmetric, False)
    )
  for cost, parameterisations, symmetric, metric in reports:
    report = properties.search(
        cost,
        claimed_properties(
            cost, parameterisations, symmetric=symmetric, metric=metric
        ),
        domain=entry.domain,
        parameterisations=parameterisations,
        max_examples=20,
        seed=0,
    )
    _refuse_unless_passed(entry, report)


def _refuse_unless_passed(entry: CostEntry, report: Any) -> None:
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
  """The registry entry of ``cost_fn``'s exact class (for ott's
  :class:`~ott.geometry.costs.Euclidean`, of :class:`Euclidean`), if any."""
  cost_type = _FIXED.get(type(cost_fn), type(cost_fn))
  for entry in _REGISTRY.values():
    if cost_type is entry.cost_type:
      return entry
  return None


def domain_of(cost_fn: costs.CostFn) -> str:
  """``"sphere"`` for costs on the unit sphere, ``"euclidean"`` otherwise."""
  checks.check_cost_fn(cost_fn)
  entry = cost_entry(cost_fn)
  if entry is not None:
    return entry.domain
  return getattr(cost_fn, "domain", "euclidean")


# ott costs between Gaussians or time series, not points of R^d
_STRUCTURED_COSTS = (costs.Bures, costs.UnbalancedBures, costs.SoftDTW)


def _overrides(cost_type: type, name: str, base: type) -> bool:
  return getattr(cost_type, name, None) is not getattr(base, name)


def _type_has_twist(cost_type: type) -> bool:
  if issubclass(cost_type, costs.TICost):
    return _overrides(cost_type, "h_legendre", costs.TICost)
  return _overrides(cost_type, "twist_operator", costs.CostFn)


def has_twist(cost_fn: costs.CostFn) -> bool:
  """Whether ``cost_fn`` has an invertible twist in both variables.

  True for :class:`~ott.geometry.costs.TICost` subclasses that implement
  :meth:`~ott.geometry.costs.TICost.h_legendre` (e.g.
  :class:`~ott.geometry.costs.SqEuclidean`,
  :class:`~ott.geometry.costs.PNormP` with ``p > 1``), and for other costs
  that override :meth:`~ott.geometry.costs.CostFn.twist_operator`.
  """
  return _type_has_twist(type(cost_fn))


def twist_cost(cost_fn: costs.CostFn) -> costs.CostFn:
  r"""The cost whose twist gives ENOT's ``"twist"`` map for ``cost_fn``.

  ``cost_fn`` itself when it has a twist (:func:`has_twist`); for a metric
  cost registered with a ``surrogate`` (the Euclidean distance, the
  geodesic distance on the sphere), the surrogate: a strictly convex
  increasing function of the metric, :math:`c_p = d^p / p` with :math:`p`
  the cost's ``surrogate_p`` (1.75 by default). Its optimal map is unique and
  is a transport map, while the metric's own c-transform has a whole segment of minimisers
  (every point of a transport ray), so that training on the metric directly
  collapses mass onto the near end of each ray; as :math:`p \to 1` the
  surrogate's map tends to an optimal map of the metric.

  Raises:
    ValueError: if ``cost_fn`` has neither.
  """
  if has_twist(cost_fn):
    return cost_fn
  entry = cost_entry(cost_fn)
  if entry is None or entry.surrogate is None:
    raise ValueError(
        f"{type(cost_fn).__name__} has no invertible twist and no registered "
        f"surrogate; use parameterisation='direct'."
    )
  return entry.surrogate(cost_fn)


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
  checks.check_cost_fn(cost_fn)
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
    "euclidean",
    Euclidean,
    parameterisations=("twist", "direct"),
    metric=True,
    surrogate=lambda cost: EuclideanPower(cost.surrogate_p),
    check=False,
)
register_cost(
    "sphere_geodesic",
    SphereGeodesic,
    parameterisations=("twist", "direct"),
    domain="sphere",
    metric=True,
    surrogate=lambda cost: SphereGeodesicPower(cost.surrogate_p),
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
register_cost(
    "euclidean_power",
    EuclideanPower,
    parameterisations=("twist", "direct"),
    symmetric=True,
    check=False,
)
register_cost(
    "sphere_geodesic_power",
    SphereGeodesicPower,
    parameterisations=("twist", "direct"),
    domain="sphere",
    symmetric=True,
    check=False,
)
