"""Demo: ``python -m ott_enot`` (or ``ott-enot-demo``).

Trains ENOT on ott's "square_five -> square_four" Gaussian mixtures with the
solver's defaults, prints the learned OT cost beside ott's Sinkhorn estimate
on held-out samples and the fit of both maps beside the resampling floor,
and writes a PNG of both maps.
"""
import argparse
import time
from typing import Optional, Sequence

import jax
import numpy as np

from ott import datasets
from ott.geometry import costs, pointcloud
from ott.solvers import linear

import ott_enot
from ott_enot.evaluation import metrics

__all__ = ["main"]


def _sinkhorn_cost(x: jax.Array, y: jax.Array) -> float:
  geom = pointcloud.PointCloud(x, y, epsilon=1e-3, relative_epsilon="mean")
  return float(linear.solve(geom, max_iterations=5000).primal_cost)


def _samples(seed: int, n: int):
  """``n`` held-out points of each measure, and ``n`` more of each."""
  _, test, _ = datasets.create_gaussian_mixture_samplers(
      "square_five", "square_four", valid_batch_size=n,
      rng=jax.random.key(seed)
  )
  return [next(it) for it in (test.source_iter, test.target_iter,
                              test.source_iter, test.target_iter)]


def _evaluate(potentials, x, y, x2, y2):
  """The OT cost estimates, and each map's fit beside its floor."""
  tx, ty = potentials.transport(x), potentials.transport(y, forward=False)
  fit = lambda a, b: float(metrics.sinkhorn_divergence(a, b))
  forward, inverse = fit(tx, y), fit(ty, x)
  floor_y, floor_x = fit(y2, y), fit(x2, x)
  rows = [
      ("OT cost, ENOT dual estimate", float(potentials.distance(x, y))),
      ("OT cost, ENOT map E c(x, T(x))",
       float(np.mean(np.sum((np.asarray(tx) - np.asarray(x)) ** 2, -1)))),
      ("OT cost, Sinkhorn (eps 1e-3 x mean cost)", _sinkhorn_cost(x, y)),
  ]
  fits = [
      ("forward fit: S(T(x), y)", forward, floor_y),
      ("inverse fit: S(T^-1(y), x)", inverse, floor_x),
      ("no map: S(x, y)", fit(x, y), floor_y),
  ]
  return rows, fits


def _plot(potentials, x, y, fits, out: str) -> None:
  """Both maps side by side, titled with their fits."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  k = min(256, len(x))
  fig, axes = plt.subplots(1, 2, figsize=(12, 6))
  for ax, forward, (_, value, floor), title in zip(
      axes, (True, False), fits, ("forward map T: source -> target",
                                  "inverse map: target -> source")
  ):
    potentials.plot_ot_map(x[:k], y[:k], forward=forward, ax=ax)
    ax.set_title(f"{title} (fit {value / floor:.1f} x floor)")
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Run the demo; returns the process exit code."""
  parser = argparse.ArgumentParser(
      prog="python -m ott_enot", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--iters", type=int, default=6000, help="training steps")
  parser.add_argument("--batch", type=int, default=512, help="batch size")
  parser.add_argument("--eval", type=int, default=1024, help="eval samples")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="enot_demo.png", help="PNG to write")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  rng_data, rng_solver = jax.random.split(jax.random.key(args.seed))
  train, valid, dim = datasets.create_gaussian_mixture_samplers(
      "square_five",
      "square_four",
      train_batch_size=args.batch,
      valid_batch_size=args.batch,
      rng=rng_data,
  )
  x, y, x2, y2 = _samples(args.seed + 1, args.eval)

  solver = ott_enot.ExpectileNeuralDual(
      dim,
      cost_fn=costs.SqEuclidean(),
      num_train_iters=args.iters,
      rng=rng_solver,
      progress_bar=not args.no_progress,
  )
  print(
      f"ENOT, squared Euclidean cost, {args.iters} steps, batch {args.batch}, "
      f"parameterisation {solver.parameterisation!r}, the solver's defaults"
  )
  start = time.perf_counter()
  potentials = solver(*train, *valid)
  seconds = time.perf_counter() - start

  rows, fits = _evaluate(potentials, x, y, x2, y2)
  print(f"trained in {seconds:.1f} s ({args.iters / seconds:.0f} steps/s, "
        f"compile included) on {jax.devices()[0].platform}")
  print(f"evaluated on {args.eval} held-out samples of each measure:")
  width = max(len(name) for name, *_ in rows + fits)
  for name, value in rows:
    print(f"  {name:<{width}}  {value:9.4f}")
  print("Sinkhorn divergence S (eps 1e-2 x mean cost) beside the resampling "
        "floor (S between two independent samples of the measure):")
  for name, value, floor in fits:
    print(f"  {name:<{width}}  {value:9.4f}   floor {floor:.4f}   "
          f"{value / floor:6.2f} x floor")

  _plot(potentials, x, y, fits, args.out)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
