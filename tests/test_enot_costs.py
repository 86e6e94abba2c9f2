"""ENOT with every registered cost against ott's Sinkhorn on the same samples.

Measured (2-core CPU, seed 0, 2x64 ELU MLPs, Adam 1e-3, batch 256,
expectile 0.99, coefficient 0.5; 1024 held-out points; Sinkhorn primal cost
with epsilon 1e-3 x mean cost; divergences with epsilon 1e-2 x mean cost):

=====================  ======  =====  ===============  ===============  =============
cost                   form    steps  E c(x, T(x))     div(T#a, b)      div(a, b)
                                      vs Sinkhorn      (no map)
=====================  ======  =====  ===============  ===============  =============
sqeuclidean            twist   2000   -9.4 %           0.134            1.66
euclidean              direct  6000   -5.0 %           0.252            1.10
sphere_geodesic        direct  2000   -8.1 %           0.196            1.18
sphere_geodesic_sq     twist   2000   -5.6 %           0.0019           0.77
=====================  ======  =====  ===============  ===============  =============

(moons -> S-curve in R^2; two caps on S^2.) Thresholds are about twice the
measured gaps and divergences.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ott.geometry import pointcloud
from ott.neural.networks import potentials as ott_potentials
from ott.solvers import linear
from ott.tools import sinkhorn_divergence

import ott_enot
from ott_enot import costs as enot_costs

from conftest import batches, moons, s_curve, sphere_cap  # noqa: E402

north = lambda n, s: sphere_cap(n, s, [0.0, 0.0, 1.0])
east = lambda n, s: sphere_cap(n, s, [1.0, 0.0, 0.3], 0.2)

CASES = [
    # name, source, target, dim, steps, max |gap| %, max divergence
    ("sqeuclidean", moons, s_curve, 2, 2000, 20.0, 0.3),
    ("euclidean", moons, s_curve, 2, 6000, 12.0, 0.5),
    ("sphere_geodesic", north, east, 3, 2000, 16.0, 0.4),
    ("sphere_geodesic_sq", north, east, 3, 2000, 12.0, 0.02),
]


def _train(name, src, tgt, dim, steps):
  cost = enot_costs.get_cost(name)
  form = enot_costs.default_parameterisation(cost)
  mlp = lambda out: ott_potentials.MLP(dim_hidden=[64, 64, out], act_fn=jax.nn.elu)
  solver = ott_enot.ExpectileNeuralDual(
      dim, mlp(dim if form == "direct" else 1), mlp(1),
      optax.adam(1e-3, b1=0.9, b2=0.9), optax.adam(1e-3, b1=0.9, b2=0.9),
      cost_fn=cost, num_train_iters=steps, expectile=0.99,
      expectile_loss_coef=0.5, rng=jax.random.key(0), progress_bar=False,
  )
  pot = solver(batches(src, 256, 1), batches(tgt, 256, 2),
               batches(src, 256, 3), batches(tgt, 256, 4))
  return cost, pot


def _divergence(a, b, cost):
  div, _ = sinkhorn_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, cost_fn=cost, epsilon=1e-2,
      relative_epsilon="mean"
  )
  return float(div)


@pytest.mark.parametrize(("name", "src", "tgt", "dim", "steps", "max_gap",
                          "max_div"), CASES, ids=[c[0] for c in CASES])
def test_enot_matches_sinkhorn(name, src, tgt, dim, steps, max_gap, max_div):
  cost, pot = _train(name, src, tgt, dim, steps)
  x, y = jnp.asarray(src(1024, 77)), jnp.asarray(tgt(1024, 78))
  tx = pot.transport(x)
  geom = pointcloud.PointCloud(x, y, cost_fn=cost, epsilon=1e-3,
                               relative_epsilon="mean")
  out = linear.solve(geom, max_iterations=10_000)
  assert out.converged
  sinkhorn = float(out.primal_cost)
  map_cost = float(jnp.mean(jax.vmap(cost)(x, tx)))
  assert abs(map_cost - sinkhorn) / sinkhorn * 100 < max_gap
  assert _divergence(tx, y, cost) < max_div
  assert _divergence(tx, y, cost) < 0.5 * _divergence(x, y, cost)
  if enot_costs.domain_of(cost) == "sphere":
    np.testing.assert_allclose(jnp.linalg.norm(tx, axis=-1), 1.0, atol=1e-5)
  if pot.is_bidirectional:
    sx = pot.transport(y, forward=False)
    assert _divergence(sx, x, cost) < 2 * max_div
    if enot_costs.domain_of(cost) == "sphere":
      np.testing.assert_allclose(jnp.linalg.norm(sx, axis=-1), 1.0, atol=1e-5)


def test_sphere_solver_rejects_points_off_the_sphere():
  solver = ott_enot.ExpectileNeuralDual(
      3, cost_fn=enot_costs.SphereGeodesicSq(), num_train_iters=3,
      progress_bar=False
  )
  good = batches(north, 8, 1)
  off = iter([2.0 * north(8, 5)])
  with pytest.raises(ValueError, match="`trainloader_target` has points off"):
    solver(good, off, batches(north, 8, 2), batches(north, 8, 3))
  pot = solver.to_dual_potentials()
  with pytest.raises(ValueError, match="`vec` has points off"):
    pot.transport(jnp.ones((2, 3)))
  assert pot.transport(north(4, 0)).shape == (4, 3)


def test_sphere_twist_is_bidirectional_and_geodesic_is_direct():
  sq = ott_enot.ExpectileNeuralDual(
      3, cost_fn=enot_costs.get_cost("sphere_geodesic_sq"), progress_bar=False
  )
  assert (sq.parameterisation, sq.is_bidirectional) == ("twist", True)
  geo = ott_enot.ExpectileNeuralDual(
      3, cost_fn=enot_costs.get_cost("sphere_geodesic"), progress_bar=False
  )
  assert (geo.parameterisation, geo.is_bidirectional) == ("direct", False)
  with pytest.raises(ValueError, match="no invertible twist"):
    ott_enot.ExpectileNeuralDual(
        3, cost_fn=enot_costs.SphereGeodesic(), parameterisation="twist"
    )


def test_lbfgs_refinement_stays_on_the_sphere():
  from ott.neural.networks.layers import conjugate
  solver = ott_enot.ExpectileNeuralDual(
      3, cost_fn=enot_costs.SphereGeodesicSq(), num_train_iters=20,
      progress_bar=False, rng=jax.random.key(0),
      conjugate_solver=conjugate.FenchelConjugateLBFGS(max_iter=20),
  )
  solver(batches(north, 32, 1), batches(east, 32, 2), batches(north, 32, 3),
         batches(east, 32, 4))
  x = jnp.asarray(north(16, 9))
  refined = solver.to_dual_potentials()
  t = refined.transport(x)
  np.testing.assert_allclose(jnp.linalg.norm(t, axis=-1), 1.0, atol=1e-5)
  amortised = solver.to_dual_potentials(finetune_g=False)
  assert jnp.all(jax.vmap(refined.f)(x) <= jax.vmap(amortised.f)(x) + 1e-4)
