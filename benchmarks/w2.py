"""Wasserstein-2 benchmark (Korotin et al. 2021, Mix3toMix10): L2-UV of maps.

    python benchmarks/w2.py                              # paper settings, all D
    python benchmarks/w2.py --dims 2 4 8 16 --steps 5000 --widths 128 128 \\
        --batch 256 --solvers ott_enot "ott ENOT"        # a CPU budget
    python benchmarks/w2.py --dims 2 8 --steps 5000 --widths 128 128 \\
        --batch 256 --seeds 2 --pushforward 0.3       # the pushforward term
    python benchmarks/w2.py --dims 2 --seeds 3 --lr 3e-4 --b2 0.9 \\
        --constant-lr --tau 0.99 --lam 1.0               # ott's defaults

With ``--seeds N`` every row is N runs (seeds 0, ..., N - 1: networks,
batches and evaluation points) reported as mean ± standard deviation.

For each D, each solver trains on batches of P and Q = T*#P (the benchmark's
pairs, `benchmarks/w2bench/`, loaded by `ott_enot.evaluation.w2bench`) and is scored on
2^14 fresh points of P: forward L2-UV = 100 E|T(x) - T*(x)|^2 / tr Cov(Q) and
inverse L2-UV = 100 E|S(T*(x)) - x|^2 / tr Cov(P), in per cent. Wall time is the
whole run as a user meets it (solver built, compiled, trained; the first row of
a process also pays the process-wide first compiles). The published
L2-UV of earlier solvers (forward, from the benchmark paper) and ENOT's own
figures are printed beside ours.

Solvers, with the same networks, optimiser, steps and batch size:
- ``ott_enot``: ``ott_enot.ExpectileNeuralDual`` (``--parameterisation``,
  default the paper's correlation form), trained by ``solver.fit`` on the
  pair's on-device sampler;
- ``ott ENOT``: ott 0.6.0's ``ExpectileNeuralDual`` (squared Euclidean cost,
  twist), fed by iterators of jitted batches from the same sampler.

Defaults are the paper's: MLPs [512, 512, 512] (ELU), batch 1024, Adam
(b1 0.9, b2 0.99, lr 5e-4, cosine decay to 1e-2 of it), tau 1.0, lambda 0.5,
100,000 steps (the authors' public D = 64 run used 300,001).
"""
import argparse
import contextlib
import io
import itertools
import pathlib
import time

import jax
import numpy as np
import optax

from ott.geometry import costs
from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.neural.networks import potentials

import common
import ott_enot
from ott_enot.evaluation import w2bench

DATA = pathlib.Path(__file__).resolve().parent / "w2bench"
DIMS = w2bench.PUBLISHED_DIMS
# forward L2-UV (%), Korotin et al. 2021 (Table of the high-dimensional pairs)
PUBLISHED = {
    "MM": (0.1, 0.3, 0.9, 2.2, 4.2, 3.2, 3.1),
    "MM:R": (0.1, 0.3, 0.7, 1.9, 2.8, 4.5, None),
    "MMv2": (0.1, 0.68, 2.2, 3.1, 5.3, 10.1, 3.2),
    "W2": (0.1, 0.7, 2.6, 3.3, 6.0, 7.2, 2.0),
    "MM-B": (0.1, 0.7, 3.1, 6.4, 12.0, 13.9, 19.0),
    "linear": (14.1, 14.9, 27.3, 41.6, 55.3, 63.9, 63.6),
    "ENOT paper": (0.02, 0.03, 0.14, 0.24, 0.67, 0.56, 0.30),
}
SOLVERS = ("ott_enot", "ott ENOT")


def _optimizer(a):
  schedule = a.lr if a.constant_lr else optax.cosine_decay_schedule(
      a.lr, a.steps, alpha=a.lr_alpha)
  return optax.adam(schedule, b1=0.9, b2=a.b2)


def _networks(a):
  mlp = lambda: potentials.PotentialMLP(
      dim_hidden=list(a.widths), act_fn=jax.nn.elu
  )
  return mlp(), mlp()


def _iterators(pair, batch, seed):
  """Four infinite iterators of P and Q batches for ott's solver."""
  sample = jax.jit(pair.sampler(batch))
  key = jax.random.key(seed)

  def side(k, which):
    for i in itertools.count():
      yield sample(jax.random.fold_in(k, i))[which]

  keys = jax.random.split(key, 4)
  return (side(keys[0], 0), side(keys[1], 1), side(keys[2], 0),
          side(keys[3], 1))


def run(name, pair, a):
  """Train one solver; return (forward map, inverse map, wall s)."""
  neural_f, neural_g = _networks(a)
  start = time.perf_counter()
  if name == "ott_enot":
    solver = ott_enot.ExpectileNeuralDual(
        pair.dim, neural_f, neural_g, _optimizer(a), _optimizer(a),
        cost_fn=costs.SqEuclidean(), num_train_iters=a.steps,
        expectile=a.tau, expectile_loss_coef=a.lam,
        parameterisation=a.parameterisation, valid_freq=a.steps,
        log_freq=a.steps, rng=jax.random.key(a.seed), progress_bar=False,
        chunk_size=a.chunk, pushforward_loss_coef=a.pushforward,
    )
    pots = solver.fit(pair.sampler(a.batch), rng=jax.random.key(a.seed))
  else:
    solver = ott_enot_module.ExpectileNeuralDual(
        pair.dim, neural_f, neural_g, _optimizer(a), _optimizer(a),
        cost_fn=costs.SqEuclidean(), num_train_iters=a.steps,
        expectile=a.tau, expectile_loss_coef=a.lam, valid_freq=a.steps,
        log_freq=a.steps, rng=jax.random.key(a.seed),
    )
    with contextlib.redirect_stderr(io.StringIO()):  # ott's tqdm bar
      pots = solver(*_iterators(pair, a.batch, a.seed))
  fwd = jax.jit(lambda x: pots.transport(x))
  inv = jax.jit(lambda y: pots.transport(y, forward=False))
  jax.block_until_ready(fwd(pair.sample_p(jax.random.key(0), 8)))
  return fwd, inv, time.perf_counter() - start


def _mean_std(values, fmt):
  if len(values) == 1:
    return format(values[0], fmt)
  return (f"{format(np.mean(values), fmt)} ± "
          f"{format(np.std(values, ddof=1), fmt)}")



def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dims", type=int, nargs="+", default=list(DIMS),
                 choices=DIMS)
  p.add_argument("--steps", type=int, default=100_000)
  p.add_argument("--batch", type=int, default=1024)
  p.add_argument("--widths", type=int, nargs="+", default=[512, 512, 512])
  p.add_argument("--lr", type=float, default=5e-4)
  p.add_argument("--lr-alpha", type=float, default=1e-2,
                 help="final learning rate as a fraction of --lr (cosine)")
  p.add_argument("--constant-lr", action="store_true",
                 help="no cosine decay (ott's default optimiser)")
  p.add_argument("--b2", type=float, default=0.99, help="Adam's b2")
  p.add_argument("--tau", type=float, default=1.0, help="expectile")
  p.add_argument("--lam", type=float, default=0.5,
                 help="expectile_loss_coef")
  p.add_argument("--parameterisation", default="correlation",
                 choices=("correlation", "twist"))
  p.add_argument("--chunk", type=int, default=1000)
  p.add_argument("--pushforward", type=float, default=0.0,
                 help="ott_enot's pushforward_loss_coef (default 0)")
  p.add_argument("--seeds", type=int, default=1,
                 help="runs per row (seeds 0, ..., N - 1): mean ± std")
  p.add_argument("--eval-points", type=int, default=2 ** 14)
  p.add_argument("--solvers", nargs="+", default=["ott_enot"],
                 choices=SOLVERS)
  a = p.parse_args()

  dev = jax.devices()[0]
  print(f"device: {dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"commit {common.commit()}; steps {a.steps}; batch {a.batch}; MLP "
        f"{a.widths} ELU; pushforward {a.pushforward:g}; Adam(.9, {a.b2}) "
        f"lr {a.lr} "
        + ("constant" if a.constant_lr else f"cosine to {a.lr_alpha}x")
        + f"; tau {a.tau}; lambda {a.lam}; ott_enot {a.parameterisation}; "
        f"{a.seeds} seed(s)")
  names = list(PUBLISHED)
  print("\n| D | solver | fwd L2-UV % | inv L2-UV % | wall s | steps/s | "
        + " | ".join(names) + " |")
  print("|---|---|---|---|---|---|" + "---|" * len(names))
  for dim in a.dims:
    pair = w2bench.W2Pair.load(w2bench.path_of(DATA, dim))
    published = [PUBLISHED[n][DIMS.index(dim)] for n in names]
    for name in a.solvers:
      rows = []
      for seed in range(a.seeds):
        a.seed = seed
        fwd, inv, wall = run(name, pair, a)
        key = jax.random.key(10_000 * (seed + 1) + dim)
        rows.append((float(pair.l2uv(fwd, key, a.eval_points)),
                     float(pair.l2uv_inverse(inv, key, a.eval_points)), wall))
      l2, l2_inv, wall = (_mean_std([r[k] for r in rows], ".3f" if k < 2
                                    else ".1f") for k in range(3))
      rate = a.steps / np.mean([r[2] for r in rows])
      print(f"| {dim} | {name} | {l2} | {l2_inv} | {wall} | {rate:.0f} | "
            + " | ".join("-" if v is None else f"{v:g}" for v in published)
            + " |", flush=True)


if __name__ == "__main__":
  main()
