r"""Populations: many ENOT models, one compiled program, chosen without
ground truth.

ENOT's results depend on the expectile :math:`\tau`, its weight
:math:`\lambda` and the learning rate, and which settings suit a data set is
not known in advance (the paper names this its main limitation). An
:class:`ENOTPopulation` trains a list of *members* (each a setting of
``seed``, ``expectile``, ``expectile_loss_coef`` and ``learning_rate``)
together: their states are stacked along a leading axis
(:class:`~ott_enot.step.PopulationState`), the step is vmapped over them
(:func:`~ott_enot.step.train_step`) and one chunk program is compiled for the
whole population. Every member keeps its own optimiser state, step counter
and divergence flag: a member whose step is not finite keeps its last good
state and is marked diverged while the others train on. All members see the
same batches.

Validation scores every member on held-out data with a criterion that needs
no ground truth: the Sinkhorn divergence of :math:`T(x)` to held-out target
points over the resampling floor (``fit / floor``,
:func:`ott_enot.metrics.fit_and_floor`). :class:`PopulationResult` holds the
table, the chosen member (:meth:`PopulationResult.best`) and every member's
potentials.

Example::

  population = ott_enot.ENOTPopulation(
      2, members=ott_enot.population.grid(
          expectile=[0.9, 0.99], expectile_loss_coef=[0.3, 1.0], seed=[0, 1]
      ), num_train_iters=10_000, valid_freq=1000)
  result = population.fit(x, y)
  print(result.format_table())
  potentials = result.best()
"""
import dataclasses
import itertools
import math
import numbers
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import optax

from ott_enot import metrics as metrics_lib
from ott_enot import potentials as potentials_lib
from ott_enot import solver as solver_lib
from ott_enot import step as step_lib

__all__ = [
    "MEMBER_KEYS",
    "Member",
    "grid",
    "ENOTPopulation",
    "PopulationResult",
    "memory_estimate",
]

MEMBER_KEYS = (
    "seed", "expectile", "expectile_loss_coef", "learning_rate",
    "learning_rate_scale"
)


@dataclasses.dataclass(frozen=True)
class Member:
  r"""One member's settings.

  Attributes:
    seed: Seed of its networks' initialisation (``jax.random.key(seed)``,
      as ``rng=`` of a solver trained alone), or :obj:`None` for the
      population's ``rng``.
    expectile: :math:`\tau \in (0, 1]`.
    expectile_loss_coef: :math:`\lambda \ge 0`.
    learning_rate_scale: Factor on both optimisers' updates.
    learning_rate: The peak learning rate of the default optimiser, when the
      member was given one (``learning_rate_scale`` times ``1e-3``).
  """
  seed: Optional[int]
  expectile: float
  expectile_loss_coef: float
  learning_rate_scale: float
  learning_rate: Optional[float] = None

  def as_dict(self) -> Dict[str, Any]:
    """The settings a user gave or would give (no derived ones)."""
    out = {"seed": self.seed, "expectile": self.expectile,
           "expectile_loss_coef": self.expectile_loss_coef}
    if self.learning_rate is not None:
      out["learning_rate"] = self.learning_rate
    else:
      out["learning_rate_scale"] = self.learning_rate_scale
    return out


def grid(**values: Sequence[Any]) -> List[Dict[str, Any]]:
  """Every combination of the given values (the last key varies fastest).

  Args:
    values: For each key of :data:`MEMBER_KEYS`, a list of values.

  Returns:
    A list of member dicts for :class:`ENOTPopulation`'s ``members``.

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


def _check_members(
    members: Sequence[Mapping[str, Any]], defaults: Dict[str, float],
    default_optimizers: bool
) -> List[Member]:
  """Members from the user's dicts, checked; raises before anything runs."""
  if isinstance(members, Mapping) or not isinstance(members, Sequence):
    raise TypeError(
        "`members` must be a list of dicts (e.g. "
        "`ott_enot.population.grid(expectile=[0.9, 0.99])`), got "
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
    unknown = sorted(set(spec) - set(MEMBER_KEYS))
    if unknown:
      raise ValueError(
          f"`members[{i}]` has unknown settings {unknown}; a member sets "
          f"{list(MEMBER_KEYS)} (settings that change shapes, such as the "
          f"networks or the batch size, need separate populations)."
      )
    out.append(_member(i, spec, defaults, default_optimizers))
  seeded = {m.seed is not None for m in out}
  if len(seeded) > 1:
    raise ValueError(
        "Give `seed` to every member or to none (members without one all "
        "start from the population's `rng`)."
    )
  return out


def _member(i: int, spec: Mapping[str, Any], defaults: Dict[str, float],
            default_optimizers: bool) -> Member:
  def number(key: str, ok, why: str) -> float:
    value = spec.get(key, defaults.get(key))
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not math.isfinite(value) or not ok(value)):
      raise ValueError(f"`members[{i}]['{key}']` must be {why}, got {value!r}.")
    return float(value)

  expectile = number("expectile", lambda v: 0 < v <= 1, "in (0, 1]")
  coef = number("expectile_loss_coef", lambda v: v >= 0, ">= 0")
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
          f"`optimizer_f`/`optimizer_g`: use `learning_rate_scale` (a factor "
          f"on your optimiser's updates) instead."
      )
    learning_rate = number("learning_rate", lambda v: v > 0, "> 0")
    scale = learning_rate / solver_lib.DEFAULT_LEARNING_RATE
  else:
    scale = number("learning_rate_scale", lambda v: v > 0, "> 0")
  seed = spec.get("seed")
  if seed is not None and (
      isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
      or seed < 0
  ):
    raise ValueError(
        f"`members[{i}]['seed']` must be an int >= 0, got {seed!r}."
    )
  return Member(
      None if seed is None else int(seed), expectile, coef, scale,
      learning_rate
  )


def _tree_bytes(tree: Any) -> int:
  return sum(
      int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
      for leaf in jax.tree.leaves(tree)
  )


def memory_estimate(member_state: Any, members: int) -> int:
  """Bytes a population's states take while training (an estimate).

  Each member holds its parameters and optimiser state (``member_state``),
  and a step adds its gradients and updates (twice the parameters); a chunk
  may keep snapshots of the parameters for validation, and the loop keeps
  one copy of the state for checkpoints and callbacks. Activations are not
  counted (they scale with the batch, not with the members' states).

  Args:
    member_state: One member's :class:`~ott_enot.step.ENOTTrainState` (or
      its abstract shapes).
    members: Number of members.

  Returns:
    ``members * (2 * state + 3 * params)`` bytes.
  """
  state, params = _tree_bytes(member_state), _tree_bytes(member_state.params)
  return members * (2 * state + 3 * params)


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


class ENOTPopulation(solver_lib.ENOTSolver):
  """A population of ENOT models trained in one compiled program.

  Takes every argument of :class:`~ott_enot.ENOTSolver` (the networks,
  optimisers, cost, steps, validation, checkpoints, mesh), which all
  members share, and ``members``: the per-member settings. A setting a
  member does not give is the population's (``expectile``,
  ``expectile_loss_coef``, learning-rate scale 1, ``rng``).

  Training is the solver's: :meth:`fit` (points, geometries, samplers) and
  :meth:`__call__` (ott's loaders) feed every member the same batches and
  return a :class:`PopulationResult`. The state (:attr:`state`, a
  :class:`~ott_enot.step.PopulationState`) is one pytree: checkpoints save
  and resume it whole (the latest ones; a "best" checkpoint by ``w_dist`` is
  not kept, since members are chosen by :class:`PopulationResult`), and a
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
    self._member_specs = members
    self.max_memory_bytes = max_memory_bytes
    super().__init__(dim_data, *args, **kwargs)

  def _initial_state(
      self, rng: jax.Array, optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation
  ) -> step_lib.PopulationState:
    self.members = _check_members(
        self._member_specs,
        {"expectile": self.expectile,
         "expectile_loss_coef": self.expectile_loss_coef,
         "learning_rate_scale": 1.0},
        self.default_optimizers,
    )
    init = lambda key: self.init_state(key, optimizer_f, optimizer_g)
    self._check_memory(jax.eval_shape(init, rng))
    keys = jnp.stack([
        rng if m.seed is None else jax.random.key(m.seed) for m in self.members
    ])
    hyper = step_lib.Hyperparameters(*(
        jnp.asarray([getattr(m, name) for m in self.members], jnp.float32)
        for name in ("expectile", "expectile_loss_coef",
                     "learning_rate_scale")
    ))
    return step_lib.PopulationState(jax.vmap(init)(keys), hyper)

  def _check_memory(self, member_state: Any) -> None:
    need = memory_estimate(member_state, len(self.members))
    have = (self.max_memory_bytes if self.max_memory_bytes is not None
            else _available_memory())
    if have is not None and need > have:
      raise ValueError(
          f"A population of {len(self.members)} members needs about "
          f"{need / 2**20:.3g} MiB for its states (parameters, optimiser "
          f"states, gradients), more than the {have / 2**20:.3g} MiB "
          f"available: train fewer members at a time, or smaller networks."
      )

  @property
  def size(self) -> int:
    """The number of members."""
    return len(self.members)

  def _result(self, logs: solver_lib.Train_t) -> "PopulationResult":
    return PopulationResult(self, self.state, logs)

  def _potentials_of(self, state: step_lib.PopulationState,
                     finetune_g: bool = True) -> "PopulationResult":
    del finetune_g
    return PopulationResult(self, state, None)

  def member_potentials(
      self, i: int, state: Optional[step_lib.PopulationState] = None
  ) -> potentials_lib.ENOTPotentials:
    """Member ``i``'s potentials (of :attr:`state` by default)."""
    state = self.state if state is None else state
    if not 0 <= i < self.size:
      raise IndexError(f"member {i} of a population of {self.size}")
    member = state.member(i)
    return potentials_lib.ENOTPotentials(
        member.f.params, member.g.params, self.model, self.conjugate_solver
    )

  def to_dual_potentials(self, finetune_g: bool = True) -> Any:
    """Not one map: use :meth:`member_potentials` or the result's
    :meth:`PopulationResult.best`."""
    raise TypeError(
        "A population holds several maps: use `result.best()`, "
        "`result.member(i)` or `population.member_potentials(i)`."
    )


class PopulationResult:
  """The members of a trained population, their scores, the best one.

  Attributes:
    members: The :class:`Member` settings, in order.
    logs: The run's logs: ott's layout, every value a list with one entry
      per member (``valid_logs["floor"]`` one number: it depends on the
      target only). ``None`` for the results handed to callbacks.
    steps: ``[members]``, the steps each member applied.
    diverged: ``bool[members]``.
  """

  def __init__(self, population: ENOTPopulation,
               state: step_lib.PopulationState,
               logs: Optional[solver_lib.Train_t]):
    self._population = population
    self._state = state
    self.members = list(population.members)
    self.logs = logs
    self.steps = np.asarray(state.step)
    self.diverged = np.asarray(state.diverged)

  def __len__(self) -> int:
    return len(self.members)

  def member(self, i: int) -> potentials_lib.ENOTPotentials:
    """Member ``i``'s :class:`~ott_enot.ENOTPotentials`."""
    return self._population.member_potentials(i, self._state)

  def member_logs(self, i: int) -> solver_lib.Train_t:
    """Member ``i``'s logs in ott's layout (one value per logged step)."""
    if self.logs is None:
      raise ValueError("This result has no logs (a callback's view).")
    pick = lambda v, key: v if key in ("directions", "floor") else v[i]
    return {
        part: {key: [pick(v, key) for v in values]
               for key, values in rows.items()}
        for part, rows in self.logs.items()
    }

  def scores(self) -> np.ndarray:
    """``[validations, members]``: ``fit / floor`` at each validation."""
    if self.logs is None or not self.logs["valid_logs"]["fit"]:
      raise ValueError(
          "No validation ran, so the members have no scores: train with "
          "`valid_freq` < `num_train_iters` (validation data come with "
          "`fit`'s held-out split or with the validation loaders)."
      )
    valid = self.logs["valid_logs"]
    fit = np.asarray(valid["fit"], np.float64)
    floor = np.asarray(valid["floor"], np.float64)[:, None]
    return fit / floor

  def evaluate(self, x: jnp.ndarray, y: jnp.ndarray) -> np.ndarray:
    """``[members]``: ``fit / floor`` of each member's map on held-out
    points (:func:`ott_enot.metrics.fit_and_floor`).

    Args:
      x: Held-out source points ``[n, d]``.
      y: Held-out target points ``[m, d]``, independent of ``x``.
    """
    mapped = jnp.stack([self.member(i).transport(x) for i in range(len(self))])
    fit, floor = metrics_lib.fit_and_floor(mapped, jnp.asarray(y))
    return np.asarray(fit / floor, np.float64)

  def criterion(self, x: Optional[jnp.ndarray] = None,
                y: Optional[jnp.ndarray] = None) -> np.ndarray:
    """``[members]``: ``fit / floor`` at the last validation, or on held-out
    ``x`` and ``y`` when given (:meth:`evaluate`; larger samples than a
    validation batch score more precisely). Lower is better; ``inf`` for
    diverged members."""
    if (x is None) != (y is None):
      raise ValueError("Pass both held-out `x` and `y`, or neither.")
    last = (self.scores()[-1] if x is None else self.evaluate(x, y)).copy()
    last[self.diverged | ~np.isfinite(last)] = np.inf
    return last

  def best_index(self, x: Optional[jnp.ndarray] = None,
                 y: Optional[jnp.ndarray] = None) -> int:
    """The member with the lowest :meth:`criterion`."""
    crit = self.criterion(x, y)
    if not np.isfinite(crit).any():
      raise ValueError("Every member diverged: there is no best member.")
    return int(np.argmin(crit))

  def best(self, x: Optional[jnp.ndarray] = None,
           y: Optional[jnp.ndarray] = None) -> potentials_lib.ENOTPotentials:
    """The chosen member's :class:`~ott_enot.ENOTPotentials` (by the last
    validation, or by held-out ``x`` and ``y``)."""
    return self.member(self.best_index(x, y))

  def table(self) -> List[Dict[str, Any]]:
    """One row per member: its settings, ``fit``, ``floor``, ``fit/floor``
    (the criterion), ``w_dist``, ``map_cost`` at the last validation,
    ``diverged`` and ``steps``."""
    valid = self.logs["valid_logs"] if self.logs is not None else None
    has_valid = bool(valid and valid["fit"])
    rows = []
    for i, m in enumerate(self.members):
      row = {"member": i, **m.as_dict()}
      if has_valid:
        row.update(
            fit=valid["fit"][-1][i], floor=valid["floor"][-1],
            w_dist=valid["w_dist"][-1][i], map_cost=valid["map_cost"][-1][i]
        )
        row["fit/floor"] = row["fit"] / row["floor"]
      row.update(diverged=bool(self.diverged[i]), steps=int(self.steps[i]))
      rows.append(row)
    return rows

  def format_table(self) -> str:
    """:meth:`table` as aligned text, the best member marked ``*``."""
    rows = self.table()
    best = self.best_index() if "fit/floor" in rows[0] else None
    keys = list(rows[0])
    fmt = lambda v: (f"{v:.4g}" if isinstance(v, float) else
                     "-" if v is None else str(v))
    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[j]) for c in cells))
              for j, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    out = ["  " + line(keys)]
    for i, c in enumerate(cells):
      out.append(("* " if i == best else "  ") + line(c))
    return "\n".join(out)

  def plot(self, ax: Any = None, highlight: Optional[int] = None) -> Any:
    """``fit / floor`` over the validation steps, one line per member
    (log scale), the member ``highlight`` (default :meth:`best_index`) bold.
    Returns the matplotlib axes."""
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    scores = self.scores()
    freq = self._population.valid_freq
    steps = freq * (np.arange(len(scores)) + 1)
    if ax is None:
      _, ax = plt.subplots(figsize=(7, 4))
    best = self.best_index() if highlight is None else int(highlight)
    short = {"seed": "seed", "expectile": "tau", "expectile_loss_coef": "lambda",
             "learning_rate": "lr", "learning_rate_scale": "lr x"}
    for i, m in enumerate(self.members):
      label = ", ".join(f"{short[k]} {v:g}" for k, v in m.as_dict().items()
                        if v is not None)
      ax.plot(steps, scores[:, i], marker="o", ms=3,
              lw=2.5 if i == best else 1,
              label=f"{i}: {label}" + (" *" if i == best else ""))
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("fit / resampling floor")
    ax.legend(fontsize=7)
    return ax
