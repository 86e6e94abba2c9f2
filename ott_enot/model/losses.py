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
"""
from typing import Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp

__all__ = ["expectile_loss", "ENOTLossTerms", "enot_loss"]

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


class ENOTLossTerms(NamedTuple):
  """Parts of the ENOT objective for one batch (all scalars).

  Attributes:
    map_loss: amortisation term, the loss of the map network.
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

  potential_loss = reg - dual
  loss = potential_loss + amortisation
  return loss, ENOTLossTerms(amortisation, potential_loss, dual)
