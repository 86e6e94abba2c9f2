r"""Networks of a point and a condition, for conditional maps :math:`T(x \mid c)`.

A conditional ENOT model (:class:`~ott_enot.ConditionalExpectileNeuralDual`)
calls its networks in one of two ways (``conditioning``):

- ``"concat"`` (default): on one array ``[x, c]`` of shape ``[n, d + k]``, so
  any row-wise flax module works (ott's
  :class:`~ott.neural.networks.potentials.MLP`, ...);
- ``"film"``: as ``module(x[n, d], c[n, k])``; :class:`ConditionalMLP` is the
  default there, and any module with that signature can be passed.

Gradients (the twist maps) are taken in :math:`x` at fixed :math:`c`.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from flax import linen as nn

__all__ = ["ConditionalMLP"]


class ConditionalMLP(nn.Module):
  r"""An MLP of :math:`x` whose hidden layers are modulated by :math:`c`
  (FiLM, Perez et al. 2018).

  .. math::

    e = \sigma(W_e c + b_e), \qquad
    h_{l+1} = \sigma\big((1 + \gamma_l(e)) \odot (W_l h_l + b_l)
    + \beta_l(e)\big), \qquad h_0 = x,

  with :math:`(\gamma_l, \beta_l)` affine in the condition embedding
  :math:`e` and initialised at zero, so that training starts from the plain
  MLP of :math:`x` shared by all conditions. The last layer is linear.

  Args:
    dim_hidden: Widths of the hidden layers, then the output size (1 for a
      potential, ``d`` for a direct map), as ott's
      :class:`~ott.neural.networks.potentials.MLP` takes them.
    dim_embedding: Width of the condition embedding :math:`e`.
    act_fn: Activation :math:`\sigma` (ELU, as ott's ENOT networks).
  """
  dim_hidden: Sequence[int]
  dim_embedding: int = 64
  act_fn: Callable[[jnp.ndarray], jnp.ndarray] = jax.nn.elu

  @nn.compact
  def __call__(self, x: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
    """``x[n, d]``, ``c[n, k]`` -> ``[n, dim_hidden[-1]]``."""
    *hidden, out = self.dim_hidden
    e = self.act_fn(nn.Dense(self.dim_embedding)(c))
    h = x
    for width in hidden:
      h = nn.Dense(width)(h)
      scale, shift = jnp.split(
          nn.Dense(2 * width, kernel_init=nn.initializers.zeros)(e), 2,
          axis=-1
      )
      h = self.act_fn((1.0 + scale) * h + shift)
    return nn.Dense(out)(h)
