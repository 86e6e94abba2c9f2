"""What validation costs a whole run: the same run with validation on and off.

    python benchmarks/validation.py                    # d 16, 4x64, 4,000 steps
    python benchmarks/validation.py --dims 2 16 --repeats 3

Each row is a whole run as a user meets it (a fresh solver, its programs
compiled for it: ``jax.clear_caches()`` before each, build to the last
parameter ready): ``ENOTSolver(d, neural_f, neural_g, num_train_iters=N,
valid_freq=V).fit(x, y)`` from 20,000 points per measure (a Gaussian pair),
batch 1,024 (``--batch``; the validation batch is as large), default optimisers, validation every ``V`` steps (the default
1,000) or never (``V > N``). Rounds interleave on/off; rows give medians and
the overhead ``on / off - 1``. The last columns: the logged fit / floor of
the last validation.
"""
import argparse
import time

import jax
import numpy as np

from ott.neural.networks import potentials

import common
import ott_enot


def _pair(dim: int, n: int, seed: int):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(dim, dim)) / np.sqrt(dim)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  y = (rng.normal(size=(n, dim)) @ (np.eye(dim) + a) + 1.0).astype(np.float32)
  return x, y


def run(dim: int, width: int, steps: int, valid_freq: int, x, y, batch: int):
  """Seconds of a cold whole run and its last validation row."""
  jax.clear_caches()
  start = time.perf_counter()
  net = lambda out: potentials.MLP(dim_hidden=(width,) * 4 + (out,),
                                   act_fn=jax.nn.elu)
  solver = ott_enot.ENOTSolver(
      dim, net(1), net(1), num_train_iters=steps, valid_freq=valid_freq,
      progress_bar=False)
  pot = solver.fit(x, y, batch_size=batch)
  jax.block_until_ready(jax.tree.leaves(pot.params_f))
  wall = time.perf_counter() - start
  valid = solver.logs["valid_logs"] if hasattr(solver, "logs") else None
  return wall, valid


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dims", type=int, nargs="+", default=[16])
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--steps", type=int, default=4000)
  p.add_argument("--valid-freq", type=int, default=1000)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--batch", type=int, default=1024)
  a = p.parse_args()
  print(f"commit {common.commit()}; jax {jax.__version__}; "
        f"{jax.devices()[0].platform}; MLP 4x{a.width} ELU; batch {a.batch}; "
        f"{a.steps} steps; medians of {a.repeats} interleaved rounds")
  print("\n| d | validation | whole run s | per round s | overhead |")
  print("|---|---|---|---|---|")
  for dim in a.dims:
    x, y = _pair(dim, 20000, 0)
    on, off = [], []
    for _ in range(a.repeats):
      off.append(run(dim, a.width, a.steps, a.steps + 1, x, y, a.batch)[0])
      on.append(run(dim, a.width, a.steps, a.valid_freq, x, y, a.batch)[0])
    med_on, med_off = np.median(on), np.median(off)
    fmt = lambda v: ", ".join(f"{t:.1f}" for t in v)
    print(f"| {dim} | off | {med_off:.1f} | {fmt(off)} | |")
    print(f"| {dim} | every {a.valid_freq} | {med_on:.1f} | {fmt(on)} | "
          f"{100 * (med_on / med_off - 1):+.1f} % |", flush=True)


if __name__ == "__main__":
  main()
