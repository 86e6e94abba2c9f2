r"""A population of members of one training method, as a training method:
many settings (for :class:`~ott_enot.methods.ENOT`: ``seed``, ``expectile``,
``expectile_loss_coef`` and the learning rate; for
:class:`~ott_enot.methods.Entropic`: ``seed``, :math:`\varepsilon` and the
learning rate) in one compiled program, and their result, chosen without
ground truth.

The members' states are stacked along a leading axis
(:class:`PopulationState`), and :class:`Population`'s step is the member
method's vmapped over them, each with its own hyper-parameters, all on the
same batch; the engine guards every member on its own (its step counter and
divergence flag: a member whose step is not finite keeps its last good state
while the others train on). One validation program scores every member on
held-out data with a criterion that needs no ground truth: the Sinkhorn
divergence of the points the member pushes held-out :math:`x` to
(:math:`T(x)`, or one draw of a plan per :math:`x`) to held-out target
points over the resampling floor (``fit / floor``,
:func:`ott_enot.evaluation.metrics.fit_and_floor`, the floor computed once for
all members). :class:`PopulationResult` holds the table, the chosen member
(:meth:`PopulationResult.best`) and every member's result.

A method joins populations by declaring (as :class:`~ott_enot.methods.ENOT`
and :class:`~ott_enot.methods.Entropic` do):

- ``hyperparameters(members)``: the members' per-member scalars, a pytree of
  ``[members]`` arrays;
- ``init_member(rng, hyper, **shared)``: one member's fresh state;
- ``step(state, batch, phase, hyper=...)``: its step with a member's scalars;
- ``member_validation(params, batch, hyper)``: validation metrics (a dict
  with ``points``) and the points ``[n, d]`` whose fit judges the member;
- ``pushforward(result, x)``: the same points from a member's result;
- ``member_table_keys``: the validation entries of the table.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from flax import struct

from ott_enot.evaluation import metrics as metrics_lib

__all__ = ["Member", "PopulationState", "Population", "PopulationResult"]

Logs = Dict[str, Dict[str, List[Any]]]


@dataclasses.dataclass(frozen=True)
class Member:
  r"""One ENOT member's settings.

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


class PopulationState(struct.PyTreeNode):
  """The states of a population's members, stacked on a leading axis.

  Attributes:
    members: The member method's state (an
      :class:`~ott_enot.methods.ENOTTrainState` or
      :class:`~ott_enot.methods.EntropicTrainState`) whose leaves have a
      leading axis of size ``members`` (each member its own networks,
      optimiser states, step counter and divergence flag).
    hyper: The member method's hyper-parameters (e.g.
      :class:`~ott_enot.methods.enot.Hyperparameters`), ``[members]``.
  """
  members: Any
  hyper: Any

  @property
  def size(self) -> int:
    """The number of members."""
    return int(self.members.step.shape[0])

  @property
  def step(self) -> jnp.ndarray:
    """``int32[members]``: each member's next step."""
    return self.members.step

  @property
  def diverged(self) -> jnp.ndarray:
    """``bool[members]``: which members stopped on a non-finite step."""
    return self.members.diverged

  @property
  def params(self) -> Any:
    """The members' parameters (for ENOT ``(params_f, params_g)``), stacked
    over the members."""
    return self.members.params

  def with_progress(self, step: jnp.ndarray,
                    diverged: jnp.ndarray) -> "PopulationState":
    """The same members with these step counters and divergence flags."""
    return self.replace(members=self.members.with_progress(step, diverged))

  def member(self, i: int) -> Any:
    """Member ``i``'s state (its hyper-parameters are ``hyper``'s)."""
    return jax.tree.map(lambda a: a[i], self.members)


@dataclasses.dataclass(frozen=True)
class Population:
  r"""A population of members of one training method, as one training method
  (module docstring).

  Attributes:
    member: The method every member runs (:class:`~ott_enot.methods.ENOT`,
      whose expectile and weight each member replaces;
      :class:`~ott_enot.methods.Entropic`, whose :math:`\varepsilon` each
      member sets; its networks, optimisers, cost and schedule are shared).
    members: The members' settings (:class:`Member`,
      :class:`~ott_enot.methods.entropic.EntropicMember`; not compared: they
      live in the state, so populations of other settings share programs).
  """
  member: Any
  members: Tuple[Any, ...] = dataclasses.field(compare=False)

  selection_metric = "fit/floor"  # each member's best kept (in memory)

  @property
  def selection_tolerance(self) -> float:
    """The member method's."""
    return self.member.selection_tolerance

  @property
  def phases(self) -> int:  # noqa: D102
    return self.member.phases

  @property
  def train_log_keys(self) -> Tuple[str, ...]:  # noqa: D102
    return self.member.train_log_keys

  @property
  def valid_log_keys(self) -> Tuple[str, ...]:  # noqa: D102
    return self.member.valid_log_keys

  @property
  def divergence_advice(self) -> str:  # noqa: D102
    return self.member.divergence_advice

  @property
  def data_spec(self) -> Any:  # noqa: D102
    return self.member.data_spec

  def member_init(self, rng: jax.Array, **shared: Any) -> Any:
    """The first member's fresh state (for its shapes)."""
    hyper = jax.tree.map(lambda a: a[0],
                         self.member.hyperparameters(self.members[:1]))
    return self.member.init_member(rng, hyper, **shared)

  def init(self, rng: jax.Array, **shared: Any) -> PopulationState:
    """Every member's fresh state: from ``jax.random.key(seed)`` (as a
    solver's ``rng``), or ``rng`` for members without a seed; ``shared``:
    the member method's ``init_member`` arguments that every member shares
    (an entropic population's warm start)."""
    keys = jnp.stack([
        rng if m.seed is None else jax.random.key(m.seed) for m in self.members
    ])
    hyper = self.member.hyperparameters(self.members)
    members = jax.vmap(
        lambda key, h: self.member.init_member(key, h, **shared))(keys, hyper)
    return PopulationState(members, hyper)

  def map_members(self, state: PopulationState, fun: Any) -> PopulationState:
    """``state`` with ``fun`` applied to every member's state (vmapped; what
    ``fun`` closes over is shared, and broadcast into every member)."""
    return state.replace(members=jax.vmap(fun)(state.members))

  def step(self, state: PopulationState, batch: Tuple[jnp.ndarray, ...],
           phase: int) -> tuple:
    """Every member's step on the same batch (metrics ``[members]``)."""
    members, metrics = jax.vmap(
        lambda m, h: self.member.step(m, batch, phase, hyper=h)
    )(state.members, state.hyper)
    return state.replace(members=members), metrics

  def zero_metrics(self, state: PopulationState) -> Any:
    """The member method's zeros, ``[members]``."""
    return self.member.zero_metrics(state.members)

  def params(self, state: PopulationState) -> tuple:
    """``(params, hyper)``, stacked over the members."""
    return state.params, state.hyper

  def validation_reference(
      self, batch: Tuple[jnp.ndarray, ...]) -> metrics_lib.FitReference:
    """The member method's: one blur and floor for every member."""
    return self.member.validation_reference(batch)

  def validate(self, params: tuple, batch: Tuple[jnp.ndarray, ...],
               reference: metrics_lib.FitReference) -> dict:
    """Every member's validation metrics ``[members]``; the floors are one
    number each (they depend on the target batch only)."""
    (member_params, hyper), y = params, batch[1]

    def one(p, h):
      metrics, pushed = self.member.member_validation(p, batch, h)
      return {k: v for k, v in metrics.items() if k != "points"}, pushed

    metrics, pushed = jax.vmap(one)(member_params, hyper)
    return dict(metrics, points=y.shape[-2],
                **metrics_lib.validation_fit(pushed, y, reference))

  def selection_score(self, metrics: Dict[str, Any]) -> np.ndarray:
    """The member method's score, ``[members]``."""
    return self.member.selection_score(metrics)

  def with_params(self, state: PopulationState, params: tuple
                 ) -> PopulationState:
    """``state`` with the members' parameters (their hyper-parameters are
    the state's)."""
    return state.replace(
        members=self.member.with_params(state.members, params[0]))

  def log_row(self, step: int, metrics: Any) -> Dict[str, Any]:
    """The member method's row, every value a list over the members."""
    return self.member.log_row(step, metrics)

  def describe(self) -> Dict[str, Any]:
    """The member method's description (the shapes tell the size)."""
    return self.member.describe()

  def member_potentials(self, state: PopulationState, i: int) -> Any:
    """Member ``i``'s result (:class:`~ott_enot.ENOTPotentials`,
    :class:`~ott_enot.EntropicPotentials`)."""
    if not 0 <= i < len(self.members):
      raise IndexError(f"member {i} of a population of {len(self.members)}")
    return self.member.result(state.member(i))

  def result(self, state: PopulationState) -> "PopulationResult":
    """The members of ``state`` (a :class:`PopulationResult` without
    logs)."""
    return PopulationResult(self, state)


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

  def __init__(self, method: "Population", state: PopulationState,
               logs: Optional[Logs] = None, valid_freq: Optional[int] = None,
               best_scores: Optional[np.ndarray] = None):
    self._method = method
    self._state = state
    self.members = list(method.members)
    self.logs = logs
    self.valid_freq = valid_freq
    self.best_scores = (None if best_scores is None else
                        np.asarray(best_scores, np.float64))
    self.steps = np.asarray(state.step)
    self.diverged = np.asarray(state.diverged)

  def __len__(self) -> int:
    return len(self.members)

  def member(self, i: int) -> Any:
    """Member ``i``'s result (:class:`~ott_enot.ENOTPotentials`, or
    :class:`~ott_enot.EntropicPotentials` for an entropic population)."""
    return self._method.member_potentials(self._state, i)

  def member_logs(self, i: int) -> Logs:
    """Member ``i``'s logs in ott's layout (one value per logged step)."""
    if self.logs is None:
      raise ValueError("This result has no logs (a callback's view).")
    shared = ("directions",) + metrics_lib.REFERENCE_KEYS
    pick = lambda v, key: v if key in shared else v[i]
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
    """``[members]``: ``fit / floor`` of the points each member pushes
    held-out ``x`` to (:math:`T(x)`; one draw of an entropic plan per
    :math:`x`) on held-out points
    (:func:`ott_enot.evaluation.metrics.fit_and_floor`).

    Args:
      x: Held-out source points ``[n, d]``.
      y: Held-out target points ``[m, d]``, independent of ``x``.

    Returns:
      Array ``[members]`` (float64); 1 is a fresh target sample's score.
    """
    push = self._method.member.pushforward
    mapped = jnp.stack([push(self.member(i), x) for i in range(len(self))])
    fit, floor = metrics_lib.fit_and_floor(mapped, jnp.asarray(y))
    return np.asarray(fit / floor, np.float64)

  def criterion(self, x: Optional[jnp.ndarray] = None,
                y: Optional[jnp.ndarray] = None) -> np.ndarray:
    """``[members]``: ``fit / floor`` of the members' maps: at the
    validation whose parameters they hold (their best with ``keep_best``,
    else the last), or on held-out ``x`` and ``y`` when given
    (:meth:`evaluate`; larger samples than a validation batch score more
    precisely). Lower is better; ``inf`` for diverged members.

    Args:
      x: Held-out source points ``[n, d]``, or :obj:`None`.
      y: Held-out target points ``[m, d]``, with ``x``.

    Returns:
      Array ``[members]``.

    Raises:
      ValueError: for one of ``x`` and ``y`` without the other.
    """
    if (x is None) != (y is None):
      raise ValueError("Pass both held-out `x` and `y`, or neither.")
    if x is not None:
      last = self.evaluate(x, y)
    else:
      last = self.scores()[-1].copy()
      if self.best_scores is not None:  # where validation chose
        chose = np.isfinite(self.best_scores)
        last[chose] = self.best_scores[chose]
    last[self.diverged | ~np.isfinite(last)] = np.inf
    return last

  def best_index(self, x: Optional[jnp.ndarray] = None,
                 y: Optional[jnp.ndarray] = None) -> int:
    """The member with the lowest :meth:`criterion`.

    Args:
      x: Held-out source points ``[n, d]``, or :obj:`None` (the last
        validation decides).
      y: Held-out target points ``[m, d]``, with ``x``.

    Returns:
      The member's index.

    Raises:
      ValueError: if every member diverged.
    """
    crit = self.criterion(x, y)
    if not np.isfinite(crit).any():
      raise ValueError("Every member diverged: there is no best member.")
    return int(np.argmin(crit))

  def best(self, x: Optional[jnp.ndarray] = None,
           y: Optional[jnp.ndarray] = None) -> Any:
    """The chosen member's result (by the last validation, or by held-out
    ``x`` and ``y``).

    Args:
      x: Held-out source points ``[n, d]``, or :obj:`None`.
      y: Held-out target points ``[m, d]``, with ``x``.

    Returns:
      The member's potentials (:meth:`member` of :meth:`best_index`).

    Raises:
      ValueError: if every member diverged.
    """
    return self.member(self.best_index(x, y))

  def table(self) -> List[Dict[str, Any]]:
    """One row per member: its settings, ``fit``, ``floor``, ``fit/floor``,
    ``strays`` and the member method's ``member_table_keys`` (ENOT:
    ``w_dist``, ``map_cost``; entropic: ``sample_cost``, ``acceptance``) at
    the last validation; with
    ``keep_best``, the ``kept step`` and ``kept fit/floor`` (the criterion)
    of the parameters it holds; ``diverged`` and ``steps``.

    Returns:
      A list of dicts, one per member, in member order.
    """
    valid = self.logs["valid_logs"] if self.logs is not None else None
    has_valid = bool(valid and valid["fit"])
    rows = []
    for i, m in enumerate(self.members):
      row = {"member": i, **m.as_dict()}
      if has_valid:
        row.update(fit=valid["fit"][-1][i], floor=valid["floor"][-1])
        row["fit/floor"] = row["fit"] / row["floor"]
        row["strays"] = valid["strays"][-1][i]
        row.update({key: valid[key][-1][i]
                    for key in self._method.member.member_table_keys})
      if (self.best_scores is not None and "selection" in (self.logs or {})
          and np.isfinite(self.best_scores[i])):
        row["kept step"] = int(self.logs["selection"]["step"][i])
        row["kept fit/floor"] = float(self.best_scores[i])
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

    Args:
      ax: Matplotlib axes to draw on; default a new figure.
      highlight: The member drawn bold; default :meth:`best_index`.

    Returns:
      The matplotlib axes.
    """
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    scores = self.scores()
    steps = self.valid_freq * (np.arange(len(scores)) + 1)
    if ax is None:
      _, ax = plt.subplots(figsize=(7, 4))
    best = self.best_index() if highlight is None else int(highlight)
    short = {"seed": "seed", "expectile": "tau", "expectile_loss_coef": "lambda",
             "learning_rate": "lr", "learning_rate_scale": "lr x",
             "epsilon": "eps"}
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
