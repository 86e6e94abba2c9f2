"""Validation of user input, done on the host before anything compiles.

One function per kind of input; every error names the argument and says how
to fix it. :func:`check_points` is the one check of points, wherever they
come from (arrays, loaders, samplers, the potentials' inputs). And
:func:`static_key`: how a user's object in a compiled program's static
configuration is compared (by value where it can be, else by identity).
"""
import dataclasses
import math
import numbers
import os
from typing import Any, Callable, Optional, Tuple

import jax
import numpy as np

import optax
from ott.geometry import costs
from ott.neural.networks.layers import conjugate as ott_conjugate

__all__ = [
    "DOMAINS",
    "SPHERE_ATOL",
    "check_positive_int",
    "check_hyperparameters",
    "check_optimizer",
    "check_run_settings",
    "check_cost_fn",
    "check_points",
    "check_on_sphere",
    "check_sampler",
    "check_conditions",
    "Identity",
    "static_key",
    "array_key",
]

#: Where points can live (:math:`R^d`, or the unit sphere of :math:`R^d`).
DOMAINS: Tuple[str, ...] = ("euclidean", "sphere")
#: Largest :math:`|\,\|x\| - 1|` accepted for a point on the unit sphere.
SPHERE_ATOL: float = 1e-4


class Identity:
  """Wraps a value so that it compares and hashes by identity."""

  __slots__ = ("value",)

  def __init__(self, value: Any):
    self.value = value

  def __hash__(self) -> int:
    return id(self.value)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, Identity) and other.value is self.value

  def __repr__(self) -> str:
    return f"Identity({type(self.value).__name__} at {id(self.value):#x})"


def static_key(value: Any) -> Any:
  """What ``value`` compares by in a static configuration.

  The value itself where it is hashable (a flax module of hashable
  attributes compares by its attributes). Else, so that equal settings
  still compare equal: a list, tuple or dict as its type and the keys of
  its items; a dataclass (a flax module with a list attribute, as ott's
  ``MLP(dim_hidden=[64, 1])``) as its type and the keys of its compared
  fields; anything else (an array) as its :class:`Identity`.
  """
  try:
    hash(value)
    return value
  except TypeError:
    pass
  if isinstance(value, (list, tuple)):
    return (type(value), tuple(static_key(v) for v in value))
  if isinstance(value, dict):
    return (dict, tuple(sorted(
        ((static_key(k), static_key(v)) for k, v in value.items()),
        key=repr)))
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return (type(value), tuple(
        (f.name, static_key(getattr(value, f.name)))
        for f in dataclasses.fields(value) if f.compare))
  return Identity(value)


def array_key(value: Any) -> Any:
  """An array's values as a hashable key (dtype, shape, bytes); a traced or
  object array's :class:`Identity`."""
  if isinstance(value, jax.core.Tracer):
    return Identity(value)
  a = np.asarray(value)
  if a.dtype == object:
    return Identity(value)
  return (a.dtype.str, a.shape, a.tobytes())


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


def check_cost_fn(cost_fn: Any, name: str = "cost_fn") -> costs.CostFn:
  """Raise a ``TypeError`` unless ``cost_fn`` is an ott cost instance."""
  if not isinstance(cost_fn, costs.CostFn):
    raise TypeError(
        f"`{name}` must be an `ott.geometry.costs.CostFn` instance, got "
        f"{cost_fn!r}; e.g. `costs.SqEuclidean()`."
    )
  return cost_fn


def check_optimizer(name: str, optimizer: Any) -> None:
  """Check that ``optimizer`` (argument ``name``) is :obj:`None` or an optax
  ``GradientTransformation``.

  Args:
    name: The argument's name, for the message.
    optimizer: The value given.

  Raises:
    TypeError: for anything without ``init`` and ``update``.
  """
  if optimizer is not None and not (
      hasattr(optimizer, "init") and hasattr(optimizer, "update")
  ):
    raise TypeError(
        f"`{name}` must be an optax `GradientTransformation` (e.g. "
        f"`optax.adam(1e-3)`), got {type(optimizer).__name__}."
    )


def check_run_settings(
    *,
    num_train_iters: Any,
    valid_freq: Any,
    log_freq: Any,
    chunk_size: Any = 1,
    checkpoint_dir: Any = None,
    checkpoint_every: Any = 1,
    checkpoint_keep: Any = 1,
) -> None:
  """Check the settings of a run that every solver shares (steps, the
  validation and logging periods, the chunk, checkpoints).

  Args:
    num_train_iters: Steps of a run (``>= 0``).
    valid_freq: Validation period (``>= 1``).
    log_freq: Logging period (``>= 1``).
    chunk_size: Steps per compiled chunk (``>= 1``).
    checkpoint_dir: A path, or :obj:`None`.
    checkpoint_every: Checkpoint period (``>= 1``).
    checkpoint_keep: Checkpoints kept (``>= 1``).

  Raises:
    TypeError: for a value of the wrong type.
    ValueError: for a count out of range (``num_train_iters`` may be 0).
  """
  check_positive_int("num_train_iters", num_train_iters, allow_zero=True)
  check_positive_int("valid_freq", valid_freq)
  check_positive_int("log_freq", log_freq)
  check_positive_int("chunk_size", chunk_size)
  check_positive_int("checkpoint_every", checkpoint_every)
  check_positive_int("checkpoint_keep", checkpoint_keep)
  if checkpoint_dir is not None and not isinstance(
      checkpoint_dir, (str, os.PathLike)
  ):
    raise TypeError(
        "`checkpoint_dir` must be a path (str or os.PathLike), got "
        f"{type(checkpoint_dir).__name__}."
    )


def check_hyperparameters(
    *,
    dim_data: Any,
    expectile: Any,
    expectile_loss_coef: Any,
    num_train_iters: Any,
    pushforward_loss_coef: Any = 0.0,
    valid_freq: Any,
    log_freq: Any,
    chunk_size: Any = 1,
    cost_fn: Optional[costs.CostFn],
    optimizer_f: Optional[optax.GradientTransformation],
    optimizer_g: Optional[optax.GradientTransformation],
    conjugate_solver: Any = None,
    checkpoint_dir: Any = None,
    checkpoint_every: Any = 1,
    checkpoint_keep: Any = 1,
) -> None:
  """Check ENOT's scalar hyper-parameters, the run's settings
  (:func:`check_run_settings`) and the types of its parts.

  Raises:
    TypeError: for a value of the wrong type.
    ValueError: for a value out of range, e.g. ``expectile`` outside
      :math:`(0, 1]` or a negative ``expectile_loss_coef`` or
      ``pushforward_loss_coef``.
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
  if _real("pushforward_loss_coef", pushforward_loss_coef) < 0.0:
    raise ValueError(
        f"`pushforward_loss_coef` must be >= 0, got "
        f"{pushforward_loss_coef}; 0 trains ENOT as published."
    )
  check_run_settings(
      num_train_iters=num_train_iters, valid_freq=valid_freq,
      log_freq=log_freq, chunk_size=chunk_size,
      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
      checkpoint_keep=checkpoint_keep)
  if cost_fn is not None:
    check_cost_fn(cost_fn)
  check_optimizer("optimizer_f", optimizer_f)
  check_optimizer("optimizer_g", optimizer_g)
  if conjugate_solver is not None and not isinstance(
      conjugate_solver, ott_conjugate.FenchelConjugateSolver
  ):
    raise TypeError(
        "`conjugate_solver` must be an ott `FenchelConjugateSolver` (e.g. "
        "`conjugate.FenchelConjugateLBFGS()`) or None, got "
        f"{type(conjugate_solver).__name__}."
    )


def check_on_sphere(
    name: str, points: Any, atol: float = SPHERE_ATOL
) -> None:
  r"""Raise if concrete ``points`` are farther than ``atol`` from the sphere.

  Traced values (inside :func:`jax.jit`) cannot be inspected and pass.

  Args:
    name: The argument's name, for the error message.
    points: Array ``[..., d]``.
    atol: Tolerance on :math:`|\,\|x\| - 1|`.

  Raises:
    ValueError: naming ``name`` and how to fix it.
  """
  if isinstance(points, jax.core.Tracer):
    return
  arr = np.asarray(points, dtype=np.float64)
  if arr.size == 0:
    return
  err = np.abs(np.linalg.norm(arr, axis=-1) - 1.0)
  worst = float(np.nanmax(err)) if np.isfinite(err).any() else np.inf
  if not np.all(err <= atol):
    raise ValueError(
        f"`{name}` has points off the unit sphere (largest | ||x|| - 1 | = "
        f"{worst:.3g} > {atol:g}); sphere costs need unit vectors: normalise "
        f"with `x / jnp.linalg.norm(x, axis=-1, keepdims=True)`."
    )


def check_points(
    name: str,
    points: Any,
    dim: Optional[int] = None,
    domain: str = "euclidean",
    *,
    finite: bool = True,
    source: str = "is",
) -> Any:
  """Check an array of points ``[n, d]``; the one check of points.

  Args:
    name: The argument they come from, for the message (``x``,
      ``trainloader_source``, ``vec``, ...).
    points: Array-like ``[n, d]``.
    dim: Expected dimension ``d`` (the solver's ``dim_data``); :obj:`None`
      for any.
    domain: ``"euclidean"``, or ``"sphere"`` to check for unit vectors.
    finite: Check for NaN/inf (a device-to-host copy for device arrays).
    source: How the points reached us, for the message: ``"is"`` (an
      argument) or ``"yielded"`` (a batch of a loader or sampler).

  Returns:
    The points as an array (a JAX array or tracer stays as it is). Traced
    values (inside :func:`jax.jit`) are checked for their shape only.

  Raises:
    TypeError: if they are not real numbers.
    ValueError: for a wrong shape, no points, NaN/inf entries or points off
      the sphere.
  """
  traced = isinstance(points, jax.core.Tracer)
  arr = points if isinstance(points, jax.Array) or traced else np.asarray(
      points
  )
  subject = f"`{name}`" + (" yielded a batch that" if source == "yielded"
                           else "")
  if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(
      arr.dtype, np.complexfloating
  ):
    raise TypeError(
        f"{subject} has dtype {arr.dtype}; points must be real floating "
        f"point numbers."
    )
  want = "d" if dim is None else str(dim)
  if (arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0 or
      (dim is not None and arr.shape[1] != dim)):
    why = "" if dim is None else f" (the solver's dim_data={dim})"
    raise ValueError(
        f"{subject} has shape {tuple(arr.shape)}, but points must be a "
        f"non-empty array of shape [n, {want}]{why}, n >= 1."
    )
  if traced:
    return arr
  if finite and not bool(np.all(np.isfinite(np.asarray(arr)))):
    raise ValueError(
        f"{subject} contains NaN or inf entries; remove or impute them "
        f"before training."
    )
  if domain == "sphere":
    check_on_sphere(name, arr)
  return arr


def check_sampler(
    sampler: Callable[[jax.Array], Tuple[Any, ...]], dim: int,
    dim_cond: int = 0
) -> None:
  """Check that ``sampler(key)`` returns ``(x[n, dim], y[n, dim])``, or with
  ``dim_cond > 0`` ``(x[n, dim], y[n, dim], cond[n, dim_cond])``.

  By abstract evaluation (:func:`jax.eval_shape`): nothing compiles or runs.

  Raises:
    TypeError: if calling it on a PRNG key fails.
    ValueError: if it returns anything else than such arrays with the same
      ``n``.
  """
  what = "(x, y)" if not dim_cond else "(x, y, cond)"
  try:
    out = jax.eval_shape(sampler, jax.random.key(0))
  except Exception as err:  # noqa: BLE001 - report what the sampler did
    raise TypeError(
        f"`data_or_x` was taken as a sampler `key -> {what}` but calling it "
        f"on a PRNG key failed: {err}"
    ) from err
  shapes = [getattr(o, "shape", None) for o in out] if isinstance(
      out, (tuple, list)
  ) else None
  widths = (dim, dim) + ((dim_cond,) if dim_cond else ())
  if (shapes is None or len(shapes) != len(widths) or
      any(s is None or len(s) != 2 or s[1] != w
          for s, w in zip(shapes, widths))
      or len({s[0] for s in shapes}) != 1 or shapes[0][0] == 0):
    want = " and ".join(f"[n, {w}]" for w in widths)
    raise ValueError(
        f"A sampler passed to `fit` must return {what}: arrays of shape "
        f"{want} with the same n >= 1; got {out}."
    )


def check_conditions(
    name: str, conditions: Any, dim_cond: int, rows: Optional[int] = None,
    *, source: str = "is"
) -> np.ndarray:
  """Check condition vectors ``cond[n, dim_cond]`` (finite; ``rows`` of
  them).

  Raises:
    TypeError: if they are not real numbers.
    ValueError: for a wrong shape (naming ``dim_cond``), NaN/inf entries, or
      another number of rows than ``rows`` (the points they go with).
  """
  subject = f"`{name}`" + (" yielded a batch that" if source == "yielded"
                           else "")
  arr = np.asarray(conditions)
  if arr.ndim == 1 and rows is None:
    arr = arr[None]
  if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(
      arr.dtype, np.complexfloating):
    raise TypeError(
        f"{subject} has dtype {arr.dtype}; conditions must be real numbers."
    )
  if arr.ndim != 2 or arr.shape[1] != dim_cond or arr.shape[0] == 0:
    raise ValueError(
        f"{subject} has shape {tuple(arr.shape)}, but conditions must be "
        f"vectors of the solver's dim_cond={dim_cond}: an array "
        f"[n, {dim_cond}] (or one vector [{dim_cond}])."
    )
  if rows is not None and arr.shape[0] != rows:
    raise ValueError(
        f"{subject} has {arr.shape[0]} condition vectors for {rows} points: "
        f"every point (row) needs its condition."
    )
  if not np.all(np.isfinite(arr)):
    raise ValueError(
        f"{subject} contains NaN or inf entries; conditions must be finite."
    )
  return arr
