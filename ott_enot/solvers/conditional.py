r"""Conditional ENOT: one model of the maps :math:`T(x \mid z)` of a family of
OT problems indexed by a condition :math:`z \in \mathbb{R}^k` (``cond`` in
code; :math:`c` is the cost).

For every condition :math:`z` the networks :math:`f(\cdot \mid z)`,
:math:`g(\cdot \mid z)` (:mod:`ott_enot.model.networks`: the condition
concatenated to the point, or FiLM) solve ENOT's problem between
:math:`\alpha_z` and :math:`\beta_z`,

.. math::

  \sup_{g} \inf_{T} \; \mathbb{E}_{z}\Big[\mathbb{E}_{\alpha_z}[c(x,
  T(x \mid z)) - g(T(x \mid z) \mid z)] + \mathbb{E}_{\beta_z}[g(y \mid
  z)]\Big],

with the expectile regulariser on pairs :math:`(x_i, y_i)` of one condition
:math:`z_i`: a batch's rows may mix conditions, never within a row. Since
the problems decouple over :math:`z`, the optimum is every condition's own
ENOT solution; sharing one network is what lets the model answer for a
condition it never saw, between (and, less reliably, beyond) the trained
ones, when the condition vectors describe the conditions (a dose, a time,
an angle, an embedding) rather than name them (one-hot).

:class:`ConditionalExpectileNeuralDual` trains it (the same
:class:`~ott_enot.methods.ENOT` method as one problem, with a conditional
model) from a dict of ott problems (:class:`~ott_enot.ConditionalStream`), a
pure sampler ``key -> (x, y, cond)``, or six ott-style loaders;
:class:`~ott_enot.ConditionalPotentials` transports at any condition and
gives an ordinary :class:`~ott_enot.ENOTPotentials` at one
(:meth:`~ott_enot.ConditionalPotentials.at`).
"""
import dataclasses
from typing import Any, Callable, Hashable, Iterator, Mapping, Optional
from typing import Sequence, Tuple, Union

import jax
import jax.numpy as jnp

from ott_enot import checks
from ott_enot.data import ConditionalStream
from ott_enot.model import networks
from ott_enot.model.potentials import ConditionalPotentials
from ott_enot.solvers import base
from ott_enot.solvers import enot as enot_face
from ott_enot.training import inputs

__all__ = ["ConditionalExpectileNeuralDual", "ConditionalPotentials"]


class ConditionalExpectileNeuralDual(enot_face.ENOTFace, base.Solver):
  r"""Conditional ENOT: one model of the maps :math:`T(x \mid z)` of a family
  of OT problems (module docstring for the maths).

  Takes every argument of :class:`~ott_enot.ENOTSolver` (and so
  :class:`~ott_enot.ExpectileNeuralDual`'s positional ones: ``dim_data,
  neural_f, neural_g, optimizer_f, optimizer_g, cost_fn, expectile,
  expectile_loss_coef, num_train_iters, valid_freq, log_freq, logging,
  rng``), and:

  Args:
    dim_cond: Dimension :math:`k` of the condition vectors (keyword).
    conditioning: How the networks take the condition
      (:mod:`ott_enot.model.networks`): ``"concat"`` (default; the networks
      see ``[x, cond]``, any row-wise module, default ott's ELU MLP
      ``[128] * 4``) or ``"film"`` (the networks are called ``module(x,
      cond)``; default :class:`~ott_enot.ConditionalMLP` ``[128] * 4``).

  Every parameterisation works (twist and correlation take gradients in
  :math:`x` at fixed :math:`z`; the direct map outputs :math:`T(x \mid z)`),
  both directions, checkpoints (which refuse another ``dim_cond`` or
  conditioning), the mesh (a batch's conditions are split with its rows)
  and everything that raises keeps the last completed state, as for
  :class:`~ott_enot.ENOTSolver`. Populations are not conditional.

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """

  def __init__(self, dim_data: int, *args: Any, dim_cond: int,
               conditioning: str = "concat", **kwargs: Any):
    dim_cond = checks.check_positive_int("dim_cond", dim_cond)
    if conditioning not in networks.CONDITIONING:
      raise ValueError(
          f"`conditioning` must be one of {networks.CONDITIONING}, got "
          f"{conditioning!r}."
      )
    config = enot_face.configure((dim_data,) + args, kwargs,
                                 dim_cond=dim_cond, conditioning=conditioning)
    self.enot = config.method
    super().__init__(config.method, config.method.init(config.rng),
                     **config.run)

  @property
  def dim_cond(self) -> int:
    """Dimension :math:`k` of the condition vectors."""
    return self.enot.model.dim_cond

  @property
  def conditioning(self) -> str:
    """How the networks take the condition."""
    return self.enot.model.conditioning

  @property
  def table(self) -> Optional[dict]:
    """``{label: vector}`` of the conditions of the last family trained on
    (:obj:`None` before, or after training on a sampler or loaders)."""
    return self.enot.table

  # ---- training ----

  def fit(
      self,
      data: Union[Mapping[Hashable, Any], ConditionalStream,
                  Callable[[jax.Array], Tuple[jnp.ndarray, ...]]],
      conditions: Optional[Mapping[Hashable, Any]] = None,
      *,
      batch_size: int = 1024,
      valid_batch_size: Optional[int] = None,
      valid_fraction: float = 0.1,
      sampling: str = "balanced",
      holdout: Sequence[Hashable] = (),
      rng: Optional[jax.Array] = None,
      callback: Optional[base.Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on a family of problems, or on a sampler of ``(x, y, cond)``.

    Args:
      data: ``{label: PointCloud | LinearProblem | (x, y)}``, one OT problem
        per condition (weights of a ``LinearProblem`` respected), a
        :class:`~ott_enot.ConditionalStream`, or a pure ``sampler(key) ->
        (x[n, d], y[n, d], cond[n, k])`` whose row ``i`` is one condition's
        pair (the key schedule of :mod:`ott_enot.data.sampling`; validation
        is on its batches of mixed rows).
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
        :mod:`ott_enot.data.conditional`.
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
        :meth:`~ott_enot.ConditionalStream.from_problems`,
        another cost than the solver's, points or conditions of other
        dimensions, or a bad sampler.
    """
    feed = inputs.feed_for(
        data, self.model.data_spec, conditions=conditions, holdout=holdout,
        rng=rng, batch_size=batch_size, valid_batch_size=valid_batch_size,
        valid_fraction=valid_fraction, sampling=sampling
    )
    return self._train_on(feed, callback, resume)

  def __call__(
      self,
      trainloader_source: Iterator[Any],
      trainloader_target: Iterator[Any],
      trainloader_condition: Iterator[jnp.ndarray],
      validloader_source: Iterator[Any],
      validloader_target: Iterator[Any],
      validloader_condition: Iterator[jnp.ndarray],
      callback: Optional[base.Callback_t] = None,
      resume: bool = False,
  ) -> Any:
    """Train on six loaders: source, target and condition batches, for
    training then validation (``solver(*train, *valid)`` with ``train =
    (source_iter, target_iter, condition_iter)``).

    Row ``i`` of a step's three batches is one condition's pair: ``x_i``,
    ``y_i`` and ``cond_i`` (``[n, d]``, ``[n, d]``, ``[n, k]``). Source and
    target loaders may yield ``(points, labels)`` with integer labels
    ``[n]``: then the rows' labels must agree and each label have one
    condition vector (checked on every batch, an error naming the row).
    Otherwise as :meth:`ott_enot.ENOTSolver.__call__`.
    """
    feed = inputs.feed_for(
        inputs.Loaders((trainloader_source, trainloader_target,
                        trainloader_condition, validloader_source,
                        validloader_target, validloader_condition)),
        self.model.data_spec)
    return self._train_on(feed, callback, resume)

  def _train_on(self, feed: Any, callback: Any, resume: bool) -> Any:
    """Train; the potentials know the family's labelled conditions."""
    groups = feed.validation_groups
    self.enot = dataclasses.replace(
        self.enot, table=None if groups is None else groups.table)
    self.method = self.enot
    return self.output(self.train(feed, callback, resume))

  # ---- results ----

  def to_dual_potentials(self, finetune_g: bool = True
                        ) -> ConditionalPotentials:
    """The learned :class:`~ott_enot.ConditionalPotentials` (of the best
    validated parameters with ``keep_best``)."""
    return self.enot.potentials(*self.selected_state().params, finetune_g)
