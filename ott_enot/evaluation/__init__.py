"""How good a learned map is: the fit at the data's resolution beside the
resampling floor, strays and clusters' spread (no ground truth needed), the
L2 unexplained variance against a known map; problems with known clusters;
the Wasserstein-2 benchmark's pairs; entropic plans with known ground truth
(Gaussians in closed form, the entropic OT benchmark's mixtures) and the
conditional and joint BW-UVP.

Layer: pure functions of points, above :mod:`ott_enot.costs` only in name (it
imports ott and JAX). Files: :mod:`~ott_enot.evaluation.metrics`,
:mod:`~ott_enot.evaluation.problems`, :mod:`~ott_enot.evaluation.w2bench`,
:mod:`~ott_enot.evaluation.entropic`.
"""
from ott_enot.evaluation import entropic, metrics, problems, w2bench
from ott_enot.evaluation.entropic import (
    MixturePlan,
    conditional_bw_uvp,
    gaussian_entropic_plan,
    joint_bw_uvp,
)
from ott_enot.evaluation.metrics import (
    EPSILON,
    ClusterReport,
    FitReference,
    FitReport,
    cluster_report,
    exact_ot_cost,
    fit_and_floor,
    fit_at,
    fit_reference,
    fit_report,
    l2_uv,
    local_divergence,
    sinkhorn_divergence,
)
from ott_enot.evaluation.w2bench import W2Pair

__all__ = [
    "entropic",
    "metrics",
    "problems",
    "w2bench",
    "EPSILON",
    "ClusterReport",
    "FitReport",
    "cluster_report",
    "fit_report",
    "exact_ot_cost",
    "local_divergence",
    "fit_and_floor",
    "FitReference",
    "fit_reference",
    "fit_at",
    "l2_uv",
    "sinkhorn_divergence",
    "W2Pair",
    "MixturePlan",
    "gaussian_entropic_plan",
    "conditional_bw_uvp",
    "joint_bw_uvp",
]
