r"""The entropic plan as an energy: its model, its parameters, its sampler and
the potentials a user gets.

For a cost :math:`c` and :math:`\varepsilon > 0`, the entropic OT plan

.. math::

  \pi_\varepsilon = \arg\min_{\pi \in \Pi(\alpha, \beta)} \int c\, d\pi +
  \varepsilon\,\mathrm{KL}(\pi \,\|\, \alpha \otimes \beta)

has conditionals :math:`\pi_\varepsilon(y \mid x) \propto \exp\big((f(y) -
c(x, y))/\varepsilon\big)` for one function :math:`f` of :math:`y` (the
dual potential plus :math:`\varepsilon \log \beta`; EgNOT,
:cite:`mokrov:24`). ``c`` is the user's cost as ott writes it: ott's ``SqEuclidean``
is :math:`\|x - y\|^2` (no ½), so its :math:`\varepsilon` is twice the
:math:`\varepsilon` of :math:`\tfrac12\|x - y\|^2` (``costs.PNormP(2)``);
the differential-entropy regularisation gives the same plan.

:class:`EnergyModel` learns

.. math::

  f(y) = g_0(y) + \varepsilon\, r_\theta(y), \qquad
  \log \pi(y \mid x) = \frac{g_0(y) - c(x, y)}{\varepsilon} +
  r_\theta(y) + \text{const}(x),

with :math:`g_0` the Kantorovich potential of an ENOT warm start (zero for a
cold start) and :math:`r_\theta` a network in units of :math:`\log\pi`
(the factor :math:`\varepsilon` keeps its scale the same for every
:math:`\varepsilon`: it learns :math:`\log\beta` plus the entropic
correction :math:`(f - \varepsilon\log\beta - g_0)/\varepsilon`). Its
random initial tilt moves a conditional's mean by about
:math:`\varepsilon\nabla r_\theta`: little where ENOT's plan is right
(small :math:`\varepsilon`), and the residual has to be learned anyway where
it is not. As :math:`\varepsilon \to 0` the plan concentrates on
ENOT's map :math:`T(x) = \arg\min_y c(x, y) - g_0(y)`; as
:math:`\varepsilon \to \infty` on :math:`\beta`. Warm chains start from
whichever the plan is near (:meth:`EnergyModel.start`): target points kept
in the state (*anchors* :math:`a_j \sim \beta`) resampled with ENOT's
semi-discrete entropic weights :math:`w_j(x) \propto \exp((g_0(a_j) - c(x,
a_j))/\varepsilon)` when they spread over several anchors, else
:math:`T(x)` plus noise of the conditional's scale.
"""
import dataclasses
import functools
import os
from typing import Any, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from flax import serialization
from flax import struct
from ott.geometry import costs

from ott_enot import checks
from ott_enot import costs as costs_lib
from ott_enot.model import langevin
from ott_enot.model.networks import Network, NetworkInputs
from ott_enot.model.parameterisations import TransportModel
from ott_enot.model.potentials import _checked_params

#: The effective number of anchors above which warm chains start at
#: resampled anchors rather than at ENOT's map (:meth:`EnergyModel.start`).
SPREAD_ANCHORS = 4.0

__all__ = [
    "SPREAD_ANCHORS",
    "EnergyModel",
    "EntropicParams",
    "EntropicPotentials",
    "sample_plan",
    "cost_curvature",
]

Params = Any


class EntropicParams(struct.PyTreeNode):
  r"""What an entropic plan is made of (a pytree).

  Attributes:
    energy: The parameters of :math:`r_\theta`, the trained part.
    base: ENOT's ``(params_f, params_g)`` of the warm start (frozen), or
      ``()`` for a cold start.
    epsilon: :math:`\varepsilon`, a scalar.
    log_step: :math:`\log h`, the Langevin step size adapted in training.
    chain_loc: ``[d]``: where cold chains start (the target's mean), zero
      for warm chains (which start at :math:`T(x)`).
    chain_scale: ``[d]``: the spread of the chains' starts.
    anchors: ``[m, d]``, target points kept for the chains' starts.
  """
  energy: Params
  base: Any
  epsilon: jnp.ndarray
  log_step: jnp.ndarray
  chain_loc: jnp.ndarray
  chain_scale: jnp.ndarray
  anchors: jnp.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class EnergyModel:
  r"""How the conditional log density comes from the networks (static;
  compared and hashed by value, so equal models share programs).

  Args:
    cost_fn: The cost :math:`c` (with a gradient in :math:`y`).
    network: The residual :math:`r_\theta` (one number per point).
    dim: :math:`d`.
    base: The ENOT model of the warm start
      (:class:`~ott_enot.model.parameterisations.TransportModel`), or
      :obj:`None` for a cold start.
  """
  cost_fn: costs.CostFn
  network: Network
  dim: int
  base: Optional[TransportModel] = None

  @functools.cached_property
  def _key(self) -> tuple:
    return (costs_lib.cost_key(self.cost_fn), checks.static_key(self.network),
            int(self.dim), self.base)

  def __eq__(self, other: Any) -> bool:
    return type(other) is type(self) and other._key == self._key

  def __hash__(self) -> int:
    return hash(self._key)

  @property
  def warm(self) -> bool:
    """Whether chains start at an ENOT map."""
    return self.base is not None

  @functools.cached_property
  def base_energy(self) -> bool:
    r"""Whether the warm start's :math:`g_0` is a potential of this cost
    (the ENOT model trained on ``cost_fn`` itself, not on a metric cost's
    surrogate); else only its map is used (where chains start)."""
    return (self.base is not None and not self.base.surrogate
            and costs_lib.cost_key(self.base.cost_fn)
            == costs_lib.cost_key(self.cost_fn))

  @property
  def inputs(self) -> NetworkInputs:
    """What the residual network takes."""
    return NetworkInputs(self.dim)

  def init_energy(self, rng: jax.Array) -> Params:
    """Fresh parameters of the residual network."""
    return self.inputs.init(self.network, rng)

  def residual(self, energy: Params, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`r_\theta(y_i)`, ``[n]`` (units of :math:`\log \pi`)."""
    return self.inputs.apply(self.network, energy, y).reshape(y.shape[0])

  def base_potential(self, params: EntropicParams,
                     y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`g_0(y_i)` ``[n]`` (zero without a usable warm start)."""
    if not self.base_energy:
      return jnp.zeros(y.shape[:1], y.dtype)
    base = jax.lax.stop_gradient(params.base[1])
    return self.base.kantorovich_g(base, y)

  def energy(self, params: EntropicParams, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`f(y_i) = g_0(y_i) + \varepsilon\, r_\theta(y_i)`, ``[n]``,
    in units of the cost."""
    return (self.base_potential(params, y)
            + params.epsilon * self.residual(params.energy, y))

  def log_density(self, params: EntropicParams, x: jnp.ndarray,
                  y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\log \pi(y_i \mid x_i)` up to a constant in :math:`y`,
    :math:`(g_0(y_i) - c(x_i, y_i))/\varepsilon + r_\theta(y_i)`,
    ``[n]``."""
    cost = jax.vmap(self.cost_fn)(x, y)
    return ((self.base_potential(params, y) - cost) / params.epsilon
            + self.residual(params.energy, y))

  def base_map(self, params: EntropicParams, x: jnp.ndarray) -> jnp.ndarray:
    r"""The warm start's map :math:`T(x_i)`, ``[n, d]``."""
    base = jax.lax.stop_gradient(params.base[0])
    return self.base.forward_map(base, x)

  def start(self, params: EntropicParams, x: jnp.ndarray, rng: jax.Array,
            num_samples: int = 1) -> jnp.ndarray:
    r"""Where ``num_samples`` chains for each row of ``x[n, d]`` begin,
    ``[n * num_samples, d]`` (row ``i``'s chains consecutive).

    Cold: :math:`\mu + \sigma \odot \xi` (:math:`\mu` = ``chain_loc``,
    :math:`\sigma` = ``chain_scale``: noise of the target's scale, the
    authors' recipe). Warm: an anchor :math:`a_j` drawn with the weights
    :math:`w_j(x_i) \propto \exp((g_0(a_j) - c(x_i, a_j))/\varepsilon)`
    where their effective number :math:`1/\sum_j w_j^2` is at least
    :data:`SPREAD_ANCHORS` (the plan spreads over the target: large
    :math:`\varepsilon`), else :math:`T(x_i) + \sigma\odot\xi` (the plan
    is concentrated near the map: small :math:`\varepsilon`).
    """
    n, d = x.shape
    noise_key, anchor_key = jax.random.split(rng)
    noise = jax.random.normal(noise_key, (n * num_samples, d), x.dtype)
    noise = noise * params.chain_scale
    if not self.warm:
      return params.chain_loc + noise
    mapped = jnp.repeat(self.base_map(params, x), num_samples, axis=0)
    anchors = params.anchors
    cost = jax.vmap(lambda xi: jax.vmap(
        lambda a: self.cost_fn(xi, a))(anchors))(x)
    logits = (self.base_potential(params, anchors)[None] - cost) / (
        params.epsilon)
    weights = jax.nn.softmax(logits, axis=-1)
    spread = 1.0 / jnp.sum(weights ** 2, axis=-1)
    picks = jax.random.categorical(anchor_key, logits,
                                   shape=(num_samples, n)).T.reshape(-1)
    use_anchor = jnp.repeat(spread >= SPREAD_ANCHORS, num_samples)
    return jnp.where(use_anchor[:, None], anchors[picks], mapped + noise)


def cost_curvature(cost_fn: costs.CostFn, x: jnp.ndarray, y: jnp.ndarray,
                   rng: jax.Array, probes: int = 4) -> jnp.ndarray:
  r"""The mean curvature :math:`\kappa = \overline{\mathrm{tr}\,
  \nabla_y^2 c(x_i, y_i)} / d` of the cost in :math:`y` at pairs ``x[n,
  d]``, ``y[n, d]`` (Hutchinson's estimate with ``probes`` Rademacher
  vectors; 2 for ott's ``SqEuclidean``, 1 for ``PNormP(2)``): the scale
  :math:`\varepsilon / \kappa` of a conditional's variance as
  :math:`\varepsilon \to 0`."""
  d = x.shape[-1]
  grad_y = lambda xi, yi: jax.grad(lambda z: cost_fn(xi, z))(yi)

  def quad(xi, yi, v):
    return jnp.dot(v, jax.jvp(lambda z: grad_y(xi, z), (yi,), (v,))[1])

  v = jax.random.rademacher(rng, (probes,) + x.shape, x.dtype)
  values = jax.vmap(lambda vk: jax.vmap(quad)(x, y, vk))(v)
  kappa = jnp.mean(jnp.where(jnp.isfinite(values), values, 0.0)) / d
  return jnp.maximum(kappa, 1e-6)


def sample_plan(model: EnergyModel, params: EntropicParams, x: jnp.ndarray,
                rng: jax.Array, *, num_samples: int, num_steps: int,
                adjusted: bool = True, adapt_steps: int = 0
               ) -> Tuple[jnp.ndarray, langevin.LangevinInfo]:
  r"""``num_samples`` draws of :math:`\pi(\cdot \mid x_i)` per row of
  ``x[n, d]``: independent chains from :meth:`EnergyModel.start`, run for
  ``num_steps`` Langevin steps (MALA if ``adjusted``, else ULA; the first
  ``adapt_steps`` adapt the step size). Pure and jittable.

  Returns:
    ``(samples [n, num_samples, d], info)``.
  """
  n, d = x.shape
  x_rep = jnp.repeat(x, num_samples, axis=0)
  start_key, chain_key = jax.random.split(rng)
  y0 = model.start(params, x, start_key, num_samples)
  log_density = lambda y: model.log_density(params, x_rep, y)
  y, info = langevin.langevin(log_density, y0, params.log_step, num_steps,
                              chain_key, adjusted=adjusted,
                              adapt_steps=adapt_steps)
  return y.reshape(n, num_samples, d), info


_sample = jax.jit(sample_plan, static_argnames=(
    "model", "num_samples", "num_steps", "adjusted", "adapt_steps"))


@jtu.register_pytree_node_class
class EntropicPotentials:
  r"""A learned entropic plan: sample :math:`y \sim \pi_\varepsilon(\cdot
  \mid x)`, its conditional means, its energy (module docstring).

  A pytree whose leaves are :class:`EntropicParams`; the
  :class:`EnergyModel` and the default number of sampling steps are static.

  Args:
    params: The :class:`EntropicParams`.
    model: The :class:`EnergyModel`.
    num_steps: Default Langevin steps of :meth:`sample`.
  """

  def __init__(self, params: EntropicParams, model: EnergyModel,
               num_steps: int = 200):
    self.params = params
    self.model = model
    self.num_steps = int(num_steps)

  @property
  def epsilon(self) -> float:
    r""":math:`\varepsilon` (in the units of ``cost_fn``)."""
    return float(self.params.epsilon)

  @property
  def cost_fn(self) -> costs.CostFn:
    """The cost :math:`c`."""
    return self.model.cost_fn

  @property
  def step_size(self) -> float:
    """The Langevin step size :math:`h` adapted in training."""
    return float(jnp.exp(self.params.log_step))

  def _points(self, arr: Any, name: str) -> jnp.ndarray:
    arr = jnp.atleast_2d(jnp.asarray(arr, jnp.float32))
    return checks.check_points(name, arr, self.model.dim, "euclidean",
                               finite=False)

  def energy(self, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`f(y_i)` ``[n]`` for ``y[n, d]`` (units of the cost)."""
    return self.model.energy(self.params, self._points(y, "y"))

  def log_density(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\log\pi(y_i \mid x_i)` up to a constant in :math:`y_i`:
    :math:`(g_0(y_i) - c(x_i, y_i))/\varepsilon + r_\theta(y_i)`.

    Args:
      x: Source points ``[n, d]``.
      y: Target points ``[n, d]``, row ``i`` paired with ``x[i]``.

    Returns:
      Array ``[n]``.
    """
    return self.model.log_density(self.params, self._points(x, "x"),
                                  self._points(y, "y"))

  def transport(self, vec: jnp.ndarray) -> jnp.ndarray:
    r"""The warm start's deterministic map :math:`T(x)` (the
    :math:`\varepsilon \to 0` limit of the plan).

    Args:
      vec: Source points ``[n, d]`` (or ``[d]``).

    Returns:
      Array ``[n, d]``.

    Raises:
      ValueError: for a cold start (no map).
    """
    if not self.model.warm:
      raise ValueError(
          "This plan was trained without a warm start: it has no map. Use "
          "`conditional_mean(x)` or `sample(x)`.")
    return self.model.base_map(self.params, self._points(vec, "vec"))

  def sample(self, x: jnp.ndarray, num_samples: int = 1,
             rng: Optional[jax.Array] = None, *,
             num_steps: Optional[int] = None, adjusted: bool = True,
             adapt_steps: Optional[int] = None,
             return_info: bool = False) -> Any:
    r"""Draw :math:`y \sim \pi_\varepsilon(\cdot \mid x_i)`, one compiled
    program on the device.

    Independent chains per :math:`x_i` start where training's did
    (:meth:`EnergyModel.start`: ENOT's :math:`T(x_i)` plus noise, or the
    target's mean plus noise cold) and run ``num_steps`` Langevin steps:
    Metropolis-adjusted (MALA, exact in the limit of many steps) by
    default, or unadjusted (ULA, biased by :math:`O(h)`). The step size
    starts at training's and adapts to an acceptance of 0.574 during the
    first ``adapt_steps`` (default a quarter of the steps).

    Args:
      x: Source points ``[n, d]`` (or ``[d]``).
      num_samples: Draws per point, :math:`k \ge 1`.
      rng: Key of the chains; default ``jax.random.key(0)``.
      num_steps: Langevin steps (default the potentials' ``num_steps``).
      adjusted: MALA if ``True``, else ULA.
      adapt_steps: Steps that adapt the step size (the rest are counted in
        the acceptance reported).
      return_info: Also return the
        :class:`~ott_enot.model.langevin.LangevinInfo` (acceptance, final
        step size, steps).

    Returns:
      ``[n, k, d]`` (and the info if ``return_info``).

    Raises:
      ValueError: for ``num_samples < 1``, ``num_steps < 1`` or points of
        another dimension.
    """
    num_samples = checks.check_positive_int("num_samples", num_samples)
    num_steps = checks.check_positive_int(
        "num_steps", self.num_steps if num_steps is None else num_steps)
    adapt = num_steps // 4 if adapt_steps is None else int(adapt_steps)
    if not 0 <= adapt <= num_steps:
      raise ValueError(
          f"`adapt_steps` must be in [0, num_steps = {num_steps}], got "
          f"{adapt_steps}.")
    x = self._points(x, "x")
    key = jax.random.key(0) if rng is None else rng
    samples, info = _sample(self.model, self.params, x, key,
                            num_samples=num_samples, num_steps=num_steps,
                            adjusted=bool(adjusted), adapt_steps=adapt)
    return (samples, info) if return_info else samples

  def conditional_mean(self, x: jnp.ndarray, num_samples: int = 64,
                       rng: Optional[jax.Array] = None,
                       **options: Any) -> jnp.ndarray:
    r""":math:`\mathbb{E}_{\pi_\varepsilon}[y \mid x_i]`, the mean of
    ``num_samples`` draws.

    Args:
      x: Source points ``[n, d]``.
      num_samples: Draws averaged per point.
      rng: Key of the chains; default ``jax.random.key(0)``.
      options: :meth:`sample`'s ``num_steps``, ``adjusted``,
        ``adapt_steps``.

    Returns:
      Array ``[n, d]``.
    """
    return jnp.mean(self.sample(x, num_samples, rng, **options), axis=1)

  def plot_samples(self, source: jnp.ndarray, target: Optional[jnp.ndarray]
                   = None, num_samples: int = 16, rng: Optional[jax.Array] =
                   None, ax: Optional[Any] = None,
                   **options: Any) -> Tuple[Any, Any]:
    r"""Several draws of :math:`\pi_\varepsilon(\cdot \mid x)` per source
    point (first two coordinates), in the style of ott's ``plot_ot_map``:
    the sources, the target sample, and each source's draws joined to it.

    Args:
      source: Source points ``[n, d]``.
      target: A target sample ``[m, d]`` drawn behind, or :obj:`None`.
      num_samples: Draws per source point.
      rng: Key of the chains; default ``jax.random.key(0)``.
      ax: Matplotlib axes to draw on; default a new figure.
      options: :meth:`sample`'s ``num_steps``, ``adjusted``,
        ``adapt_steps``.

    Returns:
      ``(fig, ax)`` of matplotlib.
    """
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    source = np.asarray(self._points(source, "source"))
    samples = np.asarray(self.sample(source, num_samples, rng, **options))
    if ax is None:
      fig, ax = plt.subplots(figsize=(6, 6))
    else:
      fig = ax.figure
    if target is not None:
      target = np.asarray(target)
      ax.scatter(target[:, 0], target[:, 1], s=6, c="tab:orange",
                 alpha=0.3, label="target")
    for i, point in enumerate(source):
      ends = samples[i]
      ax.plot(np.stack([np.full(len(ends), point[0]), ends[:, 0]]),
              np.stack([np.full(len(ends), point[1]), ends[:, 1]]),
              c="grey", lw=0.4, alpha=0.5)
    ax.scatter(samples[..., 0].ravel(), samples[..., 1].ravel(), s=8,
               c="tab:green", label=r"$y \sim \pi_\varepsilon(\cdot|x)$")
    ax.scatter(source[:, 0], source[:, 1], s=14, c="tab:blue",
               label="source")
    ax.set_title(f"entropic plan, epsilon = {self.epsilon:g}")
    ax.legend(loc="best", fontsize=8)
    return fig, ax

  # ---- serialization ----

  def to_bytes(self) -> bytes:
    """Serialize the :class:`EntropicParams` (:mod:`flax.serialization`)."""
    return serialization.to_bytes(self.params)

  def from_bytes(self, data: bytes) -> "EntropicPotentials":
    """New potentials with this one's model and the parameters in ``data``.

    Args:
      data: Bytes of :meth:`to_bytes`.

    Returns:
      :class:`EntropicPotentials` (this one is unchanged).

    Raises:
      ValueError: if ``data`` holds parameters of other networks.
    """
    try:
      params = serialization.from_bytes(self.params, data)
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(
          "`data` does not hold an entropic plan of these networks: build "
          f"the solver with the same networks and dimension ({err}).") from err
    params = _checked_params(self.params, params, "`data`")
    return EntropicPotentials(params, self.model, self.num_steps)

  def save(self, path: Union[str, os.PathLike]) -> None:
    """Write the parameters to ``path`` (restore with :meth:`load`)."""
    with open(path, "wb") as fh:
      fh.write(self.to_bytes())

  def load(self, path: Union[str, os.PathLike]) -> "EntropicPotentials":
    """New potentials with the parameters of a file written by
    :meth:`save`."""
    with open(path, "rb") as fh:
      return self.from_bytes(fh.read())

  # ---- pytree ----

  def tree_flatten(self):  # noqa: D102
    return (self.params,), (self.model, self.num_steps)

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    return cls(children[0], *aux_data)


