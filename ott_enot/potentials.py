r"""Dual potentials learned by ENOT: transport, distance, plots, save/load."""
import os
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from flax import serialization
from ott.neural.networks.layers import conjugate as ott_conjugate
from ott.problems.linear import potentials as ott_potentials

from ott_enot import conjugate, maps
from ott_enot import costs as enot_costs

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
        cost_fn=model.cost_fn,
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
    cost_fn, g = self.model.cost_fn, self.g
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
    return jax.vmap(self.model.cost_fn)(x, y_hat) - self._g_batch(y_hat)

  def _check_points(self, arr: Any, name: str) -> jnp.ndarray:
    arr = jnp.atleast_2d(jnp.asarray(arr))
    dim = self.model.dim
    if arr.ndim != 2 or arr.shape[-1] != dim:
      raise ValueError(
          f"`{name}` must have shape [n, {dim}] (or [{dim}]), got "
          f"{tuple(arr.shape)}."
      )
    if self.model.on_sphere:
      enot_costs.check_on_sphere(name, arr)
    return arr

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
    r"""Dual estimate of the OT cost, :math:`\overline{f(x)} + \overline{g(y)}`.

    Args:
      src: Source samples, array ``[n, d]``.
      tgt: Target samples, array ``[m, d]``.

    Returns:
      Scalar, in the units of ``cost_fn`` (for ott's
      :class:`~ott.geometry.costs.SqEuclidean`, :math:`W_2^2` without the
      factor :math:`1/2`).
    """
    src = self._check_points(src, "src")
    tgt = self._check_points(tgt, "tgt")
    return jnp.mean(self._f_batch(src)) + jnp.mean(self._g_batch(tgt))

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
      from ott_enot import checkpoints  # pylint: disable=import-outside-toplevel
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
