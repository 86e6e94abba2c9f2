"""The README's demo command runs and writes its PNG; its networks anchor at
the loaders' points."""
import subprocess
import sys

import jax
import numpy as np
import pytest
from ott import datasets

from ott_enot import __main__ as demo


def test_demo_prints_costs_and_writes_png(tmp_path, capsys):
  out = tmp_path / "map.png"
  assert demo.main(["--iters", "30", "--batch", "64", "--valid", "128",
                    "--eval", "128", "--no-progress", "--out", str(out)]) == 0
  text = capsys.readouterr().out
  for row in ("ENOT dual estimate", "Sinkhorn (eps", "forward T(x) -> y",
              "inverse T^-1(y) -> x", "strays", "spread", "mass"):
    assert row in text
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point_help():
  res = subprocess.run([sys.executable, "-m", "ott_enot", "--help"],
                       capture_output=True, text=True, check=True)
  assert "--iters" in res.stdout


def test_demo_networks_anchor_at_the_loaders_points():
  batches = lambda start: (np.full((50, 2), start + i, np.float32)
                           for i in range(10))  # batches of 50 points
  loaders = datasets.Dataset(source_iter=batches(0), target_iter=batches(100))
  nets = demo.demo_networks(demo.DEMO_NETWORK, loaders)
  # 128 points from the first three batches of each measure
  np.testing.assert_array_equal(np.asarray(nets["neural_f"].anchors)[:, 0],
                                np.repeat([0, 1, 2], 50)[:128])
  np.testing.assert_array_equal(np.asarray(nets["neural_g"].anchors)[:, 0],
                                np.repeat([100, 101, 102], 50)[:128])
  # the demo's: three ReLU layers; 'piecewise' (the earlier demo's): one
  assert nets["neural_f"].relu_layers == nets["neural_g"].relu_layers == 3
  one = demo.demo_networks("piecewise", loaders)
  assert one["neural_f"].relu_layers == one["neural_g"].relu_layers == 1
  # the next points: the loaders moved on by three batches
  assert np.asarray(one["neural_f"].anchors)[0, 0] == 3
  two = demo.demo_networks("piecewise2", loaders)
  assert two["neural_f"].relu_layers == two["neural_g"].relu_layers == 2
  assert demo.demo_networks("elu", loaders) == {}  # the solver's default
  with pytest.raises(ValueError, match="`network` must be one of"):
    demo.demo_networks("relu", loaders)


def test_demo_solver_takes_the_demos_settings():
  solver = demo.demo_solver(2, 10, jax.random.key(0))
  assert solver.expectile == demo.DEMO_EXPECTILE == 0.999
  assert solver.pushforward_loss_coef == demo.DEMO_PUSHFORWARD == 1.0
  # the flags reach the solver
  other = demo.demo_solver(2, 10, jax.random.key(0), expectile=0.99,
                           pushforward=0.3)
  assert (other.expectile, other.pushforward_loss_coef) == (0.99, 0.3)
