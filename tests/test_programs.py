"""Programs shared by value: solvers of equal settings compile nothing more.

The static configuration of the compiled programs (the method: its model,
cost, networks, optimisers) compares by value, so a second solver of equal
settings in one process reuses the first one's chunk and validation
programs, and a solver of other settings compiles its own once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax import monitoring
from ott.geometry import costs
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import checks, optax_call
from ott_enot.costs import cost_key
from ott_enot.training import loop

N, D = 400, 2


def _data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (0.5 * rng.normal(size=(N, D)) + 2.0).astype(np.float32)
  return x, y


class _Traces:
  """The functions traced while the context is open (tracing happens
  whether or not a persistent compilation cache has the program)."""

  def __enter__(self):
    self.names = []

    def listener(event, duration, **kw):
      del duration
      if event == "/jax/core/compile/jaxpr_trace_duration":
        self.names.append(kw.get("fun_name", "?"))

    self._listener = listener
    monitoring.register_event_duration_secs_listener(listener)
    self.chunks = loop.chunk_programs_compiled()
    return self

  def __exit__(self, *exc):
    monitoring.unregister_event_duration_listener(self._listener)
    self.chunks = loop.chunk_programs_compiled() - self.chunks

  def of(self, *names):
    return [n for n in self.names if n in names]


def _solver(**kw):
  # ott's tutorial style: a list of widths (compared by its values)
  mlp = lambda: ott_potentials.MLP(dim_hidden=[8, 8, 1])
  kw = dict(dict(num_train_iters=41, valid_freq=20, chunk_size=20,
                 progress_bar=False, rng=jax.random.key(0)), **kw)
  return ott_enot.ENOTSolver(D, mlp(), mlp(), **kw)


def _fit(solver):
  x, y = _data()
  return solver.fit(x, y, batch_size=64, rng=jax.random.key(1))


PROGRAMS = ("run_chunk", "validation_reference", "validate")


def test_a_second_solver_of_equal_settings_compiles_nothing():
  with _Traces() as first:
    pot_a = _fit(_solver())
  assert first.chunks == 1
  assert sorted(first.of(*PROGRAMS)) == sorted(PROGRAMS)
  with _Traces() as second:  # new networks, optimisers, cost: equal values
    pot_b = _fit(_solver(cost_fn=costs.SqEuclidean()))
  assert second.chunks == 0 and second.of(*PROGRAMS) == [], second.names
  x = _data(5)[0]
  np.testing.assert_array_equal(pot_a.transport(x), pot_b.transport(x))
  # other settings: their own programs, once
  with _Traces() as other:
    _fit(_solver(expectile=0.9))
  assert other.chunks == 1 and "validate" in other.names
  with _Traces() as again:
    _fit(_solver(expectile=0.9))
  assert again.chunks == 0


def test_user_optax_transformations_compare_by_identity_descriptions_by_value():
  """``optax.adam(1e-3)`` is new closures each time (its own programs);
  ``optax_call.adam(1e-3)`` is a value (shared programs), and trains
  bit for bit as the transformation it describes."""
  with _Traces() as own:
    pot_optax = _fit(_solver(optimizer_f=optax.adam(1e-3),
                             optimizer_g=optax.adam(1e-3)))
  with _Traces() as own_again:
    _fit(_solver(optimizer_f=optax.adam(1e-3), optimizer_g=optax.adam(1e-3)))
  assert own.chunks == 1 and own_again.chunks == 1
  with _Traces() as described:
    pot_call = _fit(_solver(optimizer_f=optax_call.adam(1e-3),
                            optimizer_g=optax_call.adam(learning_rate=1e-3)))
  with _Traces() as described_again:
    _fit(_solver(optimizer_f=optax_call.adam(1e-3),
                 optimizer_g=optax_call.adam(learning_rate=1e-3)))
  assert described.chunks == 1 and described_again.chunks == 0
  x = _data(5)[0]
  np.testing.assert_array_equal(pot_optax.transport(x), pot_call.transport(x))


def test_optax_call_is_a_hashable_description_of_an_optax_call():
  sched = optax_call.cosine_decay_schedule(1e-3, 100, alpha=1e-2)
  a = optax_call.chain(optax_call.clip_by_global_norm(1.0),
                       optax_call.adam(learning_rate=sched, b1=np.float64(0.9)))
  b = optax_call.chain(optax_call.clip_by_global_norm(1.0),
                       optax_call.adam(learning_rate=sched, b1=0.9))
  assert a == b and hash(a) == hash(b)
  assert a != optax_call.chain(optax_call.clip_by_global_norm(2.0),
                               optax_call.adam(learning_rate=sched, b1=0.9))
  # it is what it describes: the same updates as optax's own
  ref = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(
      learning_rate=optax.cosine_decay_schedule(1e-3, 100, alpha=1e-2),
      b1=0.9))
  params = {"w": jnp.arange(3.0), "b": jnp.ones(())}
  grads = {"w": jnp.asarray([0.5, -2.0, 3.0]), "b": jnp.asarray(-1.0)}
  s_a, s_ref = a.init(params), ref.init(params)
  for _ in range(3):
    u_a, s_a = a.update(grads, s_a, params)
    u_ref, s_ref = ref.update(grads, s_ref, params)
  jax.tree.map(np.testing.assert_array_equal, u_a, u_ref)
  assert float(sched(50)) == float(
      optax.cosine_decay_schedule(1e-3, 100, alpha=1e-2)(50))
  assert "optax_call.adam(" in repr(a)
  # dicts (piecewise schedules) and lists are frozen and rebuilt
  piece = optax_call.piecewise_constant_schedule(1e-3, {10: 0.5, 20: 0.1})
  assert piece == optax_call.piecewise_constant_schedule(
      1e-3, {20: 0.1, 10: 0.5})
  assert float(piece(15)) == pytest.approx(5e-4)
  with pytest.raises(TypeError, match="array"):
    optax_call.adam(jnp.asarray(1e-3))
  with pytest.raises(AttributeError, match="no function"):
    optax_call.adamm(1e-3)
  with pytest.raises(ValueError, match="no function"):
    ott_enot.OptaxCall.of("not_an_optax_function")


def test_costs_and_networks_compare_by_value_where_they_can():
  assert cost_key(costs.PNormP(1.5)) == cost_key(costs.PNormP(1.5))
  assert cost_key(costs.PNormP(1.5)) != cost_key(costs.PNormP(2.0))
  assert cost_key(costs.PNormP(2.0)) != cost_key(costs.SqEuclidean())
  sphere = lambda: ott_enot.get_cost("sphere_geodesic")
  assert cost_key(sphere()) == cost_key(sphere())

  class Unregistered(costs.CostFn):  # not a pytree: compared by identity

    def __call__(self, x, y):
      return jnp.sum((x - y) ** 2)

  c = Unregistered()
  assert cost_key(c) == cost_key(c) and cost_key(c) != cost_key(Unregistered())
  mlp = lambda w: ott_potentials.MLP(dim_hidden=[w, 1])
  assert checks.static_key(mlp(4)) == checks.static_key(mlp(4))
  assert checks.static_key(mlp(4)) != checks.static_key(mlp(5))
  array = np.zeros(2)
  assert checks.static_key(array) == checks.static_key(array)
  assert checks.static_key(array) != checks.static_key(np.zeros(2))


def test_populations_and_conditional_solvers_share_programs_too():
  x, y = _data()
  members = lambda taus: [{"expectile": t} for t in taus]
  pop = lambda taus: ott_enot.ENOTPopulation(
      D, members=members(taus), num_train_iters=21, valid_freq=20,
      chunk_size=20, progress_bar=False, neural_f=ott_potentials.MLP(
          dim_hidden=[8, 1]), neural_g=ott_potentials.MLP(dim_hidden=[8, 1]))
  with _Traces() as first:
    pop((0.9, 0.99)).fit(x, y, batch_size=64)
  with _Traces() as second:  # other members' values live in the state
    pop((0.95, 0.98)).fit(x, y, batch_size=64)
  assert first.chunks == 1 and second.chunks == 0, second.names

  labels = np.arange(N) % 2
  cond = lambda: ott_enot.ConditionalExpectileNeuralDual(
      D, dim_cond=1, num_train_iters=21, valid_freq=20, chunk_size=20,
      progress_bar=False, neural_f=ott_potentials.MLP(dim_hidden=[8, 1]),
      neural_g=ott_potentials.MLP(dim_hidden=[8, 1]))
  problems = {float(k): (x[labels == k], y[labels == k] + k) for k in (0, 1)}
  with _Traces() as first:
    cond().fit(problems, batch_size=32)
  with _Traces() as second:
    cond().fit(problems, batch_size=32)
  assert first.chunks == 1 and second.chunks == 0, second.names
