"""Data in: ott point clouds and problems (one, or a family indexed by a
condition) turned into streams of batches that the training loop samples on
the device.

Layer: above :mod:`ott_enot.costs`, below the training engine. Files:

- :mod:`~ott_enot.data.sampling`: the stream core (checked points and
  weights, splits, inverse-CDF sampling, the one key schedule);
- :mod:`~ott_enot.data.pointclouds`: :class:`PointCloudStream` (one problem);
- :mod:`~ott_enot.data.conditional`: :class:`ConditionalStream` (a family).
"""
from ott_enot.data.conditional import (
    ConditionalStream,
    PaddedClouds,
    ValidationGroups,
    condition_vectors,
    is_one_hot,
)
from ott_enot.data.pointclouds import PointCloudStream, WeightedPoints
from ott_enot.data.sampling import (
    WEIGHT_ATOL,
    as_points,
    as_weights,
    point_cloud_of,
    problem_arrays,
    split_indices,
)

__all__ = [
    "PointCloudStream",
    "WeightedPoints",
    "ConditionalStream",
    "PaddedClouds",
    "ValidationGroups",
    "condition_vectors",
    "is_one_hot",
    "point_cloud_of",
    "problem_arrays",
    "as_points",
    "as_weights",
    "split_indices",
    "WEIGHT_ATOL",
]
