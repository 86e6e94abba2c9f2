"""The fused training loop: chunking, schedule, both data paths."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.geometry import pointcloud
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import training


def _solver(**kw):
  mlp = lambda: ott_potentials.MLP(dim_hidden=[16, 16, 1])
  kw = {"num_train_iters": 23, "progress_bar": False, "rng": jax.random.key(0),
        **kw}
  return ott_enot.ExpectileNeuralDual(2, mlp(), mlp(), **kw)


def _cloud():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 2)).astype(np.float32)
  y = (rng.normal(size=(300, 2)) * 0.5 + 2.0).astype(np.float32)
  return pointcloud.PointCloud(x, y)


@pytest.mark.parametrize(
    ("num", "chunk", "valid", "expected"),
    [
        (10, 4, 100, [(0, 0), (1, 4), (5, 8), (9, 9)]),
        (10, 100, 3, [(0, 0), (1, 3), (4, 6), (7, 9)]),
        (7, 1, 100, [(k, k) for k in range(7)]),
        (1, 5, 5, [(0, 0)]),
        (0, 5, 5, []),
    ],
)
def test_chunk_bounds(num, chunk, valid, expected):
  bounds = training.chunk_bounds(num, chunk, valid)
  assert bounds == expected
  # without a callback there is no need to stop after step 0
  plain = training.chunk_bounds(num, chunk, valid, callback=False)
  if num > 1 and chunk > 1:
    assert plain[0][0] == 0 and plain[0][1] > 0
    assert [e for _, e in plain] == [e for _, e in bounds if e != 0]
  if bounds:  # a partition of all steps
    assert [s for a, b in bounds for s in range(a, b + 1)] == list(range(num))


@pytest.mark.parametrize(
    ("length", "chunk", "expected"),
    [(100, 100, [100]), (99, 100, [99]), (1, 100, [1]), (13, 100, [8, 4, 1]),
     (6, 7, [6]), (5, 7, [4, 1])],
)
def test_dispatch_lengths(length, chunk, expected):
  many = training.EXACT_VARIANTS
  assert training.dispatch_lengths(length, chunk, compiled=many) == expected
  assert training.dispatch_lengths(length, chunk, compiled=0) == [length]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_chunked_equals_step_by_step(pair2, bidirectional):
  """Same seed and data: chunks of 7 (odd, so both parities) == chunks of 1."""
  results = []
  for chunk in (1, 7):
    solver = _solver(chunk_size=chunk, valid_freq=7, logging=True, log_freq=3,
                     is_bidirectional=bidirectional, parameterisation="twist",
                     num_train_iters=15)
    pot, logs = solver(*pair2.loaders(batch=32, seed=5))
    results.append((pot, logs))
  (a, la), (b, lb) = results
  # tolerance: fusing may reorder float32 reductions; 15 steps stay within 1e-5
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert la["train_logs"]["directions"] == lb["train_logs"]["directions"]
  for key in ("loss_f", "loss_g", "w_dist"):
    np.testing.assert_allclose(la["train_logs"][key], lb["train_logs"][key],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(la["valid_logs"][key], lb["valid_logs"][key],
                               rtol=1e-5, atol=1e-5)


def test_logs_validation_and_callbacks_fire_at_the_right_steps(pair2):
  calls, valid_calls = [], []
  solver = _solver(chunk_size=5, valid_freq=4, log_freq=6, logging=True,
                   num_train_iters=17)
  orig = solver.metrics_fn

  def spy(state, x, y):
    valid_calls.append(int(state.state_f.step) + int(state.state_g.step))
    return orig(state, x, y)

  solver.metrics_fn = spy
  _, logs = solver(*pair2.loaders(batch=16), callback=lambda k, p: calls.append(k))
  # logs at k % 6 == 0, directions alternate with k
  assert logs["train_logs"]["directions"] == [
      "forward", "forward", "forward"]  # steps 0, 6, 12
  assert len(logs["train_logs"]["loss_f"]) == 3
  # validation after steps 4, 8, 12, 16 (k != 0, k % 4 == 0, as in ott): the
  # networks have then made k + 1 updates each
  assert valid_calls == [2 * (k + 1) for k in (4, 8, 12, 16)]
  assert len(logs["valid_logs"]["w_dist"]) == 4
  # callbacks at chunk ends: 0, multiples of 5 and of 4, and the last step
  assert calls == [0, 4, 5, 8, 10, 12, 15, 16]


def test_callback_potentials_survive_later_chunks(pair2):
  """Potentials handed to callbacks are not donated by the next chunk."""
  kept = []
  solver = _solver(chunk_size=5, num_train_iters=11)
  solver(*pair2.loaders(batch=16), callback=lambda k, p: kept.append(p))
  x = pair2.x_test[:4]
  first, last = kept[0].transport(x), kept[-1].transport(x)
  assert np.all(np.isfinite(first)) and not np.allclose(first, last)
  # and potentials from a finished call survive a second call
  pot = solver.to_dual_potentials()
  before = np.asarray(pot.transport(x))
  solver(*pair2.loaders(batch=16, seed=9))
  np.testing.assert_array_equal(pot.transport(x), before)


def test_on_device_sampling_matches_the_iterator_path():
  geom = _cloud()
  stream = ott_enot.PointCloudStream.from_geometry(geom, batch_size=32,
                                                   rng=jax.random.key(4))
  key = jax.random.key(7)
  kw = dict(valid_freq=5, logging=True, log_freq=2, chunk_size=5,
            num_train_iters=11)
  on_device, logs_d = _solver(**kw).fit(stream, rng=key)
  # fit uses fold_in(key, 1) for the batches; the loaders then give the same
  host, logs_h = _solver(**kw)(*stream.loaders(jax.random.fold_in(key, 1)))
  for a, b in zip(jax.tree.leaves(on_device), jax.tree.leaves(host)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logs_d["valid_logs"]["w_dist"],
                             logs_h["valid_logs"]["w_dist"], rtol=1e-5)


def test_fit_with_a_pure_sampler():
  def sampler(key):
    kx, ky = jax.random.split(key)
    return (jax.random.normal(kx, (64, 2)),
            0.5 * jax.random.normal(ky, (64, 2)) + 2.0)

  solver = _solver(num_train_iters=301, chunk_size=50)
  pot = solver.fit(sampler, rng=jax.random.key(1))
  x = jax.random.normal(jax.random.key(3), (256, 2))
  # the map moves the mean towards (2, 2): from 2.83 away to 1.97 measured
  assert float(jnp.linalg.norm(pot.transport(x).mean(0) - 2.0)) < 2.4
  again = _solver(num_train_iters=301, chunk_size=50).fit(sampler, rng=jax.random.key(1))
  np.testing.assert_array_equal(again.transport(x), pot.transport(x))


def test_fit_rejects_a_bad_sampler():
  with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
    _solver().fit(lambda key: (jnp.ones((4, 3)), jnp.ones((4, 3))))
  with pytest.raises(TypeError, match="sampler"):
    _solver().fit(lambda key: key + "x")


def test_chunk_size_is_validated():
  with pytest.raises(ValueError, match="chunk_size"):
    _solver(chunk_size=0)


def test_divergence_inside_a_chunk_stops_with_last_good_state(pair2):
  import optax

  def nan_after(step):
    def update(updates, count, params=None):
      scale = jnp.where(count >= step, jnp.nan, -1e-3)
      return jax.tree.map(lambda u: scale * u, updates), count + 1
    return optax.GradientTransformation(lambda p: jnp.zeros((), jnp.int32), update)

  solver = ott_enot.ExpectileNeuralDual(
      2, ott_potentials.MLP(dim_hidden=[8, 1]), ott_potentials.MLP(dim_hidden=[8, 1]),
      nan_after(7), optax.adam(1e-3), num_train_iters=30, chunk_size=10,
      progress_bar=False, is_bidirectional=False, parameterisation="twist",
  )
  with pytest.raises(ott_enot.TrainingDivergedError) as err:
    solver(*pair2.loaders(batch=16))
  assert err.value.step == 7
  assert int(solver.state_g.step) == 7
  assert all(jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(solver.state))
