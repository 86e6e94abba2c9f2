"""A training method the engine has never seen plugs into it unchanged.

The method, defined here and nowhere in the package: the plain Kantorovich
dual with the exact c-transform on a finite candidate set (the batch's target
points), for c(x, y) = |x - y|^2,

  max_g  mean_i g^c(x_i) + mean_j g(y_j),   g^c(x) = min_j c(x, y_j) - g(y_j),

with g a small network. By weak duality the objective on a batch is at most
the exact OT cost between the batch's two empirical measures, so it can be
checked against an exact assignment. It trains through the package's shell
(`ott_enot.solvers.Solver.fit`: a point cloud stream sampled on the device),
validates, logs, keeps a best checkpoint by its own metric, resumes bit for
bit after an interruption and stops on divergence with the last good state:
everything the engine does, without one line of it changed.
"""
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import struct

import ott_enot
from ott_enot import data, training
from ott_enot.evaluation import metrics
from ott_enot.solvers import Solver

D, N, BATCH, STEPS = 2, 1000, 64, 301  # validations after 100, 200, 300
SHIFT = np.array([3.0, 0.0], np.float32)


class DualState(struct.PyTreeNode):
  params: Any
  opt_state: Any
  step: jnp.ndarray
  diverged: jnp.ndarray

  def with_progress(self, step, diverged):
    return self.replace(step=step, diverged=diverged)


class Metrics(NamedTuple):
  loss: jnp.ndarray
  dual: jnp.ndarray


class Potential(nn.Module):

  @nn.compact
  def __call__(self, y):
    h = nn.elu(nn.Dense(32)(y))
    return nn.Dense(1)(nn.elu(nn.Dense(32)(h)))[:, 0]


@dataclasses.dataclass(frozen=True)
class FiniteDual:
  """The Kantorovich dual with the exact c-transform over the batch."""
  optimizer: optax.GradientTransformation
  network: nn.Module = Potential()

  phases = 1
  train_log_keys = ("dual",)
  valid_log_keys = ("dual", "map_cost")
  selection_metric = "-dual"
  selection_tolerance = 0.0  # the lowest
  divergence_advice = "Lower the learning rate."
  data_spec = training.DataSpec(D)

  def init(self, rng):
    params = self.network.init(rng, jnp.ones((1, D)))["params"]
    return DualState(params, self.optimizer.init(params),
                     jnp.asarray(0, jnp.int32), jnp.asarray(False))

  def dual(self, params, x, y):
    g = self.network.apply({"params": params}, y)
    cost = jnp.sum((x[:, None] - y[None]) ** 2, -1) - g[None]
    return jnp.mean(jnp.min(cost, 1)) + jnp.mean(g), jnp.argmin(cost, 1)

  def step(self, state, batch, phase):
    assert phase == 0
    x, y = batch
    dual, grads = jax.value_and_grad(
        lambda p: self.dual(p, x, y)[0])(state.params)
    updates, opt_state = self.optimizer.update(
        jax.tree.map(jnp.negative, grads), state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state), Metrics(
        -dual, dual)

  def zero_metrics(self, state):
    del state
    return Metrics(jnp.zeros(()), jnp.zeros(()))

  def params(self, state):
    return state.params

  def selection_score(self, metrics):
    return -metrics["dual"]

  def with_params(self, state, params):
    return state.replace(params=params)

  def validation_reference(self, batch):
    del batch
    return ()

  def validate(self, params, batch, reference):
    del reference
    x, y = batch
    dual, match = self.dual(params, x, y)
    return {"dual": dual,
            "map_cost": jnp.mean(jnp.sum((x - y[match]) ** 2, -1))}

  def log_row(self, step, metrics):
    del step
    return {"dual": float(metrics.dual)}

  def describe(self):
    return {"method": "finite dual", "dim_data": D}

  def result(self, state):
    return state.params


def _points(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (0.5 * rng.normal(size=(N, D)) + SHIFT).astype(np.float32)
  return x, y


def _solver(optimizer=None, **kw):
  method = FiniteDual(optimizer or optax.adam(1e-2))
  kw = dict(dict(num_train_iters=STEPS, valid_freq=100, log_freq=50,
                 chunk_size=50, logging=True, progress_bar=False), **kw)
  return Solver(method, method.init(jax.random.key(0)), **kw)


def _fit(solver, **kw):
  return solver.fit(_points()[0], y=_points()[1], batch_size=BATCH,
                    rng=jax.random.key(1), **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  directory = tmp_path_factory.mktemp("finite-dual")
  solver = _solver(checkpoint_dir=directory, checkpoint_every=100)
  compiled = training.chunk_programs_compiled()
  params, logs = _fit(solver)
  return solver, params, logs, directory, (
      training.chunk_programs_compiled() - compiled)


def test_it_trains_with_fit_and_validates(trained):
  solver, params, logs, _, programs = trained
  assert programs == 1  # one chunk program for the whole run
  assert int(solver.state.step) == STEPS
  assert len(logs["train_logs"]["dual"]) == 7  # steps 0, 50, ..., 300
  assert set(logs["valid_logs"]) == {"dual", "map_cost"}
  assert len(logs["valid_logs"]["dual"]) == 3
  # the result is the best validation's parameters (by the method's own
  # score, the lowest -dual), the state the last
  duals = logs["valid_logs"]["dual"]
  chosen = int(np.argmax(duals))
  assert logs["selection"] == {"step": 100 * (chosen + 1),
                               "-dual": -duals[chosen],
                               "lowest": -duals[chosen]}
  assert int(solver.best.step) == 100 * (chosen + 1)
  # every validation sees the stream's first validation batch: reproduce it
  # and score the returned potential against the exact OT cost of that batch
  stream = data.PointCloudStream.from_arrays(
      *_points(), batch_size=BATCH, rng=jax.random.key(1))
  x, y = stream.valid_step(jax.random.fold_in(jax.random.key(1), 1), 0)
  dual, _ = solver.method.dual(params, x, y)
  np.testing.assert_allclose(float(dual), duals[chosen], rtol=1e-5)
  last = solver.method.dual(solver.state.params, x, y)[0]
  np.testing.assert_allclose(float(last), duals[-1], rtol=1e-5)
  exact = metrics.exact_ot_cost(x, y)  # ||x - y||^2, as the method's cost
  # weak duality on the batch, and close to it after training (measured
  # 0.981-0.985 of the exact cost with initial seeds 0-2; the untrained
  # potential's, nearest neighbours, 0.68-0.71)
  assert float(dual) <= exact * (1 + 1e-5)
  assert float(dual) > 0.95 * exact, (float(dual), exact)
  untrained = solver.method.dual(
      solver.method.init(jax.random.key(0)).params, x, y)[0]
  assert float(untrained) < 0.8 * exact


def test_it_checkpoints_by_its_own_metric_and_resumes_bit_for_bit(
    trained, tmp_path):
  whole, _, whole_logs, directory, _ = trained
  best = ott_enot.training.checkpoints.checkpoint_steps(directory, "best")
  duals = whole_logs["valid_logs"]["dual"]
  assert best == (100 * (1 + int(np.argmax(duals))),)
  assert _solver(checkpoint_dir=directory).restore("best")["selection"][
      "-dual"] == pytest.approx(-max(duals))

  class Stop(Exception):
    pass

  def stop(step, _):
    if step >= 150:
      raise Stop  # after the checkpoint of step 100

  with pytest.raises(Stop):
    _fit(_solver(checkpoint_dir=tmp_path, checkpoint_every=100),
         callback=stop)
  resumed = _solver(checkpoint_dir=tmp_path, checkpoint_every=100)
  assert resumed.restore()["step"] == 100
  _, logs = _fit(resumed, resume=True)
  for a, b in zip(jax.tree.leaves((resumed.state, resumed.best)),
                  jax.tree.leaves((whole.state, whole.best)), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert logs == whole_logs
  # a checkpoint of another method is refused
  with pytest.raises(ott_enot.training.checkpoints.CheckpointError):
    ott_enot.ENOTSolver(D, checkpoint_dir=directory).restore()


def test_it_stops_on_divergence_with_the_last_good_state():

  def nan_from(step):
    def update(updates, count, params=None):
      del params
      scale = jnp.where(count >= step, jnp.nan, -1e-2)
      return jax.tree.map(lambda u: scale * u, updates), count + 1
    return optax.GradientTransformation(
        lambda p: jnp.zeros((), jnp.int32), update)

  solver = _solver(nan_from(70), num_train_iters=STEPS)
  with pytest.raises(ott_enot.TrainingDivergedError,
                     match="Lower the learning rate") as err:
    _fit(solver)
  assert err.value.step == 70 and int(solver.state.step) == 70
  assert bool(solver.state.diverged)
  assert all(np.isfinite(np.asarray(l)).all()
             for l in jax.tree.leaves(solver.state.params))
  # the error holds the method's result for the last good state
  for a, b in zip(jax.tree.leaves(err.value.potentials),
                  jax.tree.leaves(solver.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
