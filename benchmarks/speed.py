"""Training speed: whole runs of ott_enot vs ott 0.6.0, side by side in one run.

    python benchmarks/speed.py                 # CPU table (d 16, batch 256)
    python benchmarks/speed.py --dims 16 256 --batch 1024 --widths 128 \\
        --steps 20000 --w2-steps 300           # GPU table
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
    python benchmarks/speed.py --devices 1 2   # data-parallel rows

Every row is a *whole run as a user meets it*: a fresh solver in this process
(fresh networks, nothing compiled for it yet), ``num_train_iters`` steps, wall
time from building the solver to the last parameter being ready, compilation
included (the data loaders are made before the clock starts).
Then the same solver runs again for ``--steady`` steps (already compiled):
steady-state steps/s, and ``compile s`` = whole-run time minus the time the
steps take at the steady rate. Solvers, all with the same networks (ott's
``PotentialMLP``, 4 hidden layers, ELU), Adam(1e-3, b1 = b2 = 0.9), batch and
data (Gaussian pairs, ``ott.tools.gaussian_mixture``):

- ``ott ENOT``: ott 0.6.0's ``ExpectileNeuralDual`` with four iterators of
  numpy batches drawn with numpy (as a data loader yields them) (its Python loop dispatches one jitted step per iteration);
- ``ott_enot iter``: ``ott_enot.ExpectileNeuralDual`` with the same iterators
  (the drop-in call ``solver(*loaders)``: batches checked and stacked on the
  host per chunk);
- ``ott_enot fit``: ``solver.fit(sampler)``, batches sampled on the device
  inside the chunk;
- ``ott W2``: ott's ``W2NeuralDual`` with its L-BFGS conjugate solver
  (``--w2-steps``; 0 to skip).

``--devices 1 2 ...`` adds rows of the ott_enot solvers trained
data-parallel over the first N devices (``mesh=ott_enot.batch_mesh(...)``,
each batch split over them; 1 is the default, no mesh); ott's solvers run on
one device. On a CPU the devices are forced host devices sharing the same
cores, so there the rows show that the program runs, not a speed-up.

``--repeats R`` runs R rounds of all solvers, interleaved (ott, ours, ours,
ott, ...), so that a slow spell of a shared machine hits every solver; rows
give medians over the rounds, ``x ott`` the ratio of the medians and ``per
round`` the range of the ratio within each round.

Validation every 1,000 steps and logs every 100 for all solvers (ott's
defaults are 1,000 and 1,000). The persistent compilation cache is off: every
figure is cold, except for the process-wide compiles of network initialisation,
which one untimed solver of each kind pays before the table (else the first row
would). Peak device memory is printed on GPUs.
"""
import argparse
import contextlib
import io
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.neural.methods import neuraldual
from ott.neural.networks import potentials
from ott.tools.gaussian_mixture import gaussian

import ott_enot

SOLVERS = ("ott ENOT", "ott_enot iter", "ott_enot fit", "ott W2")


def _pair(dim):
  """Means and Cholesky factors of two random Gaussians (ott's generator)."""
  out = []
  for seed in (0, 1):
    g = gaussian.Gaussian.from_random(jax.random.key(seed), dim, 1.0, 0.5)
    out.append((np.asarray(g.loc), np.linalg.cholesky(np.asarray(g.covariance()))))
  return out


def _numpy_iterators(pair, batch, seed):
  """Four infinite iterators of numpy batches, as a data loader gives them."""

  def it(j):
    rng = np.random.default_rng([seed, j])
    mean, chol = pair[j % 2]
    while True:
      z = rng.standard_normal((batch, mean.shape[0]), dtype=np.float32)
      yield z @ chol.T.astype(np.float32) + mean

  return [it(j) for j in range(4)]


def _sampler(pair, batch):
  (mx, lx), (my, ly) = [(jnp.asarray(m), jnp.asarray(c)) for m, c in pair]

  def sample(key):
    kx, ky = jax.random.split(key)
    draw = lambda k, m, c: jax.random.normal(k, (batch, m.shape[0])) @ c.T + m
    return draw(kx, mx, lx), draw(ky, my, ly)

  return sample


class Run:
  """One solver, trained twice: a cold whole run, then a warm one."""

  def __init__(self, name, dim, batch, width, chunk, devices=1):
    self.name, self.pair, self.batch = name, _pair(dim), batch
    make = lambda: potentials.PotentialMLP([width] * 4, act_fn=jax.nn.elu)
    adam = lambda: optax.adam(1e-3, b1=0.9, b2=0.9)
    kw = dict(valid_freq=1000, log_freq=100)
    if name.startswith("ott_enot"):
      self.solver = ott_enot.ExpectileNeuralDual(
          dim, make(), make(), adam(), adam(), progress_bar=False,
          chunk_size=chunk, mesh=None if devices == 1 else
          ott_enot.batch_mesh(jax.devices()[:devices]), **kw
      )
      self.sample = _sampler(self.pair, batch)
    elif name == "ott ENOT":
      self.solver = ott_enot_module.ExpectileNeuralDual(
          dim, make(), make(), adam(), adam(), **kw
      )
    else:
      self.solver = neuraldual.W2NeuralDual(
          dim, make(), make(), adam(), adam(), back_and_forth=True, **kw
      )
    self.calls = 0

  def train(self, steps):
    """Wall seconds for ``steps`` steps, data preparation included."""
    self.calls += 1
    self.solver.num_train_iters = steps
    if self.name == "ott_enot fit":
      start = time.perf_counter()
      self.solver.fit(self.sample, rng=jax.random.key(self.calls))
    else:
      loaders = _numpy_iterators(self.pair, self.batch, self.calls)
      start = time.perf_counter()
      with contextlib.redirect_stderr(io.StringIO()):  # ott's tqdm bars
        self.solver(*loaders)
    jax.block_until_ready(jax.tree.leaves(self.solver.state_f.params))
    return time.perf_counter() - start


def _median(values):
  return float(np.median(values))


def _peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return f"{peak / 2**20:.0f} MiB" if peak else "n/a"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dims", type=int, nargs="+", default=[16])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--widths", type=int, nargs="+", default=[64, 128])
  p.add_argument("--steps", type=int, nargs="+", default=[2000, 20000],
                 help="whole-run lengths")
  p.add_argument("--steady", type=int, default=2000,
                 help="steps of the warm run that measures the steady rate")
  p.add_argument("--chunk", type=int, default=100)
  p.add_argument("--devices", type=int, nargs="+", default=[1],
                 help="device counts for the ott_enot rows")
  p.add_argument("--w2-steps", type=int, default=0)
  p.add_argument("--repeats", type=int, default=1,
                 help="rounds of all solvers (interleaved); rows report "
                      "medians, and the range of the per-round ratio")
  p.add_argument("--solvers", nargs="+", default=list(SOLVERS[:3]),
                 choices=SOLVERS)
  a = p.parse_args()

  # build one solver of each kind untimed: the process-wide compiles of the
  # networks' initialisation (eager ops) would otherwise land on the first row
  for name in a.solvers:
    Run(name, a.dims[0], a.batch, a.widths[0], a.chunk)
  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}; "
        f"jax {jax.__version__}; batch {a.batch}; PotentialMLP 4xW ELU; "
        f"Adam(1e-3, .9, .9); ott_enot chunk_size {a.chunk}")
  print(f"medians of {a.repeats} interleaved round(s)")
  print("\n| d | W | steps | solver | devices | whole run s | whole steps/s "
        "| x ott (whole) | per round | compile s | steady steps/s "
        "| x ott (steady) | peak mem |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for dim in a.dims:
    for width in a.widths:
      for steps in a.steps:
        rows = [(name, devices) for name in a.solvers
                for devices in (a.devices if name.startswith("ott_enot")
                                else [1])]
        rows = [(name, devices) for name, devices in rows
                if name != "ott W2" or (a.w2_steps > 0 and steps == a.steps[0])]
        # rounds interleave the solvers, so a slow spell of the machine hits
        # all of them; each row reports its median over the rounds
        measured = {row: [] for row in rows}
        for _ in range(a.repeats):
          for name, devices in rows:
            n = a.w2_steps if name == "ott W2" else steps
            start = time.perf_counter()
            run = Run(name, dim, a.batch, width, a.chunk, devices)
            run.train(n)
            whole = time.perf_counter() - start
            steady_n = min(a.steady, n)
            rate = steady_n / run.train(steady_n)
            measured[(name, devices)].append((n, whole, rate))
        base = measured.get(("ott ENOT", 1))
        for (name, devices), runs in measured.items():
          n, whole, rate = [_median(col) for col in zip(*runs)]
          compile_s = max(whole - n / rate, 0.0)
          ratio = spread = steady_ratio = "-"
          if base:
            bn, b_whole, b_rate = [_median(col) for col in zip(*base)]
            ratio = f"{(n / whole) / (bn / b_whole):.2f}"
            per_round = [(n / w) / (bn / bw)
                         for (_, w, _), (_, bw, _) in zip(runs, base)]
            spread = f"{min(per_round):.2f}-{max(per_round):.2f}"
            steady_ratio = f"{rate / b_rate:.2f}"
          print(f"| {dim} | {width} | {n:.0f} | {name} | {devices} | "
                f"{whole:.1f} | {n / whole:.0f} | {ratio} | {spread} | "
                f"{compile_s:.1f} | {rate:.0f} | {steady_ratio} | "
                f"{_peak_memory()} |", flush=True)


if __name__ == "__main__":
  main()
