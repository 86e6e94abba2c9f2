r"""The ENOT conjugate solver: the amortised prediction, no fine-tuning.

ott's :class:`~ott.neural.methods.neuraldual.W2NeuralDual` refines the
amortised conjugate with L-BFGS
(:class:`~ott.neural.networks.layers.conjugate.FenchelConjugateLBFGS`) at every
step. ENOT's expectile regulariser makes the
amortised prediction accurate enough that no refinement is needed, which is
where most of its speed comes from.
"""
import dataclasses
from typing import Callable, Optional

import jax.numpy as jnp

from ott.neural.networks.layers import conjugate

__all__ = ["ExpectileConjugateSolver"]


@dataclasses.dataclass(frozen=True)
class ExpectileConjugateSolver(conjugate.FenchelConjugateSolver):
  r"""Conjugate "solver" that returns the amortised prediction as it is.

  For :math:`f^\star(y) = \sup_x \langle x, y\rangle - f(x)`, it returns the
  value at the initial point, :math:`\langle x_0, y\rangle - f(x_0)` (a lower
  bound of :math:`f^\star(y)`, exact when :math:`x_0` is the maximiser), with
  ``grad`` :math:`= x_0` and ``num_iter == 0``.

  It is the default ``conjugate_solver`` of
  :class:`~ott_enot.ExpectileNeuralDual`; pass ott's
  :class:`~ott.neural.networks.layers.conjugate.FenchelConjugateLBFGS` instead
  to refine the c-transform when the potentials are built.
  """

  def solve(
      self,
      f: Callable[[jnp.ndarray], jnp.ndarray],
      y: jnp.ndarray,
      x_init: Optional[jnp.ndarray] = None,
  ) -> conjugate.ConjugateResults:
    """Evaluate the conjugate objective at ``x_init``.

    Args:
      f: Function to conjugate, ``[d] -> []``.
      y: Point ``[d]`` at which to conjugate.
      x_init: The amortised prediction ``[d]`` of the maximiser.

    Returns:
      :class:`~ott.neural.networks.layers.conjugate.ConjugateResults` with
      ``num_iter == 0``.
    """
    if x_init is None:
      raise ValueError(
          "ExpectileConjugateSolver returns the amortised prediction, so it "
          "needs `x_init`; use `FenchelConjugateLBFGS` to solve from scratch."
      )
    val = jnp.vdot(x_init, y) - f(x_init)
    return conjugate.ConjugateResults(val=val, grad=x_init, num_iter=0)
