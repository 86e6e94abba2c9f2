"""Accuracy metrics for learned transport maps."""
from typing import Optional

import jax.numpy as jnp

__all__ = ["l2_uv"]


def l2_uv(
    mapped: jnp.ndarray,
    true_mapped: jnp.ndarray,
    target_variance: Optional[float] = None,
) -> jnp.ndarray:
  r"""Unexplained variance of a map in per cent (Korotin et al., 2021).

  .. math::

    \mathcal{L}^2\text{-UV}(\hat T) = 100 \cdot
    \frac{\mathbb{E}_{x \sim \alpha} \|\hat T(x) - T^\star(x)\|^2}
         {\operatorname{tr}\operatorname{Cov}(\beta)}

  Args:
    mapped: :math:`\hat T(x_i)`, array ``[n, d]``.
    true_mapped: :math:`T^\star(x_i)`, array ``[n, d]``.
    target_variance: :math:`\operatorname{tr}\operatorname{Cov}(\beta)`;
      :obj:`None` estimates it from ``true_mapped`` (samples of
      :math:`\beta = T^\star_\# \alpha`).

  Returns:
    Scalar; 0 for the true map, 100 for the constant map at the mean.
  """
  mapped, true_mapped = jnp.asarray(mapped), jnp.asarray(true_mapped)
  if mapped.shape != true_mapped.shape or mapped.ndim != 2:
    raise ValueError(
        f"`mapped` and `true_mapped` must both have shape [n, d], got "
        f"{mapped.shape} and {true_mapped.shape}."
    )
  if target_variance is None:
    target_variance = jnp.sum(jnp.var(true_mapped, axis=0))
  err = jnp.mean(jnp.sum((mapped - true_mapped) ** 2, axis=-1))
  return 100.0 * err / target_variance
