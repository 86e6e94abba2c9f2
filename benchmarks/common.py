"""What the benchmark scripts share: the commit they ran on, ott's 2-D
mixtures."""
import subprocess

import jax
import numpy as np
from ott import datasets


def commit() -> str:
  """The short hash of the checked-out commit (``unknown`` outside git)."""
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def mixture(name: str, n: int, seed: int) -> np.ndarray:
  """``n`` points of ott's 2-D Gaussian mixture ``name`` (``"square_five"``,
  ``"circle"``, ...), drawn with ``jax.random.key(seed)``: ``[n, 2]``."""
  _, valid, _ = datasets.create_gaussian_mixture_samplers(
      name, name, valid_batch_size=n, rng=jax.random.key(seed)
  )
  return np.asarray(next(valid.source_iter), np.float32)
