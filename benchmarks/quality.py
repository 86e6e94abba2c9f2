"""L2-UV on Gaussian pairs: ott 0.6.0's ExpectileNeuralDual, ours with ott's
defaults, ours with its own defaults.

Every solver gets the same networks (4x128 ELU MLPs; one row the demo's
``PiecewiseMLP``, a ReLU first layer anchored at 128 points of each
measure, at the same widths, one more with its second layer ReLU too),
the same batches and
the same number of steps; the true map is the closed-form Gaussian Monge map
(``ott.tools.gaussian_mixture.gaussian.Gaussian.transport``). ott's defaults:
Adam lr 3e-4, b1 = b2 = 0.9, tau 0.99, lambda 1.0; ours
(``ott_enot.default_optimizer``): Adam b1 0.9, b2 0.99, lr 1e-3 cosine
to 1e-5, tau 0.99, lambda 0.5; and ours with the pushforward term
(``pushforward_loss_coef``, ``--pushforward``, default 1).

    python benchmarks/quality.py --dims 2 16 --steps 5000 --seeds 3
    python benchmarks/quality.py --solvers twist pushforward   # two rows
    python benchmarks/quality.py --solvers twist Piecewise

Prints one table, mean ± std over seeds 0, ..., N - 1 (networks, batches):
forward / inverse L2-UV (%) per solver and dimension, the dual cost estimate
against the closed-form W2^2, and wall time (training, compile included; a
ratio between rows of one run is meaningful, not the absolute CPU seconds).
"""
import argparse
import time

import jax
import numpy as np
import optax

from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.tools.gaussian_mixture import gaussian

import ott_enot
from ott_enot.evaluation import metrics


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


def _piecewise(pair, seed, **kwargs):
  """PiecewiseMLPs anchored at 128 points of each Gaussian (a sample apart
  from the training batches), as the demo anchors its networks."""
  return ott_enot.model.networks.piecewise_networks(
      pair[0].sample(jax.random.key(30_000 + seed), 128),
      pair[1].sample(jax.random.key(40_000 + seed), 128), **kwargs)


def _mean_std(values, fmt=".3f"):
  if len(values) == 1:
    return format(values[0], fmt)
  return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1):{fmt}}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dims", type=int, nargs="+", default=[2, 16])
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seeds", type=int, default=3,
                      help="runs per row: seeds 0, ..., N - 1")
  parser.add_argument("--pushforward", type=float, default=1.0,
                      help="pushforward_loss_coef of the '+ pushforward' row")
  parser.add_argument("--solvers", nargs="+", default=None,
                      help="only the rows whose name contains one of these")
  args = parser.parse_args()

  ott_adam = lambda: optax.adam(3e-4, b1=0.9, b2=0.9)
  solvers = {
      "ott 0.6.0 ExpectileNeuralDual": lambda seed, steps: (
          ott_enot_module.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed)
          )
      ),
      "ott_enot, ott's defaults": lambda seed, steps: (
          ott_enot.ExpectileNeuralDual(
              dim, optimizer_f=ott_adam(), optimizer_g=ott_adam(),
              expectile_loss_coef=1.0, num_train_iters=steps,
              rng=jax.random.key(seed), progress_bar=False
          )
      ),
      "ott_enot defaults (twist)": lambda seed, steps: (
          ott_enot.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed),
              progress_bar=False
          )
      ),
      "ott_enot defaults (correlation)": lambda seed, steps: (
          ott_enot.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed),
              parameterisation="correlation", progress_bar=False
          )
      ),
      "ott_enot defaults, PiecewiseMLP": lambda seed, steps: (
          ott_enot.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed),
              progress_bar=False, **_piecewise(pair, seed))
      ),
      "ott_enot defaults, PiecewiseMLP relu_layers=2": lambda seed, steps: (
          ott_enot.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed),
              progress_bar=False, **_piecewise(pair, seed, relu_layers=2))
      ),
      f"ott_enot defaults + pushforward {args.pushforward:g}": (
          lambda seed, steps: ott_enot.ExpectileNeuralDual(
              dim, num_train_iters=steps, rng=jax.random.key(seed),
              progress_bar=False, pushforward_loss_coef=args.pushforward)
      ),
  }
  if args.solvers:
    solvers = {name: make for name, make in solvers.items()
               if any(part in name for part in args.solvers)}
  print(f"device: {jax.devices()[0].device_kind}; steps {args.steps}, batch "
        f"{args.batch}, 4x128 ELU MLPs, {args.seeds} seed(s), mean ± std")
  print("| d | solver | fwd L2-UV % | inv L2-UV % | dual est. | W2^2 | "
        "train s |")
  print("|" + "---|" * 7)
  for dim in args.dims:
    pair = (
        gaussian.Gaussian.from_random(jax.random.key(0), dim, 1.0, 0.5),
        gaussian.Gaussian.from_random(jax.random.key(1), dim, 1.0, 0.5),
    )
    w2 = float(pair[0].w2_dist(pair[1]))
    for name, make in solvers.items():
      rows = [_run(name, make, pair, seed, args.steps, args.batch)
              for seed in range(args.seeds)]
      col = lambda k: [r[k] for r in rows]
      print(f"| {dim} | {name} | {_mean_std(col('fwd'))} | "
            f"{_mean_std(col('inv'))} | {_mean_std(col('dist'))} | {w2:.3f} | "
            f"{_mean_std(col('sec'), '.1f')} |", flush=True)


if __name__ == "__main__":
  main()
