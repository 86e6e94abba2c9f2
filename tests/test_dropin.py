"""Code written for ott's W2NeuralDual / ExpectileNeuralDual runs unchanged.

The call patterns below are those of ott's own tests (``neuraldual_test.py``,
``expectile_neural_dual_test.py``, 0.4.7 to 0.6.0) and of its ENOT tutorial;
where ott 0.6.0 still supports a pattern, it is run with ott's class too, so
the test shows the same code works with both.
"""
from typing import Iterator, NamedTuple, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest

from ott import datasets
from ott.geometry import costs, pointcloud
from ott.neural.methods import expectile_neural_dual as ott_enot_module
from ott.neural.methods import neuraldual
from ott.neural.networks import icnn, potentials
from ott.neural.networks.layers import conjugate
from ott.tools import sinkhorn_divergence

import ott_enot


class DataLoader(NamedTuple):  # ott's test fixture `neural_data`
  source_iter: Iterator[np.ndarray]
  target_iter: Iterator[np.ndarray]
  valid_source_iter: Iterator[np.ndarray]
  valid_target_iter: Iterator[np.ndarray]


def _gauss_iter(mean, seed, n=64):
  rng = np.random.default_rng(seed)
  while True:
    yield (rng.normal(size=(n, 2)) * 0.5 + mean).astype(np.float32)


@pytest.fixture()
def neural_data() -> DataLoader:
  return DataLoader(
      _gauss_iter(0.0, 0), _gauss_iter(2.0, 1), _gauss_iter(0.0, 2),
      _gauss_iter(2.0, 3)
  )


def decreasing(losses: Sequence[float]) -> bool:
  return all(x >= y for x, y in zip(losses, losses[1:]))


def increasing(losses: Sequence[float]) -> bool:
  return all(x <= y for x, y in zip(losses, losses[1:]))


class TestW2NeuralDualPatterns:
  """ott's ``TestW2NeuralDual``, with our class swapped in."""

  # ott runs the full product; every value of every argument appears here
  @pytest.mark.parametrize(
      ("back_and_forth", "test_gaussian_init", "conjugate_solver"),
      [
          (True, True, conjugate.DEFAULT_CONJUGATE_SOLVER),
          (False, False, conjugate.DEFAULT_CONJUGATE_SOLVER),
          (True, False, None),
          (False, True, None),
      ],
  )
  def test_w2_neural_dual(
      self, neural_data, back_and_forth, test_gaussian_init, conjugate_solver
  ):
    num_train_iters, log_freq = 10, 10
    dim_data = 2
    if test_gaussian_init:
      data_source = next(neural_data.source_iter)
      data_target = next(neural_data.target_iter)
      neural_f = icnn.ICNN(
          dim_data=dim_data, dim_hidden=[32],
          gaussian_map_samples=(data_source, data_target)
      )
      neural_g = icnn.ICNN(
          dim_data=dim_data, dim_hidden=[32],
          gaussian_map_samples=(data_target, data_source)
      )
    else:
      neural_f = icnn.ICNN(dim_data=dim_data, dim_hidden=[32])
      neural_g = icnn.ICNN(dim_data=dim_data, dim_hidden=[32])

    with pytest.warns(UserWarning, match="amortization_loss='regression'"):
      neural_dual_solver = ott_enot.ExpectileNeuralDual(
          dim_data=dim_data,
          neural_f=neural_f,
          neural_g=neural_g,
          num_train_iters=num_train_iters,
          logging=True,
          log_freq=log_freq,
          back_and_forth=back_and_forth,
          amortization_loss="regression",
          conjugate_solver=conjugate_solver,
          progress_bar=False,
      )
    learned_potentials, logs = neural_dual_solver(*neural_data)
    # ott asserts monotone logs; with log_freq == num_train_iters there is
    # one entry, as in ott's test
    assert len(logs["train_logs"]["loss_f"]) == 1
    assert increasing(logs["train_logs"]["loss_f"])
    assert decreasing(logs["train_logs"]["loss_g"])
    assert neural_dual_solver.back_and_forth is back_and_forth
    x = next(neural_data.source_iter)
    assert np.all(np.isfinite(learned_potentials.transport(x)))
    assert np.all(np.isfinite(learned_potentials.transport(x, forward=False)))

  def test_neural_dual_jit(self, neural_data):
    neural_dual_solver = ott_enot.ExpectileNeuralDual(
        dim_data=2, num_train_iters=10, progress_bar=False
    )
    learned_potentials = neural_dual_solver(*neural_data)
    data_source = next(neural_data.source_iter)
    pred_target = learned_potentials.transport(data_source)
    compute_transport = jax.jit(
        lambda x: learned_potentials.transport(x, forward=True)
    )
    pred_target_jit = compute_transport(data_source)
    np.testing.assert_allclose(pred_target, pred_target_jit, rtol=1e-3, atol=1e-3)

  def test_to_dual_potentials_finetune_flag(self, neural_data):
    solver = ott_enot.ExpectileNeuralDual(2, num_train_iters=2, progress_bar=False)
    solver(*neural_data)
    assert isinstance(solver.to_dual_potentials(finetune_g=False),
                      ott_enot.ENOTPotentials)
    assert solver.state_f.params is solver.to_dual_potentials().params_f


def _enot_060_test_pattern(cls, data, cost_fn):
  """ott 0.6.0 ``test_expectile_neural_dual`` and ``test_neural_dual_jit``."""
  num_train_iters, log_freq = 10, 10
  solver = cls(
      dim_data=2,
      cost_fn=cost_fn,
      num_train_iters=num_train_iters,
      logging=True,
      log_freq=log_freq,
      rng=jax.random.key(0),
  )
  learned_potentials, logs = solver(*data)
  assert set(logs) == {"train_logs", "valid_logs"}
  data_source = next(data.source_iter)
  pred_target = learned_potentials.transport(data_source)
  pred_jit = jax.jit(lambda x: learned_potentials.transport(x))(data_source)
  np.testing.assert_allclose(pred_target, pred_jit, rtol=1e-3, atol=1e-3)
  pred_source = learned_potentials.transport(
      next(data.target_iter), forward=False
  )
  dist = learned_potentials.distance(data_source, next(data.target_iter))
  return pred_target, pred_source, dist


@pytest.mark.parametrize("cost_fn", [costs.SqEuclidean(), costs.PNormP(1.5)])
def test_ott_060_enot_test_pattern_runs_with_both(neural_data, cost_fn):
  theirs = _enot_060_test_pattern(
      ott_enot_module.ExpectileNeuralDual, neural_data, cost_fn
  )
  ours = _enot_060_test_pattern(ott_enot.ExpectileNeuralDual, neural_data, cost_fn)
  for a, b in zip(theirs, ours):
    assert np.shape(a) == np.shape(b)
    assert np.all(np.isfinite(b))


@pytest.mark.parametrize(
    ("cost_fn", "is_bidirectional", "use_dot_product"),
    [
        (costs.SqEuclidean(), True, True),
        (costs.SqEuclidean(), True, False),
        (costs.SqEuclidean(), False, False),
        (costs.SqEuclidean(), False, True),
        (costs.PNormP(1.5), True, False),
        (costs.Euclidean(), False, False),
    ],
)
def test_ott_051_keywords(neural_data, cost_fn, is_bidirectional, use_dot_product):
  """ott 0.4.7-0.5.1's test: default networks, the two removed keywords."""
  solver = ott_enot.ExpectileNeuralDual(
      dim_data=2,
      cost_fn=cost_fn,
      is_bidirectional=is_bidirectional,
      use_dot_product=use_dot_product,
      num_train_iters=10,
      logging=True,
      log_freq=10,
      rng=jax.random.key(0),
      progress_bar=False,
  )
  learned_potentials, logs = solver(*neural_data)
  assert len(logs["train_logs"]["w_dist"]) == 1
  x = next(neural_data.source_iter)
  assert np.all(np.isfinite(learned_potentials.transport(x)))
  expected = (
      "correlation" if use_dot_product else
      ("twist" if is_bidirectional else "direct")
  )
  assert solver.parameterisation == expected
  if expected == "direct":
    with pytest.raises(ValueError, match="no inverse"):
      learned_potentials.transport(x, forward=False)
  else:
    assert learned_potentials.transport(x, forward=False).shape == x.shape


def _tutorial(cls, cost_fn, num_train_iters=101, **extra):
  """The ENOT tutorial's workflow (ott 0.4.7 and 0.6.0), shortened."""
  train_dataloaders, valid_dataloaders, input_dim = (
      datasets.create_gaussian_mixture_samplers(
          name_source="square_five",
          name_target="square_four",
          train_batch_size=128,
          valid_batch_size=128,
          rng=jax.random.key(0),
      )
  )
  last_dim = 1 if extra.get("is_bidirectional", True) else input_dim
  neural_f = potentials.MLP(dim_hidden=[32, 32, last_dim], act_fn=jax.nn.elu)
  neural_g = potentials.MLP(dim_hidden=[32, 32, 1], act_fn=jax.nn.elu)
  optimizer_f = optax.adam(learning_rate=3e-4, b1=0.9, b2=0.999)
  optimizer_g = optax.adam(learning_rate=3e-4, b1=0.9, b2=0.999)
  plotted = []

  def training_callback(step, learned_potentials):
    if step % 100 == 0:  # the tutorials use 1000; ours calls it every 100
      fig, _ = learned_potentials.plot_ot_map(data_source, data_target, forward=True)
      plotted.append(step)
      plt.close(fig)

  data_source = next(valid_dataloaders.source_iter)[:64]
  data_target = next(valid_dataloaders.target_iter)[:64]
  neural_dual_solver = cls(
      input_dim,
      neural_f,
      neural_g,
      optimizer_f,
      optimizer_g,
      cost_fn=cost_fn,
      num_train_iters=num_train_iters,
      expectile=0.99,
      expectile_loss_coef=1.0,
      rng=jax.random.key(5),
      **extra,
  )
  learned_potentials = neural_dual_solver(
      *train_dataloaders, *valid_dataloaders, callback=training_callback
  )
  assert plotted == [0, 100]
  fig, _ = learned_potentials.plot_ot_map(data_source, data_target, forward=True)
  plt.close(fig)
  pred_target = learned_potentials.transport(data_source)
  div, _ = sinkhorn_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, pred_target, data_target, epsilon=1e-1
  )
  return learned_potentials, float(div)


@pytest.mark.parametrize("cost_fn", [costs.SqEuclidean(), costs.PNormP(1.5)])
def test_ott_060_tutorial_runs_with_both(cost_fn):
  _, theirs = _tutorial(ott_enot_module.ExpectileNeuralDual, cost_fn)
  pot, ours = _tutorial(ott_enot.ExpectileNeuralDual, cost_fn)
  assert np.isfinite(theirs) and np.isfinite(ours)
  fig, _ = pot.plot_ot_map(
      np.zeros((4, 2)), np.ones((4, 2)), forward=False
  )
  plt.close(fig)


@pytest.mark.parametrize(
    ("cost_fn", "extra"),
    [
        (costs.SqEuclidean(), {"use_dot_product": True}),
        (costs.Euclidean(), {"is_bidirectional": False}),
    ],
)
def test_ott_047_tutorial_sections(cost_fn, extra):
  pot, div = _tutorial(ott_enot.ExpectileNeuralDual, cost_fn, **extra)
  assert np.isfinite(div)
  assert pot.is_bidirectional == extra.get("is_bidirectional", True)
