"""ENOTPotentials: transport, distance, jit, plots, save/load."""
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials
from ott.problems.linear import potentials as ott_dual

import ott_enot


def _solver(**kw):
  mlp = lambda out: ott_potentials.MLP(dim_hidden=[16, 16, out])
  form = kw.get("parameterisation")
  return ott_enot.ExpectileNeuralDual(
      2, mlp(2 if form == "direct" else 1), mlp(1), num_train_iters=20,
      progress_bar=False, rng=jax.random.key(0), **kw
  )


@pytest.fixture(scope="module")
def trained(pair2):
  solver = _solver()
  return solver(*pair2.loaders(batch=32)), pair2


class TestENOTPotentials:

  def test_is_an_ott_dual_potentials(self, trained):
    pot, _ = trained
    assert isinstance(pot, ott_dual.DualPotentials)
    assert pot.parameterisation == "twist" and pot.is_bidirectional

  def test_transport_shapes(self, trained):
    pot, pair = trained
    x = pair.x_test[:10]
    assert pot.transport(x).shape == (10, 2)
    assert pot.transport(x, forward=False).shape == (10, 2)
    assert pot.transport(x[0]).shape == (1, 2)  # like ott: atleast_2d

  def test_jit_with_potentials_as_argument_and_closure(self, trained):
    pot, pair = trained
    x = pair.x_test[:10]
    as_arg = jax.jit(lambda p, v: p.transport(v, forward=False))(pot, x)
    closed = jax.jit(lambda v: pot.transport(v))(x)
    np.testing.assert_allclose(as_arg, pot.transport(x, forward=False), rtol=1e-6)
    np.testing.assert_allclose(closed, pot.transport(x), rtol=1e-6)
    dist = jax.jit(lambda p, a, b: p.distance(a, b))(pot, x, x + 1)
    np.testing.assert_allclose(dist, pot.distance(x, x + 1), rtol=1e-6)

  def test_pytree_roundtrip_keeps_parameters(self, trained):
    pot, pair = trained
    leaves, treedef = jax.tree.flatten(pot)
    assert len(leaves) > 0  # parameters are leaves, not static
    doubled = jax.tree.unflatten(treedef, [2 * l for l in leaves])
    assert isinstance(doubled, ott_enot.ENOTPotentials)
    assert not np.allclose(doubled.transport(pair.x_test[:4]), pot.transport(pair.x_test[:4]))

  def test_f_and_g_are_pointwise_and_match_distance(self, trained):
    pot, pair = trained
    x, y = pair.x_test[:50], pair.y_test[:50]
    manual = jnp.mean(jax.vmap(pot.f)(x)) + jnp.mean(jax.vmap(pot.g)(y))
    np.testing.assert_allclose(pot.distance(x, y), manual, rtol=1e-5)

  def test_f_is_the_c_transform_at_the_map(self, trained):
    pot, pair = trained
    x = pair.x_test[:20]
    t = pot.transport(x)
    c = jax.vmap(costs.SqEuclidean())(x, t)
    np.testing.assert_allclose(
        jax.vmap(pot.f)(x), c - jax.vmap(pot.g)(t), rtol=1e-5, atol=1e-5
    )

  def test_wrong_dimension(self, trained):
    pot, _ = trained
    with pytest.raises(ValueError, match=r"`vec` has shape .*non-empty array of shape \[n, 2\]"):
      pot.transport(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="`tgt`"):
      pot.distance(jnp.ones((4, 2)), jnp.ones((4, 5)))

  def test_plot_ot_map(self, trained):
    pot, pair = trained
    x, y = pair.x_test[:30], pair.y_test[:30]
    for forward, label in ((True, "$T(x)$"), (False, "$T^{-1}(y)$")):
      fig, ax = pot.plot_ot_map(x, y, forward=forward)
      labels = [t.get_text() for t in ax.get_legend().get_texts()]
      assert labels == ["source $x$", "target $y$", label]
      moved = [c for c in ax.collections if c.get_label() == label][0]
      np.testing.assert_allclose(
          moved.get_offsets(), pot.transport(x if forward else y,
                                             forward=forward), rtol=1e-6
      )
      plt.close(fig)

  def test_plot_ot_map_on_the_sphere_is_3d(self):
    sphere = ott_enot.ExpectileNeuralDual(
        3, cost_fn=ott_enot.SphereGeodesicSq(), num_train_iters=1,
        progress_bar=False
    ).to_dual_potentials()
    pts = np.array(jax.random.normal(jax.random.key(0), (12, 3)))
    pts /= np.linalg.norm(pts, axis=-1, keepdims=True)
    fig, ax = sphere.plot_ot_map(pts, pts[::-1])
    assert ax.name == "3d"
    moved = [c for c in ax.collections if c.get_label() == "$T(x)$"][0]
    np.testing.assert_allclose(
        np.stack(moved._offsets3d, -1), sphere.transport(pts), atol=1e-6
    )
    assert any(type(c).__name__ == "Line3DCollection" for c in ax.collections)
    plt.close(fig)
    fig, flat = plt.subplots()
    with pytest.raises(ValueError, match="3-D axes"):
      sphere.plot_ot_map(pts, pts, ax=flat)
    plt.close(fig)

  def test_save_and_load(self, trained, tmp_path):
    pot, pair = trained
    path = tmp_path / "enot.msgpack"
    pot.save(path)
    fresh = _solver().to_dual_potentials()
    x = pair.x_test[:8]
    assert not np.allclose(fresh.transport(x), pot.transport(x))
    loaded = fresh.load(path)
    np.testing.assert_array_equal(loaded.transport(x), pot.transport(x))
    np.testing.assert_array_equal(
        loaded.transport(x, forward=False), pot.transport(x, forward=False)
    )

  def test_load_into_other_networks_fails_clearly(self, trained, tmp_path):
    pot, _ = trained
    path = tmp_path / "enot.msgpack"
    pot.save(path)
    other = ott_enot.ExpectileNeuralDual(2, progress_bar=False).to_dual_potentials()
    with pytest.raises(ValueError, match="same networks"):
      other.load(path)


class TestDirectMapPotentials:

  def test_inverse_is_a_clear_error(self, pair2):
    pot = _solver(
        cost_fn=costs.Euclidean(), parameterisation="direct"
    ).to_dual_potentials()
    assert pot.parameterisation == "direct" and not pot.is_bidirectional
    assert pot.transport(pair2.x_test[:5]).shape == (5, 2)
    with pytest.raises(ValueError, match="no inverse map"):
      pot.transport(pair2.x_test[:5], forward=False)
    assert jnp.isfinite(pot.distance(pair2.x_test[:5], pair2.y_test[:5]))
