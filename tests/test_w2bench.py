"""The W2 benchmark loader against the stored checks of the original code."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott_enot.evaluation import w2bench

DATA = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "w2bench"
# published forward L2-UV (%) of the linear baseline, Korotin et al. 2021
LINEAR_PUBLISHED = dict(zip(w2bench.PUBLISHED_DIMS,
                            (14.1, 14.9, 27.3, 41.6, 55.3, 63.9, 63.6)))


@pytest.fixture(scope="module", params=w2bench.PUBLISHED_DIMS,
                ids=lambda d: f"D{d}")
def loaded(request):
  path = w2bench.path_of(DATA, request.param)
  with np.load(path) as f:
    checks = {k: np.asarray(f[k]) for k in f.files if k.startswith("check_")}
  return w2bench.W2Pair.load(path), checks


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def test_true_map_and_potential_match_the_original_code(loaded):
  pair, checks = loaded
  x = jnp.asarray(checks["check_x"])
  assert _rel(pair.transport(x), checks["check_tx"]) <= 1e-5
  assert _rel(pair.potential(x), checks["check_psi"]) <= 1e-5
  assert pair.transport(x[0]).shape == (pair.dim,)


def test_inverse_recovers_the_points(loaded):
  pair, checks = loaded
  n = 256 if pair.dim <= 32 else 32  # the exact Hessian costs D passes
  x = jnp.asarray(checks["check_x"][:n])
  x_back = jax.jit(pair.inverse)(jnp.asarray(checks["check_tx"][:n]))
  assert _rel(x_back, x) <= 1e-5


def test_linear_baseline_matches_the_published_row(loaded):
  pair, _ = loaded
  key = jax.random.key(0)
  l2uv = float(jax.jit(lambda p, k: p.l2uv(p.linear_forward, k))(pair, key))
  assert abs(l2uv - LINEAR_PUBLISHED[pair.dim]) <= 0.5
  # the true map scores 0, its linear inverse is worse than the true inverse
  assert float(pair.l2uv(pair.transport, key, n=512)) <= 1e-8


def test_samples_have_the_benchmark_moments(loaded):
  pair, checks = loaded
  x = jax.jit(pair.sample_p, static_argnums=1)(jax.random.key(1), 2 ** 14)
  trace = float(jnp.sum(jnp.var(x, axis=0)))
  assert abs(trace - pair.dim) <= 0.04 * pair.dim  # tr Cov(P) = D exactly
  y = jax.jit(pair.sample_q, static_argnums=1)(jax.random.key(2), 2 ** 14)
  assert abs(float(jnp.sum(jnp.var(y, axis=0))) - float(pair.var_q)) <= (
      0.05 * float(pair.var_q))
  # the original sampler's Q and ours agree in mean
  assert float(jnp.linalg.norm(jnp.mean(y, 0) - checks["check_y"].mean(0))) <= (
      0.15 * pair.dim ** 0.5)


def test_sampler_feeds_fit_and_is_pure():
  pair = w2bench.W2Pair.load(w2bench.path_of(DATA, 2))
  sample = pair.sampler(64)
  x1, y1 = jax.jit(sample)(jax.random.key(3))
  x2, y2 = sample(jax.random.key(3))
  np.testing.assert_allclose(x1, x2, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
  assert x1.shape == y1.shape == (64, 2)


def test_bad_files_are_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="mix3tomix10"):
    w2bench.W2Pair.load(tmp_path / "nope.npz")
  np.savez(tmp_path / "other.npz", format_version=np.array("other-1"))
  with pytest.raises(ValueError, match="format"):
    w2bench.W2Pair.load(tmp_path / "other.npz")
  with pytest.raises(ValueError, match=r"\[D\] or \[n, D\]"):
    w2bench.W2Pair.load(w2bench.path_of(DATA, 2)).transport(jnp.ones((1, 2, 2)))
