r"""Costs for ENOT: the registry, the Euclidean and sphere costs, their
numerics, and the property engine that checks what a cost claims.

Layer: the bottom of the package (only :mod:`ott_enot.checks` below). Files:

- :mod:`~ott_enot.costs.registry`: what each cost supports
  (parameterisations, domain, symmetry, metric, surrogate), checked
  registration, :func:`twist_cost`;
- :mod:`~ott_enot.costs.euclidean`: :class:`Euclidean`,
  :class:`EuclideanPower`;
- :mod:`~ott_enot.costs.sphere`: exp/log maps, the geodesic distance and the
  sphere costs;
- :mod:`~ott_enot.costs.numerics`: a norm with finite gradients everywhere;
- :mod:`~ott_enot.costs.properties`: the hypothesis engine (loaded only when
  a cost is checked).
"""
from ott_enot.checks import DOMAINS
from ott_enot.costs.euclidean import Euclidean, EuclideanPower
from ott_enot.costs.registry import (
    PARAMETERISATIONS,
    CostEntry,
    available_costs,
    canonical_cost,
    cost_key,
    claimed_properties,
    cost_entry,
    default_parameterisation,
    domain_of,
    get_cost,
    has_twist,
    register_cost,
    supported_parameterisations,
    twist_cost,
)
from ott_enot.costs.sphere import (
    SphereGeodesic,
    SphereGeodesicPower,
    SphereGeodesicSq,
    exp_map,
    geodesic_distance,
    log_map,
)

__all__ = [
    "PARAMETERISATIONS",
    "DOMAINS",
    "CostEntry",
    "Euclidean",
    "EuclideanPower",
    "SphereGeodesic",
    "SphereGeodesicSq",
    "SphereGeodesicPower",
    "exp_map",
    "log_map",
    "geodesic_distance",
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
