"""How maps and potentials come from the networks; the parameterisation choice."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.geometry import costs
from ott.neural.networks import icnn
from ott.neural.networks import potentials as ott_potentials

from ott_enot.model import parameterisations as maps
from ott_enot.solvers import compat


class TestResolveParameterisation:

  @pytest.mark.parametrize(
      ("cost_fn", "kwargs", "expected"),
      [
          (costs.SqEuclidean(), {}, ("twist", True)),
          (costs.PNormP(1.5), {}, ("twist", True)),
          # a metric: the twist of its surrogate
          (costs.Euclidean(), {}, ("twist", True)),
          (costs.SqEuclidean(), {"parameterisation": "correlation"},
           ("correlation", True)),
          # ott 0.5.1: is_bidirectional=False alone means the direct map
          (costs.SqEuclidean(), {"bidirectional": False}, ("direct", False)),
          (costs.Euclidean(), {"bidirectional": False}, ("direct", False)),
          (
              costs.SqEuclidean(),
              {"parameterisation": "twist", "bidirectional": False},
              ("twist", False),
          ),
          (
              costs.SqEuclidean(),
              {"parameterisation": "correlation", "bidirectional": False},
              ("correlation", False),
          ),
      ],
  )
  def test_choices(self, cost_fn, kwargs, expected):
    assert maps.resolve_parameterisation(cost_fn, **kwargs) == expected

  @pytest.mark.parametrize(
      ("out", "kwargs", "expected"),
      [
          # a map-valued f network means the direct map
          (2, {}, ("direct", False)),
          # W2NeuralDual's back_and_forth=False with a potential network
          (1, {"bidirectional": False}, ("twist", False)),
          (1, {}, ("twist", True)),
      ],
  )
  def test_network_output_decides_when_unnamed(self, out, kwargs, expected):
    neural_f = ott_potentials.MLP(dim_hidden=[8, out])
    assert maps.resolve_parameterisation(
        costs.SqEuclidean(), neural_f=neural_f, dim=2, **kwargs
    ) == expected

  def test_one_dimensional_map_network_needs_bidirectional_false(self):
    # in 1-D a potential and a map both output one number per point
    neural_f = ott_potentials.MLP(dim_hidden=[8, 1])
    assert maps.resolve_parameterisation(
        costs.SqEuclidean(), neural_f=neural_f, dim=1
    ) == ("twist", True)
    assert maps.resolve_parameterisation(
        costs.SqEuclidean(), neural_f=neural_f, dim=1, bidirectional=False
    ) == ("direct", False)

  def test_correlation_needs_squared_euclidean(self):
    with pytest.raises(ValueError, match="SqEuclidean"):
      maps.resolve_parameterisation(
          costs.PNormP(1.5), parameterisation="correlation"
      )

  def test_bidirectional_needs_twist(self):
    with pytest.raises(ValueError, match="is_bidirectional=False"):
      maps.resolve_parameterisation(
          costs.Euclidean(), parameterisation="direct", bidirectional=True
      )
    with pytest.raises(ValueError, match="no invertible twist"):
      maps.resolve_parameterisation(costs.Cosine(), parameterisation="twist")
    with pytest.raises(ValueError, match="no invertible twist, so it cannot"):
      maps.resolve_parameterisation(costs.Cosine(), bidirectional=True)

  def test_unknown_name(self):
    with pytest.raises(ValueError, match="parameterisation"):
      maps.resolve_parameterisation(costs.SqEuclidean(), parameterisation="x")


class TestOttKeywords:
  """ott 0.4.7-0.5.1's and W2NeuralDual's keywords, translated in compat."""

  def test_use_dot_product_is_the_correlation_form(self):
    assert compat._parameterisation(True, None) == "correlation"
    assert compat._parameterisation(False, "twist") == "twist"
    with pytest.raises(ValueError, match="use_dot_product"):
      compat._parameterisation(True, "twist")

  def test_three_names_of_one_option(self):
    assert compat._direction(False, None, None) is False
    assert compat._direction(None, True, True) is True
    assert compat._direction(None, None, None) is None
    with pytest.raises(ValueError, match="disagree"):
      compat._direction(True, False, None)


class TestCheckNetworks:

  def test_accepts_ott_networks(self):
    mlp = ott_potentials.MLP(dim_hidden=[8, 1])
    maps.check_networks("twist", mlp, mlp, 3)
    maps.check_networks("correlation", icnn.ICNN(3, [8]), icnn.ICNN(3, [8]), 3)
    maps.check_networks(
        "twist", ott_potentials.PotentialMLP([8]), ott_potentials.PotentialMLP([8]), 3
    )
    maps.check_networks("direct", ott_potentials.MLP(dim_hidden=[8, 3]), mlp, 3)

  def test_vector_f_for_a_potential_parameterisation(self):
    with pytest.raises(ValueError, match="neural_f.*parameterisation='direct'"):
      maps.check_networks(
          "twist", ott_potentials.MLP(dim_hidden=[8, 3]),
          ott_potentials.MLP(dim_hidden=[8, 1]), 3
      )

  def test_scalar_f_for_the_direct_map(self):
    with pytest.raises(ValueError, match="neural_f.*must return 3"):
      maps.check_networks(
          "direct", ott_potentials.MLP(dim_hidden=[8, 1]),
          ott_potentials.MLP(dim_hidden=[8, 1]), 3
      )

  def test_vector_g(self):
    with pytest.raises(ValueError, match="neural_g"):
      maps.check_networks(
          "direct", ott_potentials.MLP(dim_hidden=[8, 3]),
          ott_potentials.MLP(dim_hidden=[8, 3]), 3
      )

  def test_not_a_module(self):
    with pytest.raises(TypeError, match="neural_g"):
      maps.check_networks(
          "twist", ott_potentials.MLP(dim_hidden=[8, 1]), lambda x: x, 3
      )


def _model(form, cost_fn, f_out=1, dim=2, f=None, g=None):
  f = f or ott_potentials.MLP(dim_hidden=[8, f_out])
  g = g or ott_potentials.MLP(dim_hidden=[8, 1])
  model = maps.transport_model(form, cost_fn, f, g, dim)
  pf = f.init(jax.random.key(0), jnp.ones((1, dim)))["params"]
  pg = g.init(jax.random.key(1), jnp.ones((1, dim)))["params"]
  return model, pf, pg


X = jax.random.normal(jax.random.key(5), (6, 2))


class TestTransportModel:

  def test_twist_uses_ott_twist_operator(self):
    cost = costs.PNormP(1.5)
    model, pf, pg = _model("twist", cost)
    f = lambda x: model.potential_f(pf, x[None])[0]
    expected = jax.vmap(lambda x: cost.twist_operator(x, jax.grad(f)(x), False))(X)
    np.testing.assert_allclose(model.forward_map(pf, X), expected, rtol=1e-5)
    g = lambda y: model.potential_g(pg, y[None])[0]
    expected = jax.vmap(lambda y: cost.twist_operator(y, jax.grad(g)(y), True))(X)
    np.testing.assert_allclose(model.inverse_map(pg, X), expected, rtol=1e-5)

  def test_correlation_is_gradient_of_network_plus_half_norm(self):
    model, pf, pg = _model("correlation", costs.SqEuclidean())
    net = model.neural_f
    phi = lambda x: net.apply({"params": pf}, x[None])[0, 0] + 0.5 * x @ x
    np.testing.assert_allclose(
        model.forward_map(pf, X), jax.vmap(jax.grad(phi))(X), rtol=1e-5
    )
    # dual variable of the -<x, y> problem is -phi
    np.testing.assert_allclose(model.potential_f(pf, X), -jax.vmap(phi)(X), rtol=1e-6)
    np.testing.assert_allclose(
        model.training_cost(X, 2 * X), -2 * jnp.sum(X ** 2, -1), rtol=1e-6
    )

  def test_correlation_uses_base_potentials_as_they_are(self):
    net = icnn.ICNN(2, [8])
    model, pf, _ = _model("correlation", costs.SqEuclidean(), f=net)
    phi = lambda x: net.apply({"params": pf}, x)
    np.testing.assert_allclose(
        model.forward_map(pf, X), jax.vmap(jax.grad(phi))(X), rtol=1e-5
    )

  def test_correlation_distance_in_cost_units(self):
    model, _, _ = _model("correlation", costs.SqEuclidean())
    y = X + 1.0
    # for the exact dual of -<x, y>, 2 * dual + E|x|^2 + E|y|^2 = E|x - y|^2
    dual = jnp.mean(-jnp.sum(X * y, -1))
    np.testing.assert_allclose(
        model.dual_to_cost(X, y, dual), jnp.mean(jnp.sum((X - y) ** 2, -1)),
        rtol=1e-5
    )

  def test_direct_map_is_network_output_and_has_no_inverse(self):
    model, pf, pg = _model("direct", costs.Euclidean(), f_out=2)
    np.testing.assert_allclose(
        model.forward_map(pf, X), model.neural_f.apply({"params": pf}, X)
    )
    with pytest.raises(ValueError, match="no inverse"):
      model.inverse_map(pg, X)
