"""Flax NNX networks beside Linen ones (accuracy, resume, save/load,
populations, conditional models, refusals), the default networks' source,
PiecewiseMLP's kinks and the guard on ott-jax's neural API."""
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import ott
from ott.neural.methods import neuraldual
from ott.neural.networks import potentials as ott_potentials

import ott_enot
from ott_enot import versions
from ott_enot.evaluation import metrics
from ott_enot.model import networks

import conftest


class MLP(nnx.Module):
  """An ELU MLP of ``nnx.Linear`` layers (``nnx.List``: integer keys)."""

  def __init__(self, din, dout, width=16, depth=2, *, rngs):
    sizes = [din] + [width] * depth
    self.hidden = nnx.List([
        nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])
    ])
    self.out = nnx.Linear(sizes[-1], dout, rngs=rngs)

  def __call__(self, x):
    for layer in self.hidden:
      x = jax.nn.elu(layer(x))
    return self.out(x)


class FiLM(nnx.Module):
  """``module(x, cond)``: an MLP of x whose hidden layer the condition
  scales and shifts."""

  def __init__(self, din, dcond, dout, width=16, *, rngs):
    self.inp = nnx.Linear(din, width, rngs=rngs)
    self.film = nnx.Linear(dcond, 2 * width, rngs=rngs)
    self.out = nnx.Linear(width, dout, rngs=rngs)

  def __call__(self, x, cond):
    scale, shift = jnp.split(self.film(cond), 2, axis=-1)
    return self.out(jax.nn.elu((1 + scale) * self.inp(x) + shift))


def _sampler(key):
  kx, ky = jax.random.split(key)
  x = jax.random.normal(kx, (32, 2))
  return x, 0.5 * jax.random.normal(ky, (32, 2)) + 1.0


def _solver(directory=None, **kw):
  kw = dict(dict(neural_f=functools.partial(MLP, 2, 1),
                 neural_g=functools.partial(MLP, 2, 1),
                 num_train_iters=60, valid_freq=20, chunk_size=20,
                 progress_bar=False, rng=jax.random.key(0),
                 checkpoint_dir=directory, checkpoint_every=20), **kw)
  return ott_enot.ENOTSolver(2, **kw)


def _leaves(tree):
  return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _assert_equal(a, b):
  """Two pytrees' leaves equal, bit for bit."""
  a, b = _leaves(a), _leaves(b)
  assert len(a) == len(b)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)


def _nnx_twin(params, din, dout, width):
  """An NNX :class:`MLP` holding the parameters of ott's Linen
  ``MLP([width, width, dout])``."""
  module = MLP(din, dout, width=width, rngs=nnx.Rngs(0))
  for i, layer in enumerate(list(module.hidden) + [module.out]):
    layer.kernel.value = params[f"Dense_{i}"]["kernel"]
    layer.bias.value = params[f"Dense_{i}"]["bias"]
  return module


@pytest.mark.parametrize("form", ["twist", "correlation", "direct"])
def test_every_parameterisation_maps_as_with_the_linen_twin(form):
  """The same parameters as Linen and NNX networks give the same maps and
  potentials, in every parameterisation and both directions."""
  out = 2 if form == "direct" else 1
  linen_f = ott_potentials.MLP(dim_hidden=[16, 16, out], act_fn=jax.nn.elu)
  linen_g = ott_potentials.MLP(dim_hidden=[16, 16, 1], act_fn=jax.nn.elu)
  solvers = {}
  for api in ("linen", "nnx"):
    nets = (linen_f, linen_g)
    if api == "nnx":
      start = solvers["linen"].state
      nets = (_nnx_twin(start.f.params, 2, out, 16),
              _nnx_twin(start.g.params, 2, 1, 16))
    solvers[api] = ott_enot.ENOTSolver(2, *nets, parameterisation=form,
                                       rng=jax.random.key(0))
  x = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
  results = {}
  for api, solver in solvers.items():
    model, state = solver.model, solver.state
    results[api] = [model.forward_map(state.f.params, x),
                    model.kantorovich_g(state.g.params, x)]
    if model.has_inverse:
      results[api].append(model.inverse_map(state.g.params, x))
  assert len(results["nnx"]) == (2 if form == "direct" else 3)
  for a, b in zip(results["nnx"], results["linen"]):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6)


def test_nnx_mlp_learns_the_gaussian_map_as_the_linen_mlp_does(pair2):
  """The same MLP (2 x 64, ELU) as a Linen and an NNX module, starting from
  the same parameters: equally accurate maps (L2-UV), same steps."""
  linen = ott_potentials.MLP(dim_hidden=[64, 64, 1], act_fn=jax.nn.elu)
  # the solver initialises f and g from these keys (rng=jax.random.key(0))
  start = [linen.init(key, jnp.ones((1, 2)))["params"]
           for key in jax.random.split(jax.random.key(0))]
  l2uv = {}
  for api in ("linen", "nnx"):
    nets = [linen, linen]
    if api == "nnx":
      nets = [_nnx_twin(params, 2, 1, 64) for params in start]
    solver = ott_enot.ExpectileNeuralDual(
        2, *nets, optax.adam(1e-3, b1=0.9, b2=0.9),
        optax.adam(1e-3, b1=0.9, b2=0.9), num_train_iters=1500,
        rng=jax.random.key(0), progress_bar=False)
    pot = solver(*pair2.loaders(batch=256))
    x, y = pair2.x_test, pair2.y_test
    l2uv[api] = (
        metrics.l2_uv(pot.transport(x), pair2.monge(x)),
        metrics.l2_uv(pot.transport(y, forward=False), pair2.monge_inverse(y)),
    )
  assert isinstance(solver.neural_f, ott_enot.NNXNetwork)
  for nnx_err, linen_err in zip(l2uv["nnx"], l2uv["linen"]):
    assert nnx_err < 1.5 * linen_err, l2uv
    assert nnx_err < 3.0, l2uv  # test_solver's bound for the Linen MLP


def test_resume_save_load_and_the_trained_modules(tmp_path):
  """NNX networks (functions of `rngs`) through a run that raises after
  step 30 and resumes from its checkpoint (bit for bit the uninterrupted
  run), save/load, and the trained `nnx.Module`s."""
  full = _solver()
  pot = full.fit(_sampler)

  def stop(step, _):
    if step >= 30:
      raise RuntimeError("stop")

  run = _solver(str(tmp_path / "run"))
  with pytest.raises(RuntimeError, match="stop"):
    run.fit(_sampler, callback=stop)
  resumed = _solver(str(tmp_path / "run"))
  resumed.fit(_sampler, resume=True)
  _assert_equal(resumed.state, full.state)

  other = _solver(rng=jax.random.key(1)).fit(_sampler)  # other parameters
  path = tmp_path / "potentials.msgpack"
  pot.save(path)
  _assert_equal(other.load(path).params_f, pot.params_f)
  _assert_equal(other.load(tmp_path / "run").params_g,
                resumed.state.g.params)  # the latest checkpoint

  module_f, module_g = pot.modules()
  assert isinstance(module_g, MLP)
  y = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
  np.testing.assert_allclose(
      np.asarray(module_g(y)).ravel(),
      np.asarray(pot.model.potential_g(pot.params_g, y)), rtol=1e-6)
  assert isinstance(module_f, MLP)


def test_an_instance_starts_from_its_parameters_and_keeps_them():
  """An `nnx.Module` instance: training starts from its parameters, and its
  own arrays are neither changed nor donated."""
  module_f, module_g = MLP(2, 1, rngs=nnx.Rngs(3)), MLP(2, 1, rngs=nnx.Rngs(4))
  before = _leaves(nnx.state(module_f, nnx.Param))
  solver = _solver(neural_f=module_f, neural_g=module_g, num_train_iters=20)
  _assert_equal(solver.state.f.params, networks._string_keys(
      nnx.to_pure_dict(nnx.state(module_f, nnx.Param))))
  solver.fit(_sampler)
  after = _leaves(nnx.state(module_f, nnx.Param))  # raises if donated
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in
                 zip(_leaves(solver.state.f.params), before))
  # one architecture, one program: equal structure, other parameters
  assert networks.as_network(MLP(2, 1, rngs=nnx.Rngs(9))) == solver.neural_f
  assert networks.as_network(MLP(2, 1, width=8, rngs=nnx.Rngs(9))) != (
      solver.neural_f)


def test_population_of_nnx_networks(pair2):
  """Two members seeded 0 and 1: each starts from the module its seed
  builds, both train; an instance cannot be seeded."""
  members = [{"seed": 0, "expectile": 0.99}, {"seed": 1, "expectile": 0.9}]
  kw = dict(neural_f=functools.partial(MLP, 2, 1),
            neural_g=functools.partial(MLP, 2, 1), num_train_iters=40,
            valid_freq=20, chunk_size=20, progress_bar=False)
  pop = ott_enot.ENOTPopulation(2, members=members, **kw)
  start = pop.state.members.f.params
  for i in (0, 1):  # a member's networks: ENOT.init(jax.random.key(seed))
    rng_f, _ = jax.random.split(jax.random.key(i))
    want = networks.as_network(functools.partial(MLP, 2, 1)).init(rng_f)
    _assert_equal(jax.tree.map(lambda a, i=i: a[i], start), want["params"])
  x = np.asarray(pair2.source.sample(jax.random.key(5), 1000))
  y = np.asarray(pair2.target.sample(jax.random.key(6), 1000))
  result = pop.fit(x, y, batch_size=64)
  trained = _leaves(pop.state.members.f.params)
  assert all(np.all(np.isfinite(a)) for a in trained)
  assert not np.array_equal(trained[0][0], trained[0][1])
  out = result.member(1).transport(x[:16])
  assert out.shape == (16, 2) and np.all(np.isfinite(np.asarray(out)))

  with pytest.raises(ValueError, match="nnx.Module` instance"):
    ott_enot.ENOTPopulation(
        2, members=members,
        **dict(kw, neural_f=MLP(2, 1, rngs=nnx.Rngs(0))))


def test_conditional_model_with_nnx_film_networks():
  """`module(x, cond)` NNX networks (FiLM): reproducible, finite maps that
  depend on the condition."""
  seen = jnp.asarray((0.0, 0.5, 1.0))

  def sampler(key):
    kc, kx, ky = jax.random.split(key, 3)
    c = jax.random.choice(kc, seen, (64,))[:, None]
    x = jax.random.normal(kx, (64, 2))
    return x, x * (1 + c) + 2 * c, c

  outs = []
  for _ in range(2):
    solver = ott_enot.ConditionalExpectileNeuralDual(
        2, dim_cond=1, conditioning="film",
        neural_f=functools.partial(FiLM, 2, 1, 1),
        neural_g=functools.partial(FiLM, 2, 1, 1), num_train_iters=40,
        valid_freq=20, chunk_size=20, progress_bar=False)
    pot = solver.fit(sampler, rng=jax.random.key(3))
    outs.append([np.asarray(pot.transport(np.ones((4, 2)), condition=[c]))
                 for c in (0.0, 1.0)])
  np.testing.assert_array_equal(outs[0][0], outs[1][0])
  assert np.all(np.isfinite(outs[0][0]))
  assert not np.allclose(outs[0][0], outs[0][1])
  assert isinstance(pot.modules()[1], FiLM)


MESH_CHILD = """
import json, sys, functools
import jax, numpy as np
from flax import nnx
import suite_child
import ott_enot
from test_networks import MLP

assert len(jax.devices()) == 2, jax.devices()
rng = np.random.default_rng(0)
x = rng.normal(size=(1000, 2)).astype(np.float32)
y = (rng.normal(size=(1000, 2)) * 0.5 + 1.0).astype(np.float32)
out = {}
for name, mesh in (("none", None), ("two", ott_enot.batch_mesh())):
  s = ott_enot.ENOTSolver(
      2, neural_f=functools.partial(MLP, 2, 1), neural_g=MLP(2, 1, rngs=nnx.Rngs(1)),
      num_train_iters=40, valid_freq=20, chunk_size=20, progress_bar=False,
      mesh=mesh)
  pot = s.fit(x, y, batch_size=64)
  out[name] = {"forward": np.asarray(pot.transport(x[:50])).tolist(),
               "sharding": str(jax.tree.leaves(s.state.f.params)[0].sharding)}
json.dump(out, sys.stdout)
"""


def test_nnx_networks_on_a_two_device_mesh():
  """The same NNX run on one device and data-parallel over two (forced
  host devices, a child process): the same maps, replicated parameters."""
  env = conftest.child_env(JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get(
      "XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
  proc = subprocess.run([sys.executable, "-c", MESH_CHILD], env=env,
                        capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout)
  np.testing.assert_allclose(out["two"]["forward"], out["none"]["forward"],
                             atol=2e-4)
  sharding = out["two"]["sharding"]  # replicated over both devices
  assert "spec=P()" in sharding and "'batch': 2" in sharding, sharding


class _BatchNormed(nnx.Module):

  def __init__(self, *, rngs):
    self.linear = nnx.Linear(2, 1, rngs=rngs)
    self.norm = nnx.BatchNorm(1, rngs=rngs)

  def __call__(self, x):
    return self.norm(self.linear(x))


class _Dropped(nnx.Module):

  def __init__(self, *, rngs):
    self.linear = nnx.Linear(2, 1, rngs=rngs)
    self.drop = nnx.Dropout(0.1, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.linear(x))


@pytest.mark.parametrize(("module", "named"), [
    (_BatchNormed, "BatchStat"), (_Dropped, "RngKey"),
])
def test_state_other_than_parameters_is_refused(module, named):
  for given in (module(rngs=nnx.Rngs(0)), lambda rngs: module(rngs=rngs)):
    with pytest.raises(ValueError, match=f"neural_g.*{named}"):
      ott_enot.ENOTSolver(2, neural_g=given)


@pytest.mark.parametrize(("given", "error", "match"), [
    (42, TypeError, "`neural_f` must be a flax Linen module.*got int"),
    (MLP, TypeError, "got the class MLP: pass an instance"),
    (lambda rngs: 3, TypeError, "the function returned"),
    (lambda: MLP(2, 1, rngs=nnx.Rngs(0)), TypeError, "failed"),
    (MLP(3, 1, rngs=nnx.Rngs(0)), ValueError,
     "`neural_f` cannot take points of dimension 2"),
])
def test_bad_networks_are_refused_before_training(given, error, match):
  with pytest.raises(error, match=match):
    ott_enot.ENOTSolver(2, neural_f=given)


def test_a_vector_valued_nnx_f_selects_the_direct_map():
  solver = ott_enot.ENOTSolver(2, neural_f=MLP(2, 2, rngs=nnx.Rngs(0)),
                               bidirectional=False)
  assert solver.parameterisation == "direct"


def test_default_networks_follow_the_installed_otts_linen_mlp(monkeypatch):
  """`MLP` on ott 0.6.0; `LinenMLP` where ott's `MLP` became NNX."""
  assert networks.ott_linen_mlp() is ott_potentials.MLP
  assert isinstance(networks.default_network(1), ott_potentials.MLP)

  class LinenMLP(ott_potentials.MLP):
    pass

  monkeypatch.setattr(ott_potentials, "LinenMLP", LinenMLP, raising=False)
  monkeypatch.setattr(ott_potentials, "MLP", MLP)
  assert type(networks.default_network(1)) is LinenMLP
  assert isinstance(networks.default_network(3, "film"),
                    ott_enot.ConditionalMLP)


class TestOttGuard:
  """ott main's NNX neural API, simulated: refused with the versions and
  the command to install."""

  def test_this_ott_is_supported(self):
    versions.check_ott()

  @pytest.mark.parametrize("patch", ["mlp", "step_fn"])
  def test_nnx_neural_api_is_refused(self, monkeypatch, patch):
    monkeypatch.setattr(ott, "__version__", "0.6.1.dev12")
    if patch == "mlp":
      monkeypatch.setattr(ott_potentials, "MLP", MLP)
    else:
      monkeypatch.delattr(neuraldual.W2NeuralDual, "get_step_fn")
    with pytest.raises(ImportError) as err:
      versions.check_ott()
    message = str(err.value)
    for part in ("0.6.1.dev12", versions.SUPPORTED_OTT, "pip install",
                 "NNX"):
      assert part in message, message

  def test_older_ott_is_refused(self, monkeypatch):
    monkeypatch.setattr(ott, "__version__", "0.5.1")
    with pytest.raises(ImportError, match="0.5.1.*older than 0.6"):
      versions.check_ott()

  def test_import_checks(self):
    """`import ott_enot` runs the check, once, before anything else."""
    code = ("import ott; ott.__version__ = '0.5.1'\n"
            "import ott_enot")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=conftest.child_env(), timeout=300,
                         check=False)
    assert out.returncode != 0
    assert "ImportError: ott_enot supports ott-jax" in out.stderr, out.stderr

  def test_the_pin_is_the_supported_range(self):
    import pathlib  # pylint: disable=import-outside-toplevel
    pyproject = pathlib.Path(__file__).parents[1] / "pyproject.toml"
    assert f'"ott-jax[neural]{versions.SUPPORTED_OTT}"' in pyproject.read_text()


def test_linen_modules_pass_through_as_they_are():
  mlp = ott_potentials.MLP(dim_hidden=(8, 1))
  assert networks.as_network(mlp) is mlp and networks.as_network(None) is None
  assert isinstance(mlp, nn.Module)


def _map_jump(module, params, x0, normal, delta):
  """|grad f(x0 + delta n) - grad f(x0 - delta n)|: the map's jump."""
  grad = jax.grad(lambda x: module.apply(params, x[None])[0, 0])
  return float(jnp.linalg.norm(grad(x0 + delta * normal)
                               - grad(x0 - delta * normal)))


def _piecewise(shift=0.0, sizes=(16, 16, 1), **kwargs):
  points = jax.random.normal(jax.random.key(3), (40, 2)) * 2.0 + shift
  module = ott_enot.PiecewiseMLP.from_sample(points, sizes, **kwargs)
  return module, module.init(jax.random.key(0), jnp.zeros((1, 2))), points


def test_piecewise_mlp_starts_its_hyperplanes_at_the_sample():
  module, params, points = _piecewise()
  np.testing.assert_allclose(params["params"]["anchors"], points[:16])
  # equal samples, equal networks: they share compiled programs
  assert module == _piecewise()[0] and hash(module) == hash(_piecewise()[0])


def test_piecewise_mlp_map_jumps_across_its_first_layers_hyperplanes():
  module, params, _ = _piecewise()
  x0 = params["params"]["anchors"][3]  # on unit 3's hyperplane
  kernel = params["params"]["normals"][:, 3]
  normal = kernel / jnp.linalg.norm(kernel)
  jumps = [_map_jump(module, params, x0, normal, d) for d in (1e-2, 1e-4)]
  # a kink of f on the hyperplane: grad f jumps by a fixed amount however
  # close the two points are
  assert jumps[1] > 1e-3 and jumps[1] > 0.5 * jumps[0], jumps
  # ott's ELU MLP: grad f is continuous, its jump shrinks with the distance
  smooth = ott_potentials.MLP(dim_hidden=(16, 16, 1))
  smooth_params = smooth.init(jax.random.key(0), jnp.zeros((1, 2)))
  smooth_jumps = [_map_jump(smooth, smooth_params, x0, normal, d)
                  for d in (1e-2, 1e-4)]
  assert smooth_jumps[1] < 0.05 * smooth_jumps[0], smooth_jumps


def test_piecewise_mlp_relu_layers_makes_the_next_layers_relu():
  x = jax.random.normal(jax.random.key(4), (64, 2)) * 3.0
  hessian = jax.vmap(jax.hessian(lambda module, params, point: module.apply(
      params, point[None])[0, 0], argnums=2), in_axes=(None, None, 0))
  # every hidden layer ReLU: f is piecewise linear, grad f piecewise
  # constant (zero Hessian away from the kinks)
  module, params, _ = _piecewise(sizes=(16, 16, 16, 1), relu_layers=3)
  assert float(jnp.abs(hessian(module, params, x)).max()) < 1e-6
  # the same parameters with ELU after the first layer, or the second: the
  # map bends between the kinks
  for relu_layers in (1, 2):
    smooth = module.clone(relu_layers=relu_layers)
    assert float(jnp.abs(hessian(smooth, params, x)).max()) > 1e-3
    assert not np.allclose(smooth.apply(params, x), module.apply(params, x))


@pytest.mark.parametrize("relu_layers", [1, 2])
def test_piecewise_mlp_is_equivariant_to_translating_the_data(relu_layers):
  shift = jnp.array([3.0, -1.0])
  module, params, _ = _piecewise(relu_layers=relu_layers)
  moved, moved_params, _ = _piecewise(shift, relu_layers=relu_layers)
  x = jax.random.normal(jax.random.key(4), (64, 2)) * 3.0
  np.testing.assert_allclose(moved.apply(moved_params, x + shift),
                             module.apply(params, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, match", [
    (lambda: ott_enot.PiecewiseMLP.from_sample(np.zeros((8, 2)), (16, 1)),
     "points.*n >= dim_hidden.0. = 16"),
    (lambda: ott_enot.PiecewiseMLP.from_sample(np.zeros(16), (16, 1)),
     "points.*sample .n, d."),
    (lambda: ott_enot.PiecewiseMLP.from_sample(np.zeros((16, 2)), (1,)),
     "dim_hidden.*at least one hidden"),
    (lambda: ott_enot.PiecewiseMLP.from_sample(
        np.zeros((16, 3)), (16, 1)).init(jax.random.key(0), jnp.zeros((1, 2))),
     "anchors.*16 points of the data's dimension 2"),
    (lambda: ott_enot.PiecewiseMLP.from_sample(
        np.zeros((16, 2)), (16, 16, 1), relu_layers=3),
     "relu_layers.*from 1 to the number of hidden layers .2"),
    (lambda: ott_enot.PiecewiseMLP.from_sample(
        np.zeros((16, 2)), (16, 16, 1), relu_layers=0), "relu_layers"),
    (lambda: ott_enot.PiecewiseMLP(
        (16, 16, 1), anchors=((0.0, 0.0),) * 16, relu_layers=2.0).init(
            jax.random.key(0), jnp.zeros((1, 2))), "relu_layers.*got 2.0"),
])
def test_piecewise_mlp_refuses_bad_samples(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_piecewise_mlp_trains_in_the_solver():
  sizes = (32, 32, 1)
  x = jax.random.normal(jax.random.key(5), (256, 2))
  y = x * 0.5 + 3.0
  solver = ott_enot.ExpectileNeuralDual(
      2, num_train_iters=1000, rng=jax.random.key(0), progress_bar=False,
      optimizer_f=ott_enot.default_optimizer(1000, 3e-3),
      optimizer_g=ott_enot.default_optimizer(1000, 3e-3),
      neural_f=ott_enot.PiecewiseMLP.from_sample(x, sizes),
      neural_g=ott_enot.PiecewiseMLP.from_sample(y, sizes))
  potentials = solver.fit(x, y, batch_size=128)
  moved = potentials.transport(x)
  assert moved.shape == x.shape and bool(jnp.all(jnp.isfinite(moved)))
  # y = x / 2 + 3 is the OT map; measured: mean 0.08 off, points 0.23 off
  # on average (the default networks: 0.05, 0.07)
  assert float(jnp.linalg.norm(moved.mean(0) - y.mean(0))) < 0.4
  assert float(jnp.mean(jnp.linalg.norm(moved - y, axis=-1))) < 0.5
