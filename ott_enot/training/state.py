r"""What the engine knows of a training state: its step counter, its
divergence flag, and the guard every step goes through.

A method's state (:class:`TrainState`) is any pytree with

- ``step``: ``int32``, the number of the run's next step (the steps ``0, ...,
  step - 1`` are applied);
- ``diverged``: ``bool``, a step was not finite and was not applied; no
  later step applies;
- ``with_progress(step, diverged)``: the same state with new values of both.

Both are scalars for one model, or ``[members]`` for a state that trains
several independent members in lockstep (a population, whose every leaf then
has a leading member axis). :func:`guarded_step` is the one place that
decides whether a step applies; :func:`restart` the one place that starts a
run. :class:`NetworkState` is one network's parameters and optimiser state,
the part most methods' states are made of.
"""
from typing import Any, Callable, Dict, Optional, Protocol, Tuple

import jax
import jax.numpy as jnp
import optax

from flax import struct

__all__ = [
    "TrainState",
    "NetworkState",
    "TrainingDivergedError",
    "all_finite",
    "guarded_step",
    "restart",
    "expand_flag",
]

Params = Any


class TrainState(Protocol):
  """The engine's contract with a method's state (module docstring)."""

  step: jnp.ndarray
  diverged: jnp.ndarray

  def with_progress(self, step: jnp.ndarray,
                    diverged: jnp.ndarray) -> "TrainState":
    """The same state with these ``step`` and ``diverged``."""


class NetworkState(struct.PyTreeNode):
  """One network's parameters and optax optimiser state.

  Attributes:
    params: The network's parameters.
    opt_state: The optimiser's state.
    tx: The optax optimiser (static).
  """
  params: Params
  opt_state: optax.OptState
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: Params,
             tx: optax.GradientTransformation) -> "NetworkState":
    """Parameters with a fresh optimiser state."""
    return cls(params, tx.init(params), tx)

  def apply_gradients(self, grads: Params,
                      scale: Optional[jnp.ndarray] = None) -> "NetworkState":
    """One optimiser update: ``params + scale * tx.update(grads)``.

    ``scale`` (default 1) multiplies the optimiser's updates: for Adam, SGD
    and their schedules, the same as multiplying the learning rate.
    """
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    if scale is not None:
      updates = jax.tree.map(lambda u: (scale * u).astype(u.dtype), updates)
    return self.replace(
        params=optax.apply_updates(self.params, updates), opt_state=opt_state
    )


class TrainingDivergedError(FloatingPointError):
  """Training produced a non-finite loss or gradient.

  Attributes:
    step: The first step that was not finite (it was not applied).
    potentials: What the method gives for the last good state (for ENOT,
      :class:`~ott_enot.ENOTPotentials`).
    logs: The logs up to the failure.
  """

  def __init__(self, step: int, potentials: Any, logs: Dict[str, Any],
               advice: str = ""):
    self.step = step
    self.potentials = potentials
    self.logs = logs
    super().__init__(
        f"Training diverged at step {step}: the loss or its gradients "
        f"became NaN/inf. The solver keeps the last good state (also in "
        f"`err.potentials`). {advice}".rstrip()
    )


def all_finite(loss: jnp.ndarray, params: Params) -> jnp.ndarray:
  """Whether the loss and all parameters are finite, per member.

  One global norm per member instead of a reduction per leaf: a NaN/inf
  anywhere (from the gradients or from the optimiser) makes the norm
  non-finite, and the compiled step stays small (this halves its compile
  time on the CPU). ``loss`` is a scalar, or ``[members]`` with the
  parameters' leaves stacked on a leading member axis.
  """
  check = lambda l, p: jnp.isfinite(l + optax.global_norm(p))
  for _ in range(jnp.ndim(loss)):
    check = jax.vmap(check)
  return check(loss, params)


def expand_flag(flag: jnp.ndarray, leaf: jnp.ndarray) -> jnp.ndarray:
  """``flag`` ``[members]`` (or a scalar) broadcastable against ``leaf``."""
  if not flag.ndim:
    return flag  # a scalar broadcasts as it is (no op per leaf to compile)
  return flag.reshape(flag.shape + (1,) * (jnp.ndim(leaf) - flag.ndim))


def guarded_step(
    update: Callable[[Any], Tuple[Any, Any]],
    state: TrainState,
    params_of: Callable[[Any], Params],
    active: Any = True,
) -> Tuple[Any, Any]:
  """One step of ``update`` that applies only where it should (pure).

  The step applies (and ``step`` advances) iff it is ``active``, the state
  has not diverged, and its loss and updated parameters are finite (a
  non-finite gradient makes the updated parameters non-finite); an active
  step that is not finite marks the state ``diverged`` instead. For a state
  of members this is decided member by member.

  Args:
    update: ``state -> (updated state, metrics)``, the method's step;
      ``metrics.loss`` is a scalar (``[members]``).
    state: The :class:`TrainState` before the step.
    params_of: The method's parameters of a state (checked for finiteness).
    active: Boolean scalar (or ``[members]``); an inactive step (a masked
      position of a chunk) is computed but changes nothing.

  Returns:
    ``(state, metrics)``.
  """
  new, metrics = update(state)
  finite = all_finite(metrics.loss, params_of(new))
  live = active & ~state.diverged
  apply = live & finite
  kept = jax.tree.map(lambda n, o: jnp.where(expand_flag(apply, n), n, o), new,
                      state)
  return kept.with_progress(
      state.step + apply.astype(jnp.int32), state.diverged | (live & ~finite)
  ), metrics


def restart(state: TrainState, step: Any = 0) -> Any:
  """The same state at ``step`` of a run: a new run (``step = 0``) starts
  every member live; a resumed one (``step > 0``) keeps a member that
  diverged before frozen where it stopped, as in an uninterrupted run."""
  step = jnp.asarray(step, jnp.int32)
  frozen = state.diverged & (step > 0)
  return state.with_progress(jnp.where(frozen, state.step, step), frozen)
