"""Property tests of every cost, through the public :mod:`ott_enot.testing`.

Profiles: ``ci`` (default: 30 derandomised examples per property) and ``dev``
(``HYPOTHESIS_PROFILE=dev``), set in ``conftest.py``. Each property is
implemented once, in :mod:`ott_enot.testing`; here every registered cost and
some ott costs must pass it, and deliberately broken costs must be caught with
a genuine counterexample.
"""
import importlib.metadata

import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
import hypothesis
from hypothesis import given, settings

from ott.geometry import costs

from ott_enot import costs as enot_costs
from ott_enot import testing

REGISTERED = sorted(enot_costs.available_costs())


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_cost_passes_its_claims(name):
  report = testing.assert_cost(enot_costs.get_cost(name))
  entry = enot_costs.available_costs()[name]
  checked = {r.name for r in report.results}
  assert {"nonnegative", "zero_diagonal", "finite_gradients",
          "c_conjugacy"} <= checked
  assert ("symmetric" in checked) == entry.symmetric
  assert ("triangle" in checked) == entry.metric
  # a metric's twist is its surrogate's, registered and checked on its own
  own_twist = "twist" in entry.parameterisations and entry.surrogate is None
  assert ("twist_forward" in checked) == own_twist
  if entry.surrogate is not None:
    surrogate = entry.surrogate(entry.factory())
    assert any(e.cost_type is type(surrogate) and "twist" in e.parameterisations
               for e in enot_costs.available_costs().values())
  assert all(r.examples > 0 for r in report.results)


@pytest.mark.parametrize("cost", [enot_costs.EuclideanPower(1.5),
                                  enot_costs.EuclideanPower(1.25)])
def test_a_cost_with_a_legendre_transform_passes(cost):
  report = testing.assert_cost(cost, symmetric=True)
  assert "fenchel_young" in {r.name for r in report.results}
  assert report["twist_inverse"].passed


def test_ott_pnormp_has_nan_twists_next_to_the_diagonal():
  """A finding of check_cost about ott's PNormP(1.5) (||x - y||_1.5^1.5 /
  1.5): where the difference is tiny, its twist (through h*'s gradient) is
  NaN, found by the strategies' near pairs."""
  report = testing.check_cost(costs.PNormP(1.5), seed=0)
  failed = {r.name for r in report.failures}
  assert {"twist_forward", "twist_inverse"} <= failed, str(report)
  for name in ("twist_forward", "twist_inverse"):
    x, y = (report[name].counterexample[k] for k in ("x", "y"))
    assert 0 < np.max(np.abs(x - y)) < 1e-5


# ---------------------------------------------------------------------------
# Broken costs: each must be caught, with a counterexample that is genuine
# ---------------------------------------------------------------------------


@jtu.register_pytree_node_class
class WrongSignTwist(costs.SqEuclidean):
  """|x - y|^2 whose twist adds the gradient instead of subtracting it."""

  def twist_operator(self, vec, dual_vec, variable):
    del variable
    return vec + 0.5 * dual_vec  # right: vec - 0.5 * dual_vec, both ways


@jtu.register_pytree_node_class
class LegendreTimesTwo(costs.TICost):
  """h(z) = |z|^2 with h*(w) = |w|^2 / 2 (twice the true |w|^2 / 4)."""

  def h(self, z):
    return jnp.sum(z ** 2)

  def h_legendre(self, w):
    return 0.5 * jnp.sum(w ** 2)


class Asymmetric(costs.CostFn):
  """|x - y|^2 (2 + tanh(sum x)): non-negative, zero diagonal, asymmetric."""

  def __call__(self, x, y):
    return jnp.sum((x - y) ** 2) * (2.0 + jnp.tanh(jnp.sum(x)))


@jtu.register_pytree_node_class
class RetractionNotExp(enot_costs.SphereGeodesicSq):
  """Half squared geodesic distance whose twist is a projection retraction
  (normalise x - v), not the exponential map."""

  def twist_operator(self, vec, dual_vec, variable):
    del variable
    p = vec - dual_vec
    return p / jnp.linalg.norm(p)


class NaiveEuclidean(costs.CostFn):
  """|x - y| as sqrt(sum (x - y)^2): NaN gradient at x = y."""

  def __call__(self, x, y):
    return jnp.sqrt(jnp.sum((x - y) ** 2))


BROKEN = {
    # id: (cost, check_cost kwargs, the properties that must catch it)
    "twist_wrong_sign": (
        WrongSignTwist(), {"parameterisations": ("twist",)},
        {"twist_forward", "twist_inverse"}
    ),
    "legendre_off_by_2": (
        LegendreTimesTwo(), {"parameterisations": ("twist",)},
        {"fenchel_young", "twist_forward", "twist_inverse"}
    ),
    "asymmetric_claims_symmetric": (
        Asymmetric(), {"parameterisations": ("direct",), "symmetric": True},
        {"symmetric"}
    ),
    "sphere_twist_not_exp": (
        RetractionNotExp(), {"parameterisations": ("twist",)},
        {"twist_forward", "twist_inverse"}
    ),
    "nan_gradient_on_diagonal": (
        NaiveEuclidean(), {"parameterisations": ("direct",), "metric": True},
        {"finite_gradients"}
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_costs_are_caught_with_a_counterexample(case):
  cost, kwargs, culprits = BROKEN[case]
  report = testing.check_cost(cost, **kwargs)
  assert {r.name for r in report.failures} == culprits, str(report)
  for result in report.failures:
    assert result.counterexample is not None and result.violation
    # the counterexample is genuine: the property fails on it again
    prop = testing.PROPERTIES[result.name]
    assert tuple(result.counterexample) == prop.arguments
    example = tuple(jnp.asarray(v) for v in result.counterexample.values())
    assert prop.check(cost, example, report.domain) is not None
    assert f"FAIL {result.name}" in str(report)
  assert "violated:" in str(report)
  with pytest.raises(AssertionError, match="FAIL"):
    testing.assert_cost(cost, **kwargs)


def test_ott_sqpnorm_has_a_nan_gradient_next_to_the_diagonal():
  """A finding of check_cost about ott's own SqPNorm (0.5 ||x - y||_p^2):
  its gradient is NaN where ||x - y||_p^p underflows, so ENOT's twist map is
  NaN there (ott 0.6.0)."""
  x, y = jnp.array([1e-16]), jnp.array([0.0])
  assert testing.PROPERTIES["finite_gradients"].check(
      costs.SqPNorm(3.0), (x, y), "euclidean") is not None
  assert testing.PROPERTIES["finite_gradients"].check(
      costs.PNormP(1.5), (x, y), "euclidean") is None


def test_register_cost_refuses_a_broken_cost():
  with pytest.raises(ValueError, match=r"refused.*twist_forward") as info:
    enot_costs.register_cost(
        "test_wrong_twist", WrongSignTwist, parameterisations=("twist",)
    )
  assert "x = [" in str(info.value) and "violated:" in str(info.value)
  assert "test_wrong_twist" not in enot_costs.available_costs()
  # the same cost is accepted for what it can do, and unchecked on request
  try:
    enot_costs.register_cost(
        "test_wrong_twist", WrongSignTwist, parameterisations=("direct",)
    )
    enot_costs.register_cost(
        "test_wrong_twist_unchecked", WrongSignTwist,
        parameterisations=("twist",), check=False
    )
  finally:
    enot_costs.registry._REGISTRY.pop("test_wrong_twist", None)
    enot_costs.registry._REGISTRY.pop("test_wrong_twist_unchecked", None)


def test_check_cost_rejects_bad_arguments():
  with pytest.raises(TypeError, match="cost_fn"):
    testing.check_cost(lambda x, y: 0.0)
  with pytest.raises(ValueError, match="domain"):
    testing.check_cost(costs.SqEuclidean(), domain="torus")
  with pytest.raises(ValueError, match="parameterisations"):
    testing.check_cost(costs.SqEuclidean(), parameterisations=("warp",))
  with pytest.raises(ValueError, match="Unknown properties"):
    testing.check_cost(costs.SqEuclidean(), properties=("convexity",))
  with pytest.raises(ValueError, match="min_dim"):
    testing.check_cost(enot_costs.SphereGeodesic(), min_dim=1)


def test_same_seed_same_report():
  cost, kwargs, _ = BROKEN["asymmetric_claims_symmetric"]
  a = testing.check_cost(cost, max_examples=10, seed=3, **kwargs)
  b = testing.check_cost(cost, max_examples=10, seed=3, **kwargs)
  np.testing.assert_array_equal(
      a["symmetric"].counterexample["x"], b["symmetric"].counterexample["x"]
  )
  assert a["symmetric"].violation == b["symmetric"].violation


@settings(max_examples=20)
@given(testing.pairs("sphere", min_dim=3, max_dim=5))
def test_strategies_draw_points_of_the_domain(pair):
  x, y = pair
  assert x.shape == y.shape and 3 <= x.shape[0] <= 5
  np.testing.assert_allclose(jnp.linalg.norm(jnp.stack(pair), axis=-1), 1.0,
                             atol=1e-5)


@settings(max_examples=20)
@given(testing.point_sets(4, min_size=2, max_size=3, bound=2.0),
       testing.potentials(5, bound=1.0))
def test_point_sets_and_potentials(xs, g):
  assert xs.shape[1] == 4 and 2 <= xs.shape[0] <= 3
  assert float(jnp.max(jnp.abs(xs))) <= 2.0
  assert g.shape == (5,) and float(jnp.max(jnp.abs(g))) <= 1.0


def test_register_cost_works_on_a_plain_install():
  """hypothesis is a core dependency (not an extra), so the default
  `register_cost(check=True)` and `ott_enot.testing` work on a plain
  `pip install ott-enot`."""
  requires = importlib.metadata.requires("ott-enot")
  core = [r for r in requires if "extra ==" not in r]
  assert any(r.startswith("hypothesis") for r in core), requires


def test_profiles_are_registered():
  assert (settings.get_profile("ci").max_examples
          < settings.get_profile("dev").max_examples)


def test_gradients_of_the_sphere_costs_at_antipodes_are_finite():
  x = jnp.array([0.0, 0.0, 1.0])
  for cost in (enot_costs.SphereGeodesic(), enot_costs.SphereGeodesicSq()):
    assert testing.PROPERTIES["finite_gradients"].check(
        cost, (x, -x), "sphere") is None


def test_near_pairs_reach_subnormal_distances():
  """The strategies draw points a tiny distance apart on purpose."""
  for domain in ("euclidean", "sphere"):
    x, y = hypothesis.find(
        testing.near_pairs(domain),
        lambda p: 0 < float(jnp.max(jnp.abs(p[0] - p[1]))) < 1e-33,
        settings=settings(max_examples=500, database=None),
    )
    assert np.all(np.isfinite(x)) and np.any(x != y)


def test_ott_euclidean_fails_near_the_diagonal_and_ours_does_not():
  x, y = jnp.array([1.2e-38]), jnp.array([0.0])
  prop = testing.PROPERTIES["finite_gradients"]
  assert prop.check(costs.Euclidean(), (x, y), "euclidean") is not None
  assert prop.check(enot_costs.Euclidean(), (x, y), "euclidean") is None
  registered = enot_costs.get_cost("euclidean")
  assert isinstance(registered, costs.Euclidean)  # still the ott type
  assert enot_costs.canonical_cost(costs.Euclidean()).__class__ is (
      enot_costs.Euclidean)
  # a random (seeded) search finds ott's bug, not only this example
  report = testing.check_cost(
      costs.Euclidean(), parameterisations=("direct",),
      properties=("finite_gradients",), max_examples=200, seed=0
  )
  assert not report.passed, str(report)


def test_sphere_costs_have_finite_gradients_a_tiny_distance_apart():
  prop = testing.PROPERTIES["finite_gradients"]
  x = jnp.array([1.0, 3e-20, 0.0])  # a unit vector in float32
  y = jnp.array([1.0, 0.0, -2e-30])
  for cost in (enot_costs.SphereGeodesic(), enot_costs.SphereGeodesicSq()):
    assert prop.check(cost, (x, y), "sphere") is None, type(cost).__name__
    twist = testing.PROPERTIES["twist_inverse"]
    if isinstance(cost, enot_costs.SphereGeodesicSq):
      assert twist.check(cost, (x, y), "sphere") is None
