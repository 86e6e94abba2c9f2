"""Sphere maps over the steps: does training longer ever hurt?

Caps on S^2 (`ott_enot.evaluation.problems.caps`, angular spread 0.2 rad):
three source caps on the equator, two target caps near the poles, so that
source caps split. Each problem is a finite sample (12,000 points per
measure, `fit(geom, batch_size=512)`, the cost `sphere_geodesic` with the
solver's defaults), as a user has. The fit of T(held-out x) to held-out y
(`metrics.fit_and_floor`, 2,048 fresh points of each measure) is measured
every `--every` steps of a long run (the last state), and for runs of
10,000 and 30,000 steps: the map returned (`keep_best=True`, the default:
the best validation's) and the last state. Beside: the same run drawing
fresh samples every step (an infinite sample) and ott's entropic map
(Sinkhorn potentials on 3,000 points with the squared geodesic's twist).

  python benchmarks/sphere.py [--problems A B] [--seeds 0 1] [--no-fresh]
      [--short 10000] [--long 30000] [--pushforward 0]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers import linear

import ott_enot
from ott_enot import costs
from ott_enot.costs import sphere
from ott_enot.evaluation import metrics, problems

import common

u = problems.unit_vector
SOURCE = [u(0, 0), u(0, 120), u(0, 240)]
TARGETS = {"A": [u(80, 0), u(-80, 180)], "B": [u(60, 0), u(-60, 120)]}
SPREAD, POINTS, EVAL = 0.2, 12_000, 2048


def _draw(centers, n, seed):
  return problems.caps(centers, n, SPREAD, seed).points


def _sampler(target):
  """Fresh caps at every step: ``key -> (x[512, 3], y[512, 3])``."""
  src, tgt = jnp.asarray(SOURCE, jnp.float32), jnp.asarray(target,
                                                           jnp.float32)

  def draw(key, centers):
    k1, k2 = jax.random.split(key)
    base = centers[jax.random.randint(k1, (512,), 0, centers.shape[0])]
    return jax.vmap(sphere.exp_map)(base, SPREAD * jax.random.normal(
        k2, base.shape))

  return lambda key: (draw(jax.random.fold_in(key, 0), src),
                      draw(jax.random.fold_in(key, 1), tgt))


def _score(mapped, y_eval) -> float:
  fit, floor = metrics.fit_and_floor(mapped, y_eval)
  return float(fit / floor)


def run(name: str, seed: int, steps: int, every: int, infinite: bool,
        pushforward: float = 0.0):
  """``(curve [(step, last-state fit/floor)], kept fit/floor, last
  fit/floor, kept step, seconds of training, compile included, the curve's
  evaluations excluded)``."""
  target = TARGETS[name]
  x_eval = jnp.asarray(_draw(SOURCE, EVAL, 10_000 + seed))
  y_eval = jnp.asarray(_draw(target, EVAL, 20_000 + seed))
  curve, evaluating = [], [0.0]

  def callback(step, potentials):
    if every and step and step % every == 0:
      begin = time.perf_counter()
      curve.append((step, _score(potentials.transport(x_eval), y_eval)))
      evaluating[0] += time.perf_counter() - begin

  cost = costs.get_cost("sphere_geodesic")
  solver = ott_enot.ENOTSolver(
      3, cost_fn=cost, num_train_iters=steps, valid_freq=1000,
      logging=True, progress_bar=False, rng=jax.random.key(seed),
      pushforward_loss_coef=pushforward)
  start = time.perf_counter()
  if infinite:
    kept, logs = solver.fit(_sampler(target), rng=jax.random.key(seed),
                            callback=callback)
  else:
    geom = pointcloud.PointCloud(
        jnp.asarray(_draw(SOURCE, POINTS, seed)),
        jnp.asarray(_draw(target, POINTS, 100 + seed)), cost_fn=cost)
    kept, logs = solver.fit(geom, batch_size=512, callback=callback)
  seconds = time.perf_counter() - start - evaluating[0]
  last = solver.enot.potentials(*solver.state.params)
  return (curve, _score(kept.transport(x_eval), y_eval),
          _score(last.transport(x_eval), y_eval),
          logs.get("selection", {}).get("step"), seconds)


def entropic(name: str, seed: int) -> float:
  """ott's entropic map on 3,000 points (the squared geodesic's twist)."""
  target = TARGETS[name]
  cost = costs.get_cost("sphere_geodesic_sq")
  x = jnp.asarray(_draw(SOURCE, 3000, seed))
  y = jnp.asarray(_draw(target, 3000, 100 + seed))
  out = linear.solve(pointcloud.PointCloud(x, y, cost_fn=cost, epsilon=1e-2,
                                           relative_epsilon="mean"),
                     max_iterations=10_000)
  x_eval = jnp.asarray(_draw(SOURCE, EVAL, 10_000 + seed))
  y_eval = jnp.asarray(_draw(target, EVAL, 20_000 + seed))
  mapped = out.to_dual_potentials().transport(x_eval)
  mapped = mapped / jnp.linalg.norm(mapped, axis=-1, keepdims=True)
  return _score(mapped, y_eval)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--problems", nargs="+", default=["A", "B"])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--every", type=int, default=5000)
  parser.add_argument("--short", type=int, default=10_000)
  parser.add_argument("--long", type=int, default=30_000)
  parser.add_argument("--no-fresh", action="store_true",
                      help="skip the runs on fresh samples every step")
  parser.add_argument("--pushforward", type=float, default=0.0,
                      help="pushforward_loss_coef (default 0)")
  args = parser.parse_args()
  print(f"commit {common.commit()}; fit / floor on {EVAL} held-out points "
        f"(metrics.fit_and_floor); pushforward {args.pushforward:g}")
  print("| problem | seed | data | steps | returned (kept step) | last state "
        "| seconds |")
  print("|---|---|---|---|---|---|---|")
  curves = []
  for name in args.problems:
    for seed in args.seeds:
      for infinite in (False,) if args.no_fresh else (False, True):
        for steps in (args.short, args.long):
          every = args.every if steps == args.long else 0
          curve, kept, last, step, sec = run(name, seed, steps, every,
                                             infinite, args.pushforward)
          data = "fresh every step" if infinite else f"{POINTS} points"
          print(f"| {name} | {seed} | {data} | {steps} | {kept:.2f} "
                f"({step}) | {last:.2f} | {sec:.0f} |", flush=True)
          if curve:
            curves.append((name, seed, data, curve))
      print(f"| {name} | {seed} | ott entropic map, 3000 points | - | "
            f"{entropic(name, seed):.2f} | | |", flush=True)
  print("\nfit / floor of the last state over the steps (long runs):")
  for name, seed, data, curve in curves:
    print(f"  {name} seed {seed} {data}: " + ", ".join(
        f"{s}: {v:.2f}" for s, v in curve))


if __name__ == "__main__":
  main()
