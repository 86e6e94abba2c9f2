"""Time to a good map: wall-clock seconds, compile included, until the
forward map reaches a fixed quality; ott 0.6.0 against ott_enot, side by side.

    python benchmarks/time_to_accuracy.py                      # CPU defaults
    python benchmarks/time_to_accuracy.py --problems w2_8 --seeds 3 \\
        --batch 1024 --max-seconds 300                          # GPU

Problems and targets (``--problems``):

- ``gauss16``: two random Gaussians in d = 16 (ott's ``Gaussian.from_random``
  with keys 0 and 1, as ``benchmarks/quality.py``), forward L2-UV <= 1 %
  against the closed-form Monge map, on 4,096 fixed held-out points;
- ``mixtures``: ott's 2-D ``square_five`` -> ``square_four``, fit <= 2x and
  <= 1x the resampling floor (:func:`ott_enot.evaluation.metrics.fit_and_floor`,
  2,048 held-out points of each measure; a run goes on to the stricter);
- ``w2_8``: the W2 benchmark's pair in D = 8 (Mix3toMix10), forward L2-UV
  <= 2 % on 4,096 fixed points of P.

Solvers, each with its own defaults (networks, optimiser, tau, lambda; the
``--batch`` is the same for all):

- ``ott ENOT``: ott 0.6.0's ``ExpectileNeuralDual(dim)``, fed by iterators
  (ott's usage);
- ``ott W2``: ott's ``W2NeuralDual(dim)`` (ICNNs, its L-BFGS conjugate);
- ``ott_enot``: ``ott_enot.ENOTSolver(dim)``, ``fit(sampler)`` on the
  device (the same distributions: for the mixtures, ott's ``GaussianMixture``
  draws written as a pure sampler).

Every run is a whole run as a user meets it: a fresh solver (its programs
compiled for it: ``jax.clear_caches()`` first), the clock from building it.
The map is evaluated every ``--eval-every`` steps from the solvers'
callbacks (ott's is called after every step, ours after every chunk of
``chunk_size`` steps); the evaluation's own time is taken off the clock. A
run stops when it reaches its (strictest) target, or after ``--steps`` steps or
``--max-seconds``. Rows: seeds that reached the target, the median time and
steps to it (over the seeds that reached it; per seed in brackets), the best
quality reached, the steps/s of the run. The plot (``--plot``) shows quality
against wall time, one line per solver and seed.
"""
import argparse
import contextlib
import io
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ott import datasets
from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.neural.methods import neuraldual
from ott.tools.gaussian_mixture import gaussian

import common
import ott_enot
from ott_enot.evaluation import metrics, w2bench

DATA = pathlib.Path(__file__).resolve().parent / "w2bench"
SOLVERS = ("ott ENOT", "ott W2", "ott_enot")


class _Stop(Exception):
  """Raised from a callback to end a run (target reached, or out of time)."""


class Problem:
  """Data, a quality of a forward map (lower is better) and its target."""

  def __init__(self, name: str, seed: int, batch: int):
    self.name, self.batch, self.seed = name, batch, seed
    if name == "gauss16":
      self.dim, self.targets, self.unit = 16, (1.0,), "L2-UV %"
      src, tgt = (gaussian.Gaussian.from_random(jax.random.key(k), 16, 1.0, 0.5)
                  for k in (0, 1))
      x = src.sample(jax.random.key(10_000), 4096)
      true = src.transport(tgt, x)
      self.quality = lambda pot: float(metrics.l2_uv(pot.transport(x), true))
      # means and Cholesky factors computed once (``Gaussian.sample`` would
      # factor the covariance at every draw)
      (mx, lx), (my, ly) = [(g.loc, jnp.linalg.cholesky(g.covariance()))
                            for g in (src, tgt)]
      normal = lambda key, m, l: (
          jax.random.normal(key, (batch, 16)) @ l.T + m)
      self.sampler = lambda key: (
          normal(jax.random.fold_in(key, 0), mx, lx),
          normal(jax.random.fold_in(key, 1), my, ly))
    elif name == "w2_8":
      self.dim, self.targets, self.unit = 8, (2.0,), "L2-UV %"
      pair = w2bench.W2Pair.load(w2bench.path_of(DATA, 8))
      x = pair.sample_p(jax.random.key(10_000), 4096)
      true = pair.transport(x)
      self.quality = lambda pot: float(
          metrics.l2_uv(pot.transport(x), true, pair.var_q))
      self.sampler = pair.sampler(batch)
    elif name == "mixtures":
      self.dim, self.targets, self.unit = 2, (2.0, 1.0), "fit / floor"
      self.sampler = _mixture_sampler("square_five", "square_four", batch)
      _, valid, _ = datasets.create_gaussian_mixture_samplers(
          "square_five", "square_four", valid_batch_size=2048,
          rng=jax.random.key(10_000))
      x, y = next(valid.source_iter), next(valid.target_iter)

      def quality(pot):
        fit, floor = metrics.fit_and_floor(pot.transport(x), y)
        return float(fit / floor)

      self.quality = quality
    else:
      raise ValueError(f"unknown problem {name!r}")

  def iterators(self):
    """Four infinite iterators of batches (train source/target, valid)."""
    if self.name == "mixtures":
      train, valid, _ = datasets.create_gaussian_mixture_samplers(
          "square_five", "square_four", train_batch_size=self.batch,
          valid_batch_size=self.batch, rng=jax.random.key(self.seed))
      return [train.source_iter, train.target_iter, valid.source_iter,
              valid.target_iter]
    draw = jax.jit(self.sampler)
    key = jax.random.key(1000 + self.seed)

    def it(j):
      k = 0
      while True:
        k += 1
        yield draw(jax.random.fold_in(jax.random.fold_in(key, j), k))[j % 2]

    return [it(j) for j in range(4)]


def _mixture_sampler(source: str, target: str, batch: int):
  """ott's ``GaussianMixture`` draws (centres times 5, noise of std 0.25) as
  a pure ``sampler(key) -> (x, y)`` for ``fit`` on the device."""
  centres = [jnp.asarray(datasets.GaussianMixture(name, 1, jax.random.key(0))
                         .centers, jnp.float32) for name in (source, target)]

  def draw(key, c):
    k1, k2 = jax.random.split(key)
    means = jax.random.choice(k1, c, (batch,))
    return 5.0 * means + 0.25 * jax.random.normal(k2, (batch, 2))

  return lambda key: (draw(jax.random.fold_in(key, 0), centres[0]),
                      draw(jax.random.fold_in(key, 1), centres[1]))


class Clock:
  """Wall time since start, minus the time spent evaluating."""

  def __init__(self):
    self.start, self.paused = time.perf_counter(), 0.0

  def now(self) -> float:
    return time.perf_counter() - self.start - self.paused

  @contextlib.contextmanager
  def pause(self):
    t = time.perf_counter()
    try:
      yield
    finally:
      self.paused += time.perf_counter() - t


def run(solver_name: str, problem: Problem, steps: int, eval_every: int,
        max_seconds: float):
  """One whole run; ``(curve, steps done, seconds)``, ``curve`` a list of
  ``(seconds, steps, quality)``."""
  jax.clear_caches()
  curve, done, due, held = [], [0], [eval_every], [None]
  clock = Clock()

  def callback(step, pot):
    """Evaluate at the first callback at or after each multiple of
    ``eval_every`` steps (ott's: every step; ours: every chunk)."""
    done[0] = step + 1
    if step + 1 >= due[0] or step + 1 == steps:
      due[0] = ((step + 1) // eval_every + 1) * eval_every
      # ott's steps are dispatched asynchronously too: wait for them
      params = (pot.params_f if hasattr(pot, "params_f")
                else held[0].state_f.params)
      jax.block_until_ready(jax.tree.leaves(params))
      t = clock.now()
      with clock.pause():
        q = problem.quality(pot)
      curve.append((t, step + 1, q))
      if q <= min(problem.targets):
        raise _Stop()
    if clock.now() > max_seconds:
      raise _Stop()

  seed = problem.seed
  try:
    if solver_name == "ott_enot":
      solver = ott_enot.ENOTSolver(problem.dim, num_train_iters=steps,
                                   rng=jax.random.key(seed),
                                   progress_bar=False)
      solver.fit(problem.sampler, rng=jax.random.key(seed),
                 callback=callback)
    else:
      cls = (ott_enot_module.ExpectileNeuralDual if solver_name == "ott ENOT"
             else neuraldual.W2NeuralDual)
      solver = cls(problem.dim, num_train_iters=steps,
                   rng=jax.random.key(seed))
      held[0] = solver
      loaders = problem.iterators()
      with contextlib.redirect_stderr(io.StringIO()):  # ott's tqdm bars
        solver(*loaders, callback=callback)
  except _Stop:
    pass
  return curve, done[0], clock.now()


def _fmt_times(values):
  return ", ".join(f"{v:.0f}" for v in values)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--problems", nargs="+", default=["gauss16", "mixtures",
                                                   "w2_8"])
  p.add_argument("--solvers", nargs="+", default=list(SOLVERS),
                 choices=SOLVERS)
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20000)
  p.add_argument("--eval-every", type=int, default=250)
  p.add_argument("--max-seconds", type=float, default=120.0)
  p.add_argument("--plot", default="benchmarks/time_to_accuracy.png")
  a = p.parse_args()
  dev = jax.devices()[0]
  print(f"commit {common.commit()}; {dev.platform} {dev.device_kind}; jax "
        f"{jax.__version__}; batch {a.batch}; evaluation every "
        f"{a.eval_every} steps; at most {a.steps} steps / "
        f"{a.max_seconds:.0f} s per run; seeds {a.seeds}")
  print("\n| problem | target | solver | reached | time to target s | steps "
        "to target | best | steps/s |")
  print("|---|---|---|---|---|---|---|---|")
  curves = {}
  for name in a.problems:
    problems = [Problem(name, seed, a.batch) for seed in range(a.seeds)]
    for solver in a.solvers:
      rows = []
      for problem in problems:
        curve, steps, seconds = run(solver, problem, a.steps, a.eval_every,
                                    a.max_seconds)
        curves[(name, solver, problem.seed)] = curve
        hits = tuple(next(((t, k) for t, k, q in curve if q <= target), None)
                     for target in problem.targets)
        best = min((q for _, _, q in curve), default=float("nan"))
        rows.append((hits, best, steps / max(seconds, 1e-9)))
      for target, hits in zip(problems[0].targets, zip(*(h for h, _, _ in rows))):
        hits = [h for h in hits if h is not None]
        times = [t for t, _ in hits]
        ksteps = [k for _, k in hits]
        med_t = (f"{np.median(times):.1f} ({_fmt_times(times)})" if hits
                 else "-")
        med_k = f"{np.median(ksteps):.0f}" if hits else "-"
        best = ", ".join(f"{b:.3g}" for _, b, _ in rows)
        rate = np.median([r for _, _, r in rows])
        print(f"| {name} | {problems[0].unit} <= {target:g} | {solver} | "
              f"{len(hits)}/{len(rows)} | {med_t} | {med_k} | {best} | "
              f"{rate:.0f} |", flush=True)
  if a.plot:
    _plot(curves, a.problems, a.solvers, a.plot, a.batch)
    print(f"\nplot: {a.plot}")


def _plot(curves, problems, solvers, path, batch):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4),
                           squeeze=False)
  colours = dict(zip(SOLVERS, ("tab:orange", "tab:green", "tab:blue")))
  for ax, name in zip(axes[0], problems):
    for solver in solvers:
      for (pname, sname, seed), curve in curves.items():
        if pname != name or sname != solver or not curve:
          continue
        t, _, q = zip(*curve)
        ax.plot(t, q, color=colours[solver], marker=".", lw=1.2,
                label=solver if seed == 0 else None)
    unit = "fit / floor" if name == "mixtures" else "forward L2-UV %"
    for goal in {"gauss16": (1.0,), "w2_8": (2.0,), "mixtures": (2.0, 1.0)}[
        name]:
      ax.axhline(goal, color="k", ls=":", lw=1, label=f"target {goal:g}")
    ax.set_yscale("log")
    ax.set_xlabel("wall s (compile included, evaluation excluded)")
    ax.set_ylabel(unit)
    ax.set_title(f"{name} (batch {batch})")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


if __name__ == "__main__":
  main()
