"""Checkpoints with orbax: latest K and best, resume after SIGKILL, refusals."""
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.geometry import costs

import ott_enot
from ott_enot.training import checkpoints

from conftest import child_env, kept_validation  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _validation_that_chooses(selection_valid_points):
  """Validation batches that choose the returned map (the "best"
  checkpoint), here and in the children."""


DIM, BATCH, STEPS, EVERY, CHUNK = 2, 32, 240, 40, 20

# The training script, shared by the subprocess and this process: a fixed
# problem, networks and schedule; `fit` samples on the device keyed by step.
SCRIPT = textwrap.dedent(f"""
    import jax, jax.numpy as jnp, optax
    import ott_enot
    from ott.neural.networks import potentials as ott_potentials

    def sampler(key):
      kx, ky = jax.random.split(key)
      x = jax.random.normal(kx, ({BATCH}, {DIM}))
      y = 0.5 * jax.random.normal(ky, ({BATCH}, {DIM})) + 1.0
      return x, y

    def make_solver(directory, width=16, cost_fn=None, every={EVERY}):
      mlp = lambda: ott_potentials.PotentialMLP([width, width],
                                               act_fn=jax.nn.elu)
      return ott_enot.ExpectileNeuralDual(
          {DIM}, mlp(), mlp(), optax.adam(1e-3), optax.adam(1e-3),
          cost_fn=cost_fn, num_train_iters={STEPS}, valid_freq={EVERY},
          log_freq=10, logging=True, rng=jax.random.key(0),
          progress_bar=False, chunk_size={CHUNK}, checkpoint_dir=directory,
          checkpoint_every=every, checkpoint_keep=2)
""")
# the children's first line: validate as this module does
CHILD_HEAD = "import suite_child\n"
namespace = {}
exec(SCRIPT, namespace)  # pylint: disable=exec-used
make_solver, sampler = namespace["make_solver"], namespace["sampler"]


def _params(solver):
  return jax.tree.leaves(solver.state)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  directory = tmp_path_factory.mktemp("full")
  solver = make_solver(str(directory))
  _, logs = solver.fit(sampler)
  return solver, logs, directory


def test_resume_after_sigkill_equals_an_uninterrupted_run(
    uninterrupted, tmp_path
):
  """A run killed after two checkpoints, resumed in a new process."""
  directory = tmp_path / "run"
  child = CHILD_HEAD + SCRIPT + textwrap.dedent(f"""
      import time
      solver = make_solver({str(directory)!r})
      solver.fit(sampler, callback=lambda step, pots: time.sleep(0.4))
  """)
  proc = subprocess.Popen([sys.executable, "-c", child], env=child_env())
  try:
    deadline = time.time() + 240
    while len(checkpoints.checkpoint_steps(directory)) < 2:
      assert proc.poll() is None, "the run ended before it was killed"
      assert time.time() < deadline, "no two checkpoints in time"
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == -signal.SIGKILL
  saved = checkpoints.checkpoint_steps(directory)
  assert saved and saved[-1] < STEPS - 1  # killed mid-run

  resumer = CHILD_HEAD + SCRIPT + textwrap.dedent(f"""
      import numpy as np, sys
      solver = make_solver({str(directory)!r})
      meta_step = max(ott_enot.training.checkpoints.checkpoint_steps({str(directory)!r}))
      seen = []
      pots, logs = solver.fit(sampler, resume=True,
                              callback=lambda step, p: seen.append(step))
      assert min(seen) > meta_step, (seen, meta_step)  # it did resume
      leaves = jax.tree.leaves((solver.state, solver.best))
      np.savez({str(tmp_path / "resumed.npz")!r}, meta_step=meta_step,
               w_dist=np.asarray(logs["valid_logs"]["w_dist"]),
               fit=np.asarray(logs["valid_logs"]["fit"]),
               floor=np.asarray(logs["valid_logs"]["floor"]),
               *[np.asarray(l) for l in leaves])
  """)
  subprocess.run([sys.executable, "-c", resumer], check=True, timeout=300,
                 env=child_env())
  full, full_logs, _ = uninterrupted
  with np.load(tmp_path / "resumed.npz") as out:
    assert int(out["meta_step"]) < STEPS - 1
    # the state and the run's best validated parameters (kept in the
    # checkpoints: a resumed run returns what the uninterrupted one does)
    want = jax.tree.leaves((full.state, full.best))
    got = [out[f"arr_{i}"] for i in range(len(want))]
    # validation too: the run's reference (blur, floor) came back from the
    # checkpoint, so the resumed run's fit and floor are the uninterrupted's
    for key in ("w_dist", "fit", "floor"):
      np.testing.assert_array_equal(out[key], full_logs["valid_logs"][key])
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a, np.asarray(b))  # bit for bit on CPU


def test_keep_and_best(uninterrupted):
  solver, logs, directory = uninterrupted
  latest = checkpoints.checkpoint_steps(directory, "latest")
  assert latest == (200, STEPS - 1)  # keep=2: the last two
  best = checkpoints.checkpoint_steps(directory, "best")
  assert len(best) == 1
  valid = logs["valid_logs"]  # after steps 40, 80, ..., 200 and the last
  scores = np.asarray(valid["fit"]) / np.asarray(valid["floor"])
  steps = list(range(EVERY, STEPS, EVERY)) + [STEPS - 1]
  # a sampler's validation batch is the same every time: the lowest
  chosen = int(kept_validation(scores, 0.0))
  assert best[0] == steps[chosen]
  assert logs["selection"] == {
      "step": best[0], "fit/floor": pytest.approx(scores[chosen]),
      "lowest": pytest.approx(scores.min())}
  meta = make_solver(str(directory)).restore("best")
  assert meta["selection"]["fit/floor"] == pytest.approx(scores[chosen])
  # the latest checkpoint is the final state, with the run's best validated
  # parameters; potentials load from the dir: the latest state's, or the
  # best checkpoint's (what training returned)
  restored = make_solver(str(directory))
  meta = restored.restore("latest")
  assert meta["step"] == STEPS - 1
  for a, b in zip(_params(restored), _params(solver)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree.leaves(restored.best), jax.tree.leaves(solver.best),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  x = jnp.ones((3, DIM))
  last = solver.enot.potentials(*solver.state.params)
  np.testing.assert_array_equal(
      solver.to_dual_potentials().load(directory).transport(x),
      last.transport(x))
  np.testing.assert_array_equal(
      solver.to_dual_potentials().load(directory, kind="best").transport(x),
      solver.to_dual_potentials().transport(x))


def test_refusals(uninterrupted, tmp_path):
  _, _, directory = uninterrupted
  with pytest.raises(checkpoints.CheckpointError, match="shapes"):
    make_solver(str(directory), width=8).restore()
  with pytest.raises(checkpoints.CheckpointError, match="cost"):
    make_solver(str(directory), cost_fn=costs.PNormP(1.5)).restore()
  with pytest.raises(checkpoints.CheckpointError, match="No latest checkpoint"):
    make_solver(str(tmp_path / "empty")).fit(sampler, resume=True)
  with pytest.raises(ValueError, match="resume=True"):
    make_solver(str(directory)).fit(sampler)  # would overwrite a run
  with pytest.raises(ValueError, match="checkpoint_dir"):
    make_solver(None).restore()
  with pytest.raises(ValueError, match="checkpoint_every"):
    make_solver(str(tmp_path), every=0)


def test_iterator_path_resumes_with_positioned_loaders(tmp_path):
  """A callback raises after step 100; the run goes on from the checkpoint
  of step 80 with `PointCloudStream.loaders(start, valid_start)`."""
  rng = np.random.default_rng(0)
  stream = ott_enot.PointCloudStream.from_arrays(
      rng.normal(size=(500, DIM)).astype(np.float32),
      rng.normal(1.0, 0.5, size=(500, DIM)).astype(np.float32),
      batch_size=BATCH, valid_fraction=0.2,
  )
  full = make_solver(None)
  full(*stream.loaders(jax.random.key(1)))

  def stop(step, _):
    if step >= 100:
      raise RuntimeError("stop")

  run = make_solver(str(tmp_path))
  with pytest.raises(RuntimeError, match="stop"):
    run(*stream.loaders(jax.random.key(1)), callback=stop)
  resumed = make_solver(str(tmp_path))
  meta = resumed.restore()
  assert meta["step"] == 80
  resumed(*stream.loaders(jax.random.key(1), start=meta["step"] + 1,
                          valid_start=meta["num_validations"]),
          resume=True)
  for a, b in zip(_params(resumed), _params(full)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
