r"""How the transport maps and the dual potentials come from the two networks.

A :class:`TransportModel` ties together the cost, the parameterisation and the
two flax modules, and turns parameters into maps and potentials as pure
functions of ``(params, points[n, d])``. Three parameterisations:

``"twist"`` (cost with an invertible twist, e.g. a
:class:`~ott.geometry.costs.TICost` with ``h_legendre``): both networks are
Kantorovich potentials, :math:`f = f_\theta`, :math:`g = g_\omega`, and

.. math::

  T(x) = x - \nabla h^*(\nabla f(x)), \qquad T^{-1}(y) = y + \nabla h^*(-\nabla
  g(y)),

through :meth:`~ott.geometry.costs.CostFn.twist_operator`. A metric cost
:math:`d` (the Euclidean distance, the geodesic distance on the sphere) has
no invertible twist: every point of a transport ray minimises
:math:`d(x, \cdot) - g`, so the c-transform does not determine :math:`T`,
and training on :math:`d` itself (the direct map) collapses each source
cluster onto the near end of its rays. It trains instead with its registered
*surrogate* (:func:`ott_enot.costs.twist_cost`), the strictly convex
:math:`d^p / p` (the cost's ``surrogate_p``, 1.75 by default), whose optimal
map is unique, a transport map, and close to optimal for :math:`d`
(:math:`p \to 1`); the potentials are the surrogate's, while :math:`T` is
judged and its cost reported with :math:`d`.

``"correlation"`` (:class:`~ott.geometry.costs.SqEuclidean` only): training uses
the cost :math:`-\langle x, y\rangle` and convex potentials
:math:`\varphi = f_\theta + \tfrac12\|x\|^2`,
:math:`\psi = g_\omega + \tfrac12\|y\|^2` (a
:class:`~ott.neural.networks.potentials.BasePotential`, e.g. an ICNN, is used
as the convex potential as it is, like ott's ``W2NeuralDual`` does). The dual
variables of the :math:`-\langle x, y\rangle` problem are :math:`-\varphi` and
:math:`-\psi`; :math:`T = \nabla\varphi`, :math:`T^{-1} = \nabla\psi`, and for
:math:`c(x, y) = \|x - y\|^2` the Kantorovich potentials are
:math:`\|x\|^2 - 2\varphi^*` and :math:`\|y\|^2 - 2\psi`.

``"direct"`` (any cost): ``f`` outputs :math:`T(x)` itself; forward only.
For a metric cost this is ott 0.5.1's ``is_bidirectional=False``, kept for
compatibility: the amortisation has no unique minimiser, and the map strands
mass (see above).
"""
import dataclasses
import math
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from flax import linen as nn
from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials

from ott_enot import costs as enot_costs

__all__ = [
    "TransportModel",
    "resolve_parameterisation",
    "check_networks",
    "outputs_per_point",
    "network_inputs",
    "AtCondition",
]

Params = Any


def resolve_parameterisation(
    cost_fn: costs.CostFn,
    parameterisation: Optional[str] = None,
    bidirectional: Optional[bool] = None,
    neural_f: Optional[nn.Module] = None,
    dim: Optional[int] = None,
    dim_cond: int = 0,
    conditioning: str = "concat",
) -> Tuple[str, bool]:
  """Choose the parameterisation and whether to train both directions.

  The one place where the user's choices (ours, and ott 0.4.7-0.5.1's
  ``is_bidirectional`` / ``use_dot_product`` translated by
  :mod:`ott_enot.compat`) and the networks meet the cost's capabilities.

  Args:
    cost_fn: The ott cost.
    parameterisation: ``"twist"``, ``"correlation"``, ``"direct"`` or
      :obj:`None` to decide from the networks and the cost.
    bidirectional: Alternate forward and inverse steps. :obj:`None`:
      whenever the parameterisation gives an inverse map.
    neural_f: The user's ``f`` network (:obj:`None` for the default). When
      no parameterisation is named, a ``neural_f`` that outputs ``dim``
      numbers per point (for ``dim > 1``, or with ``bidirectional=False``)
      selects ``"direct"``; so does ``bidirectional=False`` with the default
      network (ott 0.5.1's meaning of ``is_bidirectional=False``). A
      potential-valued ``neural_f`` with ``bidirectional=False`` keeps the
      cost's default parameterisation and trains forward steps only
      (``W2NeuralDual``'s ``back_and_forth=False``).
    dim: Dimension of the points (needed with ``neural_f``).
    dim_cond: Dimension of a condition the networks also take (0: none).
    conditioning: How they take it (:func:`network_inputs`).

  Returns:
    ``(parameterisation, bidirectional)``.

  Raises:
    ValueError: for a combination the cost cannot do, saying what to use.
  """
  supported = enot_costs.supported_parameterisations(cost_fn)
  name = type(cost_fn).__name__
  if not supported:
    raise ValueError(
        f"`cost_fn={name}` compares structured objects (Gaussians, time "
        f"series), not points, so ENOT has no parameterisation for it; use a "
        f"cost between points (see `ott_enot.costs.available_costs()`)."
    )
  if parameterisation is not None and parameterisation not in (
      enot_costs.PARAMETERISATIONS
  ):
    raise ValueError(
        f"`parameterisation` must be one of "
        f"{enot_costs.PARAMETERISATIONS}, got {parameterisation!r}."
    )
  if parameterisation is None:
    if isinstance(neural_f, nn.Module):
      wants_map = outputs_per_point(
          neural_f, dim, dim_cond, conditioning) == dim and (
          dim > 1 or bidirectional is False
      )
    else:
      wants_map = bidirectional is False
    parameterisation = "direct" if wants_map else supported[0]
  if parameterisation not in supported:
    if parameterisation == "correlation":
      fix = (
          "the correlation form (use_dot_product=True) exists only for "
          "`costs.SqEuclidean()`; use that cost, or drop "
          "`use_dot_product`/`parameterisation='correlation'`"
      )
    else:
      fix = (
          f"{name} has no invertible twist; use "
          f"parameterisation='direct' (or is_bidirectional=False) so that "
          f"`neural_f` outputs the map itself"
      )
    raise ValueError(
        f"`cost_fn={name}()` does not support parameterisation "
        f"{parameterisation!r} (it supports {supported}): {fix}."
    )
  if parameterisation == "direct":
    if bidirectional:
      raise ValueError(
          "`is_bidirectional=True` needs a map in both directions, but the "
          "direct map gives only the forward one. Use is_bidirectional=False"
          + (
              ", or parameterisation='twist'" if "twist" in supported else
              f"; {name} has no invertible twist, so it cannot be "
              f"bidirectional"
          ) + "."
      )
    return parameterisation, False
  return parameterisation, True if bidirectional is None else bool(
      bidirectional
  )


def network_inputs(
    dim: int, dim_cond: int = 0, conditioning: str = "concat", rows: int = 1
) -> Tuple[jnp.ndarray, ...]:
  """Dummy inputs of a network, for ``init`` and shape checks.

  ``(x[rows, dim],)`` without a condition; ``(concat([x, c])[rows, dim +
  dim_cond],)`` with ``conditioning="concat"``; ``(x[rows, dim],
  c[rows, dim_cond])`` with ``conditioning="film"`` (networks of two
  arguments, :class:`ott_enot.networks.ConditionalMLP`).
  """
  if not dim_cond:
    return (jnp.ones((rows, dim)),)
  if conditioning == "concat":
    return (jnp.ones((rows, dim + dim_cond)),)
  return jnp.ones((rows, dim)), jnp.ones((rows, dim_cond))


def outputs_per_point(
    module: nn.Module, dim: int, dim_cond: int = 0,
    conditioning: str = "concat", name: str = "neural_f"
) -> int:
  """How many numbers ``module`` returns per input point of dimension ``dim``
  (with a condition of dimension ``dim_cond``, see :func:`network_inputs`).

  Found by abstract evaluation (:func:`jax.eval_shape`) on a batch of two
  points, so nothing is compiled or run.

  Raises:
    ValueError: naming ``name``, if a conditional network cannot take its
      inputs.
  """
  inputs = network_inputs(dim, dim_cond, conditioning, rows=2)
  try:
    out, _ = jax.eval_shape(
        lambda: module.init_with_output(jax.random.key(0), *inputs)
    )
  except Exception as err:  # pylint: disable=broad-except
    if not dim_cond:
      raise
    how = (
        f"one array [n, {dim + dim_cond}] (points and condition "
        f"concatenated)" if conditioning == "concat" else
        f"two arrays, `module(x[n, {dim}], c[n, {dim_cond}])` (e.g. "
        f"`ott_enot.ConditionalMLP`)"
    )
    raise ValueError(
        f"`{name}` cannot take the conditional input: with "
        f"conditioning={conditioning!r} it is called with {how} ({err})."
    ) from err
  return math.prod(out.shape) // 2


def check_networks(
    parameterisation: str, neural_f: nn.Module, neural_g: nn.Module, dim: int,
    dim_cond: int = 0, conditioning: str = "concat"
) -> None:
  """Check that the networks' output shapes fit the parameterisation.

  ``neural_g`` is always a potential (one number per point); ``neural_f`` is a
  potential too, except for the direct map where it outputs ``dim`` numbers.

  Raises:
    TypeError: if a network is not a flax module.
    ValueError: naming the network whose output does not fit, and the fix.
  """
  for arg, module in (("neural_f", neural_f), ("neural_g", neural_g)):
    if not isinstance(module, nn.Module):
      raise TypeError(
          f"`{arg}` must be a flax `nn.Module`, got {type(module).__name__}."
      )
  want_f = dim if parameterisation == "direct" else 1
  for arg, module, want in (("neural_f", neural_f, want_f),
                            ("neural_g", neural_g, 1)):
    got = outputs_per_point(module, dim, dim_cond, conditioning, arg)
    if got == want:
      continue
    what = "the map T(x)" if want == dim and want != 1 else "a potential"
    hint = (
        f"e.g. `potentials.MLP(dim_hidden=[128, 128, 128, 128, {want}])`"
    )
    extra = ""
    if arg == "neural_f" and got == dim:
      extra = (
          " A network that outputs vectors gives the map itself: use "
          "parameterisation='direct' (is_bidirectional=False)."
      )
    raise ValueError(
        f"`{arg}` returns {got} number(s) per point of dimension {dim}, but "
        f"with parameterisation={parameterisation!r} it must return {want} "
        f"({what}); {hint}.{extra}"
    )


def _apply(
    module: nn.Module, conditioning: str, params: Params, x: jnp.ndarray,
    c: Optional[jnp.ndarray]
) -> jnp.ndarray:
  """``module`` on points ``x[n, d]`` at conditions ``c[n, k]`` (or none)."""
  if c is None:
    return module.apply({"params": params}, x)
  if conditioning == "concat":
    return module.apply({"params": params}, jnp.concatenate([x, c], axis=-1))
  return module.apply({"params": params}, x, c)


def _batched_scalar(
    module: nn.Module, add_half_sq_norm: bool, conditioning: str
) -> Callable[..., jnp.ndarray]:

  def value(params: Params, x: jnp.ndarray,
            c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    out = _apply(module, conditioning, params, x, c).reshape(x.shape[0])
    if add_half_sq_norm:
      out = out + 0.5 * jnp.sum(x ** 2, axis=-1)
    return out

  return value


def _batched_grad(value: Callable[..., jnp.ndarray]) -> Callable[..., jnp.ndarray]:
  # networks act row-wise, so the gradient of the sum gives every row's
  # gradient in one backward pass; a condition is held fixed (grad in x)
  return lambda params, x, c=None: jax.grad(
      lambda z: value(params, z, c).sum()
  )(x)


@dataclasses.dataclass(frozen=True, eq=False)
class TransportModel:
  r"""Maps and potentials of ENOT as pure functions of the parameters.

  Static (compared and hashed by identity), so it can sit in the static part
  of a pytree and be closed over by jitted functions.

  Args:
    parameterisation: ``"twist"``, ``"correlation"`` or ``"direct"``.
    cost_fn: The ott cost :math:`c` (the user's: maps are judged with it).
    neural_f: Module of :math:`f` (a potential, or the map for ``"direct"``).
    neural_g: Module of the potential :math:`g`.
    dim: Dimension :math:`d` of the points.
    dim_cond: Dimension :math:`k` of a condition :math:`c` (0: an
      unconditional model). With a condition every function below takes
      ``c[n, k]``, one condition per point, and the networks see it: the
      maps are :math:`T(x \mid c)`, gradients are in :math:`x` at fixed
      :math:`c`.
    conditioning: How a network sees the condition: ``"concat"`` (one input
      ``[x, c]``, any row-wise module) or ``"film"`` (the module is called
      as ``module(x, c)``, e.g. :class:`ott_enot.networks.ConditionalMLP`).

  Attributes:
    training_cost_fn: The cost training uses and whose twist gives the map:
      ``cost_fn``, or for the twist of a metric cost its surrogate
      (:func:`ott_enot.costs.twist_cost`).
  """
  parameterisation: str
  cost_fn: costs.CostFn
  neural_f: nn.Module
  neural_g: nn.Module
  dim: int
  dim_cond: int = 0
  conditioning: str = "concat"

  def __post_init__(self) -> None:
    corr = self.parameterisation == "correlation"
    object.__setattr__(
        self, "training_cost_fn",
        enot_costs.twist_cost(self.cost_fn)
        if self.parameterisation == "twist" else self.cost_fn
    )

    def scalar(module):
      add = corr and not isinstance(module, ott_potentials.BasePotential)
      return _batched_scalar(module, add, self.conditioning)

    object.__setattr__(self, "_g", scalar(self.neural_g))
    if self.parameterisation != "direct":
      object.__setattr__(self, "_f", scalar(self.neural_f))

  # ---- the networks' scalar outputs (phi, psi in correlation form) ----

  def _twist(
      self, params: Params, x: jnp.ndarray, value, variable: bool,
      c: Optional[jnp.ndarray] = None
  ) -> jnp.ndarray:
    grad = _batched_grad(value)(params, x, c)
    if self.parameterisation == "correlation":
      return grad
    twist = jax.vmap(
        self.training_cost_fn.twist_operator, in_axes=(0, 0, None)
    )
    return twist(x, grad, variable)

  @property
  def surrogate(self) -> bool:
    """Whether training uses a metric cost's surrogate (not ``cost_fn``)."""
    return self.training_cost_fn is not self.cost_fn

  @property
  def domain(self) -> str:
    """Where the points live: ``"euclidean"`` or ``"sphere"``."""
    return enot_costs.domain_of(self.cost_fn)

  @property
  def on_sphere(self) -> bool:
    """Whether the cost lives on the unit sphere."""
    return self.domain == "sphere"

  def project(self, y: jnp.ndarray) -> jnp.ndarray:
    """Onto the cost's domain: normalise rows on the sphere, else identity."""
    if self.on_sphere:
      return y / jnp.linalg.norm(y, axis=-1, keepdims=True)
    return y

  @property
  def conditional(self) -> bool:
    """Whether the networks take a condition (``dim_cond > 0``)."""
    return self.dim_cond > 0

  def forward_map(self, params_f: Params, x: jnp.ndarray,
                  c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """:math:`T(x)` (:math:`T(x \mid c)`), array ``[n, d] -> [n, d]``.

    The direct map's output is normalised to unit length on the sphere.
    """
    if self.parameterisation == "direct":
      out = _apply(self.neural_f, self.conditioning, params_f, x, c)
      return self.project(out.reshape(x.shape))
    return self._twist(params_f, x, self._f, False, c)

  def inverse_map(self, params_g: Params, y: jnp.ndarray,
                  c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    r""":math:`T^{-1}(y)` (at ``c``), array ``[n, d] -> [n, d]``.

    Raises:
      ValueError: for the direct map, which has no inverse.
    """
    if self.parameterisation == "direct":
      raise ValueError(
          "This map was trained with the direct parameterisation (the f "
          "network outputs T(x)), which has no inverse map. Train with "
          "parameterisation='twist' or 'correlation' for `forward=False`."
      )
    return self._twist(params_g, y, self._g, True, c)

  # ---- dual variables of the training problem ----

  def _dual(self, value, params: Params, x: jnp.ndarray,
            c: Optional[jnp.ndarray]) -> jnp.ndarray:
    out = value(params, x, c)
    return -out if self.parameterisation == "correlation" else out

  def potential_f(self, params_f: Params, x: jnp.ndarray,
                  c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """Dual variable of the source side in the training problem, ``[n]``."""
    return self._dual(self._f, params_f, x, c)

  def potential_g(self, params_g: Params, y: jnp.ndarray,
                  c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """Dual variable of the target side in the training problem, ``[n]``."""
    return self._dual(self._g, params_g, y, c)

  def training_cost(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r"""Cost of pairs in the training problem, ``[n, d] x [n, d] -> [n]``.

    :math:`-\langle x_i, y_i\rangle` in correlation form, else
    :math:`c(x_i, y_i)` for the cost whose twist gives the map
    (:attr:`training_cost_fn`: ``cost_fn``, or a metric cost's surrogate).
    """
    if self.parameterisation == "correlation":
      return -jnp.sum(x * y, axis=-1)
    return jax.vmap(self.training_cost_fn)(x, y)

  def dual_to_cost(
      self, x: jnp.ndarray, y: jnp.ndarray, dual: jnp.ndarray
  ) -> jnp.ndarray:
    r"""Turn a dual estimate of the training problem into units of ``cost_fn``.

    Correlation form: :math:`\overline{\|x\|^2} + \overline{\|y\|^2} + 2\,
    \mathrm{dual}`, since :math:`\|x - y\|^2 = \|x\|^2 + \|y\|^2 - 2\langle x,
    y\rangle`. Identity otherwise.
    """
    if self.parameterisation == "correlation":
      sq = lambda z: jnp.mean(jnp.sum(z ** 2, axis=-1))
      return sq(x) + sq(y) + 2.0 * dual
    return dual

  def kantorovich_g(self, params_g: Params, y: jnp.ndarray,
                    c: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    r"""The Kantorovich potential :math:`g` for ``cost_fn``, ``[n, d] -> [n]``.

    :math:`\|y\|^2 - 2\psi(y)` in correlation form, the network otherwise.
    """
    out = self.potential_g(params_g, y, c)
    if self.parameterisation == "correlation":
      return jnp.sum(y ** 2, axis=-1) + 2.0 * out
    return out


class AtCondition:
  r"""A conditional :class:`TransportModel` at fixed conditions: the maps
  :math:`x \mapsto T(x \mid c)` of an unconditional model.

  Every method of :class:`TransportModel` taking ``(params, points[n, d])``
  is the conditional model's at ``c`` (one vector ``[k]`` broadcast to the
  rows, or ``[n, k]``, one per row); other attributes (the cost, the
  parameterisation, the domain) are the model's. Hashed by identity, like
  the model.

  Args:
    model: A conditional :class:`TransportModel` (``dim_cond > 0``).
    condition: ``[k]`` or ``[n, k]``.
  """

  dim_cond = 0  # looks unconditional to its users
  conditional = False

  def __init__(self, model: TransportModel, condition: jnp.ndarray):
    self.model = model
    self.condition = condition

  def __getattr__(self, name: str) -> Any:
    if name in ("model", "condition"):  # not set yet (copies, unpickling)
      raise AttributeError(name)
    return getattr(self.model, name)

  def _c(self, points: jnp.ndarray) -> jnp.ndarray:
    c = jnp.asarray(self.condition, points.dtype)
    if c.ndim == 1:
      c = jnp.broadcast_to(c, (points.shape[0], c.shape[0]))
    return c

  def forward_map(self, params_f: Params, x: jnp.ndarray) -> jnp.ndarray:
    """:math:`T(x \\mid c)`, ``[n, d] -> [n, d]``."""
    return self.model.forward_map(params_f, x, self._c(x))

  def inverse_map(self, params_g: Params, y: jnp.ndarray) -> jnp.ndarray:
    """:math:`T^{-1}(y \\mid c)`, ``[n, d] -> [n, d]``."""
    return self.model.inverse_map(params_g, y, self._c(y))

  def potential_f(self, params_f: Params, x: jnp.ndarray) -> jnp.ndarray:
    """The source-side dual variable at ``c``, ``[n]``."""
    return self.model.potential_f(params_f, x, self._c(x))

  def potential_g(self, params_g: Params, y: jnp.ndarray) -> jnp.ndarray:
    """The target-side dual variable at ``c``, ``[n]``."""
    return self.model.potential_g(params_g, y, self._c(y))

  def kantorovich_g(self, params_g: Params, y: jnp.ndarray) -> jnp.ndarray:
    """The Kantorovich potential :math:`g(\\cdot \\mid c)`, ``[n]``."""
    return self.model.kantorovich_g(params_g, y, self._c(y))
