"""Populations: members equal solvers trained alone, divergence freezes one
member, checkpoints resume, the result chooses, bad members are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ott.neural.networks import potentials as P

import ott_enot
from ott_enot.solvers import enot as solver_lib
from ott_enot.solvers import population

STEPS, BATCH, WIDTH = 60, 64, 32
MEMBERS = [
    {"seed": 0, "expectile": 0.99, "expectile_loss_coef": 0.5,
     "learning_rate": 1e-3},
    {"seed": 1, "expectile": 0.9, "expectile_loss_coef": 0.3,
     "learning_rate": 3e-4},
    {"seed": 0, "expectile": 0.99, "expectile_loss_coef": 1.0,
     "learning_rate": 3e-4},
]


def _nets():
  return dict(neural_f=P.MLP([WIDTH, WIDTH, 1]),
              neural_g=P.MLP([WIDTH, WIDTH, 1]))


def _kw(**kw):
  base = dict(num_train_iters=STEPS, valid_freq=20, log_freq=10,
              chunk_size=20, progress_bar=False, logging=True)
  base.update(kw)
  return base


@pytest.fixture(scope="module")
def points(pair2):
  x = np.asarray(pair2.source.sample(jax.random.key(5), 2000))
  y = np.asarray(pair2.target.sample(jax.random.key(6), 2000))
  return x, y


@pytest.fixture(scope="module")
def trained(points):
  pop = ott_enot.ENOTPopulation(2, members=MEMBERS, **_nets(), **_kw())
  return pop, pop.fit(*points, batch_size=BATCH)


def _alone(member, points):
  opt = lambda: solver_lib.default_optimizer(STEPS, member["learning_rate"])
  solver = ott_enot.ENOTSolver(
      2, **_nets(), optimizer_f=opt(), optimizer_g=opt(),
      expectile=member["expectile"],
      expectile_loss_coef=member["expectile_loss_coef"],
      rng=jax.random.key(member["seed"]), **_kw()
  )
  return solver.fit(*points, batch_size=BATCH)


def test_member_equals_its_config_trained_alone(trained, points, pair2):
  # member 1 differs from member 0 (the population's defaults but for the
  # seed) in every setting: seed, tau, lambda and the learning rate
  _, result = trained
  i = 1
  alone, logs = _alone(MEMBERS[i], points)
  x = pair2.x_test[:256]
  mine = result.member(i)
  # the same maps and the same logs, up to float rounding (vmapped matmuls
  # round differently; the differences stay at rounding level over 60 steps)
  scale = float(jnp.max(jnp.abs(alone.transport(x))))
  np.testing.assert_allclose(
      mine.transport(x), alone.transport(x), atol=1e-4 * scale
  )
  np.testing.assert_allclose(
      mine.transport(x, forward=False), alone.transport(x, forward=False),
      atol=1e-4 * scale
  )
  member_logs = result.member_logs(i)
  for part in ("train_logs", "valid_logs"):
    # the dual estimate does not depend on the potentials' additive
    # constants; the losses do, and the objective leaves those constants
    # free (their gradient is zero up to rounding, which Adam normalises into
    # steps of size lr), so they drift apart by up to ~STEPS * lr
    np.testing.assert_allclose(
        member_logs[part]["w_dist"], logs[part]["w_dist"], rtol=1e-3,
        atol=1e-4, err_msg=f"{part}/w_dist"
    )
    for key in ("loss_f", "loss_g"):
      np.testing.assert_allclose(
          member_logs[part][key], logs[part][key],
          atol=STEPS * MEMBERS[i]["learning_rate"], err_msg=f"{part}/{key}"
      )
  np.testing.assert_allclose(
      member_logs["valid_logs"]["fit"], logs["valid_logs"]["fit"], rtol=1e-3
  )
  assert member_logs["train_logs"]["directions"] == logs["train_logs"][
      "directions"]
  # the members differ from each other (they are not one model three times)
  other = result.member((i + 1) % len(MEMBERS))
  assert float(jnp.max(jnp.abs(other.transport(x) - mine.transport(x)))) > (
      1e-2 * scale
  )


def test_result_table_best_and_plot(trained, pair2):
  pop, result = trained
  assert len(result) == pop.size == 3
  rows = result.table()
  crit = result.criterion()
  assert [r["member"] for r in rows] == [0, 1, 2]
  for row, m, c in zip(rows, MEMBERS, crit):
    assert row["expectile"] == m["expectile"]
    assert row["learning_rate"] == m["learning_rate"]
    assert row["steps"] == STEPS and row["diverged"] is False
    # validation batches of 64 points cannot choose a state: the members
    # hold their last parameters, scored by the last validation
    assert "kept step" not in row and row["fit/floor"] == pytest.approx(c)
    assert row["fit"] > 0 and row["floor"] > 0 and 0 <= row["strays"] <= 1
  assert result.best_index() == int(np.argmin(crit))
  held_out = result.criterion(pair2.x_test[:512], pair2.y_test[:512])
  assert held_out.shape == (3,) and np.isfinite(held_out).all()
  assert result.best_index(pair2.x_test[:512], pair2.y_test[:512]) == int(
      np.argmin(held_out))
  with pytest.raises(ValueError, match="both"):
    result.criterion(pair2.x_test)
  best = result.best()
  assert isinstance(best, ott_enot.ENOTPotentials)
  assert result.format_table().splitlines()[1 + result.best_index()][0] == "*"
  scores = result.scores()
  assert scores.shape == (3, 3)  # validations after steps 20, 40 and 59
  assert "selection" not in result.logs
  ax = result.plot()
  assert len(ax.get_lines()) == 3 + 1  # a line per member and the floor
  # a population is not one map: no `to_dual_potentials` (it is no
  # ENOTSolver); its members' potentials come from the result
  assert not isinstance(pop, ott_enot.ENOTSolver)
  assert not hasattr(pop, "to_dual_potentials")


def test_diverging_member_is_frozen_while_others_train(pair2):
  members = [{"learning_rate_scale": 1.0}, {"learning_rate_scale": 1e30},
             {"learning_rate_scale": 0.5}]
  pop = ott_enot.ENOTPopulation(
      2, members=members, **_nets(), **_kw(num_train_iters=40)
  )
  before = jax.tree.map(np.asarray, pop.state)
  result = pop(*pair2.loaders(batch=BATCH))
  assert result.diverged.tolist() == [False, True, False]
  assert result.steps[0] == result.steps[2] == 40
  assert result.steps[1] < 40
  frozen = result.member(1)
  params = jax.tree.leaves((frozen.params_f, frozen.params_g))
  assert all(np.isfinite(np.asarray(p)).all() for p in params)
  if result.steps[1] == 0:  # its first step diverged: the initial state kept
    for a, b in zip(jax.tree.leaves(before.members.f.params),
                    jax.tree.leaves(pop.state.members.f.params)):
      np.testing.assert_array_equal(a[1], b[1])
  assert np.isinf(result.criterion()[1])
  assert result.best_index() != 1
  # the others moved
  moved = result.member(0).transport(pair2.x_test[:64])
  assert np.isfinite(np.asarray(moved)).all()


def test_every_member_diverged_raises_with_the_last_good_states(pair2):
  pop = ott_enot.ENOTPopulation(
      2, members=[{"learning_rate_scale": 1e30}] * 3, **_nets(),
      **_kw(num_train_iters=40)
  )
  with pytest.raises(ott_enot.TrainingDivergedError) as err:
    pop(*pair2.loaders(batch=BATCH))
  assert isinstance(err.value.potentials, ott_enot.PopulationResult)
  assert err.value.potentials.diverged.all()
  leaves = jax.tree.leaves(pop.state.params)
  assert all(np.isfinite(np.asarray(p)).all() for p in leaves)


def test_checkpoint_resume_equals_uninterrupted(trained, points, tmp_path):
  whole, whole_result = trained  # the same run without checkpoints
  kw = _kw(checkpoint_every=20)

  class Stop(Exception):
    pass

  def stop_at_40(step, result):
    assert isinstance(result, ott_enot.PopulationResult)
    if step >= 40:
      raise Stop

  first = ott_enot.ENOTPopulation(
      2, members=MEMBERS, **_nets(), checkpoint_dir=tmp_path, **kw
  )
  with pytest.raises(Stop):
    first.fit(*points, batch_size=BATCH, callback=stop_at_40)
  resumed = ott_enot.ENOTPopulation(
      2, members=MEMBERS, **_nets(), checkpoint_dir=tmp_path, **kw
  )
  result = resumed.fit(*points, batch_size=BATCH, resume=True)
  for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert result.logs == whole_result.logs
  # a single solver cannot resume a population's checkpoint
  single = ott_enot.ENOTSolver(2, **_nets(), checkpoint_dir=tmp_path, **kw)
  with pytest.raises(ott_enot.training.checkpoints.CheckpointError):
    single.restore()


@pytest.mark.parametrize("members, kwargs, error, match", [
    ([], {}, ValueError, "empty"),
    ({"expectile": 0.9}, {}, TypeError, "list of dicts"),
    ([{"expectile": 1.5}], {}, ValueError, r"members\[0\]\['expectile'\]"),
    ([{"expectile": 0.0}], {}, ValueError, r"in \(0, 1\]"),
    ([{"expectile_loss_coef": -1}], {}, ValueError, ">= 0"),
    ([{"learning_rate": float("nan")}], {}, ValueError, "learning_rate"),
    ([{"tau": 0.9}], {}, ValueError, "unknown settings"),
    ([{"seed": 0}, {}], {}, ValueError, "every member or to none"),
    ([{"seed": -1}], {}, ValueError, "int >= 0"),
    ([{"learning_rate": 1e-3, "learning_rate_scale": 2}], {}, ValueError,
     "give one"),
    ([{"learning_rate": 1e-3}], {"optimizer_f": optax.adam(1e-3)},
     ValueError, "learning_rate_scale"),
    ([{}] * 4, {"max_memory_bytes": 1000}, ValueError, "MiB"),
])
def test_bad_members_are_refused_before_compiling(
    members, kwargs, error, match
):
  with pytest.raises(error, match=match):
    ott_enot.ENOTPopulation(2, members=members, **_nets(), **kwargs)


def test_grid_is_the_product():
  members = population.grid(expectile=[0.9, 0.99], seed=[0, 1, 2])
  assert len(members) == 6
  assert members[0] == {"expectile": 0.9, "seed": 0}
  assert members[-1] == {"expectile": 0.99, "seed": 2}
  with pytest.raises(TypeError, match="list of values"):
    population.grid(expectile=0.9)


def test_memory_estimate_counts_members():
  solver = ott_enot.ENOTSolver(2, **_nets())
  one = population.memory_estimate(solver.state, 1)
  params = sum(np.asarray(p).nbytes for p in jax.tree.leaves(solver.state.params))
  assert one > 3 * params
  assert population.memory_estimate(solver.state, 8) == 8 * one
