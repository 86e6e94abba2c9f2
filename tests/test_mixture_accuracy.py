"""A map that splits a cluster, judged as a reader of the plot judges it.

One tight cluster to two (the map must split it along a line: a continuous
network strands the points near that line between the target's clusters)
and back (the inverse merges two clusters into one: nothing to strand).
The solver's defaults, a short run on fresh samples, with the default
networks (ELU: the map ramps across the split line) and with
:class:`~ott_enot.PiecewiseMLP` (the demo's: three ReLU layers, the first
through data points: the map can jump there);
the maps are judged on held-out points beside a fresh target sample
(:func:`metrics.cluster_report` with the clusters' centres): the share of
points between clusters and every cluster's spread within bounds (the
measured values beside them), and each target cluster's mass within five
points of a half.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ott_enot
from ott_enot.evaluation import metrics
from ott_enot.model import networks

SPREAD, GAP = 0.25, 2.5  # clusters' std, and the target's centres' offset
SOURCE = np.array([[0.0, 0.0]])
TARGET = np.array([[-GAP, 0.0], [GAP, 0.0]])
STEPS, BATCH, EVAL = 2000, 256, 2048


def _draw(key, centers, n):
  k1, k2 = jax.random.split(key)
  pick = jax.random.randint(k1, (n,), 0, centers.shape[0])
  return (jnp.asarray(centers, jnp.float32)[pick]
          + SPREAD * jax.random.normal(k2, (n, 2)))


def _sampler(key):
  return (_draw(jax.random.fold_in(key, 0), SOURCE, BATCH),
          _draw(jax.random.fold_in(key, 1), TARGET, BATCH))


# the forward map's strays bound per network; measured: ELU 1.8 % (half the
# steps: 3.2 %), PiecewiseMLP with one ReLU layer 1.8 %, with two 1.9 %,
# with three (the demo's) 2.0 % (a fresh sample 0.15 %)
STRAYS = {"elu": 0.035, "piecewise3": 0.035}


def _networks(name):
  """The default networks, or the demo's PiecewiseMLPs (three ReLU layers)
  anchored at 128 points of each measure (a sample apart from the held-out
  and training ones)."""
  if name == "elu":
    return {}
  return networks.piecewise_networks(*_sampler(jax.random.key(7)),
                                     relu_layers=3)


@pytest.fixture(scope="module", params=sorted(STRAYS))
def reports(request):
  """``{direction: ClusterReport}`` of the two maps on held-out points, and
  the network's name."""
  solver = ott_enot.ENOTSolver(2, num_train_iters=STEPS, progress_bar=False,
                               rng=jax.random.key(0),
                               **_networks(request.param))
  potentials = solver.fit(_sampler, rng=jax.random.key(1))
  held = lambda i, centers: _draw(jax.random.key(100 + i), centers, EVAL)
  x, y = held(0, SOURCE), held(1, TARGET)
  fresh_x, fresh_y = held(2, SOURCE), held(3, TARGET)
  return {
      "network": request.param,
      "forward": metrics.cluster_report(potentials.transport(x), fresh_y,
                                        centers=TARGET),
      "inverse": metrics.cluster_report(
          potentials.transport(y, forward=False), fresh_x, centers=SOURCE),
  }


def test_the_split_strands_few_points(reports):
  forward = reports["forward"]
  assert forward.strays_floor < 0.01
  # measured spreads: ELU 1.01 and 0.98, PiecewiseMLP (one ReLU layer) 1.04
  # and 1.02, (two) 1.01 and 0.99, (three, the demo's) 1.03 and 1.00
  assert forward.strays < STRAYS[reports["network"]], forward
  np.testing.assert_allclose(forward.share, [0.5, 0.5], atol=0.05)
  assert np.all(np.abs(np.asarray(forward.spread) - 1) < 0.15), forward


def test_the_merge_strands_none(reports):
  inverse = reports["inverse"]
  # measured: ELU 0.2 %, spread 1.02; PiecewiseMLP (one ReLU layer) 0.3 %,
  # 1.04, (two) 0.3 %, 1.05, (three) 0.3 %, 1.05
  assert inverse.strays < 0.01, inverse
  assert abs(float(inverse.spread[0]) - 1) < 0.1, inverse
