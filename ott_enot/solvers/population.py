r"""Populations: many ENOT models, one compiled program, chosen without
ground truth.

ENOT's results depend on the expectile :math:`\tau`, its weight
:math:`\lambda` and the learning rate, and which settings suit a data set is
not known in advance (the paper names this its main limitation). An
:class:`ENOTPopulation` trains a list of *members* (each a setting of
``seed``, ``expectile``, ``expectile_loss_coef`` and ``learning_rate``)
together, as one training method (:class:`~ott_enot.methods.Population`:
the states stacked along a leading axis, the step vmapped over them, one
chunk program compiled for the whole population). Every member keeps its own
optimiser state, step counter and divergence flag: a member whose step is
not finite keeps its last good state and is marked diverged while the others
train on. All members see the same batches.

Validation scores every member on held-out data with a criterion that needs
no ground truth: the Sinkhorn divergence of :math:`T(x)` to held-out target
points over the resampling floor (``fit / floor``,
:func:`ott_enot.evaluation.metrics.fit_and_floor`).
:class:`~ott_enot.PopulationResult` holds the table, the chosen member
(:meth:`~ott_enot.PopulationResult.best`) and every member's potentials.

This module is the face: the user's member dicts checked (:func:`grid`
builds them), the memory the population needs, the solver; the checks and
:class:`PopulationFace` are shared with the entropic plans' population
(:class:`~ott_enot.solvers.entropic.EntropicPopulation`).

Example::

  population = ott_enot.ENOTPopulation(
      2, members=ott_enot.solvers.population.grid(
          expectile=[0.9, 0.99], expectile_loss_coef=[0.3, 1.0], seed=[0, 1]
      ), num_train_iters=10_000, valid_freq=1000)
  result = population.fit(x, y)
  print(result.format_table())
  potentials = result.best()
"""
import itertools
import math
import numbers
import os
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import jax
import numpy as np

from ott_enot.methods.population import (
    Member,
    Population,
    PopulationResult,
    PopulationState,
)
from ott_enot.model import networks
from ott_enot.solvers import base
from ott_enot.solvers import enot as enot_face

__all__ = [
    "MEMBER_KEYS",
    "Member",
    "grid",
    "ENOTPopulation",
    "PopulationFace",
    "PopulationResult",
    "memory_estimate",
    "check_members",
    "check_memory",
    "check_seeds_choose",
    "member_number",
    "member_learning_rate",
    "member_seed",
]

#: The keys a member's dict may have.
MEMBER_KEYS = (
    "seed", "expectile", "expectile_loss_coef", "learning_rate",
    "learning_rate_scale"
)


def grid(**values: Sequence[Any]) -> List[Dict[str, Any]]:
  """Every combination of the given values (the last key varies fastest).

  Args:
    values: For each key of :data:`MEMBER_KEYS` (or of
      :data:`ott_enot.solvers.entropic.MEMBER_KEYS`), a list of values.

  Returns:
    A list of member dicts for the ``members`` of :class:`ENOTPopulation`
    (or :class:`~ott_enot.solvers.entropic.EntropicPopulation`).

  Example: ``grid(expectile=[0.9, 0.99], seed=[0, 1])`` gives four members.
  """
  keys = list(values)
  for key in keys:
    if isinstance(values[key], (str, bytes)) or not isinstance(
        values[key], Sequence
    ):
      raise TypeError(
          f"grid({key}=...) takes a list of values, got "
          f"{type(values[key]).__name__}."
      )
  return [dict(zip(keys, combo))
          for combo in itertools.product(*(values[k] for k in keys))]


def check_members(
    members: Sequence[Mapping[str, Any]], keys: Sequence[str],
    make: Callable[[int, Mapping[str, Any]], Any], example: str
) -> List[Any]:
  """Members from the user's dicts, checked; raises before anything runs.

  Args:
    members: The user's list of dicts.
    keys: The settings a member may give.
    make: ``(i, spec) -> member``: one member's settings, checked (raises
      naming ``members[i]``).
    example: A ``grid(...)`` call for the error messages.

  Returns:
    The members, in order.

  Raises:
    TypeError, ValueError: naming the member, the setting and the fix.
  """
  if isinstance(members, Mapping) or not isinstance(members, Sequence):
    raise TypeError(
        f"`members` must be a list of dicts (e.g. "
        f"`ott_enot.solvers.population.{example}`), got "
        f"{type(members).__name__}."
    )
  if not members:
    raise ValueError(
        "`members` is empty: a population needs at least one member."
    )
  out = []
  for i, spec in enumerate(members):
    if not isinstance(spec, Mapping):
      raise TypeError(
          f"`members[{i}]` must be a dict of settings, got "
          f"{type(spec).__name__}."
      )
    unknown = sorted(set(spec) - set(keys))
    if unknown:
      raise ValueError(
          f"`members[{i}]` has unknown settings {unknown}; a member sets "
          f"{list(keys)} (settings that change shapes, such as the "
          f"networks or the batch size, need separate populations)."
      )
    out.append(make(i, spec))
  seeded = {m.seed is not None for m in out}
  if len(seeded) > 1:
    raise ValueError(
        "Give `seed` to every member or to none (members without one all "
        "start from the population's `rng`)."
    )
  return out


def member_number(i: int, spec: Mapping[str, Any], key: str, default: Any,
                  ok: Callable[[float], bool], why: str) -> float:
  """``spec[key]`` (else ``default``) as a finite float for which ``ok``
  holds, else a ``ValueError`` naming ``members[i][key]`` and ``why``."""
  value = spec.get(key, default)
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not math.isfinite(value) or not ok(value)):
    raise ValueError(f"`members[{i}]['{key}']` must be {why}, got {value!r}.")
  return float(value)


def member_learning_rate(i: int, spec: Mapping[str, Any],
                         default_optimizers: bool, default_learning_rate: float,
                         optimizer_args: str = "`optimizer_f`/`optimizer_g`"
                        ) -> Tuple[float, Optional[float]]:
  """``(learning_rate_scale, learning_rate)`` of ``members[i]``: from its
  ``learning_rate`` (the default optimiser's peak, over
  ``default_learning_rate``: the population's own, unless it was given
  ``optimizer_args``) or its ``learning_rate_scale`` (default 1)."""
  if "learning_rate" in spec and "learning_rate_scale" in spec:
    raise ValueError(
        f"`members[{i}]` gives both `learning_rate` and "
        f"`learning_rate_scale`; give one."
    )
  learning_rate = None
  if "learning_rate" in spec:
    if not default_optimizers:
      raise ValueError(
          f"`members[{i}]['learning_rate']` sets the peak learning rate of "
          f"the default optimiser, but the population was given "
          f"{optimizer_args}: use `learning_rate_scale` (a factor on your "
          f"optimiser's updates) instead."
      )
    learning_rate = member_number(i, spec, "learning_rate", None,
                                  lambda v: v > 0, "> 0")
    return learning_rate / default_learning_rate, learning_rate
  return member_number(i, spec, "learning_rate_scale", 1.0, lambda v: v > 0,
                       "> 0"), None


def member_seed(i: int, spec: Mapping[str, Any]) -> Optional[int]:
  """``members[i]``'s ``seed`` (an int >= 0, or :obj:`None`)."""
  seed = spec.get("seed")
  if seed is not None and (
      isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
      or seed < 0
  ):
    raise ValueError(
        f"`members[{i}]['seed']` must be an int >= 0, got {seed!r}."
    )
  return None if seed is None else int(seed)


def _member(i: int, spec: Mapping[str, Any], defaults: Dict[str, float],
            default_optimizers: bool) -> Member:
  expectile = member_number(i, spec, "expectile", defaults["expectile"],
                            lambda v: 0 < v <= 1, "in (0, 1]")
  coef = member_number(i, spec, "expectile_loss_coef",
                       defaults["expectile_loss_coef"], lambda v: v >= 0,
                       ">= 0")
  scale, learning_rate = member_learning_rate(
      i, spec, default_optimizers, enot_face.DEFAULT_LEARNING_RATE)
  return Member(member_seed(i, spec), expectile, coef, scale, learning_rate)


def _tree_bytes(tree: Any) -> int:
  return sum(
      int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
      for leaf in jax.tree.leaves(tree)
  )


def check_seeds_choose(members: Sequence[Any],
                       named_networks: Mapping[str, Any]) -> None:
  """Members' seeds must choose their networks' initialisation: an NNX
  module given as an instance carries its own parameters.

  Args:
    members: The members (each with a ``seed``).
    named_networks: ``{argument: network}`` of the population's networks.

  Raises:
    ValueError: naming the network and the fix.
  """
  if all(m.seed is None for m in members):
    return
  for arg, network in named_networks.items():
    if isinstance(network, networks.NNXNetwork) and not network.seeded:
      raise ValueError(
          f"Members differ by `seed`, but `{arg}` is an `nnx.Module` "
          f"instance ({network.name}), whose parameters its own `rngs` "
          f"chose: every member would start from them. Pass a function "
          f"`rngs -> nnx.Module` instead (e.g. `functools.partial("
          f"{network.name}, ...)`), or drop `seed` from the members."
      )


def memory_estimate(member_state: Any, members: int) -> int:
  """Bytes a population's states take while training (an estimate).

  Each member holds its parameters and optimiser state (``member_state``),
  and a step adds its gradients and updates (twice the parameters); a chunk
  may keep snapshots of the parameters for validation, and the loop keeps
  one copy of the state for checkpoints and callbacks. Activations are not
  counted (they scale with the batch, not with the members' states).

  Args:
    member_state: One member's :class:`~ott_enot.methods.ENOTTrainState` (or
      its abstract shapes).
    members: Number of members.

  Returns:
    ``members * (2 * state + 3 * params)`` bytes.
  """
  state, params = _tree_bytes(member_state), _tree_bytes(member_state.params)
  return members * (2 * state + 3 * params)


def check_memory(member_state: Any, members: int,
                 max_memory_bytes: Optional[int]) -> None:
  """Refuse a population whose states (:func:`memory_estimate`) need more
  than ``max_memory_bytes`` (default: the device's memory limit, or the
  host's RAM on the CPU).

  Raises:
    ValueError: with the need, the memory and the fix.
  """
  need = memory_estimate(member_state, members)
  have = (max_memory_bytes if max_memory_bytes is not None
          else _available_memory())
  if have is not None and need > have:
    raise ValueError(
        f"A population of {members} members needs about "
        f"{need / 2**20:.3g} MiB for its states (parameters, optimiser "
        f"states, gradients), more than the {have / 2**20:.3g} MiB "
        f"available: train fewer members at a time, or smaller networks."
    )


def _available_memory() -> Optional[int]:
  """The default device's memory limit (accelerators) or the host's RAM."""
  device = jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return None


class PopulationFace:
  """What every population face shows (:class:`ENOTPopulation`,
  :class:`~ott_enot.solvers.entropic.EntropicPopulation`): its size, its
  result and each member's. Mixed into a
  :class:`~ott_enot.solvers.base.Solver` whose method is a
  :class:`~ott_enot.methods.Population` and that has ``members``."""

  @property
  def size(self) -> int:
    """The number of members."""
    return len(self.members)

  def output(self, logs: base.Logs) -> PopulationResult:
    """The trained :class:`~ott_enot.PopulationResult`, logs inside (each
    member's best validated parameters with ``keep_best``)."""
    best = self.kept_best()
    return PopulationResult(self.method, self.selected_state(), logs,
                            self.valid_freq,
                            None if best is None else best.score)

  def member_potentials(
      self, i: int, state: Optional[PopulationState] = None) -> Any:
    """Member ``i``'s result (of
    :meth:`~ott_enot.solvers.base.Solver.selected_state` by default)."""
    return self.method.member_potentials(
        self.selected_state() if state is None else state, i)


class ENOTPopulation(PopulationFace, enot_face.PairFit, enot_face.ENOTFace):
  """A population of ENOT models trained in one compiled program.

  Takes every argument of :class:`~ott_enot.ENOTSolver` (the networks,
  optimisers, cost, steps, validation, checkpoints, mesh), which all
  members share, and ``members``: the per-member settings. A setting a
  member does not give is the population's (``expectile``,
  ``expectile_loss_coef``, learning-rate scale 1, ``rng``).

  Training is the solver's: :meth:`fit` (points, geometries, samplers) and
  :meth:`__call__` (ott's loaders) feed every member the same batches and
  return a :class:`~ott_enot.PopulationResult`. It trains the
  :class:`~ott_enot.methods.Population` method; the state (``state``, a
  :class:`~ott_enot.methods.PopulationState`) is one pytree: checkpoints save
  and resume it whole (the latest ones; a "best" checkpoint by ``w_dist`` is
  not kept, since members are chosen by :class:`~ott_enot.PopulationResult`),
  and a
  ``mesh`` replicates every member on every
  device and splits each batch over them (as for one model; it keeps all
  members in step on one batch and needs no member count that divides the
  devices). Training stops with :class:`~ott_enot.TrainingDivergedError`
  only when every member has diverged.

  Args:
    dim_data: Dimension of the data.
    args: The other positional arguments of :class:`~ott_enot.ENOTSolver`.
    members: A list of dicts with keys from :data:`MEMBER_KEYS`: ``seed``
      (the networks' initialisation, ``jax.random.key(seed)`` as a solver's
      ``rng``), ``expectile`` (:math:`\\tau`), ``expectile_loss_coef``
      (:math:`\\lambda`), ``learning_rate`` (the default optimiser's peak
      learning rate) or ``learning_rate_scale`` (a factor on the updates of
      any optimiser). :func:`grid` builds every combination.
    max_memory_bytes: Refuse populations whose states
      (:func:`memory_estimate`) need more; default: the device's memory
      limit, or the host's RAM on the CPU.
    kwargs: The other keyword arguments of :class:`~ott_enot.ENOTSolver`.

  Raises:
    TypeError, ValueError: for bad members (none, unknown keys, values out
      of range, ``learning_rate`` with a user optimiser), a population too
      large for the memory, or the solver's own bad arguments; before
      anything compiles.
  """

  def __init__(self, dim_data: int, *args: Any,
               members: Sequence[Mapping[str, Any]],
               max_memory_bytes: Optional[int] = None, **kwargs: Any):
    config = enot_face.configure((dim_data,) + args, kwargs)
    self.enot = config.method
    self.default_optimizers = config.default_optimizers
    self.max_memory_bytes = max_memory_bytes
    defaults = {"expectile": self.enot.expectile,
                "expectile_loss_coef": self.enot.expectile_loss_coef}
    self.members = check_members(
        members, MEMBER_KEYS,
        lambda i, spec: _member(i, spec, defaults, config.default_optimizers),
        "grid(expectile=[0.9, 0.99])")
    check_seeds_choose(self.members, {"neural_f": self.enot.model.neural_f,
                                      "neural_g": self.enot.model.neural_g})
    method = Population(self.enot, tuple(self.members))
    check_memory(jax.eval_shape(method.member_init, config.rng),
                 len(self.members), max_memory_bytes)
    super().__init__(method, method.init(config.rng), **config.run)
