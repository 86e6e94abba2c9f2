"""ENOT with every registered cost: maps that push the source onto the target.

Judged without ground truth, on 1,024 held-out points: the fit (Sinkhorn
divergence of T(x) to y, :func:`ott_enot.evaluation.metrics.sinkhorn_divergence`) over
the resampling floor (the same divergence between two target samples), and
the dual estimate against the exact OT cost of the same points (the assignment
problem, :func:`ott_enot.evaluation.metrics.exact_ot_cost`).

Measured (2-core CPU, seed 0, 2x64 ELU MLPs, the solver's default optimiser
and coefficients, batch 256):

====================  ==========  =====  ===========  ===========  ==========
cost                  problem     steps  fit / floor  inverse      dual vs
                                                      fit / floor  exact
====================  ==========  =====  ===========  ===========  ==========
sqeuclidean           moons       2000   1.68         6.90         -3.5 %
euclidean (twist)     5 -> ring   2000   2.66         3.37         -6.9 %
euclidean (direct)    5 -> ring   2000   8.92         -            +13.3 %
sphere_geodesic       1 -> 2 caps 2000   2.03         4.92         -1.6 %
sphere_geodesic_sq    1 -> 2 caps 2000   1.54         2.76         +3.5 %
====================  ==========  =====  ===========  ===========  ==========

(moons -> S-curve; ott's square_five -> circle mixtures; a cap -> two caps on
S^2, drawn i.i.d.; the dual gaps re-measured 2026-12-04, when the exact cost
replaced Sinkhorn's at 1e-3 x the mean cost: they moved by at most 0.3 points,
the earlier ones predate changes of the defaults.) Thresholds are about twice
the measured values. The
direct map of the Euclidean distance (ott 0.5.1's ``is_bidirectional=False``)
collapses clusters onto the near ends of their transport rays: its fit is
several times the twist's through the surrogate.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott import datasets
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import costs as enot_costs
from ott_enot.evaluation import metrics

from conftest import (batches, moons, optimised, s_curve,  # noqa: E402
                      sphere_cap)

north = lambda n, s: sphere_cap(n, s, [0.0, 0.0, 1.0])
east = lambda n, s: sphere_cap(n, s, [1.0, 0.0, 0.3], 0.2)


def two_caps(n, seed):
  """An equal mixture of two caps, i.i.d. (random counts per cap)."""
  a = sphere_cap(n, seed, [1.0, 0.0, 0.3], 0.15)
  b = sphere_cap(n, seed + 7, [-0.3, 1.0, 0.0], 0.15)
  pick = np.random.default_rng(seed + 11).random(n) < 0.5
  return np.where(pick[:, None], a, b)


def mixture(name):
  def draw(n, seed):
    _, valid, _ = datasets.create_gaussian_mixture_samplers(
        name, name, valid_batch_size=n, rng=jax.random.key(seed)
    )
    return np.asarray(next(valid.source_iter))
  return draw


CASES = [
    # name, parameterisation, source, target, dim, steps, max fit / floor,
    # max inverse fit / floor, max |dual gap| %
    ("sqeuclidean", None, moons, s_curve, 2, 2000, 3.5, 14.0, 8.0),
    ("euclidean", None, mixture("square_five"), mixture("circle"), 2, 2000,
     5.0, 7.0, 24.0),
    ("sphere_geodesic", None, north, two_caps, 3, 2000, 4.0, 10.0, 5.0),
    ("sphere_geodesic_sq", None, north, two_caps, 3, 2000, 3.0, 6.0, 7.0),
]


def _train(name, form, src, tgt, dim, steps):
  cost = enot_costs.get_cost(name)
  mlp = lambda out: ott_potentials.MLP(dim_hidden=[64, 64, out],
                                       act_fn=jax.nn.elu)
  solver = ott_enot.ExpectileNeuralDual(
      dim, mlp(dim if form == "direct" else 1), mlp(1), cost_fn=cost,
      num_train_iters=steps, parameterisation=form, rng=jax.random.key(0),
      progress_bar=False,
  )
  pot = solver(batches(src, 256, 1), batches(tgt, 256, 2),
               batches(src, 256, 3), batches(tgt, 256, 4))
  return cost, pot


@optimised
def _divergence_ratio(mapped, samples, other):
  return (metrics.sinkhorn_divergence(mapped, samples) /
          metrics.sinkhorn_divergence(other, samples))


def _fit(mapped, samples, other):
  """fit / floor: S(mapped, samples) over S(other sample, samples)."""
  return float(_divergence_ratio(mapped, samples, other))


@pytest.fixture(scope="module")
def euclidean_runs():
  """The Euclidean distance through its surrogate (the default) and as
  ott 0.5.1's direct map, on the same problem and budget."""
  name, _, src, tgt, dim, steps, *_ = CASES[1]
  return {form: _train(name, form, src, tgt, dim, steps)
          for form in (None, "direct")}


@pytest.mark.parametrize(
    ("name", "form", "src", "tgt", "dim", "steps", "max_fit", "max_inv",
     "max_gap"), CASES, ids=[c[0] for c in CASES])
def test_maps_push_the_source_onto_the_target(
    name, form, src, tgt, dim, steps, max_fit, max_inv, max_gap,
    euclidean_runs
):
  cost, pot = (euclidean_runs[None] if name == "euclidean" else
               _train(name, form, src, tgt, dim, steps))
  x, y = jnp.asarray(src(1024, 77)), jnp.asarray(tgt(1024, 78))
  x2, y2 = jnp.asarray(src(1024, 79)), jnp.asarray(tgt(1024, 80))
  tx = pot.transport(x)
  assert _fit(tx, y, y2) < max_fit
  gap = float(pot.distance(x, y)) / metrics.exact_ot_cost(x, y, cost) - 1.0
  assert abs(gap) * 100 < max_gap
  if enot_costs.domain_of(cost) == "sphere":
    np.testing.assert_allclose(jnp.linalg.norm(tx, axis=-1), 1.0, atol=1e-5)
  assert pot.is_bidirectional  # every registered cost has an inverse map
  sx = pot.transport(y, forward=False)
  assert _fit(sx, x, x2) < max_inv
  if enot_costs.domain_of(cost) == "sphere":
    np.testing.assert_allclose(jnp.linalg.norm(sx, axis=-1), 1.0, atol=1e-5)


def test_euclidean_direct_map_collapses_where_the_surrogate_does_not(
    euclidean_runs
):
  _, src, tgt = CASES[1][1:4]
  x, y, y2 = (jnp.asarray(f(1024, s)) for f, s in ((src, 77), (tgt, 78),
                                                   (tgt, 80)))
  fits = {form: _fit(pot.transport(x), y, y2)
          for form, (_, pot) in euclidean_runs.items()}
  assert fits["direct"] > 2.0 * fits[None], fits
  assert euclidean_runs["direct"][1].parameterisation == "direct"
  assert euclidean_runs[None][1].parameterisation == "twist"


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


def test_metric_costs_train_through_their_surrogate():
  for cost, surrogate in (
      (enot_costs.get_cost("euclidean"), enot_costs.EuclideanPower),
      (enot_costs.get_cost("sphere_geodesic"), enot_costs.SphereGeodesicPower),
  ):
    dim = 3
    solver = ott_enot.ExpectileNeuralDual(dim, cost_fn=cost, progress_bar=False)
    assert (solver.parameterisation, solver.is_bidirectional) == ("twist", True)
    assert isinstance(solver.model.training_cost_fn, surrogate)
    assert solver.model.training_cost_fn.p == 1.75
    # f, g are the surrogate's potentials; the maps are judged with the metric
    pot = solver.to_dual_potentials()
    assert pot.cost_fn is solver.model.training_cost_fn
    assert pot.model.cost_fn is solver.cost_fn
    # ott 0.5.1's spelling still gives the direct map of the metric itself
    old = ott_enot.ExpectileNeuralDual(dim, cost_fn=cost, is_bidirectional=False,
                                       progress_bar=False)
    assert old.parameterisation == "direct"
    assert old.model.training_cost_fn is old.cost_fn
  sq = ott_enot.ExpectileNeuralDual(
      3, cost_fn=enot_costs.get_cost("sphere_geodesic_sq"), progress_bar=False
  )
  assert (sq.parameterisation, sq.is_bidirectional) == ("twist", True)
  assert sq.model.training_cost_fn is sq.cost_fn
  with pytest.raises(ValueError, match="only for `costs.SqEuclidean"):
    ott_enot.ExpectileNeuralDual(
        2, cost_fn=ott_enot.costs.get_cost("euclidean"),
        parameterisation="correlation"
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
