"""Shared fixtures: small Gaussian pairs with a known Monge map."""
from typing import Iterator

import jax
import jax.numpy as jnp
import matplotlib
import pytest

from ott.tools.gaussian_mixture import gaussian

matplotlib.use("Agg")


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
