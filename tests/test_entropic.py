"""The entropic plan: its ground truth, its sampler, its loss, and the solver
(warm against cold, resume with the chains, bad input).

Convention: c(x, y) = |x - y|^2 / 2 (ott's PNormP(2)), so epsilon is that of
the closed forms; 2-D Gaussians with the closed-form plan."""
import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import linen as nn
from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import methods
from ott_enot.evaluation import entropic as truth
from ott_enot.methods import entropic as method_lib
from ott_enot.model import entropic as model_lib
from ott_enot.model import langevin

D, EPS, BATCH = 2, 0.5, 256
COST = costs.PNormP(2)
#: Small networks: the suite's CPU time goes into the chains' steps.
small = lambda: ott_potentials.MLP(dim_hidden=(64, 64, 1), act_fn=jax.nn.elu)
NETWORKS = dict(energy_network=small())
ENOT_NETWORKS = dict(neural_f=small(), neural_g=small())


def _spd(seed, low, high):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(D, D)))
  return (q * rng.uniform(low, high, D)) @ q.T


MEAN_X, COV_X = np.zeros(D), _spd(0, 0.3, 2.0)
MEAN_Y, COV_Y = np.ones(D), _spd(1, 0.2, 1.5)
PLAN = truth.gaussian_entropic_plan(MEAN_X, COV_X, MEAN_Y, COV_Y, EPS)


def sampler(key):
  kx, ky = jax.random.split(key)
  lx = np.linalg.cholesky(COV_X).astype(np.float32)
  ly = np.linalg.cholesky(COV_Y).astype(np.float32)
  return (jax.random.normal(kx, (BATCH, D)) @ lx.T + MEAN_X.astype(np.float32),
          jax.random.normal(ky, (BATCH, D)) @ ly.T + MEAN_Y.astype(np.float32))


TEST_X = np.asarray(sampler(jax.random.key(99))[0][:20])
SAMPLES = 150


def c_bw_uvp(samples):
  means, covs = PLAN.conditional_moments(TEST_X)
  return truth.conditional_bw_uvp(np.asarray(samples), means, covs,
                                  PLAN.target_variance())


class Quadratic(nn.Module):
  """r(y) = -y'Qy/2 + b'y: the true residual of a Gaussian plan (cold)."""

  @nn.compact
  def __call__(self, y):
    q = self.param("Q", nn.initializers.zeros, (D, D))
    b = self.param("b", nn.initializers.zeros, (D,))
    return (-0.5 * jnp.einsum("ni,ij,nj->n", y, q, y) + y @ b)[:, None]


def true_energy():
  """The residual with log pi(y | x) = -c(x, y)/eps + r(y) exactly."""
  s_inv = np.linalg.inv(PLAN.cond_cov)
  shift = PLAN.mean[D:] - PLAN.cond_matrix @ PLAN.mean[:D]
  q = s_inv - np.eye(D) / EPS
  return {"Q": jnp.asarray(q, jnp.float32),
          "b": jnp.asarray(s_inv @ shift, jnp.float32)}


def true_potentials():
  model = model_lib.EnergyModel(COST, Quadratic(), D)
  params = model_lib.EntropicParams(
      true_energy(), (), jnp.asarray(EPS, jnp.float32),
      jnp.log(jnp.asarray(0.1, jnp.float32)),
      jnp.asarray(MEAN_Y, jnp.float32), jnp.ones((D,), jnp.float32),
      jnp.zeros((4, D), jnp.float32))
  return model_lib.EntropicPotentials(params, model)


# ---- ground truth ----

@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_closed_form_plan_has_the_entropic_precision(eps):
  """The plan's precision has off-diagonal block -I/eps (its density is
  exp(<x, y>/eps + a(x) + b(y))), and its conditional is the Gaussian's."""
  plan = truth.gaussian_entropic_plan(MEAN_X, COV_X, MEAN_Y, COV_Y, eps)
  precision = np.linalg.inv(plan.cov)
  np.testing.assert_allclose(precision[:D, D:], -np.eye(D) / eps, atol=1e-8)
  a, c, b = plan.cov[:D, :D], plan.cov[:D, D:], plan.cov[D:, D:]
  np.testing.assert_allclose(plan.cond_cov, b - c.T @ np.linalg.solve(a, c),
                             atol=1e-10)
  assert np.linalg.eigvalsh(plan.cond_cov).min() > 0
  assert truth.half_sq_epsilon(costs.SqEuclidean(), eps) == eps / 2
  assert truth.half_sq_epsilon(costs.PNormP(2), eps) == eps


def test_mixture_plan_samples_match_its_moments():
  plan = truth.MixturePlan(2, 1.0, seed=3)
  rng = np.random.default_rng(0)
  x = plan.sample_source(rng, 3)
  mean, cov = plan.conditional_moments(x)
  for i in range(3):
    ys = plan.sample_conditional(rng, np.repeat(x[i:i + 1], 40000, 0))
    np.testing.assert_allclose(ys.mean(0), mean[i], atol=0.03)
    np.testing.assert_allclose(np.cov(ys.T), cov[i], atol=0.05)
  # with one component the conditional is Gaussian, its mean moving as
  # P x / eps (the plan's density has the cross term <x, y>/eps)
  one = truth.MixturePlan(2, 0.7, seed=1, potential_components=1)
  x2 = one.sample_source(rng, 2)
  m2, c2 = one.conditional_moments(x2)
  np.testing.assert_allclose(c2[0], c2[1])  # one component: same covariance
  np.testing.assert_allclose(m2[0] - m2[1], one.plan_covs[0] @ (x2[0] - x2[1])
                             / 0.7, atol=1e-10)


def test_bw_uvp_is_zero_for_the_truth_and_grows_with_error():
  means, covs = PLAN.conditional_moments(TEST_X)
  rng = np.random.default_rng(0)
  chol = np.linalg.cholesky(PLAN.cond_cov)
  exact = means[:, None] + rng.normal(size=(20, 4000, D)) @ chol.T
  assert c_bw_uvp(exact) < 0.2
  assert c_bw_uvp(exact + 0.3) > 5 * c_bw_uvp(exact)


# ---- sampler and loss at the true potential ----

def test_langevin_with_the_true_potential_gives_the_closed_form_conditional():
  potentials = true_potentials()
  samples, info = potentials.sample(TEST_X, 400, jax.random.key(1),
                                    num_steps=150, return_info=True)
  assert samples.shape == (20, 400, D)
  assert c_bw_uvp(samples) < 0.5
  means, covs = PLAN.conditional_moments(TEST_X)
  np.testing.assert_allclose(np.mean(samples, 1), means, atol=0.12)
  np.testing.assert_allclose(
      np.mean([np.cov(s.T) for s in np.asarray(samples)], 0), covs[0],
      atol=0.05)
  assert 0.45 < float(info.acceptance) < 0.7  # adapted towards 0.574
  # unadjusted with a fixed large step is visibly biased; adjusted is not
  ula, _ = langevin.langevin(
      lambda y: potentials.model.log_density(
          potentials.params, jnp.repeat(TEST_X, 400, 0), y),
      jnp.repeat(jnp.asarray(means, jnp.float32), 400, 0),
      jnp.log(0.6), 100, jax.random.key(2), adjusted=False)
  assert c_bw_uvp(ula.reshape(20, 400, D)) > 2 * c_bw_uvp(samples)


def test_the_loss_gradient_vanishes_at_the_true_potential():
  """With exact plan samples as chains, the gradient of the loss at the
  true residual is sampling noise; away from it, it is not."""
  model = model_lib.EnergyModel(COST, Quadratic(), D)
  rng = np.random.default_rng(0)
  n = 200_000
  x = MEAN_X + rng.normal(size=(n, D)) @ np.linalg.cholesky(COV_X).T
  means, _ = PLAN.conditional_moments(x)
  chains = means + rng.normal(size=(n, D)) @ np.linalg.cholesky(
      PLAN.cond_cov).T
  targets = MEAN_Y + rng.normal(size=(n, D)) @ np.linalg.cholesky(COV_Y).T
  grad = jax.jit(jax.grad(method_lib.energy_loss, argnums=1),
                 static_argnums=0)
  norm = lambda g: float(optax.global_norm(g))
  at_truth = grad(model, true_energy(), jnp.asarray(chains, jnp.float32),
                  jnp.asarray(targets, jnp.float32))
  wrong = true_energy()
  wrong["b"] = wrong["b"] + 0.5
  shifted = chains + 0.25  # what the wrong energy's chains would do
  away = grad(model, wrong, jnp.asarray(shifted, jnp.float32),
              jnp.asarray(targets, jnp.float32))
  assert norm(at_truth) < 0.03
  assert norm(away) > 10 * norm(at_truth)


# ---- the solver ----

@pytest.fixture(scope="module")
def warm_solver():
  """ENOT trained first (warm_start="train"), then the plan."""
  solver = ott_enot.EntropicSolver(
      D, EPS, cost_fn=COST, num_train_iters=150, valid_freq=150,
      log_freq=50, logging=True, progress_bar=False, chunk_size=50,
      sample_steps=100, **NETWORKS,
      warm_start_options=dict(num_train_iters=1000, chunk_size=500,
                              valid_freq=1000, log_freq=1000,
                              **ENOT_NETWORKS))
  potentials, logs = solver.fit(sampler)
  return solver, potentials, logs


def test_warm_start_learns_the_plan(warm_solver):
  solver, potentials, logs = warm_solver
  assert isinstance(solver.warm_start, ott_enot.ENOTPotentials)
  assert isinstance(potentials, ott_enot.EntropicPotentials)
  assert set(logs["valid_logs"]) >= {"loss", "acceptance", "step_size",
                                     "sample_cost", "fit", "floor", "strays"}
  samples, info = potentials.sample(TEST_X, SAMPLES, jax.random.key(3),
                                    return_info=True)
  learned = c_bw_uvp(samples)
  assert learned < 2.0
  assert 0.4 < float(info.acceptance) < 0.75
  # ENOT's potential alone (a zero residual) is a rougher plan, and
  # the deterministic map (the eps -> 0 limit) rougher still
  untrained = model_lib.EntropicPotentials(
      potentials.params.replace(energy=jax.tree.map(
          jnp.zeros_like, potentials.params.energy)), potentials.model)
  assert c_bw_uvp(untrained.sample(TEST_X, SAMPLES,
                                   jax.random.key(3))) > learned
  mapped = np.asarray(potentials.transport(TEST_X))[:, None]
  assert c_bw_uvp(np.concatenate([mapped, mapped + 1e-4], 1)) > 5 * learned
  mean = potentials.conditional_mean(TEST_X, SAMPLES, jax.random.key(3))
  error = np.asarray(mean) - PLAN.conditional_moments(TEST_X)[0]
  assert np.sqrt(np.mean(np.sum(error ** 2, -1))) < 0.12  # noise ~0.06


def test_warm_beats_cold_at_equal_chain_length(warm_solver):
  """Chains of the same length (3 MALA steps, no adaptation) from the warm
  start's T(x) + noise and from the cold start's noise, each with its own
  energy trained for as many steps with as many Langevin steps: the warm
  chains are at the plan, the cold ones still far from it."""
  _, potentials, _ = warm_solver
  cold = ott_enot.EntropicSolver(
      D, EPS, cost_fn=COST, warm_start=None, langevin_steps=10,
      sample_steps=100, num_train_iters=150, valid_freq=150, log_freq=50,
      progress_bar=False, chunk_size=50, **NETWORKS)
  cold_potentials = cold.fit(sampler)
  short = dict(num_steps=3, adapt_steps=0)
  warm_score = c_bw_uvp(potentials.sample(TEST_X, SAMPLES, jax.random.key(3),
                                          **short))
  cold_score = c_bw_uvp(cold_potentials.sample(
      TEST_X, SAMPLES, jax.random.key(3), **short))
  assert warm_score < 3.0
  assert cold_score > 2 * warm_score


def test_resume_reproduces_the_chains_bit_for_bit(warm_solver, tmp_path):
  enot_potentials = warm_solver[0].warm_start

  def build(directory=None):
    return ott_enot.EntropicSolver(
        D, EPS, cost_fn=COST, warm_start=enot_potentials, num_train_iters=20,
        valid_freq=1000, log_freq=10, progress_bar=False, chunk_size=10,
        checkpoint_dir=directory, checkpoint_every=10, buffer_size=256,
        **NETWORKS)

  whole = build()
  whole.fit(sampler)

  seen = []

  def stop(step, _):
    seen.append(step)
    if step >= 10:
      raise KeyboardInterrupt

  broken = build(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    broken.fit(sampler, callback=stop)
  # nothing lost: the state after the chunk whose callback raised
  assert int(broken.state.step) == seen[-1] + 1
  assert bool(broken.state.chains.filled.any())
  resumed = build(tmp_path / "run")
  resumed.fit(sampler, resume=True)
  for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_save_and_load_round_trip(warm_solver, tmp_path):
  potentials = warm_solver[1]
  potentials.save(tmp_path / "plan.msgpack")
  fresh = ott_enot.EntropicSolver(
      D, EPS, cost_fn=COST, warm_start=warm_solver[0].warm_start,
      sample_steps=100, progress_bar=False, **NETWORKS)
  untrained = fresh.method.result(fresh.state)
  loaded = untrained.load(tmp_path / "plan.msgpack")
  key = jax.random.key(5)
  np.testing.assert_array_equal(potentials.sample(TEST_X[:4], 3, key),
                                loaded.sample(TEST_X[:4], 3, key))


# ---- populations: a sweep over epsilon and seeds in one program ----

def test_population_members_equal_their_solvers_trained_alone(warm_solver):
  """Members over epsilon and seeds from one warm start (set on a pending
  "train" population: broadcast into every member); the member (eps 1,
  seed 1) trains as EntropicSolver(eps 1, rng=key(1)) alone."""
  enot_potentials = warm_solver[0].warm_start
  common = dict(cost_fn=COST, num_train_iters=20, log_freq=10,
                progress_bar=False, chunk_size=10, buffer_size=256,
                **NETWORKS)
  population = ott_enot.EntropicPopulation(
      D, EPS, members=ott_enot.solvers.population.grid(
          epsilon=[EPS, 1.0], seed=[0, 1]), valid_freq=10, sample_steps=20,
      warm_start_options=dict(num_train_iters=1000, chunk_size=500,
                              valid_freq=1000, log_freq=1000,
                              **ENOT_NETWORKS), **common)
  assert population.pending_warm_start
  population.set_warm_start(enot_potentials)
  result = population.fit(sampler)
  logs = result.logs
  np.testing.assert_allclose(population.epsilon, [EPS, EPS, 1.0, 1.0])
  alone = ott_enot.EntropicSolver(D, 1.0, warm_start=enot_potentials,
                                  valid_freq=1000, rng=jax.random.key(1),
                                  **common)
  alone.fit(sampler)
  member = result.member(3)
  assert isinstance(member, ott_enot.EntropicPotentials)
  for a, b in zip(jax.tree.leaves(member.params.energy),
                  jax.tree.leaves(alone.state.energy.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
  assert float(member.params.epsilon) == 1.0
  for a, b in zip(jax.tree.leaves(member.params.base),
                  jax.tree.leaves(enot_potentials.params_f)
                  + jax.tree.leaves(enot_potentials.params_g)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # every member validated on its own draws, against one floor
  assert np.shape(logs["valid_logs"]["sample_cost"][-1]) == (4,)
  assert np.ndim(logs["valid_logs"]["floor"][-1]) == 0
  rows = result.table()
  assert [r["epsilon"] for r in rows] == [EPS, EPS, 1.0, 1.0]
  assert all({"sample_cost", "acceptance", "fit/floor"} <= set(r)
             for r in rows)
  # larger epsilon: a wider plan, so a larger mean cost of the draws
  costs_by_eps = np.asarray([r["sample_cost"] for r in rows])
  assert costs_by_eps[2:].mean() > costs_by_eps[:2].mean()
  scores = result.evaluate(TEST_X, np.asarray(sampler(jax.random.key(7))[1]))
  assert scores.shape == (4,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("members, kwargs, error, match", [
    ([], {}, ValueError, "empty"),
    ({"epsilon": 0.1}, {}, TypeError, "list of dicts"),
    ([{"expectile": 0.9}], {}, ValueError, "unknown settings"),
    ([{"epsilon": 0.0}], {}, ValueError, r"members\[0\]\['epsilon'\]"),
    ([{"epsilon": 1.0}, {"epsilon": True}], {}, ValueError,
     r"members\[1\]\['epsilon'\]"),
    ([{"seed": 0}, {}], {}, ValueError, "every member or to none"),
    ([{"learning_rate": 1e-3}], dict(optimizer=optax.adam(1e-3)), ValueError,
     "learning_rate_scale"),
])
def test_population_refuses_bad_members(members, kwargs, error, match):
  with pytest.raises(error, match=match):
    ott_enot.EntropicPopulation(D, EPS, cost_fn=COST, warm_start=None,
                                members=members, progress_bar=False,
                                **kwargs)


# ---- bad input, before anything compiles ----

class NoGradient(costs.TICost):

  def h(self, z):
    return jnp.sqrt(jnp.sum(z ** 2) - 1e6)  # NaN everywhere near the data


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(epsilon=-1.0), ValueError, "epsilon"),
    (dict(epsilon=float("nan")), ValueError, "epsilon"),
    (dict(epsilon=True), TypeError, "epsilon"),
    (dict(epsilon="0.1"), TypeError, "epsilon"),
    (dict(cost_fn=ott_enot.SphereGeodesic()), ValueError, "sphere"),
    (dict(cost_fn=NoGradient()), ValueError, "gradient"),
    (dict(replay=1.5), ValueError, "replay"),
    (dict(langevin_steps=0), ValueError, "langevin_steps"),
    (dict(warm_start="pretrained"), TypeError, "warm_start"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
  args = dict(dim_data=D, epsilon=EPS, cost_fn=COST, progress_bar=False)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    ott_enot.EntropicSolver(**args)


def test_bad_warm_starts_and_samples_are_refused(warm_solver):
  enot_potentials = warm_solver[0].warm_start
  with pytest.raises(ValueError, match="dimension"):
    ott_enot.EntropicSolver(3, EPS, cost_fn=COST, warm_start=enot_potentials)
  with pytest.raises(ValueError, match="another cost"):
    ott_enot.EntropicSolver(D, EPS, cost_fn=costs.SqEuclidean(),
                            warm_start=enot_potentials)
  pending = ott_enot.EntropicSolver(D, EPS, cost_fn=COST, progress_bar=False)
  with pytest.raises(ValueError, match="loaders"):
    pending(*(iter([]) for _ in range(4)))
  potentials = warm_solver[1]
  with pytest.raises(ValueError, match="num_samples"):
    potentials.sample(TEST_X, 0)
  with pytest.raises(ValueError, match="dimension|shape"):
    potentials.sample(np.zeros((4, 3)))
  assert isinstance(methods.Entropic, type)
