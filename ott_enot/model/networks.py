r"""The networks: how they take points and conditions, and the defaults.

A network acts row-wise on points ``x[n, d]``. A conditional model (maps
:math:`T(x \mid z)`, :class:`~ott_enot.ConditionalExpectileNeuralDual`) also
gives each row its condition ``cond[n, k]``, in one of two ways
(``conditioning``):

- ``"concat"`` (default): one array ``[x, cond]`` of shape ``[n, d + k]``, so
  any row-wise flax module works (ott's
  :class:`~ott.neural.networks.potentials.MLP`, ...);
- ``"film"``: ``module(x[n, d], cond[n, k])``; :class:`ConditionalMLP` is the
  default there, and any module with that signature can be passed.

:class:`NetworkInputs` is the one place that calls a network; gradients (the
twist maps) are taken in :math:`x` at fixed condition.
:func:`default_network` is the one place that chooses the default networks.
"""
import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from flax import linen as nn
from ott.neural.networks import potentials as ott_potentials

__all__ = [
    "CONDITIONING",
    "NetworkInputs",
    "default_network",
    "ConditionalMLP",
]

#: How a conditional model's networks take the condition.
CONDITIONING: Tuple[str, ...] = ("concat", "film")
#: Hidden widths of the default networks (ott's ENOT: ``[128] * 4``).
DEFAULT_HIDDEN: Tuple[int, ...] = (128, 128, 128, 128)

Params = Any


@dataclasses.dataclass(frozen=True)
class NetworkInputs:
  """What the networks of a model take: points of dimension ``dim`` and,
  for a conditional model, conditions of dimension ``dim_cond`` given as
  ``conditioning`` says (module docstring).

  Attributes:
    dim: Dimension :math:`d` of the points.
    dim_cond: Dimension :math:`k` of the conditions (0: none).
    conditioning: ``"concat"`` or ``"film"``.
  """
  dim: int
  dim_cond: int = 0
  conditioning: str = "concat"

  def dummy(self, rows: int = 1) -> Tuple[jnp.ndarray, ...]:
    """Dummy inputs of ``rows`` points, for ``init`` and shape checks:
    ``(x,)``, ``([x, cond],)`` (concat) or ``(x, cond)`` (FiLM)."""
    x = jnp.ones((rows, self.dim))
    if not self.dim_cond:
      return (x,)
    cond = jnp.ones((rows, self.dim_cond))
    if self.conditioning == "concat":
      return (jnp.concatenate([x, cond], axis=-1),)
    return x, cond

  def init(self, module: nn.Module, rng: jax.Array) -> Params:
    """Fresh parameters of ``module``."""
    return module.init(rng, *self.dummy())["params"]

  def apply(self, module: nn.Module, params: Params, x: jnp.ndarray,
            cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """``module`` on points ``x[n, d]`` at conditions ``cond[n, k]`` (or
    none)."""
    if cond is None:
      return module.apply({"params": params}, x)
    if self.conditioning == "concat":
      return module.apply({"params": params}, jnp.concatenate([x, cond], -1))
    return module.apply({"params": params}, x, cond)

  def outputs_per_point(self, module: nn.Module,
                        name: str = "neural_f") -> int:
    """How many numbers ``module`` returns per point.

    Found by abstract evaluation (:func:`jax.eval_shape`) on a batch of two
    points, so nothing is compiled or run.

    Raises:
      ValueError: naming ``name``, if a conditional network cannot take its
        inputs.
    """
    inputs = self.dummy(rows=2)
    try:
      out, _ = jax.eval_shape(
          lambda: module.init_with_output(jax.random.key(0), *inputs)
      )
    except Exception as err:  # pylint: disable=broad-except
      if not self.dim_cond:
        raise
      how = (
          f"one array [n, {self.dim + self.dim_cond}] (points and condition "
          f"concatenated)" if self.conditioning == "concat" else
          f"two arrays, `module(x[n, {self.dim}], cond[n, {self.dim_cond}])` "
          f"(e.g. `ott_enot.ConditionalMLP`)"
      )
      raise ValueError(
          f"`{name}` cannot take the conditional input: with "
          f"conditioning={self.conditioning!r} it is called with {how} "
          f"({err})."
      ) from err
    return math.prod(out.shape) // 2


def default_network(out: int, conditioning: str = "concat") -> nn.Module:
  """The network used when none is given, with ``out`` outputs per point:
  ott's ELU MLP with hidden sizes ``[128] * 4``, or for FiLM conditioning
  :class:`ConditionalMLP` of the same sizes. The one place that decides."""
  sizes = tuple(DEFAULT_HIDDEN) + (int(out),)  # a tuple: hashable, by value
  if conditioning == "film":
    return ConditionalMLP(dim_hidden=sizes)
  return ott_potentials.MLP(dim_hidden=sizes, act_fn=jax.nn.elu)


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
  def __call__(self, x: jnp.ndarray, cond: jnp.ndarray) -> jnp.ndarray:
    """``x[n, d]``, ``cond[n, k]`` -> ``[n, dim_hidden[-1]]``."""
    *hidden, out = self.dim_hidden
    e = self.act_fn(nn.Dense(self.dim_embedding)(cond))
    h = x
    for width in hidden:
      h = nn.Dense(width)(h)
      scale, shift = jnp.split(
          nn.Dense(2 * width, kernel_init=nn.initializers.zeros)(e), 2,
          axis=-1
      )
      h = self.act_fn((1.0 + scale) * h + shift)
    return nn.Dense(out)(h)
