"""Demo: ``python -m ott_enot`` (or ``ott-enot-demo``).

Trains ENOT on ott's "square_five -> square_four" Gaussian mixtures, prints the
learned OT cost beside ott's Sinkhorn estimate on the same samples and the
forward and inverse fit, and writes a PNG of both maps.
"""
import argparse
import time
from typing import Optional, Sequence

import jax
import numpy as np

from ott import datasets
from ott.geometry import costs, pointcloud
from ott.solvers import linear
from ott.tools import sinkhorn_divergence

import ott_enot

__all__ = ["main"]


def _sinkhorn_cost(x: jax.Array, y: jax.Array) -> float:
  geom = pointcloud.PointCloud(x, y, epsilon=1e-3, relative_epsilon="mean")
  return float(linear.solve(geom, max_iterations=5000).primal_cost)


def _divergence(x: jax.Array, y: jax.Array) -> float:
  div, _ = sinkhorn_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, x, y, epsilon=1e-2, relative_epsilon="mean"
  )
  return float(div)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Run the demo; returns the process exit code."""
  parser = argparse.ArgumentParser(
      prog="python -m ott_enot", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--iters", type=int, default=4000, help="training steps")
  parser.add_argument("--batch", type=int, default=256, help="batch size")
  parser.add_argument("--eval", type=int, default=1024, help="eval samples")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="enot_demo.png", help="PNG to write")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rng = jax.random.key(args.seed)
  rng_data, rng_eval, rng_solver = jax.random.split(rng, 3)
  train, valid, dim = datasets.create_gaussian_mixture_samplers(
      "square_five",
      "square_four",
      train_batch_size=args.batch,
      valid_batch_size=args.batch,
      rng=rng_data,
  )
  _, test, _ = datasets.create_gaussian_mixture_samplers(
      "square_five",
      "square_four",
      valid_batch_size=args.eval,
      rng=rng_eval,
  )
  x, y = next(test.source_iter), next(test.target_iter)

  solver = ott_enot.ExpectileNeuralDual(
      dim,
      cost_fn=costs.SqEuclidean(),
      num_train_iters=args.iters,
      rng=rng_solver,
      progress_bar=not args.no_progress,
  )
  print(
      f"ENOT, squared Euclidean cost, {args.iters} steps, batch {args.batch}, "
      f"parameterisation {solver.parameterisation!r}"
  )
  start = time.perf_counter()
  potentials = solver(*train, *valid)
  seconds = time.perf_counter() - start

  tx, ty = potentials.transport(x), potentials.transport(y, forward=False)
  rows = [
      ("OT cost, ENOT dual estimate", float(potentials.distance(x, y))),
      ("OT cost, ENOT map E c(x, T(x))",
       float(np.mean(np.sum((np.asarray(tx) - np.asarray(x)) ** 2, -1)))),
      ("OT cost, Sinkhorn (eps 1e-3 x mean cost)", _sinkhorn_cost(x, y)),
      ("Sinkhorn divergence(x, y), no map", _divergence(x, y)),
      ("Sinkhorn divergence(T(x), y), forward fit", _divergence(tx, y)),
      ("Sinkhorn divergence(T^-1(y), x), inverse fit", _divergence(ty, x)),
  ]
  print(f"trained in {seconds:.1f} s ({args.iters / seconds:.0f} steps/s, "
        f"compile included) on {jax.devices()[0].platform}")
  print(f"evaluated on {args.eval} held-out samples of each measure:")
  width = max(len(name) for name, _ in rows)
  for name, value in rows:
    print(f"  {name:<{width}}  {value:9.4f}")

  fig, axes = plt.subplots(1, 2, figsize=(12, 6))
  k = min(256, args.eval)
  potentials.plot_ot_map(x[:k], y[:k], forward=True, ax=axes[0])
  axes[0].set_title("forward map T: source -> target")
  potentials.plot_ot_map(x[:k], y[:k], forward=False, ax=axes[1])
  axes[1].set_title("inverse map: target -> source")
  fig.tight_layout()
  fig.savefig(args.out, dpi=100)
  plt.close(fig)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
