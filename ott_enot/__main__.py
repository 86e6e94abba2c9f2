"""Demo: ``python -m ott_enot`` (or ``ott-enot-demo``).

Trains ENOT on ott's "square_five -> square_four" Gaussian mixtures with the
solver's defaults but a short run's learning rate (12,000 steps of 256
points at a peak rate of 3e-3: about 60 s of training on two CPU cores), a
pushforward term of weight 1 (``pushforward_loss_coef``), the expectile
τ at 0.999 and networks
whose maps can jump where the OT map splits a cluster
(:class:`~ott_enot.model.networks.PiecewiseMLP`, three ReLU layers), prints
the learned OT cost beside ott's Sinkhorn estimate on held-out samples, the
fit of both maps beside the resampling floor, and what a reader of the plot
sees (strays between clusters, each cluster's spread and share of the mass)
beside a fresh sample's, and writes a PNG of both maps.
"""
import argparse
import time
from typing import Optional, Sequence

import jax
import numpy as np

from ott import datasets
from ott.geometry import costs, pointcloud
from ott.solvers import linear

import ott_enot
from ott_enot.evaluation import metrics, problems
from ott_enot.model import networks

__all__ = ["main", "demo_solver", "demo_networks"]

# The demo's budget, under 90 s of training on two CPU cores: twice the
# steps of the earlier demo (6,000 of 512) on half its batch, at three times
# the default learning rate (`benchmarks/mixtures.py`, 3 seeds: strays 5.6 %
# / 7.8 % against 9.6 % / 20.2 % for the earlier demo, in 1.36x its time).
DEMO_STEPS, DEMO_BATCH, DEMO_LEARNING_RATE = 12_000, 256, 3e-3
# The pushforward term's weight and the networks (`benchmarks/mixtures.py`,
# `--pushforward`, `--network`; 4 seeds at the demo's budget, strays forward
# / inverse): three ReLU layers, the first's hyperplanes through points of
# the data, then an ELU layer as in ott's MLP (4 x 128), so that the maps
# can jump (with many-way kinks where ReLU layers compose) across the lines
# where the OT map splits a cluster, with the pushforward term at 1 and tau
# 0.999 (below): 0.9 % / 3.2 %, at 20,000 steps 1.2 % / 1.9 %; two ReLU
# layers ('piecewise2'): 1.6 % / 4.1 %, at 20,000 steps 1.0 % / 2.35 %; one
# ReLU layer ('piecewise') with the pushforward term at 0.3 and tau 0.99:
# 1.4 % / 6.0 %; ott's ELU MLPs ('elu') at 0.3: 3.9 % / 8.3 %, at 0 (ENOT as
# published) 5.2 % / 7.5 %.
DEMO_PUSHFORWARD = 1.0
# The expectile tau (the solver's default 0.99): closer to 1, the regulariser
# holds the potentials nearer a c-conjugate pair, so that their levels from
# one cluster to the next, by which the other side's map splits a cluster,
# are right (two ReLU layers, 4 seeds at the demo's budget: the inverse's
# narrowest cluster 0.94x the target's spread and its mass error 2.2
# points, the sampling noise, against 0.79x and 4.6 at 0.99; at 20,000
# steps narrowest 0.90x against 0.78x).
DEMO_EXPECTILE = 0.999
DEMO_NETWORK = "piecewise3"
# each PiecewiseMLP choice's ReLU layers; "elu" is the solver's default
_RELU_LAYERS = {"piecewise3": 3, "piecewise2": 2, "piecewise": 1}
NETWORKS = (*_RELU_LAYERS, "elu")
_NETWORK_NAMES = {
    **{name: f"networks PiecewiseMLP 4x128 ({('one', 'two', 'three')[k - 1]}"
             f" ReLU layer{'s' * (k > 1)}, the first through data points, "
             f"then ELU)" for name, k in _RELU_LAYERS.items()},
    "elu": "networks ott's MLP 4x128 (ELU, the default)"}


def demo_networks(network: str, loaders: datasets.Dataset) -> dict:
  """The solver's ``neural_f`` and ``neural_g`` for ``network``:
  ``"piecewise3"``, ``"piecewise2"`` or ``"piecewise"``
  (:class:`~ott_enot.model.networks.PiecewiseMLP` of hidden widths
  ``[128] * 4`` with ``relu_layers`` 3, 2 or 1, ``neural_f`` anchored at 128
  source points drawn from ott's ``loaders.source_iter``, ``neural_g`` at
  128 target points from ``loaders.target_iter``) or ``"elu"`` (none given,
  nothing drawn: the solver's default, ott's ELU MLP of the same widths)."""
  if network not in NETWORKS:
    raise ValueError(f"`network` must be one of {NETWORKS}, got {network!r}.")
  if network == "elu":
    return {}
  n = networks.DEFAULT_HIDDEN[0]

  def sample(iterator):  # batches until there are n points
    points = [np.asarray(next(iterator))]
    while sum(len(p) for p in points) < n:
      points.append(np.asarray(next(iterator)))
    return np.concatenate(points)

  return networks.piecewise_networks(sample(loaders.source_iter),
                                     sample(loaders.target_iter),
                                     relu_layers=_RELU_LAYERS[network])


def demo_solver(dim: int, steps: int, rng: jax.Array, *,
                learning_rate: float = DEMO_LEARNING_RATE,
                pushforward: float = DEMO_PUSHFORWARD,
                expectile: float = DEMO_EXPECTILE,
                progress_bar: bool = False,
                **options) -> ott_enot.ExpectileNeuralDual:
  """The demo's solver: squared Euclidean cost, the default optimiser's
  schedule peaking at ``learning_rate`` for both networks, the pushforward
  term at ``pushforward``, the expectile τ at ``expectile``, the
  solver's other defaults (``options``: more solver arguments, e.g. the
  networks of :func:`demo_networks`). ``benchmarks/mixtures.py`` trains the
  same."""
  optimizer = lambda: ott_enot.default_optimizer(steps, learning_rate)
  return ott_enot.ExpectileNeuralDual(
      dim, optimizer_f=optimizer(), optimizer_g=optimizer(),
      cost_fn=costs.SqEuclidean(), num_train_iters=steps, rng=rng,
      progress_bar=progress_bar, pushforward_loss_coef=pushforward,
      expectile=expectile, **options)


def _sinkhorn_cost(x: jax.Array, y: jax.Array) -> float:
  geom = pointcloud.PointCloud(x, y, epsilon=1e-3, relative_epsilon="mean")
  return float(linear.solve(geom, max_iterations=5000).primal_cost)


def _samples(seed: int, n: int):
  """``n`` held-out points of each measure, and ``n`` more of each."""
  _, test, _ = datasets.create_gaussian_mixture_samplers(
      "square_five", "square_four", valid_batch_size=n,
      rng=jax.random.key(seed)
  )
  return [next(it) for it in (test.source_iter, test.target_iter,
                              test.source_iter, test.target_iter)]


def _evaluate(potentials, x, y, x2, y2):
  """The OT cost estimates, and each map's fit beside a fresh sample's."""
  tx, ty = potentials.transport(x), potentials.transport(y, forward=False)
  rows = [
      ("OT cost, ENOT dual estimate", float(potentials.distance(x, y))),
      ("OT cost, ENOT map E c(x, T(x))",
       float(np.mean(np.sum((np.asarray(tx) - np.asarray(x)) ** 2, -1)))),
      ("OT cost, Sinkhorn (eps 1e-3 x mean cost)", _sinkhorn_cost(x, y)),
  ]
  # each map against an independent sample of its target, whose halves give
  # the floors; the clusters' report against that sample too, and the
  # held-out sample of the map's target beside it (the shares' noise)
  fits = [(name, *_judge_map(mapped, target, held_out, clusters))
          for name, mapped, target, held_out, clusters in (
              ("forward T(x) -> y", tx, y2, y, "square_four"),
              ("inverse T^-1(y) -> x", ty, x2, x, "square_five"),
              ("no map: x -> y", x, y2, y, "square_four"))]
  return rows, fits


def _judge_map(mapped, target, held_out, mixture: str):
  """A map as a reader of the plot judges it: ``mapped`` against an
  independent sample ``target`` of the map's target, ott's mixture
  ``mixture``: the fit (:func:`metrics.fit_report`), the clusters
  (:func:`metrics.cluster_report` at the mixture's centres) and, for the
  shares' sampling noise, a held-out sample ``held_out`` of the same
  measure's clusters against ``target``.
  ``benchmarks/mixtures.py`` judges the same."""
  centers = problems.mixture_centers(mixture)
  return (metrics.fit_report(mapped, target),
          metrics.cluster_report(mapped, target, centers=centers),
          metrics.cluster_report(held_out, target, centers=centers))


def _plot(potentials, x, y, fits, out: str) -> None:
  """Both maps side by side, titled with their fits."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  k = min(512, len(x))
  fig, axes = plt.subplots(1, 2, figsize=(12, 6.4))
  for ax, forward, (_, report, cluster, _), title in zip(
      axes, (True, False), fits, ("forward map T: source -> target",
                                  "inverse map: target -> source")
  ):
    potentials.plot_ot_map(x[:k], y[:k], forward=forward, ax=ax)
    ax.set_title(
        f"{title}\nfit {float(report.fit / report.floor):.1f} x floor, "
        f"strays {100 * cluster.strays:.1f} % (fresh "
        f"{100 * cluster.strays_floor:.1f} %), clusters "
        f"{_spreads(cluster)} the target's spread", fontsize=10)
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)


def _print_fits(fits) -> None:
  print("Each map beside a fresh sample of its target (what a reader of the "
        "plot sees):")
  print("  fit: Sinkhorn divergence at the target's own local scale over "
        "its resampling floor")
  print("  coarse: the same at eps 1e-2 x the mean cost (blurs wider than a "
        "cluster)")
  print("  strays: points between clusters (> 3x a target point's median "
        "distance from every centre)")
  print("  spread: each cluster's standard deviation over the target's "
        "(the narrowest to the widest cluster)")
  print("  mass: the largest gap between a cluster's share of the points and "
        "of the target's, in percentage points (a held-out sample's beside "
        "it)")
  head = (f"  {'':22s} {'fit':>9s} {'coarse':>8s} {'strays':>8s} "
          f"{'(fresh)':>8s} {'spread':>11s} {'mass':>6s} {'(held-out)':>10s}")
  print(head)
  for name, report, cluster, floor in fits:
    ratios = report.ratios()
    print(f"  {name:22s} {float(ratios['fit/floor']):8.2f}x "
          f"{float(ratios['coarse fit/floor']):7.2f}x "
          f"{100 * cluster.strays:7.1f}% {100 * cluster.strays_floor:7.1f}% "
          f"{_spreads(cluster):>11s} {100 * cluster.share_error:6.1f} "
          f"{100 * floor.share_error:10.1f}")


def _spreads(cluster) -> str:
  """The narrowest and the widest cluster's spread ratios ("-" when a
  cluster got no point)."""
  spread = np.asarray(cluster.spread)
  if not np.isfinite(spread).all():
    return "-"
  return f"{spread.min():.2f}-{spread.max():.2f}x"


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Run the demo; returns the process exit code."""
  parser = argparse.ArgumentParser(
      prog="python -m ott_enot", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--iters", type=int, default=DEMO_STEPS,
                      help="training steps")
  parser.add_argument("--batch", type=int, default=DEMO_BATCH,
                      help="batch size")
  parser.add_argument("--learning-rate", type=float,
                      default=DEMO_LEARNING_RATE,
                      help="the default optimiser's peak learning rate "
                      "(the solver's default is 1e-3)")
  parser.add_argument("--pushforward", type=float, default=DEMO_PUSHFORWARD,
                      help="the pushforward term's weight "
                      "(pushforward_loss_coef; 0: ENOT as published, the "
                      "solver's default)")
  parser.add_argument("--expectile", type=float, default=DEMO_EXPECTILE,
                      help="the expectile tau (the solver's default is "
                      "0.99)")
  parser.add_argument("--network", choices=NETWORKS, default=DEMO_NETWORK,
                      help="the potentials' networks: 'piecewise3' "
                      "(PiecewiseMLP, three ReLU layers, the first through "
                      "data points: maps that can jump where the OT map "
                      "splits a cluster), 'piecewise2' (two ReLU layers), "
                      "'piecewise' (one: the earlier demo's with "
                      "--pushforward 0.3 --expectile 0.99) or 'elu' (the "
                      "solver's default, ott's ELU MLP)")
  parser.add_argument("--valid", type=int, default=2048,
                      help="validation batch (the returned map is the best "
                      "validation's)")
  parser.add_argument("--eval", type=int, default=2048, help="eval samples")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="enot_demo.png", help="PNG to write")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  rng_data, rng_solver = jax.random.split(jax.random.key(args.seed))
  train, valid, dim = datasets.create_gaussian_mixture_samplers(
      "square_five",
      "square_four",
      train_batch_size=args.batch,
      valid_batch_size=args.valid,
      rng=rng_data,
  )
  x, y, x2, y2 = _samples(args.seed + 1, args.eval)

  solver = demo_solver(dim, args.iters, rng_solver,
                       learning_rate=args.learning_rate,
                       pushforward=args.pushforward,
                       expectile=args.expectile,
                       progress_bar=not args.no_progress,
                       **demo_networks(args.network, valid))
  print(
      f"ENOT, squared Euclidean cost, {args.iters} steps, batch {args.batch}, "
      f"learning rate {args.learning_rate:g} (the default optimiser's "
      f"schedule), pushforward term {args.pushforward:g}, expectile "
      f"{args.expectile:g}, "
      f"{_NETWORK_NAMES[args.network]}, parameterisation "
      f"{solver.parameterisation!r}, the solver's other defaults"
  )
  start = time.perf_counter()
  potentials = solver(*train, *valid)
  seconds = time.perf_counter() - start

  rows, fits = _evaluate(potentials, x, y, x2, y2)
  print(f"trained in {seconds:.1f} s ({args.iters / seconds:.0f} steps/s, "
        f"compile included) on {jax.devices()[0].platform}")
  if solver.best is not None:
    print(f"returned the map of the best validation (fit/floor on "
          f"{args.valid} points): step {int(solver.best.step)}, "
          f"{float(solver.best.score):.2f}")
  print(f"evaluated on {args.eval} held-out samples of each measure:")
  width = max(len(name) for name, _ in rows)
  for name, value in rows:
    print(f"  {name:<{width}}  {value:9.4f}")
  _print_fits(fits)

  _plot(potentials, x, y, fits, args.out)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
