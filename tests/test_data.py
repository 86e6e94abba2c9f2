"""PointCloud / LinearProblem -> ENOT training streams."""
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ott.geometry import costs, pointcloud
from ott.problems.linear import linear_problem
from ott.tools import sinkhorn_divergence

import ott_enot
from ott_enot import data


def _counts(stream_measure, n_batches, seed=0):
  draw = jax.jit(jax.vmap(lambda m, k: m.sample(k), in_axes=(None, 0)))
  keys = jax.random.split(jax.random.key(seed), n_batches)
  pts = np.asarray(draw(stream_measure, keys)).reshape(-1, stream_measure.points.shape[1])
  ref = np.asarray(stream_measure.points)
  idx = np.argmin(((pts[:, None, :] - ref[None]) ** 2).sum(-1), axis=1)
  return np.bincount(idx, minlength=len(ref)), pts


class TestSampling:
  n = 12
  pts = np.arange(2 * n, dtype=np.float32).reshape(n, 2)  # distinct points
  weights = np.random.default_rng(0).dirichlet(np.ones(n) * 0.7)

  def _measure(self, replace=True, batch=64):
    return data.WeightedPoints(jnp.asarray(self.pts), jnp.asarray(self.weights),
                               batch, replace)

  def test_frequencies_match_weights_chi_square(self):
    counts, _ = _counts(self._measure(), n_batches=400)  # 25,600 draws
    expected = self.weights * counts.sum()
    _, p = stats.chisquare(counts, expected)
    assert p > 1e-3  # the sampler is right: not rejected at 0.1 %
    # and the test has power: a uniform sampler would be rejected
    _, p_uniform = stats.chisquare(counts, np.full(self.n, counts.sum() / self.n))
    assert p_uniform < 1e-12

  def test_uniform_weights_chi_square(self):
    m = data.WeightedPoints(jnp.asarray(self.pts), None, 64, True)
    counts, _ = _counts(m, n_batches=200)
    _, p = stats.chisquare(counts)
    assert p > 1e-3

  def test_without_replacement_no_repeats_and_follows_weights(self):
    m = self._measure(replace=False, batch=4)
    batches = jax.vmap(m.sample)(jax.random.split(jax.random.key(1), 2000))
    for b in np.asarray(batches[:200]):
      assert len({tuple(r) for r in b}) == 4
    # heavier points appear more often (Gumbel top-k)
    counts, _ = _counts(m, 2000)
    heavy, light = np.argsort(self.weights)[-3:], np.argsort(self.weights)[:3]
    assert counts[heavy].min() > counts[light].max()

  def test_deterministic_for_a_key(self):
    m = self._measure()
    np.testing.assert_array_equal(m.sample(jax.random.key(5)), m.sample(jax.random.key(5)))
    assert not np.array_equal(m.sample(jax.random.key(5)), m.sample(jax.random.key(6)))


class TestSplits:

  def test_validation_split_is_disjoint_and_sized(self):
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = -np.arange(160, dtype=np.float32).reshape(80, 2)
    stream = data.PointCloudStream.from_geometry(
        pointcloud.PointCloud(x, y), batch_size=16, valid_fraction=0.25,
        rng=jax.random.key(3)
    )
    for train, valid, full, n_valid in (
        (stream.train_source, stream.valid_source, x, 25),
        (stream.train_target, stream.valid_target, y, 20),
    ):
      tr = {tuple(r) for r in np.asarray(train.points)}
      va = {tuple(r) for r in np.asarray(valid.points)}
      assert len(va) == n_valid and not tr & va
      assert tr | va == {tuple(r) for r in full}
    xb, yb = stream.sample(jax.random.key(0), valid=True)
    assert {tuple(r) for r in np.asarray(xb)} <= {
        tuple(r) for r in np.asarray(stream.valid_source.points)}

  def test_problem_weights_are_used_and_renormalised(self):
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    a = np.zeros(10); a[:5] = 0.2
    prob = linear_problem.LinearProblem(pointcloud.PointCloud(x, x), a=a)
    stream = data.PointCloudStream.from_problem(prob, valid_fraction=0.0,
                                                batch_size=32)
    np.testing.assert_allclose(np.sum(stream.train_source.weights), 1.0, rtol=1e-6)
    xb, _ = stream.sample(jax.random.key(0))
    assert set(np.asarray(xb)[:, 0] // 2) <= {0, 1, 2, 3, 4}  # only a > 0

  def test_loaders_are_deterministic(self):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    stream = data.PointCloudStream.from_arrays(x, x + 1, batch_size=8)
    first = [next(it) for it in stream.loaders(jax.random.key(1))]
    again = [next(it) for it in stream.loaders(jax.random.key(1))]
    for a, b in zip(first, again):
      np.testing.assert_array_equal(a, b)


def test_fit_beats_the_identity_map():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 2)).astype(np.float32)
  y = (rng.normal(size=(2000, 2)) * [1.5, 0.5] + [3.0, -1.0]).astype(np.float32)
  geom = pointcloud.PointCloud(x, y)
  solver = ott_enot.ExpectileNeuralDual.from_geometry(
      geom, num_train_iters=1000, progress_bar=False, rng=jax.random.key(0)
  )
  assert isinstance(solver.cost_fn, costs.SqEuclidean) and solver.dim_data == 2
  pot = solver.fit(geom, batch_size=256, rng=jax.random.key(1))
  div = lambda a, b: float(sinkhorn_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, epsilon=1e-1)[0])
  assert div(pot.transport(x[:500]), y[:500]) < 0.1 * div(x[:500], y[:500])


def test_fit_takes_the_cost_from_the_geometry():
  x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  geom = pointcloud.PointCloud(x, x + 1.0, cost_fn=costs.Euclidean())
  solver = ott_enot.ExpectileNeuralDual.from_geometry(
      geom, num_train_iters=3, progress_bar=False
  )
  # the cost came from the geometry: a metric, trained through its surrogate
  assert isinstance(solver.cost_fn, costs.Euclidean)
  assert solver.parameterisation == "twist" and solver.model.surrogate
  solver.fit(geom, batch_size=16)
  other = ott_enot.ExpectileNeuralDual(2, num_train_iters=3, progress_bar=False)
  with pytest.raises(ValueError, match="from_geometry"):
    other.fit(geom, batch_size=16)
  with pytest.raises(ValueError, match="dim_data=3"):
    ott_enot.ExpectileNeuralDual(3, progress_bar=False).fit(
        pointcloud.PointCloud(x, x), batch_size=16
    )


X = np.ones((10, 2), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": np.ones((0, 2))}, ValueError,
         r"`x` has shape \(0, 2\).*non-empty array of shape \[n, d\]"),
        ({"y": np.ones((5,))}, ValueError,
         r"`y` has shape \(5,\).*non-empty array of shape \[n, d\]"),
        ({"y": np.ones((10, 3))}, ValueError, "same dimension"),
        ({"x": np.full((10, 2), np.nan)}, ValueError, "`x` contains NaN"),
        ({"y": np.full((10, 2), np.inf)}, ValueError, "`y` contains NaN or inf"),
        ({"a": -np.ones(10) / 10}, ValueError, "`a` must be finite and non-negative"),
        ({"b": np.full(10, np.nan)}, ValueError, "`b` must be finite"),
        ({"a": np.ones(10)}, ValueError, "`a` must sum to 1"),
        ({"a": np.ones(9) / 9}, ValueError, r"`a` must have shape \(10,\)"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"valid_fraction": 1.0}, ValueError, "valid_fraction"),
        ({"batch_size": 20, "replace": False}, ValueError,
         "larger than a split of `x`.*replace=True"),
    ],
)
def test_bad_input(kwargs, error, match):
  args = {"x": X, "y": X, **kwargs}
  with pytest.raises(error, match=match):
    data.PointCloudStream.from_arrays(**args)


def test_unbalanced_problem_and_wrong_geometry():
  geom = pointcloud.PointCloud(X, X)
  with pytest.raises(ValueError, match="balanced.*tau_a=0.5"):
    data.PointCloudStream.from_problem(linear_problem.LinearProblem(geom, tau_a=0.5))
  solver = ott_enot.ExpectileNeuralDual(2, progress_bar=False)
  with pytest.raises(ValueError, match="tau_b=0.9"):
    solver.fit(linear_problem.LinearProblem(geom, tau_b=0.9))
  from ott.geometry import geometry
  with pytest.raises(TypeError, match="PointCloud"):
    data.PointCloudStream.from_geometry(geometry.Geometry(jnp.ones((3, 3))))
  with pytest.raises(ValueError, match="structured objects"):
    ott_enot.ExpectileNeuralDual.from_geometry(
        pointcloud.PointCloud(np.ones((4, 6)), cost_fn=costs.Bures(dimension=2))
    )


MILLION = textwrap.dedent("""
    import resource, jax, jax.numpy as jnp
    from ott.geometry import pointcloud
    import ott_enot
    formed = pointcloud.PointCloud.cost_matrix.fget
    def guarded(self):
        # validation's fit (Sinkhorn on halves of a validation batch) may
        # form its small matrix; the data's n x m matrix must never be formed
        if self.shape[0] * self.shape[1] > 10 ** 7:
            raise AssertionError("cost matrix of the data formed")
        return formed(self)
    pointcloud.PointCloud.cost_matrix = property(guarded)
    n, d = 1_000_000, 16
    x = jax.random.normal(jax.random.key(0), (n, d))
    y = jax.random.normal(jax.random.key(1), (n, d)) + 1.0
    jax.block_until_ready((x, y))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    geom = pointcloud.PointCloud(x, y)
    solver = ott_enot.ExpectileNeuralDual.from_geometry(
        geom, num_train_iters=20, progress_bar=False, valid_freq=10)
    solver.fit(geom, batch_size=256)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) / 1024)
""")


def test_a_million_points_train_in_bounded_memory():
  res = subprocess.run([sys.executable, "-c", MILLION], capture_output=True,
                       text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-2000:]
  peak_mib = float(res.stdout.strip().splitlines()[-1])
  # the data are 2 x 64 MiB; an n x m float32 matrix would be 3.6 TiB
  assert peak_mib < 1024, peak_mib
