"""Flax NNX networks against Linen networks of the same sizes: accuracy and
whole-run time, side by side in one run.

    python benchmarks/networks.py                       # d 16, 5,000 steps
    python benchmarks/networks.py --dim 2 --steps 1500 --seeds 5

One problem with ground truth: Gaussians in dimension ``--dim``
(``ott.tools.gaussian_mixture.gaussian.Gaussian.from_random``, as the tests'
pairs), whose Monge map is closed-form. Each row trains ``ott_enot.
ENOTSolver`` with its defaults (twist map, both directions, Adam with cosine
decay) from ``fit(sampler)`` (batches drawn on the device), with networks of
the default sizes (4 hidden layers of ``--width``, ELU, one output):

- ``linen``: ott's Linen ``potentials.MLP``, initialised from the solver's
  ``rng = jax.random.key(seed)``;
- ``nnx``: the same MLP of ``flax.nnx.Linear`` layers, given as a function
  ``rngs -> nnx.Module`` so that the same ``rng`` chooses its (own) initial
  parameters (``nnx.Linear`` and ``linen.Dense`` draw from the same
  distributions: LeCun normal kernels, zero biases).

Columns: L2-UV (%) of the forward and inverse maps on 4,096 held-out points
(mean ± std over seeds), whole-run seconds (building the solver to the last
parameter ready, compilation included; median over seeds, APIs interleaved
seed by seed so that a slow spell of a shared machine hits both; one untimed
2-step run of each kind first pays the process-wide one-offs) and steady
steps/s (a second run of the compiled solver). The persistent compilation
cache is off.
"""
import argparse
import functools
import time

import jax
import numpy as np
from flax import nnx
from ott.neural.networks import potentials
from ott.tools.gaussian_mixture import gaussian

import common
import ott_enot
from ott_enot.evaluation import metrics


class MLP(nnx.Module):
  """ott's ``potentials.MLP`` (ELU) in NNX: hidden ``nnx.Linear`` layers,
  then a linear output."""

  def __init__(self, din: int, hidden, dout: int = 1, *, rngs: nnx.Rngs):
    sizes = [din] + list(hidden)
    self.hidden = nnx.List([
        nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])
    ])
    self.out = nnx.Linear(sizes[-1], dout, rngs=rngs)

  def __call__(self, x):
    for layer in self.hidden:
      x = jax.nn.elu(layer(x))
    return self.out(x)


def _networks(api: str, dim: int, hidden):
  if api == "linen":
    make = lambda: potentials.MLP(dim_hidden=tuple(hidden) + (1,),
                                  act_fn=jax.nn.elu)
  else:
    make = lambda: functools.partial(MLP, dim, tuple(hidden))
  return make(), make()


def _run(api: str, pair, args, seed: int) -> dict:
  source, target = pair

  def sampler(key):
    kx, ky = jax.random.split(key)
    return (source.sample(kx, args.batch), target.sample(ky, args.batch))

  hidden = (args.width,) * 4
  start = time.perf_counter()
  solver = ott_enot.ENOTSolver(
      args.dim, *_networks(api, args.dim, hidden),
      num_train_iters=args.steps, valid_freq=args.steps, progress_bar=False,
      rng=jax.random.key(seed))
  pot = solver.fit(sampler, rng=jax.random.key(100 + seed))
  jax.block_until_ready(jax.tree.leaves(solver.state))
  whole = time.perf_counter() - start
  start = time.perf_counter()
  solver.fit(sampler, rng=jax.random.key(200 + seed))
  jax.block_until_ready(jax.tree.leaves(solver.state))
  steady = args.steps / (time.perf_counter() - start)
  x = source.sample(jax.random.key(99), 4096)
  y = target.sample(jax.random.key(98), 4096)
  return dict(
      fwd=float(metrics.l2_uv(pot.transport(x), source.transport(target, x))),
      inv=float(metrics.l2_uv(pot.transport(y, forward=False),
                              target.transport(source, y))),
      whole=whole, steady=steady)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dim", type=int, default=16)
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args()
  jax.config.update("jax_enable_compilation_cache", False)
  pair = tuple(
      gaussian.Gaussian.from_random(jax.random.key(k), args.dim,
                                    stdev_mean=1.0, stdev_cov=0.5)
      for k in (0, 1))
  apis = ("linen", "nnx")
  # process-wide one-offs (network initialisation, the validation reference's
  # programs) paid by untimed runs of each kind, as benchmarks/speed.py does
  for api in apis:
    _run(api, pair, argparse.Namespace(**dict(vars(args), steps=2)), 0)
  rows = {api: [] for api in apis}
  for seed in range(args.seeds):
    for api in (apis if seed % 2 == 0 else apis[::-1]):
      rows[api].append(_run(api, pair, args, seed))
      print(f"  seed {seed} {api}: {rows[api][-1]}", flush=True)

  ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}"
  print(f"\ncommit {common.commit()}, {jax.devices()[0].device_kind}, "
        f"d = {args.dim}, {args.steps} steps, batch {args.batch}, 4 x "
        f"{args.width} ELU, {args.seeds} seeds\n")
  print("| networks | fwd L2-UV % | inv L2-UV % | whole run s | steady steps/s |")
  print("|---|---|---|---|---|")
  for api in apis:
    r = rows[api]
    col = lambda k, r=r: [row[k] for row in r]
    print(f"| {api} | {ms(col('fwd'))} | {ms(col('inv'))} | "
          f"{np.median(col('whole')):.1f} | {np.median(col('steady')):.0f} |")
  ratio = np.median([a["whole"] / b["whole"]
                     for a, b in zip(rows["nnx"], rows["linen"])])
  print(f"\nwhole run, nnx / linen (median of the per-seed ratios): "
        f"{ratio:.2f}")


if __name__ == "__main__":
  main()
