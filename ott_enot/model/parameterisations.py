r"""How the transport maps and the dual potentials come from the two networks:
one class per parameterisation.

A :class:`TransportModel` is the model description: the cost, the two flax
modules, what they take (:class:`~ott_enot.model.networks.NetworkInputs`:
the dimension, a condition's dimension and how the networks see it) and,
by its class, the parameterisation. It turns parameters into maps and
potentials as pure functions of ``(params, points[n, d], cond[n, k])``:

- :class:`Twist` (``"twist"``; a cost with an invertible twist, e.g. a
  :class:`~ott.geometry.costs.TICost` with ``h_legendre``, or a metric cost
  through its surrogate);
- :class:`Correlation` (``"correlation"``; ott's
  :class:`~ott.geometry.costs.SqEuclidean` only);
- :class:`Direct` (``"direct"``; any cost, the ``f`` network outputs the
  map, forward only).

Each class reads top to bottom: its maps, its potentials, the cost training
uses, the networks' output sizes, whether it has an inverse, and what it
cannot do. :func:`transport_model` and :func:`resolve_parameterisation` are
the one place where a name is looked up (``MODELS``) and where the user's
choices meet the cost's capabilities.

Vocabulary. The *dual potentials* (:meth:`TransportModel.potential_f`,
:meth:`TransportModel.potential_g`) are the dual variables of the problem
training solves (for the correlation form, the problem with cost
:math:`-\langle x, y\rangle`); the *Kantorovich potential*
(:meth:`TransportModel.kantorovich_g`) is :math:`g` for the user's cost.
"""
import dataclasses
import functools
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials

from ott_enot import checks
from ott_enot import costs as costs_lib
from ott_enot.model import networks
from ott_enot.model.networks import Network, NetworkInputs
from ott_enot.training import checkpoints
from ott_enot.training.inputs import DataSpec

__all__ = [
    "TransportModel",
    "Twist",
    "Correlation",
    "Direct",
    "MODELS",
    "transport_model",
    "resolve_parameterisation",
    "check_networks",
]

Params = Any


@dataclasses.dataclass(frozen=True, eq=False)
class TransportModel:
  r"""Maps and potentials of ENOT as pure functions of the parameters.

  Static, compared and hashed by value (its class, the cost's
  :func:`~ott_enot.costs.cost_key`, the networks as flax compares them, the
  dimensions, the conditioning and a bound condition's values), so it can
  sit in the static part of a pytree, and two models of equal settings
  share their compiled programs; a network with unhashable attributes (a
  list of widths) is compared by its fields' values
  (:func:`~ott_enot.checks.static_key`).
  Build one with :func:`transport_model`; the class is the
  parameterisation.

  Args:
    cost_fn: The ott cost :math:`c` (the user's: maps are judged with it).
    neural_f: Module of :math:`f` (a potential, or the map for
      :class:`Direct`).
    neural_g: Module of the potential :math:`g`.
    dim: Dimension :math:`d` of the points.
    dim_cond: Dimension :math:`k` of a condition (0: an unconditional
      model). With a condition every function below takes ``cond[n, k]``,
      one condition per point, and the networks see it: the maps are
      :math:`T(x \mid z)`, gradients are in :math:`x` at fixed condition.
    conditioning: How a network sees the condition: ``"concat"`` or
      ``"film"`` (:mod:`ott_enot.model.networks`).
    cond: A condition bound to the model (:meth:`at`): ``[k]`` or ``[n,
      k]``, used whenever a function is called without one.

  Attributes:
    parameterisation: The name, ``"twist"``, ``"correlation"`` or
      ``"direct"``.
    has_inverse: Whether :meth:`inverse_map` exists.
    f_is_potential: Whether ``neural_f`` is a potential (else the map).
  """
  cost_fn: costs.CostFn
  neural_f: Network
  neural_g: Network
  dim: int
  dim_cond: int = 0
  conditioning: str = "concat"
  cond: Optional[jnp.ndarray] = None

  parameterisation: ClassVar[str]
  has_inverse: ClassVar[bool] = True
  f_is_potential: ClassVar[bool] = True

  # ---- what the networks must be, and what the cost must support ----

  @classmethod
  def f_outputs(cls, dim: int) -> int:
    """Numbers ``neural_f`` returns per point (``neural_g``: always 1)."""
    del dim
    return 1

  @classmethod
  def unsupported(cls, name: str) -> str:
    """What to do instead, for a cost that does not support this class."""
    raise NotImplementedError

  @classmethod
  def resolve_bidirectional(cls, bidirectional: Optional[bool],
                            supported: Tuple[str, ...], name: str) -> bool:
    """Whether to train both directions (:obj:`None`: whenever there is an
    inverse)."""
    del supported, name
    return True if bidirectional is None else bool(bidirectional)

  # ---- common to every parameterisation ----

  @functools.cached_property
  def _key(self) -> tuple:
    cond = None if self.cond is None else checks.array_key(self.cond)
    return (type(self), costs_lib.cost_key(self.cost_fn),
            checks.static_key(self.neural_f), checks.static_key(self.neural_g),
            int(self.dim), int(self.dim_cond), str(self.conditioning), cond)

  def __eq__(self, other: Any) -> bool:
    return type(other) is type(self) and other._key == self._key

  def __hash__(self) -> int:
    return hash(self._key)

  @functools.cached_property
  def training_cost_fn(self) -> costs.CostFn:
    """The cost training uses (and whose twist gives a twist map)."""
    return self.cost_fn

  @property
  def inputs(self) -> NetworkInputs:
    """What the networks take."""
    return NetworkInputs(self.dim, self.dim_cond, self.conditioning)

  @property
  def surrogate(self) -> bool:
    """Whether training uses a metric cost's surrogate (not ``cost_fn``)."""
    return self.training_cost_fn is not self.cost_fn

  @property
  def domain(self) -> str:
    """Where the points live, ``"euclidean"`` or ``"sphere"``."""
    return costs_lib.domain_of(self.cost_fn)

  @property
  def on_sphere(self) -> bool:
    """Whether the cost lives on the unit sphere."""
    return self.domain == "sphere"

  @property
  def conditional(self) -> bool:
    """Whether the networks take a condition (``dim_cond > 0``)."""
    return self.dim_cond > 0

  @property
  def data_spec(self) -> DataSpec:
    """What the data of this model must be."""
    return DataSpec(self.dim, self.dim_cond, self.domain, self.cost_fn)

  def describe(self) -> Dict[str, Any]:
    """The model description that a checkpoint must match (a JSON value)."""
    return {
        "cost": checkpoints.describe_cost(self.cost_fn),
        "parameterisation": self.parameterisation,
        "dim_data": int(self.dim),
        "dim_cond": int(self.dim_cond),
        "conditioning": str(self.conditioning),
    }

  def modules(self, params_f: Params, params_g: Params) -> Tuple[Any, Any]:
    """The two networks holding ``params_f`` and ``params_g``
    (:func:`~ott_enot.model.networks.with_params`): new ``nnx.Module`` s
    for NNX networks, bound modules for Linen ones."""
    return (networks.with_params(self.neural_f, params_f),
            networks.with_params(self.neural_g, params_g))

  def at(self, cond: jnp.ndarray) -> "TransportModel":
    r"""The model at a fixed condition: its functions called without a
    condition use ``cond`` (``[k]`` for every row, or ``[n, k]``)."""
    return dataclasses.replace(self, cond=cond)

  def project(self, y: jnp.ndarray) -> jnp.ndarray:
    """Onto the cost's domain: normalise rows on the sphere, else identity."""
    if self.on_sphere:
      return y / jnp.linalg.norm(y, axis=-1, keepdims=True)
    return y

  def _cond(self, points: jnp.ndarray,
            cond: Optional[jnp.ndarray]) -> Optional[jnp.ndarray]:
    """The rows' conditions: ``cond``, or the bound one broadcast."""
    if cond is not None or self.cond is None:
      return cond
    bound = jnp.asarray(self.cond, points.dtype)
    if bound.ndim == 1:
      bound = jnp.broadcast_to(bound, (points.shape[0], bound.shape[0]))
    return bound

  def _network(self, module: Network, params: Params, x: jnp.ndarray,
               cond: Optional[jnp.ndarray]) -> jnp.ndarray:
    return self.inputs.apply(module, params, x, self._cond(x, cond))

  def _scalar(self, module: Network, params: Params, x: jnp.ndarray,
              cond: Optional[jnp.ndarray]) -> jnp.ndarray:
    """A potential network's value per point, ``[n]``."""
    return self._network(module, params, x, cond).reshape(x.shape[0])

  def potential_f(self, params_f: Params, x: jnp.ndarray,
                  cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """Dual potential of the source side in the training problem, ``[n]``."""
    return self._scalar(self.neural_f, params_f, x, cond)

  def potential_g(self, params_g: Params, y: jnp.ndarray,
                  cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """Dual potential of the target side in the training problem, ``[n]``."""
    return self._scalar(self.neural_g, params_g, y, cond)

  def kantorovich_g(self, params_g: Params, y: jnp.ndarray,
                    cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """The Kantorovich potential :math:`g` for ``cost_fn``, ``[n]``."""
    return self.potential_g(params_g, y, cond)

  def training_cost(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Cost of pairs in the training problem, ``[n, d] x [n, d] -> [n]``."""
    return jax.vmap(self.training_cost_fn)(x, y)

  def dual_to_cost(self, x: jnp.ndarray, y: jnp.ndarray,
                   dual: jnp.ndarray) -> jnp.ndarray:
    """A dual estimate of the training problem in units of ``cost_fn``."""
    del x, y
    return dual

  def forward_map(self, params_f: Params, x: jnp.ndarray,
                  cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    r""":math:`T(x)` (:math:`T(x \mid z)`), ``[n, d] -> [n, d]``."""
    raise NotImplementedError

  def inverse_map(self, params_g: Params, y: jnp.ndarray,
                  cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    r""":math:`T^{-1}(y)` (at a condition), ``[n, d] -> [n, d]``."""
    raise NotImplementedError


def _grad_x(value: Callable[..., jnp.ndarray], params: Params, x: jnp.ndarray,
            cond: Optional[jnp.ndarray]) -> jnp.ndarray:
  # networks act row-wise, so the gradient of the sum gives every row's
  # gradient in one backward pass; a condition is held fixed (grad in x)
  return jax.grad(lambda z: value(params, z, cond).sum())(x)


class Twist(TransportModel):
  r"""Both networks are Kantorovich potentials, :math:`f = f_\theta`,
  :math:`g = g_\omega`, and the maps come from the cost's twist
  (:meth:`~ott.geometry.costs.CostFn.twist_operator`):

  .. math::

    T(x) = x - \nabla h^*(\nabla f(x)), \qquad T^{-1}(y) = y + \nabla h^*(-
    \nabla g(y))

  for a translation-invariant cost :math:`h(x - y)`; the exponential map on
  the sphere. A metric cost :math:`d` (the Euclidean distance, the geodesic
  distance on the sphere) has no invertible twist: every point of a
  transport ray minimises :math:`d(x, \cdot) - g`, so the c-transform does
  not determine :math:`T`. It trains instead with its registered surrogate
  (:func:`ott_enot.costs.twist_cost`), the strictly convex :math:`d^p / p`,
  whose optimal map is unique and close to optimal for :math:`d` (:math:`p
  \to 1`); the potentials are the surrogate's, while :math:`T` is judged and
  its cost reported with :math:`d`. Both directions.
  """
  parameterisation: ClassVar[str] = "twist"

  @classmethod
  def unsupported(cls, name: str) -> str:  # noqa: D102
    return (
        f"{name} has no invertible twist; use parameterisation='direct' (or "
        f"is_bidirectional=False) so that `neural_f` outputs the map itself"
    )

  @functools.cached_property
  def training_cost_fn(self) -> costs.CostFn:
    """``cost_fn``, or for a metric cost its surrogate."""
    return costs_lib.twist_cost(self.cost_fn)

  def _twist(self, value, params, points, cond, variable: bool):
    grad = _grad_x(value, params, points, cond)
    twist = jax.vmap(self.training_cost_fn.twist_operator,
                     in_axes=(0, 0, None))
    return twist(points, grad, variable)

  def forward_map(self, params_f, x, cond=None):  # noqa: D102
    return self._twist(self.potential_f, params_f, x, cond, False)

  def inverse_map(self, params_g, y, cond=None):  # noqa: D102
    return self._twist(self.potential_g, params_g, y, cond, True)


class Correlation(TransportModel):
  r"""Squared Euclidean cost only: training uses the cost :math:`-\langle
  x, y\rangle` and convex potentials

  .. math::

    \varphi = f_\theta + \tfrac12\|x\|^2, \qquad
    \psi = g_\omega + \tfrac12\|y\|^2

  (a :class:`~ott.neural.networks.potentials.BasePotential`, e.g. an ICNN, is
  used as the convex potential as it is, like ott's ``W2NeuralDual`` does).
  The dual potentials of the :math:`-\langle x, y\rangle` problem are
  :math:`-\varphi` and :math:`-\psi`; :math:`T = \nabla\varphi`,
  :math:`T^{-1} = \nabla\psi`, and for :math:`c(x, y) = \|x - y\|^2` the
  Kantorovich potential is :math:`\|y\|^2 - 2\psi`. ott 0.4.7-0.5.1's
  ``use_dot_product=True``.
  """
  parameterisation: ClassVar[str] = "correlation"

  @classmethod
  def unsupported(cls, name: str) -> str:  # noqa: D102
    del name
    return (
        "the correlation form (use_dot_product=True) exists only for "
        "`costs.SqEuclidean()`; use that cost, or drop "
        "`use_dot_product`/`parameterisation='correlation'`"
    )

  def convex_potential(self, module: Network, params: Params,
                       x: jnp.ndarray,
                       cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    r""":math:`\varphi` (of ``neural_f``) or :math:`\psi` (``neural_g``),
    ``[n]``."""
    out = self._scalar(module, params, x, cond)
    if isinstance(module, ott_potentials.BasePotential):
      return out
    return out + 0.5 * jnp.sum(x ** 2, axis=-1)

  def potential_f(self, params_f, x, cond=None):  # noqa: D102
    return -self.convex_potential(self.neural_f, params_f, x, cond)

  def potential_g(self, params_g, y, cond=None):  # noqa: D102
    return -self.convex_potential(self.neural_g, params_g, y, cond)

  def kantorovich_g(self, params_g, y, cond=None):
    r""":math:`\|y\|^2 - 2\psi(y)`, ``[n]``."""
    return jnp.sum(y ** 2, axis=-1) + 2.0 * self.potential_g(params_g, y, cond)

  def training_cost(self, x, y):
    r""":math:`-\langle x_i, y_i\rangle`, ``[n]``."""
    return -jnp.sum(x * y, axis=-1)

  def dual_to_cost(self, x, y, dual):
    r""":math:`\overline{\|x\|^2} + \overline{\|y\|^2} + 2\,\mathrm{dual}`,
    since :math:`\|x - y\|^2 = \|x\|^2 + \|y\|^2 - 2\langle x, y\rangle`."""
    sq = lambda z: jnp.mean(jnp.sum(z ** 2, axis=-1))
    return sq(x) + sq(y) + 2.0 * dual

  def forward_map(self, params_f, x, cond=None):
    r""":math:`\nabla\varphi(x)`."""
    phi = lambda p, z, cond: self.convex_potential(self.neural_f, p, z, cond)
    return _grad_x(phi, params_f, x, cond)

  def inverse_map(self, params_g, y, cond=None):
    r""":math:`\nabla\psi(y)`."""
    psi = lambda p, z, cond: self.convex_potential(self.neural_g, p, z, cond)
    return _grad_x(psi, params_g, y, cond)


class Direct(TransportModel):
  r"""The ``f`` network outputs :math:`T(x)` itself (normalised to unit
  length on the sphere); :math:`g` is a potential. Any cost, forward only.
  For a metric cost this is ott 0.5.1's ``is_bidirectional=False``, kept for
  compatibility: the amortisation has no unique minimiser, and the map
  strands mass (see :class:`Twist`).
  """
  parameterisation: ClassVar[str] = "direct"
  has_inverse: ClassVar[bool] = False
  f_is_potential: ClassVar[bool] = False

  @classmethod
  def f_outputs(cls, dim: int) -> int:  # noqa: D102
    return dim

  @classmethod
  def unsupported(cls, name: str) -> str:  # noqa: D102
    return f"{name} does not support the direct map"

  @classmethod
  def resolve_bidirectional(cls, bidirectional, supported, name):
    """Never: the direct map has no inverse (``True`` raises)."""
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
    return False

  def potential_f(self, params_f, x, cond=None):
    """Raises: the ``f`` network is the map, not a potential."""
    raise ValueError(
        "With the direct parameterisation the f network outputs the map "
        "T(x), not a potential."
    )

  def forward_map(self, params_f, x, cond=None):  # noqa: D102
    out = self._network(self.neural_f, params_f, x, cond)
    return self.project(out.reshape(x.shape))

  def inverse_map(self, params_g, y, cond=None):
    """Raises: the direct map has no inverse."""
    raise ValueError(
        "This map was trained with the direct parameterisation (the f "
        "network outputs T(x)), which has no inverse map. Train with "
        "parameterisation='twist' or 'correlation' for `forward=False`."
    )


#: The parameterisations by name (the one lookup).
MODELS: Dict[str, type] = {
    cls.parameterisation: cls for cls in (Twist, Correlation, Direct)
}
assert tuple(MODELS) == costs_lib.PARAMETERISATIONS


def transport_model(parameterisation: str, cost_fn: costs.CostFn,
                    neural_f: Network, neural_g: Network, dim: int,
                    dim_cond: int = 0,
                    conditioning: str = "concat") -> TransportModel:
  """The :class:`TransportModel` of the named parameterisation.

  Raises:
    ValueError: for an unknown name.
  """
  return _model_class(parameterisation)(cost_fn, neural_f, neural_g, int(dim),
                                        int(dim_cond), conditioning)


def _model_class(parameterisation: Any) -> type:
  try:
    return MODELS[parameterisation]
  except (KeyError, TypeError):
    raise ValueError(
        f"`parameterisation` must be one of {tuple(MODELS)}, got "
        f"{parameterisation!r}."
    ) from None


def resolve_parameterisation(
    cost_fn: costs.CostFn,
    parameterisation: Optional[str] = None,
    bidirectional: Optional[bool] = None,
    neural_f: Optional[Network] = None,
    dim: Optional[int] = None,
    dim_cond: int = 0,
    conditioning: str = "concat",
) -> Tuple[str, bool]:
  """Choose the parameterisation and whether to train both directions.

  The one place where the user's choices (ours, and ott 0.4.7-0.5.1's
  ``is_bidirectional`` / ``use_dot_product`` translated by
  :mod:`ott_enot.solvers.compat`) and the networks meet the cost's
  capabilities.

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
    conditioning: How they take it.

  Returns:
    ``(parameterisation, bidirectional)``.

  Raises:
    ValueError: for a combination the cost cannot do, saying what to use.
  """
  supported = costs_lib.supported_parameterisations(cost_fn)
  name = type(cost_fn).__name__
  if not supported:
    raise ValueError(
        f"`cost_fn={name}` compares structured objects (Gaussians, time "
        f"series), not points, so ENOT has no parameterisation for it; use a "
        f"cost between points (see `ott_enot.costs.available_costs()`)."
    )
  if parameterisation is None:
    if isinstance(neural_f, networks.NETWORK_TYPES):
      outputs = NetworkInputs(dim, dim_cond, conditioning).outputs_per_point(
          neural_f)
      wants_map = outputs == dim and (dim > 1 or bidirectional is False)
    else:
      wants_map = bidirectional is False
    parameterisation = Direct.parameterisation if wants_map else supported[0]
  cls = _model_class(parameterisation)
  if parameterisation not in supported:
    raise ValueError(
        f"`cost_fn={name}()` does not support parameterisation "
        f"{parameterisation!r} (it supports {supported}): "
        f"{cls.unsupported(name)}."
    )
  return parameterisation, cls.resolve_bidirectional(bidirectional, supported,
                                                     name)


def check_networks(parameterisation: str, neural_f: Network,
                   neural_g: Network, dim: int, dim_cond: int = 0,
                   conditioning: str = "concat") -> None:
  """Check that the networks' output shapes fit the parameterisation.

  ``neural_g`` is always a potential (one number per point); ``neural_f`` is
  a potential too, except for the direct map where it outputs ``dim``
  numbers.

  Raises:
    TypeError: if a network is not a flax module (Linen, or NNX as
      :func:`~ott_enot.model.networks.as_network` keeps it).
    ValueError: naming the network whose output does not fit, and the fix.
  """
  for arg, module in (("neural_f", neural_f), ("neural_g", neural_g)):
    if not isinstance(module, networks.NETWORK_TYPES):
      raise TypeError(
          f"`{arg}` must be a flax Linen `nn.Module` or an `nnx.Module` "
          f"(passed through `ott_enot.model.networks.as_network`), got "
          f"{type(module).__name__}."
      )
  cls = _model_class(parameterisation)
  network_inputs = NetworkInputs(dim, dim_cond, conditioning)
  for arg, module, want in (("neural_f", neural_f, cls.f_outputs(dim)),
                            ("neural_g", neural_g, 1)):
    got = network_inputs.outputs_per_point(module, arg)
    if got == want:
      continue
    what = "the map T(x)" if want == dim and want != 1 else "a potential"
    extra = ""
    if arg == "neural_f" and got == dim:
      extra = (
          " A network that outputs vectors gives the map itself: use "
          "parameterisation='direct' (is_bidirectional=False)."
      )
    raise ValueError(
        f"`{arg}` returns {got} number(s) per point of dimension {dim}, but "
        f"with parameterisation={parameterisation!r} it must return {want} "
        f"({what}); e.g. `potentials.MLP(dim_hidden=[128, 128, 128, 128, "
        f"{want}])`.{extra}"
    )
