"""Shared fixtures: small Gaussian pairs with a known Monge map."""
import os
import tempfile
from typing import Iterator

# Test programs are tiny and run a few steps: their time is XLA's compile, not
# their execution (tests/test_training.py: 390 programs, 85 of its 120 s).
# XLA:CPU's cheaper pipeline cuts the suite's CPU time; the code under test
# is the same: LLVM without its expensive passes at optimisation level 0
# (tests/test_solver.py: 92 -> 78 s user), the elemental emitters instead of
# the MLIR fusion emitters, and each module compiled as one LLVM module rather
# than split for parallel codegen on cores the other workers use
# (tests/test_population.py 72 -> 41 s, tests/test_training.py 165 -> 95 s
# user; 2-core CPU). Set before JAX starts, and inherited by the tests' child
# processes (the mesh child, the multi-process pair, the SIGKILLed run, the
# tutorial's kernel). Tests whose time is execution use `optimised`.
os.environ["XLA_FLAGS"] = " ".join(filter(None, (
    os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1")))

# Many tests build fresh solvers whose programs are identical; a persistent
# compilation cache (one per test session) compiles each program once. Set
# as JAX's environment variables before JAX starts, so that every process of
# the session shares it: pytest-xdist's workers (the directory is made once,
# by the process that starts the session) and the tests' children (the mesh
# child, the multi-process pair, the SIGKILLed run and its resumer, the
# tutorial's kernel), which compile the programs of this process.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      tempfile.mkdtemp(prefix="jaxcc-"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402  (after XLA_FLAGS and the cache's variables)
import numpy as np  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from ott.tools.gaussian_mixture import gaussian  # noqa: E402

matplotlib.use("Agg")

# Validation batches the package draws itself hold 2,048 points (enough to
# choose the returned map by); the suite's tiny runs validate on 256 (the
# fit's Sinkhorn solves on 1,024-point halves would dominate a test at XLA's
# cheap optimisation level). Tests of the choice itself and of the "best"
# checkpoint validate on the fewest points that choose
# (`selection_valid_points`). The size travels to the tests' children in
# the environment (`suite_child.py` reads it).
from ott_enot.data import sampling as _sampling  # noqa: E402
from ott_enot.methods import enot as _enot  # noqa: E402

from suite_child import VALID_POINTS_ENV  # noqa: E402

SUITE_VALID_POINTS = 256
_sampling.VALID_POINTS = SUITE_VALID_POINTS
os.environ[VALID_POINTS_ENV] = str(SUITE_VALID_POINTS)


#: XLA's full pipeline, for the few test computations whose time is their
#: execution, not their compile: Sinkhorn solves on 1,000s of points (the
#: references and fits that judge a trained map), 3x faster than at the
#: suite's cheap pipeline (1,024 points, 1,540 iterations: 12.2 -> 3.9 s).
OPTIMISED = {"xla_backend_optimization_level": 3,
             "xla_llvm_disable_expensive_passes": False,
             "xla_cpu_use_fusion_emitters": True}


def optimised(fun=None, **jit_kwargs):
  """``jax.jit`` with XLA's full pipeline (:data:`OPTIMISED`); a decorator
  too."""
  if fun is None:
    return lambda f: optimised(f, **jit_kwargs)
  return jax.jit(fun, compiler_options=OPTIMISED, **jit_kwargs)


def child_env(**overrides: str) -> dict:
  """The environment of a test's child process: this one's (XLA's flags,
  the compilation cache, the validation size) with the tests' folder on the
  path (``import suite_child``), and ``overrides``."""
  here = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, **overrides)
  env["PYTHONPATH"] = os.pathsep.join(
      [here] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  return env


@pytest.fixture(scope="module")
def selection_valid_points():
  """Validation batches of the fewest points that choose the returned map
  (``methods.enot.SELECTION_POINTS``, 1,024), for a module's tests of the
  choice and of the "best" checkpoint, in this process and its children."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(_sampling, "VALID_POINTS", _enot.SELECTION_POINTS)
    patch.setenv(VALID_POINTS_ENV, str(_enot.SELECTION_POINTS))
    yield _enot.SELECTION_POINTS


# The longest modules first (measured, longest processing time first):
# pytest-xdist (`--dist loadscope --no-loadscope-reorder`, pyproject.toml)
# hands modules to free workers in collection order, so a long module
# collected last would run alone at the end while the other worker idles
# (xdist's default order, by number of tests, started the tutorial's one
# long test 12 minutes into a 15-minute run).
_LONGEST_FIRST = (
    "test_tutorial.py", "test_enot_costs.py", "test_sharding.py",
    "test_cost_properties.py", "test_dropin.py", "test_multiprocess.py",
    "test_checkpoints.py", "test_training.py", "test_networks.py",
    "test_solver.py", "test_entropic.py", "test_docs.py",
    "test_data.py", "test_conditional.py", "test_selection.py",
    "test_metrics.py", "test_programs.py", "test_population.py",
    "test_demo.py", "test_w2bench.py",
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
