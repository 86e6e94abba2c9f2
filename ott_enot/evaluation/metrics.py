r"""Accuracy of learned transport maps, with and without ground truth.

With ground truth (a closed-form map, the W2 benchmark's pairs):
:func:`l2_uv`. Without it (any data): how far the mapped source
:math:`T_\#\hat\alpha` is from held-out target samples, beside how far two
independent target samples are from each other (the *resampling floor*):
:func:`sinkhorn_divergence`, :func:`fit_and_floor`. A map that collapses or
strands mass is many times the floor; a good one is within a few times.
"""
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

__all__ = [
    "l2_uv",
    "sinkhorn_divergence",
    "fit_and_floor",
    "FitReference",
    "fit_reference",
    "fit_at",
    "EPSILON",
]

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


class FitReference(NamedTuple):
  r"""What the fit of any map needs of a target sample alone (computed once
  per run by validation).

  Attributes:
    epsilon: Scalar :math:`\varepsilon` (absolute): :data:`EPSILON` times
      the mean cost between the halves :math:`y_1, y_2` of the target
      sample, the blur of the floor and of every fit (the target's own
      scale, so that fits at different validations, and of different maps,
      are measured at one blur).
    floor: :math:`S_\varepsilon(y_2, y_1)`, the resampling floor.
  """
  epsilon: jnp.ndarray
  floor: jnp.ndarray


def _halves(target: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
  half = target.shape[0] // 2
  return target[:half], target[half:2 * half]


def _divergence(a: jnp.ndarray, b: jnp.ndarray,
                epsilon: jnp.ndarray) -> jnp.ndarray:
  div, _ = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, epsilon=epsilon)
  return div


def fit_reference(target: jnp.ndarray) -> FitReference:
  r"""The blur and the resampling floor of a held-out target sample.

  .. math::

    \varepsilon = 10^{-2} \cdot \overline{\|y_{2,i} - y_{1,j}\|^2},
    \qquad \text{floor} = S_\varepsilon(y_2, y_1)

  with :math:`y_1, y_2` the halves of the sample (three Sinkhorn solves).
  Jittable.

  Args:
    target: Held-out target points ``[m, d]`` (``m >= 2``).

  Returns:
    A :class:`FitReference` of scalars.
  """
  first, second = _halves(target)
  epsilon = pointcloud.PointCloud(
      second, first, epsilon=EPSILON, relative_epsilon="mean").epsilon
  return FitReference(epsilon, _divergence(second, first, epsilon))


def fit_at(mapped: jnp.ndarray, target: jnp.ndarray,
           epsilon: jnp.ndarray) -> jnp.ndarray:
  r"""How well mapped points fit a target sample, at a given blur.

  .. math::

    \text{fit} = S_\varepsilon(T(x)_1, y_1)

  with :math:`y_1` the first half of the target sample and :math:`T(x)_1` as
  many mapped points (three Sinkhorn solves per map). Jittable.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``, or ``[members, n, d]``; ``n`` at
      least half of ``m``.
    target: Held-out target points ``[m, d]``, independent of the ``x_i``.
    epsilon: :math:`\varepsilon`, a :class:`FitReference`'s.

  Returns:
    Scalar, or ``[members]``; in squared units of the coordinates.
  """
  first, _ = _halves(target)
  fit_one = lambda m: _divergence(m[:first.shape[0]], first, epsilon)
  return fit_one(mapped) if mapped.ndim == 2 else jax.vmap(fit_one)(mapped)


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

  (the debiased Sinkhorn divergence, :func:`sinkhorn_divergence`'s, at one
  :math:`\varepsilon`: :data:`EPSILON` times the mean cost between the
  halves, :func:`fit_reference`): the floor is what two independent samples
  of the target of that size score, so ``fit / floor`` near 1 means that
  :math:`T_\#\alpha` cannot be told from :math:`\beta` at this sample
  size. Jitted once per shape.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``, ``x_i`` held out from training; or
      ``[members, n, d]``, the maps of a population's members.
    target: Held-out target points ``[m, d]`` (``m >= 2``), independent of
      the ``x_i``.

  Returns:
    ``(fit, floor)``: scalars, or ``fit`` of shape ``[members]`` and the one
    ``floor``.
  """
  reference = fit_reference(target)
  return fit_at(mapped, target, reference.epsilon), reference.floor
