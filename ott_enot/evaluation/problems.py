r"""Problems whose structure is known: clusters with their labels and
centres, in :math:`R^d` and on the sphere, and the defects a criterion of
fit must see.

- :func:`mixture`: ott's 2-D Gaussian mixtures (``"square_five"``,
  ``"square_four"``, ``"circle"``, ``"simple"``: the centres, scale and
  spread of :class:`ott.datasets.GaussianMixture`), with each point's
  cluster.
- :func:`caps`: caps on the unit sphere :math:`S^{d-1}` (points
  :math:`\exp_{m_k}(v)`, :math:`v` a tangent Gaussian of standard deviation
  ``spread`` radians around the cap's centre :math:`m_k`).
- :func:`defects`: a fresh sample of such a problem made wrong in the ways a
  reader of a plot sees (noise, strays between clusters, mass moved to
  another cluster, clusters contracted or widened): the controls of
  :mod:`ott_enot.evaluation.metrics`.
"""
from typing import Any, Dict, NamedTuple, Optional, Sequence

import jax
import numpy as np
from ott import datasets

from ott_enot.costs import sphere

__all__ = ["Clusters", "mixture", "mixture_centers", "caps", "unit_vector",
           "defects"]


class Clusters(NamedTuple):
  """A sample of a measure in clusters.

  Attributes:
    points: ``[n, d]``.
    labels: ``[n]`` ints, each point's cluster.
    centers: ``[K, d]``, the clusters' centres.
    spread: Each cluster's standard deviation per coordinate (in :math:`R^d`)
      or per tangent direction in radians (on the sphere).
    domain: ``"euclidean"`` or ``"sphere"``.
  """
  points: np.ndarray
  labels: np.ndarray
  centers: np.ndarray
  spread: float
  domain: str


def _ott_mixture(name: str) -> Any:
  return datasets.GaussianMixture(name, batch_size=1, rng=jax.random.key(0))


def mixture_centers(name: str) -> np.ndarray:
  """The centres ``[K, 2]`` of ott's 2-D Gaussian mixture ``name``
  (``scale * centers`` of :class:`ott.datasets.GaussianMixture`)."""
  ott_mixture = _ott_mixture(name)
  return ott_mixture.scale * np.asarray(ott_mixture.centers, np.float64)


def mixture(name: str, n: int, seed: int = 0) -> Clusters:
  r"""``n`` points of ott's 2-D Gaussian mixture ``name``, with labels.

  The same measure as :func:`ott.datasets.create_gaussian_mixture_samplers`
  (centres ``scale * centers``, each cluster :math:`N(m_k, s^2 I)` with
  ott's :math:`s = \text{std}^2`, equal weights), drawn with numpy's
  generator of ``seed``.

  Args:
    name: ``"simple"``, ``"circle"``, ``"square_five"`` or ``"square_four"``.
    n: Number of points.
    seed: Seed of the draw.

  Returns:
    :class:`Clusters`.
  """
  centers = mixture_centers(name)
  spread = float(_ott_mixture(name).std ** 2)  # what ott's sampler multiplies by
  rng = np.random.default_rng(seed)
  labels = rng.integers(len(centers), size=n)
  points = centers[labels] + spread * rng.standard_normal((n, 2))
  return Clusters(points.astype(np.float32), labels, centers, spread,
                  "euclidean")


def unit_vector(latitude: float, longitude: float) -> np.ndarray:
  """The point of :math:`S^2` at a latitude and longitude in degrees,
  ``[3]``."""
  lat, lon = np.radians(latitude), np.radians(longitude)
  return np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                   np.sin(lat)])


def _on_sphere(base: np.ndarray, tangent: np.ndarray) -> np.ndarray:
  return np.asarray(jax.vmap(sphere.exp_map)(base, tangent), np.float64)


def caps(centers: Sequence[np.ndarray], n: int, spread: float = 0.2,
         seed: int = 0, weights: Optional[Sequence[float]] = None) -> Clusters:
  r"""``n`` points in caps around ``centers`` on the unit sphere, with
  labels.

  Point :math:`i` of cap :math:`k` is :math:`\exp_{m_k}(v_i)`, :math:`v_i` a
  Gaussian of standard deviation ``spread`` (radians) in each direction
  of the tangent space at :math:`m_k`.

  Args:
    centers: ``K`` unit vectors ``[d]`` (:func:`unit_vector` on
      :math:`S^2`).
    n: Number of points.
    spread: The caps' angular standard deviation in radians.
    seed: Seed of the draw.
    weights: The caps' masses (default equal).

  Returns:
    :class:`Clusters` with ``domain="sphere"``.
  """
  centers = np.asarray(centers, np.float64)
  centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
  rng = np.random.default_rng(seed)
  labels = rng.choice(len(centers), size=n, p=weights)
  base = centers[labels]
  points = _on_sphere(base, spread * rng.standard_normal(base.shape))
  return Clusters(points.astype(np.float32), labels, centers, float(spread),
                  "sphere")


def _displace(clusters: Clusters, rows: np.ndarray,
              new_base: np.ndarray, keep_offset: bool,
              rng: np.random.Generator) -> np.ndarray:
  """The points ``rows`` moved to ``new_base`` (plus their offset from
  their own centre, or fresh cluster noise)."""
  pts, spread = clusters.points.astype(np.float64), clusters.spread
  own = clusters.centers[clusters.labels[rows]]
  if clusters.domain == "sphere":
    offset = (np.asarray(jax.vmap(sphere.log_map)(own, pts[rows]))
              if keep_offset else spread * rng.standard_normal(own.shape))
    # parallel transport is not needed for a control: project the offset
    return _on_sphere(new_base, offset)
  offset = pts[rows] - own if keep_offset else (
      spread * rng.standard_normal(own.shape))
  return new_base + offset


def _toward_centers(clusters: Clusters, factor: float) -> np.ndarray:
  """Every point's offset from its centre scaled by ``factor``."""
  pts = clusters.points.astype(np.float64)
  own = clusters.centers[clusters.labels]
  if clusters.domain == "sphere":
    return _on_sphere(own, factor * np.asarray(
        jax.vmap(sphere.log_map)(own, pts)))
  return own + factor * (pts - own)


def _midpoints(clusters: Clusters, rows: np.ndarray) -> np.ndarray:
  """Halfway between each row's centre and the nearest other centre."""
  own_label = clusters.labels[rows]
  centers = clusters.centers
  dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
  np.fill_diagonal(dist, np.inf)
  middle = 0.5 * (centers[own_label] + centers[dist[own_label].argmin(1)])
  if clusters.domain == "sphere":
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
  return middle


def defects(clusters: Clusters, fraction: float = 0.05, noise: float = 0.5,
            contraction: float = 0.8, widening: float = 1.25,
            seed: int = 0) -> Dict[str, np.ndarray]:
  """A fresh sample made wrong in the ways a reader of a plot sees.

  Args:
    clusters: A fresh sample of the target (:func:`mixture`, :func:`caps`).
    fraction: The share of points moved in the two "moved" defects.
    noise: The added noise's standard deviation, in clusters' spreads.
    contraction: The factor of the contracted clusters' offsets.
    widening: The factor of the widened clusters' offsets.
    seed: Seed of the defects' randomness.

  Returns:
    ``{name: points [n, d]}``: ``"fresh"`` (the sample itself), ``"noise"``
    (every point plus noise of ``noise`` spreads), ``"between"`` (a
    ``fraction`` of the points moved halfway to the nearest other cluster,
    with a cluster's spread around that point: strays), ``"transfer"`` (a
    ``fraction`` of all points moved from cluster 0 to cluster 1, keeping
    their offsets: clusters of the wrong mass), ``"contracted"`` and
    ``"widened"`` (every cluster scaled about its centre).
  """
  rng = np.random.default_rng(seed)
  pts = clusters.points.astype(np.float64)
  n = len(pts)
  count = max(1, int(round(fraction * n)))
  out = {"fresh": pts.copy()}
  if clusters.domain == "sphere":
    out["noise"] = _on_sphere(pts, noise * clusters.spread *
                              rng.standard_normal(pts.shape))
  else:
    out["noise"] = pts + noise * clusters.spread * rng.standard_normal(
        pts.shape)
  rows = rng.choice(n, count, replace=False)
  between = pts.copy()
  between[rows] = _displace(clusters, rows, _midpoints(clusters, rows),
                            False, rng)
  out["between"] = between
  first = np.flatnonzero(clusters.labels == 0)
  rows = rng.choice(first, min(count, len(first)), replace=False)
  transfer = pts.copy()
  transfer[rows] = _displace(
      clusters, rows, np.repeat(clusters.centers[1:2], len(rows), 0), True,
      rng)
  out["transfer"] = transfer
  out["contracted"] = _toward_centers(clusters, contraction)
  out["widened"] = _toward_centers(clusters, widening)
  return {k: v.astype(np.float32) for k, v in out.items()}
