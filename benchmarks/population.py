"""Populations: does the ground-truth-free criterion choose well, and what
does one program save against separate runs?

    python benchmarks/population.py regret --problems gaussian w2-2 w2-4 \\
        w2-8 w2-16 mix-square_five-square_four mix-square_five-circle \\
        --seeds 2 --steps 5000
    python benchmarks/population.py speed --members 8 --dim 16 --steps 2000

``regret``: for each problem and seed, one population over the grid
tau in {0.9, 0.99} x lambda in {0.3, 1.0} x learning rate in {3e-4, 1e-3}
(8 members, the default optimiser's cosine schedule, its own networks'
seed) is trained with ``fit(sampler)``; each member's forward L2-UV against
the known map is computed, and the member chosen without ground truth (the
lowest ``fit / floor`` on 4,096 held-out points of each measure,
``PopulationResult.best_index(x, y)``) is compared with the best member
(regret = chosen - best L2-UV, in points of L2-UV %), the median member and
the worst. On ``mix-SOURCE-TARGET`` problems (ott's 2-D Gaussian mixtures,
no ground truth) a member's quality is its ``fit / floor`` on ``--eval-points``
points of each measure independent of the choosing ones.
Problems: ``gaussian`` (a 4-D pair of random Gaussians, map in
closed form from ott's ``Gaussian.transport``) and ``w2-D`` (the
Wasserstein-2 benchmark's pair in dimension D, ``../shared/w2bench`` or
``benchmarks/w2bench``).

``speed``: a population of N members against N separate solvers with the
same settings, trained one after the other in the same process (a sweep
written as a Python loop: separate solvers of equal settings share their
programs, so the loop compiles one program per distinct (tau, lambda, lr),
at most 8; the seeds differ only in the state), whole
runs with compile included, then the same population trained again (its
program compiled: steady state). Model-steps/s = members x steps / seconds.
"""
import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from ott.neural.networks import potentials as P
from ott.tools.gaussian_mixture import gaussian

import common
import ott_enot
from ott_enot.evaluation import w2bench
from ott_enot.solvers import population

HERE = pathlib.Path(__file__).resolve().parent
GRID = population.grid(
    expectile=[0.9, 0.99], expectile_loss_coef=[0.3, 1.0],
    learning_rate=[3e-4, 1e-3]
)



class GaussianProblem:
  """Two random Gaussians in dimension ``dim`` and ott's closed-form map."""

  def __init__(self, dim: int = 4, seed: int = 0):
    self.dim = dim
    self.source = gaussian.Gaussian.from_random(
        jax.random.key(seed), dim, stdev_mean=1.0, stdev_cov=0.5)
    self.target = gaussian.Gaussian.from_random(
        jax.random.key(seed + 1), dim, stdev_mean=1.0, stdev_cov=0.5)

  def sampler(self, batch: int):
    def sample(key):
      kx, ky = jax.random.split(key)
      return self.source.sample(kx, batch), self.target.sample(ky, batch)
    return sample

  def sample_p(self, key, n):
    return self.source.sample(key, n)

  def sample_q(self, key, n):
    return self.target.sample(key, n)

  def l2uv(self, transport, key, n):
    x = self.sample_p(key, n)
    y_true = self.source.transport(self.target, x)
    var = jnp.sum(jnp.var(self.sample_q(jax.random.fold_in(key, 1), n), 0))
    return 100 * jnp.mean(jnp.sum((transport(x) - y_true) ** 2, -1)) / var


class MixtureProblem:
  """ott's 2-D Gaussian mixtures (``mix-square_five-square_four``): no
  ground truth, so a member is judged by ``fit / floor`` on evaluation
  points independent of those that chose it. Training batches are drawn
  on the device from pools of ``pool`` points of each mixture."""

  dim = 2

  def __init__(self, source: str, target: str, pool: int = 20_000):
    self.source, self.target = source, target
    self.pool_x = jnp.asarray(common.mixture(source, pool, 0))
    self.pool_y = jnp.asarray(common.mixture(target, pool, 1))

  def sampler(self, batch: int):
    def sample(key):
      kx, ky = jax.random.split(key)
      ix = jax.random.randint(kx, (batch,), 0, self.pool_x.shape[0])
      iy = jax.random.randint(ky, (batch,), 0, self.pool_y.shape[0])
      return self.pool_x[ix], self.pool_y[iy]
    return sample

  def _seed(self, key) -> int:
    return 10_000 + int(jax.random.randint(key, (), 0, 2 ** 20))

  def sample_p(self, key, n):
    return jnp.asarray(common.mixture(self.source, n, self._seed(key)))

  def sample_q(self, key, n):
    return jnp.asarray(common.mixture(self.target, n, self._seed(key)))


def _problem(name: str):
  if name == "gaussian":
    return GaussianProblem()
  if name.startswith("mix-"):
    return MixtureProblem(*name.split("-")[1:])
  dim = int(name.split("-")[1])
  for root in (HERE / "w2bench", HERE.parent.parent / "shared" / "w2bench"):
    try:
      return w2bench.W2Pair.load(w2bench.path_of(root, dim))
    except (FileNotFoundError, OSError, ValueError):
      continue
  raise FileNotFoundError(f"no W2 benchmark pair of dimension {dim}")


def _nets(widths):
  mlp = lambda: P.PotentialMLP(dim_hidden=list(widths), act_fn=jax.nn.elu)
  return dict(neural_f=mlp(), neural_g=mlp())


def _quality(prob, result, key, n) -> np.ndarray:
  """``[members]``, lower is better: forward L2-UV % against the known map,
  or (no ground truth) ``fit / floor`` on ``n`` evaluation points of each
  measure independent of the points that chose the member."""
  if isinstance(prob, MixtureProblem):
    return result.evaluate(prob.sample_p(jax.random.fold_in(key, 3), n),
                           prob.sample_q(jax.random.fold_in(key, 4), n))
  return np.array([float(prob.l2uv(result.member(i).transport, key, n))
                   for i in range(len(result))])


def regret(a) -> None:
  print(f"device {jax.devices()[0].platform}; jax {jax.__version__}; commit "
        f"{common.commit()}; {len(GRID)} members (tau x lambda x lr); steps "
        f"{a.steps}; batch {a.batch}; MLP {a.widths}; {a.seeds} seed(s)\n")
  print("quality: forward L2-UV % (ground truth), or for `mix-` problems "
        "fit/floor on evaluation points independent of the choosing ones\n")
  print("| problem | seed | best quality (member) | chosen quality (member) | "
        "regret | chosen's rank | median | worst | chosen's criterion "
        "| population s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  summary = {}
  for name in a.problems:
    prob = _problem(name)
    for seed in range(a.seeds):
      members = [dict(m, seed=seed) for m in GRID]
      pop = ott_enot.ENOTPopulation(
          prob.dim, members=members, **_nets(a.widths),
          num_train_iters=a.steps, valid_freq=a.steps // 5,
          log_freq=a.steps, progress_bar=False, chunk_size=500,
          logging=True, parameterisation="twist")
      start = time.perf_counter()
      result = pop.fit(prob.sampler(a.batch), rng=jax.random.key(seed))
      seconds = time.perf_counter() - start
      key = jax.random.key(1000 + seed)
      x = prob.sample_p(jax.random.fold_in(key, 1), a.held_out)
      y = prob.sample_q(jax.random.fold_in(key, 2), a.held_out)
      crit = result.criterion(x, y)
      chosen = int(np.argmin(crit))
      quality = _quality(prob, result, key, a.eval_points)
      quality[result.diverged] = np.inf
      best = int(np.argmin(quality))
      rank = int(np.sum(quality < quality[chosen])) + 1
      summary.setdefault(name, []).append(
          (quality[chosen] - quality[best], quality[chosen] / quality[best],
           rank, quality[chosen], np.median(quality)))
      print(f"| {name} | {seed} | {quality[best]:.3f} ({best}) | "
            f"{quality[chosen]:.3f} ({chosen}) | "
            f"{quality[chosen] - quality[best]:.3f} | {rank} of {len(GRID)} | "
            f"{np.median(quality):.3f} | {np.max(quality):.3f} | "
            f"{crit[chosen]:.2f} | {seconds:.0f} |", flush=True)
  print("\nmembers: " + "; ".join(
      f"{i}: tau {m['expectile']}, lambda {m['expectile_loss_coef']}, lr "
      f"{m['learning_rate']:g}" for i, m in enumerate(GRID)))
  print("\n| problem | chosen quality (mean ± std) | median member | "
        "regret (mean ± std) | chosen / best | mean rank |")
  print("|---|---|---|---|---|---|")
  sd = lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0
  for name, rows in summary.items():
    r = np.array(rows)
    print(f"| {name} | {np.mean(r[:, 3]):.3f} ± {sd(r[:, 3]):.3f} | "
          f"{np.mean(r[:, 4]):.3f} | {np.mean(r[:, 0]):.3f} ± "
          f"{sd(r[:, 0]):.3f} | {np.mean(r[:, 1]):.2f} | "
          f"{np.mean(r[:, 2]):.1f} |")


def speed(a) -> None:
  prob = _problem(f"w2-{a.dim}") if a.dim in w2bench.PUBLISHED_DIMS else (
      GaussianProblem(a.dim))
  members = [dict(m, seed=i) for i, m in
             enumerate((GRID * (a.members // len(GRID) + 1))[:a.members])]
  shared = dict(num_train_iters=a.steps, valid_freq=a.steps,
                log_freq=a.steps, progress_bar=False, chunk_size=500,
                parameterisation="twist")
  dev = jax.devices()[0]
  print(f"device {dev.platform} {dev.device_kind}; jax {jax.__version__}; "
        f"commit {common.commit()}; d {prob.dim}; MLP {a.widths}; batch {a.batch}; "
        f"steps {a.steps}; {a.members} members\n")

  pop, sampler = [], prob.sampler(a.batch)  # one sampler: one program

  def population_run():
    start = time.perf_counter()
    if not pop:  # the second run trains the same population again
      pop.append(ott_enot.ENOTPopulation(prob.dim, members=members,
                                         **_nets(a.widths), **shared))
    result = pop[0].fit(sampler, rng=jax.random.key(0))
    jax.block_until_ready(result.member(0).transport(prob.sample_p(
        jax.random.key(0), 8)))
    return time.perf_counter() - start

  def separate_runs():
    start = time.perf_counter()
    for m in members:
      opt = lambda: ott_enot.default_optimizer(a.steps,
                                                      m["learning_rate"])
      solver = ott_enot.ENOTSolver(
          prob.dim, **_nets(a.widths), optimizer_f=opt(), optimizer_g=opt(),
          expectile=m["expectile"],
          expectile_loss_coef=m["expectile_loss_coef"],
          rng=jax.random.key(m["seed"]), **shared)
      pots = solver.fit(sampler, rng=jax.random.key(0))
      jax.block_until_ready(pots.transport(prob.sample_p(jax.random.key(0), 8)))
    return time.perf_counter() - start

  rows = [("population, first run (compile included)", population_run()),
          (f"{a.members} separate runs (compile included)", separate_runs()),
          ("population, second run (compiled)", population_run())]
  base = rows[1][1]
  print("| what | seconds | model-steps/s | x separate |")
  print("|---|---|---|---|")
  for what, sec in rows:
    print(f"| {what} | {sec:.1f} | {a.members * a.steps / sec:.0f} | "
          f"{base / sec:.2f} |")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="mode", required=True)
  r = sub.add_parser("regret")
  r.add_argument("--problems", nargs="+",
                 default=["gaussian", "w2-2", "w2-4", "w2-8", "w2-16"])
  r.add_argument("--seeds", type=int, default=2)
  r.add_argument("--steps", type=int, default=5000)
  r.add_argument("--batch", type=int, default=512)
  r.add_argument("--widths", type=int, nargs="+", default=[128, 128, 128])
  r.add_argument("--held-out", type=int, default=4096)
  r.add_argument("--eval-points", type=int, default=2 ** 14)
  s = sub.add_parser("speed")
  s.add_argument("--members", type=int, default=8)
  s.add_argument("--dim", type=int, default=16)
  s.add_argument("--steps", type=int, default=2000)
  s.add_argument("--batch", type=int, default=256)
  s.add_argument("--widths", type=int, nargs="+", default=[64, 64, 64, 64])
  a = p.parse_args()
  regret(a) if a.mode == "regret" else speed(a)


if __name__ == "__main__":
  main()
