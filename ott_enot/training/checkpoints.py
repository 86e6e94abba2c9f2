r"""Checkpoints of whole training runs, with orbax: latest K, best, resume.

A checkpoint holds everything a run needs to go on as if it had never
stopped: the method's whole training state (for ENOT both networks'
parameters and optimiser states and the step counter, through
:func:`flax.serialization.to_state_dict`; the on-device samplers of ``fit``
are keyed by the step, so that is their position), how many validation
batches were used, the logs so far, and the run's :func:`signature` (what the
method describes of itself, for ENOT the cost, parameterisation and
dimensions, and the shapes of every array), so that a checkpoint of another
problem is refused with a clear error instead of a shape crash.

The :class:`Checkpointer` owns the whole policy: the loop tells it about
every chunk (:meth:`Checkpointer.after_chunk`) and it decides what to write.

Layout of ``directory``::

  directory/latest/<step>/   the latest ``keep`` checkpoints
  directory/best/<step>/     the state after the validation whose
                             parameters training returns (by the method's
                             ``selection_metric``; ENOT: ``fit/floor``)

A latest checkpoint also holds the run's best validated parameters so far
(item ``best``, their step and score in the metadata's ``selection``), so
that a resumed run returns what the uninterrupted one would.

Writes are orbax's: asynchronous (the device-to-host copy happens before
``Checkpointer.save`` returns, the file writes in the background), and
atomic (a checkpoint directory appears only once complete), so a crash never
corrupts the latest good checkpoint.
"""
import importlib
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from ott.geometry import costs

__all__ = [
    "FORMAT",
    "CheckpointError",
    "Checkpointer",
    "checkpoint_steps",
    "read_state",
    "describe_cost",
    "signature",
]

#: Version tag stored in every checkpoint's metadata.
FORMAT = "ott-enot-checkpoint-2"
_KINDS = ("latest", "best")


class CheckpointError(ValueError):
  """A checkpoint that cannot be used for this run (or none at all)."""


def _shapes(tree: Any) -> Dict[str, List[int]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in leaves
  }


def describe_cost(cost_fn: costs.CostFn) -> Dict[str, Any]:
  """A cost as a JSON value: its class (by import path), pytree structure and
  parameters."""
  leaves, treedef = jax.tree_util.tree_flatten(cost_fn)
  return {
      "type": f"{type(cost_fn).__module__}.{type(cost_fn).__qualname__}",
      "tree": str(treedef),
      "leaves": [np.asarray(leaf).tolist() for leaf in leaves],
  }


def signature(description: Dict[str, Any], state: Any) -> Dict[str, Any]:
  """What a checkpoint must match to be restored into a run (a JSON value):
  the method's ``description``
  (:meth:`~ott_enot.training.method.TrainingMethod.describe`) and the shape
  of every array of the training ``state``."""
  return dict(description,
              shapes=_shapes(serialization.to_state_dict(state)))


def checkpoint_steps(directory: Union[str, os.PathLike],
                     kind: str = "latest") -> Tuple[int, ...]:
  """The steps of the complete checkpoints of ``kind`` in ``directory``."""
  if kind not in _KINDS:
    raise ValueError(f"`kind` must be one of {_KINDS}, got {kind!r}.")
  path = os.path.join(os.path.abspath(os.fspath(directory)), kind)
  if not os.path.isdir(path):
    return ()
  return tuple(sorted(ocp.utils.checkpoint_steps(path)))


class Checkpointer:
  """Writes and reads the checkpoints of runs with one :func:`signature`.

  Args:
    directory: Where to write (created if missing).
    signature: The run's :func:`signature`, written with every checkpoint
      and compared with every checkpoint restored.
    keep: How many of the latest checkpoints to keep.
    every: Write after the chunk of steps that reaches each multiple of
      ``every`` (and after the last step).
    metric: The method's ``selection_metric`` (ENOT's ``fit/floor``): a
      "best" checkpoint is written whenever the parameters training returns
      change (the loop's :class:`~ott_enot.training.loop.Best`);
      :obj:`None`: none is kept.
  """

  def __init__(self, directory: Union[str, os.PathLike], *,
               signature: Dict[str, Any], keep: int = 3, every: int = 1000,
               metric: Optional[str] = "fit/floor"):
    self.directory = os.path.abspath(os.fspath(directory))
    self.signature = signature
    self.keep, self.every, self.metric = int(keep), int(every), metric
    self._managers = {}
    for kind in _KINDS if metric is not None else _KINDS[:1]:
      # "best": the last one written (the parameters training returns)
      options = ocp.CheckpointManagerOptions(
          max_to_keep=self.keep if kind == "latest" else 1,
          enable_async_checkpointing=True,
          create=True,
          # several processes: the two managers may save one step at once;
          # their barriers must not share names
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix=kind),
      )
      self._managers[kind] = ocp.CheckpointManager(
          os.path.join(self.directory, kind), options=options,
          item_names=("state", "meta", "best")
      )

  # -- writing ----------------------------------------------------------------

  def after_chunk(
      self, first: int, last: int, state: Callable[[], Any], *, final: bool,
      improved: bool, best: Any, meta: Dict[str, Any]
  ) -> None:
    """Write what the policy asks for after a chunk of steps.

    The latest checkpoint after the chunk that reaches a multiple of
    ``every`` (``first <= k * every <= last``, ``k >= 1``) and after the last
    step (``final``), with the run's best validated parameters; the best one
    when a validation of the chunk changed the parameters training returns
    (``improved``; one model's).

    Args:
      first: The chunk's first step.
      last: The chunk's last step (the checkpoint's ``step``).
      state: Returns a copy of the state after the chunk (called only if
        something is written).
      final: Whether ``last`` is the run's last step.
      improved: Whether a validation of the chunk changed the parameters
        training returns.
      best: The run's :class:`~ott_enot.training.loop.Best` so far, or
        :obj:`None`.
      meta: Metadata to write with it (``logs``, ``num_validations``).
    """
    latest = final or last // self.every > max(first - 1, 0) // self.every
    improved = bool(improved) and self.metric is not None
    if latest or improved:
      self._save(last, state(), meta=meta, best=best, latest=latest,
                 improved=improved)

  def _save(self, step: int, state: Any, *, meta: Dict[str, Any],
            best: Any, latest: bool, improved: bool) -> None:
    """Write ``state`` after ``step`` (asynchronously)."""
    items = {"state": ocp.args.StandardSave(
        serialization.to_state_dict(state))}
    meta = dict(meta, format=FORMAT, step=int(step), signature=self.signature)
    if best is not None and self.metric is not None:
      meta["selection"] = best.as_json(self.metric)
      items["best"] = ocp.args.StandardSave(
          serialization.to_state_dict(best.params))
    args = ocp.args.Composite(meta=ocp.args.JsonSave(meta), **items)
    if latest and step not in self._managers["latest"].all_steps():
      self._managers["latest"].save(step, args=args)
    if improved:
      self._managers["best"].save(step, args=args, force=True)

  def close(self, wait: bool = True) -> None:
    """Finish pending writes and release the managers.

    Args:
      wait: Wait for pending writes. :obj:`False` when another process of
        the run died: its part of a pending write never comes, and orbax's
        barrier would wait for it; the write is abandoned (it was atomic:
        the checkpoints before it stay complete).
    """
    if not wait:
      self._managers = {}
      return
    for manager in self._managers.values():
      manager.wait_until_finished()
      manager.close()

  # -- reading ----------------------------------------------------------------

  def _read_meta(self, kind: str, step: int) -> Dict[str, Any]:
    restored = self._managers[kind].restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return dict(restored.meta)

  def restore(self, like: Any, kind: str = "latest",
              step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
    """The training state and metadata of a checkpoint.

    Args:
      like: A training state of the run's structure (nothing of it is
        changed).
      kind: ``"latest"`` or ``"best"``.
      step: Which checkpoint; default the newest of ``kind``.

    Returns:
      ``(state, meta)``: a state like ``like`` and the metadata (``step``,
      the last step done; ``logs``, ``num_validations``, ...).

    Raises:
      CheckpointError: if there is no checkpoint, or its signature differs
        (for ENOT: another cost, parameterisation, dimension or network
        shapes).
    """
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
    _check_signature(meta.get("signature", {}), self.signature,
                     f"The checkpoint in {self.directory!r} (step {step})")
    target = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, serialization.to_state_dict(like)
    )
    restored = self._managers[kind].restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )
    state = serialization.from_state_dict(like, restored.state)
    return state, meta

  def restore_best(self, like: Any, kind: str = "latest",
                   step: Optional[int] = None
                   ) -> Optional[Tuple[Any, Any, Any, Any]]:
    """The best validated parameters a checkpoint holds.

    Args:
      like: Parameters of the run's structure (the method's ``params`` of a
        state).
      kind: ``"latest"`` or ``"best"``.
      step: Which checkpoint; default the newest of ``kind``.

    Returns:
      ``(step, score, params, lowest)`` (the validation's step and score,
      the parameters like ``like``, the lowest score so far), or :obj:`None`
      for a checkpoint without them (no validation before it, or an older
      format).
    """
    step = _find_step(self.directory, kind, step)
    selection = self._read_meta(kind, step).get("selection")
    if selection is None or self.metric not in selection or not os.path.isdir(
        os.path.join(self.directory, kind, str(step), "best")):
      return None
    target = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, serialization.to_state_dict(like))
    restored = self._managers[kind].restore(
        step, args=ocp.args.Composite(best=ocp.args.StandardRestore(target)))
    params = serialization.from_state_dict(like, restored.best)
    score = np.asarray(selection[self.metric], np.float64)
    return (np.asarray(selection["step"]), score, params,
            np.asarray(selection.get("lowest", score), np.float64))


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


def read_state(directory: Union[str, os.PathLike], kind: str = "latest",
               step: Optional[int] = None) -> Dict[str, Any]:
  """The training state of a checkpoint as a state dict (nested dicts of
  arrays, :func:`flax.serialization.to_state_dict`'s layout), without a
  state to restore into.

  Raises:
    CheckpointError: if ``directory`` has no such checkpoint.
  """
  step = _find_step(directory, kind, step)
  path = os.path.join(os.path.abspath(os.fspath(directory)), kind)
  with ocp.CheckpointManager(path, item_names=("state", "meta")) as manager:
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  return restored.state


#: Keys added to the signature after checkpoints of format 2 were first
#: written, with the value every earlier checkpoint had (an unconditional
#: model).
_OLDER = {"dim_cond": 0, "conditioning": "concat"}


def _check_signature(saved: Dict[str, Any], want: Dict[str, Any],
                     where: str) -> None:
  """Raise unless the saved signature matches ``want`` key by key."""
  for key, value in want.items():
    got = saved.get(key, _OLDER.get(key))
    same = _same_cost(got, value) if key == "cost" else got == value
    if not same:
      raise CheckpointError(
          f"{where} was written for another {key}: {_diff(got, value)}. "
          f"Build the solver as the run that wrote it was built."
      )


def _same_cost(saved: Any, want: Dict[str, Any]) -> bool:
  """Costs of one class (an import path of a class that moved resolves to
  it), structure and parameters."""
  if not isinstance(saved, dict):
    return False
  rest = lambda d: {k: v for k, v in d.items() if k != "type"}
  return rest(saved) == rest(want) and (
      saved.get("type") == want["type"]
      or _resolve(saved.get("type")) is _resolve(want["type"]) is not None)


def _resolve(path: Any) -> Any:
  """The class at ``module.qualname``, or :obj:`None`."""
  try:
    module, name = str(path).rsplit(".", 1)
    return getattr(importlib.import_module(module), name)
  except (ImportError, AttributeError, ValueError):
    return None


def _diff(saved: Any, want: Any) -> str:
  if isinstance(saved, dict) and isinstance(want, dict):
    keys = sorted(set(saved) | set(want))
    diffs = [k for k in keys if saved.get(k) != want.get(k)]
    k = diffs[0]
    return f"{k}: saved {saved.get(k)!r}, this solver {want.get(k)!r}"
  return f"saved {saved!r}, this solver {want!r}"
