"""Validation of user input, done on the host before anything compiles.

Every error names the argument and says how to fix it.
"""
import math
import numbers
from typing import Any, Optional

import jax
import numpy as np

import optax
from ott.geometry import costs

from ott_enot import costs as enot_costs

__all__ = ["check_hyperparameters", "check_batch", "check_positive_int"]


def check_positive_int(
    name: str, value: Any, allow_zero: bool = False
) -> int:
  """``value`` as an int >= 1 (>= 0 with ``allow_zero``), else a clear error."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
        f"`{name}` must be an int, got {value!r} ({type(value).__name__})."
    )
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else ">= 1"
    raise ValueError(f"`{name}` must be {bound}, got {value}.")
  return int(value)


def _real(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(
        f"`{name}` must be a float, got {value!r} ({type(value).__name__})."
    )
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"`{name}` must be finite, got {value}.")
  return value


def check_hyperparameters(
    *,
    dim_data: Any,
    expectile: Any,
    expectile_loss_coef: Any,
    num_train_iters: Any,
    valid_freq: Any,
    log_freq: Any,
    chunk_size: Any = 1,
    cost_fn: Optional[costs.CostFn],
    optimizer_f: Optional[optax.GradientTransformation],
    optimizer_g: Optional[optax.GradientTransformation],
) -> None:
  """Check the solver's scalar hyper-parameters and the types of its parts.

  Raises:
    TypeError: for a value of the wrong type.
    ValueError: for a value out of range, e.g. ``expectile`` outside
      :math:`(0, 1]` or a negative ``expectile_loss_coef``.
  """
  check_positive_int("dim_data", dim_data)
  tau = _real("expectile", expectile)
  if not 0.0 < tau <= 1.0:
    raise ValueError(
        f"`expectile` must lie in (0, 1], got {tau}; the paper uses values "
        f"in [0.9, 1.0] (e.g. 0.99)."
    )
  if _real("expectile_loss_coef", expectile_loss_coef) < 0.0:
    raise ValueError(
        f"`expectile_loss_coef` must be >= 0, got {expectile_loss_coef}; the "
        f"paper uses values in [0.3, 1.0]."
    )
  check_positive_int("num_train_iters", num_train_iters, allow_zero=True)
  check_positive_int("valid_freq", valid_freq)
  check_positive_int("log_freq", log_freq)
  check_positive_int("chunk_size", chunk_size)
  if cost_fn is not None and not isinstance(cost_fn, costs.CostFn):
    raise TypeError(
        f"`cost_fn` must be an `ott.geometry.costs.CostFn` instance, got "
        f"{cost_fn!r}; e.g. `costs.SqEuclidean()`."
    )
  for name, opt in (("optimizer_f", optimizer_f), ("optimizer_g", optimizer_g)):
    if opt is not None and not (
        hasattr(opt, "init") and hasattr(opt, "update")
    ):
      raise TypeError(
          f"`{name}` must be an optax `GradientTransformation` (e.g. "
          f"`optax.adam(1e-3)`), got {type(opt).__name__}."
      )


def check_batch(
    name: str, batch: Any, dim: int, on_sphere: bool = False
) -> np.ndarray:
  """Check one batch of points from a user's iterator.

  Args:
    name: The argument the batch came from, for the error message.
    batch: Array-like ``[n, dim]``.
    dim: Expected dimension.
    on_sphere: Also check that the points are unit vectors.

  Returns:
    The batch as an array (a JAX array stays on its device).

  Raises:
    TypeError: if it is not a numeric array.
    ValueError: for a wrong shape, an empty batch, NaN/inf entries or points
      off the sphere.
  """
  arr = batch if isinstance(batch, jax.Array) else np.asarray(batch)
  if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(
      arr.dtype, np.complexfloating
  ):
    raise TypeError(
        f"`{name}` yielded an array of dtype {arr.dtype}; ENOT needs real "
        f"floating point points of shape [batch, {dim}]."
    )
  if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] == 0:
    raise ValueError(
        f"`{name}` yielded a batch of shape {tuple(arr.shape)}, but the "
        f"solver was built with dim_data={dim}: batches must have shape "
        f"[batch, {dim}] with batch >= 1."
    )
  if not bool(np.all(np.isfinite(np.asarray(arr)))):
    raise ValueError(
        f"`{name}` yielded a batch with NaN or inf entries; remove or "
        f"impute them before training."
    )
  if on_sphere:
    enot_costs.check_on_sphere(name, arr)
  return arr
