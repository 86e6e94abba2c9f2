"""The ENOT objective on tiny hand-computed cases, and its gradient structure."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ott.neural.networks import potentials as ott_potentials

from ott_enot.model import losses


class TestExpectileLoss:

  def test_weights_on_both_sides_of_zero(self):
    u = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    tau = 0.9
    # tau * u^2 for u >= 0, (1 - tau) * u^2 for u < 0
    expected = [0.1 * 4.0, 0.1 * 0.25, 0.0, 0.9 * 0.25, 0.9 * 4.0]
    np.testing.assert_allclose(losses.expectile_loss(u, tau), expected, rtol=1e-6)

  def test_tau_one_ignores_slack(self):
    u = jnp.array([-3.0, 1.5])
    np.testing.assert_allclose(losses.expectile_loss(u, 1.0), [0.0, 2.25])

  def test_tau_half_is_half_squared_error(self):
    u = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(losses.expectile_loss(u, 0.5), 0.5 * u ** 2)


# Hand-computed case, d = 1, two pairs. T_p(x) = p x, g_q(y) = q y,
# c(x, y) = (x - y)^2, tau = 0.9, lambda = 0.5, p = 2, q = 0.5,
# x = (1, 2), y = (1.5, 5):
#   T(x) = (2, 4); c(x, y) = (0.25, 9); g(y) = (0.75, 2.5)
#   f(x) = c(x, T x) - g(T x) = (1 - 1, 4 - 2) = (0, 2)
#   d1 = f - c + g = (0.5, -4.5) = d2 (same value, different stop-gradients)
#   L(d) = (0.9 * 0.25, 0.1 * 20.25) = (0.225, 2.025), mean 1.125
#   reg = 0.5 * (1.125 + 1.125) = 1.125; dual = mean g + mean f = 2.625
#   amortisation = mean(c(x, T x) - g(T x)) = 1
#   loss = reg - dual + amortisation = -0.5
# Gradients:
#   d/dp: only the amortisation, mean(2 x^2 (p - 1) - q x) = mean(1.5, 7) = 4.25
#   d/dq: lambda * [mean(2 w d1 y) + mean(2 w d2 (-T x))] - [mean y - mean T x]
#       = 0.5 * (-1.575 + 0.9) - 0.25 = -0.5875
HAND = dict(
    source=jnp.array([[1.0], [2.0]]),
    target=jnp.array([[1.5], [5.0]]),
    map_fn=lambda p, x: p * x,
    potential_fn=lambda q, y: q * y[:, 0],
    cost_fn=lambda x, y: jnp.sum((x - y) ** 2, axis=-1),
    expectile=0.9,
    expectile_loss_coef=0.5,
)


def _hand_loss(p, q):
  kw = dict(HAND)
  source, target = kw.pop("source"), kw.pop("target")
  return losses.enot_loss(p, q, source, target, **kw)


class TestENOTLoss:

  def test_hand_computed_value(self):
    loss, terms = _hand_loss(2.0, 0.5)
    np.testing.assert_allclose(loss, -0.5, rtol=1e-6)
    np.testing.assert_allclose(terms.map_loss, 1.0, rtol=1e-6)
    np.testing.assert_allclose(terms.potential_loss, 1.125 - 2.625, rtol=1e-6)
    np.testing.assert_allclose(terms.dual, 2.625, rtol=1e-6)

  def test_hand_computed_gradients(self):
    gp, gq = jax.grad(lambda p, q: _hand_loss(p, q)[0], argnums=(0, 1))(2.0, 0.5)
    np.testing.assert_allclose(gp, 4.25, rtol=1e-6)
    np.testing.assert_allclose(gq, -0.5875, rtol=1e-6)

  @pytest.fixture()
  def networks(self):
    dim = 3
    f = ott_potentials.MLP(dim_hidden=[16, 1])
    g = ott_potentials.MLP(dim_hidden=[16, 1])
    pf = f.init(jax.random.key(0), jnp.ones((1, dim)))["params"]
    pg = g.init(jax.random.key(1), jnp.ones((1, dim)))["params"]
    value = lambda net: lambda p, x: net.apply({"params": p}, x)[:, 0]

    def twist_map(p, x):  # T(x) = x - grad f(x) / 2, squared Euclidean
      return x - 0.5 * jax.grad(lambda z: value(f)(p, z).sum())(x)

    x = jax.random.normal(jax.random.key(2), (8, dim))
    y = jax.random.normal(jax.random.key(3), (8, dim)) + 1.0
    loss = functools.partial(
        losses.enot_loss,
        source=x,
        target=y,
        map_fn=twist_map,
        potential_fn=value(g),
        cost_fn=lambda a, b: jnp.sum((a - b) ** 2, axis=-1),
        expectile=0.95,
        expectile_loss_coef=0.7,
    )
    return loss, pf, pg

  def test_map_params_only_see_amortisation(self, networks):
    loss, pf, pg = networks
    full = jax.grad(lambda p: loss(p, pg)[0])(pf)
    amort = jax.grad(lambda p: loss(p, pg)[1].map_loss)(pf)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(amort)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the amortisation has a non-zero gradient, so the check is not vacuous
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(amort)) > 1e-4

  def test_potential_params_only_see_regulariser_and_dual(self, networks):
    loss, pf, pg = networks
    full = jax.grad(lambda q: loss(pf, q)[0])(pg)
    pot = jax.grad(lambda q: loss(pf, q)[1].potential_loss)(pg)
    amort = jax.grad(lambda q: loss(pf, q)[1].map_loss)(pg)
    for a, b, c in zip(jax.tree.leaves(full), jax.tree.leaves(pot),
                       jax.tree.leaves(amort)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
      np.testing.assert_allclose(c, 0.0, atol=0)  # g is stop-gradiented there
