"""How good a learned map is: the fit beside the resampling floor (no ground
truth needed), the L2 unexplained variance against a known map, and the
Wasserstein-2 benchmark's pairs.

Layer: pure functions of points, above :mod:`ott_enot.costs` only in name (it
imports ott and JAX). Files: :mod:`~ott_enot.evaluation.metrics`,
:mod:`~ott_enot.evaluation.w2bench`.
"""
from ott_enot.evaluation import metrics, w2bench
from ott_enot.evaluation.metrics import (
    EPSILON,
    FitReference,
    fit_and_floor,
    fit_at,
    fit_reference,
    l2_uv,
    sinkhorn_divergence,
)
from ott_enot.evaluation.w2bench import W2Pair

__all__ = [
    "metrics",
    "w2bench",
    "EPSILON",
    "fit_and_floor",
    "FitReference",
    "fit_reference",
    "fit_at",
    "l2_uv",
    "sinkhorn_divergence",
    "W2Pair",
]
