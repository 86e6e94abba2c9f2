"""The fused training loop: chunks, one program per run, nothing lost."""
import itertools
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax import monitoring
from ott.geometry import pointcloud
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import methods
from ott_enot.data import sampling
from ott_enot.training import feeds, loop


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


def _close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("num", [0, 1, 2, 7, 12, 13, 40])
@pytest.mark.parametrize(("length", "chunk"), [(1, 1), (2, 2), (2, 1), (6, 6),
                                               (6, 5)])
def test_chunks_partition_the_run(num, length, chunk):
  chunks = loop.plan_chunks(num, length, chunk)
  # every step once, in order, each inside its scan
  assert [s for c in chunks for s in c.steps] == list(range(num))
  for c in chunks:
    assert c.first <= c.lo <= c.hi <= c.first + length - 1
    assert (c.first - 1) % length == 0
  # chunks end at step 0, the multiples of `chunk` and `length`, the last step
  ends = {0, num - 1} | set(range(chunk, num, chunk)) | set(range(length, num, length))
  assert [c.hi for c in chunks] == (sorted(ends) if num else [])
  # a resumed run gets the same chunks from its first step on
  for start in range(num):
    resumed = loop.plan_chunks(num, length, chunk, start)
    assert [c.hi for c in resumed] == [c.hi for c in chunks if c.hi >= start]
    assert [s for c in resumed for s in c.steps] == list(range(start, num))


@pytest.mark.parametrize(
    ("chunk", "bidirectional", "valid", "length", "snapshots"),
    [(100, True, 1000, 100, 0), (99, True, 1000, 100, 0), (1, True, 7, 2, 1),
     (7, False, 7, 7, 0), (6, True, 4, 6, 2), (8, True, 4, 8, 1),
     (100, True, 250, 100, 1)],
)
def test_loop_config(chunk, bidirectional, valid, length, snapshots):
  method = methods.ENOT(None, 0.9, 1.0, bidirectional)
  config = loop.LoopConfig.create(
      method=method, chunk_size=chunk, valid_freq=valid, backend="gpu",
  )
  assert (config.chunk_length, config.snapshots) == (length, snapshots)
  assert config.chunk_size == chunk
  assert not config.skip_masked
  # snapshots suffice: no chunk holds more validation steps before its end
  for c in loop.plan_chunks(20 * length + 3, length):
    inner = [s for s in range(max(c.lo, 1), c.hi) if s % valid == 0]
    assert len(inner) <= snapshots
  assert hash(config) == hash(loop.LoopConfig.create(
      method=methods.ENOT(None, 0.9, 1.0, bidirectional), chunk_size=chunk,
      valid_freq=valid, backend="gpu"))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_chunks_equal_step_by_step(pair2, bidirectional):
  """Same seed and batches: chunked training == ott's one-step-at-a-time loop.

  Tolerance: the scan may reorder float32 reductions; 15 steps stay within
  rtol 1e-5. Validation (every 4 steps, snapshots inside chunks of 6) sees
  the parameters after exactly the steps ott validates after, and after the
  last step (to choose the returned map by, ``keep_best``).
  """
  solver = _solver(chunk_size=6, valid_freq=4, logging=True, log_freq=3,
                   is_bidirectional=bidirectional, parameterisation="twist",
                   num_train_iters=15)
  reference = jax.tree.map(jnp.copy, solver.state)
  pot, logs = solver(*pair2.loaders(batch=32, seed=5))
  # the same steps, one jitted step at a time
  train_x, train_y, valid_x, valid_y = pair2.loaders(batch=32, seed=5)
  state, rows, valid_rows = reference, [], []
  method = solver.method
  for k in range(15):
    forward = bool(methods.is_forward(k, bidirectional))
    state, m = solver.step_fns[forward](state, next(train_x), next(train_y))
    if k % 3 == 0:
      rows.append((float(m.loss_f), float(m.loss_g), float(m.w_dist)))
    if (k and k % 4 == 0) or k == 14:
      v, _ = methods.validation_metrics(*state.params, next(valid_x),
                                        next(valid_y), method=method)
      valid_rows.append((float(v.loss_f), float(v.loss_g), float(v.w_dist)))
  _close(solver.state, state)
  assert logs["train_logs"]["directions"] == [
      "forward" if methods.is_forward(k, bidirectional) else "inverse"
      for k in range(0, 15, 3)
  ]
  got = np.stack([logs["train_logs"][k] for k in ("loss_f", "loss_g", "w_dist")], 1)
  np.testing.assert_allclose(got, rows, rtol=1e-5, atol=1e-5)
  got = np.stack([logs["valid_logs"][k] for k in ("loss_f", "loss_g", "w_dist")], 1)
  np.testing.assert_allclose(got, valid_rows, rtol=1e-5, atol=1e-5)


def test_callbacks_fire_at_chunk_ends(pair2):
  calls = []
  solver = _solver(chunk_size=5, valid_freq=4, num_train_iters=17)
  solver(*pair2.loaders(batch=16), callback=lambda k, p: calls.append(k))
  # scans of 6 (5 rounded up to even for the inverse/forward pairs),
  # split at the multiples of 5
  assert calls == [0, 5, 6, 10, 12, 15, 16]


def test_callback_potentials_survive_later_chunks(pair2):
  """Potentials handed out are never donated by a later chunk or run."""
  kept = []
  solver = _solver(chunk_size=4, num_train_iters=11)
  solver(*pair2.loaders(batch=16), callback=lambda k, p: kept.append(p))
  x = pair2.x_test[:4]
  first, last = kept[0].transport(x), kept[-1].transport(x)
  assert np.all(np.isfinite(first)) and not np.allclose(first, last)
  pot = solver.to_dual_potentials()
  before = np.asarray(pot.transport(x))
  solver(*pair2.loaders(batch=16, seed=9))
  np.testing.assert_array_equal(pot.transport(x), before)


def _count_compiles(traced=None):
  """Names of the programs compiled from now on; in ``traced``, the functions
  traced from now on with the thread that traced each (tracing happens
  whether or not the persistent compilation cache has the program)."""
  names = []

  def listener(event, duration, **kw):
    del duration
    if event == "/jax/core/compile/backend_compile_duration":
      names.append(kw.get("fun_name", "?"))
    if event == "/jax/core/compile/jaxpr_trace_duration" and traced is not None:
      traced.append((kw.get("fun_name", "?"), threading.current_thread().name))

  monitoring.register_event_duration_secs_listener(listener)
  return names, listener


def _numpy_loaders(batch, seed):
  """Four infinite iterators of numpy batches (nothing for JAX to compile)."""
  def loader(s, shift):
    rng = np.random.default_rng(s)
    while True:
      yield (rng.normal(size=(batch, 2)) + shift).astype(np.float32)
  return [loader(seed + j, 2.0 * (j % 2)) for j in range(4)]


def test_one_program_per_run_whatever_the_schedule():
  """2,500 steps, validation every 1,000, logs every 7, a callback: the run
  compiles one chunk program, and the validation program once, on the
  background thread, while the steps run; a second run of the same solver
  compiles nothing."""
  mlp = lambda: ott_potentials.MLP(dim_hidden=[8, 1])
  solver = ott_enot.ExpectileNeuralDual(
      2, mlp(), mlp(), num_train_iters=2500, valid_freq=1000, log_freq=7,
      logging=True, progress_bar=False, chunk_size=100,
  )
  before = loop.chunk_programs_compiled()
  traced = []
  names, listener = _count_compiles(traced)
  try:
    calls = []
    _, logs = solver(*_numpy_loaders(8, 0),
                     callback=lambda k, p: calls.append(k))
    first_run = list(names)
    del names[:]
    solver(*_numpy_loaders(8, 10), callback=lambda k, p: None)
    second_run = list(names)
  finally:
    monitoring.unregister_event_duration_listener(listener)
  assert loop.chunk_programs_compiled() == before + 1
  assert [n for n in first_run if "run_chunk" in n] == ["jit(run_chunk)"]
  # the rest, each compiled once: the copies of the state (the run's start
  # and the callback's) and of the best validated parameters, and two
  # validation programs (the run's reference: the blur and the floor, once
  # per run; the metrics and the fit)
  assert sorted(first_run) == sorted([
      "jit(run_chunk)", "jit(_restart)", "jit(<lambda>)",
      "jit(validation_reference)", "jit(validate)", "jit(_kept_copy)"
  ]), first_run
  # traced once (both runs), on the background thread
  for name in ("validation_reference", "validate"):
    assert [thread for fun, thread in traced if fun == name
           ] == ["ott_enot-compile-validation"], traced
  assert second_run == []
  assert calls == [0] + list(range(100, 2500, 100)) + [2499]
  assert len(logs["train_logs"]["loss_f"]) == len(range(0, 2500, 7))
  assert len(logs["valid_logs"]["w_dist"]) == 3  # and after the last step


# ---------------------------------------------------------------------------
# Nothing is lost
# ---------------------------------------------------------------------------


def _poisoned(loader, at, make):
  """`loader` whose batch number `at` is replaced by `make(batch)`."""
  for i, batch in enumerate(loader):
    yield make(batch) if i == at else batch


def _short(loader, n):
  return itertools.islice(loader, n)


def _raise(exc):
  raise exc


def _interrupt(batch):
  raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("case", "error", "done"),
    [
        ("nan_batch", ValueError, 11),
        ("loader_runs_out", ValueError, 21),
        ("callback_raises", RuntimeError, 11),
        ("ctrl_c", KeyboardInterrupt, 11),
    ],
)
def test_errors_keep_the_last_completed_chunk(pair2, case, error, done):
  """Chunks of 10: [-9, 0], [1, 10], [11, 20], [21, 30], ... The failure
  hits while the third chunk's batches are prepared (or at the callback
  after step 10): the solver holds the state after the last completed
  chunk (its step counter says how many steps were applied), builds finite
  potentials and trains on: a new run, whose counter starts at 0."""
  solver = _solver(chunk_size=10, num_train_iters=40)
  loaders = list(pair2.loaders(batch=16))
  callback = None
  if case == "nan_batch":
    loaders[1] = _poisoned(loaders[1], 15, lambda b: b.at[0, 0].set(jnp.nan))
  elif case == "loader_runs_out":
    loaders[0] = _short(loaders[0], 25)
  elif case == "callback_raises":
    callback = lambda k, p: _raise(RuntimeError("boom")) if k == 10 else None
  else:
    loaders[0] = _poisoned(loaders[0], 15, _interrupt)
  with pytest.raises(error) as err:
    solver(*loaders, callback=callback)
  if case == "nan_batch":
    assert "trainloader_target" in str(err.value)
    assert "NaN" in str(err.value)
  if case == "loader_runs_out":
    assert "ran out" in str(err.value)
  assert int(solver.state.step) == done
  assert int(solver.state_f.step) == int(solver.state_g.step) == done
  x = pair2.x_test[:8]
  assert np.all(np.isfinite(solver.to_dual_potentials().transport(x)))
  blob = solver.to_dual_potentials().to_bytes()  # can be saved
  assert len(blob) > 0
  solver.num_train_iters = 5  # and trained on
  pot = solver(*pair2.loaders(batch=16, seed=21))
  assert int(solver.state.step) == 5
  assert np.all(np.isfinite(pot.transport(x)))


def test_divergence_stops_with_the_last_good_state(pair2):
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
      logging=True, log_freq=2,
  )
  with pytest.raises(ott_enot.TrainingDivergedError) as err:
    solver(*pair2.loaders(batch=16))
  assert err.value.step == 7
  assert int(solver.state.step) == 7 and bool(solver.state.diverged)
  # logs up to the failure
  assert len(err.value.logs["train_logs"]["loss_f"]) == 4  # steps 0, 2, 4, 6
  assert all(jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(solver.state))
  x = pair2.x_test[:8]
  np.testing.assert_array_equal(err.value.potentials.transport(x),
                                solver.to_dual_potentials().transport(x))
  # a new call is a new run from the last good state (the marker is reset):
  # this optimiser still gives NaN, so it stops at its first step, applying
  # nothing
  good = [np.asarray(l) for l in jax.tree.leaves(solver.state.params)]
  solver.num_train_iters = 3
  with pytest.raises(ott_enot.TrainingDivergedError) as again:
    solver(*pair2.loaders(batch=16))
  assert again.value.step == 0
  assert int(solver.state.step) == 0 and bool(solver.state.diverged)
  for a, b in zip(good, jax.tree.leaves(solver.state.params), strict=True):
    np.testing.assert_array_equal(a, b)


_DEFERRED_CTRL_C = """
import os, signal
from ott_enot.training import loop
# as in an interactive interpreter (a parent such as a pytest-xdist worker may
# pass SIGINT on ignored, and then Python installs no handler at start-up)
signal.signal(signal.SIGINT, signal.default_int_handler)
reached = False
try:
  with loop._interrupts_deferred():
    os.kill(os.getpid(), signal.SIGINT)
    reached = True  # the interrupt waits for the end of the block
except KeyboardInterrupt:
  print("interrupted after the block:", reached)
print("handler restored:", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_ctrl_c_is_deferred_while_a_chunk_is_dispatched():
  # in a fresh interpreter's main thread, where signals are delivered
  out = subprocess.run([sys.executable, "-c", _DEFERRED_CTRL_C],
                       capture_output=True, text=True, timeout=120, check=True)
  assert "interrupted after the block: True" in out.stdout, out.stderr
  assert "handler restored: True" in out.stdout


# ---------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------


def test_on_device_sampling_matches_the_iterator_path():
  geom = _cloud()
  stream = ott_enot.PointCloudStream.from_geometry(geom, batch_size=32,
                                                   rng=jax.random.key(4))
  key = jax.random.key(7)
  kw = dict(valid_freq=5, logging=True, log_freq=2, chunk_size=4,
            num_train_iters=11)
  on_device, logs_d = _solver(**kw).fit(stream, rng=key)
  # fit uses fold_in(key, 1) for the batches; the loaders then give the same
  # training batches, and every on-device validation sees the first
  # validation batch (loaders that repeat it give the same logs)
  train_x, train_y, _, _ = stream.loaders(jax.random.fold_in(key, 1))
  first_x, first_y = map(np.asarray, stream.valid_step(
      jax.random.fold_in(key, 1), 0))
  host, logs_h = _solver(**kw)(train_x, train_y, itertools.repeat(first_x),
                               itertools.repeat(first_y))
  _close(on_device, host)
  np.testing.assert_allclose(logs_d["valid_logs"]["w_dist"],
                             logs_h["valid_logs"]["w_dist"], rtol=1e-5)
  assert len(logs_d["valid_logs"]["w_dist"]) == 2


def test_fit_with_a_pure_sampler_reuses_its_program():
  def sampler(key):
    kx, ky = jax.random.split(key)
    return (jax.random.normal(kx, (64, 2)),
            0.5 * jax.random.normal(ky, (64, 2)) + 2.0)

  solver = _solver(num_train_iters=301, chunk_size=50, valid_freq=100)
  traced = []
  _, listener = _count_compiles(traced)
  try:
    pot = solver.fit(sampler, rng=jax.random.key(1))
  finally:
    monitoring.unregister_event_duration_listener(listener)
  # the validation sampler and metrics compiled while the steps ran
  for name in ("_valid_batch", "validation_reference", "validate"):
    assert [thread for fun, thread in traced if fun == name
           ] == ["ott_enot-compile-validation"], traced
  x = jax.random.normal(jax.random.key(3), (256, 2))
  # the map moves the mean towards (2, 2): from 2.83 away to 1.97 measured
  assert float(jnp.linalg.norm(pot.transport(x).mean(0) - 2.0)) < 2.4
  compiled = loop.chunk_programs_compiled()
  again = _solver(num_train_iters=301, chunk_size=50, valid_freq=100)
  again.state = jax.tree.map(jnp.copy, solver.state)
  again.fit(sampler, rng=jax.random.key(1))
  solver.fit(sampler, rng=jax.random.key(1))  # same solver, same sampler
  # a new solver of equal settings shares the program (settings compare by
  # value); so does the same solver
  assert loop.chunk_programs_compiled() == compiled
  np.testing.assert_array_equal(again.to_dual_potentials().transport(x),
                                solver.to_dual_potentials().transport(x))


def test_chunk_batches_are_pytrees_whose_type_carries_the_sampling():
  sampler = lambda key: (jnp.zeros((4, 2)), jnp.ones((4, 2)))
  a = feeds.SamplerBatches(jax.random.key(0), sampler)
  b = feeds.SamplerBatches(jax.random.key(1), sampler)
  c = feeds.SamplerBatches(jax.random.key(1), lambda key: sampler(key))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert jax.tree.structure(a) != jax.tree.structure(c)
  stacked = feeds.StackedBatches(jnp.arange(6.).reshape(3, 1, 2),
                                   -jnp.arange(6.).reshape(3, 1, 2))
  x, y = stacked.train_batch(2, 99)
  np.testing.assert_array_equal(x, [[4., 5.]])
  np.testing.assert_array_equal(y, [[-4., -5.]])


def test_fit_rejects_a_bad_sampler():
  with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
    _solver().fit(lambda key: (jnp.ones((4, 3)), jnp.ones((4, 3))))
  with pytest.raises(TypeError, match="sampler"):
    _solver().fit(lambda key: key + "x")


def test_chunk_size_is_validated():
  with pytest.raises(ValueError, match="chunk_size"):
    _solver(chunk_size=0)


def test_no_misleading_w2neuraldual_state():
  solver = _solver()
  assert solver.amortization_loss == "objective"
  assert solver.pos_weights is False and solver.beta == 0.0
  assert solver.num_inner_iters == 1 and solver.parallel_updates
  assert solver.back_and_forth is solver.is_bidirectional
  with pytest.raises(NotImplementedError, match="step_fns"):
    solver.get_step_fn(train=True, to_optimize="both")
  assert solver.train_neuraldual_alternating == solver.train_neuraldual


def test_validation_logs_the_map_cost_and_its_fit_beside_the_floor():
  """The ground-truth-free criteria, recomputed from the batch they used."""
  def sampler(key):
    kx, ky = jax.random.split(key)
    return (jax.random.normal(kx, (128, 2)),
            0.5 * jax.random.normal(ky, (128, 2)) + 2.0)

  rng = jax.random.key(3)
  solver = _solver(num_train_iters=21, valid_freq=20, chunk_size=10,
                   logging=True)
  pot, logs = solver.fit(sampler, rng=rng)
  # the one validation ran after step 20, the last, on the final parameters
  valid = {k: v[0] for k, v in logs["valid_logs"].items()}
  # the validation batch: the sampler's first validation draws, as many as
  # make VALID_POINTS (2,048 for users, the suite's 256 here)
  key = jax.random.fold_in(jax.random.fold_in(rng, 1), 1)
  draws = -(-sampling.VALID_POINTS // 128)
  x, y = (jnp.concatenate(v) for v in zip(
      *[sampler(jax.random.fold_in(key, j)) for j in range(draws)]))
  tx = pot.transport(x)
  np.testing.assert_allclose(
      valid["map_cost"], jnp.mean(jnp.sum((tx - x) ** 2, -1)), rtol=1e-5)
  fit, floor = ott_enot.evaluation.metrics.fit_and_floor(tx, y)
  np.testing.assert_allclose([valid["fit"], valid["floor"]], [fit, floor],
                             rtol=1e-4)
  report = ott_enot.evaluation.metrics.fit_report(tx, y, coarse=False)
  np.testing.assert_allclose(valid["strays"], report.strays, rtol=1e-4)
  # halves of one batch: the floor compares two target halves, the fit the
  # mapped first half; no map at all is far from the target
  assert valid["floor"] > 0
  no_map, _ = ott_enot.evaluation.metrics.fit_and_floor(x, y)
  assert no_map > 10 * floor


def test_device_feeds_repeat_their_validation_batch_and_choose_the_lowest():
  """A fixed validation set where the engine draws the batches (the scores
  compare maps, so the lowest is kept); the user's loaders give fresh
  batches, whose noise the method's tolerance absorbs."""
  def sampler(key):
    return (jax.random.normal(key, (16, 2)),
            jax.random.normal(jax.random.fold_in(key, 1), (16, 2)))

  feed = feeds.DeviceFeed(
      feeds.SamplerBatches.of(jax.random.key(0), sampler), 2)
  first, later = feed.valid_batch(0), feed.valid_batch(7)
  for a, b in zip(first, later, strict=True):
    np.testing.assert_array_equal(a, b)
  # and it is the sampler's first validation draw (not a training batch)
  drawn = feed.chunk_batches.valid_batch(jnp.int32(0))
  np.testing.assert_array_equal(first[0], drawn[0])
  assert not np.array_equal(first[0], sampler(jax.random.key(0))[0])
  method = methods.ENOT(None)
  assert loop.selection_tolerance(method, feed) == 0.0
  loaders = feeds.IteratorFeed([iter(())] * 4, 2)
  assert not loaders.repeats_validation
  assert loop.selection_tolerance(method, loaders) == (
      methods.enot.SELECTION_TOLERANCE) > 0
  # a feed of the user's that does not say: fresh batches
  assert loop.selection_tolerance(method, object()) == (
      methods.enot.SELECTION_TOLERANCE)
