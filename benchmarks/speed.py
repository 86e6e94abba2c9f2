"""Training speed: ott_enot's fused loop vs ott 0.6.0's solvers, side by side.

    python benchmarks/speed.py                       # the full table (GPU)
    python benchmarks/speed.py --dims 16 2 --steps 200 --w2-steps 20 \\
        --no-target --batches 256 1024 4096 --widths 128 256 512   # CPU

All solvers get the same networks (ott's ``PotentialMLP``, 4 hidden layers,
ELU), the same Adam optimiser (3e-4, b1 = b2 = 0.9) and batch size, on Gaussian
pairs with closed-form Monge maps (``ott.tools.gaussian_mixture``):

- ``ott_enot``: ``solver.fit(sampler)``, batches sampled on the device inside
  fused ``lax.scan`` chunks (``--chunk`` steps per dispatch);
- ``ott ENOT``: ott 0.6.0's ``ExpectileNeuralDual``, fed by iterators of
  device arrays (its Python loop dispatches one jitted step per iteration);
- ``ott W2``: ott's ``W2NeuralDual`` with its default L-BFGS conjugate solver.

Prints steps/s in steady state (compile excluded; compile time in its own
column), the ratio to ott ENOT, peak device memory (GPU only), and the wall
time for each solver to reach ``--target`` L2-UV (%), training in segments and
evaluating (untimed) after each. Then ott_enot's and ott ENOT's steps/s
against batch size and network width.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import optax

from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.neural.methods import neuraldual
from ott.neural.networks import potentials
from ott.tools.gaussian_mixture import gaussian

import ott_enot
from ott_enot import metrics


def _pair(dim):
  return (gaussian.Gaussian.from_random(jax.random.key(0), dim, 1.0, 0.5),
          gaussian.Gaussian.from_random(jax.random.key(1), dim, 1.0, 0.5))


def _nets(width):
  make = lambda: potentials.PotentialMLP([width] * 4, act_fn=jax.nn.elu)
  return make(), make()


def _adam():
  return optax.adam(3e-4, b1=0.9, b2=0.9)


def _iterators(pair, batch, seed):
  draws = [jax.jit(lambda k, g=g: g.sample(k, batch)) for g in pair]

  def it(j, k):
    i = 0
    while True:
      i += 1
      yield draws[j % 2](jax.random.fold_in(k, i))

  keys = jax.random.split(jax.random.key(seed), 4)
  return [it(j, keys[j]) for j in range(4)]


def _sampler(pair, batch):
  src, tgt = pair

  def sample(key):
    kx, ky = jax.random.split(key)
    return src.sample(kx, batch), tgt.sample(ky, batch)

  return sample


def _block(solver):
  jax.block_until_ready(jax.tree.leaves(solver.state_f.params))


class Runner:
  """Uniform interface: build a solver and train it for n more steps."""

  def __init__(self, name, dim, batch, width, chunk):
    self.name, self.pair, self.batch = name, _pair(dim), batch
    f, g = _nets(width)
    if name == "ott_enot":
      self.solver = ott_enot.ExpectileNeuralDual(
          dim, f, g, _adam(), _adam(), progress_bar=False, chunk_size=chunk,
          valid_freq=10**9, log_freq=10**9
      )
      self.sample = _sampler(self.pair, batch)
    elif name == "ott ENOT":
      self.solver = ott_enot_module.ExpectileNeuralDual(
          dim, f, g, _adam(), _adam(), valid_freq=10**9, log_freq=10**9
      )
    else:
      self.solver = neuraldual.W2NeuralDual(
          dim, f, g, _adam(), _adam(), valid_freq=10**9, log_freq=10**9,
          back_and_forth=True
      )
    self.calls = 0

  def train(self, steps):
    self.calls += 1
    self.solver.num_train_iters = steps
    start = time.perf_counter()
    if self.name == "ott_enot":
      self.solver.fit(self.sample, rng=jax.random.key(self.calls))
    else:
      import contextlib, io
      with contextlib.redirect_stderr(io.StringIO()):  # their tqdm bars
        self.solver(*_iterators(self.pair, self.batch, self.calls))
    _block(self.solver)
    return time.perf_counter() - start

  def l2_uv(self):
    src, tgt = self.pair
    x = src.sample(jax.random.key(123), 8192)
    pot = self.solver.to_dual_potentials()
    return float(metrics.l2_uv(pot.transport(x), src.transport(tgt, x)))


def _peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return f"{peak / 2**20:.0f} MiB" if peak else "n/a"


def speed(name, dim, batch, width, chunk, steps):
  """(steps/s in steady state, compile-ish seconds)."""
  r = Runner(name, dim, batch, width, chunk)
  first = r.train(steps)  # compiles; ours compiles all its chunk shapes here
  steady = r.train(steps)
  rate = steps / steady
  return rate, max(first - steps / rate, 0.0), r


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256])
  p.add_argument("--batch", type=int, default=1024)
  p.add_argument("--width", type=int, default=128)
  p.add_argument("--chunk", type=int, default=1000)
  p.add_argument("--steps", type=int, default=2000,
                 help="steady-state steps for ott_enot and ott ENOT")
  p.add_argument("--w2-steps", type=int, default=300)
  p.add_argument("--target", type=float, default=2.0, help="L2-UV %% target")
  p.add_argument("--segment", type=int, default=1000)
  p.add_argument("--max-steps", type=int, default=20000)
  p.add_argument("--no-target", action="store_true")
  p.add_argument("--target-solvers", nargs="+",
                 default=["ott ENOT", "ott_enot", "ott W2"])
  p.add_argument("--batches", type=int, nargs="*",
                 default=[256, 1024, 4096, 16384])
  p.add_argument("--widths", type=int, nargs="*", default=[128, 256, 512, 1024])
  a = p.parse_args()

  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"batch {a.batch}; PotentialMLP 4x{a.width} ELU; Adam(3e-4, .9, .9); "
        f"ott_enot chunk {a.chunk}")
  print("\n| d | solver | steps/s | x ott ENOT | compile s | peak memory |")
  print("|---|---|---|---|---|---|")
  for dim in a.dims:
    rates = {}
    for name in ("ott ENOT", "ott_enot", "ott W2"):
      steps = a.w2_steps if name == "ott W2" else a.steps
      if steps <= 0:
        continue
      rate, comp, _ = speed(name, dim, a.batch, a.width, a.chunk, steps)
      rates[name] = rate
      ratio = rate / rates["ott ENOT"] if "ott ENOT" in rates else float("nan")
      print(f"| {dim} | {name} | {rate:.1f} | {ratio:.2f} | {comp:.1f} | "
            f"{_peak_memory()} |", flush=True)

  if not a.no_target:
    print(f"\n| d | solver | steps to L2-UV < {a.target}% | wall s (training) "
          f"| final L2-UV % |")
    print("|---|---|---|---|---|")
    for dim in a.dims:
      for name in a.target_solvers:
        r = Runner(name, dim, a.batch, a.width, a.chunk)
        wall, done, uv = 0.0, 0, float("inf")
        while done < a.max_steps and uv >= a.target:
          wall += r.train(a.segment)
          done += a.segment
          uv = r.l2_uv()
        hit = done if uv < a.target else f"> {done}"
        print(f"| {dim} | {name} | {hit} | {wall:.1f} | {uv:.3f} |", flush=True)

  for label, values, key in (("batch", a.batches, "batch"),
                             ("width", a.widths, "width")):
    if not values:
      continue
    print(f"\n| d | {label} | ott_enot steps/s | ott ENOT steps/s | ratio |")
    print("|---|---|---|---|---|")
    for v in values:
      kw = {"batch": a.batch, "width": a.width, key: v}
      dim = 16
      ours, _, _ = speed("ott_enot", dim, kw["batch"], kw["width"], a.chunk,
                         a.steps)
      theirs, _, _ = speed("ott ENOT", dim, kw["batch"], kw["width"], a.chunk,
                           a.steps)
      print(f"| {dim} | {v} | {ours:.1f} | {theirs:.1f} | "
            f"{ours / theirs:.2f} |", flush=True)


if __name__ == "__main__":
  main()
