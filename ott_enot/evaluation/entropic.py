r"""Entropic plans with known ground truth, and how to score a learned one.

The convention of this module is the cost :math:`c(x, y) = \tfrac12\|x -
y\|^2` (ott's ``costs.PNormP(2)``) and the plan

.. math::

  \pi_\varepsilon = \arg\min_{\pi \in \Pi(\alpha, \beta)}
  \int c \, d\pi + \varepsilon \, \mathrm{KL}(\pi \,\|\, \alpha \otimes \beta)

(the differential-entropy regularisation gives the same plan). ott's
``costs.SqEuclidean`` is :math:`\|x - y\|^2 = 2c`, so its plan at
:math:`\varepsilon` is this module's at :math:`\varepsilon / 2`
(:func:`half_sq_epsilon`).

- **Gaussians** (:func:`gaussian_entropic_plan`, :cite:`janati:20`): for
  :math:`\alpha = \mathcal N(a, A)`, :math:`\beta = \mathcal N(b, B)`,

  .. math::

    D_\varepsilon = (4 A^{1/2} B A^{1/2} + \varepsilon^2 I)^{1/2}, \quad
    C_\varepsilon = \tfrac12 (A^{1/2} D_\varepsilon A^{-1/2} -
    \varepsilon I), \quad
    \pi_\varepsilon = \mathcal N\Big(\begin{bmatrix} a \\ b\end{bmatrix},
    \begin{bmatrix} A & C_\varepsilon \\ C_\varepsilon^\top & B
    \end{bmatrix}\Big),

  so :math:`\pi_\varepsilon(y \mid x) = \mathcal N(b + C_\varepsilon^\top
  A^{-1}(x - a), B - C_\varepsilon^\top A^{-1} C_\varepsilon)` (the
  off-diagonal block of the plan's precision is :math:`-I/\varepsilon`).
- **Mixtures** (:class:`MixturePlan`, the construction of the entropic OT
  benchmark, :cite:`gushchin:23`): :math:`\alpha` a Gaussian mixture and
  :math:`e^{f^\star(y)/\varepsilon} \propto \sum_l p_l \mathcal N(y; \mu_l,
  \Sigma_l)`; then :math:`\pi^\star(y \mid x) \propto e^{(f^\star(y) -
  c(x, y))/\varepsilon}` is the Gaussian mixture

  .. math::

    \pi^\star(y \mid x) = \sum_l w_l(x)\, \mathcal N\big(y;\ P_l
    (\Sigma_l^{-1}\mu_l + x/\varepsilon),\ P_l\big), \qquad
    P_l = (I/\varepsilon + \Sigma_l^{-1})^{-1}, \quad
    w_l(x) \propto p_l\, \mathcal N(x; \mu_l, \Sigma_l + \varepsilon I),

  and :math:`\beta` is its push-forward: the plan is the entropic OT plan
  between :math:`\alpha` and :math:`\beta` by construction.
- **Scores** (as the benchmark defines them): the Bures-Wasserstein
  distance :math:`\mathrm{BW}_2^2` between Gaussian approximations;
  :func:`conditional_bw_uvp`, :math:`100\, \mathbb{E}_x
  \mathrm{BW}_2^2(\hat\pi(\cdot \mid x), \pi^\star(\cdot \mid x)) /
  \mathrm{Var}(\beta)` (%); :func:`joint_bw_uvp`, :math:`100\,
  \mathrm{BW}_2^2(\hat\pi, \pi^\star) / \mathrm{Var}(\pi^\star)` (%).
"""
from typing import NamedTuple, Tuple

import numpy as np
from ott.geometry import costs

__all__ = [
    "half_sq_epsilon",
    "gaussian_entropic_plan",
    "GaussianPlan",
    "MixturePlan",
    "bw2",
    "conditional_bw_uvp",
    "joint_bw_uvp",
]


def half_sq_epsilon(cost_fn: costs.CostFn, epsilon: float) -> float:
  r"""The :math:`\varepsilon` of :math:`c = \tfrac12\|x - y\|^2` that gives
  the same plan as ``epsilon`` with ``cost_fn``: ``epsilon / 2`` for ott's
  ``SqEuclidean`` (:math:`\|x - y\|^2`), ``epsilon`` for ``PNormP(2)``.

  Args:
    cost_fn: ott's ``SqEuclidean()`` or ``PNormP(2)``.
    epsilon: :math:`\varepsilon` in the units of ``cost_fn``.

  Returns:
    :math:`\varepsilon` of :math:`\tfrac12\|x - y\|^2`.

  Raises:
    ValueError: for another cost (no closed form here).
  """
  if isinstance(cost_fn, costs.SqEuclidean):
    return float(epsilon) / 2.0
  if isinstance(cost_fn, costs.PNormP) and float(cost_fn.p) == 2.0:
    return float(epsilon)
  raise ValueError(
      f"The closed-form plans are for the squared Euclidean cost "
      f"(`costs.SqEuclidean()` or `costs.PNormP(2)`), got "
      f"{type(cost_fn).__name__}.")


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


class GaussianPlan(NamedTuple):
  r"""The entropic plan between two Gaussians (:func:`gaussian_entropic_plan`).

  Attributes:
    mean: :math:`[a; b]`, ``[2d]``.
    cov: The plan's covariance ``[2d, 2d]``.
    cond_matrix: :math:`C_\varepsilon^\top A^{-1}`, ``[d, d]``: the
      conditional mean is :math:`b + C_\varepsilon^\top A^{-1}(x - a)`.
    cond_cov: :math:`B - C_\varepsilon^\top A^{-1} C_\varepsilon`,
      ``[d, d]``, the same for every :math:`x`.
  """
  mean: np.ndarray
  cov: np.ndarray
  cond_matrix: np.ndarray
  cond_cov: np.ndarray

  @property
  def dim(self) -> int:
    """:math:`d`."""
    return self.cond_cov.shape[0]

  def conditional_moments(self,
                          x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""Mean ``[n, d]`` and covariance ``[n, d, d]`` of
    :math:`\pi_\varepsilon(\cdot \mid x_i)` for ``x[n, d]``."""
    d = self.dim
    x = np.asarray(x, np.float64)
    means = self.mean[d:] + (x - self.mean[:d]) @ self.cond_matrix.T
    return means, np.broadcast_to(self.cond_cov, (x.shape[0], d, d))

  def target_variance(self) -> float:
    r""":math:`\mathrm{Var}(\beta) = \mathrm{tr}\, B`."""
    return float(np.trace(self.cov[self.dim:, self.dim:]))


def gaussian_entropic_plan(mean_x: np.ndarray, cov_x: np.ndarray,
                           mean_y: np.ndarray, cov_y: np.ndarray,
                           epsilon: float) -> GaussianPlan:
  r"""The entropic OT plan between :math:`\mathcal N(a, A)` and
  :math:`\mathcal N(b, B)` for :math:`c = \tfrac12\|x - y\|^2` and
  :math:`\varepsilon > 0` (module docstring), in float64.

  Args:
    mean_x: :math:`a`, ``[d]``.
    cov_x: :math:`A`, ``[d, d]``, positive definite.
    mean_y: :math:`b`, ``[d]``.
    cov_y: :math:`B`, ``[d, d]``, positive semi-definite.
    epsilon: :math:`\varepsilon` of the half squared distance
      (:func:`half_sq_epsilon` converts ott's ``SqEuclidean``).

  Returns:
    A :class:`GaussianPlan`.
  """
  a, b = np.asarray(mean_x, np.float64), np.asarray(mean_y, np.float64)
  A, B = np.asarray(cov_x, np.float64), np.asarray(cov_y, np.float64)
  d, eps = a.shape[0], float(epsilon)
  root = _sqrtm(A)
  root_inv = np.linalg.inv(root)
  D = _sqrtm(4.0 * root @ B @ root + eps ** 2 * np.eye(d))
  C = 0.5 * (root @ D @ root_inv - eps * np.eye(d))
  cond_matrix = C.T @ np.linalg.inv(A)
  cond_cov = B - cond_matrix @ C
  cov = np.block([[A, C], [C.T, B]])
  return GaussianPlan(np.concatenate([a, b]), cov, cond_matrix,
                      (cond_cov + cond_cov.T) / 2)


def _random_spd(rng: np.random.Generator, d: int, low: float,
                high: float) -> np.ndarray:
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return (q * rng.uniform(low, high, d)) @ q.T


def _log_gauss(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
  d = mean.shape[0]
  chol = np.linalg.cholesky(cov)
  z = np.linalg.solve(chol, (x - mean).T)
  return (-0.5 * np.sum(z ** 2, 0) - np.log(np.diag(chol)).sum()
          - 0.5 * d * np.log(2 * np.pi))


def _by_component(factors: np.ndarray, comp: np.ndarray,
                  z: np.ndarray) -> np.ndarray:
  """``factors[comp[i]] @ z[i]`` per row, one matrix product per component
  (no ``[n, d, d]`` gather)."""
  out = np.empty_like(z)
  for l, factor in enumerate(factors):
    rows = comp == l
    out[rows] = z[rows] @ factor.T
  return out


class MixturePlan:
  r"""A pair of measures whose entropic OT plan is a known Gaussian mixture
  (module docstring), built from a seed.

  Args:
    dim: :math:`d`.
    epsilon: :math:`\varepsilon` of :math:`c = \tfrac12\|x - y\|^2`.
    seed: The seed of the construction.
    source_components: Components of :math:`\alpha` (means
      :math:`\mathcal N(0, 4 I)`, covariances with eigenvalues in
      :math:`[0.1, 0.5]`, equal weights).
    potential_components: Components of :math:`e^{f^\star/\varepsilon}`
      (means :math:`\mathcal N(0, 4 I)`, covariances with eigenvalues in
      :math:`[0.2, 1]`, weights from a Dirichlet(2)).
  """

  def __init__(self, dim: int, epsilon: float, seed: int = 0,
               source_components: int = 3, potential_components: int = 4):
    rng = np.random.default_rng(seed)
    self.dim, self.epsilon = int(dim), float(epsilon)
    k, m = int(source_components), int(potential_components)
    self.source_weights = np.full(k, 1.0 / k)
    self.source_means = 2.0 * rng.normal(size=(k, dim))
    self.source_covs = np.stack([_random_spd(rng, dim, 0.1, 0.5)
                                 for _ in range(k)])
    self.potential_weights = rng.dirichlet(np.full(m, 2.0))
    self.potential_means = 2.0 * rng.normal(size=(m, dim))
    self.potential_covs = np.stack([_random_spd(rng, dim, 0.2, 1.0)
                                    for _ in range(m)])
    eye = np.eye(dim)
    self.plan_covs = np.stack([
        np.linalg.inv(eye / self.epsilon + np.linalg.inv(s))
        for s in self.potential_covs])
    self.plan_biases = np.stack([
        p @ np.linalg.solve(s, mu) for p, s, mu in zip(
            self.plan_covs, self.potential_covs, self.potential_means)])
    self._variance = None

  def log_weights(self, x: np.ndarray) -> np.ndarray:
    r""":math:`\log w_l(x_i)`, ``[n, L]`` (normalised over :math:`l`)."""
    eye = np.eye(self.dim)
    logs = np.stack([
        np.log(p) + _log_gauss(x, mu, s + self.epsilon * eye)
        for p, mu, s in zip(self.potential_weights, self.potential_means,
                            self.potential_covs)], axis=1)
    return logs - np.logaddexp.reduce(logs, axis=1, keepdims=True)

  def component_means(self, x: np.ndarray) -> np.ndarray:
    r"""The components' means of :math:`\pi^\star(\cdot \mid x_i)`,
    ``[n, L, d]``."""
    x = np.asarray(x, np.float64)
    products = np.matmul(x, np.swapaxes(self.plan_covs, 1, 2))  # [L, n, d]
    return self.plan_biases[None] + np.swapaxes(products, 0, 1) / self.epsilon

  def conditional_moments(self,
                          x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""Mean ``[n, d]`` and covariance ``[n, d, d]`` of
    :math:`\pi^\star(\cdot \mid x_i)` (a mixture's: within plus between
    components)."""
    x = np.asarray(x, np.float64)
    w = np.exp(self.log_weights(x))
    locs = self.component_means(x)
    mean = np.einsum("nl,nld->nd", w, locs)
    centred = locs - mean[:, None]
    cov = (np.einsum("nl,lde->nde", w, self.plan_covs)
           + np.einsum("nl,nld,nle->nde", w, centred, centred))
    return mean, cov

  def sample_source(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points of :math:`\\alpha`, ``[n, d]``.

    Args:
      rng: numpy's random generator.
      n: How many points.

    Returns:
      Array ``[n, d]`` (float64).
    """
    comp = rng.choice(len(self.source_weights), n, p=self.source_weights)
    z = rng.normal(size=(n, self.dim))
    return self.source_means[comp] + _by_component(
        np.linalg.cholesky(self.source_covs), comp, z)

  def sample_conditional(self, rng: np.random.Generator,
                         x: np.ndarray) -> np.ndarray:
    r"""One :math:`y_i \sim \pi^\star(\cdot \mid x_i)` per row.

    Args:
      rng: numpy's random generator.
      x: Source points ``[n, d]``.

    Returns:
      Array ``[n, d]`` (float64).
    """
    x = np.asarray(x, np.float64)
    w = np.exp(self.log_weights(x))
    comp = (w.cumsum(1) > rng.uniform(size=(x.shape[0], 1))).argmax(1)
    locs = self.component_means(x)[np.arange(x.shape[0]), comp]
    z = rng.normal(size=x.shape)
    return locs + _by_component(np.linalg.cholesky(self.plan_covs), comp, z)

  def sample_target(self, rng: np.random.Generator, n: int) -> np.ndarray:
    r"""``n`` points of :math:`\beta` (independent sources pushed through
    the plan).

    Args:
      rng: numpy's random generator.
      n: How many points.

    Returns:
      Array ``[n, d]`` (float64).
    """
    return self.sample_conditional(rng, self.sample_source(rng, n))

  def target_variance(self) -> float:
    r""":math:`\mathrm{Var}(\beta)` (the trace of its covariance), from
    200,000 points of a fixed seed (exact for the conditional part):
    :math:`\mathbb E_x \mathrm{tr}\,\mathrm{Cov}(y \mid x) +
    \mathrm{tr}\,\mathrm{Cov}_x \mathbb E(y \mid x)`, with
    :math:`\mathrm{tr}\,\mathrm{Cov}(y \mid x) = \sum_l w_l
    (\mathrm{tr}\,\Sigma_l + \|m_l\|^2) - \|\sum_l w_l m_l\|^2` (traces
    only: no ``[n, d, d]`` array).

    Returns:
      :math:`\mathrm{Var}(\beta)`, computed once and kept.
    """
    if self._variance is None:
      rng = np.random.default_rng(12345)
      within, means = [], []
      for _ in range(20):  # 20 x 10,000 points: [n, L, d] stays small
        x = self.sample_source(rng, 10_000)
        w = np.exp(self.log_weights(x))
        locs = self.component_means(x)
        mean = np.einsum("nl,nld->nd", w, locs)
        within.append(w @ np.trace(self.plan_covs, axis1=1, axis2=2)
                      + np.sum(w * np.sum(locs ** 2, -1), 1)
                      - np.sum(mean ** 2, 1))
        means.append(mean)
      self._variance = float(np.concatenate(within).mean() + np.var(
          np.concatenate(means), axis=0, ddof=1).sum())
    return self._variance

  def sampler(self, batch_size: int, seed: int = 0):
    r"""A host iterator of independent batches ``(x, y)`` of
    :math:`\alpha` and :math:`\beta` (``float32``).

    Args:
      batch_size: Points per batch.
      seed: Seed of numpy's generator.

    Returns:
      An infinite iterator of ``(x[batch_size, d], y[batch_size, d])``.
    """
    rng = np.random.default_rng(seed)
    while True:
      yield (self.sample_source(rng, batch_size).astype(np.float32),
             self.sample_target(rng, batch_size).astype(np.float32))


def bw2(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
        cov_b: np.ndarray) -> np.ndarray:
  r"""The Bures-Wasserstein distance :math:`\|m_a - m_b\|^2 + \mathrm{tr}
  A + \mathrm{tr} B - 2\,\mathrm{tr}(A^{1/2} B A^{1/2})^{1/2}` (the squared
  :math:`W_2` between the Gaussians), batched over leading axes.

  Args:
    mean_a: :math:`m_a`, ``[..., d]``.
    cov_a: :math:`A`, ``[..., d, d]``, positive semi-definite.
    mean_b: :math:`m_b`, ``[..., d]``.
    cov_b: :math:`B`, ``[..., d, d]``, positive semi-definite.

  Returns:
    Array ``[...]`` (float64).
  """
  mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b,
                                                              np.float64)
  cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
  values, vectors = np.linalg.eigh(cov_a)
  root = (vectors * np.sqrt(np.clip(values, 0, None))[..., None, :]
          ) @ np.swapaxes(vectors, -1, -2)
  middle = root @ cov_b @ root
  cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + np.swapaxes(
      middle, -1, -2)) / 2), 0, None)).sum(-1)
  return (np.sum((mean_a - mean_b) ** 2, -1) + np.trace(cov_a, axis1=-2,
          axis2=-1) + np.trace(cov_b, axis1=-2, axis2=-1) - 2 * cross)


def _moments(samples: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  samples = np.asarray(samples, np.float64)
  mean = samples.mean(-2)
  centred = samples - mean[..., None, :]
  return mean, np.einsum("...ki,...kj->...ij", centred, centred) / (
      samples.shape[-2] - 1)


def conditional_bw_uvp(samples: np.ndarray, means: np.ndarray,
                       covs: np.ndarray, target_variance: float) -> float:
  r"""The conditional cB :math:`\mathrm{W}_2^2`-UVP (%):
  :math:`100\,\overline{\mathrm{BW}_2^2(\hat\pi(\cdot \mid x_i),
  \pi^\star(\cdot \mid x_i))} / \mathrm{Var}(\beta)`.

  Args:
    samples: :math:`k` samples of :math:`\hat\pi(\cdot \mid x_i)` per
      :math:`x_i`, ``[n, k, d]`` (``k > 1``).
    means: :math:`\pi^\star(\cdot \mid x_i)`'s means ``[n, d]``.
    covs: Its covariances ``[n, d, d]``.
    target_variance: :math:`\mathrm{Var}(\beta)`.

  Returns:
    The score in %, a Python float (0 for exact moments).
  """
  mean, cov = _moments(samples)
  return float(100.0 * np.mean(bw2(mean, cov, means, covs))
               / float(target_variance))


def joint_bw_uvp(x: np.ndarray, y: np.ndarray, plan_mean: np.ndarray,
                 plan_cov: np.ndarray) -> float:
  r"""The joint :math:`\mathrm{BW}_2^2`-UVP (%) of pairs ``(x[n, d], y[n,
  d])`` drawn from a learned plan against the plan's moments:
  :math:`100\,\mathrm{BW}_2^2(\hat\pi, \pi^\star) /
  \mathrm{tr}\,\mathrm{Cov}(\pi^\star)`.

  Args:
    x: Source points ``[n, d]``.
    y: One draw of the learned plan per ``x[i]``, ``[n, d]``.
    plan_mean: The plan's mean ``[2d]``.
    plan_cov: The plan's covariance ``[2d, 2d]``.

  Returns:
    The score in %, a Python float.
  """
  mean, cov = _moments(np.concatenate([x, y], -1))
  return float(100.0 * bw2(mean, cov, plan_mean, plan_cov)
               / np.trace(plan_cov))
