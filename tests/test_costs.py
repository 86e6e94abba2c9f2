"""Which parameterisations each ott cost supports."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.geometry import costs

from ott_enot import costs as enot_costs
from ott_enot.costs import sphere


@pytest.mark.parametrize(
    ("cost_fn", "expected"),
    [
        (costs.SqEuclidean(), ("twist", "correlation", "direct")),
        (costs.PNormP(1.5), ("twist", "direct")),  # not registered: inferred
        (costs.SqPNorm(3.0), ("twist", "direct")),
        (costs.Euclidean(), ("twist", "direct")),  # through its surrogate
        (costs.EuclideanP(1.5), ("direct",)),  # TICost without h_legendre
        (costs.Cosine(), ("direct",)),
    ],
)
def test_supported_parameterisations(cost_fn, expected):
  assert enot_costs.supported_parameterisations(cost_fn) == expected
  assert enot_costs.default_parameterisation(cost_fn) == expected[0]


def test_custom_cost_with_twist_is_twist_capable():

  class Shifted(costs.CostFn):

    def __call__(self, x, y):
      return ((x - y - 1.0) ** 2).sum()

    def twist_operator(self, vec, dual_vec, variable):
      return vec - 1.0 - 0.5 * dual_vec

  assert enot_costs.supported_parameterisations(Shifted())[0] == "twist"


def test_not_a_cost_is_a_type_error():
  with pytest.raises(TypeError, match="cost_fn"):
    enot_costs.supported_parameterisations(lambda x, y: 0.0)


class TestRegistry:

  def test_registered_costs_and_capabilities(self):
    entries = enot_costs.available_costs()
    assert set(entries) >= {"sqeuclidean", "euclidean", "sphere_geodesic",
                            "sphere_geodesic_sq"}
    assert entries["sphere_geodesic_sq"].parameterisations == ("twist", "direct")
    assert entries["sphere_geodesic"].parameterisations == ("twist", "direct")
    surrogate = entries["sphere_geodesic"].surrogate(enot_costs.SphereGeodesic(1.75))
    assert isinstance(surrogate, enot_costs.SphereGeodesicPower)
    assert surrogate.p == 1.75
    surrogate = entries["euclidean"].surrogate(enot_costs.Euclidean())
    assert isinstance(surrogate, enot_costs.EuclideanPower) and surrogate.p == 1.75
    assert entries["sphere_geodesic"].domain == "sphere"
    assert entries["euclidean"].domain == "euclidean"
    assert isinstance(enot_costs.get_cost("euclidean"), costs.Euclidean)
    assert enot_costs.domain_of(enot_costs.get_cost("sphere_geodesic_sq")) == "sphere"
    assert enot_costs.domain_of(costs.PNormP(1.5)) == "euclidean"

  def test_unknown_name(self):
    with pytest.raises(ValueError, match="Unknown cost 'nope'.*sqeuclidean"):
      enot_costs.get_cost("nope")

  def test_register_a_users_cost(self):

    class Huberish(costs.CostFn):

      def __call__(self, x, y):
        return jnp.sum(jnp.sqrt(1.0 + (x - y) ** 2) - 1.0)

    try:
      entry = enot_costs.register_cost(
          "test_huberish", Huberish, parameterisations=("direct",)
      )
      assert entry.cost_type is Huberish
      cost = enot_costs.get_cost("test_huberish")
      assert enot_costs.supported_parameterisations(cost) == ("direct",)
      with pytest.raises(ValueError, match="registered already"):
        enot_costs.register_cost("test_huberish", Huberish,
                                 parameterisations=("direct",))
    finally:
      enot_costs.registry._REGISTRY.pop("test_huberish", None)

  @pytest.mark.parametrize(
      ("kwargs", "match"),
      [
          ({"parameterisations": ("warp",)}, "parameterisations"),
          ({"parameterisations": ()}, "parameterisations"),
          ({"parameterisations": ("direct",), "domain": "torus"}, "domain"),
          # a twist claimed by a cost without one (and without a surrogate)
          ({"parameterisations": ("twist", "direct")}, "surrogate"),
      ],
  )
  def test_register_rejects_bad_entries(self, kwargs, match):
    with pytest.raises(ValueError, match=match):
      enot_costs.register_cost("test_bad", costs.Euclidean, **kwargs)
    assert "test_bad" not in enot_costs.available_costs()

  def test_register_rejects_non_costs(self):
    with pytest.raises(TypeError, match="CostFn"):
      enot_costs.register_cost("test_bad", dict, parameterisations=("direct",))


class TestSphereCosts:
  x = jnp.array([0.0, 0.0, 1.0])
  y = jnp.array([1.0, 0.0, 0.0])

  def test_geodesic_values(self):
    geo = enot_costs.SphereGeodesic()
    np.testing.assert_allclose(geo(self.x, self.y), np.pi / 2, rtol=1e-6)
    np.testing.assert_allclose(geo(self.x, -self.x), np.pi, rtol=1e-6)
    np.testing.assert_allclose(geo(self.x, self.x), 0.0, atol=1e-7)
    z = jnp.array([0.0, jnp.sin(1e-4), jnp.cos(1e-4)])  # arccos loses this
    np.testing.assert_allclose(geo(self.x, z), 1e-4, rtol=1e-3)
    np.testing.assert_allclose(
        enot_costs.SphereGeodesicSq()(self.x, self.y), 0.5 * (np.pi / 2) ** 2,
        rtol=1e-6
    )

  def test_exp_and_log_are_inverse(self):
    v = jnp.array([0.3, -0.2, 0.0])  # tangent at x
    y = sphere.exp_map(self.x, v)
    np.testing.assert_allclose(jnp.linalg.norm(y), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sphere.log_map(self.x, y), v, atol=1e-6)
    np.testing.assert_allclose(
        enot_costs.SphereGeodesic()(self.x, y), jnp.linalg.norm(v), rtol=1e-5
    )
    np.testing.assert_allclose(sphere.exp_map(self.x, 0 * v), self.x)

  def test_cost_gradient_is_minus_log(self):
    cost = enot_costs.SphereGeodesicSq()
    y = sphere.exp_map(self.x, jnp.array([0.5, 0.4, 0.0]))
    grad = jax.grad(cost)(self.x, y)
    tangent = grad - jnp.vdot(grad, self.x) * self.x
    np.testing.assert_allclose(
        tangent, cost.twist_gradient(self.x, y), atol=1e-5
    )

  def test_pytrees_and_jit(self):
    cost = enot_costs.SphereGeodesicSq()
    leaves, treedef = jax.tree.flatten(cost)
    assert isinstance(jax.tree.unflatten(treedef, leaves), enot_costs.SphereGeodesicSq)
    out = jax.jit(lambda c, a, b: c(a, b))(cost, self.x, self.y)
    np.testing.assert_allclose(out, cost(self.x, self.y))

  def test_works_with_ott_geometry_sinkhorn_and_potentials(self):
    from ott.geometry import pointcloud
    from ott.neural.methods import monge_gap
    from ott.problems.linear import potentials
    from ott.solvers import linear
    pts = jax.random.normal(jax.random.key(0), (20, 3))
    pts = pts / jnp.linalg.norm(pts, axis=-1, keepdims=True)
    for cost in (enot_costs.SphereGeodesic(), enot_costs.SphereGeodesicSq()):
      geom = pointcloud.PointCloud(pts[:10], pts[10:], cost_fn=cost, epsilon=0.05)
      out = linear.solve(geom)
      assert out.converged and jnp.isfinite(out.reg_ot_cost)
      assert jnp.isfinite(monge_gap.monge_gap_from_samples(pts[:10], pts[10:], cost_fn=cost))
    # ott's DualPotentials transports through the exp-map twist
    pot = potentials.DualPotentials(
        f=lambda z: jnp.vdot(z, jnp.array([0.2, 0.0, 0.0])), g=lambda z: 0.0,
        cost_fn=enot_costs.SphereGeodesicSq(),
    )
    moved = pot.transport(self.x[None])
    np.testing.assert_allclose(
        moved[0], sphere.exp_map(self.x, jnp.array([-0.2, 0.0, 0.0])), atol=1e-6
    )

  def test_points_off_the_sphere_are_rejected(self):
    cost = enot_costs.SphereGeodesicSq()
    with pytest.raises(ValueError, match=r"`x` has points off the unit sphere"):
      cost.exp_map(2 * self.x, self.y)
    with pytest.raises(ValueError, match=r"`y` has points off"):
      cost.log_map(self.x, 0.5 * self.y)
    with pytest.raises(ValueError, match="normalise"):
      enot_costs.SphereGeodesic().geodesic_distance(self.x, self.y + 1e-2)
    # within the tolerance is fine, and traced values are not inspected
    cost.exp_map(self.x * (1 + 1e-6), self.y)
    jax.jit(cost.exp_map)(2 * self.x, self.y)
