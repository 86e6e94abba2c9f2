r"""Dual potentials learned by ENOT: transport, distance, plots, save/load."""
import os
from typing import Any, Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from flax import serialization
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import potentials as ott_potentials

from ott_enot import checkpoints, checks, conjugate, maps

__all__ = ["ENOTPotentials"]

Params = Any


class _Static:
  """Wraps a value for the static part of a pytree; hashed by identity."""

  def __init__(self, value: Any):
    self.value = value

  def __hash__(self) -> int:
    return id(self.value)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Static) and other.value is self.value


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
  sphere over :math:`y = z / \|z\|`) when one that iterates is given. :attr:`f` and :attr:`g` are functions of one point
  ``[d] -> []``, as in :class:`~ott.problems.linear.potentials.DualPotentials`.

  For a metric cost :math:`d` trained through its surrogate
  :math:`c_p = d^p / p` (the Euclidean and geodesic distances,
  :mod:`ott_enot.maps`), :math:`f` and :math:`g` are the surrogate's
  Kantorovich potentials (:attr:`cost_fn` is the surrogate), the maps are the
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
      model: maps.TransportModel,
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

  @property
  def is_bidirectional(self) -> bool:
    """Whether :meth:`transport` can map target points back (``forward=False``)."""
    return self.model.parameterisation != "direct"

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
    return self._with_params(params, "`data`")

  def _with_params(self, params: Any, where: str) -> "ENOTPotentials":
    target = {"f": self.params_f, "g": self.params_g}
    if jtu.tree_structure(target) != jtu.tree_structure(params):
      raise ValueError(
          f"{where} holds parameters of other networks than these: build "
          "the solver with the same networks and dimension."
      )
    for want, got in zip(jtu.tree_leaves(target), jtu.tree_leaves(params)):
      if jnp.shape(want) != jnp.shape(got):
        raise ValueError(
            f"{where} holds parameters of other shapes than these networks "
            f"({jnp.shape(got)} vs {jnp.shape(want)}): build the solver with "
            "the same networks and dimension."
        )
    params = jax.tree.map(
        lambda w, g: jnp.asarray(g, jnp.result_type(w)), target, params
    )
    return ENOTPotentials(
        params["f"], params["g"], self.model, self.conjugate_solver
    )

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

    Raises:
      ValueError: if ``path`` holds parameters of other networks (a
        :class:`~ott_enot.checkpoints.CheckpointError` for a directory
        without such a checkpoint).
    """
    if os.path.isdir(path):
      params = checkpoints.read_params(path, kind, step)
      return self._with_params(params, f"checkpoint {os.fspath(path)!r}")
    with open(path, "rb") as fh:
      return self.from_bytes(fh.read())

  # ---- pytree ----

  def tree_flatten(self):  # noqa: D102
    return (self.params_f, self.params_g), (
        _Static(self.model), _Static(self.conjugate_solver)
    )

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    model, solver = aux_data
    return cls(*children, model.value, solver.value)
