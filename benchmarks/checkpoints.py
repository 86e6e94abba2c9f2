"""Overhead of checkpointing: whole runs with and without `checkpoint_dir`.

    python benchmarks/checkpoints.py      # d 16, batch 256, 4x64, 20,000 steps

Each row is a whole run as a user meets it (fresh solver, compile included) of
``solver.fit`` on an on-device Gaussian sampler, validation every 1,000 steps;
the checkpointed runs write every ``--every`` steps (orbax, asynchronous,
latest 3 and best kept) into a fresh temporary directory. Runs alternate
(without, with, without, with, ...) so that drifts of the machine fall on both.
"""
import argparse
import shutil
import tempfile
import time

import jax
import optax

from ott.neural.networks import potentials

import ott_enot
from speed import _pair, _sampler  # pylint: disable=wrong-import-order


def whole_run(dim, batch, width, steps, every, chunk):
  directory = tempfile.mkdtemp(prefix="enot-ckpt-") if every else None
  make = lambda: potentials.PotentialMLP([width] * 4, act_fn=jax.nn.elu)
  adam = lambda: optax.adam(1e-3, b1=0.9, b2=0.9)
  start = time.perf_counter()
  solver = ott_enot.ExpectileNeuralDual(
      dim, make(), make(), adam(), adam(), num_train_iters=steps,
      valid_freq=1000, log_freq=100, progress_bar=False, chunk_size=chunk,
      checkpoint_dir=directory, checkpoint_every=every or 1000,
  )
  solver.fit(_sampler(_pair(dim), batch))
  jax.block_until_ready(jax.tree.leaves(solver.state.f.params))
  wall = time.perf_counter() - start  # pending writes finished in fit
  if directory:
    shutil.rmtree(directory)
  return wall


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dim", type=int, default=16)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--steps", type=int, default=20_000)
  p.add_argument("--every", type=int, default=1000)
  p.add_argument("--chunk", type=int, default=100)
  p.add_argument("--repeats", type=int, default=1)
  a = p.parse_args()
  whole_run(a.dim, a.batch, a.width, 200, 0, a.chunk)  # process-wide warm-up
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"d {a.dim}; batch {a.batch}; PotentialMLP 4x{a.width}; "
        f"{a.steps} steps; fit")
  print("\n| run | checkpoint every | whole run s | steps/s |")
  print("|---|---|---|---|")
  walls = {0: [], a.every: []}
  for r in range(a.repeats):
    for every in (0, a.every):
      wall = whole_run(a.dim, a.batch, a.width, a.steps, every, a.chunk)
      walls[every].append(wall)
      print(f"| {r} | {every or '-'} | {wall:.1f} | {a.steps / wall:.0f} |",
            flush=True)
  base, ckpt = (sum(walls[k]) / len(walls[k]) for k in (0, a.every))
  print(f"\noverhead: {100 * (ckpt - base) / base:+.1f}% "
        f"({ckpt - base:+.1f} s over {a.steps} steps)")


if __name__ == "__main__":
  main()
