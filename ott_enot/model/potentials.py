r"""The potentials and maps ENOT learns: transport, distance, plots,
save/load; for one problem (:class:`ENOTPotentials`, an ott
``DualPotentials``) and for a family indexed by a condition
(:class:`ConditionalPotentials`).

Both are pytrees whose leaves are the two networks' parameters, with the
:class:`~ott_enot.model.parameterisations.TransportModel` (and the conjugate
solver) static, and share one core for what they store: both networks'
parameters (and, for a family, the description of its conditions), checked
against the networks they are loaded into (``_checked_params``), from a
file of ``save`` or a checkpoint directory (``_checkpoint_params``).
"""
import json
import numbers
import os
from typing import Any, Dict, Hashable, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from flax import serialization
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import potentials as ott_potentials

from ott_enot import checks
from ott_enot.model import conjugate
from ott_enot.model.parameterisations import TransportModel
from ott_enot.training import checkpoints

__all__ = ["ENOTPotentials", "ConditionalPotentials"]

Params = Any
Condition_t = Union[Hashable, jnp.ndarray]


def _checked_params(like: Dict[str, Params], params: Any,
                    where: str) -> Dict[str, Params]:
  """``params`` (``{"f": ..., "g": ...}``) checked against the parameters
  ``like`` of the networks they are for, in ``like``'s dtypes.

  Raises:
    ValueError: naming ``where``, for parameters of other networks or shapes.
  """
  if jtu.tree_structure(like) != jtu.tree_structure(params):
    raise ValueError(
        f"{where} holds parameters of other networks than these: build "
        "the solver with the same networks and dimension."
    )
  for want, got in zip(jtu.tree_leaves(like), jtu.tree_leaves(params)):
    if jnp.shape(want) != jnp.shape(got):
      raise ValueError(
          f"{where} holds parameters of other shapes than these networks "
          f"({jnp.shape(got)} vs {jnp.shape(want)}): build the solver with "
          "the same networks and dimension."
      )
  return jax.tree.map(lambda w, g: jnp.asarray(g, jnp.result_type(w)), like,
                      params)


def _checkpoint_params(like: Dict[str, Params], directory: Any, kind: str,
                       step: Optional[int]) -> Dict[str, Params]:
  """Both networks' parameters in a checkpoint of ENOT's training state
  (:class:`~ott_enot.methods.ENOTTrainState`), checked against ``like``."""
  state = checkpoints.read_state(directory, kind, step)
  params = {"f": state["f"]["params"], "g": state["g"]["params"]}
  return _checked_params(like, params,
                         f"checkpoint {os.fspath(directory)!r}")


@jtu.register_pytree_node_class
class ENOTPotentials(ott_potentials.DualPotentials):
  r"""Kantorovich potentials and transport maps learned by ENOT.

  A pytree whose leaves are the two networks' parameters, so it can be passed
  to (and returned from) jitted functions. For the cost :math:`c` it holds

  .. math::

    g(y) \quad\text{(the potential network, in units of } c\text{)}, \qquad
    f(x) = c(x, \hat T(x)) - g(\hat T(x)) \approx g^c(x),

  with :math:`\hat T` the learned forward map, refined by ``conjugate_solver``
  (minimising :math:`y \mapsto c(x, y) - g(y)` from :math:`T(x)`; on the
  sphere over :math:`y = z / \|z\|`) when one that iterates is given.
  ``f`` and ``g`` are functions of one point ``[d] -> []``, as in
  :class:`~ott.problems.linear.potentials.DualPotentials`.

  For a metric cost :math:`d` trained through its surrogate
  :math:`c_p = d^p / p` (the Euclidean and geodesic distances,
  :class:`~ott_enot.model.parameterisations.Twist`), :math:`f` and :math:`g` are the surrogate's
  Kantorovich potentials (``cost_fn`` is the surrogate), the maps are the
  surrogate's, and :meth:`distance` is the cost :math:`\mathbb{E}\,d(x,
  \hat T(x))` of the learned map in the units of :math:`d`: no dual of the
  problem with :math:`d` itself is learned.

  Args:
    params_f: Parameters of the ``f`` network.
    params_g: Parameters of the ``g`` network.
    model: How maps and potentials come from the networks.
    conjugate_solver: Optional refinement of the forward map and :math:`f`;
      :obj:`None` or :class:`~ott_enot.ExpectileConjugateSolver` use the
      amortised map as it is.
  """

  def __init__(
      self,
      params_f: Params,
      params_g: Params,
      model: TransportModel,
      conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver] = None,
  ):
    self.params_f = params_f
    self.params_g = params_g
    self.model = model
    self.conjugate_solver = conjugate_solver
    super().__init__(
        f=lambda x: self._f_batch(x[None])[0],
        g=lambda y: self._g_batch(y[None])[0],
        cost_fn=model.training_cost_fn,
    )

  @property
  def parameterisation(self) -> str:
    """``"twist"``, ``"correlation"`` or ``"direct"``."""
    return self.model.parameterisation

  def modules(self) -> Tuple[Any, Any]:
    """The trained networks ``(f, g)`` as their API holds them: new
    ``nnx.Module`` s for NNX networks (e.g. to keep training them with
    ``nnx.Optimizer``), bound Linen modules otherwise
    (:meth:`~ott_enot.model.parameterisations.TransportModel.modules`).

    Returns:
      ``(f, g)``: each maps points ``[n, d]`` to ``[n]`` (``[n, d]`` for the
      direct map's ``f``).
    """
    return self.model.modules(self.params_f, self.params_g)

  @property
  def is_bidirectional(self) -> bool:
    """Whether :meth:`transport` can map target points back (``forward=False``)."""
    return self.model.has_inverse

  # ---- batched maths ----

  def _forward_map(self, x: jnp.ndarray) -> jnp.ndarray:
    y = self.model.forward_map(self.params_f, x)
    solver = self.conjugate_solver
    if solver is None or isinstance(solver, conjugate.ExpectileConjugateSolver):
      return y
    # the c-transform of g: for the surrogate of a metric cost, g's own cost
    cost_fn, g = self.model.training_cost_fn, self.g
    # on the sphere, search over z in R^d and evaluate at z / |z|
    project = lambda z: self.model.project(z[None])[0]

    def refine(x_i: jnp.ndarray, y_i: jnp.ndarray) -> jnp.ndarray:
      objective = lambda z: cost_fn(x_i, project(z)) - g(project(z))
      z = solver.solve(objective, jnp.zeros_like(y_i), x_init=y_i).grad
      return project(z)

    return jax.vmap(refine)(x, y)

  def _g_batch(self, y: jnp.ndarray) -> jnp.ndarray:
    return self.model.kantorovich_g(self.params_g, y)

  def _f_batch(self, x: jnp.ndarray) -> jnp.ndarray:
    y_hat = jax.lax.stop_gradient(self._forward_map(x))
    cost = jax.vmap(self.model.training_cost_fn)(x, y_hat)
    return cost - self._g_batch(y_hat)

  def _check_points(self, arr: Any, name: str) -> jnp.ndarray:
    # a single point [d] is a batch of one; no NaN check (no host sync)
    arr = jnp.atleast_2d(jnp.asarray(arr))
    return checks.check_points(
        name, arr, self.model.dim, self.model.domain, finite=False
    )

  # ---- public API ----

  def transport(self, vec: jnp.ndarray, forward: bool = True) -> jnp.ndarray:
    r"""Transport points with the learned map.

    Args:
      vec: Points, array ``[n, d]`` (or ``[d]``, treated as ``[1, d]``).
      forward: :math:`T(x)` (source to target) if ``True``, else
        :math:`T^{-1}(y)` (target to source).

    Returns:
      Array ``[n, d]``.

    Raises:
      ValueError: for ``forward=False`` with the direct map, or points of the
        wrong dimension.
    """
    vec = self._check_points(vec, "vec")
    if forward:
      return self._forward_map(vec)
    return self.model.inverse_map(self.params_g, vec)

  def distance(self, src: jnp.ndarray, tgt: jnp.ndarray) -> jnp.ndarray:
    r"""Estimate of the OT cost of the solver's ``cost_fn``.

    The dual estimate :math:`\overline{f(x)} + \overline{g(y)}`; for a
    metric cost trained through its surrogate, the cost of the learned map
    :math:`\overline{d(x, \hat T(x))}` (see the class docstring).

    Args:
      src: Source samples, array ``[n, d]``.
      tgt: Target samples, array ``[m, d]``.

    Returns:
      Scalar, in the units of the solver's ``cost_fn`` (for ott's
      :class:`~ott.geometry.costs.SqEuclidean`, :math:`W_2^2` without the
      factor :math:`1/2`).
    """
    src = self._check_points(src, "src")
    tgt = self._check_points(tgt, "tgt")
    if self.model.surrogate:
      moved = self._forward_map(src)
      return jnp.mean(jax.vmap(self.model.cost_fn)(src, moved))
    return jnp.mean(self._f_batch(src)) + jnp.mean(self._g_batch(tgt))

  def plot_ot_map(
      self,
      source: jnp.ndarray,
      target: jnp.ndarray,
      samples: Optional[jnp.ndarray] = None,
      forward: bool = True,
      ax: Optional[Any] = None,
      scatter_kwargs: Optional[Dict[str, Any]] = None,
      legend_kwargs: Optional[Dict[str, Any]] = None,
  ) -> Tuple[Any, Any]:
    r"""Plot both samples and the learned map, in 2-D or 3-D.

    ott's :meth:`~ott.problems.linear.potentials.DualPotentials.plot_ot_map`
    with the map labelled as what it is: :math:`T(x)` forward and
    :math:`T^{-1}(y)` backward (ott's labels say :math:`\nabla f`, which
    the twist and direct maps are not), and 3-D points drawn on 3-D axes,
    with the unit sphere behind them for sphere costs. Higher dimensions show
    the first two coordinates.

    Args:
      source: Source samples ``[n, d]``.
      target: Target samples ``[m, d]``.
      samples: Points to transport, ``[k, d]``; default ``source`` (forward)
        or ``target`` (backward).
      forward: Plot the forward map, else the inverse.
      ax: Matplotlib axes to draw on (3-D axes for ``d = 3``); default new.
      scatter_kwargs: Passed to :meth:`~matplotlib.axes.Axes.scatter`.
      legend_kwargs: Passed to :meth:`~matplotlib.axes.Axes.legend`.

    Returns:
      ``(figure, axes)``.
    """
    import matplotlib.pyplot as plt

    source, target = np.asarray(source), np.asarray(target)
    three_d = source.shape[-1] == 3
    if scatter_kwargs is None:
      scatter_kwargs = {"alpha": 0.5}
    if legend_kwargs is None:
      legend_kwargs = {
          "ncol": 3, "loc": "upper center", "bbox_to_anchor": (0.5, -0.05),
          "edgecolor": "k"
      }
    if ax is None:
      fig = plt.figure(facecolor="white")
      ax = fig.add_subplot(111, projection="3d" if three_d else None)
    else:
      fig = ax.get_figure()
    if three_d and ax.name != "3d":
      raise ValueError(
          "3-D points need 3-D axes: `ax=fig.add_subplot(projection='3d')`, "
          "or leave `ax=None`."
      )
    samples = (source if forward else target) if samples is None else samples
    moved = np.asarray(self.transport(samples, forward=forward))
    samples = np.asarray(samples)
    dims = slice(0, 3 if three_d else 2)
    coords = lambda a: a[:, dims].T
    if three_d and self.model.on_sphere:
      u, v = np.mgrid[0:2 * np.pi:40j, 0:np.pi:20j]
      ax.plot_wireframe(
          np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v),
          color="0.85", linewidth=0.5
      )
    dark, light = "#1A254B", "#A7BED3"
    label = r"$T(x)$" if forward else r"$T^{-1}(y)$"
    ax.scatter(*coords(source), color=dark if forward else light,
               label="source $x$", **scatter_kwargs)
    ax.scatter(*coords(target), color=light if forward else dark,
               label="target $y$", **scatter_kwargs)
    ax.scatter(*coords(moved), color="#F2545B", label=label, **scatter_kwargs)
    if three_d:
      for a, b in zip(samples, moved):
        ax.plot(*np.stack([a, b]).T, color=(0.5, 0.5, 1.0), alpha=0.3)
    else:
      for a, b in zip(samples, moved):
        ax.arrow(a[0], a[1], b[0] - a[0], b[1] - a[1], color=(0.5, 0.5, 1.0),
                 alpha=0.3)
    ax.legend(**legend_kwargs)
    return fig, ax

  # ---- serialization ----

  def to_bytes(self) -> bytes:
    """Serialize both networks' parameters (:mod:`flax.serialization`)."""
    return serialization.to_bytes({"f": self.params_f, "g": self.params_g})

  def from_bytes(self, data: bytes) -> "ENOTPotentials":
    """New potentials with this one's networks and the parameters in ``data``.

    Args:
      data: Bytes of :meth:`to_bytes`.

    Returns:
      :class:`ENOTPotentials` (this one is unchanged).

    Raises:
      ValueError: if ``data`` holds parameters of other networks.
    """
    target = {"f": self.params_f, "g": self.params_g}
    try:
      params = serialization.from_bytes(target, data)
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(
          "`data` does not hold parameters for these networks: build the "
          f"solver with the same networks and dimension ({err})."
      ) from err
    return self._replace(_checked_params(target, params, "`data`"))

  def _replace(self, params: Dict[str, Params]) -> "ENOTPotentials":
    return ENOTPotentials(params["f"], params["g"], self.model,
                          self.conjugate_solver)

  def save(self, path: Union[str, os.PathLike]) -> None:
    """Write the parameters to ``path`` (restore with :meth:`load`)."""
    with open(path, "wb") as fh:
      fh.write(self.to_bytes())

  def load(self, path: Union[str, os.PathLike], kind: str = "latest",
           step: Optional[int] = None) -> "ENOTPotentials":
    """New potentials with this one's networks and the parameters in ``path``.

    ``path`` is a file written by :meth:`save`, or a solver's
    ``checkpoint_dir`` (then the ``kind`` checkpoint, ``"latest"`` or
    ``"best"``, of ``step``, default the newest). The networks themselves
    are code, not data: build the same solver (e.g.
    ``ExpectileNeuralDual(dim, ...).to_dual_potentials()``) and call ``load``
    on its potentials.

    Args:
      path: A file of :meth:`save` or a ``checkpoint_dir``.
      kind: Of a directory: ``"latest"`` or ``"best"``.
      step: Of a directory: the checkpoint's step; :obj:`None` the newest.

    Returns:
      :class:`ENOTPotentials` (this one is unchanged).

    Raises:
      ValueError: if ``path`` holds parameters of other networks (a
        :class:`~ott_enot.training.checkpoints.CheckpointError` for a directory
        without such a checkpoint).
    """
    if os.path.isdir(path):
      target = {"f": self.params_f, "g": self.params_g}
      return self._replace(_checkpoint_params(target, path, kind, step))
    with open(path, "rb") as fh:
      return self.from_bytes(fh.read())

  # ---- pytree ----

  def tree_flatten(self):  # noqa: D102
    # the model compares by value: potentials of equal models share programs
    return (self.params_f, self.params_g), (
        self.model, checks.Identity(self.conjugate_solver)
    )

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    model, solver = aux_data
    return cls(*children, model, solver.value)


@jtu.register_pytree_node_class
class ConditionalPotentials:
  r"""Transport maps :math:`T(x \mid z)` (and inverses) learned by conditional
  ENOT, at any condition.

  A pytree whose leaves are the networks' parameters. :meth:`at` gives the
  ordinary :class:`ENOTPotentials` (an ott ``DualPotentials``) of one
  condition, for ott's tools and plots.

  Args:
    params_f: Parameters of the ``f`` network.
    params_g: Parameters of the ``g`` network.
    model: The conditional
      :class:`~ott_enot.model.parameterisations.TransportModel`.
    conjugate_solver: As for :class:`ENOTPotentials`.
    table: ``{label: vector [k]}`` of the conditions trained from labelled
      data (so that ``condition=label`` works), or :obj:`None`.
  """

  def __init__(
      self,
      params_f: Params,
      params_g: Params,
      model: TransportModel,
      conjugate_solver: Optional[ott_conjugate.FenchelConjugateSolver] = None,
      table: Optional[Mapping[Hashable, np.ndarray]] = None,
  ):
    self.params_f = params_f
    self.params_g = params_g
    self.model = model
    self.conjugate_solver = conjugate_solver
    self.table = None if table is None else dict(table)

  def modules(self) -> Tuple[Any, Any]:
    """The trained networks ``(f, g)``, as :meth:`ENOTPotentials.modules`
    (they take the condition as the model's ``conditioning`` says)."""
    return self.model.modules(self.params_f, self.params_g)

  @property
  def dim_cond(self) -> int:
    """Dimension :math:`k` of the conditions."""
    return self.model.dim_cond

  @property
  def is_bidirectional(self) -> bool:
    """Whether :meth:`transport` can map target points back."""
    return self.model.has_inverse

  def condition_vector(self, condition: Condition_t) -> jnp.ndarray:
    """The vector ``[k]`` (or ``[n, k]``) of a label of ``table`` or of
    a vector.

    Args:
      condition: A label of ``table``, a number (``k = 1``), a vector
        ``[k]`` or vectors ``[n, k]``.

    Returns:
      Array ``[k]`` or ``[n, k]`` (float32).

    Raises:
      ValueError: for a label not in ``table``, a vector of another
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

  def at(self, condition: Condition_t) -> ENOTPotentials:
    r"""The potentials and maps of one condition, :math:`x \mapsto T(x \mid
    z)`: an :class:`ENOTPotentials` (ott's ``DualPotentials``, its plots and
    tools).

    Args:
      condition: A vector ``[k]``, or a label of ``table``.

    Returns:
      :class:`ENOTPotentials` of the condition (its networks' parameters
      shared, the condition fixed in its model).

    Raises:
      ValueError: for several vectors (``[n, k]``: use :meth:`transport`),
        or a bad condition.
    """
    cond = self.condition_vector(condition)
    if cond.ndim != 1:
      raise ValueError(
          f"`at` takes one condition, a vector [{self.dim_cond}]; got shape "
          f"{tuple(cond.shape)}. For one condition per point use "
          f"`transport(x, condition=cond)`."
      )
    return ENOTPotentials(self.params_f, self.params_g, self.model.at(cond),
                          self.conjugate_solver)

  def transport(self, vec: jnp.ndarray, condition: Condition_t,
                forward: bool = True) -> jnp.ndarray:
    r"""Transport points at their conditions.

    Args:
      vec: Points ``[n, d]`` (or ``[d]``).
      condition: One vector ``[k]`` (or a label) for all points, or
        ``[n, k]``, one per point.
      forward: :math:`T(x \mid z)` if ``True``, else :math:`T^{-1}(y \mid
        z)`.

    Returns:
      Array ``[n, d]``.
    """
    cond = self.condition_vector(condition)
    if cond.ndim == 1:
      return self.at(cond).transport(vec, forward=forward)
    vec = jnp.atleast_2d(jnp.asarray(vec))
    if vec.shape[0] != cond.shape[0]:
      raise ValueError(
          f"`condition` has {cond.shape[0]} vectors for {vec.shape[0]} "
          f"points: pass one vector [{self.dim_cond}], or one per point."
      )
    one = lambda x_i, cond_i: self.at(cond_i).transport(x_i[None],
                                                      forward)[0]
    return jax.vmap(one)(vec, cond)

  def distance(self, src: jnp.ndarray, tgt: jnp.ndarray,
               condition: Condition_t) -> jnp.ndarray:
    """The OT cost estimate of one condition (see
    :meth:`ENOTPotentials.distance`).

    Args:
      src: Source samples of the condition, ``[n, d]``.
      tgt: Target samples of the condition, ``[m, d]``.
      condition: One vector ``[k]`` or a label.

    Returns:
      Scalar, in the units of the solver's ``cost_fn``.
    """
    return self.at(condition).distance(src, tgt)

  def plot_ot_map(self, source: jnp.ndarray, target: jnp.ndarray,
                  condition: Condition_t, **kwargs: Any) -> Tuple[Any, Any]:
    """:meth:`ENOTPotentials.plot_ot_map` of one condition.

    Args:
      source: Source points ``[n, d]`` (2-D or 3-D).
      target: Target points ``[m, d]``.
      condition: One vector ``[k]`` or a label.
      kwargs: The other arguments of :meth:`ENOTPotentials.plot_ot_map`.

    Returns:
      ``(fig, ax)`` of matplotlib.
    """
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

    Args:
      data: Bytes of :meth:`to_bytes`.

    Returns:
      :class:`ConditionalPotentials` (this one is unchanged).

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
    table = self.table
    if "labels" in meta:
      table = {
          label: np.asarray(v, np.float32)
          for label, v in zip(json.loads(meta["labels"]), meta["vectors"])
      }
    target = {"f": self.params_f, "g": self.params_g}
    params = _checked_params(target, {"f": raw["f"], "g": raw["g"]}, "`data`")
    return self._replace(params, table)

  def _replace(self, params: Dict[str, Params],
               table: Any) -> "ConditionalPotentials":
    return ConditionalPotentials(params["f"], params["g"], self.model,
                                 self.conjugate_solver, table)

  def save(self, path: Union[str, os.PathLike]) -> None:
    """Write the parameters and the condition's description to ``path``."""
    with open(path, "wb") as fh:
      fh.write(self.to_bytes())

  def load(self, path: Union[str, os.PathLike], kind: str = "latest",
           step: Optional[int] = None) -> "ConditionalPotentials":
    """New potentials from a file of :meth:`save` or a checkpoint directory.

    Args:
      path: A file of :meth:`save` or a ``checkpoint_dir``.
      kind: Of a directory: ``"latest"`` or ``"best"``.
      step: Of a directory: the checkpoint's step; :obj:`None` the newest.

    Returns:
      :class:`ConditionalPotentials` (this one is unchanged).

    Raises:
      ValueError: as :meth:`from_bytes`, or for a directory without such a
        checkpoint.
    """
    if os.path.isdir(path):
      target = {"f": self.params_f, "g": self.params_g}
      return self._replace(_checkpoint_params(target, path, kind, step),
                           self.table)
    with open(path, "rb") as fh:
      return self.from_bytes(fh.read())

  # ---- pytree ----

  def tree_flatten(self):  # noqa: D102
    return (self.params_f, self.params_g), (
        self.model, checks.Identity(self.conjugate_solver),
        checks.Identity(self.table)
    )

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    model, solver, table = aux_data
    return cls(*children, model, solver.value, table.value)


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
