"""ExpectileConjugateSolver and optional fine-tuning with ott's L-BFGS."""
import jax
import optax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.neural.networks.layers import conjugate as ott_conjugate

import ott_enot


class TestExpectileConjugateSolver:

  def test_is_an_ott_conjugate_solver(self):
    assert isinstance(
        ott_enot.ExpectileConjugateSolver(), ott_conjugate.FenchelConjugateSolver
    )

  def test_returns_the_amortised_prediction(self):
    f = lambda x: 0.5 * jnp.sum(x ** 2)  # f* (y) = |y|^2 / 2, argmax = y
    y = jnp.array([1.0, -2.0])
    x0 = jnp.array([0.5, -1.0])
    out = ott_enot.ExpectileConjugateSolver().solve(f, y, x_init=x0)
    assert out.num_iter == 0
    np.testing.assert_array_equal(out.grad, x0)
    np.testing.assert_allclose(out.val, x0 @ y - f(x0))
    # a lower bound of the true conjugate, exact at the maximiser
    assert out.val <= 0.5 * y @ y
    exact = ott_enot.ExpectileConjugateSolver().solve(f, y, x_init=y)
    np.testing.assert_allclose(exact.val, 0.5 * y @ y)

  def test_needs_x_init(self):
    with pytest.raises(ValueError, match="x_init"):
      ott_enot.ExpectileConjugateSolver().solve(lambda x: x @ x, jnp.ones(2))

  def test_is_the_solver_default(self):
    solver = ott_enot.ExpectileNeuralDual(2, progress_bar=False)
    assert isinstance(solver.conjugate_solver, ott_enot.ExpectileConjugateSolver)


def test_lbfgs_fine_tuning_lowers_the_c_transform(pair2):
  """With ott's L-BFGS, f(x) = min_y c(x, y) - g(y) is refined from T(x)."""
  # ott's optimiser: 30 small steps keep g concave enough that
  # c(x, .) - g has a minimiser for L-BFGS to reach (an outlying x, 3.3
  # from the mean, takes L-BFGS more than 50 iterations to it: 100)
  adam = lambda: optax.adam(3e-4, b1=0.9, b2=0.9)
  solver = ott_enot.ExpectileNeuralDual(
      2, num_train_iters=30, progress_bar=False, rng=jax.random.key(0),
      optimizer_f=adam(), optimizer_g=adam(), expectile_loss_coef=1.0,
      conjugate_solver=ott_conjugate.FenchelConjugateLBFGS(max_iter=100),
  )
  solver(*pair2.loaders(batch=32))
  x = pair2.x_test[:32]
  amortised = solver.to_dual_potentials(finetune_g=False)
  refined = solver.to_dual_potentials()
  f_amortised = jax.vmap(amortised.f)(x)
  f_refined = jax.vmap(refined.f)(x)
  # a minimum started from the amortised point can only be lower
  assert jnp.all(f_refined <= f_amortised + 1e-4)
  assert jnp.mean(f_amortised - f_refined) > 1e-4  # and it moved (30 steps)
  # the refined map is a stationary point of c(x, .) - g
  t = refined.transport(x)
  grad = jax.vmap(jax.grad(lambda y, xi: jnp.sum((xi - y) ** 2) - refined.g(y)))(t, x)
  assert float(jnp.max(jnp.abs(grad))) < 1e-2
