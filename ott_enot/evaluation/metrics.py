r"""Accuracy of learned transport maps, with and without ground truth.

With ground truth (a closed-form map, the W2 benchmark's pairs):
:func:`l2_uv`. Without it (any data): how far the mapped source
:math:`T_\#\hat\alpha` is from held-out target samples, beside how far two
independent target samples are from each other (the *resampling floor*):
:func:`sinkhorn_divergence`, :func:`fit_and_floor`. A map that collapses or
strands mass is many times the floor; a good one is within a few times.
"""
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

__all__ = ["l2_uv", "sinkhorn_divergence", "fit_and_floor", "EPSILON"]

#: The entropic regularisation of :func:`sinkhorn_divergence`, relative to
#: the mean squared distance of the two point sets.
EPSILON = 1e-2


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


def sinkhorn_divergence(
    a: jnp.ndarray, b: jnp.ndarray, epsilon: float = EPSILON
) -> jnp.ndarray:
  r"""Debiased Sinkhorn divergence between two point clouds (ott's).

  .. math::

    S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b)
    - \tfrac12 \mathrm{OT}_\varepsilon(a, a)
    - \tfrac12 \mathrm{OT}_\varepsilon(b, b),

  uniform weights, squared Euclidean cost :math:`\|u - v\|^2` on the
  coordinates, :math:`\varepsilon` = ``epsilon`` times the mean cost of each
  pair of clouds (a scale-free blur, converged by ott's defaults; an
  absolute :math:`\varepsilon = 10^{-2}` on data of scale 5 does not
  converge in 2,000 iterations, and its value then depends on the cap).
  Jittable.

  Args:
    a: Points ``[n, d]``.
    b: Points ``[m, d]``.
    epsilon: Relative entropic regularisation.

  Returns:
    Scalar, in squared units of the coordinates; 0 iff the clouds coincide.
  """
  div, _ = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, epsilon=epsilon, relative_epsilon="mean"
  )
  return div


@jax.jit
def fit_and_floor(
    mapped: jnp.ndarray, target: jnp.ndarray
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  r"""How well mapped points fit a target sample, beside the resampling floor.

  The target sample is split in halves :math:`y_1, y_2`; with the first half
  of the mapped points :math:`T(x)_1`,

  .. math::

    \text{fit} = S_\varepsilon(T(x)_1, y_1), \qquad
    \text{floor} = S_\varepsilon(y_2, y_1)

  (:func:`sinkhorn_divergence`): the floor is what two independent samples
  of the target of that size score, so ``fit / floor`` near 1 means that
  :math:`T_\#\alpha` cannot be told from :math:`\beta` at this sample size.
  Jitted once per shape.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``, ``x_i`` held out from training; or
      ``[members, n, d]``, the maps of a population's members.
    target: Held-out target points ``[m, d]`` (``m >= 2``), independent of
      the ``x_i``.

  Returns:
    ``(fit, floor)``: scalars, or ``fit`` of shape ``[members]`` and the one
    ``floor``.
  """
  half = target.shape[0] // 2
  first, second = target[:half], target[half:2 * half]
  fit_one = lambda m: sinkhorn_divergence(m[:half], first)
  fit = fit_one(mapped) if mapped.ndim == 2 else jax.vmap(fit_one)(mapped)
  floor = sinkhorn_divergence(second, first)
  return fit, floor
