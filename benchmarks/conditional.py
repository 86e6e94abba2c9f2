"""Conditional maps T(x | c): seen and unseen conditions against ground truth.

    python benchmarks/conditional.py --families gaussian w2-8 --seeds 3 \\
        --steps 4000 --cond-steps 8000

Two families with known maps, no download:

``gaussian``: source N(0, I_4), target N(m(c), S(c)) with a mean moving along
a curve and a covariance rotating and stretching smoothly with the condition
c (one number); the OT map at every c is ott's closed-form
``Gaussian.transport``. Trained on c in {0, 0.25, 0.5, 0.75, 1}; unseen:
between the grid (0.125, 0.375, 0.625, 0.875) and beyond it (-0.125,
1.125), reported apart.

``w2-D``: McCann's interpolation on the Wasserstein-2 benchmark's pair in
dimension D: T_c = (1 - c) id + c T* is exactly the OT map from P to
T_c # P (the gradient of the convex (1 - c)|x|^2 / 2 + c psi). Trained on c in
{0, 0.25, 0.75, 1}; unseen: 0.5.

For each seed: one conditional model (``ConditionalExpectileNeuralDual``,
``fit(sampler)``, rows of the trained conditions drawn uniformly) for
``--cond-steps`` steps, and one unconditional ENOT per trained condition
for ``--steps`` steps each (the *ceiling* on seen conditions). On an unseen
condition the *floor* is the nearest trained condition's own map. L2-UV (%)
= 100 E|T(x) - T_c(x)|^2 / tr Cov(T_c # P) on ``--eval-points`` fresh points.
Times are whole runs, compile included, in this process, one after the other.
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
from ott_enot.evaluation import metrics, w2bench

HERE = pathlib.Path(__file__).resolve().parent


class GaussianFamily:
  """Source N(0, I_d); target N(m(c), S(c)), S(c) = R(c) diag(s(c))^2 R(c)^T.

  m(c) = (2 cos(pi c / 2), 2 sin(pi c / 2), c, 0, ...), R(c) a rotation by
  pi c / 3 in the first two coordinates, s(c) = (1 + 0.5 c, 0.6, 1 - 0.3 c,
  1, ...).
  """
  seen = (0.0, 0.25, 0.5, 0.75, 1.0)
  unseen = (0.125, 0.375, 0.625, 0.875, -0.125, 1.125)

  def __init__(self, dim: int = 4):
    self.dim = dim

  def params(self, c):
    """Mean ``[d]`` and Cholesky factor ``[d, d]`` of the target at ``c``."""
    d = self.dim
    mean = jnp.zeros(d).at[0].set(2 * jnp.cos(jnp.pi * c / 2)).at[1].set(
        2 * jnp.sin(jnp.pi * c / 2)).at[2].set(c)
    t = jnp.pi * c / 3
    rot = jnp.eye(d).at[0, 0].set(jnp.cos(t)).at[0, 1].set(-jnp.sin(t)).at[
        1, 0].set(jnp.sin(t)).at[1, 1].set(jnp.cos(t))
    scale = jnp.ones(d).at[0].set(1 + 0.5 * c).at[1].set(0.6).at[2].set(
        1 - 0.3 * c)
    return mean, rot * scale[None, :]

  def sample_x(self, key, n):
    return jax.random.normal(key, (n, self.dim))

  def sample_y(self, key, c):
    """One target point per row of ``c`` ``[n]``."""
    mean, chol = jax.vmap(self.params)(c)
    z = jax.random.normal(key, (c.shape[0], self.dim))
    return mean + jnp.einsum("nij,nj->ni", chol, z)

  def true_map(self, c, x):
    mean, chol = self.params(jnp.asarray(c, jnp.float32))
    src = gaussian.Gaussian.from_mean_and_cov(
        jnp.zeros(self.dim), jnp.eye(self.dim))
    tgt = gaussian.Gaussian.from_mean_and_cov(mean, chol @ chol.T)
    return src.transport(tgt, x)

  def target_var(self, c):
    _, chol = self.params(jnp.asarray(c, jnp.float32))
    return float(jnp.trace(chol @ chol.T))


class McCannFamily:
  """T_c = (1 - c) id + c T* on the W2 benchmark pair of dimension ``dim``."""
  seen = (0.0, 0.25, 0.75, 1.0)
  unseen = (0.5,)

  def __init__(self, dim: int):
    self.pair = w2bench.W2Pair.load(_w2_path(dim))
    self.dim = dim
    x = self.pair.sample_p(jax.random.key(123), 2 ** 14)
    self._x, self._tx = x, self.pair.transport(x)

  def sample_x(self, key, n):
    return self.pair.sample_p(key, n)

  def sample_y(self, key, c):
    x = self.pair.sample_p(key, c.shape[0])
    return (1 - c[:, None]) * x + c[:, None] * self.pair.transport(x)

  def true_map(self, c, x):
    return (1 - c) * x + c * self.pair.transport(x)

  def target_var(self, c):
    y = (1 - c) * self._x + c * self._tx
    return float(jnp.sum(jnp.var(y, axis=0)))


def _w2_path(dim):
  for root in (HERE.parent.parent / "shared" / "w2bench", HERE / "w2bench"):
    path = w2bench.path_of(root, dim)
    if pathlib.Path(path).exists():
      return path
  raise FileNotFoundError(f"No W2 benchmark pair of dimension {dim}.")


def conditional_sampler(family, batch):
  seen = jnp.asarray(family.seen, jnp.float32)

  def sample(key):
    kc, kx, ky = jax.random.split(key, 3)
    c = seen[jax.random.randint(kc, (batch,), 0, seen.shape[0])]
    return family.sample_x(kx, batch), family.sample_y(ky, c), c[:, None]

  return sample


def fixed_sampler(family, c, batch):

  def sample(key):
    kx, ky = jax.random.split(key)
    return family.sample_x(kx, batch), family.sample_y(
        ky, jnp.full((batch,), c, jnp.float32))

  return sample


def l2uv(family, transport, c, key, n):
  x = family.sample_x(key, n)
  return float(metrics.l2_uv(transport(x), family.true_map(c, x),
                             family.target_var(c)))


def run(name, family, seed, args):
  common_kw = dict(
      neural_f=P.MLP(dim_hidden=args.widths + [1], act_fn=jax.nn.elu),
      neural_g=P.MLP(dim_hidden=args.widths + [1], act_fn=jax.nn.elu),
      valid_freq=10 ** 9, log_freq=10 ** 9, progress_bar=False,
      rng=jax.random.key(seed),
  )
  t0 = time.perf_counter()
  solver = ott_enot.ConditionalExpectileNeuralDual(
      family.dim, dim_cond=1, num_train_iters=args.cond_steps, **common_kw)
  cond = solver.fit(conditional_sampler(family, args.batch),
                    rng=jax.random.key(seed + 1000))
  jax.block_until_ready(cond.params_f)
  t_cond = time.perf_counter() - t0
  t0 = time.perf_counter()
  alone = {}
  for c in family.seen:
    s = ott_enot.ExpectileNeuralDual(family.dim, num_train_iters=args.steps,
                                     **common_kw)
    alone[c] = s.fit(fixed_sampler(family, c, args.batch),
                     rng=jax.random.key(seed + 1000))
    jax.block_until_ready(alone[c].params_f)
  t_alone = time.perf_counter() - t0
  key = jax.random.key(seed + 2000)
  rows = []
  for c in family.seen + family.unseen:
    k = jax.random.fold_in(key, int(round(c * 1000)) + 5000)
    conditional = l2uv(family, lambda x: cond.transport(x, condition=[c]),
                       c, k, args.eval_points)
    nearest = min(family.seen, key=lambda s: (abs(s - c), s))
    other = l2uv(family, alone[nearest].transport, c, k, args.eval_points)
    kind = "seen" if c in family.seen else (
        "unseen, between" if min(family.seen) < c < max(family.seen) else
        "unseen, beyond")
    rows.append(dict(problem=name, seed=seed, c=c, seen=c in family.seen,
                     kind=kind, conditional=conditional, alone=other,
                     nearest=nearest))
  return rows, t_cond, t_alone


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--families", nargs="+", default=["gaussian", "w2-8"])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=4000,
                      help="steps of each per-condition model")
  parser.add_argument("--cond-steps", type=int, default=8000,
                      help="steps of the conditional model")
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--widths", type=int, nargs="+", default=[64, 64, 64])
  parser.add_argument("--eval-points", type=int, default=8192)
  args = parser.parse_args()
  print(f"# commit {common.commit()}, devices {jax.devices()}, args {vars(args)}")
  all_rows, times = [], []
  for name in args.families:
    family = GaussianFamily() if name == "gaussian" else McCannFamily(
        int(name.split("-")[1]))
    for seed in range(args.seeds):
      rows, t_cond, t_alone = run(name, family, seed, args)
      all_rows += rows
      times.append((name, seed, t_cond, t_alone))
      for r in rows:
        print(f"{r['problem']:9s} seed {seed} c={r['c']:+.3f} "
              f"{'seen  ' if r['seen'] else 'unseen'} conditional "
              f"{r['conditional']:7.3f}  "
              f"{'alone' if r['seen'] else 'nearest (c=%.3f)' % r['nearest']}"
              f" {r['alone']:7.3f}", flush=True)
      print(f"# {name} seed {seed}: conditional {t_cond:.1f} s, "
            f"{len(family.seen)} per-condition runs {t_alone:.1f} s",
            flush=True)
  print()
  print("| problem | conditions | conditional L2-UV % | ceiling: alone on seen "
        "c, L2-UV % | floor: nearest seen c's map, L2-UV % | conditional / "
        "ceiling | conditional / floor |")
  print("|---|---|---|---|---|---|---|")
  for name in args.families:
    ceiling = per_seed_seen(all_rows, name, args.seeds)
    for kind in ("seen", "unseen, between", "unseen, beyond"):
      sel = [r for r in all_rows if r["problem"] == name and
             r["kind"] == kind]
      if not sel:
        continue
      per_seed = lambda key: np.asarray([
          np.mean([r[key] for r in sel if r["seed"] == s])
          for s in range(args.seeds)])
      cond, other = per_seed("conditional"), per_seed("alone")
      floor = "" if kind == "seen" else f"{other.mean():.3f} ± {other.std():.3f}"
      ratio = "" if kind == "seen" else f"{(cond / other).mean():.2f}"
      print(f"| {name} | {kind} ({len(sel) // args.seeds}) | "
            f"{cond.mean():.3f} ± {cond.std():.3f} | "
            f"{ceiling.mean():.3f} ± {ceiling.std():.3f} | {floor} | "
            f"{(cond / ceiling).mean():.2f} | {ratio} |")
  print()
  print("| problem | conditional model, s | per-condition models, s (all) |")
  print("|---|---|---|")
  for name in args.families:
    t = [x for x in times if x[0] == name]
    print(f"| {name} | {np.mean([x[2] for x in t]):.1f} | "
          f"{np.mean([x[3] for x in t]):.1f} |")


def per_seed_seen(rows, name, seeds):
  """Mean per-condition (ceiling) L2-UV over the seen conditions, per seed."""
  return np.asarray([
      np.mean([r["alone"] for r in rows if r["problem"] == name and
               r["seen"] and r["seed"] == s]) for s in range(seeds)])


if __name__ == "__main__":
  main()
