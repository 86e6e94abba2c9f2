"""The problem of tests/test_multiprocess.py, shared by the test (the
one-process references) and tests/multiprocess_child.py (the processes)."""

import suite_child  # noqa: F401  (the suite's validation size, in a child)
import jax
import numpy as np
from ott.neural.networks import potentials as P

import ott_enot
from ott_enot import data

# small: on CPU, gloo all-reduces each gradient array of a step separately
# (about 2 ms each on 2 cores), so steps across processes are slow
D, N, WIDTH = 3, 64, 16
STEPS, CHUNK, CKPT_EVERY = 60, 15, 30
KEY = jax.random.key(5)
#: The potentials' output biases (free constants of the objective).
OUTPUT_BIAS = "['Dense_1']['bias']"
_rng = np.random.default_rng(0)
X = _rng.normal(size=(1500, D)).astype(np.float32)
Y = (_rng.normal(size=(1500, D)) * 0.5 + 1.0).astype(np.float32)
X_TEST = _rng.normal(size=(100, D)).astype(np.float32)
stream = data.PointCloudStream.from_arrays(X, Y, batch_size=N)


def sampler(key):
  """``fit``'s batches: a global batch of N points, drawn on the devices."""
  kx, ky = jax.random.split(key)
  return (jax.random.normal(kx, (N, D)),
          jax.random.normal(ky, (N, D)) * 0.5 + 1.0)


def solver(mesh, **kw):
  kw = dict(dict(num_train_iters=STEPS, checkpoint_every=CKPT_EVERY,
                 valid_freq=CHUNK, log_freq=10, chunk_size=CHUNK,
                 logging=True, progress_bar=False), **kw)
  return ott_enot.ExpectileNeuralDual(
      D, neural_f=P.MLP([WIDTH, 1]), neural_g=P.MLP([WIDTH, 1]),
      mesh=mesh, **kw)


def params(state):
  return [np.asarray(a).tolist() for a in jax.tree.leaves(
      (state.f.params, state.g.params))]


def report(s, potentials, logs):
  return {
      "params": params(s.state),
      "names": [jax.tree_util.keystr(k) for k, _ in
                jax.tree_util.tree_flatten_with_path(
                    (s.state.f.params, s.state.g.params))[0]],
      "forward": np.asarray(potentials.transport(X_TEST)).tolist(),
      "w_dist": logs["valid_logs"]["w_dist"],
      "step": int(s.state.step),
  }


def poisoned(batches, at):
  """``batches`` with NaN in the batch of step ``at``."""
  for i, b in enumerate(batches):
    yield np.full_like(b, np.nan) if i == at else b
