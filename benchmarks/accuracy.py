"""Accuracy without ground truth: maps on 2-D mixtures and sphere caps.

For each problem (two measures and a cost) and each method, trains a solver
from point clouds the way a user would (`from_geometry(PointCloud(x, y,
cost_fn)).fit(geom)`, 20,000 points per measure, batch 1,024) and judges the
maps on 2,048 held-out points of each measure:

* fit: the Sinkhorn divergence at the target's local scale
  (`metrics.local_divergence`: blur and reach set by the target sample's
  nearest-neighbour distances) between T(x) and y, divided by the
  resampling floor, the same divergence between two independent target
  samples (1 = indistinguishable from the target at this sample size,
  region by region; strays and clusters too wide or narrow are many times
  the floor); the same for the inverse map; beside it the coarse fit of
  ott-enot 0.1 (balanced, epsilon 1e-2 x mean cost), which blurs wider than
  a cluster;
* cost: the dual estimate (`potentials.distance`), E c(x, T(x)), and the cost
  of Sinkhorn's plan (epsilon 1e-3 x mean cost) on the same points, and the
  exact OT cost of the held-out points (assignment), with the exact cost
  between two target samples (how much of the gap sampling alone makes).

    python benchmarks/accuracy.py --seeds 3                     # everything
    python benchmarks/accuracy.py --problems euclid_square_five_circle \\
        --methods default direct --steps 10000

Methods: `default` (the solver's defaults: for metric costs the twist of
their surrogate d^p / p), `p<number>` (the defaults with the metric cost's
`surrogate_p` set to the number, e.g. `p1.75`), `ott` (ott's defaults: Adam
3e-4, b1 = b2 = 0.9, lambda 1), `direct` (ott 0.5.1's `is_bidirectional=False`
direct map).
"""
import argparse
import dataclasses
import time
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ott.geometry import costs, pointcloud
from ott.solvers import linear

import common
import ott_enot
from ott_enot.evaluation import metrics


def _cap(n: int, seed: int, centre, spread: float) -> np.ndarray:
  rng = np.random.default_rng(seed)
  centre = np.asarray(centre, np.float64) / np.linalg.norm(centre)
  pts = centre + spread * rng.normal(size=(n, 3))
  return (pts / np.linalg.norm(pts, axis=-1, keepdims=True)).astype(np.float32)


def _caps(spec, n: int, seed: int) -> np.ndarray:
  """``n`` i.i.d. points of an equal-weight mixture of caps (the number in
  each cap is random, as in ott's mixtures: a sample with exactly equal
  counts would make the resampling floor too low)."""
  parts = np.stack([_cap(n, 1000 * seed + k, c, s)
                    for k, (c, s) in enumerate(spec)])
  label = np.random.default_rng(1000 * seed + 999).integers(len(spec), size=n)
  return parts[label, np.arange(n)]


ONE_CAP = (([0.0, 0.2, 1.0], 0.25),)
TWO_CAPS = (([1.0, 0.0, 0.2], 0.15), ([-0.2, 1.0, 0.0], 0.15))
THREE_CAPS = (([1.0, 0.0, 0.0], 0.12), ([0.0, 1.0, 0.0], 0.12),
              ([0.0, 0.0, 1.0], 0.12))


@dataclasses.dataclass(frozen=True)
class Problem:
  name: str
  cost: Callable[[], costs.CostFn]
  source: Callable[[int, int], np.ndarray]  # (n, seed) -> points
  target: Callable[[int, int], np.ndarray]


def _mixtures(src: str, tgt: str, cost, prefix: str) -> Problem:
  return Problem(f"{prefix}_{src}_{tgt}", cost,
                 lambda n, s: common.mixture(src, n, s),
                 lambda n, s: common.mixture(tgt, n, s))


PROBLEMS: Dict[str, Problem] = {p.name: p for p in (
    _mixtures("square_five", "square_four", costs.SqEuclidean, "sq"),
    _mixtures("square_five", "circle", costs.SqEuclidean, "sq"),
    _mixtures("square_five", "circle", ott_enot.costs.Euclidean, "euclid"),
    _mixtures("square_four", "square_five", ott_enot.costs.Euclidean,
              "euclid"),
    _mixtures("circle", "square_four", ott_enot.costs.Euclidean, "euclid"),
    Problem("geodesic_one_cap_two_caps", ott_enot.SphereGeodesic,
            lambda n, s: _caps(ONE_CAP, n, s),
            lambda n, s: _caps(TWO_CAPS, n, s)),
    Problem("geodesic_two_caps_three_caps", ott_enot.SphereGeodesic,
            lambda n, s: _caps(TWO_CAPS, n, s),
            lambda n, s: _caps(THREE_CAPS, n, s)),
    Problem("geodesic_sq_one_cap_two_caps", ott_enot.SphereGeodesicSq,
            lambda n, s: _caps(ONE_CAP, n, s),
            lambda n, s: _caps(TWO_CAPS, n, s)),
)}


def _cost(problem: Problem, method: str) -> costs.CostFn:
  """The problem's cost; for a method ``p<number>``, a metric cost with
  that ``surrogate_p``."""
  if method.startswith("p"):
    return problem.cost(surrogate_p=float(method[1:]))
  return problem.cost()


def _solver(method: str, geom, steps: int, seed: int):
  kw = dict(num_train_iters=steps, progress_bar=False,
            rng=jax.random.key(seed))
  if method.startswith("p"):
    pass  # the defaults, with the cost's surrogate power
  elif method == "ott":
    adam = lambda: optax.adam(3e-4, b1=0.9, b2=0.9)
    kw.update(optimizer_f=adam(), optimizer_g=adam(), expectile_loss_coef=1.0)
  elif method == "direct":
    kw.update(is_bidirectional=False)
  elif method != "default":
    raise ValueError(f"unknown method {method!r}")
  return ott_enot.ExpectileNeuralDual.from_geometry(geom, **kw)


def _sinkhorn_cost(x, y, cost_fn) -> float:
  geom = pointcloud.PointCloud(x, y, cost_fn=cost_fn, epsilon=1e-3,
                               relative_epsilon="mean")
  return float(linear.solve(geom, max_iterations=5000).primal_cost)


def run(problem: Problem, method: str, steps: int, seed: int, n_train: int,
        n_test: int) -> Optional[Dict[str, float]]:
  cost_fn = _cost(problem, method)
  x_train, y_train = problem.source(n_train, seed), problem.target(
      n_train, seed + 1)
  x, y = problem.source(n_test, 100 + seed), problem.target(n_test, 200 + seed)
  x2, y2 = problem.source(n_test, 300 + seed), problem.target(
      n_test, 400 + seed)
  geom = pointcloud.PointCloud(x_train, y_train, cost_fn=cost_fn)
  start = time.perf_counter()
  try:
    solver = _solver(method, geom, steps, seed)
  except ValueError as err:  # e.g. no direct map for a cost
    print(f"  {problem.name} {method}: {err}")
    return None
  pot = solver.fit(geom, rng=jax.random.key(seed))
  jax.block_until_ready(jax.tree.leaves(solver.state.params))
  seconds = time.perf_counter() - start
  tx = pot.transport(x)
  row = dict(
      fit=_local(tx, y, y2),
      coarse=float(metrics.sinkhorn_divergence(tx, y) /
                   metrics.sinkhorn_divergence(y2, y)),
      dual=float(pot.distance(x, y)),
      map=float(jnp.mean(jax.vmap(cost_fn)(x, tx))),
      sinkhorn=_sinkhorn_cost(x, y, cost_fn),
      exact=metrics.exact_ot_cost(x, y, cost_fn),
      exact_floor=metrics.exact_ot_cost(y2, y, cost_fn),
      seconds=seconds,
      parameterisation=solver.parameterisation,
  )
  if pot.is_bidirectional:
    ty = pot.transport(y, forward=False)
    row["inv_fit"] = _local(ty, x, x2)
  return row


def _local(mapped, target, other) -> float:
  """fit / floor at the target's local scale (two independent samples)."""
  epsilon = metrics.local_blur(target)
  div = lambda a: float(metrics.local_divergence(a, target, epsilon))
  return div(mapped) / div(other)


def _mean_std(values: List[float]) -> str:
  v = np.asarray(values, np.float64)
  if len(v) == 1:
    return f"{v[0]:.2f}"
  return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--problems", nargs="+", default=sorted(PROBLEMS),
                      choices=sorted(PROBLEMS))
  parser.add_argument("--methods", nargs="+", default=["default", "ott",
                                                       "direct"])
  parser.add_argument("--steps", type=int, default=10_000)
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--n-train", type=int, default=20_000)
  parser.add_argument("--n-test", type=int, default=2048)
  args = parser.parse_args()

  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, "
        f"{args.steps} steps, {args.seeds} seed(s)")
  table = []
  for name in args.problems:
    problem = PROBLEMS[name]
    for method in args.methods:
      rows = [r for r in (run(problem, method, args.steps, s, args.n_train,
                              args.n_test) for s in range(args.seeds)) if r]
      if not rows:
        continue
      col = lambda f: [f(r) for r in rows]
      gap = lambda k: col(lambda r: 100 * (r[k] / r["sinkhorn"] - 1))
      line = (
          f"| {name} | {method} ({rows[0]['parameterisation']}) | "
          f"{_mean_std(col(lambda r: r['fit']))} | "
          + (f"{_mean_std(col(lambda r: r['inv_fit']))} | "
             if "inv_fit" in rows[0] else "- | ")
          + f"{_mean_std(col(lambda r: r['coarse']))} | "
          + f"{_mean_std(col(lambda r: r['dual']))} ({_mean_std(gap('dual'))} %) | "
          f"{_mean_std(col(lambda r: r['map']))} ({_mean_std(gap('map'))} %) | "
          f"{_mean_std(col(lambda r: r['sinkhorn']))} | "
          f"{_mean_std(col(lambda r: r['exact']))} / "
          f"{_mean_std(col(lambda r: r['exact_floor']))} | "
          f"{_mean_std(col(lambda r: r['seconds']))} |"
      )
      print(line, flush=True)
      table.append(line)
  print()
  print("| problem | method | fit / floor | inverse fit / floor | coarse fit "
        "/ floor | dual (vs Sinkhorn) | E c(x, T(x)) (vs Sinkhorn) | Sinkhorn "
        "| exact / exact between target samples | seconds |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for line in table:
    print(line)


if __name__ == "__main__":
  main()
