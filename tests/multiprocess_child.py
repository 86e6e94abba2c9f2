"""One process of a multi-process run, spawned by tests/test_multiprocess.py.

    python tests/multiprocess_child.py PROCESS_ID NUM_PROCESSES PORT DIR

Every process calls ``jax.distributed.initialize`` (CPU collectives by
gloo, on localhost), builds one mesh over all processes' devices and runs
the script below, writing what it saw to ``DIR/process-<id>.json`` as it
goes (so that nothing measured is lost when a process dies):
``fit(sampler)`` with checkpoints; a run resumed from the
one-process checkpoint in ``DIR/ref_ckpt``; ``solver(*stream.loaders())``
(each process yields its share); a NaN batch on process 1 at step 40; a
first batch of the wrong dimension on process 1; last, a run in which
process 1 SIGKILLs itself after step 45 and process 0 reports what it
raised.
"""
import json
import os
import shutil
import signal
import sys
import time
import warnings

import jax

PID, NPROC, PORT, DIR = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
    sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    f"localhost:{PORT}", num_processes=NPROC, process_id=PID,
    initialization_timeout=60, heartbeat_timeout_seconds=10
)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

import multiprocess_problem as problem  # noqa: E402
import ott_enot  # noqa: E402

out = {"process_index": jax.process_index(), "devices": len(jax.devices())}


T0 = time.time()


def record(**kw):
  out.update(kw)
  out.setdefault("times", []).append((list(kw)[0], round(time.time() - T0, 1)))
  path = os.path.join(DIR, f"process-{PID}.json")
  with open(path + ".tmp", "w") as f:
    json.dump(out, f)
  os.replace(path + ".tmp", path)


def error_of(run):
  try:
    run()
  except ValueError as err:
    return str(err)
  return None


mesh = ott_enot.batch_mesh()
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  # an ott option ENOT ignores (it warns), and the progress bar on
  s = problem.solver(mesh, checkpoint_dir=os.path.join(DIR, "pair_ckpt"),
                     beta=1.0, progress_bar=True)
record(warnings=[str(w.message) for w in caught])
record(fit=problem.report(s, *s.fit(problem.sampler)))

# 1 -> 2: resume the one-process checkpoint of step 30 (which the test
# writes while this process starts)
ready = os.path.join(DIR, "ref_ckpt", "READY")
while not os.path.exists(ready):
  time.sleep(0.1)
s = problem.solver(mesh, checkpoint_dir=os.path.join(DIR, "ref_ckpt"))
meta = s.restore("latest")
record(restored_step=meta["step"], restored_params=problem.params(s.state))
# the restored best validated parameters (which no validation of 256 points
# replaces: no finite score) are written again with every checkpoint of the
# pair: placed on the mesh as the state is (host-local arrays cannot be)
record(resumed=problem.report(s, *s.fit(problem.sampler, resume=True)))

# 2 -> 2: the pair's own checkpoint of step 30, resumed, equals the
# uninterrupted run bit for bit
if PID == 0:
  shutil.copytree(os.path.join(DIR, "pair_ckpt", "latest", "30"),
                  os.path.join(DIR, "pair_resume", "latest", "30"))
multihost_utils.sync_global_devices("copied")
s = problem.solver(mesh, checkpoint_dir=os.path.join(DIR, "pair_resume"))
record(resumed_own=problem.report(s, *s.fit(problem.sampler, resume=True)))

# iterators: each process yields its share of every batch
s = problem.solver(mesh)
record(iter=problem.report(s, *s(*problem.stream.loaders(problem.KEY))))

# a NaN batch on process 1 at step 40: an error on both, state kept
s = problem.solver(mesh)
loaders = list(problem.stream.loaders(problem.KEY))
if PID == 1:
  loaders[0] = problem.poisoned(loaders[0], at=40)
record(nan_error=error_of(lambda: s(*loaders)), nan_step=int(s.state.step))

# a first batch of the wrong dimension on process 1: before compiling
s = problem.solver(mesh)
loaders = list(problem.stream.loaders(problem.KEY))
if PID == 1:
  loaders[1] = (b[:, :-1] for b in loaders[1])
compiled = ott_enot.training.chunk_programs_compiled()
record(shape_error=error_of(lambda: s(*loaders)),
       shape_compiled=ott_enot.training.chunk_programs_compiled() - compiled)

# local batches of different sizes: before compiling, naming the processes
s = problem.solver(mesh)
loaders = list(problem.stream.loaders(problem.KEY))
if PID == 1:
  loaders[:2] = [(b[:16] for b in it) for it in loaders[:2]]
record(size_error=error_of(lambda: s(*loaders)))
record(done=True)


# last, process 1 SIGKILLs itself after step 45 (checkpoints every 15
# steps; the one of step 45 may be cut short); process 0 reports
def callback(step, potentials):
  del potentials
  if step >= 45 and PID == 1:
    record(killed_at=time.time(), killed_step=step)
    os.kill(os.getpid(), signal.SIGKILL)


s = problem.solver(mesh, checkpoint_dir=os.path.join(DIR, "kill_ckpt"),
                   checkpoint_every=problem.CHUNK)
try:
  s.fit(problem.sampler, callback=callback)
  record(raised=None)
except ott_enot.ProcessFailedError as err:
  record(raised=type(err).__name__, message=str(err), at=time.time(),
         error_step=err.step, state_step=int(s.state.step),
         finite=bool(all(np.isfinite(np.asarray(a)).all()
                         for a in jax.tree.leaves(s.state.f.params))))
