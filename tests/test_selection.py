"""Training returns the map of its best validation: more steps never hurt.

A small sphere problem (a cap to two caps, a finite sample, the geodesic
cost and its surrogate), validated every 150 steps and after the last, on
the same held-out batch every time: the returned potentials are those of
the lowest fit / floor (bit for bit the state a run stopped there reaches),
they score that validation's fit again on the batch, and the solver's state
is the last one.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ott_enot
from ott_enot import costs, data
from ott_enot.evaluation import metrics, problems
from ott.geometry import pointcloud
from ott.neural.networks import potentials as ott_potentials

from conftest import kept_validation  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _validation_that_chooses(selection_valid_points):
  """Validation batches that choose the returned map."""


STEPS, VALID, BATCH, N = 976, 150, 128, 6000  # validations 150, ..., 975
HELD_OUT = 0.2  # 1,200 held-out points: validation batches of 8 x 128


def _settings(steps):
  mlp = lambda: ott_potentials.MLP(dim_hidden=[32, 32, 1], act_fn=jax.nn.elu)
  adam = ott_enot.optax_call.adam(3e-3)  # constant: a shorter run's steps
  return dict(neural_f=mlp(), neural_g=mlp(),  # are the longer run's first
              optimizer_f=adam, optimizer_g=adam,
              cost_fn=costs.get_cost("sphere_geodesic"), num_train_iters=steps,
              valid_freq=VALID, logging=True, progress_bar=False)


def _solver(steps):
  return ott_enot.ENOTSolver(3, rng=jax.random.key(0), **_settings(steps))


def _points():
  u = problems.unit_vector
  x = problems.caps([u(0, 0)], N, 0.2, seed=0).points
  y = problems.caps([u(60, 0), u(-60, 90)], N, 0.15, seed=1).points
  return x, y


def _fit(solver):
  geom = pointcloud.PointCloud(*map(jnp.asarray, _points()),
                               cost_fn=solver.cost_fn)
  return solver.fit(geom, batch_size=BATCH, valid_fraction=HELD_OUT,
                    rng=jax.random.key(1))


def test_returns_the_best_validation_and_keeps_the_last_state():
  solver = _solver(STEPS)
  returned, logs = _fit(solver)
  valid = logs["valid_logs"]
  scores = np.asarray(valid["fit"]) / np.asarray(valid["floor"])
  steps = list(range(VALID, STEPS, VALID)) + [STEPS - 1]
  assert len(scores) == len(steps)  # and after the last step
  # the same held-out batch every time: the lowest validation
  chosen = int(kept_validation(scores, 0.0))
  assert scores[chosen] == scores.min()
  step = steps[chosen]
  assert logs["selection"] == {"step": step, "fit/floor": scores[chosen],
                               "lowest": scores[:chosen + 1].min()}
  assert int(solver.best.step) == step and int(solver.state.step) == STEPS
  # the returned map is the state after `step`: a run stopped there gets it
  stopped, _ = _fit(_solver(step + 1))
  for a, b in zip(jax.tree.leaves((returned.params_f, returned.params_g)),
                  jax.tree.leaves((stopped.params_f, stopped.params_g)),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # and scores the chosen validation's fit again on the run's one
  # validation batch (of a uniform cloud: distinct held-out points)
  stream = data.PointCloudStream.from_arrays(
      *_points(), batch_size=BATCH, valid_fraction=HELD_OUT,
      rng=jax.random.key(1))
  batch = lambda k: stream.valid_step(
      jax.random.fold_in(jax.random.key(1), 1), k)
  x, y = batch(0)
  # distinct held-out points: as many whole batches as fit in 1,024
  assert x.shape == (BATCH * 8, 3)
  reference = metrics.fit_reference(batch(0)[1])  # the run's, once
  fit = metrics.fit_at(returned.transport(x), y, reference).fit
  np.testing.assert_allclose(float(fit / reference.floor), scores[chosen],
                             rtol=1e-4)
  # the last state is another map unless it was kept; `keep_best=False`
  # returns it
  last = solver.enot.potentials(*solver.state.params)
  assert np.allclose(last.transport(x), returned.transport(x)) == (
      step == STEPS - 1)
  solver.keep_best = False
  np.testing.assert_array_equal(solver.to_dual_potentials().transport(x),
                                last.transport(x))


def test_each_member_of_a_population_keeps_its_best():
  population = ott_enot.ENOTPopulation(
      3, members=[{"seed": 0}, {"seed": 5, "learning_rate_scale": 0.3}],
      **_settings(STEPS))
  result = _fit(population)
  scores = result.scores()  # [validations, members]
  kept = kept_validation(scores, 0.0)  # the same batch every time
  steps = list(range(VALID, STEPS, VALID)) + [STEPS - 1]
  rows = result.table()
  assert [r["kept step"] for r in rows] == [steps[k] for k in kept]
  np.testing.assert_allclose(result.criterion(), scores[kept, [0, 1]])
  assert result.best_index() == int(np.argmin(scores[kept, [0, 1]]))
  # member by member: its kept parameters (the last ones only if kept)
  state = population.state
  x = jnp.asarray(_points()[0][:64])
  for i in range(2):
    last = population.method.member_potentials(state, i)
    assert np.allclose(last.transport(x), result.member(i).transport(x)) == (
        kept[i] == len(steps) - 1)
