"""What ENOT can do with an ott cost function.

ENOT derives the transport map :math:`T` from the ``f`` network in one of three
ways (see :mod:`ott_enot.maps`):

- ``"twist"``: :math:`T(x) = \\nabla_1 c(x, \\cdot)^{-1}(\\nabla f(x))`, ott's
  :meth:`~ott.geometry.costs.CostFn.twist_operator`. For a translation
  invariant cost :math:`c(x, y) = h(x - y)` with :math:`h` strictly convex this
  is :math:`T(x) = x - \\nabla h^*(\\nabla f(x))`, so the cost must implement
  :meth:`~ott.geometry.costs.TICost.h_legendre`. Gives both directions.
- ``"correlation"``: squared Euclidean cost only; trains the equivalent
  problem with cost :math:`-\\langle x, y \\rangle` and convex potentials,
  :math:`T = \\nabla \\varphi`, :math:`T^{-1} = \\nabla \\psi`.
- ``"direct"``: the ``f`` network outputs :math:`T(x)` itself. Works with any
  cost (e.g. :class:`~ott.geometry.costs.Euclidean`), forward map only.

:func:`supported_parameterisations` is the one place that answers which of
these a cost supports.
"""
from typing import Tuple

from ott.geometry import costs

__all__ = [
    "PARAMETERISATIONS",
    "supported_parameterisations",
    "default_parameterisation",
    "has_twist",
]

#: All parameterisations, in order of preference for the default.
PARAMETERISATIONS: Tuple[str, ...] = ("twist", "correlation", "direct")


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

  Args:
    cost_fn: An ott cost function.

  Returns:
    A tuple, a subset of :data:`PARAMETERISATIONS` in the same order;
    ``"direct"`` is always included.
  """
  if not isinstance(cost_fn, costs.CostFn):
    raise TypeError(
        f"`cost_fn` must be an `ott.geometry.costs.CostFn`, got "
        f"{type(cost_fn).__name__}."
    )
  out = []
  if has_twist(cost_fn):
    out.append("twist")
  if type(cost_fn) is costs.SqEuclidean:
    out.append("correlation")
  out.append("direct")
  return tuple(out)


def default_parameterisation(cost_fn: costs.CostFn) -> str:
  """The parameterisation used when the user does not choose one.

  The twist when the cost has one (both maps, potentials that are true
  Kantorovich potentials), the direct map otherwise.
  """
  return supported_parameterisations(cost_fn)[0]
