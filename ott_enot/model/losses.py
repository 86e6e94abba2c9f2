r"""The ENOT objective as pure functions.

Notation (one direction of training; the other swaps the roles): a batch of
pairs :math:`x_i \sim \alpha`, :math:`y_i \sim \beta`, a cost :math:`c`, a map
:math:`T_\theta` (from the ``f`` network) and a potential :math:`g_\omega`.
With :math:`\hat y = T_\theta(x)` and :math:`\mathrm{sg}` the stop-gradient,

.. math::

  \hat f(x) &= c(x, \mathrm{sg}\,\hat y) - g_\omega(\mathrm{sg}\,\hat y)
  \quad (\approx g^c(x)) \\
  d_1 &= \mathrm{sg}(\hat f(x) - c(x, y)) + g_\omega(y), \qquad
  d_2 = \mathrm{sg}(g_\omega(y) - c(x, y)) + \hat f(x) \\
  \mathcal{L} &= \lambda\,\big(\overline{L_\tau(d_1)} + \overline{L_\tau(d_2)}
  \big) - \overline{g_\omega(y) + \hat f(x)}
  + \overline{c(x, \hat y) - g_{\mathrm{sg}\,\omega}(\hat y)}

where bars are batch means and :math:`L_\tau` is :func:`expectile_loss`. The
map's parameters :math:`\theta` only receive gradient from the last
(amortisation) term; :math:`\omega` only from the first two (expectile
regulariser and dual objective).

The optional *pushforward term* adds to the map's loss

.. math::

  \mu\, s\, \mathcal{E}(\hat y, \mathrm{sg}\, y), \qquad
  s = \mathrm{sg}\,\frac{\overline{c(x, y)}}{\overline{\|x - y\|}},

with :math:`\mathcal{E}` the :func:`energy_distance` between the mapped
batch and the target batch and :math:`s` the cost per unit of distance on
the batch, so that :math:`\mu` (``pushforward_loss_coef``) does not depend
on the data's units. It vanishes in expectation where :math:`T_\#\alpha =
\beta` (the OT map is among its minimisers, the amortisation still chooses
the map), and it gives a point :math:`\hat y` that lands between the
target's clusters a pull towards the target's mass, which the amortisation
lacks there: where the OT map splits a cluster, :math:`c(x, \cdot) - g` is
nearly flat along the segment between the two targets of a point on the
split, and a continuous map strands points on it.
"""
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

__all__ = ["expectile_loss", "energy_distance", "ENOTLossTerms", "enot_loss"]

Params = object
MapFn = Callable[[Params, jnp.ndarray], jnp.ndarray]
PotentialFn = Callable[[Params, jnp.ndarray], jnp.ndarray]
BatchCostFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
  r"""Asymmetric squared loss of expectile regression, elementwise.

  .. math::

    L_\tau(u) = |\tau - \mathbb{1}[u < 0]|\, u^2
    = \begin{cases} \tau u^2 & u \ge 0 \\ (1 - \tau) u^2 & u < 0 \end{cases}

  Args:
    diff: Array of any shape, the residuals :math:`u`.
    expectile: The level :math:`\tau \in (0, 1]`.

  Returns:
    Array of the same shape as ``diff``.
  """
  weight = jnp.where(diff >= 0, expectile, 1.0 - expectile)
  return weight * diff ** 2


def _distances(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """``||a_i - b_j||`` ``[n, m]`` from the Gram matrix (one matrix product,
  no ``[n, m, d]`` array), with a zero gradient (not NaN) where points
  coincide."""
  sq = (jnp.sum(a ** 2, axis=-1)[:, None] + jnp.sum(b ** 2, axis=-1)[None, :]
        - 2.0 * a @ b.T)
  positive = sq > 0.0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _mean_within(z: jnp.ndarray) -> jnp.ndarray:
  """``mean_{i != i'} ||z_i - z_i'||``."""
  n = z.shape[0]
  return jnp.sum(_distances(z, z)) / (n * (n - 1))


def _energy_of_a(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """The terms of :func:`energy_distance` that depend on ``a``."""
  return 2.0 * jnp.mean(_distances(a, b)) - _mean_within(a)


def energy_distance(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  r"""Energy distance between two samples (unbiased U-statistic).

  .. math::

    \mathcal{E}(a, b) = \frac{2}{nm}\sum_{i, j} \|a_i - b_j\|
    - \frac{1}{n(n - 1)}\sum_{i \ne i'} \|a_i - a_{i'}\|
    - \frac{1}{m(m - 1)}\sum_{j \ne j'} \|b_j - b_{j'}\|,

  an unbiased estimate of :math:`2\mathbb{E}\|A - B\| - \mathbb{E}\|A -
  A'\| - \mathbb{E}\|B - B'\| \ge 0`, zero iff the two measures are equal
  (Székely and Rizzo's energy distance, the MMD of the distance kernel). Its
  gradient in a point of ``a`` never vanishes far from ``b``'s mass (unlike
  a Gaussian kernel's), and it has no bandwidth to choose.

  Args:
    a: Array ``[n, d]``, ``n >= 2``.
    b: Array ``[m, d]``, ``m >= 2``.

  Returns:
    A scalar, slightly negative at times, since the estimate is unbiased.
  """
  return _energy_of_a(a, b) - _mean_within(b)


class ENOTLossTerms(NamedTuple):
  """Parts of the ENOT objective for one batch (all scalars).

  Attributes:
    map_loss: amortisation term (and the pushforward term, without the
      energy distance's term in the target alone, a constant), the loss of
      the map network.
    potential_loss: expectile regulariser plus dual term, the loss of the
      potential network.
    dual: the dual estimate :math:`\\overline{\\hat f(x)} + \\overline{g(y)}`
      in the units of the training cost.
  """
  map_loss: jnp.ndarray
  potential_loss: jnp.ndarray
  dual: jnp.ndarray


def enot_loss(
    params_map: Params,
    params_potential: Params,
    source: jnp.ndarray,
    target: jnp.ndarray,
    *,
    map_fn: MapFn,
    potential_fn: PotentialFn,
    cost_fn: BatchCostFn,
    expectile: float,
    expectile_loss_coef: float,
    pushforward_loss_coef: float = 0.0,
    unit_cost_fn: Optional[BatchCostFn] = None,
) -> Tuple[jnp.ndarray, ENOTLossTerms]:
  r"""ENOT objective for one batch of pairs (module docstring has the maths).

  Args:
    params_map: Parameters of the network that gives the map :math:`T`.
    params_potential: Parameters of the potential network :math:`g`.
    source: Array ``[n, d]``, samples :math:`x_i`.
    target: Array ``[n, d]``, samples :math:`y_i`.
    map_fn: ``(params_map, x[n, d]) -> T(x)[n, d]``.
    potential_fn: ``(params_potential, y[n, d]) -> g(y)[n]``.
    cost_fn: Batched cost of pairs, ``(x[n, d], y[n, d]) -> c(x_i, y_i)[n]``.
    expectile: :math:`\tau \in (0, 1]`.
    expectile_loss_coef: :math:`\lambda \ge 0`.
    pushforward_loss_coef: :math:`\mu \ge 0` (static: ``0`` adds nothing
      to the program), the weight of the pushforward term.
    unit_cost_fn: The batched cost of :math:`s` (default ``cost_fn``): the
      user's cost where ``cost_fn`` is a training form of it (the
      correlation form's :math:`-\langle x, y\rangle`).

  Returns:
    The scalar loss (differentiate it w.r.t. both parameter sets at once) and
    its :class:`ENOTLossTerms`.
  """
  sg = jax.lax.stop_gradient
  target_hat = map_fn(params_map, source)
  target_hat_sg = sg(target_hat)

  cost_xy = cost_fn(source, target)
  g_target = potential_fn(params_potential, target)
  f_source = cost_fn(source, target_hat_sg
                    ) - potential_fn(params_potential, target_hat_sg)

  diff_1 = sg(f_source - cost_xy) + g_target
  diff_2 = sg(g_target - cost_xy) + f_source
  reg = expectile_loss_coef * (
      expectile_loss(diff_1, expectile).mean() +
      expectile_loss(diff_2, expectile).mean()
  )
  dual = g_target.mean() + f_source.mean()
  amortisation = (
      cost_fn(source, target_hat) - potential_fn(sg(params_potential), target_hat)
  ).mean()

  if pushforward_loss_coef:
    unit_cost = cost_xy if unit_cost_fn is None else unit_cost_fn(source,
                                                                  target)
    scale = sg(jnp.mean(unit_cost) / jnp.maximum(
        jnp.mean(jnp.linalg.norm(source - target, axis=-1)), 1e-12))
    # the energy distance less its term in y alone (no gradient)
    amortisation = amortisation + pushforward_loss_coef * scale * (
        _energy_of_a(target_hat, sg(target)))

  potential_loss = reg - dual
  loss = potential_loss + amortisation
  return loss, ENOTLossTerms(amortisation, potential_loss, dual)
