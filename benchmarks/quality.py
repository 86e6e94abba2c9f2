"""L2-UV of ott_enot vs ott 0.6.0's ExpectileNeuralDual on Gaussian pairs.

Both solvers get the same networks (ott's default 4x128 ELU MLPs), the same
optimisers (ott's default Adam, lr 3e-4, b1 0.9, b2 0.9), the same batches and
the same number of steps; the true map is the closed-form Gaussian Monge map
(``ott.tools.gaussian_mixture.gaussian.Gaussian.transport``).

    python benchmarks/quality.py --dims 2 16 --steps 5000 --seeds 0 1

Prints one table: forward / inverse L2-UV (%) per solver, dimension and seed,
the dual cost estimate against the closed-form W2^2, and wall time (training,
compile included; a ratio between rows of one run is meaningful, not the
absolute CPU seconds).
"""
import argparse
import time

import jax
import numpy as np

from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.tools.gaussian_mixture import gaussian

import ott_enot
from ott_enot import metrics


def _sampler(g, seed, batch):
  key = jax.random.key(seed)
  draw = jax.jit(lambda k: g.sample(k, batch))
  i = 0
  while True:
    i += 1
    yield draw(jax.random.fold_in(key, i))


def _run(name, make, pair, seed, steps, batch):
  src, tgt = pair
  loaders = [
      _sampler(src, 100 * seed + 1, batch),
      _sampler(tgt, 100 * seed + 2, batch),
      _sampler(src, 100 * seed + 3, batch),
      _sampler(tgt, 100 * seed + 4, batch),
  ]
  solver = make(seed, steps)
  start = time.perf_counter()
  pot = solver(*loaders)
  jax.block_until_ready(jax.tree.leaves(solver.state_f.params))
  seconds = time.perf_counter() - start
  x = src.sample(jax.random.key(10_000 + seed), 8192)
  y = tgt.sample(jax.random.key(20_000 + seed), 8192)
  fwd = float(metrics.l2_uv(pot.transport(x), src.transport(tgt, x)))
  inv = float(metrics.l2_uv(
      pot.transport(y, forward=False), tgt.transport(src, y)
  ))
  dist = float(pot.distance(x, y))
  return dict(solver=name, seed=seed, fwd=fwd, inv=inv, dist=dist, sec=seconds)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dims", type=int, nargs="+", default=[2, 16])
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  args = parser.parse_args()

  solvers = {
      "ott 0.6.0 ExpectileNeuralDual": lambda seed, steps: (
          ott_enot_module.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed)
          )
      ),
      "ott_enot twist": lambda seed, steps: ott_enot.ExpectileNeuralDual(
          dim, num_train_iters=steps, rng=jax.random.key(seed),
          progress_bar=False
      ),
      "ott_enot correlation": lambda seed, steps: ott_enot.ExpectileNeuralDual(
          dim, num_train_iters=steps, rng=jax.random.key(seed),
          use_dot_product=True, progress_bar=False
      ),
  }
  print(f"device: {jax.devices()[0].device_kind}; steps {args.steps}, batch "
        f"{args.batch}, 4x128 ELU MLPs, Adam(3e-4, 0.9, 0.9), tau 0.99, "
        f"lambda 1.0")
  header = (f"| d | solver | seed | fwd L2-UV % | inv L2-UV % | dual est. | "
            f"W2^2 | train s |")
  print(header)
  print("|" + "---|" * 8)
  for dim in args.dims:
    pair = (
        gaussian.Gaussian.from_random(jax.random.key(0), dim, 1.0, 0.5),
        gaussian.Gaussian.from_random(jax.random.key(1), dim, 1.0, 0.5),
    )
    w2 = float(pair[0].w2_dist(pair[1]))
    rows = []
    for name, make in solvers.items():
      for seed in args.seeds:
        row = _run(name, make, pair, seed, args.steps, args.batch)
        rows.append(row)
        print(f"| {dim} | {name} | {seed} | {row['fwd']:.3f} | "
              f"{row['inv']:.3f} | {row['dist']:.3f} | {w2:.3f} | "
              f"{row['sec']:.1f} |", flush=True)
    for name in solvers:
      mine = [r for r in rows if r["solver"] == name]
      print(f"| {dim} | {name} | mean | "
            f"{np.mean([r['fwd'] for r in mine]):.3f} | "
            f"{np.mean([r['inv'] for r in mine]):.3f} | "
            f"{np.mean([r['dist'] for r in mine]):.3f} | {w2:.3f} | "
            f"{np.mean([r['sec'] for r in mine]):.1f} |", flush=True)


if __name__ == "__main__":
  main()
