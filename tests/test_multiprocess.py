"""Training across real processes (``jax.distributed``, gloo on localhost).

Two processes of tests/multiprocess_child.py, one CPU device each, one mesh
over both, against one-process runs of the same global batches computed
here (tests/multiprocess_problem.py): ``fit``, the resume of a one-process
checkpoint, iterators yielding each process's share, bad batches on process
1, and last process 1 SIGKILLing itself mid-run. Every process has a
timeout and is killed, with its process group, when the fixture ends,
whether the processes passed or failed.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import multiprocess_problem as problem
from conftest import child_env
import ott_enot


HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 240  # seconds, for the two processes together


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


@contextlib.contextmanager
def _processes(workdir: str, count: int = 2):
  """Start ``count`` processes of the child; on exit kill what is left."""
  # one device per process (XLA's cheap pipeline, as conftest sets it, kept)
  env = child_env(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", XLA_FLAGS=" ".join(
      flag for flag in os.environ.get("XLA_FLAGS", "").split()
      if not flag.startswith("--xla_force_host_platform_device_count")))
  port = str(_free_port())
  procs = []
  try:
    for pid in range(count):
      with open(os.path.join(workdir, f"process-{pid}.log"), "w") as log:
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multiprocess_child.py"),
             str(pid), str(count), port, workdir],
            env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))
    yield procs
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _read(workdir, pid):
  path = os.path.join(workdir, f"process-{pid}.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _log(workdir, pid, tail=3000):
  with open(os.path.join(workdir, f"process-{pid}.log")) as f:
    text = f.read()
  return text if tail is None else text[-tail:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("multiprocess"))
  with _processes(workdir) as procs:
    deadline = time.time() + TIMEOUT

    # while the processes start: the one-process checkpoint of step 30 that
    # they resume (1 -> 2), from a run stopped by its callback after step 30
    def stop(step, potentials):
      del potentials
      if step >= 30:
        raise KeyboardInterrupt

    s = problem.solver(None, checkpoint_dir=os.path.join(workdir, "ref_ckpt"))
    with pytest.raises(KeyboardInterrupt):
      s.fit(problem.sampler, callback=stop)
    ref = {"step_30": problem.params(s.state)}
    open(os.path.join(workdir, "ref_ckpt", "READY"), "w").close()
    # meanwhile, the one-process references of the same global batches
    s = problem.solver(None)
    ref["fit"] = problem.report(s, *s.fit(problem.sampler))
    s = problem.solver(None)
    ref["iter"] = problem.report(
        s, *s(*problem.stream.loaders(problem.KEY)))
    # until process 1 is gone (killed) and process 0 has recorded what it
    # raised; JAX would end process 0 a heartbeat timeout later (10 s), a
    # wait this test need not pay: `_processes` kills it on the way out
    try:
      procs[1].wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      pass
    while (time.time() < deadline and procs[0].poll() is None
           and "raised" not in _read(workdir, 0)):
      time.sleep(0.2)
    rc = [p.poll() for p in procs]
  out = [_read(workdir, pid) for pid in (0, 1)]
  for pid in (0, 1):
    assert out[pid].get("done"), (rc, _log(workdir, pid))
  return dict(workdir=workdir, ref=ref, out=out, rc=rc)


def _max_diff(a, b, names, skip_output_bias=True):
  """Max |a - b| over parameter leaves, but for the potentials' output biases
  (free constants of the objective, which Adam drifts by rounding; see
  tests/test_sharding.py) when ``skip_output_bias``."""
  return max(
      float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
      for name, u, v in zip(names, a, b)
      if not (skip_output_bias and name.endswith(problem.OUTPUT_BIAS))
  )


@pytest.mark.parametrize("path", ["fit", "iter"])
def test_two_processes_equal_one_process(runs, path):
  ref = runs["ref"][path]
  for pid in (0, 1):
    got = runs["out"][pid][path]
    assert runs["out"][pid]["devices"] == 2
    assert got["step"] == ref["step"] == problem.STEPS
    # sums over the batch in another order: measured 1e-7 on 2 devices
    assert _max_diff(got["params"], ref["params"], ref["names"]) < 2e-5
    np.testing.assert_allclose(got["forward"], ref["forward"], atol=2e-5)
    np.testing.assert_allclose(got["w_dist"], ref["w_dist"], rtol=1e-4)
  # both processes hold the same replicated state, bit for bit
  a, b = (runs["out"][pid][path] for pid in (0, 1))
  assert a["params"] == b["params"] and a["forward"] == b["forward"]


def test_one_process_checkpoint_resumes_in_two(runs):
  for pid in (0, 1):
    main = runs["out"][pid]
    assert main["restored_step"] == 30
    assert main["restored_params"] == runs["ref"]["step_30"]  # bit for bit
    ref, got = runs["ref"]["fit"], main["resumed"]
    assert got["step"] == problem.STEPS
    assert _max_diff(got["params"], ref["params"], ref["names"]) < 2e-5
    np.testing.assert_allclose(got["forward"], ref["forward"], atol=2e-5)


def test_two_process_run_resumed_equals_the_uninterrupted_one(runs):
  for pid in (0, 1):
    got, whole = runs["out"][pid]["resumed_own"], runs["out"][pid]["fit"]
    assert got["params"] == whole["params"]  # bit for bit
    assert got["forward"] == whole["forward"]


def test_two_process_checkpoint_resumes_in_one(runs, tmp_path):
  # the pair's checkpoint of step 30, alone in a directory, resumed here
  src = os.path.join(runs["workdir"], "pair_ckpt", "latest")
  assert ott_enot.training.checkpoints.checkpoint_steps(
      os.path.join(runs["workdir"], "pair_ckpt")) == (30, problem.STEPS - 1)
  shutil.copytree(os.path.join(src, "30"),
                  os.path.join(tmp_path, "latest", "30"))
  s = problem.solver(None, checkpoint_dir=str(tmp_path))
  assert s.restore("latest")["step"] == 30
  got = problem.report(s, *s.fit(problem.sampler, resume=True))
  ref = runs["ref"]["fit"]
  pair = runs["out"][0]["fit"]
  assert _max_diff(got["params"], ref["params"], ref["names"]) < 2e-5
  assert _max_diff(got["params"], pair["params"], ref["names"]) < 2e-5
  np.testing.assert_allclose(got["forward"], pair["forward"], atol=2e-5)
  # the last checkpoint, restored here, is the pair's final state exactly
  s = problem.solver(None, checkpoint_dir=os.path.join(runs["workdir"],
                                                       "pair_ckpt"))
  s.restore("latest")
  assert problem.params(s.state) == pair["params"]


def test_nan_batch_on_one_process_is_an_error_on_both(runs):
  for pid in (0, 1):
    main = runs["out"][pid]
    assert main["nan_error"] is not None
    assert main["nan_error"].startswith("On process 1:"), main["nan_error"]
    assert "trainloader_source" in main["nan_error"]
    assert "NaN" in main["nan_error"] or "nan" in main["nan_error"]
    # the state after the last chunk completed before the chunk of step 40
    # (whose batches are pulled while that one runs) is kept
    config = problem.solver(None).loop_config()
    chunks = ott_enot.training.loop.plan_chunks(problem.STEPS, config.chunk_length,
                                       config.chunk_size)
    bad = next(c for c in chunks if c.lo <= 40 <= c.hi)
    assert main["nan_step"] == bad.lo


def test_wrong_shape_on_one_process_fails_on_both_before_compiling(runs):
  for pid in (0, 1):
    main = runs["out"][pid]
    assert main["shape_error"].startswith("On process 1:"), main["shape_error"]
    assert "trainloader_target" in main["shape_error"]
    assert main["shape_compiled"] == 0


def test_local_batch_sizes_that_differ_are_refused_naming_processes(runs):
  for pid in (0, 1):
    err = runs["out"][pid]["size_error"]
    assert "Every process must have the same batch size" in err, err
    assert "process 0: 32, process 1: 16" in err, err


def test_one_voice_progress_and_warnings_from_process_zero(runs):
  first, second = (_log(runs["workdir"], pid, None) for pid in (0, 1))
  bar = f"{problem.STEPS}/{problem.STEPS} ["  # tqdm's "60/60 [00:05<..."
  assert bar in first and bar not in second
  assert any("beta=1.0" in w for w in runs["out"][0]["warnings"])
  assert runs["out"][1]["warnings"] == []


def test_killed_process_stops_the_other_with_a_clear_error(runs):
  killed, survivor = runs["out"][1], runs["out"][0]
  assert killed["killed_step"] >= 45 and runs["rc"][1] == -signal.SIGKILL
  assert survivor.get("raised") == "ProcessFailedError", _log(
      runs["workdir"], 0)
  assert "another process probably died" in survivor["message"]
  # the error within seconds of the kill (the failed collective), not a
  # hang (JAX's coordination service then ends the process, a heartbeat
  # timeout later: measured ~10 s, see benchmarks/RESULTS.md)
  assert survivor["at"] - killed["killed_at"] < 20
  # the survivor keeps the finite state of its last completed chunk
  assert survivor["finite"] and survivor["state_step"] >= 46
  assert survivor["error_step"] == survivor["state_step"] - 1


def test_latest_checkpoint_of_a_killed_run_resumes(runs, tmp_path):
  ckpt = os.path.join(runs["workdir"], "kill_ckpt")
  steps = ott_enot.training.checkpoints.checkpoint_steps(ckpt)
  assert steps[:2] == (15, 30), steps  # complete; 45's may have been cut
  shutil.copytree(ckpt, tmp_path / "ckpt")
  s = problem.solver(None, checkpoint_dir=str(tmp_path / "ckpt"),
                     checkpoint_every=problem.CHUNK)
  meta = s.restore("latest")
  assert meta["step"] == steps[-1]
  s.fit(problem.sampler, resume=True)
  assert int(s.state.step) == problem.STEPS
  assert all(np.isfinite(np.asarray(a)).all()
             for a in jax.tree.leaves(s.state.f.params))


# -- the single-process side of the same code (no processes spawned) --------


def test_loaders_shares_concatenate_to_the_whole_batch():
  whole = problem.stream.loaders(problem.KEY, process_count=1)
  shares = [problem.stream.loaders(problem.KEY, process_index=i,
                                   process_count=2) for i in (0, 1)]
  for _ in range(3):
    for j in range(4):  # train/valid source/target
      parts, batch = [next(share[j]) for share in shares], next(whole[j])
      # training batches hold N points; validation batches distinct held-out
      # points, the largest multiple of N that 10 % of 1,500 points hold
      assert batch.shape[0] == (problem.N if j < 2 else 150 // problem.N *
                                problem.N)
      assert all(p.shape == (batch.shape[0] // 2, problem.D) for p in parts)
      np.testing.assert_array_equal(np.concatenate(parts), batch)
  # batch i is sample_step(key, i)'s, as the devices draw it in `fit`
  x, _ = problem.stream.sample_step(problem.KEY, 3)
  np.testing.assert_array_equal(
      np.concatenate([next(share[0]) for share in shares]), np.asarray(x))


@pytest.mark.parametrize("kw,match", [
    (dict(process_count=3), "does not split into 3 equal shares"),
    (dict(process_index=2, process_count=2), "process_index"),
])
def test_loaders_refuse_shares_that_do_not_exist(kw, match):
  with pytest.raises(ValueError, match=match):
    problem.stream.loaders(problem.KEY, **kw)


def test_fingerprint_tells_data_apart():
  fp = ott_enot.training.sharding.fingerprint
  tree = {"x": problem.X, "key": jax.random.key(1)}
  assert fp(tree) == fp({"x": problem.X.copy(), "key": jax.random.key(1)})
  assert fp(tree) != fp({"x": problem.X + 1e-6, "key": jax.random.key(1)})
  assert fp(tree) != fp({"x": problem.X, "key": jax.random.key(2)})


def test_agree_in_one_process_raises_the_error_as_it_is():
  parallel = ott_enot.training.sharding.DataParallel()
  parallel.agree(None, same={"batch size": 3})  # nothing to compare with
  with pytest.raises(ValueError, match="^bad batch$"):
    parallel.agree("bad batch")
  with pytest.raises(TypeError, match="wrong type"):  # the original kept
    parallel.checked(lambda: (_ for _ in ()).throw(TypeError("wrong type")))
  assert parallel.checked(lambda: 7, same=lambda v: {"v": v}) == 7
