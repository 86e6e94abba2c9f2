"""Property tests (hypothesis) of every registered cost and its conjugacy.

Profiles: ``ci`` (default) and ``dev`` (``HYPOTHESIS_PROFILE=dev``), set in
``conftest.py``. Tolerances are for float32: relative to the scale of the
values involved, stated next to each check.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ott.geometry import costs

from ott_enot import costs as enot_costs

REGISTERED = sorted(enot_costs.available_costs())
METRICS = ("euclidean", "sphere_geodesic")  # triangle inequality holds


@st.composite
def point_sets(draw, name, n_points=2, max_n=None):
  """``n_points`` points (or 1..max_n) of one random dimension for a cost."""
  sphere = enot_costs.available_costs()[name].domain == "sphere"
  # R^d: d in 1..32; spheres S^1..S^15, i.e. ambient dimension 2..16
  dim = draw(st.integers(2, 16) if sphere else st.integers(1, 32))
  n = n_points if max_n is None else draw(st.integers(1, max_n))
  elems = st.floats(-10, 10, allow_nan=False, width=32)
  pts = np.asarray(
      draw(st.lists(st.lists(elems, min_size=dim, max_size=dim),
                    min_size=n, max_size=n)),
      dtype=np.float32,
  )
  if sphere:
    norms = np.linalg.norm(pts, axis=-1, keepdims=True)
    assume(np.all(norms > 1e-2))  # a direction is needed to normalise
    pts = pts / norms
  return jnp.asarray(pts)


def _scale(*xs):
  return 1.0 + sum(float(jnp.sum(x ** 2)) for x in xs)


@pytest.mark.parametrize("name", REGISTERED)
class TestEveryCost:

  @given(data=st.data())
  def test_symmetric_nonnegative_zero_on_diagonal(self, name, data):
    cost = enot_costs.get_cost(name)
    x, y = data.draw(point_sets(name))
    tol = 1e-5 * _scale(x, y)  # float32 cancellation in |x|^2 + |y|^2 - 2<x,y>
    np.testing.assert_allclose(cost(x, y), cost(y, x), rtol=1e-5, atol=tol)
    assert cost(x, y) >= -tol
    assert abs(float(cost(x, x))) <= tol

  @given(data=st.data())
  def test_finite_gradients_including_the_diagonal(self, name, data):
    cost = enot_costs.get_cost(name)
    x, y = data.draw(point_sets(name))
    for a, b in ((x, y), (x, x)):
      gx, gy = jax.grad(cost, argnums=(0, 1))(a, b)
      assert jnp.all(jnp.isfinite(gx)) and jnp.all(jnp.isfinite(gy))

  @given(data=st.data())
  def test_c_conjugacy_on_finite_sets(self, name, data):
    cost = enot_costs.get_cost(name)
    xs = data.draw(point_sets(name, max_n=6))
    ys = _same_dim(data, name, xs.shape[1])
    g = jnp.asarray(data.draw(st.lists(
        st.floats(-5, 5, width=32), min_size=len(ys), max_size=len(ys)
    )), jnp.float32)
    c = cost.all_pairs(xs, ys)  # [n, m]
    tol = 1e-4 * (1.0 + float(jnp.max(jnp.abs(c))) + float(jnp.max(jnp.abs(g))))
    f = jnp.min(c - g[None, :], axis=1)          # g^c on xs
    assert jnp.all(f[:, None] + g[None, :] <= c + tol)  # feasible
    g_cc = jnp.min(c - f[:, None], axis=0)       # g^cc on ys
    assert jnp.all(g_cc >= g - tol)               # g^cc >= g
    f_ccc = jnp.min(c - g_cc[None, :], axis=1)   # g^ccc = g^c
    np.testing.assert_allclose(f_ccc, f, atol=tol)


def _same_dim(data, name, dim):
  """1..6 points of dimension ``dim`` in the cost's domain."""
  sphere = enot_costs.available_costs()[name].domain == "sphere"
  n = data.draw(st.integers(1, 6))
  pts = np.asarray(data.draw(st.lists(
      st.lists(st.floats(-10, 10, width=32), min_size=dim, max_size=dim),
      min_size=n, max_size=n)), np.float32)
  if sphere:
    norms = np.linalg.norm(pts, axis=-1, keepdims=True)
    assume(np.all(norms > 1e-2))
    pts = pts / norms
  return jnp.asarray(pts)


@pytest.mark.parametrize("name", [n for n in REGISTERED if n in METRICS])
@given(data=st.data())
def test_triangle_inequality(name, data):
  cost = enot_costs.get_cost(name)
  x, y, z = data.draw(point_sets(name, n_points=3))
  tol = 1e-5 * _scale(x, y, z) ** 0.5
  assert cost(x, z) <= cost(x, y) + cost(y, z) + tol


TI_COSTS = [costs.SqEuclidean(), costs.PNormP(1.5), costs.SqPNorm(3.0)]


@pytest.mark.parametrize("cost", TI_COSTS, ids=lambda c: type(c).__name__)
@given(data=st.data())
def test_fenchel_young(cost, data):
  """h(z) + h*(w) >= <z, w>, with equality at w = grad h(z)."""
  dim = data.draw(st.integers(1, 32))
  vec = st.lists(st.floats(-5, 5, width=32), min_size=dim, max_size=dim)
  z = jnp.asarray(data.draw(vec), jnp.float32)
  w = jnp.asarray(data.draw(vec), jnp.float32)
  scale = 1.0 + float(cost.h(z)) + float(cost.h_legendre(w))
  assert cost.h(z) + cost.h_legendre(w) >= jnp.vdot(z, w) - 1e-5 * scale
  w_star = jax.grad(cost.h)(z)
  gap = cost.h(z) + cost.h_legendre(w_star) - jnp.vdot(z, w_star)
  assert abs(float(gap)) <= 1e-4 * (1.0 + float(cost.h(z)) + float(cost.h_legendre(w_star)))


TWIST_COSTS = [n for n in REGISTERED
               if "twist" in enot_costs.available_costs()[n].parameterisations]


@pytest.mark.parametrize("name", TWIST_COSTS)
@given(data=st.data())
def test_twist_inverts_the_cost_gradient(name, data):
  """twist(x, grad_x c(x, y)) = y and twist(y, grad_y c(x, y), True) = x."""
  cost = enot_costs.get_cost(name)
  x, y = data.draw(point_sets(name))
  if enot_costs.available_costs()[name].domain == "sphere":
    # within the injectivity radius: not (nearly) antipodal
    assume(float(enot_costs.SphereGeodesic()(x, y)) < jnp.pi - 0.1)
    tol = 2e-3
  else:
    tol = 1e-4 * (1.0 + float(jnp.max(jnp.abs(jnp.concatenate([x, y])))))
  gx, gy = jax.grad(cost, argnums=(0, 1))(x, y)
  np.testing.assert_allclose(cost.twist_operator(x, gx, False), y, atol=tol)
  np.testing.assert_allclose(cost.twist_operator(y, gy, True), x, atol=tol)


def test_profiles_are_registered():
  from hypothesis import settings
  assert settings.get_profile("ci").max_examples < settings.get_profile("dev").max_examples
