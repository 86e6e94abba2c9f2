r"""Property tests of OT costs: does a cost do what ENOT will assume of it?

ENOT trusts a cost's conjugacy claims: with the twist parameterisation the map
is :math:`T(x) = \nabla_1 c(x, \cdot)^{-1}(\nabla f(x))`, computed by the cost's
:meth:`~ott.geometry.costs.CostFn.twist_operator`; a wrong twist or a wrong
Legendre transform trains silently to a wrong map. :func:`check_cost` searches
for counterexamples to every property a cost claims, with `hypothesis
<https://hypothesis.readthedocs.io>`_ (shrinking each failure to a small
example), and returns a :class:`CostReport`; :func:`assert_cost` raises it as
an ``AssertionError`` inside a test suite::

  from ott_enot import testing

  def test_my_cost():
    testing.assert_cost(MyCost(), parameterisations=("twist", "direct"))

:func:`ott_enot.costs.register_cost` runs a quick :func:`check_cost` and refuses
a cost that fails its claims.

The properties (:data:`~ott_enot.costs.properties.PROPERTIES`;
:func:`claimed_properties` says which a cost claims) are checked in float32,
each with a tolerance that scales with the values involved (stated in the
statements of :data:`~ott_enot.costs.properties.PROPERTIES`):

============================  ==================================================
property                      claimed by
============================  ==================================================
``nonnegative``               every cost: :math:`c(x, y) \ge 0`
``zero_diagonal``             every cost: :math:`c(x, x) = 0`
``finite_gradients``          every cost: :math:`c, \nabla_x c, \nabla_y c`
                              finite at :math:`(x, y)` and at :math:`(x, x)`
``c_conjugacy``               every cost, on finite sets: :math:`f = g^c`
                              is feasible, :math:`g^{cc} \ge g`,
                              :math:`g^{ccc} = g^c`
``symmetric``                 ``symmetric=True``: :math:`c(x, y) = c(y, x)`
``triangle``                  ``metric=True``: :math:`c(x, z) \le c(x, y)
                              + c(y, z)`
``fenchel_young``             twist, translation-invariant costs
                              :math:`h(x - y)` with ``h_legendre``:
                              :math:`h(z) + h^*(w) \ge \langle z, w\rangle`,
                              with equality at :math:`w = \nabla h(z)`
``twist_forward``             twist: :math:`\mathrm{twist}(x, \nabla_x c(x, y),
                              0) = y`
``twist_inverse``             twist: :math:`\mathrm{twist}(y, \nabla_y c(x, y),
                              1) = x`
``correlation``               correlation: :math:`c(x, y) = \|x\|^2 + \|y\|^2
                              - 2\langle x, y\rangle`
============================  ==================================================

On the sphere the twist properties are checked within the injectivity radius
(:math:`d(x, y) < \pi - 0.1`), where the exponential map inverts the gradient.

The strategies draw, on purpose, points a tiny (down to subnormal) distance
apart (``near_pairs``), where naive norms have infinite or NaN gradients.
The engine (strategies, properties, search) is :mod:`ott_enot.costs.properties`;
which properties a cost claims is :func:`ott_enot.costs.claimed_properties`.
"""

from typing import Any, Optional, Sequence

from ott.geometry import costs as ott_costs

from ott_enot import checks
from ott_enot import costs as enot_costs
from ott_enot.costs import properties as properties_lib
from ott_enot.costs import claimed_properties
from ott_enot.costs.properties import (
    INJECTIVITY_MARGIN,
    PROPERTIES,
    RTOL,
    SPHERE_TWIST_ATOL,
    CostProperty,
    CostReport,
    PropertyResult,
    dimensions,
    near_pairs,
    pairs,
    point_sets,
    points,
    potentials,
    triples,
)

__all__ = [
    "PROPERTIES",
    "CostProperty",
    "PropertyResult",
    "CostReport",
    "claimed_properties",
    "check_cost",
    "assert_cost",
    "dimensions",
    "point_sets",
    "points",
    "pairs",
    "near_pairs",
    "triples",
    "potentials",
    "RTOL",
    "SPHERE_TWIST_ATOL",
    "INJECTIVITY_MARGIN",
]


def check_cost(
    cost_fn: ott_costs.CostFn,
    *,
    parameterisations: Optional[Sequence[str]] = None,
    domain: Optional[str] = None,
    symmetric: Optional[bool] = None,
    metric: Optional[bool] = None,
    properties: Optional[Sequence[str]] = None,
    max_examples: Optional[int] = None,
    seed: Optional[int] = None,
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
) -> CostReport:
  r"""Search for counterexamples to every property ``cost_fn`` claims.

  Each property of :func:`claimed_properties` (or of ``properties``) gets a
  hypothesis search over random points of the cost's domain and dimension;
  a failure is shrunk to a small counterexample. Nothing is raised when a
  property fails: see :func:`assert_cost`.

  Args:
    cost_fn: An ott :class:`~ott.geometry.costs.CostFn` between points,
      evaluated as ``cost_fn(x, y)`` on ``[d]`` vectors.
    parameterisations: What ENOT will do with the cost (a subset of
      :data:`ott_enot.costs.registry.PARAMETERISATIONS`); default: what
      :func:`ott_enot.costs.supported_parameterisations` says for it.
    domain: ``"euclidean"`` (:math:`R^d`) or ``"sphere"`` (unit vectors);
      default: :func:`ott_enot.costs.domain_of`.
    symmetric: The cost claims :math:`c(x, y) = c(y, x)`; default: its
      registry entry's claim (``False`` for an unregistered cost).
    metric: The cost claims to be a metric (symmetric, triangle
      inequality); default as for ``symmetric``.
    properties: Check these (names of
      :data:`~ott_enot.costs.properties.PROPERTIES`) instead of the
      claimed ones.
    max_examples: Examples per property; default: the active hypothesis
      profile's ``max_examples``.
    seed: Seed of the search, for a reproducible report; default: the
      active profile's (random unless it is derandomised).
    min_dim: Smallest dimension tried (ambient dimension on the sphere);
      default 1 (sphere: 2).
    max_dim: Largest dimension tried; default 32 (sphere: 16).

  Returns:
    A :class:`CostReport`: per property, passed or not, examples tried, the
    smallest counterexample and the violated inequality with its numbers.

  Raises:
    TypeError: if ``cost_fn`` is not an ott ``CostFn``.
    ValueError: for an unknown parameterisation, domain or property.
  """
  checks.check_cost_fn(cost_fn)
  entry = enot_costs.cost_entry(cost_fn)
  if parameterisations is None:
    parameterisations = enot_costs.supported_parameterisations(cost_fn)
  parameterisations = tuple(parameterisations)
  domain = enot_costs.domain_of(cost_fn) if domain is None else domain
  if symmetric is None:
    symmetric = entry is not None and entry.symmetric
  if metric is None:
    metric = entry is not None and entry.metric
  claimed = claimed_properties(
      cost_fn, parameterisations, symmetric=symmetric, metric=metric
  )
  return properties_lib.search(
      cost_fn,
      claimed if properties is None else tuple(properties),
      domain=domain,
      parameterisations=parameterisations,
      max_examples=max_examples,
      seed=seed,
      min_dim=min_dim,
      max_dim=max_dim,
  )


def assert_cost(cost_fn: ott_costs.CostFn, **kwargs: Any) -> CostReport:
  """:func:`check_cost`, raising ``AssertionError`` with the report if any
  property fails (for a user's test suite). Returns the report otherwise."""
  report = check_cost(cost_fn, **kwargs)
  if not report.passed:
    raise AssertionError(str(report))
  return report
