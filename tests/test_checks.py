"""Bad input gets a clear ValueError/TypeError naming the argument, early."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot.training import loop


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim_data": 0}, ValueError, "dim_data"),
        ({"dim_data": -3}, ValueError, "dim_data"),
        ({"dim_data": 2.0}, TypeError, "dim_data"),
        ({"dim_data": True}, TypeError, "dim_data"),
        ({"dim_data": "2"}, TypeError, "dim_data"),
        ({"expectile": 0.0}, ValueError, r"expectile.*\(0, 1\]"),
        ({"expectile": 1.01}, ValueError, "expectile"),
        ({"expectile": -0.5}, ValueError, "expectile"),
        ({"expectile": float("nan")}, ValueError, "expectile"),
        ({"expectile": "0.9"}, TypeError, "expectile"),
        ({"expectile_loss_coef": -0.1}, ValueError, "expectile_loss_coef"),
        ({"expectile_loss_coef": float("inf")}, ValueError, "expectile_loss_coef"),
        ({"pushforward_loss_coef": -1.0}, ValueError, "pushforward_loss_coef"),
        ({"pushforward_loss_coef": float("nan")}, ValueError,
         "pushforward_loss_coef"),
        ({"pushforward_loss_coef": "1"}, TypeError, "pushforward_loss_coef"),
        ({"num_train_iters": -1}, ValueError, "num_train_iters"),
        ({"valid_freq": 0}, ValueError, "valid_freq"),
        ({"log_freq": 1.5}, TypeError, "log_freq"),
        ({"cost_fn": "sqeuclidean"}, TypeError, "cost_fn"),
        ({"optimizer_f": 1e-3}, TypeError, "optimizer_f"),
        ({"optimizer_g": object()}, TypeError, "optimizer_g"),
        ({"neural_g": lambda x: x}, TypeError, "neural_g"),
        ({"conjugate_solver": "lbfgs"}, TypeError, "conjugate_solver"),
        ({"keep_best": "yes"}, TypeError, "keep_best"),
        ({"keep_best": 1}, TypeError, "keep_best"),
        (
            {"neural_f": ott_potentials.MLP(dim_hidden=[8, 2]),
             "use_dot_product": True},
            ValueError, "neural_f.*direct",
        ),
        (
            {"neural_f": ott_potentials.MLP(dim_hidden=[8, 1]),
             "cost_fn": costs.Euclidean(), "parameterisation": "direct"},
            ValueError, "neural_f.*must return 2",
        ),
        (
            {"neural_g": ott_potentials.MLP(dim_hidden=[8, 2])},
            ValueError, "neural_g",
        ),
        ({"cost_fn": costs.Cosine(), "is_bidirectional": True}, ValueError,
         "is_bidirectional=False"),
        ({"cost_fn": costs.Euclidean(), "parameterisation": "direct",
          "is_bidirectional": True}, ValueError, "is_bidirectional=False"),
        ({"cost_fn": costs.PNormP(1.5), "use_dot_product": True}, ValueError,
         "SqEuclidean"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
  kwargs = {"dim_data": 2, "progress_bar": False, **kwargs}
  with pytest.raises(error, match=match):
    ott_enot.ExpectileNeuralDual(**kwargs)


@pytest.fixture()
def no_steps(monkeypatch):
  """Training fails the test if a chunk of steps is dispatched (or compiled):
  the errors below must come before anything runs."""

  def never(*args, **kwargs):
    raise AssertionError("a training step ran before the input was checked")

  monkeypatch.setattr(loop, "_run_chunk", never)


def _solver():
  return ott_enot.ExpectileNeuralDual(
      2, ott_potentials.MLP(dim_hidden=[8, 1]),
      ott_potentials.MLP(dim_hidden=[8, 1]), num_train_iters=5, valid_freq=2,
      progress_bar=False
  )


def test_the_guard_catches_a_step(no_steps):
  with pytest.raises(AssertionError, match="before the input was checked"):
    _solver()(_ok(), _ok(), _ok(), _ok())


def _ok(n=8):
  return itertools.repeat(np.ones((n, 2), np.float32))


def _bad(arr):
  return itertools.chain([np.asarray(arr)], _ok())


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        (np.ones((8, 3)), ValueError, r"shape \(8, 3\).*dim_data=2"),
        (np.ones((8,)), ValueError, r"batch that has shape \(8,\).*\[n, 2\]"),
        (np.ones((0, 2)), ValueError, r"shape \(0, 2\).*non-empty"),
        (np.array([[0.0, np.nan]] * 8), ValueError, "NaN or inf"),
        (np.array([[np.inf, 0.0]] * 8), ValueError, "NaN or inf"),
        (np.array([["a", "b"]] * 8), TypeError, "dtype"),
    ],
)
def test_bad_batches_name_the_loader(no_steps, position, batch, error, match):
  names = ["trainloader_source", "trainloader_target", "validloader_source",
           "validloader_target"]
  loaders = [_ok(), _ok(), _ok(), _ok()]
  loaders[position] = _bad(batch)
  with pytest.raises(error, match=f"`{names[position]}`.*{match}"):
    _solver()(*loaders)


def test_unequal_batch_sizes(no_steps):
  with pytest.raises(ValueError, match="must be equal"):
    _solver()(_ok(8), _ok(6), _ok(), _ok())


def test_empty_loader(no_steps):
  with pytest.raises(ValueError, match="`trainloader_target` is empty"):
    _solver()(_ok(), iter([]), _ok(), _ok())


def test_loader_running_out():
  solver = ott_enot.ExpectileNeuralDual(
      2, ott_potentials.MLP(dim_hidden=[8, 1]),
      ott_potentials.MLP(dim_hidden=[8, 1]), num_train_iters=5,
      progress_bar=False
  )
  short = lambda: iter([np.ones((4, 2), np.float32)] * 2)
  with pytest.raises(ValueError, match="ran out of batches"):
    solver(short(), short(), _ok(), _ok())


def test_nan_batch_later_in_training():
  solver = ott_enot.ExpectileNeuralDual(
      2, ott_potentials.MLP(dim_hidden=[8, 1]),
      ott_potentials.MLP(dim_hidden=[8, 1]), num_train_iters=5,
      progress_bar=False
  )
  good = np.ones((4, 2), np.float32)
  src = iter([good, good, np.full((4, 2), np.nan, np.float32), good, good])
  with pytest.raises(ValueError, match="`trainloader_source`.*NaN"):
    solver(src, _ok(4), _ok(), _ok())


def test_a_samplers_first_batch_is_checked(no_steps):
  nan = lambda key: (jnp.full((8, 2), jnp.nan), jnp.ones((8, 2)))
  with pytest.raises(ValueError, match="`sampler` yielded a batch.*NaN"):
    _solver().fit(nan)
  sphere = ott_enot.ExpectileNeuralDual(
      3, cost_fn=ott_enot.SphereGeodesicSq(), num_train_iters=5,
      progress_bar=False
  )
  off = lambda key: (2.0 * jax.random.normal(key, (8, 3)),
                     jnp.tile(jnp.eye(3)[:1], (8, 1)))
  with pytest.raises(ValueError, match="`sampler` has points off the unit"):
    sphere.fit(off)
