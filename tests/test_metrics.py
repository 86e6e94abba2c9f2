"""The fit sees what a reader of the plot sees: its controls.

A fresh target sample scores about its floor; the same sample with noise of
half a cluster's spread, 5 % of its points moved between clusters, clusters
contracted by 20 % or widened by 25 % scores clearly above
(``benchmarks/criterion.py`` measures mean ± std over many trials, and the
coarse fit of ott-enot 0.1 beside it, which cannot tell them apart; here a
few trials of 2,048-point samples, whose halves are 1,024 points).
"""
import jax.numpy as jnp
import numpy as np
import pytest

from ott_enot.evaluation import metrics, problems

from conftest import optimised  # noqa: E402

TRIALS, N = 3, 2048


@pytest.fixture(scope="module")
def controls():
  """``{defect: {"fit/floor": [trials], "strays": [trials]}}`` on ott's
  square_four mixture; a trial's defects are scored at once, as the members
  of a population are (one target sample, one floor)."""
  out = {}
  for trial in range(TRIALS):
    target = problems.mixture("square_four", N, 100 + trial).points
    fresh = problems.mixture("square_four", N, 200 + trial)
    names, points = zip(*problems.defects(fresh, seed=trial).items())
    ratios = _fit_report(np.stack(points), target).ratios()
    for i, name in enumerate(names):
      for key in ("fit/floor", "strays"):
        out.setdefault(name, {}).setdefault(key, []).append(ratios[key][i])
  return {name: {key: np.array(v) for key, v in scores.items()}
          for name, scores in out.items()}


# the Sinkhorn solves of 7 maps on 1,024-point halves: execution, not compile
_fit_report = optimised(lambda mapped, target: metrics.fit_report(
    mapped, target, coarse=False))


def _ratio(scores, key="fit/floor"):
  return scores[key]


def test_a_fresh_sample_scores_its_floor(controls):
  fresh = _ratio(controls["fresh"])
  assert np.all((fresh > 0.6) & (fresh < 1.5)), fresh
  strays = _ratio(controls["fresh"], "strays")
  assert np.all(strays < 3 * metrics.STRAY_LEVEL), strays


@pytest.mark.parametrize("defect", ["noise", "between", "contracted",
                                    "widened"])
def test_every_defect_scores_clearly_above(controls, defect):
  fresh, bad = _ratio(controls["fresh"]), _ratio(controls[defect])
  # trial by trial (same target sample) and on average
  assert np.all(bad > fresh), (fresh, bad)
  assert bad.mean() > 1.25 * fresh.mean(), (fresh, bad)


def test_strays_see_points_between_clusters(controls):
  fresh = _ratio(controls["fresh"], "strays")
  between = _ratio(controls["between"], "strays")
  # 5 % of the points were moved between clusters
  assert np.all(between > fresh + 0.03), (fresh, between)


def test_cluster_report_reads_the_defects():
  fresh = problems.mixture("square_four", N, 7)
  target = problems.mixture("square_four", N, 8).points
  bad = problems.defects(fresh, seed=0)
  report = lambda pts: metrics.cluster_report(pts, target,
                                              centers=fresh.centers)
  ok = report(bad["fresh"])
  assert ok.strays < 0.01 and ok.strays_floor < 0.01
  np.testing.assert_allclose(ok.spread, 1.0, atol=0.1)
  np.testing.assert_allclose(ok.share, ok.target_share, atol=0.05)
  assert ok.share_error < 0.05, ok
  assert report(bad["between"]).strays > 0.04
  np.testing.assert_allclose(report(bad["contracted"]).spread, 0.8, atol=0.1)
  np.testing.assert_allclose(report(bad["widened"]).spread, 1.25, atol=0.1)
  moved = report(bad["transfer"])
  assert moved.share[0] < moved.target_share[0] - 0.03
  assert moved.share_error > 0.03 and moved.share_error > ok.share_error
  # k-means finds the same clusters
  found = metrics.cluster_report(bad["fresh"], target, num_clusters=4)
  assert sorted(np.round(found.centers).tolist()) == sorted(
      np.round(fresh.centers).tolist())


def test_fit_of_members_and_errors():
  target = jnp.asarray(problems.mixture("square_four", 256, 0).points)
  mapped = jnp.stack([target, target + 1.0])
  fit, floor = metrics.fit_and_floor(mapped, target)
  assert fit.shape == (2,) and floor.shape == ()
  assert fit[1] > 10 * fit[0]
  report = metrics.fit_report(mapped, target)  # the coarse fit too
  assert report.coarse_fit.shape == (2,) and report.coarse_fit[1] > 0
  with pytest.raises(ValueError, match="m >= 4"):
    metrics.fit_report(target[:3], target[:3])
  with pytest.raises(ValueError, match="not both or neither"):
    metrics.cluster_report(target, target)
  with pytest.raises(ValueError, match="centers"):
    metrics.cluster_report(target, target, centers=np.zeros((4, 3)))
