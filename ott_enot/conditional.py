r"""Conditional ENOT: one model of the maps :math:`T(x \mid c)` of a family of
OT problems indexed by a condition :math:`c \in \mathbb{R}^k`.

For every condition :math:`c` the networks :math:`f(\cdot \mid c)`,
:math:`g(\cdot \mid c)` (:mod:`ott_enot.networks`: the condition
concatenated to the point, or FiLM) solve ENOT's problem between
:math:`\alpha_c` and :math:`\beta_c`,

.. math::

  \sup_{g} \inf_{T} \; \mathbb{E}_{c}\Big[\mathbb{E}_{\alpha_c}[c(x,
  T(x \mid c)) - g(T(x \mid c) \mid c)] + \mathbb{E}_{\beta_c}[g(y \mid
  c)]\Big],

with the expectile regulariser on pairs :math:`(x_i, y_i)` of one condition
:math:`c_i`: a batch's rows may mix conditions, never within a row. Since
the problems decouple over :math:`c`, the optimum is every condition's own
ENOT solution; sharing one network is what lets the model answer for a
condition it never saw, between (and, less reliably, beyond) the trained
ones, when the condition vectors describe the conditions (a dose, a time,
an angle, an embedding) rather than name them (one-hot).

:class:`ConditionalExpectileNeuralDual` trains it from a dict of ott problems
(:class:`~ott_enot.conditional_data.ConditionalStream`), a pure sampler
``key -> (x, y, c)``, or six ott-style loaders; :class:`ConditionalPotentials`
transports at any condition and gives an ordinary
:class:`~ott_enot.ENOTPotentials` at one (:meth:`ConditionalPotentials.at`).
"""
import json
import numbers
import os
import warnings
from typing import Any, Callable, Dict, Hashable, Iterator, Mapping, Optional
from typing import Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from flax import linen as nn
from flax import serialization
from ott.neural.networks.layers import conjugate as ott_conjugate

from ott_enot import checkpoints, checks, conditional_data, feeds, maps
from ott_enot import networks
from ott_enot import potentials as potentials_lib
from ott_enot import solver as solver_lib
from ott_enot import step as step_lib

__all__ = ["ConditionalExpectileNeuralDual", "ConditionalPotentials"]

CONDITIONING = ("concat", "film")
Condition_t = Union[Hashable, jnp.ndarray]
Params = Any


@jtu.register_pytree_node_class
class ConditionalPotentials:
  r"""Transport maps :math:`T(x \mid c)` (and inverses) learned by conditional
  ENOT, at any condition.

  A pytree whose leaves are the networks' parameters. :meth:`at` gives the
  ordinary :class:`~ott_enot.ENOTPotentials` (an ott ``DualPotentials``) of
  one condition, for ott's tools and plots.

  Args:
    params_f: Parameters of the ``f`` network.
    params_g: Parameters of the ``g`` network.
    model: The conditional :class:`~ott_enot.maps.TransportModel`.
    conjugate_solver: As for :class:`~ott_enot.ENOTPotentials`.
    table: ``{label: vector [k]}`` of the conditions trained from labelled
      data (so that ``condition=label`` works), or :obj:`None`.
  """

  def __init__(
      self,
      params_f: Params,
      params_g: Params,
      model: maps.TransportModel,
      conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver] = None,
      table: Optional[Mapping[Hashable, np.ndarray]] = None,
  ):
    self.params_f = params_f
    self.params_g = params_g
    self.model = model
    self.conjugate_solver = conjugate_solver
    self.table = None if table is None else dict(table)

  @property
  def dim_cond(self) -> int:
    """Dimension :math:`k` of the conditions."""
    return self.model.dim_cond

  @property
  def is_bidirectional(self) -> bool:
    """Whether :meth:`transport` can map target points back."""
    return self.model.parameterisation != "direct"

  def condition_vector(self, condition: Condition_t) -> jnp.ndarray:
    """The vector ``[k]`` (or ``[n, k]``) of a label of :attr:`table` or of
    a vector.

    Raises:
      ValueError: for a label not in :attr:`table`, a vector of another
        dimension than ``dim_cond``, or NaN/inf.
    """
    if isinstance(condition, jax.core.Tracer):
      return condition
    if self.table is not None and _hashable(condition) and (
        condition in self.table):
      return jnp.asarray(self.table[condition])
    if not isinstance(condition, (numbers.Real, list, tuple, np.ndarray,
                                  jax.Array)) or isinstance(condition, bool):
      known = [] if self.table is None else list(self.table)
      raise ValueError(
          f"`condition={condition!r}` is not a vector nor a label of the "
          f"training data (labels: {known}); pass a vector [{self.dim_cond}]."
      )
    arr = np.asarray(condition, np.float32)
    if arr.ndim == 0 and self.dim_cond == 1:
      arr = arr[None]
    checks.check_conditions("condition", np.atleast_2d(arr), self.dim_cond)
    return jnp.asarray(arr)

  def at(self, condition: Condition_t) -> potentials_lib.ENOTPotentials:
    r"""The potentials and maps of one condition, :math:`x \mapsto T(x \mid
    c)`: an :class:`~ott_enot.ENOTPotentials` (ott's ``DualPotentials``, its
    plots and tools).

    Args:
      condition: A vector ``[k]``, or a label of :attr:`table`.

    Raises:
      ValueError: for several vectors (``[n, k]``: use :meth:`transport`),
        or a bad condition.
    """
    c = self.condition_vector(condition)
    if c.ndim != 1:
      raise ValueError(
          f"`at` takes one condition, a vector [{self.dim_cond}]; got shape "
          f"{tuple(c.shape)}. For one condition per point use "
          f"`transport(x, condition=c)`."
      )
    return potentials_lib.ENOTPotentials(
        self.params_f, self.params_g, maps.AtCondition(self.model, c),
        self.conjugate_solver
    )

  def transport(self, vec: jnp.ndarray, condition: Condition_t,
                forward: bool = True) -> jnp.ndarray:
    r"""Transport points at their conditions.

    Args:
      vec: Points ``[n, d]`` (or ``[d]``).
      condition: One vector ``[k]`` (or a label) for all points, or
        ``[n, k]``, one per point.
      forward: :math:`T(x \mid c)` if ``True``, else :math:`T^{-1}(y \mid
        c)`.

    Returns:
      Array ``[n, d]``.
    """
    c = self.condition_vector(condition)
    if c.ndim == 1:
      return self.at(c).transport(vec, forward=forward)
    vec = jnp.atleast_2d(jnp.asarray(vec))
    if vec.shape[0] != c.shape[0]:
      raise ValueError(
          f"`condition` has {c.shape[0]} vectors for {vec.shape[0]} points: "
          f"pass one vector [{self.dim_cond}], or one per point."
      )
    one = lambda x_i, c_i: self.at(c_i).transport(x_i[None], forward)[0]
    return jax.vmap(one)(vec, c)

  def distance(self, src: jnp.ndarray, tgt: jnp.ndarray,
               condition: Condition_t) -> jnp.ndarray:
    """The OT cost estimate of one condition (see
    :meth:`ott_enot.ENOTPotentials.distance`)."""
    return self.at(condition).distance(src, tgt)

  def plot_ot_map(self, source: jnp.ndarray, target: jnp.ndarray,
                  condition: Condition_t, **kwargs: Any) -> Tuple[Any, Any]:
    """:meth:`ott_enot.ENOTPotentials.plot_ot_map` of one condition
    (``kwargs`` are its arguments)."""
    return self.at(condition).plot_ot_map(source, target, **kwargs)

  # ---- serialization ----

  def _meta(self) -> Dict[str, Any]:
    meta = {
        "dim_data": int(self.model.dim),
        "dim_cond": int(self.dim_cond),
        "conditioning": self.model.conditioning,
    }
    if self.table is not None:
      meta["labels"] = json.dumps([_label_to_json(l) for l in self.table])
      meta["vectors"] = np.stack(list(self.table.values()))
    return meta

  def to_bytes(self) -> bytes:
    """Both networks' parameters, with the condition's dimension, the
    conditioning and the table of labelled conditions (flax msgpack)."""
    return serialization.to_bytes({
        "f": self.params_f, "g": self.params_g, "meta": self._meta()
    })

  def from_bytes(self, data: bytes) -> "ConditionalPotentials":
    """New potentials with these networks and the parameters (and table of
    conditions) in ``data``.

    Raises:
      ValueError: if ``data`` was written for another ``dim_data``,
        ``dim_cond`` or conditioning, or for other networks.
    """
    try:
      raw = serialization.msgpack_restore(data)
    except Exception as err:  # noqa: BLE001
      raise ValueError(f"`data` is not a saved model ({err}).") from err
    meta = raw.get("meta") if isinstance(raw, dict) else None
    if meta is None:
      raise ValueError(
          "`data` holds unconditional potentials (no condition dimension): "
          "load it with `ExpectileNeuralDual(...).to_dual_potentials()`."
      )
    want = self._meta()
    for key in ("dim_data", "dim_cond", "conditioning"):
      if meta[key] != want[key]:
        raise ValueError(
            f"`data` was saved from a model with {key}={meta[key]!r}, but "
            f"these potentials have {key}={want[key]!r}: build the solver "
            f"as the saved one was built."
        )
    base = potentials_lib.ENOTPotentials(
        self.params_f, self.params_g, self.model
    )._with_params({"f": raw["f"], "g": raw["g"]}, "`data`")  # pylint: disable=protected-access
    table = self.table
    if "labels" in meta:
      table = {
          label: np.asarray(v, np.float32)
          for label, v in zip(json.loads(meta["labels"]), meta["vectors"])
      }
    return ConditionalPotentials(base.params_f, base.params_g, self.model,
                                 self.conjugate_solver, table)

  def save(self, path: Union[str, os.PathLike]) -> None:
    """Write the parameters and the condition's description to ``path``."""
    with open(path, "wb") as fh:
      fh.write(self.to_bytes())

  def load(self, path: Union[str, os.PathLike], kind: str = "latest",
           step: Optional[int] = None) -> "ConditionalPotentials":
    """New potentials from a file of :meth:`save` or a checkpoint directory
    (``kind``, ``step`` as :meth:`ott_enot.ENOTPotentials.load`)."""
    if os.path.isdir(path):
      params = checkpoints.read_params(path, kind, step)
      base = potentials_lib.ENOTPotentials(
          self.params_f, self.params_g, self.model
      )._with_params(params, f"checkpoint {os.fspath(path)!r}")  # pylint: disable=protected-access
      return ConditionalPotentials(base.params_f, base.params_g, self.model,
                                   self.conjugate_solver, self.table)
    with open(path, "rb") as fh:
      return self.from_bytes(fh.read())

  # ---- pytree ----

  def tree_flatten(self):  # noqa: D102
    return (self.params_f, self.params_g), (
        potentials_lib._Static(self.model),  # pylint: disable=protected-access
        potentials_lib._Static(self.conjugate_solver),  # pylint: disable=protected-access
        potentials_lib._Static(self.table),  # pylint: disable=protected-access
    )

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    model, solver, table = (a.value for a in aux_data)
    return cls(*children, model, solver, table)


def _hashable(value: Any) -> bool:
  try:
    hash(value)
  except TypeError:
    return False
  return True


def _label_to_json(label: Hashable) -> Any:
  if isinstance(label, str):
    return label
  if isinstance(label, numbers.Integral) and not isinstance(label, bool):
    return int(label)
  if isinstance(label, numbers.Real):
    return float(label)
  raise ValueError(
      f"Condition label {label!r} cannot be saved: use str, int or float "
      f"labels."
  )


class ConditionalExpectileNeuralDual(solver_lib.ENOTSolver):
  r"""Conditional ENOT: one model of the maps :math:`T(x \mid c)` of a family
  of OT problems (module docstring for the maths).

  Takes every argument of :class:`~ott_enot.ENOTSolver` (and so
  :class:`~ott_enot.ExpectileNeuralDual`'s positional ones: ``dim_data,
  neural_f, neural_g, optimizer_f, optimizer_g, cost_fn, expectile,
  expectile_loss_coef, num_train_iters, valid_freq, log_freq, logging,
  rng``), and:

  Args:
    dim_cond: Dimension :math:`k` of the condition vectors (keyword).
    conditioning: How the networks take the condition
      (:mod:`ott_enot.networks`): ``"concat"`` (default; the networks see
      ``[x, c]``, any row-wise module, default ott's ELU MLP ``[128] * 4``)
      or ``"film"`` (the networks are called ``module(x, c)``; default
      :class:`~ott_enot.networks.ConditionalMLP` ``[128] * 4``).

  Every parameterisation works (twist and correlation take gradients in
  :math:`x` at fixed :math:`c`; the direct map outputs :math:`T(x \mid c)`),
  both directions, checkpoints (which refuse another ``dim_cond`` or
  conditioning), the mesh (a batch's conditions are split with its rows)
  and everything that raises keeps the last completed state, as for
  :class:`~ott_enot.ENOTSolver`. Populations are not conditional.

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """

  def __init__(self, dim_data: int, *args: Any, dim_cond: int,
               conditioning: str = "concat", **kwargs: Any):
    self.dim_cond = checks.check_positive_int("dim_cond", dim_cond)
    if conditioning not in CONDITIONING:
      raise ValueError(
          f"`conditioning` must be one of {CONDITIONING}, got "
          f"{conditioning!r}."
      )
    self.conditioning = conditioning
    self.table: Optional[Dict[Hashable, np.ndarray]] = None
    super().__init__(dim_data, *args, **kwargs)

  def _default_network(self, out: int) -> nn.Module:
    if self.conditioning == "film":
      return networks.ConditionalMLP(dim_hidden=[128, 128, 128, 128, out])
    return super()._default_network(out)

  # ---- training ----

  def fit(
      self,
      data: Union[Mapping[Hashable, Any], conditional_data.ConditionalStream,
                  Callable[[jax.Array], Tuple[jnp.ndarray, ...]]],
      conditions: Optional[Mapping[Hashable, Any]] = None,
      *,
      batch_size: int = 1024,
      valid_batch_size: Optional[int] = None,
      valid_fraction: float = 0.1,
      sampling: str = "balanced",
      holdout: Sequence[Hashable] = (),
      rng: Optional[jax.Array] = None,
      callback: Optional[solver_lib.Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on a family of problems, or on a sampler of ``(x, y, c)``.

    Args:
      data: ``{label: PointCloud | LinearProblem | (x, y)}``, one OT problem
        per condition (weights of a ``LinearProblem`` respected), a
        :class:`~ott_enot.conditional_data.ConditionalStream`, or a pure
        ``sampler(key) -> (x[n, d], y[n, d], c[n, k])`` whose row ``i`` is
        one condition's pair (step ``k`` uses ``fold_in(fold_in(key, 0),
        k)``; validation is on its batches of mixed rows).
      conditions: ``{label: vector [k]}`` (default: numeric labels are
        their own conditions, other labels one-hot).
      batch_size: Rows of a training batch (of mixed conditions).
      valid_batch_size: Rows of each condition's validation batch (default
        ``min(batch_size, 512)`` or the smallest validation split).
      valid_fraction: Each trained condition's fraction of points held out
        for validation.
      sampling: ``"balanced"`` (default: every trained condition has the
        same share of the rows, whatever its size) or ``"proportional"``
        (shares by number of points); see
        :mod:`ott_enot.conditional_data`.
      holdout: Labels never trained on; their validation (all their points)
        shows how the model does on unseen conditions.
      rng: Key of the splits and the sampling; default ``key(0)``.
      callback: As in :meth:`__call__`.
      resume: Go on from the latest checkpoint of ``checkpoint_dir``.

    Returns:
      :class:`ConditionalPotentials`, or ``(potentials, logs)`` with
      ``logging=True``. With a dict of problems, every validation is done on
      one batch per condition: ``logs["condition_logs"]`` holds ``labels``,
      ``trained`` and per-condition lists of ``fit``, ``floor``,
      ``map_cost``, ``w_dist``, ``loss_f``, ``loss_g``, and
      ``logs["valid_logs"]`` their mean over the trained conditions.

    Raises:
      ValueError, TypeError: before compiling, for the errors of
        :meth:`~ott_enot.conditional_data.ConditionalStream.from_problems`,
        another cost than the solver's, points or conditions of other
        dimensions, or a bad sampler.
    """
    key = jax.random.key(0) if rng is None else rng
    domain = self.model.domain
    if callable(data) and not isinstance(
        data, (Mapping, conditional_data.ConditionalStream)):
      if conditions is not None or holdout:
        raise TypeError(
            "`conditions` and `holdout` go with a dict of problems; a "
            "sampler returns each row's condition itself."
        )
      checks.check_sampler(data, self.dim_data, self.dim_cond)
      feed = feeds.DeviceFeed(
          feeds.SamplerBatches(jax.random.fold_in(key, 1), data),
          self.dim_data, domain, check_sampler=True, dim_cond=self.dim_cond,
          batch_name="The batch size of the sampler's batches"
      )
      return self._result(self._train(feed, callback, resume))
    if isinstance(data, conditional_data.ConditionalStream):
      stream = data
    else:
      if isinstance(data, Mapping):
        for label, problem in data.items():
          if not isinstance(problem, tuple):
            try:
              self._check_cost_of(problem)
            except (TypeError, ValueError) as err:
              raise type(err)(f"`data[{label!r}]`: {err}") from err
      stream = conditional_data.ConditionalStream.from_problems(
          data, conditions, dim_cond=self.dim_cond, batch_size=batch_size,
          valid_batch_size=valid_batch_size, valid_fraction=valid_fraction,
          sampling=sampling, holdout=holdout, rng=key
      )
    if stream.dim != self.dim_data or stream.dim_cond != self.dim_cond:
      raise ValueError(
          f"The data have points of dimension {stream.dim} and conditions of "
          f"dimension {stream.dim_cond}, but the solver was built with "
          f"dim_data={self.dim_data}, dim_cond={self.dim_cond}."
      )
    stream.check_domain(domain)
    table = np.asarray(stream.conditions)
    if not all(stream.trained) and conditional_data.is_one_hot(table):
      warnings.warn(
          "The conditions are one-hot vectors, which name conditions without "
          "describing them: a held-out condition's coordinate is 0 in every "
          "training row, so nothing learned carries over to it and its map "
          "is not a prediction. To generalise to unseen conditions, give "
          "vectors that describe them (`conditions={label: [dose, time, "
          "...]}` or an embedding).", UserWarning, stacklevel=2
      )
    self.table = stream.table
    feed = feeds.DeviceFeed(
        feeds.ConditionalStreamBatches(stream, jax.random.fold_in(key, 1)),
        self.dim_data, domain, dim_cond=self.dim_cond,
        conditions=(stream.labels, stream.trained)
    )
    return self._result(self._train(feed, callback, resume))

  def __call__(
      self,
      trainloader_source: Iterator[Any],
      trainloader_target: Iterator[Any],
      trainloader_condition: Iterator[jnp.ndarray],
      validloader_source: Iterator[Any],
      validloader_target: Iterator[Any],
      validloader_condition: Iterator[jnp.ndarray],
      callback: Optional[solver_lib.Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on six loaders: source, target and condition batches, for
    training then validation (``solver(*train, *valid)`` with ``train =
    (source_iter, target_iter, condition_iter)``).

    Row ``i`` of a step's three batches is one condition's pair: ``x_i``,
    ``y_i`` and ``c_i`` (``[n, d]``, ``[n, d]``, ``[n, k]``). Source and
    target loaders may yield ``(points, labels)`` with integer labels
    ``[n]``: then the rows' labels must agree and each label have one
    condition vector (checked on every batch, an error naming the row).
    Otherwise as :meth:`ott_enot.ENOTSolver.__call__`.
    """
    feed = feeds.IteratorFeed(
        (trainloader_source, trainloader_target, trainloader_condition,
         validloader_source, validloader_target, validloader_condition),
        self.dim_data, self.model.domain, dim_cond=self.dim_cond
    )
    return self._result(self._train(feed, callback, resume))

  # ---- results ----

  def _potentials_of(self, state: step_lib.ENOTTrainState,
                     finetune_g: bool = True) -> ConditionalPotentials:
    return ConditionalPotentials(
        state.f.params, state.g.params, self.model,
        self.conjugate_solver if finetune_g else None, self.table
    )

  def to_dual_potentials(self, finetune_g: bool = True
                        ) -> ConditionalPotentials:
    """The learned :class:`ConditionalPotentials`."""
    return self._potentials_of(self.state, finetune_g)
