r"""Data in: the one function that turns what a solver was given into a feed.

Every face (:class:`~ott_enot.ENOTSolver`, its population and its conditional
sibling) hands what the user passed to :func:`feed_for`, with the
:class:`DataSpec` of its model, and trains on the feed it returns:

==========================================  ===================================
data                                        feed
==========================================  ===================================
:class:`Loaders` (ott's iterators)          :class:`~.feeds.IteratorFeed`
a pure ``sampler(key) -> batch``            :class:`~.feeds.DeviceFeed` of
                                            :class:`~.feeds.SamplerBatches`
points ``x`` with ``y`` (``a``, ``b``)      a :class:`~ott_enot.PointCloudStream`
an ott ``PointCloud`` / ``LinearProblem``   (on the device:
a :class:`~ott_enot.PointCloudStream`       :class:`~.feeds.StreamBatches`)
``{label: problem}`` with ``conditions``    a :class:`~ott_enot.ConditionalStream`
a :class:`~ott_enot.ConditionalStream`      (on the device, per-condition
                                            validation)
==========================================  ===================================

Everything is checked here, before anything compiles: the kind of data
against the model (a family of problems needs a conditional model), the
options against the kind (weights go with points, conditions with a family),
the cost of an ott geometry against the model's, the dimensions and the
domain of the points.
"""
import warnings
from typing import Any, Hashable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from ott.geometry import costs

from ott_enot import checks
from ott_enot import costs as costs_lib
from ott_enot.data import ConditionalStream, PointCloudStream, is_one_hot
from ott_enot.data import sampling
from ott_enot.training import feeds

__all__ = ["DataSpec", "Loaders", "feed_for", "check_cost_of"]

_STREAMS = (PointCloudStream, ConditionalStream)


class DataSpec(NamedTuple):
  """What the data of a model must be.

  Attributes:
    dim: Dimension :math:`d` of the points.
    dim_cond: Dimension :math:`k` of the conditions (0: none).
    domain: ``"euclidean"`` or ``"sphere"``.
    cost_fn: The model's cost; an ott geometry must carry the same.
  """
  dim: int
  dim_cond: int = 0
  domain: str = "euclidean"
  cost_fn: Optional[costs.CostFn] = None


class Loaders(tuple):
  """ott's iterators, in order: ``(trainloader_source, trainloader_target,
  validloader_source, validloader_target)``, or with the rows' conditions
  ``(trainloader_source, trainloader_target, trainloader_condition,
  validloader_source, validloader_target, validloader_condition)``."""


def feed_for(
    data: Any,
    spec: DataSpec,
    *,
    y: Any = None,
    a: Any = None,
    b: Any = None,
    conditions: Optional[Mapping[Hashable, Any]] = None,
    holdout: Sequence[Hashable] = (),
    rng: Optional[jax.Array] = None,
    **stream_options: Any,
) -> feeds.Feed:
  """The feed of ``data`` (module docstring for the kinds).

  Args:
    data: :class:`Loaders`, a sampler, source points (with ``y``), an ott
      ``PointCloud`` or ``LinearProblem``, ``{label: problem}``, or a stream.
    spec: The model's :class:`DataSpec`.
    y: Target points ``[m, d]``, with source points ``data``.
    a: Source weights ``[n]`` (with points only).
    b: Target weights ``[m]`` (with points only).
    conditions: ``{label: vector [k]}`` of a family of problems.
    holdout: Labels of a family validated but never trained on.
    rng: Key of the splits and the sampling; default ``jax.random.key(0)``.
      Batches are drawn with ``fold_in(rng, 1)``.
    stream_options: ``batch_size``, ``valid_fraction``, and ``replace``
      (one problem) or ``valid_batch_size``, ``sampling`` (a family): see
      :meth:`~ott_enot.PointCloudStream.from_arrays` and
      :meth:`~ott_enot.ConditionalStream.from_problems`.

  Returns:
    A :class:`~ott_enot.training.feeds.Feed`.

  Raises:
    TypeError, ValueError: before anything compiles, for data of the wrong
      kind for the model, options that do not go with the data, another
      cost, dimension or domain than the model's, or bad points, weights,
      conditions or samplers.
  """
  _check_options(data, spec, y, a, b, conditions, holdout)
  if isinstance(data, Loaders):
    return feeds.IteratorFeed(data, spec.dim, spec.domain, spec.dim_cond)
  key = jax.random.key(0) if rng is None else rng
  batches_key = jax.random.fold_in(key, 1)
  if callable(data) and not isinstance(data, _STREAMS):
    checks.check_sampler(data, spec.dim, spec.dim_cond)
    return feeds.DeviceFeed(
        feeds.SamplerBatches.of(batches_key, data), spec.dim, spec.domain,
        check_sampler=True, dim_cond=spec.dim_cond,
        batch_name="The batch size of the sampler's batches"
    )
  stream = _stream_of(data, spec, y, a, b, conditions, holdout, key,
                      stream_options)
  _check_stream(stream, spec)
  return feeds.DeviceFeed(
      feeds.StreamBatches(stream, batches_key), spec.dim, spec.domain,
      dim_cond=spec.dim_cond, validation_groups=stream.validation_groups
  )


def _check_options(data, spec, y, a, b, conditions, holdout) -> None:
  """Options that do not go with the data, and data of the wrong kind."""
  family = isinstance(data, (Mapping, ConditionalStream))
  sampler = callable(data) and not isinstance(data, _STREAMS)
  if y is None and (a is not None or b is not None):
    raise ValueError(
        "`a` and `b` weigh the points `x` and `y`: pass `fit(x, y, a=..., "
        "b=...)`, or a `LinearProblem` with its weights."
    )
  if y is not None and sampler:
    raise TypeError("`y` goes with source points, not with a sampler.")
  if (conditions is not None or holdout) and not isinstance(data, Mapping):
    raise TypeError(
        "`conditions` and `holdout` go with a dict of problems (a "
        "`ConditionalStream` has its own; a sampler returns each row's "
        "condition itself)."
    )
  if isinstance(data, Loaders) or sampler:
    return  # their batches are checked against the model when drawn
  if family and not spec.dim_cond:
    raise TypeError(
        "A family of problems (a dict of problems or a `ConditionalStream`) "
        "trains a conditional model: use "
        "`ott_enot.ConditionalExpectileNeuralDual(..., dim_cond=k)`."
    )
  if spec.dim_cond and not family:
    raise TypeError(
        "A conditional model trains on a family of problems: pass {label: "
        "PointCloud | LinearProblem | (x, y)} (with `conditions=`), a "
        "`ConditionalStream`, or a sampler of (x, y, cond)."
    )


def _stream_of(data, spec, y, a, b, conditions, holdout, key, options):
  """The stream of points, a geometry, a problem or a family."""
  if isinstance(data, _STREAMS):
    return data
  if isinstance(data, Mapping):
    for label, problem in data.items():
      if not isinstance(problem, tuple):
        try:
          check_cost_of(problem, spec.cost_fn)
        except (TypeError, ValueError) as err:
          raise type(err)(f"`data[{label!r}]`: {err}") from err
    return ConditionalStream.from_problems(
        data, conditions, dim_cond=spec.dim_cond, holdout=holdout, rng=key,
        **options
    )
  if y is not None:
    return PointCloudStream.from_arrays(data, y, a, b, rng=key, **options)
  check_cost_of(data, spec.cost_fn)
  return PointCloudStream.from_any(data, rng=key, **options)


def _check_stream(stream: Any, spec: DataSpec) -> None:
  """The stream's dimensions and domain are the model's."""
  if (stream.dim, stream.dim_cond) != (spec.dim, spec.dim_cond):
    got = f"points of dimension {stream.dim}"
    want = f"dim_data={spec.dim}"
    if spec.dim_cond:
      got += f" and conditions of dimension {stream.dim_cond}"
      want += f", dim_cond={spec.dim_cond}"
    raise ValueError(
        f"The data have {got}, but the solver was built with {want}."
    )
  stream.check_domain(spec.domain)
  # stacklevel: this function, feed_for, the face's fit, the user's call
  if isinstance(stream, ConditionalStream) and not all(
      stream.trained) and is_one_hot(np.asarray(stream.vectors)):
    warnings.warn(
        "The conditions are one-hot vectors, which name conditions without "
        "describing them: a held-out condition's coordinate is 0 in every "
        "training row, so nothing learned carries over to it and its map "
        "is not a prediction. To generalise to unseen conditions, give "
        "vectors that describe them (`conditions={label: [dose, time, "
        "...]}` or an embedding).", UserWarning, stacklevel=4
    )


def check_cost_of(geom: Any, cost_fn: Optional[costs.CostFn]) -> None:
  """Raise unless ``geom``'s cost is ``cost_fn`` (up to numerical fixes:
  :func:`ott_enot.costs.canonical_cost`).

  Raises:
    TypeError: if ``geom`` is not a ``PointCloud`` or a problem on one.
    ValueError: naming both costs, if they differ.
  """
  cost = costs_lib.canonical_cost(sampling.point_cloud_of(geom).cost_fn)
  if cost_fn is None:
    return
  same = type(cost) is type(cost_fn) and (
      jax.tree.structure(cost) == jax.tree.structure(cost_fn)
  )
  if not same:
    raise ValueError(
        f"`geom.cost_fn` is {type(cost).__name__} but the solver was built "
        f"with {type(cost_fn).__name__}; build the solver with "
        f"`from_geometry(geom, ...)`."
    )
