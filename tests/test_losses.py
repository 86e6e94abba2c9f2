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


class TestEnergyDistance:

  def test_hand_computed_value(self):
    # in 1-D, a = (0, 1), b = (3, 3): the mean distance between them is
    # mean(3, 3, 2, 2) = 2.5, a's two points are 1 apart, b's 0: 2 * 2.5 - 1
    a = jnp.array([[0.0], [1.0]])
    b = jnp.array([[3.0], [3.0]])
    np.testing.assert_allclose(losses.energy_distance(a, b), 2 * 2.5 - 1.0,
                               rtol=1e-6)

  def test_unbiased_near_zero_for_one_measure_and_positive_otherwise(self):
    keys = jax.random.split(jax.random.key(0), 32)
    draw = lambda k: jax.random.normal(keys[k], (256, 2))
    same = [float(losses.energy_distance(draw(2 * k), draw(2 * k + 1)))
            for k in range(16)]
    shifted = float(losses.energy_distance(draw(0), draw(1) + 0.5))
    # the U-statistic's mean over draws of one measure is ~0 (within three
    # standard errors); a shift of half a standard deviation is many times
    # its spread
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(16)
    assert shifted > 10 * np.std(same)

  def test_gradient_finite_where_points_coincide(self):
    a = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = jnp.array([[1.0, 1.0], [2.0, 0.0]])
    grad = jax.grad(lambda z: losses.energy_distance(z, b))(a)
    assert bool(jnp.isfinite(grad).all())
    # a descent step moves the two coincident points towards b's mass
    towards = jnp.mean(b, axis=0) - a[:2]
    assert bool((jnp.sum(-grad[:2] * towards, axis=-1) > 0).all())


class TestPushforwardTerm:

  def test_zero_weight_is_the_published_objective(self):
    base = _hand_loss(2.0, 0.5)
    kw = dict(HAND)
    source, target = kw.pop("source"), kw.pop("target")
    zero = losses.enot_loss(2.0, 0.5, source, target,
                            pushforward_loss_coef=0.0, **kw)
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(zero)):
      np.testing.assert_array_equal(a, b)

  def test_adds_the_scaled_energy_distance_to_the_maps_loss_only(self):
    kw = dict(HAND)
    source, target = kw.pop("source"), kw.pop("target")
    mu = 0.7
    loss = lambda p, q, m: losses.enot_loss(p, q, source, target,
                                            pushforward_loss_coef=m, **kw)
    base, terms0 = loss(2.0, 0.5, 0.0)
    with_term, terms = loss(2.0, 0.5, mu)
    # s = mean c(x, y) / mean |x - y| = mean(0.25, 9) / mean(0.5, 3)
    scale = 4.625 / 1.75
    # the energy distance less its term in y alone (a constant): y = (1.5,
    # 5) are 3.5 apart
    energy = losses.energy_distance(2.0 * source, target) + 3.5
    np.testing.assert_allclose(with_term - base, mu * scale * energy,
                               rtol=1e-5)
    np.testing.assert_allclose(terms.map_loss - terms0.map_loss,
                               mu * scale * energy, rtol=1e-5)
    np.testing.assert_allclose(terms.potential_loss, terms0.potential_loss)
    # the potential's gradient does not change; the map's does
    gq = lambda m: jax.grad(lambda q: loss(2.0, q, m)[0])(0.5)
    gp = lambda m: jax.grad(lambda p: loss(p, 0.5, m)[0])(2.0)
    np.testing.assert_allclose(gq(mu), gq(0.0), rtol=1e-6)
    assert abs(float(gp(mu) - gp(0.0))) > 1e-3

  def test_scale_does_not_depend_on_units(self):
    # the same problem in units 10 times larger: a squared cost grows 100
    # times, so does every term; the weight mu means the same
    kw = dict(HAND)
    source, target = kw.pop("source"), kw.pop("target")
    kw.pop("potential_fn")
    term = lambda k: (losses.enot_loss(
        2.0, 0.0, k * source, k * target, potential_fn=lambda q, y: q * y[:, 0],
        pushforward_loss_coef=1.0, **kw)[1].map_loss - losses.enot_loss(
            2.0, 0.0, k * source, k * target,
            potential_fn=lambda q, y: q * y[:, 0], **kw)[1].map_loss)
    np.testing.assert_allclose(term(10.0), 100.0 * term(1.0), rtol=1e-5)
