"""Shared fixtures: small Gaussian pairs with a known Monge map."""
import os
import tempfile
from typing import Iterator

# Test programs are tiny and run a few steps: their time is XLA's compile, not
# their execution. LLVM's cheaper pipeline cuts the suite's CPU time (on
# tests/test_solver.py: 92 -> 78 s user, same results); the code under test is
# the same. Set before JAX starts, and inherited by the tests' child processes
# (the mesh child, the multi-process pair, the tutorial's kernel).
os.environ["XLA_FLAGS"] = " ".join(filter(None, (
    os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true")))

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np
import jax.numpy as jnp
import matplotlib
import pytest
from hypothesis import settings

from ott.tools.gaussian_mixture import gaussian

matplotlib.use("Agg")

# Many tests build fresh solvers whose programs are identical; a persistent
# compilation cache (one per test session) compiles each program once.
# The directory is made once by the pytest process that starts the session and
# inherited by pytest-xdist's workers, so that they share it.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.setdefault(
        "OTT_ENOT_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="jaxcc-")
    ),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Validation batches the package draws itself hold 2,048 points (enough to
# choose the returned map by); the suite's tiny runs validate on 256 (as
# many as the tests' batches held before: the fit's Sinkhorn solves at
# 1,024-point halves dominate a test at XLA's cheap optimisation level).
# Tests of the choice itself restore the default (`valid_points_default`).
from ott_enot.data import sampling as _sampling  # noqa: E402

VALID_POINTS_DEFAULT = _sampling.VALID_POINTS
_sampling.VALID_POINTS = 256


@pytest.fixture(scope="module")
def valid_points_default():
  """The package's own validation size (2,048), for a module's tests of the
  choice (or whose processes compare with the package's defaults)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(_sampling, "VALID_POINTS", VALID_POINTS_DEFAULT)
    yield

# The longest modules first (measured, longest processing time first):
# pytest-xdist (`--dist loadscope`) hands modules to free workers in
# collection order, so a long module collected last would run alone at the
# end while the other worker idles.
_LONGEST_FIRST = (
    "test_cost_properties.py", "test_enot_costs.py", "test_multiprocess.py",
    "test_tutorial.py",
    "test_dropin.py", "test_training.py", "test_checkpoints.py",
    "test_solver.py", "test_sharding.py", "test_population.py",
    "test_conditional.py", "test_methods.py", "test_data.py",
)


def pytest_xdist_auto_num_workers(config):
  """``-n auto``: one worker more than the cores. Several tests wait on
  processes of their own (the tutorial's kernel, the mesh child, the pair of
  test_multiprocess, the SIGKILLed run of test_checkpoints); the extra
  worker fills those waits (2 cores: 637 s with 3 workers against 691 s
  with 2, measured)."""
  del config
  return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items):
  """Order modules longest first (stable: tests keep their order within)."""
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Hypothesis profiles: `ci` (default, fast, derandomised so that every CI run
# checks the same examples) and `dev` (many random examples). Select with
# HYPOTHESIS_PROFILE=dev.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def sampler(g: gaussian.Gaussian, seed: int, batch: int) -> Iterator[jax.Array]:
  """Infinite iterator of batches from a Gaussian (deterministic)."""
  key = jax.random.key(seed)
  draw = jax.jit(lambda k: g.sample(k, batch))
  i = 0
  while True:
    i += 1
    yield draw(jax.random.fold_in(key, i))


class GaussianPair:
  """Source and target Gaussians in dimension ``dim`` and their Monge map."""

  def __init__(self, dim: int, seed: int = 0):
    self.dim = dim
    self.source = gaussian.Gaussian.from_random(
        jax.random.key(seed), dim, stdev_mean=1.0, stdev_cov=0.5
    )
    self.target = gaussian.Gaussian.from_random(
        jax.random.key(seed + 1), dim, stdev_mean=1.0, stdev_cov=0.5
    )
    self.x_test = self.source.sample(jax.random.key(seed + 99), 4096)
    self.y_test = self.target.sample(jax.random.key(seed + 98), 4096)

  def monge(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.source.transport(self.target, x)

  def monge_inverse(self, y: jnp.ndarray) -> jnp.ndarray:
    return self.target.transport(self.source, y)

  def loaders(self, batch: int = 256, seed: int = 3):
    return (
        sampler(self.source, seed, batch),
        sampler(self.target, seed + 1, batch),
        sampler(self.source, seed + 2, batch),
        sampler(self.target, seed + 3, batch),
    )


@pytest.fixture(scope="session")
def pair2() -> GaussianPair:
  return GaussianPair(2)


def moons(n: int, seed: int) -> np.ndarray:
  """Two interleaved half circles in R^2 with a little noise."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(0, np.pi, n)
  upper = rng.random(n) < 0.5
  x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
  y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
  pts = np.stack([x - 0.5, y - 0.25], -1) * 2.0
  return (pts + 0.05 * rng.normal(size=(n, 2))).astype(np.float32)


def s_curve(n: int, seed: int) -> np.ndarray:
  """A 2D "S" curve with a little noise."""
  rng = np.random.default_rng(seed)
  t = rng.uniform(-1.5 * np.pi, 1.5 * np.pi, n)
  pts = np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1.0)], -1) * 1.2
  return (pts + 0.05 * rng.normal(size=(n, 2))).astype(np.float32)


def sphere_cap(n: int, seed: int, mean, spread: float = 0.3) -> np.ndarray:
  """Points on S^2 around the unit vector `mean` (normalised Gaussian)."""
  rng = np.random.default_rng(seed)
  mean = np.asarray(mean, np.float64) / np.linalg.norm(mean)
  pts = mean + spread * rng.normal(size=(n, 3))
  return (pts / np.linalg.norm(pts, axis=-1, keepdims=True)).astype(np.float32)


def batches(draw, batch: int, seed: int) -> Iterator[np.ndarray]:
  """Infinite iterator of `draw(batch, seed_i)` with fresh seeds."""
  i = 0
  while True:
    i += 1
    yield draw(batch, seed * 100_003 + i)


def kept_validation(scores, tolerance: float) -> np.ndarray:
  """The validation whose parameters training returns
  (:class:`ott_enot.training.loop.Best`): the latest within ``tolerance``
  (relative) of the lowest score until then; ``scores`` is ``[validations]``
  or ``[validations, members]``."""
  scores = np.asarray(scores, np.float64)
  kept = np.zeros(scores.shape[1:], int)
  lowest = np.full(scores.shape[1:], np.inf)
  for i, s in enumerate(scores):
    lowest = np.minimum(lowest, s)
    kept = np.where(s <= lowest + tolerance * np.abs(lowest), i, kept)
  return kept
