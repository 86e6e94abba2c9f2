r"""The property engine: hypothesis strategies of points, the properties of
a cost, and the search for counterexamples (the one module of the package that
needs hypothesis; :func:`ott_enot.costs.register_cost` and
:mod:`ott_enot.testing` load it when they run).

Each property (:data:`PROPERTIES`) is a statement about a cost with a
tolerance, and a strategy that draws examples for it; :func:`search` runs
hypothesis over a list of properties and returns a :class:`CostReport`. Which
properties a cost *claims* is decided in :mod:`ott_enot.costs`
(:func:`~ott_enot.costs.claimed_properties`), which runs this engine before it
registers a cost; :mod:`ott_enot.testing` is the public face with the
registry's defaults. The strategies draw points that are a tiny, down to
subnormal, distance apart on purpose, where naive norms have NaN gradients.
"""
import dataclasses
import time
import types
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ott.geometry import costs as ott_costs

from ott_enot import checks
from ott_enot.costs import sphere

__all__ = [
    "PROPERTIES",
    "CostProperty",
    "PropertyResult",
    "CostReport",
    "search",
    "dimensions",
    "point_sets",
    "points",
    "pairs",
    "near_pairs",
    "triples",
    "potentials",
]

#: Relative tolerance of float32 checks (about 80 units in the last place).
RTOL = 1e-5
#: Absolute tolerance of the twist on the sphere (float32 exp/log maps).
SPHERE_TWIST_ATOL = 2e-3
#: Largest geodesic distance at which the sphere's twist is checked.
INJECTIVITY_MARGIN = 0.1

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------


def dimensions(
    domain: str = "euclidean",
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
) -> st.SearchStrategy:
  """Dimensions of points: :math:`R^d`, ``d`` in 1..32, or :math:`S^{d-1}`
  with ambient dimension ``d`` in 2..16 (by default)."""
  _check_domain(domain)
  lo, hi = (2, 16) if domain == "sphere" else (1, 32)
  lo = lo if min_dim is None else int(min_dim)
  hi = hi if max_dim is None else int(max_dim)
  if domain == "sphere" and lo < 2:
    raise ValueError(f"`min_dim` on the sphere must be >= 2, got {lo}.")
  if not 1 <= lo <= hi:
    raise ValueError(f"Need 1 <= min_dim <= max_dim, got {lo}, {hi}.")
  return st.integers(lo, hi)


@st.composite
def point_sets(
    draw: Callable,
    dim: int,
    domain: str = "euclidean",
    *,
    min_size: int = 1,
    max_size: int = 6,
    bound: float = 10.0,
) -> jnp.ndarray:
  """Finite sets of ``n`` points in ``domain``, ``[n, dim]`` float32.

  Coordinates in :math:`[-\text{bound}, \text{bound}]`; on the sphere the
  points are normalised (directions shorter than ``1e-2`` are rejected).
  """
  _check_domain(domain)
  n = draw(st.integers(min_size, max_size))
  elems = st.floats(-bound, bound, allow_nan=False, width=32)
  pts = draw(hnp.arrays(np.float32, (n, dim), elements=elems))
  if domain == "sphere":
    norms = np.linalg.norm(pts, axis=-1, keepdims=True)
    hypothesis.assume(bool(np.all(norms > 1e-2)))
    pts = (pts / norms).astype(np.float32)
  return jnp.asarray(pts)


def points(
    dim: int, domain: str = "euclidean", bound: float = 10.0
) -> st.SearchStrategy:
  """Single points ``[dim]`` of ``domain`` (see :func:`point_sets`)."""
  return point_sets(dim, domain, min_size=1, max_size=1, bound=bound).map(
      lambda p: p[0]
  )


@st.composite
def _tuples(draw, k, domain, min_dim, max_dim, bound):
  dim = draw(dimensions(domain, min_dim, max_dim))
  pts = draw(point_sets(dim, domain, min_size=k, max_size=k, bound=bound))
  return tuple(pts)


#: Exponents ``e`` of the tiny coordinates of ``near_pairs``: from
#: ``1e-1`` down to the smallest normal float32 numbers (``1e-37``; XLA
#: flushes subnormal float32 numbers to zero on the CPU).
NEAR_EXPONENTS = (1, 37)


@st.composite
def near_pairs(
    draw: Callable,
    domain: str = "euclidean",
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
    bound: float = 10.0,
) -> Tuple[jnp.ndarray, jnp.ndarray]:
  r"""Pairs ``(x, y)`` a tiny, non-zero distance apart.

  ``x`` is a point of :func:`points` whose coordinates ``J`` (one or more)
  are replaced by tiny values :math:`u_j 10^{-e}`, ``y`` equals ``x`` but for
  other tiny values :math:`v_j 10^{-e}` there (:math:`|u_j| \in [1, 9.9]`,
  :math:`v_j = 0` or :math:`|v_j| \in [1, 9.9]`, random signs, :math:`e` in
  :data:`NEAR_EXPONENTS`), so that :math:`0 < \|x - y\| \lesssim 10^{1-e}`,
  down to :math:`10^{-37}`; on the sphere both are then normalised (the tiny
  coordinates stay tiny). This is where :math:`\|x - y\|^2` underflows and
  a norm's gradient :math:`(x - y) / \|x - y\|` becomes inf or NaN.
  """
  dim = draw(dimensions(domain, min_dim, max_dim))
  x = np.array(draw(points(dim, domain, bound)), np.float32)
  size = draw(st.integers(1, dim - 1 if domain == "sphere" else dim))
  idx = draw(st.lists(st.integers(0, dim - 1), min_size=size,
                      max_size=size, unique=True))
  exponent = draw(st.integers(*NEAR_EXPONENTS))
  sign = st.sampled_from([-1.0, 1.0])
  tiny = st.builds(lambda m, s: m * s, st.floats(1.0, 9.9), sign)
  y = x.copy()
  for j in idx:
    u, v = draw(tiny), draw(st.one_of(st.just(0.0), tiny))
    hypothesis.assume(u != v)
    x[j] = np.float32(u * 10.0 ** -exponent)
    y[j] = np.float32(v * 10.0 ** -exponent)
  if domain == "sphere":
    norms = np.linalg.norm(np.stack([x, y]).astype(np.float64), axis=-1)
    hypothesis.assume(bool(np.all(norms > 1e-2)))
    x, y = (x / norms[0]).astype(np.float32), (y / norms[1]).astype(np.float32)
  hypothesis.assume(bool(np.any(x != y)))
  return jnp.asarray(x), jnp.asarray(y)


def pairs(
    domain: str = "euclidean",
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
    bound: float = 10.0,
) -> st.SearchStrategy:
  """Pairs ``(x, y)`` of points of one drawn dimension, each ``[d]``: one in
  four from ``near_pairs`` (a tiny distance apart), the others
  independent points."""
  return st.one_of(
      _tuples(2, domain, min_dim, max_dim, bound),
      _tuples(2, domain, min_dim, max_dim, bound),
      _tuples(2, domain, min_dim, max_dim, bound),
      near_pairs(domain, min_dim, max_dim, bound),
  )


def triples(
    domain: str = "euclidean",
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
    bound: float = 10.0,
) -> st.SearchStrategy:
  """Triples ``(x, y, z)`` of points of one drawn dimension, each ``[d]``."""
  return _tuples(3, domain, min_dim, max_dim, bound)


def potentials(n: int, bound: float = 5.0) -> st.SearchStrategy:
  """Values ``[n]`` (float32) of a potential on a set of ``n`` points."""
  elems = st.floats(-bound, bound, allow_nan=False, width=32)
  return hnp.arrays(np.float32, (n,), elements=elems).map(jnp.asarray)


@st.composite
def _finite_problems(draw, domain, min_dim, max_dim):
  """``(xs [n, d], ys [m, d], g [m])``: two finite sets and a potential."""
  dim = draw(dimensions(domain, min_dim, max_dim))
  xs = draw(point_sets(dim, domain))
  ys = draw(point_sets(dim, domain))
  return xs, ys, draw(potentials(ys.shape[0]))


def _twist_pairs(domain, min_dim, max_dim):
  """Pairs; on the sphere within the injectivity radius of the exp map."""
  strategy = pairs(domain, min_dim, max_dim)
  if domain == "sphere":
    strategy = strategy.filter(
        lambda p: float(sphere.geodesic_distance(*p)) < np.pi - INJECTIVITY_MARGIN
    )
  return strategy


@st.composite
def _vector_pairs(draw, min_dim, max_dim):
  """``(z, w)``: two vectors of :math:`R^d` (arguments of ``h`` and ``h*``)."""
  dim = draw(dimensions("euclidean", min_dim, max_dim))
  vec = points(dim, "euclidean", bound=5.0)
  return draw(vec), draw(vec)


def _check_domain(domain: str) -> None:
  if domain not in checks.DOMAINS:
    raise ValueError(
        f"`domain` must be one of {checks.DOMAINS}, got {domain!r}."
    )


# ---------------------------------------------------------------------------
# Properties: each returns None, or the violated inequality with its numbers
# ---------------------------------------------------------------------------


def _f(v: Any) -> float:
  return float(jnp.asarray(v))


def _dot(a: jnp.ndarray, b: jnp.ndarray) -> float:
  return float(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


_COMPILED: Dict[int, Tuple[ott_costs.CostFn, types.SimpleNamespace]] = {}


def _compiled(cost: ott_costs.CostFn) -> types.SimpleNamespace:
  """The cost's functions, each jitted (compiled once per shape; evaluated
  eagerly, every primitive of every new shape would compile on its own).
  A cost ENOT can use must be jittable anyway."""
  hit = _COMPILED.get(id(cost))
  if hit is not None and hit[0] is cost:
    return hit[1]
  fns = types.SimpleNamespace(
      value=jax.jit(lambda x, y: cost(x, y)),
      grads=jax.jit(jax.grad(lambda x, y: cost(x, y), argnums=(0, 1))),
      twist=jax.jit(cost.twist_operator, static_argnums=2),
      all_pairs=jax.jit(cost.all_pairs),
      h=jax.jit(lambda z: cost.h(z)),
      h_legendre=jax.jit(lambda w: cost.h_legendre(w)),
      grad_h=jax.jit(jax.grad(lambda z: cost.h(z))),
  )
  if len(_COMPILED) >= 8:
    _COMPILED.clear()
  _COMPILED[id(cost)] = (cost, fns)
  return fns


def _sq(*xs: jnp.ndarray) -> float:
  return sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in xs)


def _nonneg(cost, ex, domain):
  x, y = ex
  c = _f(_compiled(cost).value(x, y))
  tol = RTOL * (1.0 + abs(c) + _sq(x, y))
  if not c >= -tol:
    return f"c(x, y) = {c:.6g} < -tol = {-tol:.3g}"
  return None


def _zero_diag(cost, ex, domain):
  x, = ex
  c = _f(_compiled(cost).value(x, x))
  tol = RTOL * (1.0 + 2.0 * _sq(x))
  if not abs(c) <= tol:
    return f"|c(x, x)| = {abs(c):.6g} > tol = {tol:.3g}"
  return None


def _finite_grads(cost, ex, domain):
  x, y = ex
  for a, b, at in ((x, y, "(x, y)"), (x, x, "(x, x)")):
    value = _compiled(cost).value(a, b)
    gx, gy = _compiled(cost).grads(a, b)
    for name, v in (("c", value), ("grad_x c", gx), ("grad_y c", gy)):
      v = np.asarray(v)
      if not np.all(np.isfinite(v)):
        return f"{name}{at} = {np.array2string(v, precision=4)} is not finite"
  return None


def _symmetric(cost, ex, domain):
  x, y = ex
  c = _compiled(cost).value
  cxy, cyx = _f(c(x, y)), _f(c(y, x))
  tol = RTOL * (1.0 + abs(cxy) + abs(cyx) + _sq(x, y))
  if not abs(cxy - cyx) <= tol:
    return (
        f"|c(x, y) - c(y, x)| = |{cxy:.6g} - {cyx:.6g}| = "
        f"{abs(cxy - cyx):.3g} > tol = {tol:.3g}"
    )
  return None


def _triangle(cost, ex, domain):
  x, y, z = ex
  c = _compiled(cost).value
  cxz, cxy, cyz = _f(c(x, z)), _f(c(x, y)), _f(c(y, z))
  tol = RTOL * (1.0 + abs(cxz) + abs(cxy) + abs(cyz) + _sq(x, y, z) ** 0.5)
  if not cxz <= cxy + cyz + tol:
    return (
        f"c(x, z) = {cxz:.6g} > c(x, y) + c(y, z) = {cxy:.6g} + {cyz:.6g} "
        f"= {cxy + cyz:.6g} (tol {tol:.3g})"
    )
  return None


def _fenchel_young(cost, ex, domain):
  z, w = ex
  fns = _compiled(cost)
  hz, hw, zw = _f(fns.h(z)), _f(fns.h_legendre(w)), _dot(z, w)
  tol = RTOL * (1.0 + abs(hz) + abs(hw) + abs(zw))
  if not hz + hw >= zw - tol:
    return (
        f"h(z) + h*(w) = {hz:.6g} + {hw:.6g} = {hz + hw:.6g} < <z, w> = "
        f"{zw:.6g} (tol {tol:.3g})"
    )
  w_star = fns.grad_h(z)
  hs, zs = _f(fns.h_legendre(w_star)), _dot(z, w_star)
  gap = hz + hs - zs
  tol = 10 * RTOL * (1.0 + abs(hz) + abs(hs) + abs(zs))
  if not abs(gap) <= tol:
    return (
        f"at w = grad h(z): h(z) + h*(w) - <z, w> = {hz:.6g} + {hs:.6g} - "
        f"{zs:.6g} = {gap:.6g}, should be 0 (tol {tol:.3g})"
    )
  return None


def _twist(inverse: bool):
  start, end = ("y", "x") if inverse else ("x", "y")

  def prop(cost, ex, domain):
    x, y = ex
    if domain == "sphere":
      tol = SPHERE_TWIST_ATOL
    else:
      tol = 10 * RTOL * (1.0 + float(np.max(np.abs(np.stack([x, y])))))
    fns = _compiled(cost)
    gx, gy = fns.grads(x, y)
    if inverse:
      got, want = fns.twist(y, gy, True), x
    else:
      got, want = fns.twist(x, gx, False), y
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    if not err <= tol:
      return (
          f"|twist({start}, grad_{start} c(x, y), {int(inverse)}) - {end}|_inf"
          f" = {err:.4g} > tol = {tol:.3g}; twist gave "
          f"{np.array2string(np.asarray(got), precision=4)}"
      )
    return None

  return prop


def _c_conjugacy(cost, ex, domain):
  xs, ys, g = ex
  c = np.asarray(_compiled(cost).all_pairs(xs, ys), np.float64)  # [n, m]
  g = np.asarray(g, np.float64)
  if not np.all(np.isfinite(c)):
    return f"cost matrix not finite: {np.array2string(c, precision=4)}"
  tol = 10 * RTOL * (1.0 + np.max(np.abs(c)) + np.max(np.abs(g)))
  f = np.min(c - g[None, :], axis=1)  # g^c on xs
  slack = np.max(f[:, None] + g[None, :] - c)
  if not slack <= tol:
    return (
        f"f = g^c infeasible: max f(x) + g(y) - c(x, y) = {slack:.4g} > "
        f"tol {tol:.3g}"
    )
  g_cc = np.min(c - f[:, None], axis=0)  # g^cc on ys
  drop = np.max(g - g_cc)
  if not drop <= tol:
    return f"g^cc >= g fails: max g - g^cc = {drop:.4g} > tol {tol:.3g}"
  f_ccc = np.min(c - g_cc[None, :], axis=1)  # g^ccc on xs
  diff = np.max(np.abs(f_ccc - f))
  if not diff <= tol:
    return f"g^ccc = g^c fails: max |g^ccc - g^c| = {diff:.4g} > tol {tol:.3g}"
  return None


def _correlation(cost, ex, domain):
  x, y = ex
  c = _f(_compiled(cost).value(x, y))
  want = _sq(np.asarray(x, np.float64) - np.asarray(y, np.float64))
  tol = RTOL * (1.0 + _sq(x, y))
  if not abs(c - want) <= tol:
    return (
        f"c(x, y) = {c:.6g}, but the correlation form needs ||x - y||^2 = "
        f"{want:.6g} (tol {tol:.3g})"
    )
  return None


@dataclasses.dataclass(frozen=True)
class CostProperty:
  """A property of a cost and how to search for a counterexample.

  Attributes:
    name: Short name (a key of :data:`PROPERTIES`).
    statement: The maths, and the tolerance it is checked with.
    arguments: Names of the example's parts, for the report.
    examples: ``examples(domain, min_dim, max_dim)``, a hypothesis strategy.
    check: ``check(cost_fn, example, domain)``: ``None`` when the property
      holds, else the violated inequality with its numbers.
  """
  name: str
  statement: str
  arguments: Tuple[str, ...]
  examples: Callable[..., st.SearchStrategy]
  check: Callable[[ott_costs.CostFn, Any, str], Optional[str]]


def _singles(domain, lo, hi):
  return _tuples(1, domain, lo, hi, 10.0)


def _twist_property(inverse: bool) -> CostProperty:
  start, end, var = ("y", "x", 1) if inverse else ("x", "y", 0)
  return CostProperty(
      "twist_inverse" if inverse else "twist_forward",
      f"|twist({start}, grad_{start} c(x, y), {var}) - {end}|_inf <= 10 RTOL "
      f"(1 + max|x, y|) (sphere: {SPHERE_TWIST_ATOL}, d(x, y) < pi - "
      f"{INJECTIVITY_MARGIN})", ("x", "y"), _twist_pairs, _twist(inverse)
  )


#: Every property :func:`~ott_enot.testing.check_cost` knows, by name. ``s`` is
#: ``1 + ||x||^2 + ||y||^2`` plus the absolute values compared; ``RTOL = 1e-5``.
PROPERTIES: Dict[str, CostProperty] = {
    p.name: p for p in (
        CostProperty(
            "nonnegative", "c(x, y) >= -RTOL s", ("x", "y"),
            lambda d, lo, hi: pairs(d, lo, hi), _nonneg
        ),
        CostProperty(
            "zero_diagonal", "|c(x, x)| <= RTOL (1 + 2 ||x||^2)", ("x",),
            _singles, _zero_diag
        ),
        CostProperty(
            "finite_gradients",
            "c, grad_x c, grad_y c finite at (x, y) and at (x, x)", ("x", "y"),
            lambda d, lo, hi: pairs(d, lo, hi), _finite_grads
        ),
        CostProperty(
            "symmetric", "|c(x, y) - c(y, x)| <= RTOL s", ("x", "y"),
            lambda d, lo, hi: pairs(d, lo, hi), _symmetric
        ),
        CostProperty(
            "triangle",
            "c(x, z) <= c(x, y) + c(y, z) + RTOL (1 + |c|'s + sqrt(sum "
            "||.||^2))", ("x", "y", "z"),
            lambda d, lo, hi: triples(d, lo, hi), _triangle
        ),
        CostProperty(
            "fenchel_young",
            "h(z) + h*(w) >= <z, w> - RTOL s; = at w = grad h(z) within "
            "10 RTOL s", ("z", "w"),
            lambda d, lo, hi: _vector_pairs(lo, hi), _fenchel_young
        ),
        _twist_property(inverse=False),
        _twist_property(inverse=True),
        CostProperty(
            "c_conjugacy",
            "on finite sets: f = g^c feasible, g^cc >= g, g^ccc = g^c, within "
            "10 RTOL (1 + max|C| + max|g|)", ("xs", "ys", "g"),
            _finite_problems, _c_conjugacy
        ),
        CostProperty(
            "correlation",
            "|c(x, y) - ||x - y||^2| <= RTOL (1 + ||x||^2 + ||y||^2)",
            ("x", "y"), lambda d, lo, hi: pairs(d, lo, hi), _correlation
        ),
    )
}

# ---------------------------------------------------------------------------
# Claims, the runner and the report
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PropertyResult:
  """The outcome of one property's search.

  Attributes:
    name: The property.
    statement: What was checked (maths and tolerance).
    passed: No counterexample was found.
    examples: Examples evaluated (generation, shrinking and replay; examples
      rejected by an ``assume`` not counted).
    counterexample: The smallest failing example hypothesis found, by
      argument name (numpy arrays), or ``None``.
    violation: The violated inequality with its numbers, or ``None``.
    seconds: Wall time of the search.
  """
  name: str
  statement: str
  passed: bool
  examples: int
  counterexample: Optional[Dict[str, np.ndarray]]
  violation: Optional[str]
  seconds: float

  def __str__(self) -> str:
    head = (
        f"{'PASS' if self.passed else 'FAIL'} {self.name:<17} "
        f"{self.examples:>4} examples  {self.seconds:5.1f} s  {self.statement}"
    )
    if self.passed:
      return head
    lines = [head, f"     violated: {self.violation}"]
    for arg, value in (self.counterexample or {}).items():
      text = np.array2string(np.asarray(value), precision=6, separator=", ")
      lines.append(f"     {arg} = {text}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class CostReport:
  """What :func:`~ott_enot.testing.check_cost` found.

  Attributes:
    cost: ``repr`` of the cost.
    domain: ``"euclidean"`` or ``"sphere"``.
    parameterisations: The parameterisations whose claims were checked.
    results: One :class:`PropertyResult` per property, in order.
  """
  cost: str
  domain: str
  parameterisations: Tuple[str, ...]
  results: Tuple[PropertyResult, ...]

  @property
  def passed(self) -> bool:
    """Whether every property held."""
    return all(r.passed for r in self.results)

  @property
  def failures(self) -> Tuple[PropertyResult, ...]:
    """The properties with a counterexample."""
    return tuple(r for r in self.results if not r.passed)

  def __getitem__(self, name: str) -> PropertyResult:
    for r in self.results:
      if r.name == name:
        return r
    raise KeyError(f"{name!r} was not checked; checked: "
                   f"{[r.name for r in self.results]}.")

  def __str__(self) -> str:
    n_fail = len(self.failures)
    head = (
        f"check_cost({self.cost}, domain={self.domain!r}, "
        f"parameterisations={self.parameterisations!r}): "
        f"{len(self.results)} properties, "
        + (f"{n_fail} FAILED" if n_fail else "all passed")
    )
    return "\n".join([head] + ["  " + str(r).replace("\n", "\n  ")
                               for r in self.results])


class _Violation(Exception):
  pass


def _search(
    prop: CostProperty, cost_fn: ott_costs.CostFn, domain: str,
    dims: Tuple[Optional[int], Optional[int]], settings: Any,
    seed: Optional[int]
) -> PropertyResult:
  """Search for a counterexample to ``prop`` with hypothesis."""
  record: Dict[str, Any] = {"examples": 0}

  def test(example):
    record["examples"] += 1
    try:
      message = prop.check(cost_fn, example, domain)
    except hypothesis.errors.UnsatisfiedAssumption:
      record["examples"] -= 1
      raise
    except Exception as err:  # pylint: disable=broad-except
      message = f"raised {type(err).__name__}: {err}"
    if message is not None:
      # hypothesis replays the smallest failing example last
      record["example"], record["message"] = example, message
      raise _Violation(message)

  test = hypothesis.given(prop.examples(domain, *dims))(test)
  test = settings(test)
  if seed is not None:
    test = hypothesis.seed(seed)(test)
  start = time.perf_counter()
  try:
    test()
    passed = True
  except _Violation:
    passed = False
  except hypothesis.errors.Unsatisfiable as err:
    passed = False
    record["message"] = f"no valid example could be generated: {err}"
  seconds = time.perf_counter() - start
  example = record.get("example")
  counterexample = None
  if not passed and example is not None:
    counterexample = {
        name: np.asarray(value)
        for name, value in zip(prop.arguments, example)
    }
  return PropertyResult(
      name=prop.name,
      statement=prop.statement,
      passed=passed,
      examples=record["examples"],
      counterexample=counterexample,
      violation=None if passed else record.get("message"),
      seconds=seconds,
  )




def search(
    cost_fn: ott_costs.CostFn,
    names: Sequence[str],
    *,
    domain: str,
    parameterisations: Sequence[str],
    max_examples: Optional[int] = None,
    seed: Optional[int] = None,
    min_dim: Optional[int] = None,
    max_dim: Optional[int] = None,
) -> CostReport:
  """Search for counterexamples to the properties ``names`` of ``cost_fn``.

  Args:
    cost_fn: An ott cost between points, evaluated as ``cost_fn(x, y)``.
    names: Keys of :data:`PROPERTIES`.
    domain: ``"euclidean"`` or ``"sphere"``: where the points are drawn.
    parameterisations: What the claims were made for (for the report).
    max_examples: Examples per property; default: the active hypothesis
      profile's.
    seed: Seed of the search; default: the active profile's.
    min_dim: Smallest dimension tried (ambient on the sphere).
    max_dim: Largest dimension tried.

  Returns:
    A :class:`CostReport`.

  Raises:
    ValueError: for an unknown property, domain or dimension range.
  """
  _check_domain(domain)
  unknown = [n for n in names if n not in PROPERTIES]
  if unknown:
    raise ValueError(
        f"Unknown properties {unknown}; known: {list(PROPERTIES)}."
    )
  dimensions(domain, min_dim, max_dim)  # validates the range
  default = hypothesis.settings.default
  settings = hypothesis.settings(
      default,
      max_examples=default.max_examples if max_examples is None
      else int(max_examples),
      deadline=None,
      database=None,
      derandomize=default.derandomize and seed is None,
      report_multiple_bugs=False,
      print_blob=False,
      suppress_health_check=list(hypothesis.HealthCheck),
  )
  results = tuple(
      _search(PROPERTIES[n], cost_fn, domain, (min_dim, max_dim), settings,
              seed) for n in names
  )
  return CostReport(repr(cost_fn), domain, tuple(parameterisations), results)
