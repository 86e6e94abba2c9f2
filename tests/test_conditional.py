"""Conditional ENOT: T(x | c) for a family of Gaussian problems, seen and
unseen conditions, the three ways in, save/load/checkpoints, bad input.

The family: source N(0, I_2), target N(m(c), s(c)^2 I_2) with m(c) = (2c, -c),
s(c) = 1 + c / 2, so T_c(x) = s(c) x + m(c). Trained on c in {0, 1/3, 2/3,
1}, c = 1/2 held out.
"""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from ott.geometry import pointcloud
from ott.neural.networks import potentials as P
from ott.problems.linear import linear_problem

import ott_enot
from ott_enot.training import checkpoints, loop

D, STEPS, N = 2, 3000, 4096
SEEN = (0.0, 1 / 3, 2 / 3, 1.0)
UNSEEN = 0.5


def true_map(c, x):
  return (1 + 0.5 * c) * x + np.array([2 * c, -c], np.float32)


def family(seed=0, labels=SEEN + (UNSEEN,)):
  """``{label: PointCloud}``; labels that are not numbers stand for 0, 1/2,
  1, ..."""
  rng = np.random.default_rng(seed)
  out = {}
  for i, label in enumerate(labels):
    c = label if isinstance(label, float) else i / 2
    x = rng.normal(size=(N, D)).astype(np.float32)
    out[label] = pointcloud.PointCloud(
        x, true_map(c, rng.normal(size=(N, D)).astype(np.float32)))
  return out


def mlp():
  return P.MLP(dim_hidden=[48, 48, 1], act_fn=jax.nn.elu)


def conditional(**kw):
  kw = dict(dict(neural_f=mlp(), neural_g=mlp(), num_train_iters=STEPS,
                 valid_freq=STEPS // 2, log_freq=100, logging=True,
                 progress_bar=False), **kw)
  return ott_enot.ConditionalExpectileNeuralDual(D, dim_cond=1, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  directory = tmp_path_factory.mktemp("conditional") / "run"
  solver = conditional(checkpoint_dir=directory, checkpoint_every=STEPS // 2)
  potentials, logs = solver.fit(family(), holdout=[UNSEEN], batch_size=256)
  return solver, potentials, logs, directory


def mse(a, b):
  return float(np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, -1)))


X_TEST = np.random.default_rng(7).normal(size=(2000, D)).astype(np.float32)


def test_seen_and_unseen_conditions_are_learned(trained):
  _, pot, _, _ = trained
  seen = [mse(pot.transport(X_TEST, condition=[c]), true_map(c, X_TEST))
          for c in SEEN]
  unseen = mse(pot.transport(X_TEST, condition=[UNSEEN]),
               true_map(UNSEEN, X_TEST))
  # the nearest trained condition's true map, used at c = 1/2
  floor = mse(true_map(1 / 3, X_TEST), true_map(UNSEEN, X_TEST))
  assert max(seen) < 0.05, seen
  assert unseen < 0.25 * floor, (unseen, floor)
  assert unseen < 2 * max(seen), (unseen, seen)


def test_validation_is_reported_per_condition(trained):
  _, _, logs, _ = trained
  per = logs["condition_logs"]
  assert per["labels"] == list(SEEN + (UNSEEN,))
  assert per["trained"] == [True] * 4 + [False]
  # one validation at valid_freq, one after the last step (keep_best)
  assert len(per["fit"]) == len(logs["valid_logs"]["fit"]) == 2
  fits = np.asarray(per["fit"][-1])
  assert fits.shape == (5,) and np.all(np.isfinite(fits))
  # the overall row is the mean over the trained conditions only
  np.testing.assert_allclose(logs["valid_logs"]["fit"][-1], fits[:4].mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(logs["valid_logs"]["w_dist"][-1],
                             np.mean(per["w_dist"][-1][:4]), rtol=1e-5)
  # a fitted map is close to the target on every condition, unseen included
  assert np.all(fits < 10 * np.asarray(per["floor"][-1]) + 0.05), per


def test_conditions_by_vector_row_label_and_at(trained):
  _, pot, _, _ = trained
  x = X_TEST[:64]
  one = np.asarray(pot.transport(x, condition=[UNSEEN]))
  rows = np.asarray(pot.transport(x, condition=np.full((64, 1), UNSEEN)))
  label = np.asarray(pot.transport(x, condition=UNSEEN))  # a label, 0.5
  at = pot.at([UNSEEN])
  assert isinstance(at, ott_enot.ENOTPotentials)
  np.testing.assert_allclose(rows, one, atol=1e-5)
  np.testing.assert_allclose(label, one, atol=1e-6)
  np.testing.assert_allclose(np.asarray(at.transport(x)), one, atol=1e-6)
  # rows at different conditions: each row its own condition's map
  cs = np.asarray(SEEN * 16, np.float32)[:, None]
  mixed = np.asarray(pot.transport(x, condition=cs))
  for c in SEEN:
    sel = cs[:, 0] == np.float32(c)
    np.testing.assert_allclose(
        mixed[sel], np.asarray(pot.transport(x[sel], condition=[c])),
        atol=1e-5)
  # the inverse map inverts the forward one at a condition
  back = np.asarray(pot.transport(one, condition=[UNSEEN], forward=False))
  assert mse(back, x) < 0.05 * mse(x, 0 * x)
  # jit over the potentials (a pytree) with a traced condition
  jitted = jax.jit(lambda p, v, c: p.transport(v, condition=c))
  np.testing.assert_allclose(
      np.asarray(jitted(pot, x, jnp.asarray([UNSEEN]))), one, atol=1e-5)
  d = float(pot.distance(x, true_map(UNSEEN, x), condition=[UNSEEN]))
  assert np.isfinite(d) and d > 0
  _, ax = pot.plot_ot_map(x, true_map(UNSEEN, x), condition=UNSEEN)
  moved = ax.collections[2].get_offsets()  # T(x | c), the third scatter
  np.testing.assert_allclose(moved, one, atol=1e-5)


def test_save_load_keeps_condition_dimension_and_labels(trained, tmp_path):
  _, pot, _, _ = trained
  path = tmp_path / "cond.msgpack"
  pot.save(path)
  fresh = conditional(rng=jax.random.key(5)).to_dual_potentials()
  loaded = fresh.load(path)
  assert list(loaded.table) == list(SEEN + (UNSEEN,))
  np.testing.assert_array_equal(
      np.asarray(loaded.transport(X_TEST[:32], condition=UNSEEN)),
      np.asarray(pot.transport(X_TEST[:32], condition=UNSEEN)))
  other = ott_enot.ConditionalExpectileNeuralDual(
      D, dim_cond=2, neural_f=mlp(), neural_g=mlp()).to_dual_potentials()
  with pytest.raises(ValueError, match="dim_cond=1"):
    other.load(path)
  film = conditional(conditioning="film", neural_f=None, neural_g=None)
  with pytest.raises(ValueError, match="conditioning='concat'"):
    film.to_dual_potentials().load(path)
  plain = ott_enot.ExpectileNeuralDual(D, neural_f=mlp(), neural_g=mlp())
  plain.to_dual_potentials().save(tmp_path / "plain.msgpack")
  with pytest.raises(ValueError, match="unconditional"):
    fresh.load(tmp_path / "plain.msgpack")


def test_checkpoints_restore_and_refuse_another_condition(trained):
  solver, pot, _, directory = trained
  again = conditional(checkpoint_dir=directory)
  meta = again.restore("latest")
  assert meta["step"] == STEPS - 1
  for a, b in zip(jax.tree.leaves(again.state), jax.tree.leaves(solver.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  loaded = conditional().to_dual_potentials().load(directory)
  np.testing.assert_array_equal(
      np.asarray(loaded.transport(X_TEST[:8], condition=[0.2])),
      np.asarray(pot.transport(X_TEST[:8], condition=[0.2])))
  wider = ott_enot.ConditionalExpectileNeuralDual(
      D, dim_cond=2, neural_f=mlp(), neural_g=mlp(), checkpoint_dir=directory)
  with pytest.raises(checkpoints.CheckpointError, match="dim_cond"):
    wider.restore("latest")
  plain = ott_enot.ExpectileNeuralDual(
      D, neural_f=P.MLP([48, 48, 1]), neural_g=P.MLP([48, 48, 1]),
      checkpoint_dir=directory)
  with pytest.raises(checkpoints.CheckpointError, match="dim_cond"):
    plain.restore("latest")


def gaussian_sampler(key):
  kc, kx, ky = jax.random.split(key, 3)
  c = jax.random.choice(kc, jnp.asarray(SEEN), (128,))[:, None]
  x = jax.random.normal(kx, (128, D))
  y = (1 + 0.5 * c) * jax.random.normal(ky, (128, D)) + jnp.concatenate(
      [2 * c, -c], axis=1)
  return x, y, c


def test_sampler_with_film_networks_is_reproducible():
  kw = dict(conditioning="film", neural_f=None, neural_g=None,
            num_train_iters=60, valid_freq=30, chunk_size=30)
  a = conditional(**kw)
  pot_a, logs = a.fit(gaussian_sampler, rng=jax.random.key(3))
  b = conditional(**kw)
  pot_b, _ = b.fit(gaussian_sampler, rng=jax.random.key(3))
  assert isinstance(a.neural_f, ott_enot.ConditionalMLP)
  out = np.asarray(pot_a.transport(X_TEST[:16], condition=[0.3]))
  assert out.shape == (16, D) and np.all(np.isfinite(out))
  np.testing.assert_array_equal(
      out, np.asarray(pot_b.transport(X_TEST[:16], condition=[0.3])))
  assert "condition_logs" not in logs  # a sampler's rows are mixed
  assert np.isfinite(logs["valid_logs"]["fit"][-1])


def loaders(seed, labels_of=lambda lab: lab, bad_condition_at=None):
  """Source (points, labels), target (points, labels), condition batches of
  the trained conditions, rows grouped by condition."""
  rng = np.random.default_rng(seed)
  lab = np.repeat(np.arange(4), 16)
  c = np.asarray(SEEN, np.float32)[lab][:, None]

  def source():
    while True:
      yield rng.normal(size=(64, D)).astype(np.float32), lab

  def target():
    while True:
      z = rng.normal(size=(64, D)).astype(np.float32)
      yield (1 + 0.5 * c) * z + np.concatenate([2 * c, -c], 1), labels_of(lab)

  def condition():
    i = 0
    while True:
      i += 1
      yield np.full_like(c, np.nan) if i == bad_condition_at else c

  return source(), target(), condition()


def test_iterators_with_labels_train_and_check_rows():
  kw = dict(num_train_iters=40, valid_freq=20, chunk_size=10)
  solver = conditional(**kw)
  pot, logs = solver(*loaders(0), *loaders(1))
  assert len(logs["valid_logs"]["fit"]) == 2  # steps 20 and the last
  assert np.all(np.isfinite(np.asarray(
      pot.transport(X_TEST[:4], condition=[0.5]))))
  # labels of source and target rows that disagree: refused before compiling
  compiled = loop.chunk_programs_compiled()
  with pytest.raises(ValueError, match="Row 0 of `trainloader_source` has "
                     "label 0 but row 0 of `trainloader_target` has label 3"):
    conditional(**kw)(*loaders(0, labels_of=lambda lab: lab[::-1]),
                      *loaders(1))
  assert loop.chunk_programs_compiled() == compiled
  # a NaN condition in a later batch: an error, the last chunk's state kept
  solver = conditional(**kw)
  before = solver.state
  with pytest.raises(ValueError, match="trainloader_condition.*NaN"):
    solver(*loaders(0, bad_condition_at=25), *loaders(1))
  assert 0 < int(solver.state.step) <= 24
  assert int(before.step) == 0 and np.all(np.isfinite(
      jax.tree.leaves(solver.state.f.params)[0]))


@pytest.mark.parametrize("build, match", [
    (lambda: ott_enot.ConditionalExpectileNeuralDual(D, dim_cond=0),
     "dim_cond"),
    (lambda: ott_enot.ConditionalExpectileNeuralDual(
        D, dim_cond=1, conditioning="sum"), "conditioning"),
    (lambda: ott_enot.ConditionalExpectileNeuralDual(
        D, dim_cond=1, conditioning="film", neural_f=mlp()),
     "cannot take the conditional input"),
])
def test_bad_solver_arguments(build, match):
  with pytest.raises((TypeError, ValueError), match=match):
    build()


@pytest.fixture(scope="module")
def untrained():
  return conditional()


@pytest.mark.parametrize("call, match", [
    (lambda s: s.fit({}), "non-empty dict"),
    (lambda s: s.fit({0.0: (np.ones((0, D)), np.ones((5, D)))}), "non-empty"),
    (lambda s: s.fit(family(labels=(0.0, 1.0)), holdout=[0.5]),
     r"`holdout` names \[0.5\]"),
    (lambda s: s.fit(family(labels=(0.0, 1.0)), holdout=[0.0, 1.0]),
     "every condition"),
    (lambda s: s.fit(family(labels=("a", "b")), {"a": [0.0]}),
     r"no vector for the labels \['b'\]"),
    (lambda s: s.fit(family(labels=("a", "b")), {"a": [0.0], "b": [0.0, 1.]}),
     "different dimensions"),
    (lambda s: s.fit(family(labels=("a", "b")), {"a": [0.0, 1.], "b": [1., 0.]}),
     "dim_cond=1"),
    (lambda s: s.fit(family(labels=("a", "b")), {"a": [0.0], "b": [np.nan]}),
     "NaN"),
    (lambda s: s.fit(family(labels=("a", "b")), {"a": [1.0], "b": [1.0]}),
     "same condition vector"),
    (lambda s: s.fit({0.0: (np.ones((5, 3)), np.ones((5, 3)))}),
     "dimension 3"),
    (lambda s: s.fit({0.0: linear_problem.LinearProblem(
        pointcloud.PointCloud(np.ones((5, D)), np.ones((5, D))), tau_a=0.5)}),
     "unbalanced"),
    (lambda s: s.fit(lambda key: (jnp.ones((4, D)), jnp.ones((4, D)))),
     r"\(x, y, cond\)"),
    (lambda s: s.fit(lambda key: (jnp.ones((4, D)), jnp.ones((4, D)),
                                  jnp.ones((4, 2)))), r"\[n, 1\]"),
    (lambda s: s.to_dual_potentials().transport(np.ones((3, D)), [1.0, 2.0]),
     "dim_cond=1"),
    (lambda s: s.to_dual_potentials().transport(np.ones((3, D)), [np.inf]),
     "NaN or inf"),
    (lambda s: s.to_dual_potentials().transport(np.ones((3, D)), "dose"),
     "not a vector nor a label"),
    (lambda s: s.to_dual_potentials().at(np.ones((3, 1))), "one condition"),
])
def test_bad_input_is_refused_before_compiling(untrained, call, match):
  compiled = loop.chunk_programs_compiled()
  with pytest.raises((TypeError, ValueError), match=match):
    call(untrained)
  assert loop.chunk_programs_compiled() == compiled


def test_one_hot_conditions_asked_to_generalise_warn(untrained):
  with pytest.warns(UserWarning, match="one-hot"):
    with pytest.raises(ValueError, match="checkpoint_dir"):
      # labels without vectors are one-hot; the warning comes first, then
      # `resume` without a checkpoint directory stops before compiling
      ott_enot.ConditionalExpectileNeuralDual(
          D, dim_cond=3, neural_f=mlp(), neural_g=mlp()).fit(
              family(labels=("a", "b", "c")), holdout=["c"], resume=True)


def test_weights_of_linear_problems_are_respected():
  # condition 0's source weighs only its first half: batches never draw the
  # second half (points at +100)
  x = np.concatenate([np.zeros((10, D)), np.full((10, D), 100.0)])
  a = np.concatenate([np.full(10, 0.1), np.zeros(10)])
  prob = linear_problem.LinearProblem(
      pointcloud.PointCloud(x.astype(np.float32), np.ones((20, D), np.float32)),
      a=a, b=np.full(20, 0.05))
  stream = ott_enot.ConditionalStream.from_problems(
      {0.0: prob, 1.0: (np.ones((8, D)), np.ones((8, D)))}, batch_size=512,
      valid_fraction=0.0, sampling="proportional")
  xs, _, cs = jax.jit(stream.sample_step)(jax.random.key(0), 3)
  xs, cs = np.asarray(xs), np.asarray(cs)
  assert np.all(xs[cs[:, 0] == 0.0] == 0.0)
  # proportional: 20 of 28 points are condition 0's
  assert 0.6 < np.mean(cs[:, 0] == 0.0) < 0.83
  balanced = ott_enot.ConditionalStream.from_problems(
      {0.0: prob, 1.0: (np.ones((8, D)), np.ones((8, D)))}, batch_size=512)
  _, _, cs = balanced.sample_step(jax.random.key(0), 3)
  assert 0.4 < np.mean(np.asarray(cs)[:, 0] == 0.0) < 0.6


@pytest.mark.parametrize("form", ["twist", "correlation", "direct"])
def test_every_parameterisation_takes_the_condition(form):
  out = D if form == "direct" else 1
  solver = ott_enot.ConditionalExpectileNeuralDual(
      D, P.MLP([16, out]), P.MLP([16, 1]), dim_cond=1, parameterisation=form)
  assert solver.bidirectional == (form != "direct")
  pot = solver.to_dual_potentials()
  x = X_TEST[:8]
  a, b = (np.asarray(pot.transport(x, condition=[c])) for c in (0.0, 1.0))
  assert a.shape == (8, D) and not np.allclose(a, b)  # c enters the map
  if form == "direct":
    with pytest.raises(ValueError, match="no inverse"):
      pot.transport(x, condition=[0.0], forward=False)
  else:  # the map is the gradient in x at fixed c
    at = pot.at([0.0])
    value = at.model.potential_f if form == "twist" else (
        lambda p, v: -at.model.potential_f(p, v))
    grad = jax.grad(lambda v: value(pot.params_f, v).sum())(jnp.asarray(x))
    # twist for |x - y|^2: x - grad h*(grad f) = x - grad f / 2
    want = x - grad / 2 if form == "twist" else grad
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-5)
