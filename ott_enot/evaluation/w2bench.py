r"""The continuous Wasserstein-2 benchmark's high-dimensional pairs, in JAX.

Korotin et al., "Do Neural Optimal Transport Solvers Work? A Continuous
Wasserstein-2 Benchmark", NeurIPS 2021: pairs ("Mix3toMix10") of a Gaussian
mixture :math:`P` on :math:`R^D` and :math:`Q = T^\star_\# P`, where the true
optimal map for the cost :math:`\tfrac12\|x - y\|^2` is the gradient of a
strongly convex potential built from two input-convex networks,

.. math::

  \psi(x) = a\,(f_1(x) + f_2(x) - \langle m, x\rangle), \qquad
  T^\star = \nabla\psi .

A solver's map :math:`\hat T` is scored by the L2 unexplained variance

.. math::

  \mathrm{L2\text{-}UV}(\hat T) = 100\,
  \frac{\mathbb{E}_{x \sim P}\|\hat T(x) - T^\star(x)\|^2}{\operatorname{tr}
  \operatorname{Cov}(Q)} \quad (\%),

and an inverse map :math:`\hat S` by
:math:`100\,\mathbb{E}_{x \sim P}\|\hat S(T^\star(x)) - x\|^2 /
\operatorname{tr}\operatorname{Cov}(P)`.

The data are the authors' published pairs converted to numpy files
(``mix3tomix10_{D}.npz``, D = 2 ... 128, MIT licence: see the README and
licence beside them in ``benchmarks/w2bench/`` of the repository; they are not
part of the installed package). :meth:`W2Pair.load` reads one; everything else
is pure JAX: sampling is a jittable function of a key, :meth:`W2Pair.transport`
is :math:`T^\star`, :meth:`W2Pair.inverse` solves :math:`T^\star(x) = y` by
damped Newton, and :meth:`W2Pair.sampler` feeds
:meth:`ott_enot.ExpectileNeuralDual.fit`::

  pair = w2bench.W2Pair.load("benchmarks/w2bench/mix3tomix10_16.npz")
  solver = ott_enot.ExpectileNeuralDual(pair.dim, ...)
  potentials = solver.fit(pair.sampler(batch_size=1024))
  pair.l2uv(potentials.transport, jax.random.key(0))
"""
import os
from typing import Any, Callable, Dict, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ott_enot.evaluation import metrics

__all__ = [
    "FORMAT_VERSION",
    "PUBLISHED_DIMS",
    "W2Pair",
    "path_of",
]

#: The ``format_version`` the loader reads.
FORMAT_VERSION = "w2bench-mix3tomix10-npz-1"
#: Dimensions of the published pairs available as files.
PUBLISHED_DIMS = (2, 4, 8, 16, 32, 64, 128)
_NETS = ("psi1", "psi2")


def path_of(directory: Union[str, os.PathLike], dim: int) -> str:
  """The file of the pair of dimension ``dim`` in ``directory``."""
  return os.path.join(os.fspath(directory), f"mix3tomix10_{int(dim)}.npz")


def _celu(u: jnp.ndarray, alpha: float) -> jnp.ndarray:
  return jnp.where(u > 0, u, alpha * jnp.expm1(jnp.minimum(u, 0) / alpha))


def _icnn(net: Dict[str, jnp.ndarray], x: jnp.ndarray, alpha: float,
          sc: float) -> jnp.ndarray:
  r"""A DenseICNN at one point ``x`` ``[D]``: a scalar.

  :math:`q_i(x) = \sum_\rho (U_{i,\rho}^\top x)^2 + W_i x + b_i`,
  :math:`z_0 = q_0`, :math:`z_{i+1} = \mathrm{celu}(C_i z_i + q_{i+1}(x))`,
  :math:`f(x) = w^\top z_2 + \tfrac{sc}{2}\|x\|^2`.
  """

  def quad(i):
    u = jnp.einsum("d,drh->rh", x, net[f"q{i}_U"])
    return jnp.sum(u ** 2, axis=0) + net[f"q{i}_W"] @ x + net[f"q{i}_b"]

  z = quad(0)
  z = _celu(net["c0_W"] @ z + quad(1), alpha)
  z = _celu(net["c1_W"] @ z + quad(2), alpha)
  return (net["final_W"] @ z)[0] + 0.5 * sc * jnp.sum(x ** 2)


class W2Pair(struct.PyTreeNode):
  r"""One Mix3toMix10 pair: :math:`P`, :math:`T^\star`, :math:`Q = T^\star_\#P`.

  A pytree of its arrays (``dim`` static), so its methods can be jitted with
  the pair as an argument. Build it with :meth:`load`.

  Attributes:
    dim: Dimension :math:`D`.
    p_weights: ``[3]`` mixture weights of :math:`P`.
    p_centers: ``[3, D]`` component means :math:`c_k`.
    p_maps: ``[3, D, D]`` factors :math:`A_k` (covariance
      :math:`s^2 A_k A_k^\top`).
    p_std: :math:`s`.
    nets: The two ICNNs' weights, ``{"psi1": {...}, "psi2": {...}}``.
    celu_alpha: CELU's :math:`\alpha`.
    strong_convexity: :math:`sc`, the networks' quadratic term.
    std_shift: ``[D]`` :math:`m`.
    std_scale: :math:`a`.
    var_p: The benchmark's :math:`\operatorname{tr}\operatorname{Cov}(P)`.
    var_q: The benchmark's :math:`\operatorname{tr}\operatorname{Cov}(Q)`,
      the forward L2-UV's denominator.
    linear_fwd: ``(W [D, D], b [D])``: the linear baseline
      :math:`x \mapsto W x + b` (OT map between P's and Q's Gaussian
      approximations).
    linear_inv: The same from :math:`Q` to :math:`P`.
  """
  dim: int = struct.field(pytree_node=False)
  p_weights: jnp.ndarray
  p_centers: jnp.ndarray
  p_maps: jnp.ndarray
  p_std: jnp.ndarray
  nets: Dict[str, Dict[str, jnp.ndarray]]
  celu_alpha: float = struct.field(pytree_node=False)
  strong_convexity: float = struct.field(pytree_node=False)
  std_shift: jnp.ndarray
  std_scale: jnp.ndarray
  var_p: jnp.ndarray
  var_q: jnp.ndarray
  linear_fwd: Tuple[jnp.ndarray, jnp.ndarray]
  linear_inv: Tuple[jnp.ndarray, jnp.ndarray]

  @classmethod
  def load(cls, path: Union[str, os.PathLike]) -> "W2Pair":
    """Read a pair from a ``mix3tomix10_{D}.npz`` file.

    Raises:
      FileNotFoundError: if there is no such file.
      ValueError: if the file is not in the format this loader reads.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"No W2 benchmark file at {path!r}; the pairs are "
          f"`mix3tomix10_{{D}}.npz`, D in {PUBLISHED_DIMS}, in "
          f"`benchmarks/w2bench/` of the ott-enot repository."
      )
    with np.load(path, allow_pickle=False) as f:
      version = str(f["format_version"]) if "format_version" in f else None
      if version != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has format {version!r}; this loader reads "
            f"{FORMAT_VERSION!r}."
        )
      a = lambda k: jnp.asarray(f[k], jnp.float32)
      nets = {
          net: {
              k[len(net) + 1:]: a(k)
              for k in f.files
              if k.startswith(net + "_") and not k.startswith(net + "conj")
          } for net in _NETS
      }
      return cls(
          dim=int(f["dim"]),
          p_weights=a("p_weights"),
          p_centers=a("p_centers"),
          p_maps=a("p_maps"),
          p_std=a("p_std"),
          nets=nets,
          celu_alpha=float(f["celu_alpha"]),
          strong_convexity=float(f["strong_convexity"]),
          std_shift=a("std_shift"),
          std_scale=a("std_scale"),
          var_p=a("var_p"),
          var_q=a("var_q"),
          linear_fwd=(a("linear_fwd_W"), a("linear_fwd_b")),
          linear_inv=(a("linear_inv_W"), a("linear_inv_b")),
      )

  # -- the measures ---------------------------------------------------------

  def sample_p(self, key: jax.Array, n: int) -> jnp.ndarray:
    r"""``n`` points of :math:`P`, ``[n, D]``: :math:`x = c_k + s A_k z`,
    :math:`k \sim` the weights, :math:`z \sim N(0, I_D)`."""
    k_comp, k_z = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(self.p_weights), shape=(n,))
    z = jax.random.normal(k_z, (n, self.dim))
    return self.p_centers[comp] + self.p_std * jnp.einsum(
        "nij,nj->ni", self.p_maps[comp], z
    )

  def sample_q(self, key: jax.Array, n: int) -> jnp.ndarray:
    r"""``n`` points of :math:`Q = T^\star_\# P`, ``[n, D]``."""
    return self.transport(self.sample_p(key, n))

  def sampler(self, batch_size: int) -> Callable[[jax.Array], Tuple]:
    """``sampler(key) -> (x [b, D], y [b, D])``, independent batches of P and
    Q, a pure function for :meth:`ott_enot.ExpectileNeuralDual.fit`."""
    batch_size = int(batch_size)

    def sample(key: jax.Array) -> Tuple[jnp.ndarray, jnp.ndarray]:
      k_x, k_y = jax.random.split(key)
      return self.sample_p(k_x, batch_size), self.sample_q(k_y, batch_size)

    return sample

  # -- the true map ---------------------------------------------------------

  def _psi(self, x: jnp.ndarray) -> jnp.ndarray:
    f = sum(
        _icnn(self.nets[n], x, self.celu_alpha, self.strong_convexity)
        for n in _NETS
    )
    return self.std_scale * (f - jnp.dot(self.std_shift, x))

  def potential(self, x: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\psi(x)` for ``x`` ``[D]`` (a scalar) or ``[n, D]`` (``[n]``)."""
    return _batched(self._psi, x)

  def transport(self, x: jnp.ndarray) -> jnp.ndarray:
    r""":math:`T^\star(x) = \nabla\psi(x)`, ``[D]`` or ``[n, D]``."""
    return _batched(jax.grad(self._psi), x)

  def inverse(self, y: jnp.ndarray, num_iter: int = 40,
              tol: float = 1e-6) -> jnp.ndarray:
    r""":math:`(T^\star)^{-1}(y) = \nabla\psi^*(y)`, ``[D]`` or ``[n, D]``.

    Minimises the strongly convex :math:`\phi(x) = \psi(x) - \langle x, y
    \rangle` by damped Newton with the exact Hessian (the longest of the steps
    :math:`1, \tfrac12, \dots, 2^{-10}` that satisfies Armijo's condition;
    the full step once it is shorter than :math:`10^{-3}(1 + \|x\|)`), from
    the linear baseline :math:`W_{inv} y + b_{inv}`, until a full Newton step
    shorter than :math:`\mathrm{tol}\,(1 + \|x\|)` has been taken (by
    quadratic convergence the error is then at float32 rounding) or for
    ``num_iter`` steps.
    """
    return _batched(lambda v: self._newton(v, num_iter, tol), y)

  def _newton(self, y: jnp.ndarray, num_iter: int, tol: float) -> jnp.ndarray:
    phi = lambda x: self._psi(x) - jnp.dot(x, y)
    grad, hess = jax.grad(phi), jax.hessian(phi)
    steps = 0.5 ** jnp.arange(11.0)
    w, b = self.linear_inv

    def cond(carry):
      i, x, moved = carry
      return (i < num_iter) & (moved > tol * (1.0 + jnp.linalg.norm(x)))

    def body(carry):
      i, x, _ = carry
      g = grad(x)
      dx = jnp.linalg.solve(hess(x), g)
      trial = jax.vmap(lambda t: phi(x - t * dx))(steps)
      ok = trial <= phi(x) - 1e-4 * steps * jnp.dot(g, dx)
      size = jnp.linalg.norm(dx)
      # the longest step that decreases phi enough; the full step close to
      # the solution, where float32 cannot resolve phi's decrease
      close = size <= 1e-3 * (1.0 + jnp.linalg.norm(x))
      t = jnp.where(close | ~jnp.any(ok), 1.0, steps[jnp.argmax(ok)])
      return i + 1, x - t * dx, size

    start = (0, w @ y + b, jnp.asarray(jnp.inf, y.dtype))
    return jax.lax.while_loop(cond, body, start)[1]

  def linear_forward(self, x: jnp.ndarray) -> jnp.ndarray:
    """The linear baseline map P -> Q, ``[D]`` or ``[n, D]``."""
    w, b = self.linear_fwd
    return x @ w.T + b

  def linear_inverse(self, y: jnp.ndarray) -> jnp.ndarray:
    """The linear baseline map Q -> P, ``[D]`` or ``[n, D]``."""
    w, b = self.linear_inv
    return y @ w.T + b

  # -- the metric -----------------------------------------------------------

  def l2uv(self, transport: Callable[[jnp.ndarray], jnp.ndarray],
           key: jax.Array, n: int = 2 ** 14) -> jnp.ndarray:
    r"""Forward L2-UV (%) of ``transport`` (``[n, D] -> [n, D]``) on ``n``
    fresh points of :math:`P`: :math:`100\,\mathbb{E}\|\hat T(x) -
    T^\star(x)\|^2 / \mathrm{var}_Q`."""
    x = self.sample_p(key, n)
    return metrics.l2_uv(transport(x), self.transport(x), self.var_q)

  def l2uv_inverse(self, inverse: Callable[[jnp.ndarray], jnp.ndarray],
                   key: jax.Array, n: int = 2 ** 14) -> jnp.ndarray:
    r"""Inverse L2-UV (%) of ``inverse`` (``[n, D] -> [n, D]``):
    :math:`100\,\mathbb{E}_{x \sim P}\|\hat S(T^\star(x)) - x\|^2 /
    \mathrm{var}_P`."""
    x = self.sample_p(key, n)
    return metrics.l2_uv(inverse(self.transport(x)), x, self.var_p)


def _batched(fn: Callable[[jnp.ndarray], Any], x: jnp.ndarray) -> Any:
  x = jnp.asarray(x)
  if x.ndim == 1:
    return fn(x)
  if x.ndim == 2:
    return jax.vmap(fn)(x)
  raise ValueError(f"Points must be [D] or [n, D], got shape {x.shape}.")
