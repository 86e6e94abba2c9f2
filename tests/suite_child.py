"""What a child process of the test suite imports first: the suite's
validation size (``OTT_ENOT_TEST_VALID_POINTS``, set by conftest.py), so
that a child validates as the test that spawned it does.

The compilation cache and XLA's flags travel in JAX's own environment
variables (conftest.py sets them before JAX starts).
"""
import os

VALID_POINTS_ENV = "OTT_ENOT_TEST_VALID_POINTS"

if VALID_POINTS_ENV in os.environ:
  from ott_enot.data import sampling

  sampling.VALID_POINTS = int(os.environ[VALID_POINTS_ENV])
