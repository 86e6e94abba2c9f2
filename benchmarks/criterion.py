"""Does the fit see what a reader of the plot sees? The criterion's controls.

For a problem in clusters (ott's square_four mixture in 2-D; two caps on
the sphere S^2), a fresh target sample and the same sample with known
defects (`ott_enot.evaluation.problems.defects`: noise of half a cluster's
spread, 5 % of the points moved between clusters, 5 % moved to another
cluster, clusters contracted by 20 % or widened by 25 %) are scored against
an independent target sample by `ott_enot.evaluation.metrics.fit_report`:
the fit (local blur and reach) over its floor, the coarse fit (1e-2 x the
mean cost, balanced) over its floor, strays; mean ± std over trials (each
trial a new target sample and a new fresh sample). A criterion that works
scores the fresh sample ~1x and every defect clearly above.

  python benchmarks/criterion.py [--sizes 512 2048] [--trials 10]

`--sizes`: the target sample (halved inside, as validation does: 512 is a
validation batch of 512, whose halves are 256 points).
"""
import argparse
import time

import numpy as np

from ott_enot.evaluation import metrics, problems

import common


def _problem(name: str, n: int, seed: int) -> problems.Clusters:
  if name == "square_four":
    return problems.mixture("square_four", n, seed)
  centers = [problems.unit_vector(60, 0), problems.unit_vector(-60, 120)]
  return problems.caps(centers, n, spread=0.2, seed=seed)


def controls(name: str, n: int, trials: int) -> dict:
  """``{defect: {ratio name: [values over trials]}}``."""
  out = {}
  for trial in range(trials):
    target = _problem(name, n, 1000 + trial).points
    fresh = _problem(name, n, 2000 + trial)
    for defect, points in problems.defects(fresh, seed=trial).items():
      report = metrics.fit_report(points, target)
      row = out.setdefault(defect, {})
      for key, value in report.ratios().items():
        row.setdefault(key, []).append(float(value))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--problems", nargs="+",
                      default=["square_four", "caps"])
  args = parser.parse_args()
  print(f"commit {common.commit()}; mean ± std over {args.trials} trials")
  print("| problem | target sample | defect | fit / floor | coarse fit / "
        "floor | strays % |")
  print("|---|---|---|---|---|---|")
  for name in args.problems:
    for n in args.sizes:
      start = time.perf_counter()
      table = controls(name, n, args.trials)
      for defect, row in table.items():
        cell = lambda k, scale=1.0: (f"{scale * np.mean(row[k]):.2f} ± "
                                     f"{scale * np.std(row[k]):.2f}")
        print(f"| {name} | {n} | {defect} | {cell('fit/floor')} | "
              f"{cell('coarse fit/floor')} | {cell('strays', 100)} |", flush=True)
      print(f"<!-- {name} {n}: {time.perf_counter() - start:.0f} s -->")


if __name__ == "__main__":
  main()
