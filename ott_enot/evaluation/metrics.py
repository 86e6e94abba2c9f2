r"""Accuracy of learned transport maps, with and without ground truth.

With ground truth (a closed-form map, the W2 benchmark's pairs):
:func:`l2_uv`. Without it (any data): how far the mapped source
:math:`T_\#\hat\alpha` is from held-out target samples, beside how far two
independent target samples are from each other (the *resampling floor*).

Three numbers, each beside what a fresh target sample scores:

- the **fit** (:func:`local_divergence`, the criterion: validation logs,
  the population's choice, :func:`fit_and_floor`): a Sinkhorn divergence at
  the resolution of the data. Its blur is the target sample's own local
  scale (the distance to the :data:`NEIGHBOURS`-th nearest target point) and
  its marginals are relaxed beyond a *reach* of a few blurs
  (:cite:`sejourne:19`), so it compares the measures region by region:
  points between clusters, clusters too wide or too narrow. A balanced
  divergence at any blur cannot: on a mixture it is dominated by the
  sampling noise of the clusters' masses (moving a few points between
  clusters 5 apart costs more than any change of shape), so a map that
  strands 9 % of its points scores like a fresh sample.
- the **coarse fit** (:func:`sinkhorn_divergence`): the balanced divergence
  at :data:`EPSILON` times the mean cost (the criterion of ott-enot 0.1;
  blurs wider than a cluster), kept beside the fit.
- **strays** (:func:`stray_fraction`): the share of mapped points outside
  the target's :math:`1 - ` :data:`STRAY_LEVEL` highest-density region (a
  fresh sample: :data:`STRAY_LEVEL` in expectation).

For data in clusters whose centres are known (or found by k-means),
:func:`cluster_report` gives what a reader of the plot sees: strays, each
cluster's spread and mass beside the target's.
"""
import functools
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ott.geometry import costs, pointcloud
from ott.tools import k_means as ott_k_means
from ott.tools import sinkhorn_divergence as ott_divergence

__all__ = [
    "l2_uv",
    "exact_ot_cost",
    "sinkhorn_divergence",
    "local_blur",
    "local_divergence",
    "neighbour_radius",
    "neighbours_for",
    "stray_fraction",
    "FitReference",
    "fit_reference",
    "Fit",
    "fit_at",
    "validation_fit",
    "fit_and_floor",
    "FitReport",
    "fit_report",
    "ClusterReport",
    "cluster_report",
    "EPSILON",
    "NEIGHBOURS",
    "REACH",
    "STRAY_LEVEL",
    "FLOOR_SPLITS",
    "REFERENCE_KEYS",
]

#: The entropic regularisation of the *coarse* fit (:func:`sinkhorn_divergence`),
#: relative to the mean squared distance of the two point sets.
EPSILON = 1e-2
#: The fit's blur :math:`\varepsilon` is the median squared distance from a
#: target point to its ``NEIGHBOURS``-th nearest other target point
#: (:func:`local_blur`).
NEIGHBOURS = 10
#: The fit's reach in units of the blur, ρ = REACH · ε (a reach of
#: √30 ≈ 5.5 blurs in distance).
REACH = 30.0
#: The share of a fresh target sample counted as strays (a mapped point is a
#: stray where the target is sparser than at all but this share of its own
#: points; :func:`stray_fraction`).
STRAY_LEVEL = 0.01
#: The resampling floors are means over this many splits of the target
#: sample in halves (:func:`fit_reference`).
FLOOR_SPLITS = 4
#: Validation metrics that depend on the target sample alone (one value
#: for all members of a population).
REFERENCE_KEYS = ("floor",)


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


def exact_ot_cost(
    x: jnp.ndarray,
    y: jnp.ndarray,
    cost_fn: Optional[costs.CostFn] = None,
) -> float:
  r"""The optimal transport cost between two samples of equal size, exactly.

  .. math::

    \mathrm{OT}(\hat\alpha_n, \hat\beta_n) = \min_{\sigma \in S_n}
    \frac1n \sum_{i=1}^n c(x_i, y_{\sigma(i)}),

  between the uniform empirical measures of ``x`` and ``y`` (with equal
  weights an optimal plan is a permutation, Birkhoff): the assignment
  problem on the ``[n, n]`` cost matrix, solved in float64 by
  :func:`scipy.optimize.linear_sum_assignment` (:math:`O(n^3)`; about 1 s
  at :math:`n = 1024` on one core). No entropic bias and no iterations to
  converge: the reference for a dual estimate or :math:`\mathbb{E}\,c(x,
  T(x))` on the same points (ott's Sinkhorn at a small :math:`\varepsilon`
  comes close, biased by :math:`\varepsilon` times the plan's entropy and
  after thousands of iterations). Mind the sampling bias of any empirical
  cost: it overestimates the cost between the measures themselves.

  Args:
    x: Source points ``[n, d]``.
    y: Target points ``[n, d]``.
    cost_fn: An ott :class:`~ott.geometry.costs.CostFn`; :obj:`None` is
      ott's :class:`~ott.geometry.costs.SqEuclidean`, :math:`\|x - y\|^2`.

  Returns:
    The mean cost of an optimal assignment, a Python float.

  Raises:
    ValueError: If ``x`` and ``y`` are not both ``[n, d]`` with the same
      ``n`` and ``d``.
  """
  from scipy import optimize  # scipy comes with jax

  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.ndim != 2 or x.shape != y.shape:
    raise ValueError(
        f"`x` and `y` must both have shape [n, d] with the same n and d "
        f"(the assignment problem pairs them one to one), got {x.shape} and "
        f"{y.shape}; subsample the larger one."
    )
  cost_fn = costs.SqEuclidean() if cost_fn is None else cost_fn
  matrix = np.asarray(_all_pairs(x, y, cost_fn), np.float64)
  rows, cols = optimize.linear_sum_assignment(matrix)
  return float(matrix[rows, cols].mean())


@jax.jit
def _all_pairs(x: jnp.ndarray, y: jnp.ndarray,
               cost_fn: costs.CostFn) -> jnp.ndarray:
  return cost_fn.all_pairs(x, y)  # the cost a pytree: one program per type


def sinkhorn_divergence(
    a: jnp.ndarray, b: jnp.ndarray, epsilon: float = EPSILON
) -> jnp.ndarray:
  r"""Debiased Sinkhorn divergence between two point clouds (ott's), at a
  blur relative to their mean cost: the *coarse* fit.

  .. math::

    S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b)
    - \tfrac12 \mathrm{OT}_\varepsilon(a, a)
    - \tfrac12 \mathrm{OT}_\varepsilon(b, b),

  uniform weights, squared Euclidean cost :math:`\|u - v\|^2` on the
  coordinates, :math:`\varepsilon` = ``epsilon`` times the mean cost of each
  pair of clouds (a scale-free blur, converged by ott's defaults). On data in
  clusters this blurs wider than a cluster (the mean cost is set by the
  distances between clusters) and the balanced transport of the clusters'
  sampling noise dominates it: :func:`local_divergence` compares shapes.
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


def _squared_distances(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  return pointcloud.PointCloud(a, b).cost_matrix


def neighbour_radius(points: jnp.ndarray, reference: jnp.ndarray,
                     neighbours: int = NEIGHBOURS,
                     exclude_self: bool = False) -> jnp.ndarray:
  r"""Distance from each point to its ``neighbours``-th nearest reference
  point, :math:`r_k(p) = \|p - r_{(k)}(p)\|` (an inverse density:
  :math:`r_k(p)^d \propto k / (m\, \hat\beta(p))`). Jittable.

  Args:
    points: ``[n, d]``.
    reference: ``[m, d]``, ``m >= neighbours`` (``+ 1`` with
      ``exclude_self``).
    neighbours: :math:`k`.
    exclude_self: ``points`` are ``reference``: skip each point's own zero
      distance (the leave-one-out radius).

  Returns:
    ``[n]`` distances.
  """
  skip = int(exclude_self)
  neg, _ = jax.lax.top_k(-_squared_distances(points, reference),
                         neighbours + skip)
  return jnp.sqrt(jnp.maximum(-neg[:, -1], 0.0))


def local_blur(target: jnp.ndarray,
               neighbours: int = NEIGHBOURS) -> jnp.ndarray:
  r"""The target's local scale, as an entropic regularisation:

  .. math::

    \varepsilon = \operatorname{median}_i\, r_k(y_i)^2

  with :math:`r_k(y_i)` the distance from :math:`y_i` to its :math:`k`-th
  nearest other point of the sample (:func:`neighbour_radius`): a blur
  :math:`\sqrt\varepsilon` finer than a cluster, shrinking as the sample
  resolves more detail, and a function of this sample alone (so the floor
  and the fits it blurs are scored alike). Jittable.

  Args:
    target: Target points ``[m, d]``, ``m > neighbours``.
    neighbours: :math:`k`.

  Returns:
    Scalar :math:`\varepsilon`, in squared units of the coordinates.
  """
  radius = neighbour_radius(target, target, neighbours, exclude_self=True)
  return jnp.median(radius ** 2)


@functools.partial(jax.jit, static_argnames=("reach",))
def local_divergence(a: jnp.ndarray, b: jnp.ndarray, epsilon: jnp.ndarray,
                     reach: float = REACH) -> jnp.ndarray:
  r"""Unbalanced, debiased Sinkhorn divergence at a local blur and reach
  (:cite:`sejourne:19`; the *blur* and *reach* of GeomLoss): the fit.

  .. math::

    S_{\varepsilon, \rho}(a, b) = \mathrm{OT}_{\varepsilon,\rho}(a, b)
    - \tfrac12 \mathrm{OT}_{\varepsilon,\rho}(a, a)
    - \tfrac12 \mathrm{OT}_{\varepsilon,\rho}(b, b),

  where :math:`\mathrm{OT}_{\varepsilon,\rho}` transports with cost
  :math:`\|u - v\|^2`, entropy :math:`\varepsilon` and marginals relaxed by
  :math:`\rho\,\mathrm{KL}` (ott's ``tau_a = tau_b = rho / (rho +
  epsilon)``), :math:`\rho` = ``reach`` :math:`\cdot\, \varepsilon`: mass
  farther than a few blurs from the other measure is not carried across the
  space but counted as missing, so the divergence sums local differences
  (shape, spread, strays) instead of being dominated by the balanced
  transport of the clusters' sampling noise. Local problems converge in a
  few hundred Sinkhorn iterations without :math:`\varepsilon`-annealing
  (annealing an unbalanced problem stops ott's Sinkhorn before it
  converges). Uniform weights. Jitted.

  Args:
    a: Points ``[n, d]``.
    b: Points ``[m, d]``.
    epsilon: :math:`\varepsilon`, absolute (:func:`local_blur`).
    reach: :math:`\rho / \varepsilon` (static).

  Returns:
    Scalar, in squared units of the coordinates.
  """
  tau = reach / (reach + 1.0)
  div, _ = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, epsilon=epsilon,
      solve_kwargs={"tau_a": tau, "tau_b": tau, "max_iterations": 5000})
  return div


def stray_fraction(mapped: jnp.ndarray, target: jnp.ndarray,
                   radius: jnp.ndarray,
                   neighbours: int = NEIGHBOURS) -> jnp.ndarray:
  r"""The share of mapped points where the target is sparse:

  .. math::

    \text{strays} = \tfrac1n \textstyle\sum_i
    \mathbb{1}\big[r_k(T(x_i)) > r^\star\big]

  with :math:`r_k` the distance to the :math:`k`-th nearest ``target``
  point (:func:`neighbour_radius`) and :math:`r^\star` a
  :class:`FitReference`'s ``stray_radius`` (the :math:`1 -`
  :data:`STRAY_LEVEL` quantile of :math:`r_k` over a fresh target sample):
  points outside the target's highest-density region that holds all but
  :data:`STRAY_LEVEL` of it. A fresh target sample scores
  :data:`STRAY_LEVEL` in expectation. Jittable.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``.
    target: Target points ``[m, d]`` (the reference's first half).
    radius: :math:`r^\star`.
    neighbours: :math:`k`.

  Returns:
    Scalar in :math:`[0, 1]`.
  """
  return jnp.mean(neighbour_radius(mapped, target, neighbours) > radius)


class FitReference(NamedTuple):
  r"""What the fit of any map needs of a target sample alone (computed once
  per run by validation).

  With :math:`y_1, y_2` the halves of the target sample:

  Attributes:
    epsilon: The fit's blur :math:`\varepsilon = ` :func:`local_blur`
      :math:`(y_1)` (absolute).
    floor: :math:`S_{\varepsilon,\rho}(y_2, y_1)`, the resampling floor of
      the fit (a mean over :data:`FLOOR_SPLITS` splits).
    stray_radius: :math:`r^\star`, the :math:`1 -` :data:`STRAY_LEVEL`
      quantile of :math:`r_k(y_2)` to :math:`y_1`.
  """
  epsilon: jnp.ndarray
  floor: jnp.ndarray
  stray_radius: jnp.ndarray


def _halves(target: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
  half = target.shape[0] // 2
  return target[:half], target[half:2 * half]


def _balanced(a: jnp.ndarray, b: jnp.ndarray,
              epsilon: jnp.ndarray) -> jnp.ndarray:
  div, _ = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, a, b, epsilon=epsilon)
  return div


def _check_target(target: jnp.ndarray) -> None:
  if target.ndim != 2 or target.shape[0] < 4:
    raise ValueError(
        f"The target sample must have shape [m, d] with m >= 4 (two halves "
        f"of two points at least), got {target.shape}: pass more held-out "
        f"target points."
    )


def neighbours_for(half: int) -> int:
  """The :math:`k` of a sample's halves of ``half`` points:
  :data:`NEIGHBOURS`, or ``half - 1`` for smaller halves."""
  return max(1, min(NEIGHBOURS, half - 1))


def fit_reference(target: jnp.ndarray) -> FitReference:
  r"""The blur, the resampling floor and the stray radius of a held-out
  target sample (:class:`FitReference`). Jittable.

  With :math:`y_1, y_2` the halves of the sample, the blur is
  :func:`local_blur` :math:`(y_1)`; the floor is the mean of the divergence
  between the halves of :data:`FLOOR_SPLITS` splits of the sample (the
  halves themselves, then random ones of a fixed key): one split's floor
  varies by tens of per cent from sample to sample, and every fit is
  divided by it.

  Args:
    target: Held-out target points ``[m, d]``, ``m >= 4`` (halves of
      fewer than ``NEIGHBOURS + 1`` points use fewer neighbours,
      :func:`neighbours_for`).

  Returns:
    A :class:`FitReference` of scalars.
  """
  _check_target(target)
  first, second = _halves(target)
  k = neighbours_for(first.shape[0])
  epsilon = local_blur(first, k)
  radius = jnp.quantile(neighbour_radius(second, first, k),
                        1.0 - STRAY_LEVEL)
  orders = jnp.concatenate([
      jnp.arange(target.shape[0])[None],
      jax.vmap(lambda k: jax.random.permutation(k, target.shape[0]))(
          jax.random.split(jax.random.key(0), FLOOR_SPLITS - 1))])

  def floor(order):
    one, two = _halves(target[order])
    return local_divergence(two, one, epsilon)

  return FitReference(epsilon, jnp.mean(jax.lax.map(floor, orders)), radius)


class Fit(NamedTuple):
  r"""How mapped points fit a target sample (scalars, or ``[members]``).

  Attributes:
    fit: :math:`S_{\varepsilon,\rho}(T(x)_1, y_1)`, the criterion.
    strays: :func:`stray_fraction` of :math:`T(x)_1`.
  """
  fit: jnp.ndarray
  strays: jnp.ndarray


def fit_at(mapped: jnp.ndarray, target: jnp.ndarray,
           reference: FitReference) -> Fit:
  r"""How well mapped points fit a target sample, at a reference's blur.

  With :math:`y_1` the first half of the target sample and :math:`T(x)_1` as
  many mapped points (the first ones):

  .. math::

    \text{fit} = S_{\varepsilon,\rho}(T(x)_1, y_1), \qquad
    \text{strays} = \text{share of } T(x)_1 \text{ beyond } r^\star

  (three Sinkhorn solves of local problems and one nearest-neighbour search
  per map). Jittable.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``, or ``[members, n, d]``; ``n`` at
      least half of ``m``.
    target: Held-out target points ``[m, d]``, independent of the ``x_i``.
    reference: The target's :class:`FitReference`.

  Returns:
    A :class:`Fit` of scalars, or of ``[members]``; the fit in squared
    units of the coordinates.
  """
  first, _ = _halves(target)

  def fit_one(points: jnp.ndarray) -> Fit:
    points = points[:first.shape[0]]
    return Fit(local_divergence(points, first, reference.epsilon),
               stray_fraction(points, first, reference.stray_radius,
                              neighbours_for(first.shape[0])))

  return fit_one(mapped) if mapped.ndim == 2 else jax.vmap(fit_one)(mapped)


def validation_fit(mapped: jnp.ndarray, target: jnp.ndarray,
                   reference: FitReference) -> dict:
  """A method's validation entries of the fit: ``fit``, ``strays``
  (:func:`fit_at`) and the reference's ``floor``. Jittable."""
  return dict(fit_at(mapped, target, reference)._asdict(),
              floor=reference.floor)


@jax.jit
def fit_and_floor(
    mapped: jnp.ndarray, target: jnp.ndarray
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  r"""How well mapped points fit a target sample, beside the resampling floor.

  The target sample is split in halves :math:`y_1, y_2`; with the first half
  of the mapped points :math:`T(x)_1`,

  .. math::

    \text{fit} = S_{\varepsilon,\rho}(T(x)_1, y_1), \qquad
    \text{floor} = S_{\varepsilon,\rho}(y_2, y_1)

  (:func:`local_divergence` at the blur of the target's own local scale,
  :func:`fit_reference`): the floor is what two independent samples of the
  target of that size score, so ``fit / floor`` near 1 means that
  :math:`T_\#\alpha` cannot be told from :math:`\beta` at this sample
  size, region by region. Jitted once per shape.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``, ``x_i`` held out from training; or
      ``[members, n, d]``, the maps of a population's members.
    target: Held-out target points ``[m, d]`` (``m >= 4``),
      independent of the ``x_i``.

  Returns:
    ``(fit, floor)``: scalars, or ``fit`` of shape ``[members]`` and the one
    ``floor``.
  """
  reference = fit_reference(target)
  return fit_at(mapped, target, reference).fit, reference.floor


class FitReport(NamedTuple):
  """:func:`fit_report`'s numbers (scalars, or ``[members]`` for the
  maps' entries).

  Attributes:
    fit: The fit (:func:`local_divergence`), the criterion.
    floor: Its resampling floor.
    coarse_fit: The balanced divergence at :data:`EPSILON` times the mean
      cost.
    coarse_floor: Its floor.
    strays: The share of mapped points outside the target's highest-density
      region (:func:`stray_fraction`).
    strays_floor: What a fresh target sample scores: :data:`STRAY_LEVEL`.
  """
  fit: jnp.ndarray
  floor: jnp.ndarray
  coarse_fit: jnp.ndarray
  coarse_floor: jnp.ndarray
  strays: jnp.ndarray
  strays_floor: float

  def ratios(self) -> dict:
    """``fit / floor``, ``coarse_fit / coarse_floor`` and ``strays`` (as
    floats or arrays, for printing)."""
    as_np = lambda v: np.asarray(v, np.float64)
    return {"fit/floor": as_np(self.fit) / as_np(self.floor),
            "coarse fit/floor": as_np(self.coarse_fit) / as_np(self.coarse_floor),
            "strays": as_np(self.strays)}


@functools.partial(jax.jit, static_argnames=("coarse",))
def _fit_report(mapped: jnp.ndarray, target: jnp.ndarray,
                coarse: bool) -> tuple:
  reference = fit_reference(target)
  first, second = _halves(target)
  if not coarse:
    nan = jnp.full(mapped.shape[:-2], jnp.nan)
    return fit_at(mapped, target, reference), reference, nan, jnp.nan
  blur = pointcloud.PointCloud(
      second, first, epsilon=EPSILON, relative_epsilon="mean").epsilon
  coarse_fit = lambda m: _balanced(m[:first.shape[0]], first, blur)
  return (fit_at(mapped, target, reference), reference,
          coarse_fit(mapped) if mapped.ndim == 2 else jax.vmap(coarse_fit)(
              mapped), _balanced(second, first, blur))


def fit_report(mapped: jnp.ndarray, target: jnp.ndarray,
               coarse: bool = True) -> FitReport:
  r"""Every ground-truth-free number of a map at once: the fit, the coarse
  fit and the strays, each beside what a fresh target sample scores.

  The target sample is split in halves :math:`y_1, y_2`
  (:func:`fit_reference`); the first half of the mapped points is compared
  with :math:`y_1` (:func:`fit_at`), as :math:`y_2` is for the floors. The
  coarse fit is the balanced divergence at :data:`EPSILON` times the mean
  cost between the halves (its Sinkhorn solves cost ten times the fit's on
  clustered data: validation does not compute it).

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]`` (``x_i`` held out from training), or
      ``[members, n, d]``; ``n`` at least half of ``m``.
    target: Held-out target points ``[m, d]`` (``m >= 4``),
      independent of the ``x_i``.
    coarse: Compute the coarse fit and floor (else ``nan``).

  Returns:
    A :class:`FitReport`.
  """
  mapped, target = jnp.asarray(mapped), jnp.asarray(target)
  _check_target(target)
  fit, reference, coarse_fit, coarse_floor = _fit_report(
      mapped, target, coarse=bool(coarse))
  return FitReport(fit.fit, reference.floor, coarse_fit, coarse_floor,
                   fit.strays, STRAY_LEVEL)


class ClusterReport(NamedTuple):
  r"""What a reader of the plot sees of mapped points in clusters.

  Every point belongs to its nearest centre; a point is a *stray* when it
  is farther from every centre than 3 times the median distance of the
  target points to their nearest centre.

  Attributes:
    centers: ``[K, d]``, the clusters' centres.
    strays: The share of mapped points that are strays.
    strays_floor: The share of target points that are strays (a fresh
      sample's rate).
    spread: ``[K]``: each cluster's standard deviation (the root mean
      squared distance of its non-stray points to their mean) over the
      target's; 1 is right, above 1 too wide, ``nan`` for a cluster that
      received no mapped point.
    share: ``[K]``: the share of mapped points in each cluster.
    target_share: ``[K]``: the share of target points in each cluster.
  """
  centers: np.ndarray
  strays: float
  strays_floor: float
  spread: np.ndarray
  share: np.ndarray
  target_share: np.ndarray

  @property
  def share_error(self) -> float:
    r"""The largest error in a cluster's share of the mass,
    :math:`\max_k |\text{share}_k - \text{target\_share}_k|` (0: every
    cluster gets the target's share; two samples of 2,048 points from the
    same mixture differ by about 0.02)."""
    return float(np.max(np.abs(np.asarray(self.share)
                               - np.asarray(self.target_share))))


def cluster_report(
    mapped: jnp.ndarray,
    target: jnp.ndarray,
    centers: Optional[jnp.ndarray] = None,
    num_clusters: Optional[int] = None,
    rng: Optional[jax.Array] = None,
) -> ClusterReport:
  r"""Strays, each cluster's spread and mass, beside the target's.

  For data in clusters: the centres are given, or found by ott's k-means
  (:func:`ott.tools.k_means.k_means`) on the target sample. With
  :math:`m_k(p)` the nearest centre of :math:`p` and :math:`\delta =
  3 \operatorname{median}_j \|y_j - m_k(y_j)\|`, a point farther than
  :math:`\delta` from every centre is a stray; the spread of cluster
  :math:`k` is the root mean squared distance of its non-stray points to
  their mean.

  Args:
    mapped: :math:`T(x_i)`, ``[n, d]``.
    target: Held-out target points ``[m, d]`` (a fresh sample, independent
      of the ``x_i``).
    centers: ``[K, d]`` centres of the target's clusters, or :obj:`None`.
    num_clusters: :math:`K`, to find the centres by k-means when
      ``centers`` is :obj:`None`.
    rng: The k-means' key (default ``jax.random.key(0)``).

  Returns:
    A :class:`ClusterReport`.

  Raises:
    ValueError: for neither or both of ``centers`` and ``num_clusters``, or
      points of other shapes.
  """
  if (centers is None) == (num_clusters is None):
    raise ValueError(
        "Pass the clusters' `centers` [K, d] or their number `num_clusters` "
        "(found by k-means on the target), not both or neither.")
  mapped, target = np.asarray(mapped, np.float64), np.asarray(target,
                                                              np.float64)
  if mapped.ndim != 2 or target.ndim != 2 or mapped.shape[1] != target.shape[1]:
    raise ValueError(
        f"`mapped` and `target` must have shapes [n, d] and [m, d], got "
        f"{mapped.shape} and {target.shape}.")
  if centers is None:
    rng = jax.random.key(0) if rng is None else rng
    centers = ott_k_means.k_means(jnp.asarray(target), int(num_clusters),
                                  rng=rng).centroids
  centers = np.asarray(centers, np.float64)
  if centers.ndim != 2 or centers.shape[1] != target.shape[1]:
    raise ValueError(
        f"`centers` must have shape [K, {target.shape[1]}], got "
        f"{centers.shape}.")

  def assign(points):
    dist = np.linalg.norm(points[:, None] - centers[None], axis=-1)
    return dist.argmin(1), dist.min(1)

  label_m, dist_m = assign(mapped)
  label_t, dist_t = assign(target)
  delta = 3.0 * np.median(dist_t)

  def spread(points, labels, dist, k):
    inside = points[(labels == k) & (dist <= delta)]
    if len(inside) < 2:
      return np.nan
    return float(np.sqrt(np.sum(np.var(inside, axis=0))))

  spreads = np.array([
      spread(mapped, label_m, dist_m, k) / spread(target, label_t, dist_t, k)
      for k in range(len(centers))])
  count = lambda labels: np.bincount(labels, minlength=len(centers))
  return ClusterReport(
      centers, float(np.mean(dist_m > delta)), float(np.mean(dist_t > delta)),
      spreads, count(label_m) / len(mapped), count(label_t) / len(target))
