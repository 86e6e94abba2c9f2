r"""Langevin samplers of a conditional density, as pure functions.

For a log density :math:`\log p(y)` known up to a constant (for the
entropic plan, :math:`\log p(y \mid x) = (f(y) - c(x, y)) / \varepsilon`),
one step of size :math:`h` proposes

.. math::

  y' = y + h \nabla \log p(y) + \sqrt{2h}\, \xi, \qquad
  \xi \sim \mathcal{N}(0, I),

and the Metropolis-Hastings acceptance probability of the proposal is

.. math::

  a(y, y') = \min\Big(1, \frac{p(y')\, q(y \mid y')}{p(y)\, q(y' \mid y)}
  \Big), \qquad
  q(y' \mid y) \propto \exp\Big(-\frac{\|y' - y - h\nabla\log p(y)\|^2}
  {4h}\Big).

The *unadjusted* sampler (ULA) always moves (biased by :math:`O(h)`, the
training chains); the *adjusted* one (MALA) moves with probability
:math:`a` (exact in the limit, the sampling chains). Both compute :math:`a`,
so both report their acceptance, and the step size adapts to it
(:func:`adapt_log_step`): a larger :math:`h` when proposals are accepted
more often than :data:`TARGET_ACCEPTANCE`, a smaller one otherwise. The step
size thus follows the scale of the density (it shrinks with
:math:`\varepsilon` where the cost dominates, and stops at the target's own
spread where :math:`\varepsilon` is large), where a fixed step diverges.

Glossary: a *chain* is one sampler state :math:`y` (one row of ``y[m,
d]``); the rows of ``log_density``'s argument are independent chains (their
log densities are summed for one backward pass).
"""
from typing import Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp

__all__ = [
    "TARGET_ACCEPTANCE",
    "LangevinInfo",
    "value_and_score",
    "langevin",
    "adapt_log_step",
]

#: MALA's optimal acceptance rate :cite:`roberts:98`, which the step size
#: adapts to.
TARGET_ACCEPTANCE = 0.574
#: How fast the log step size follows the acceptance (per adaptation).
ADAPTATION_GAIN = 0.1

LogDensity = Callable[[jnp.ndarray], jnp.ndarray]


class LangevinInfo(NamedTuple):
  """What a run of chains reports (scalars).

  Attributes:
    acceptance: The mean Metropolis-Hastings acceptance probability of the
      proposals (over the chains and the steps after adaptation).
    log_step: :math:`\\log h` at the end of the run.
    num_steps: The number of steps run.
  """
  acceptance: jnp.ndarray
  log_step: jnp.ndarray
  num_steps: jnp.ndarray


def value_and_score(log_density: LogDensity,
                    y: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
  r""":math:`\log p(y_i)` ``[m]`` and :math:`\nabla\log p(y_i)` ``[m, d]``
  of independent chains ``y[m, d]`` (one backward pass of the sum)."""
  values, vjp = jax.vjp(log_density, y)
  return values, vjp(jnp.ones_like(values))[0]


def adapt_log_step(log_step: jnp.ndarray, acceptance: jnp.ndarray,
                   gain: float = ADAPTATION_GAIN) -> jnp.ndarray:
  r"""One Robbins-Monro update :math:`\log h \leftarrow \log h +
  \gamma\,(\bar a - a^\star)` towards :data:`TARGET_ACCEPTANCE`
  :math:`a^\star`; a non-finite acceptance halves the step."""
  update = gain * (acceptance - TARGET_ACCEPTANCE)
  return log_step + jnp.where(jnp.isfinite(update), update, -jnp.log(2.0))


def langevin(
    log_density: LogDensity,
    y: jnp.ndarray,
    log_step: jnp.ndarray,
    num_steps: int,
    rng: jax.Array,
    *,
    adjusted: bool,
    adapt_steps: int = 0,
) -> Tuple[jnp.ndarray, LangevinInfo]:
  r"""Run chains ``y[m, d]`` for ``num_steps`` Langevin steps (pure).

  Args:
    log_density: :math:`y[m, d] \mapsto \log p(y_i)` ``[m]``, up to a
      constant, rows independent.
    y: The chains' starts ``[m, d]``.
    log_step: :math:`\log h`, a scalar (all chains take one step size).
    num_steps: Steps to run (static).
    rng: Key of the noise (and of the accept/reject draws).
    adjusted: MALA (accept with probability :math:`a`) if ``True``, else
      ULA (always move, except to a proposal whose log density or score is
      not finite, which is refused so that one bad step does not lose a
      chain).
    adapt_steps: The first ``adapt_steps`` steps adapt :math:`\log h` after
      every step (:func:`adapt_log_step` of the step's mean acceptance);
      the acceptance reported is that of the later steps (of all when
      every step adapts).

  Returns:
    ``(y, info)``: the chains after the steps ``[m, d]`` and a
    :class:`LangevinInfo`.
  """
  adapt_steps = min(int(adapt_steps), int(num_steps))
  counted = num_steps - adapt_steps if num_steps > adapt_steps else num_steps

  def one(carry, inputs):
    y, value, score, log_h, total = carry
    index, key = inputs
    h = jnp.exp(log_h)
    noise_key, accept_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, y.shape, y.dtype)
    proposal = y + h * score + jnp.sqrt(2.0 * h) * noise
    new_value, new_score = value_and_score(log_density, proposal)
    forward = jnp.sum((proposal - y - h * score) ** 2, axis=-1)
    backward = jnp.sum((y - proposal - h * new_score) ** 2, axis=-1)
    log_ratio = new_value - value + (forward - backward) / (4.0 * h)
    finite = (jnp.isfinite(new_value)
              & jnp.all(jnp.isfinite(new_score), axis=-1))
    accept_prob = jnp.where(finite & ~jnp.isnan(log_ratio),
                            jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)
    if adjusted:
      move = jax.random.uniform(accept_key, accept_prob.shape) < accept_prob
    else:
      move = finite
    pick = lambda new, old: jnp.where(
        move.reshape(move.shape + (1,) * (new.ndim - 1)), new, old)
    y, value, score = (pick(proposal, y), pick(new_value, value),
                       pick(new_score, score))
    mean_accept = jnp.mean(accept_prob)
    adapting = index < adapt_steps
    log_h = jnp.where(adapting, adapt_log_step(log_h, mean_accept), log_h)
    counts = (index >= adapt_steps) | (adapt_steps >= num_steps)
    total = total + jnp.where(counts, mean_accept, 0.0)
    return (y, value, score, log_h, total), None

  value, score = value_and_score(log_density, y)
  log_step = jnp.asarray(log_step, y.dtype)
  keys = jax.random.split(rng, num_steps)
  carry = (y, value, score, log_step, jnp.zeros((), y.dtype))
  (y, _, _, log_step, total), _ = jax.lax.scan(
      one, carry, (jnp.arange(num_steps), keys))
  return y, LangevinInfo(total / max(counted, 1), log_step,
                         jnp.asarray(num_steps, jnp.int32))
