r"""The networks: how they take points and conditions, and the defaults.

A network acts row-wise on points ``x[n, d]``. A conditional model (maps
:math:`T(x \mid z)`, :class:`~ott_enot.ConditionalExpectileNeuralDual`) also
gives each row its condition ``cond[n, k]``, in one of two ways
(``conditioning``):

- ``"concat"`` (default): one array ``[x, cond]`` of shape ``[n, d + k]``, so
  any row-wise flax module works (ott's
  :class:`~ott.neural.networks.potentials.MLP`, ...);
- ``"film"``: ``module(x[n, d], cond[n, k])``; :class:`ConditionalMLP` is the
  default there, and any module with that signature can be passed.

A network is a Linen module (``flax.linen.Module``) or a Flax NNX one
(``flax.nnx.Module``, the API new flax code and ott-jax's main branch use).
An NNX module is split once (:func:`as_network`) into its structure, a
static :class:`NNXNetwork` compared by its ``nnx.GraphDef``, and its
parameters, a pytree (nested dicts of arrays with string keys) that lives in
the training state like Linen parameters do, so that every part (the
parameterisations, populations, checkpoints, the mesh) sees one kind of
parameters. An :class:`NNXNetwork` is called as a Linen module is
(``init(rng, *inputs) -> {"params": ...}``, ``apply({"params": p},
*inputs)``).

:class:`NetworkInputs` is the one place that calls a network; gradients (the
twist maps) are taken in :math:`x` at fixed condition.
:func:`default_network` is the one place that chooses the default networks.
:class:`PiecewiseMLP` is a potential whose map may jump (where the OT map
splits a cluster).
"""
import dataclasses
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp

from flax import linen as nn
from flax import nnx
from ott.neural.networks import potentials as ott_potentials

__all__ = [
    "CONDITIONING",
    "Network",
    "NETWORK_TYPES",
    "NNXNetwork",
    "as_network",
    "with_params",
    "NetworkInputs",
    "default_network",
    "ConditionalMLP",
    "PiecewiseMLP",
    "piecewise_networks",
]

#: How a conditional model's networks take the condition.
CONDITIONING: Tuple[str, ...] = ("concat", "film")
#: Hidden widths of the default networks (``[128] * 4``, as ott's ENOT).
DEFAULT_HIDDEN: Tuple[int, ...] = (128, 128, 128, 128)

Params = Any


def _string_keys(tree: Any) -> Any:
  """Nested dicts with every key a string (``nnx.List`` items have integer
  keys; checkpoints and :mod:`flax.serialization` write strings)."""
  if isinstance(tree, dict):
    return {str(k): _string_keys(v) for k, v in tree.items()}
  return tree


def _parameters(module: nnx.Module, arg: str) -> Tuple[Any, Params]:
  """``(graphdef, params)`` of an NNX module: its structure and its
  ``nnx.Param`` values (the module's own arrays: copy them before they go
  into a training state, whose buffers training donates).

  Raises:
    ValueError: naming ``arg`` and the variables, if the module holds state
      other than parameters (batch statistics, RNG streams, ...).
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  others = [
      f"{'/'.join(map(str, path))} ({type(variable).__name__})"
      for path, variable in nnx.to_flat_state(rest)
  ]
  if others:
    raise ValueError(
        f"`{arg}` ({type(module).__name__}) holds state other than "
        f"parameters: {', '.join(others)}. Only `nnx.Param` variables are "
        f"trained: batch statistics (`nnx.BatchNorm`) and RNG streams "
        f"(`nnx.Dropout(..., rngs=...)`) are not supported; use a network "
        f"without them (e.g. `nnx.LayerNorm` instead of `nnx.BatchNorm`, no "
        f"dropout)."
    )
  return graphdef, _string_keys(nnx.to_pure_dict(params))


@dataclasses.dataclass(frozen=True, eq=False)
class NNXNetwork:
  r"""A Flax NNX network, split into a static structure and parameters.

  Compared and hashed by its ``nnx.GraphDef`` (the module's classes, their
  static attributes and the parameters' shapes), so two networks of the same
  architecture share compiled programs. Called with Linen's convention, so
  that the rest of the package treats both APIs alike:

  .. math::

    \texttt{apply}(\{\texttt{"params"}: \theta\}, x) =
    \texttt{nnx.merge}(\texttt{graphdef}, \theta)(x).

  Build one with :func:`as_network` from

  - an ``nnx.Module`` instance: training starts from its parameters (the
    module is not changed; its ``rngs`` chose them, so a solver's ``rng``
    does not), or
  - a function ``rngs -> nnx.Module`` (e.g. ``functools.partial(MyMLP, 2,
    1)`` called as ``MyMLP(2, 1, rngs=rngs)``): every initialisation builds
    a fresh module from ``nnx.Rngs(rng)``, so a solver's ``rng`` and a
    population member's ``seed`` choose the parameters, as for Linen.

  Attributes:
    graphdef: The module's ``nnx.GraphDef`` (static).
    name: The module's class name, for messages.
    initial: An instance's parameters (not compared), or :obj:`None`.
    factory: The function ``rngs -> nnx.Module`` (not compared), or
      :obj:`None`.
  """
  graphdef: Any
  name: str
  initial: Optional[Params] = dataclasses.field(default=None, compare=False)
  factory: Optional[Callable[..., nnx.Module]] = dataclasses.field(
      default=None, compare=False)

  def __eq__(self, other: Any) -> bool:
    return type(other) is NNXNetwork and other.graphdef == self.graphdef

  def __hash__(self) -> int:
    return hash((NNXNetwork, self.graphdef))

  @property
  def seeded(self) -> bool:
    """Whether ``rng`` chooses the initial parameters (a factory)."""
    return self.factory is not None

  def init(self, rng: jax.Array, *inputs: Any) -> Dict[str, Params]:
    """``{"params": θ}``: the instance's parameters (copied), or those of a
    module the factory builds from ``nnx.Rngs(rng)``; ``inputs`` unused
    (NNX modules know their shapes)."""
    del inputs
    if self.factory is None:
      return {"params": jax.tree.map(jnp.array, self.initial)}
    module = self.factory(rngs=nnx.Rngs(rng))
    return {"params": _parameters(module, self.name)[1]}

  def apply(self, variables: Dict[str, Params], *inputs: Any) -> Any:
    """The module with parameters ``variables["params"]`` on ``inputs``."""
    return self.merge(variables["params"])(*inputs)

  def init_with_output(self, rng: jax.Array, *inputs: Any) -> Tuple[Any, Any]:
    """``(apply(init(rng), *inputs), init(rng))``, as Linen's."""
    variables = self.init(rng)
    return self.apply(variables, *inputs), variables

  def merge(self, params: Params) -> nnx.Module:
    """A new ``nnx.Module`` with parameters ``params`` (e.g. trained ones:
    ``network.merge(potentials.params_f)``)."""
    return nnx.merge(self.graphdef, params)


#: What ``neural_f`` / ``neural_g`` are once :func:`as_network` has seen them.
Network = Union[nn.Module, NNXNetwork]
#: The classes of a :data:`Network`, for ``isinstance``.
NETWORK_TYPES: Tuple[type, ...] = (nn.Module, NNXNetwork)


def as_network(value: Any, arg: str = "neural_f") -> Optional[Network]:
  """A user's network as this package keeps it: a Linen module as it is, an
  ``nnx.Module`` or a function ``rngs -> nnx.Module`` as an
  :class:`NNXNetwork` (:obj:`None` stays :obj:`None`: the default).

  Nothing compiles: a factory is evaluated abstractly (``nnx.eval_shape``).

  Raises:
    TypeError: naming ``arg``, for anything else.
    ValueError: for an NNX module with state other than parameters.
  """
  if value is None or isinstance(value, NETWORK_TYPES):
    return value
  if isinstance(value, nnx.Module):
    graphdef, params = _parameters(value, arg)
    return NNXNetwork(graphdef, type(value).__name__,
                      initial=jax.tree.map(jnp.array, params))  # a copy
  accepted = (
      f"`{arg}` must be a flax Linen module (`flax.linen.Module`), a Flax NNX "
      f"module (`flax.nnx.Module`) or a function `rngs -> nnx.Module` (e.g. "
      f"`functools.partial(MyMLP, 2, 1)`, called with `rngs=nnx.Rngs(...)`)"
  )
  if isinstance(value, type):
    raise TypeError(
        f"{accepted}, got the class {value.__name__}: pass an instance, or "
        f"`functools.partial({value.__name__}, ...)` whose call with `rngs` "
        f"builds one."
    )
  if not callable(value):
    raise TypeError(f"{accepted}, got {type(value).__name__}.")
  try:
    module = nnx.eval_shape(lambda: value(rngs=nnx.Rngs(0)))
  except Exception as err:  # pylint: disable=broad-except
    raise TypeError(
        f"{accepted}; calling it as `{arg}(rngs=nnx.Rngs(0))` failed: "
        f"{type(err).__name__}: {err}"
    ) from err
  if not isinstance(module, nnx.Module):
    raise TypeError(
        f"{accepted}; the function returned {type(module).__name__}.")
  graphdef, _ = _parameters(module, arg)
  return NNXNetwork(graphdef, type(module).__name__, factory=value)


def with_params(network: Network, params: Params) -> Any:
  """The network with parameters ``params``, as its API holds one: a new
  ``nnx.Module`` (:meth:`NNXNetwork.merge`) or a bound Linen module
  (``module.bind({"params": params})``), callable on points."""
  if isinstance(network, NNXNetwork):
    return network.merge(params)
  return network.bind({"params": params})


@dataclasses.dataclass(frozen=True)
class NetworkInputs:
  """What the networks of a model take: points of dimension ``dim`` and,
  for a conditional model, conditions of dimension ``dim_cond`` given as
  ``conditioning`` says (module docstring).

  Attributes:
    dim: Dimension :math:`d` of the points.
    dim_cond: Dimension :math:`k` of the conditions (0: none).
    conditioning: ``"concat"`` or ``"film"``.
  """
  dim: int
  dim_cond: int = 0
  conditioning: str = "concat"

  def dummy(self, rows: int = 1) -> Tuple[jnp.ndarray, ...]:
    """Dummy inputs of ``rows`` points, for ``init`` and shape checks:
    ``(x,)``, ``([x, cond],)`` (concat) or ``(x, cond)`` (FiLM)."""
    x = jnp.ones((rows, self.dim))
    if not self.dim_cond:
      return (x,)
    cond = jnp.ones((rows, self.dim_cond))
    if self.conditioning == "concat":
      return (jnp.concatenate([x, cond], axis=-1),)
    return x, cond

  def init(self, module: Network, rng: jax.Array) -> Params:
    """Fresh parameters of ``module``."""
    return module.init(rng, *self.dummy())["params"]

  def apply(self, module: Network, params: Params, x: jnp.ndarray,
            cond: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """``module`` on points ``x[n, d]`` at conditions ``cond[n, k]`` (or
    none)."""
    if cond is None:
      return module.apply({"params": params}, x)
    if self.conditioning == "concat":
      return module.apply({"params": params}, jnp.concatenate([x, cond], -1))
    return module.apply({"params": params}, x, cond)

  def outputs_per_point(self, module: Network,
                        name: str = "neural_f") -> int:
    """How many numbers ``module`` returns per point.

    Found by abstract evaluation (:func:`jax.eval_shape`) on a batch of two
    points, so nothing is compiled or run.

    Raises:
      ValueError: naming ``name``, if the network cannot take its inputs
        (an NNX module built for another dimension, or a conditional
        network called another way).
    """
    inputs = self.dummy(rows=2)
    try:
      out, _ = jax.eval_shape(
          lambda: module.init_with_output(jax.random.key(0), *inputs)
      )
    except Exception as err:  # pylint: disable=broad-except
      if not self.dim_cond:
        raise ValueError(
            f"`{name}` cannot take points of dimension {self.dim} (an array "
            f"[n, {self.dim}]): build it for inputs of dimension {self.dim} "
            f"({type(err).__name__}: {err})."
        ) from err
      how = (
          f"one array [n, {self.dim + self.dim_cond}] (points and condition "
          f"concatenated)" if self.conditioning == "concat" else
          f"two arrays, `module(x[n, {self.dim}], cond[n, {self.dim_cond}])` "
          f"(e.g. `ott_enot.ConditionalMLP`)"
      )
      raise ValueError(
          f"`{name}` cannot take the conditional input: with "
          f"conditioning={self.conditioning!r} it is called with {how} "
          f"({err})."
      ) from err
    return math.prod(out.shape) // 2


def ott_linen_mlp() -> type:
  """ott's Linen MLP class: ``MLP`` on ott-jax 0.6.0, ``LinenMLP`` where
  ``MLP`` became an NNX module (ott's main branch)."""
  return getattr(ott_potentials, "LinenMLP", ott_potentials.MLP)


def default_network(out: int, conditioning: str = "concat") -> nn.Module:
  """The network used when none is given, with ``out`` outputs per point:
  ott's ELU MLP (:func:`ott_linen_mlp`) with hidden sizes ``[128] * 4``, or
  for FiLM conditioning :class:`ConditionalMLP` of the same sizes. The one
  place that decides."""
  sizes = tuple(DEFAULT_HIDDEN) + (int(out),)  # a tuple: hashable, by value
  if conditioning == "film":
    return ConditionalMLP(dim_hidden=sizes)
  return ott_linen_mlp()(dim_hidden=sizes, act_fn=jax.nn.elu)


class ConditionalMLP(nn.Module):
  r"""An MLP of :math:`x` whose hidden layers are modulated by :math:`c`
  (FiLM, Perez et al. 2018).

  .. math::

    e = \sigma(W_e c + b_e), \qquad
    h_{l+1} = \sigma\big((1 + \gamma_l(e)) \odot (W_l h_l + b_l)
    + \beta_l(e)\big), \qquad h_0 = x,

  with :math:`(\gamma_l, \beta_l)` affine in the condition embedding
  :math:`e` and initialised at zero, so that training starts from the plain
  MLP of :math:`x` shared by all conditions. The last layer is linear.

  Args:
    dim_hidden: Widths of the hidden layers, then the output size (1 for a
      potential, ``d`` for a direct map), as ott's
      :class:`~ott.neural.networks.potentials.MLP` takes them.
    dim_embedding: Width of the condition embedding :math:`e`.
    act_fn: Activation :math:`\sigma` (ELU, as ott's ENOT networks).
  """
  dim_hidden: Sequence[int]
  dim_embedding: int = 64
  act_fn: Callable[[jnp.ndarray], jnp.ndarray] = jax.nn.elu

  @nn.compact
  def __call__(self, x: jnp.ndarray, cond: jnp.ndarray) -> jnp.ndarray:
    """``x[n, d]``, ``cond[n, k]`` -> ``[n, dim_hidden[-1]]``."""
    *hidden, out = self.dim_hidden
    e = self.act_fn(nn.Dense(self.dim_embedding)(cond))
    h = x
    for width in hidden:
      h = nn.Dense(width)(h)
      scale, shift = jnp.split(
          nn.Dense(2 * width, kernel_init=nn.initializers.zeros)(e), 2,
          axis=-1
      )
      h = self.act_fn((1.0 + scale) * h + shift)
    return nn.Dense(out)(h)


class PiecewiseMLP(nn.Module):
  r"""An MLP whose first layer is a ReLU through points of the data: a
  potential whose gradient, and so the map, may jump across lines.

  .. math::

    (h_1)_i = \mathrm{relu}\big(w_i^\top (x - a_i)\big), \ i \le k, \qquad
    h_{l+1} = \sigma_{l+1}(W_{l+1} h_l + b_{l+1}), \qquad
    f(x) = v^\top h_L + b,

  with :math:`\sigma_l` the ReLU for :math:`l \le` ``relu_layers`` and the
  ELU after, and the first layer's unit :math:`i` the hyperplane through the
  point :math:`a_i` with normal :math:`w_i` (both learned). :math:`f` is
  smooth between the hyperplanes and has a kink on each, so that
  :math:`\nabla f` and the twist map :math:`T(x) = x - (\nabla
  h)^{-1}(\nabla f(x))` can jump there: where the OT map splits a
  source cluster between two target clusters, a smooth network (the
  default, ELU throughout) can only ramp across the split line, and the
  points on the ramp land between clusters. With ``relu_layers=2`` the
  second layer's units are ReLUs of piecewise-linear functions of
  :math:`x`, whose kinks may end where they meet another: :math:`f` can
  then have a three-way kink (:math:`\max(\ell_1, \ell_2, \ell_3) =
  \mathrm{relu}(\mathrm{relu}(\ell_1 - \ell_2) + \ell_2 - \ell_3) +
  \ell_3` for affine :math:`\ell_j` takes two ReLU layers), where the OT
  map splits a cluster three ways (a Y; one layer's kinks are whole
  lines). With ``relu_layers=k``, :math:`f` can take the maximum of up to
  :math:`2^k` affine pieces, width permitting.

  The points :math:`a_i` start at ``anchors``, a sample of the measure the
  network takes (the source's for ``neural_f``, the target's for
  ``neural_g``: :meth:`from_sample`), so that the hyperplanes start across the
  data wherever it lies and the network is equivariant to translations of
  it (:math:`f` of the data shifted by :math:`s`, anchored at the shifted
  sample, is :math:`f(x - s)`), as ott's ICNN takes samples for its
  initialisation (``gaussian_map_samples``). With every hyperplane through
  the origin instead (a ReLU layer's zero biases) a split at the origin
  looks easy and one elsewhere hard (judging guide).

  On ott's ``square_five`` to ``square_four`` at the demo's budget (12,000
  steps of 256, 4 seeds) the forward map strands 1.4 % of the points
  between clusters against 3.9 % with the default networks, the inverse
  6.0 % against 8.3 % (the pushforward term at 0.3), at the same cost.
  With ``relu_layers=3``, the pushforward term at 1 and the expectile at
  0.999 (the demo's, which keeps the clusters' masses and widths): 0.9 % and
  3.2 %, every cluster 0.92-1.02x the target's spread, and 1.5 % and 3.6 %
  with both measures shifted by (3, 1), where the default networks' forward
  strays double (``benchmarks/mixtures.py --network``, ``--shift``); at
  20,000 steps 1.2 % and 1.9 %. With ``relu_layers=2``: 1.6 % and 4.1 %, at
  20,000 steps 1.0 % and 2.35 %. A second ReLU layer without the pushforward
  term's pull widens the inverse's clusters (1.15-1.2x). On a smooth map
  (a Gaussian pair) the kinks cost accuracy, 3-7x the default networks'
  L2-UV with one or two ReLU layers (``benchmarks/quality.py``): it is for
  maps that split clusters, not the default.

  Args:
    dim_hidden: Widths of the hidden layers, then the output size (1 for a
      potential), as ott's :class:`~ott.neural.networks.potentials.MLP`
      takes them; at least one hidden layer.
    anchors: The first layer's starting points :math:`a_i`, one per unit of
      the first hidden layer (``dim_hidden[0]`` rows of the data's
      dimension ``d``), as a tuple of tuples of floats (hashable, so that
      equal networks share their compiled programs); :meth:`from_sample`
      makes them from an array.
    act_fn: Activation :math:`\sigma` of the layers after the ReLU ones
      (ELU, as ott's ENOT networks).
    relu_layers: How many hidden layers, from the first, are ReLU (1 to
      the number of hidden layers; the demo's networks: 3).
  """
  dim_hidden: Sequence[int]
  anchors: Tuple[Tuple[float, ...], ...]
  act_fn: Callable[[jnp.ndarray], jnp.ndarray] = jax.nn.elu
  relu_layers: int = 1

  @classmethod
  def from_sample(cls, points: Any, dim_hidden: Sequence[int],
                  **kwargs: Any) -> "PiecewiseMLP":
    """The network anchored at the first ``dim_hidden[0]`` rows of
    ``points``, an i.i.d. sample ``[n, d]`` of the measure it will take
    (``n >= dim_hidden[0]``).

    Args:
      points: Array ``[n, d]``: the source's sample for ``neural_f``, the
        target's for ``neural_g``.
      dim_hidden: As the class takes it, e.g. ``(128, 128, 128, 128, 1)``.
      kwargs: The class's other fields (``act_fn``, ``relu_layers``).

    Returns:
      A :class:`PiecewiseMLP` whose ``anchors`` are those rows.

    Raises:
      ValueError: ``points`` not ``[n, d]``, or too few rows, or no hidden
        layer in ``dim_hidden``, or ``relu_layers`` out of range.
    """
    dim_hidden = tuple(int(w) for w in dim_hidden)
    _check_hidden(dim_hidden, kwargs.get("relu_layers", 1))
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[0] < dim_hidden[0]:
      raise ValueError(
          f"`points` must be a sample [n, d] of the measure with n >= "
          f"dim_hidden[0] = {dim_hidden[0]} (one anchor per unit of the "
          f"first layer), got shape {tuple(points.shape)}: pass more points "
          f"or a narrower first layer."
      )
    anchors = tuple(tuple(float(v) for v in row)
                    for row in jax.device_get(points[:dim_hidden[0]]))
    return cls(dim_hidden=dim_hidden, anchors=anchors, **kwargs)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """``x[n, d]`` -> ``[n, dim_hidden[-1]]``."""
    *hidden, out = _check_hidden(self.dim_hidden, self.relu_layers)
    start = jnp.asarray(self.anchors, dtype=x.dtype)
    if start.shape != (hidden[0], x.shape[-1]):
      raise ValueError(
          f"`anchors` of PiecewiseMLP must hold dim_hidden[0] = {hidden[0]} "
          f"points of the data's dimension {x.shape[-1]}, got shape "
          f"{tuple(start.shape)}: build it with PiecewiseMLP.from_sample("
          f"points, dim_hidden)."
      )
    normals = self.param("normals", nn.initializers.lecun_normal(),
                         (x.shape[-1], hidden[0]))
    anchors = self.param("anchors", lambda _, shape: start, start.shape)
    h = jax.nn.relu(x @ normals - jnp.sum(anchors * normals.T, axis=-1))
    for layer, width in enumerate(hidden[1:], start=2):
      act = jax.nn.relu if layer <= self.relu_layers else self.act_fn
      h = act(nn.Dense(width)(h))
    return nn.Dense(out)(h)


def piecewise_networks(
    source: Any, target: Any,
    dim_hidden: Optional[Sequence[int]] = None,
    **kwargs: Any) -> Dict[str, PiecewiseMLP]:
  """The solver's ``neural_f`` and ``neural_g`` as :class:`PiecewiseMLP`\ s:
  ``neural_f`` anchored at the source's sample ``source[n, d]`` (it takes
  :math:`x`), ``neural_g`` at the target's ``target[m, d]`` (it takes
  :math:`y`).

  Args:
    source: Source points ``[n, d]``, ``n >= dim_hidden[0]``.
    target: Target points ``[m, d]``, ``m >= dim_hidden[0]``.
    dim_hidden: Hidden widths then 1; default ``[128] * 4 + [1]`` (the
      default networks' widths).
    kwargs: :class:`PiecewiseMLP`'s other fields (``relu_layers``,
      ``act_fn``).

  Returns:
    ``{"neural_f": ..., "neural_g": ...}``, the solver's keyword arguments.
  """
  if dim_hidden is None:
    dim_hidden = tuple(DEFAULT_HIDDEN) + (1,)
  return dict(neural_f=PiecewiseMLP.from_sample(source, dim_hidden, **kwargs),
              neural_g=PiecewiseMLP.from_sample(target, dim_hidden, **kwargs))


def _check_hidden(dim_hidden: Sequence[int],
                  relu_layers: int = 1) -> Tuple[int, ...]:
  dim_hidden = tuple(dim_hidden)
  if len(dim_hidden) < 2:
    raise ValueError(
        f"`dim_hidden` of PiecewiseMLP needs at least one hidden width "
        f"before the output size, got {dim_hidden}: e.g. "
        f"(128, 128, 128, 128, 1)."
    )
  if (isinstance(relu_layers, bool) or not isinstance(relu_layers, int)
      or not 1 <= relu_layers <= len(dim_hidden) - 1):
    raise ValueError(
        f"`relu_layers` of PiecewiseMLP must be an integer from 1 to the "
        f"number of hidden layers ({len(dim_hidden) - 1} in dim_hidden="
        f"{dim_hidden}), got {relu_layers!r}: e.g. 2 (the anchored layer "
        f"and the next one ReLU, the rest ELU)."
    )
  return dim_hidden
