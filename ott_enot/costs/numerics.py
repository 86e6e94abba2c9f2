r"""Numerically stable building blocks of the costs."""
import jax
import jax.numpy as jnp

__all__ = ["norm", "power_above_one"]


@jax.custom_jvp
def norm(x: jnp.ndarray) -> jnp.ndarray:
  r"""Euclidean norm of a vector ``[d]``, computed after scaling by
  :math:`\max_i |x_i|`.

  Unlike ``jnp.linalg.norm`` (whose square underflows for
  :math:`\|x\| < 10^{-19}` in float32, making the gradient
  :math:`x / \|x\|` infinite or NaN) and ott's
  :func:`ott.math.utils.norm` (which fixes only :math:`x = 0`), the value and
  the gradient are accurate for every non-zero vector, subnormal ones
  included; the gradient at 0 is 0.
  """
  scale = jnp.max(jnp.abs(x))
  safe = jnp.where(scale > 0, scale, 1.0)
  return safe * jnp.linalg.norm(x / safe)


@norm.defjvp
def _norm_jvp(primals, tangents):
  x, = primals
  t, = tangents
  scale = jnp.max(jnp.abs(x))
  safe = jnp.where(scale > 0, scale, 1.0)
  u = x / safe  # largest entry +-1 unless x = 0
  length = jnp.linalg.norm(u)
  unit = u / jnp.where(length > 0, length, 1.0)
  return safe * length, jnp.vdot(unit, t)


def power_above_one(name: str, p: float, why: str) -> float:
  """``float(p)`` if ``p > 1``, else a ``ValueError`` naming ``name``."""
  if not p > 1.0:
    raise ValueError(f"`{name}` must be > 1 ({why}), got {p}.")
  return float(p)
