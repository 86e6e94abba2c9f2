"""Data-parallel training over 2 (forced host) devices equals 1-device training.

One child process with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
(the flag must be set before JAX starts) trains the same problem on no mesh,
a 1-device mesh and a 2-device mesh, through ``fit`` (sampling on the
devices) and through the iterator path (and an entropic plan warm-started by the
map), and reports parameters, logs, maps,
the sharding of the placed batches, the compiled program's per-device shapes
and the errors for a batch that does not split. The tests assert on that
report.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import child_env

D, N, WIDTH, STEPS = 3, 64, 24, 200

CHILD = f"""
import json, os, re, sys
import jax, jax.numpy as jnp, numpy as np
import suite_child  # the suite's validation size
import ott_enot
from ott_enot import data
from ott_enot.training import feeds, loop
from ott.neural.networks import potentials as P

D, N, WIDTH, STEPS = {D}, {N}, {WIDTH}, {STEPS}
assert len(jax.devices()) == 2, jax.devices()
rng = np.random.default_rng(0)
x = rng.normal(size=(1500, D)).astype(np.float32)
y = (rng.normal(size=(1500, D)) * 0.5 + 1.0).astype(np.float32)
stream = data.PointCloudStream.from_arrays(x, y, batch_size=N)
x_test = rng.normal(size=(100, D)).astype(np.float32)
y_test = (rng.normal(size=(100, D)) * 0.5 + 1.0).astype(np.float32)
meshes = {{"none": None, "one": ott_enot.batch_mesh(jax.devices()[:1]),
          "two": ott_enot.batch_mesh()}}

def solver(mesh, **kw):
  return ott_enot.ExpectileNeuralDual(
      D, neural_f=P.MLP([WIDTH, WIDTH, 1]), neural_g=P.MLP([WIDTH, WIDTH, 1]),
      num_train_iters=STEPS, valid_freq=50, log_freq=10, chunk_size=50,
      logging=True, progress_bar=False, mesh=mesh, **kw)

def report(s, pot, logs):
  params = {{
      net: [np.asarray(a).tolist() for a in jax.tree.leaves(p)]
      for net, p in (("f", s.state.f.params),
                     ("g", s.state.g.params))
  }}
  names = [jax.tree_util.keystr(k) for k, _ in
           jax.tree_util.tree_flatten_with_path(s.state.f.params)[0]]
  return {{
      "params": params, "names": names, "logs": logs,
      "forward": np.asarray(pot.transport(x_test)).tolist(),
      "inverse": np.asarray(pot.transport(y_test, forward=False)).tolist(),
      "param_sharding": str(s.state.f.params["Dense_0"]["kernel"].sharding),
  }}

# which thread traces the validation programs (the main thread only if the
# background compilation missed the call's cache key)
traced = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, fun_name="?", **kw: traced.append(
        (fun_name, __import__("threading").current_thread().name))
    if event == "/jax/core/compile/jaxpr_trace_duration" else None)

out = {{"fit": {{}}, "iter": {{}}}}
ckpt = os.path.join(sys.argv[1], "two")
fitted = {{}}
for name, mesh in meshes.items():
  s = solver(mesh, checkpoint_dir=ckpt if name == "two" else None)
  fitted[name] = s.fit(stream)
  out["fit"][name] = report(s, *fitted[name])
# a checkpoint written on 2 devices restores on one
restored = solver(None, checkpoint_dir=ckpt)
meta = restored.restore("latest")
out["restored"] = {{
    "step": meta["step"],
    "equal": all(bool(np.array_equal(u, v)) for u, v in zip(
        jax.tree.leaves(restored.state), jax.tree.leaves(s.state))),
    "sharding": str(restored.state.f.params["Dense_0"]["kernel"].sharding),
}}
for name in ("none", "two"):
  s = solver(meshes[name])
  out["iter"][name] = report(s, *s(*stream.loaders(jax.random.key(5))))
out["validation_traced_by"] = sorted(
    [fun, thread] for fun, thread in traced
    if fun in ("validate", "validation_reference", "_valid_batch"))

# the placed batches of the iterator path: [W, n, d] with n split
feed = feeds.IteratorFeed(stream.loaders(jax.random.key(5)), D)
s = solver(meshes["two"])
feed.prepare(s.loop_config().parallel, validation=True)
placed = feed.batches(range(0, 1), -49, 50)
out["placed"] = {{
    "spec": str(placed.xs.sharding.spec),
    "shards": sorted([list(b.data.shape) for b in placed.xs.addressable_shards]),
    "devices": sorted(str(b.device) for b in placed.xs.addressable_shards),
}}

# the compiled chunk of `fit` on 2 devices: per-device batch rows only
config = s.loop_config()
source = config.parallel.replicate(
    feeds.StreamBatches(stream, jax.random.key(1)))
state = config.parallel.replicate(s.state)
hlo = loop._run_chunk.lower(
    state, source, 1, 50, np.zeros((config.snapshots,), np.int32),
    config=config).compile().as_text()
out["hlo"] = {{
    "half_rows": len(re.findall(rf"f32\\[{{N // 2}},{{WIDTH}}\\]", hlo)),
    "full_rows": len(re.findall(rf"f32\\[{{N}},{{WIDTH}}\\]", hlo)),
    "all_reduce": len(re.findall(r"all-reduce", hlo)),
}}

# batches that do not split over 2 devices: clear errors, nothing compiled
errors = {{}}
compiled = loop.chunk_programs_compiled()
odd = data.PointCloudStream.from_arrays(x, y, batch_size=N - 1)
for what, run in (
    ("fit", lambda s: s.fit(odd)),
    ("iter", lambda s: s(*odd.loaders())),
    ("sampler", lambda s: s.fit(lambda k: (jax.random.normal(k, (N - 1, D)),) * 2)),
):
  try:
    run(solver(meshes["two"]))
    errors[what] = None
  except ValueError as err:
    errors[what] = str(err)
out["errors"] = errors
out["compiled_by_errors"] = loop.chunk_programs_compiled() - compiled

# a population: every member replicated, each batch split over the devices
out["population"] = {{}}
for name in ("none", "two"):
  pop = ott_enot.ENOTPopulation(
      D, neural_f=P.MLP([WIDTH, WIDTH, 1]), neural_g=P.MLP([WIDTH, WIDTH, 1]),
      members=[{{"expectile": 0.99}},
               {{"expectile": 0.9, "learning_rate_scale": 0.5}}],
      num_train_iters=STEPS, valid_freq=50, log_freq=10, chunk_size=50,
      logging=True, progress_bar=False, mesh=meshes[name])
  result = pop.fit(stream)
  out["population"][name] = {{
      "forward": [np.asarray(result.member(i).transport(x_test)).tolist()
                  for i in range(2)],
      "w_dist": result.logs["valid_logs"]["w_dist"],
      "sharding": str(pop.state.members.f.params["Dense_0"]["kernel"].sharding),
  }}

# a conditional model: each batch's rows and their conditions split together
cstream = data.ConditionalStream.from_problems(
    {{0.0: (x[:500], y[:500]), 1.0: (x[500:1000], y[500:1000] + 1.0),
     0.5: (x[1000:], y[1000:] + 0.5)}}, batch_size=N, holdout=[0.5])
out["conditional"] = {{}}
for name in ("none", "two"):
  s = ott_enot.ConditionalExpectileNeuralDual(
      D, dim_cond=1, neural_f=P.MLP([WIDTH, WIDTH, 1]),
      neural_g=P.MLP([WIDTH, WIDTH, 1]), num_train_iters=STEPS // 2,
      valid_freq=50, log_freq=10, chunk_size=50, logging=True,
      progress_bar=False, mesh=meshes[name])
  pot, logs = s.fit(cstream)
  out["conditional"][name] = {{
      "forward": np.asarray(pot.transport(x_test, condition=[0.5])).tolist(),
      "fit": logs["condition_logs"]["fit"],
      "sharding": str(s.state.f.params["Dense_0"]["kernel"].sharding),
  }}

# an entropic plan warm-started by the 1-device map: the energy, its
# optimiser and the chain buffer replicated, each batch split
out["entropic"] = {{}}
for name in ("none", "two"):
  s = ott_enot.EntropicSolver(
      D, 0.5, warm_start=fitted["none"][0],
      energy_network=P.MLP([WIDTH, WIDTH, 1]), num_train_iters=STEPS // 5,
      valid_freq=20, chunk_size=20, buffer_size=4 * N, progress_bar=False,
      mesh=meshes[name])
  before = [np.asarray(a) for a in jax.tree.leaves(s.state.energy.params)]
  plan = s.fit(stream)
  out["entropic"][name] = {{
      "state": [np.asarray(a, np.float64).tolist()
                for a in jax.tree.leaves(s.state)],
      "moved": float(max(np.max(np.abs(np.asarray(a) - b)) for a, b in zip(
          jax.tree.leaves(s.state.energy.params), before))),
      "draws": np.asarray(plan.sample(x_test[:5], 3, jax.random.key(0),
                                      num_steps=20)).tolist(),
      "sharding": sorted({{str(a.sharding.spec) for a in
                          jax.tree.leaves(s.state) if hasattr(a, "sharding")
                          and hasattr(a.sharding, "spec")}}),
      "step": int(s.state.step),
  }}
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  env = child_env(JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get(
      "XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
  proc = subprocess.run(
      [sys.executable, "-c", CHILD, str(tmp_path_factory.mktemp("mesh"))], env=env, capture_output=True, text=True,
      timeout=600, check=False
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout)


def _output_bias(names, i):
  return names[i] == "['Dense_2']['bias']"


def _compare_params(a, b, names):
  """Max |a - b| over leaves whose gradient is not identically zero.

  The potentials' output biases are not determined by the objective: ENOT's
  loss does not change when a constant is added to the potential network of
  a step (its values enter only as differences, g(y) - g(T(x))), nor to
  the network whose gradient is the map, so their gradient is zero up to
  rounding, and Adam turns rounding noise of order 1e-9 into steps of the
  learning rate. They are checked separately
  (bounded by Adam's step, and they change no map).
  """
  worst, bias = 0.0, 0.0
  for net in ("f", "g"):
    for i, (u, v) in enumerate(zip(a[net], b[net])):
      d = float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
      if _output_bias(names, i):
        bias = max(bias, d)
      else:
        worst = max(worst, d)
  return worst, bias


@pytest.mark.parametrize("path,other", [("fit", "two"), ("fit", "one"),
                                        ("iter", "two")])
def test_runs_on_meshes_agree_with_one_device(report, path, other):
  a, b = report[path]["none"], report[path][other]
  worst, bias = _compare_params(a["params"], b["params"], a["names"])
  assert worst < 2e-5, worst  # measured 1e-7 (sums in another order)
  # Adam moves a parameter by at most ~lr (3e-4) per step
  assert bias < 3e-4 * STEPS, bias
  for key in ("forward", "inverse"):
    np.testing.assert_allclose(b[key], a[key], atol=2e-5)
  # w_dist and the potential network's loss do not see the output biases;
  # the map network's loss E[c(x, T(x)) - g(T(x))] moves with g's bias
  bias_bound = 3e-4 * STEPS
  for part in ("train_logs", "valid_logs"):
    directions = a["logs"]["train_logs"]["directions"] if part == (
        "train_logs") else ["forward"] * len(a["logs"][part]["w_dist"])
    np.testing.assert_allclose(
        b["logs"][part]["w_dist"], a["logs"][part]["w_dist"], rtol=1e-4,
        atol=1e-5
    )
    for key, potential_when in (("loss_g", "forward"), ("loss_f", "inverse")):
      for k, direction in enumerate(directions):
        u, v = a["logs"][part][key][k], b["logs"][part][key][k]
        tol = 1e-4 * abs(u) + 1e-5 if direction == potential_when else (
            bias_bound)
        assert abs(u - v) <= tol, (part, key, k, direction, u, v)
  assert b["logs"]["train_logs"]["directions"] == (
      a["logs"]["train_logs"]["directions"]
  )
  # steps 50, 100, 150 and the last (keep_best)
  assert len(a["logs"]["valid_logs"]["w_dist"]) == 4
  if other == "two":
    assert "NamedSharding" in b["param_sharding"]
    assert "P()" in b["param_sharding"].replace("PartitionSpec", "P")


def test_one_device_mesh_is_bit_identical(report):
  a, b = report["fit"]["none"], report["fit"]["one"]
  assert a["params"] == b["params"]
  assert a["logs"] == b["logs"]


def test_checkpoint_of_two_devices_restores_on_one(report):
  restored = report["restored"]
  assert restored["step"] == STEPS - 1
  assert restored["equal"]
  assert "SingleDeviceSharding" in restored["sharding"]


def test_training_actually_moved(report):
  a = report["fit"]["none"]
  w = a["logs"]["train_logs"]["w_dist"]
  assert len(w) == STEPS // 10 and w[0] != w[-1]


def test_validation_programs_compile_in_the_background_on_meshes(report):
  # five runs with validation (fit: no mesh, 1 and 2 devices; iterators: no
  # mesh, 2 devices); runs on the same mesh share their validation programs
  # (equal settings compare by value; the feed does not enter them): three
  # validation programs and three run references, and the stream's
  # validation sampler for the unplaced and the two placed sources (mesh
  # sharding is part of the key). Ahead-of-time compilation matched the
  # later calls' keys, or the main thread would have traced them again.
  traced_by = report["validation_traced_by"]
  assert {thread for _, thread in traced_by} == {
      "ott_enot-compile-validation"}, traced_by
  names = [fun for fun, _ in traced_by]
  assert sorted(names) == sorted(
      ["validate", "validation_reference", "_valid_batch"] * 3), traced_by


def test_iterator_batches_are_placed_split(report):
  placed = report["placed"]
  assert placed["spec"].replace("PartitionSpec", "P") == "P(None, 'batch')"
  assert placed["shards"] == [[50, N // 2, D], [50, N // 2, D]]
  assert len(set(placed["devices"])) == 2


def test_compiled_chunk_holds_half_batches_per_device(report):
  hlo = report["hlo"]
  assert hlo["half_rows"] > 0 and hlo["full_rows"] == 0, hlo
  assert hlo["all_reduce"] > 0, hlo  # the gradient means over devices


@pytest.mark.parametrize("what,name", [
    ("fit", "`batch_size`"),
    ("iter", "`trainloader_source`"),
    ("sampler", "sampler"),
])
def test_batch_that_does_not_split_is_refused(report, what, name):
  msg = report["errors"][what]
  assert msg is not None, what
  assert name in msg and str(N - 1) in msg and "2 devices" in msg, msg
  assert "multiple of 2" in msg, msg
  assert report["compiled_by_errors"] == 0


def test_a_population_on_two_devices_agrees_with_one(report):
  a, b = report["population"]["none"], report["population"]["two"]
  np.testing.assert_allclose(b["forward"], a["forward"], atol=2e-5)
  np.testing.assert_allclose(b["w_dist"], a["w_dist"], rtol=1e-4, atol=1e-5)
  assert np.shape(a["w_dist"]) == (4, 2)  # validations (+ the last) x members
  assert "NamedSharding" in b["sharding"]
  assert "P()" in b["sharding"].replace("PartitionSpec", "P")  # replicated
  # two members, two different maps
  gap = np.max(np.abs(np.subtract(a["forward"][0], a["forward"][1])))
  assert gap > 1e-3, gap


def test_conditional_model_on_two_devices_agrees_with_one(report):
  one, two = report["conditional"]["none"], report["conditional"]["two"]
  np.testing.assert_allclose(two["forward"], one["forward"], atol=2e-4)
  # per-condition validation (the held-out condition 0.5 included)
  np.testing.assert_allclose(two["fit"], one["fit"], rtol=1e-3, atol=1e-5)
  assert len(one["fit"][0]) == 3
  assert "NamedSharding" in two["sharding"]
  assert "P()" in two["sharding"].replace("PartitionSpec", "P")  # replicated


def test_entropic_plan_on_two_devices_agrees_with_one(report):
  """Chains, buffer and energy live in the state: replicated on the mesh,
  the plan trained on 2 devices is the 1-device plan (the batch's mean
  gradient reduced across devices, every chain's noise the same)."""
  one, two = report["entropic"]["none"], report["entropic"]["two"]
  assert one["step"] == two["step"] == 40
  assert len(one["state"]) == len(two["state"])
  for a, b in zip(one["state"], two["state"]):
    np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(two["draws"], one["draws"], rtol=2e-4,
                             atol=2e-4)
  assert np.shape(one["draws"]) == (5, 3, D)
  # every array of the state replicated
  assert [spec.replace("PartitionSpec", "P") for spec in two["sharding"]] == [
      "P()"], two["sharding"]
  assert one["moved"] > 1e-3, one["moved"]  # the energy trained
