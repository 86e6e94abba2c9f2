r"""Checkpoints of whole training runs, with orbax: latest K, best, resume.

A checkpoint holds everything a run needs to go on as if it had never
stopped: both networks' parameters and optimiser states (the
:class:`~ott_enot.training.ENOTTrainState`, through
:func:`flax.serialization.to_state_dict`), the last completed step (the
on-device samplers of ``fit`` are keyed by the step, so that is their
position), how many validation batches were used, the logs so far, and what
the state was trained for (cost, parameterisation, dimension, the shapes of
every array), so that a checkpoint of another problem is refused with a clear
error instead of a shape crash.

Layout of ``directory``::

  directory/latest/<step>/   the latest ``keep`` checkpoints
  directory/best/<step>/     the one with the best validation ``w_dist``

Writes are orbax's: asynchronous (the device-to-host copy happens before
:meth:`Checkpointer.save` returns, the file writes in the background), and
atomic (a checkpoint directory appears only once complete), so a crash never
corrupts the latest good checkpoint.
"""
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import jax
import numpy as np
from flax import serialization

__all__ = [
    "FORMAT",
    "CheckpointError",
    "Checkpointer",
    "checkpoint_steps",
    "read_params",
    "signature",
]

#: Version tag stored in every checkpoint's metadata.
FORMAT = "ott-enot-checkpoint-1"
_KINDS = ("latest", "best")


class CheckpointError(ValueError):
  """A checkpoint that cannot be used for this solver (or none at all)."""


def _ocp():
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp


def _shapes(tree: Any) -> Dict[str, List[int]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in leaves
  }


def signature(solver: Any) -> Dict[str, Any]:
  """What a checkpoint of ``solver`` must match to be restored into it.

  The cost's class, its pytree structure and parameters, the
  parameterisation, the dimension, the direction schedule, and the shape of
  every array of the training state.
  """
  cost = solver.cost_fn
  leaves, treedef = jax.tree_util.tree_flatten(cost)
  return {
      "cost": {
          "type": f"{type(cost).__module__}.{type(cost).__qualname__}",
          "tree": str(treedef),
          "leaves": [np.asarray(leaf).tolist() for leaf in leaves],
      },
      "parameterisation": solver.parameterisation,
      "dim_data": int(solver.dim_data),
      "bidirectional": bool(solver.is_bidirectional),
      "shapes": _shapes(serialization.to_state_dict(solver.state)),
  }


def checkpoint_steps(directory: Union[str, os.PathLike],
                     kind: str = "latest") -> Tuple[int, ...]:
  """The steps of the complete checkpoints of ``kind`` in ``directory``."""
  if kind not in _KINDS:
    raise ValueError(f"`kind` must be one of {_KINDS}, got {kind!r}.")
  path = os.path.join(os.path.abspath(os.fspath(directory)), kind)
  if not os.path.isdir(path):
    return ()
  return tuple(sorted(_ocp().utils.checkpoint_steps(path)))


class Checkpointer:
  """Writes and reads a solver's checkpoints in ``directory``.

  Args:
    directory: Where to write (created if missing).
    keep: How many of the latest checkpoints to keep.
    every: Write after the chunk of steps that reaches each multiple of
      ``every`` (and after the last step).
    best: Also keep the checkpoint with the highest validation ``w_dist``
      (the dual estimate of the OT cost that training maximises), written
      when a validation improves on it.
  """

  def __init__(self, directory: Union[str, os.PathLike], *, keep: int = 3,
               every: int = 1000, best: bool = True):
    ocp = _ocp()
    self.directory = os.path.abspath(os.fspath(directory))
    self.keep, self.every, self.best = int(keep), int(every), bool(best)
    self._managers = {}
    for kind in _KINDS if best else _KINDS[:1]:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=self.keep if kind == "latest" else 1,
          best_fn=(lambda m: m["w_dist"]) if kind == "best" else None,
          best_mode="max",
          enable_async_checkpointing=True,
          create=True,
      )
      self._managers[kind] = ocp.CheckpointManager(
          os.path.join(self.directory, kind), options=options,
          item_names=("state", "meta")
      )
    self._best_w_dist = -np.inf
    best_steps = checkpoint_steps(self.directory, "best") if best else ()
    if best_steps:
      meta = self._read_meta("best", best_steps[-1])
      self._best_w_dist = float(meta.get("w_dist", -np.inf))

  # -- writing ----------------------------------------------------------------

  def due(self, last_saved: int, step: int, final: bool) -> bool:
    """Whether the chunk that ended at ``step`` should be written."""
    return final or step // self.every > max(last_saved, 0) // self.every

  def save(self, step: int, state: Any, *, meta: Dict[str, Any],
           w_dist: Optional[float] = None, latest: bool = True) -> None:
    """Write ``state`` after ``step`` as the latest and, if ``w_dist`` beats
    the best so far, as the best checkpoint (asynchronously)."""
    ocp = _ocp()
    state_dict = serialization.to_state_dict(state)
    meta = dict(meta, format=FORMAT, step=int(step))
    if w_dist is not None:
      meta["w_dist"] = float(w_dist)
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state_dict), meta=ocp.args.JsonSave(meta)
    )
    if latest and step not in self._managers["latest"].all_steps():
      self._managers["latest"].save(step, args=args)
    if (self.best and w_dist is not None and np.isfinite(w_dist)
        and w_dist > self._best_w_dist):
      self._best_w_dist = float(w_dist)
      self._managers["best"].save(
          step, args=args, metrics={"w_dist": float(w_dist)}, force=True
      )

  def wait(self) -> None:
    """Block until every pending write is on disk."""
    for manager in self._managers.values():
      manager.wait_until_finished()

  def close(self) -> None:
    """Finish pending writes and release the managers."""
    for manager in self._managers.values():
      manager.wait_until_finished()
      manager.close()

  # -- reading ----------------------------------------------------------------

  def _read_meta(self, kind: str, step: int) -> Dict[str, Any]:
    ocp = _ocp()
    restored = self._managers[kind].restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return dict(restored.meta)

  def restore(self, solver: Any, kind: str = "latest",
              step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
    """The training state and metadata of a checkpoint, for ``solver``.

    Args:
      solver: The :class:`~ott_enot.ExpectileNeuralDual` to restore into
        (its state gives the structure; nothing of it is changed).
      kind: ``"latest"`` or ``"best"``.
      step: Which checkpoint; default the newest of ``kind``.

    Returns:
      ``(state, meta)``: an :class:`~ott_enot.training.ENOTTrainState` and
      the metadata (``step``, ``logs``, ``num_validations``, ...).

    Raises:
      CheckpointError: if there is no checkpoint, or it was written for
        another cost, parameterisation, dimension or network shapes.
    """
    ocp = _ocp()
    if kind not in self._managers:
      raise ValueError(
          f"`kind` must be one of {tuple(self._managers)}, got {kind!r}."
      )
    step = _find_step(self.directory, kind, step)
    meta = self._read_meta(kind, step)
    if meta.get("format") != FORMAT:
      raise CheckpointError(
          f"{self.directory!r} holds a checkpoint of format "
          f"{meta.get('format')!r}, not {FORMAT!r}."
      )
    want = signature(solver)
    for key, what in (("cost", "cost"), ("parameterisation",
                                         "parameterisation"),
                      ("dim_data", "dimension"),
                      ("bidirectional", "direction schedule"),
                      ("shapes", "network or optimiser shapes")):
      if meta["signature"][key] != want[key]:
        raise CheckpointError(
            f"The checkpoint in {self.directory!r} (step {step}) was written "
            f"for another {what}: {_diff(meta['signature'][key], want[key])}. "
            f"Build the solver as the run that wrote it was built."
        )
    target = jax.tree.map(
        ocp.utils.to_shape_dtype_struct,
        serialization.to_state_dict(solver.state)
    )
    restored = self._managers[kind].restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )
    state = serialization.from_state_dict(solver.state, restored.state)
    return state, meta


def _find_step(directory: Union[str, os.PathLike], kind: str,
               step: Optional[int]) -> int:
  """``step`` (default the newest) among the complete checkpoints of ``kind``.

  Raises:
    CheckpointError: if there is none, or not of ``step``.
  """
  steps = checkpoint_steps(directory, kind)
  if not steps:
    raise CheckpointError(
        f"No {kind} checkpoint in {os.fspath(directory)!r}: train with "
        f"`checkpoint_dir` set first (or point at the right directory)."
    )
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise CheckpointError(
        f"No {kind} checkpoint of step {step} in {os.fspath(directory)!r}; "
        f"there are {list(steps)}."
    )
  return step


def read_params(directory: Union[str, os.PathLike], kind: str = "latest",
                step: Optional[int] = None) -> Dict[str, Any]:
  """Both networks' parameters in a checkpoint, ``{"f": ..., "g": ...}``.

  Raises:
    CheckpointError: if ``directory`` has no such checkpoint.
  """
  ocp = _ocp()
  step = _find_step(directory, kind, step)
  path = os.path.join(os.path.abspath(os.fspath(directory)), kind)
  with ocp.CheckpointManager(path, item_names=("state", "meta")) as manager:
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  state = restored.state
  return {"f": state["state_f"]["params"], "g": state["state_g"]["params"]}


def _diff(saved: Any, want: Any) -> str:
  if isinstance(saved, dict) and isinstance(want, dict):
    keys = sorted(set(saved) | set(want))
    diffs = [k for k in keys if saved.get(k) != want.get(k)]
    k = diffs[0]
    return f"{k}: saved {saved.get(k)!r}, this solver {want.get(k)!r}"
  return f"saved {saved!r}, this solver {want!r}"
