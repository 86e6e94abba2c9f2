"""Entropic plans against ground truth: warm start (ENOT) against cold start,
ENOT's potential alone and ENOT's map, on Gaussians (closed-form plan) and
on the entropic OT benchmark's construction (Gaussian mixtures whose plan is
a known mixture), built from our own seeds: no download.

Convention: c(x, y) = |x - y|^2 / 2 (``costs.PNormP(2)``), so epsilon is the
benchmark's. Metrics (%): the conditional cB W2^2-UVP (k draws per test x
against pi*(. | x), over Var(beta)) and the joint BW2^2-UVP (one draw per
test x against the plan's moments). Seconds are training wall time with
compilation, ENOT's pre-training included in the warm rows.

Rows:
  floor   exact draws of pi* (as many per test x): what sampling noise alone
          scores
  map     ENOT's deterministic map T(x) (the eps -> 0 limit; its draws have
          no spread)
  g-alone the warm start's energy before any entropic training (f = ENOT's g)
  warm    EntropicSolver(warm_start="train")
  cold    EntropicSolver(warm_start=None): chains from noise, 95 % replayed
          from the buffer (the authors' recipe), as many Langevin steps per
          training step as warm, given warm's whole wall time (ENOT's
          pre-training included) when --equal-time

population  (``--population``, Gaussians: their data do not depend on eps)
          one EntropicPopulation over every --eps (members seeded 0) from
          one ENOT warm start, against as many EntropicSolvers trained one
          after another from the same warm start: cB-UVP per eps, whole
          wall time of each (compilation included)

Usage:
  python benchmarks/entropic.py --dims 2 16 --eps 0.1 1 10 --seeds 0 1
  python benchmarks/entropic.py --population --dims 2 16 --eps 0.1 1 10
  python benchmarks/entropic.py --problems mixture --dims 2 --eps 0.1 \\
      --curve --equal-time --curve-figure curves.png
      # accuracy against wall time: warm's clock includes ENOT's
      # pre-training (first point: its g alone), cold's starts at 0
"""
import argparse
import time

import jax
import numpy as np
from ott.geometry import costs

import ott_enot
from ott_enot.evaluation import entropic as truth

COST = costs.PNormP(2)


class GaussianProblem:
  """N(0, A) -> N(m, B), random covariances from a seed."""

  def __init__(self, dim, epsilon, seed):
    rng = np.random.default_rng(1000 + seed)
    spd = lambda low, high: truth._random_spd(rng, dim, low, high)  # pylint: disable=protected-access
    self.a, self.A = np.zeros(dim), spd(0.3, 2.0)
    self.b, self.B = rng.normal(size=dim), spd(0.2, 1.5)
    self.plan = truth.gaussian_entropic_plan(self.a, self.A, self.b, self.B,
                                             epsilon)
    self.dim = dim

  def sample_source(self, rng, n):
    return self.a + rng.normal(size=(n, self.dim)) @ np.linalg.cholesky(
        self.A).T

  def sample_conditional(self, rng, x):
    means, covs = self.plan.conditional_moments(x)
    return means + rng.normal(size=x.shape) @ np.linalg.cholesky(covs[0]).T

  def sample_target(self, rng, n):
    return self.b + rng.normal(size=(n, self.dim)) @ np.linalg.cholesky(
        self.B).T

  def conditional_moments(self, x):
    return self.plan.conditional_moments(x)

  def target_variance(self):
    return self.plan.target_variance()

  def plan_moments(self):
    return self.plan.mean, self.plan.cov


class MixtureProblem:
  """The benchmark's construction (``evaluation.entropic.MixturePlan``)."""

  def __init__(self, dim, epsilon, seed):
    self.mix = truth.MixturePlan(dim, epsilon, seed=seed)
    self.dim = dim

  def sample_source(self, rng, n):
    return self.mix.sample_source(rng, n)

  def sample_target(self, rng, n):
    return self.mix.sample_target(rng, n)

  def sample_conditional(self, rng, x):
    return self.mix.sample_conditional(rng, x)

  def conditional_moments(self, x):
    return self.mix.conditional_moments(x)

  def target_variance(self):
    return self.mix.target_variance()

  def plan_moments(self):
    rng = np.random.default_rng(4321)
    x = self.mix.sample_source(rng, 200_000)
    y = self.mix.sample_conditional(rng, x)
    joint = np.concatenate([x, y], 1)
    return joint.mean(0), np.cov(joint.T)


PROBLEMS = {"gaussian": GaussianProblem, "mixture": MixtureProblem}


def scores(problem, potentials, test_x, joint_x, num_samples, rng):
  """(cB-UVP %, joint BW-UVP %): ``num_samples`` draws at each test point,
  one draw at each of the ``joint_x``."""
  draws = np.asarray(potentials.sample(test_x, num_samples, rng))
  means, covs = problem.conditional_moments(test_x)
  cond = truth.conditional_bw_uvp(draws, means, covs,
                                  problem.target_variance())
  pairs = np.asarray(potentials.sample(joint_x, 1, rng))[:, 0]
  joint = truth.joint_bw_uvp(joint_x, pairs, *problem.plan_moments())
  return cond, joint


def floor_scores(problem, test_x, joint_x, num_samples):
  """The scores of exact draws of pi* (the sampling noise's floor)."""
  rng = np.random.default_rng(99)
  draws = problem.sample_conditional(
      rng, np.repeat(test_x, num_samples, 0)).reshape(
          len(test_x), num_samples, -1)
  means, covs = problem.conditional_moments(test_x)
  cond = truth.conditional_bw_uvp(draws, means, covs,
                                  problem.target_variance())
  joint = truth.joint_bw_uvp(joint_x, problem.sample_conditional(rng, joint_x),
                             *problem.plan_moments())
  return cond, joint


def map_scores(problem, enot, test_x, joint_x):
  mapped = np.asarray(enot.transport(test_x))[:, None]
  means, covs = problem.conditional_moments(test_x)
  cond = truth.conditional_bw_uvp(
      np.concatenate([mapped, mapped + 1e-6], 1), means, covs,
      problem.target_variance())
  joint = truth.joint_bw_uvp(joint_x, np.asarray(enot.transport(joint_x)),
                             *problem.plan_moments())
  return cond, joint


def run(args, name, dim, eps, seed):
  problem = PROBLEMS[name](dim, eps, seed)
  rng = np.random.default_rng(seed)
  n = 20_000
  x = problem.sample_source(rng, n).astype(np.float32)
  y = problem.sample_target(rng, n).astype(np.float32)
  test_x = problem.sample_source(rng, args.test_points).astype(np.float32)
  joint_x = problem.sample_source(rng, args.joint_points).astype(np.float32)
  key = jax.random.key(seed)
  rows = []
  common = dict(cost_fn=COST, num_train_iters=args.steps,
                langevin_steps=args.langevin_steps, valid_freq=args.steps,
                log_freq=args.steps, progress_bar=False, rng=key,
                sample_steps=args.sample_steps,
                chunk_size=args.curve_every if args.curve else 100)

  def score(potentials):
    return scores(problem, potentials, test_x, joint_x, args.samples,
                  jax.random.key(7))

  curves = {}

  def timed_fit(solver, label, start=None):
    """Fit, timing the training alone (scoring excluded); ``start`` =
    (seconds already spent, score then) begins the curve there (warm: ENOT's
    pre-training and its g alone)."""
    curve = [] if start is None else [(0, *start)]
    clock = {"train": 0.0 if start is None else start[0],
             "mark": time.perf_counter()}

    def callback(step, potentials):
      # chunks end after steps 0, curve_every, 2 curve_every, ... and the
      # last (the engine's plan_chunks): a point after each but the first
      if args.curve and step > 0:
        clock["train"] += time.perf_counter() - clock["mark"]
        curve.append((step + 1, clock["train"], score(potentials)[0]))
        clock["mark"] = time.perf_counter()

    potentials = solver.fit(x, y, batch_size=args.batch, rng=key,
                            callback=callback)
    clock["train"] += time.perf_counter() - clock["mark"]
    curves[label] = curve
    return potentials, clock["train"] - (0.0 if start is None else start[0])

  rows.append(("floor", *floor_scores(problem, test_x, joint_x,
                                      args.samples), 0.0))
  warm = ott_enot.EntropicSolver(
      dim, eps, warm_start="train",
      warm_start_options=dict(num_train_iters=args.enot_steps,
                              progress_bar=False), **common)
  start = time.perf_counter()
  enot = warm.warm_start_solver.fit(x, y, batch_size=args.batch, rng=key)
  enot_seconds = time.perf_counter() - start
  warm.set_warm_start(enot)
  rows.append(("map", *map_scores(problem, enot, test_x, joint_x),
               enot_seconds))
  untrained = warm.method.result(warm.state)
  g_alone = score(untrained)
  rows.append(("g-alone", *g_alone, enot_seconds))
  potentials, seconds = timed_fit(warm, "warm", (enot_seconds, g_alone[0]))
  warm_seconds = enot_seconds + seconds
  rows.append(("warm", *score(potentials), warm_seconds))
  cold_steps = args.steps
  if args.equal_time:
    per_step = seconds / args.steps
    cold_steps = int(round(warm_seconds / per_step / 100.0)) * 100
  cold = ott_enot.EntropicSolver(
      dim, eps, warm_start=None, replay=0.95,
      **dict(common, num_train_iters=cold_steps, valid_freq=cold_steps,
             log_freq=cold_steps))
  potentials, seconds = timed_fit(cold, "cold")
  rows.append((f"cold ({cold_steps} steps)", *score(potentials), seconds))
  return rows, curves


def population_rows(args, dim, seed):
  """(eps, population cB-UVP, alone cB-UVP) per eps and the two wall
  times: one EntropicPopulation over args.eps against one EntropicSolver
  per eps, the same ENOT warm start."""
  problems = {eps: GaussianProblem(dim, eps, seed) for eps in args.eps}
  first = problems[args.eps[0]]  # the measures do not depend on eps
  rng = np.random.default_rng(seed)
  x = first.sample_source(rng, 20_000).astype(np.float32)
  y = first.sample_target(rng, 20_000).astype(np.float32)
  test_x = first.sample_source(rng, args.test_points).astype(np.float32)
  key = jax.random.key(seed)
  enot = ott_enot.ENOTSolver(dim, cost_fn=COST,
                             num_train_iters=args.enot_steps,
                             progress_bar=False, rng=key).fit(
                                 x, y, batch_size=args.batch)
  common = dict(cost_fn=COST, warm_start=enot, num_train_iters=args.steps,
                langevin_steps=args.langevin_steps, valid_freq=args.steps,
                log_freq=args.steps, progress_bar=False,
                sample_steps=args.sample_steps)

  def cond(problem, potentials):
    draws = np.asarray(potentials.sample(test_x, args.samples,
                                         jax.random.key(7)))
    means, covs = problem.conditional_moments(test_x)
    return truth.conditional_bw_uvp(draws, means, covs,
                                    problem.target_variance())

  start = time.perf_counter()
  result = ott_enot.EntropicPopulation(
      dim, args.eps[0], members=ott_enot.solvers.population.grid(
          epsilon=list(args.eps), seed=[seed]), rng=key, **common).fit(
              x, y, batch_size=args.batch)
  jax.block_until_ready(result.member(0).params)
  population_seconds = time.perf_counter() - start
  start = time.perf_counter()
  alone = [ott_enot.EntropicSolver(dim, eps, rng=jax.random.key(seed),
                                   **common).fit(x, y, batch_size=args.batch)
           for eps in args.eps]
  jax.block_until_ready(alone[-1].params)
  alone_seconds = time.perf_counter() - start
  rows = [(eps, cond(problems[eps], result.member(i)),
           cond(problems[eps], alone[i])) for i, eps in enumerate(args.eps)]
  return rows, population_seconds, alone_seconds


def main_population(args):
  print("| D | eps | population cB-UVP % | alone cB-UVP % | seeds |")
  print("|---|---|---|---|---|")
  for dim in args.dims:
    per_eps, times = {}, []
    for seed in args.seeds:
      rows, pop_s, alone_s = population_rows(args, dim, seed)
      times.append((pop_s, alone_s))
      print(f"  D={dim} seed {seed}: population {pop_s:.1f} s, "
            f"{len(args.eps)} solvers {alone_s:.1f} s; " + ", ".join(
                f"eps {e:g}: {p:.2f}/{a:.2f}" for e, p, a in rows),
            flush=True)
      for eps, pop, alone in rows:
        per_eps.setdefault(eps, []).append((pop, alone))
    for eps, values in per_eps.items():
      v = np.asarray(values)
      print(f"| {dim} | {eps:g} | {v[:, 0].mean():.2f} ± {v[:, 0].std():.2f}"
            f" | {v[:, 1].mean():.2f} ± {v[:, 1].std():.2f} | {len(v)} |")
    t = np.asarray(times)
    print(f"| {dim} | all | {t[:, 0].mean():.1f} s (one program) | "
          f"{t[:, 1].mean():.1f} s ({len(args.eps)} solvers) | {len(t)} |",
          flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--problems", nargs="+", default=["gaussian",
                                                        "mixture"])
  parser.add_argument("--dims", nargs="+", type=int, default=[2, 16])
  parser.add_argument("--eps", nargs="+", type=float, default=[0.1, 1.0,
                                                              10.0])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0])
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--enot-steps", type=int, default=3000)
  parser.add_argument("--langevin-steps", type=int, default=10)
  parser.add_argument("--sample-steps", type=int, default=200)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--test-points", type=int, default=50)
  parser.add_argument("--samples", type=int, default=200)
  parser.add_argument("--joint-points", type=int, default=2000)
  parser.add_argument("--equal-time", action="store_true",
                      help="give cold the warm rows' wall time in steps")
  parser.add_argument("--curve", action="store_true",
                      help="cB-UVP against training time, every "
                           "--curve-every steps")
  parser.add_argument("--curve-every", type=int, default=100)
  parser.add_argument("--curve-figure", default=None,
                      help="with --curve: draw the curves in this PNG")
  parser.add_argument("--population", action="store_true",
                      help="one EntropicPopulation over --eps against one "
                           "solver per eps (Gaussians)")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; steps "
        f"{args.steps}, ENOT {args.enot_steps}, Langevin {args.langevin_steps}"
        f" per step, sampling {args.sample_steps} MALA steps, "
        f"{args.test_points} test x x {args.samples} draws")
  if args.population:
    main_population(args)
    return
  print("| problem | D | eps | method | cB-UVP % | joint BW-UVP % | seconds |"
        " seeds |")
  print("|---|---|---|---|---|---|---|---|")
  figures = []
  for name in args.problems:
    for dim in args.dims:
      for eps in args.eps:
        results, all_curves = {}, []
        for seed in args.seeds:
          rows, curves = run(args, name, dim, eps, seed)
          all_curves.append(curves)
          # each seed's rows as it ends: a run stopped by a time limit
          # still says what it measured
          print(f"  {name} D={dim} eps={eps:g} seed {seed}: " + ", ".join(
              f"{method} {cond:.2f}/{joint:.2f} ({seconds:.0f} s)"
              for method, cond, joint, seconds in rows), flush=True)
          for method, cond, joint, seconds in rows:
            results.setdefault(method.split(" (")[0], []).append(
                (method, cond, joint, seconds))
        for method, values in results.items():
          cond = np.array([v[1] for v in values])
          joint = np.array([v[2] for v in values])
          secs = np.array([v[3] for v in values])
          print(f"| {name} | {dim} | {eps:g} | {values[0][0]} | "
                f"{cond.mean():.2f} ± {cond.std():.2f} | {joint.mean():.2f} ± "
                f"{joint.std():.2f} | {secs.mean():.0f} | {len(values)} |",
                flush=True)
        if args.curve:
          for i, curves in enumerate(all_curves):
            for label, curve in curves.items():
              points = ", ".join(f"{s}: {t:.0f}s {v:.2f}%"
                                 for s, t, v in curve)
              print(f"  curve {name} D={dim} eps={eps:g} seed "
                    f"{args.seeds[i]} {label}: {points}", flush=True)
          figures.append((f"{name}, D = {dim}, eps = {eps:g}", all_curves))
  if args.curve and args.curve_figure:
    plot_curves(figures, args.seeds, args.curve_figure)


def plot_curves(figures, seeds, path):
  """cB-UVP against wall time, one panel per (problem, D, eps): warm solid
  (from the end of ENOT's pre-training, at its g alone), cold dashed."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 4),
                           squeeze=False)
  for ax, (title, all_curves) in zip(axes[0], figures):
    for i, curves in enumerate(all_curves):
      for label, style in (("warm", "-"), ("cold", "--")):
        points = np.asarray(curves.get(label, []), float)
        if len(points):
          ax.plot(points[:, 1], points[:, 2], style, marker=".",
                  color=f"C{i}", label=f"{label}, seed {seeds[i]}")
    ax.set_yscale("log")
    ax.set_xlabel("wall time, s (compilation and ENOT's pre-training "
                  "included)")
    ax.set_ylabel("cB-UVP, %")
    ax.set_title(title)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  print(f"curves drawn in {path}")


if __name__ == "__main__":
  main()
