"""The package's layout: layers that import only downwards, no import cycle,
hypothesis loaded only by the cost tests, and the flat layout's import paths
kept working."""
import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import ott_enot
from ott_enot import _legacy

#: The layers of the package, bottom to top (ARCHITECTURE.md): a module may
#: import modules of its own layer or of the layers below it only.
LAYERS = ("versions", "checks", "costs", "evaluation", "data", "training", "model",
          "methods", "solvers", "testing")


def _import_graph():
  """``{module: {modules it imports}}`` over ott_enot's files (imports
  anywhere in a file, function bodies included), modules named like
  ``model.losses`` and packages like ``model`` (their ``__init__``)."""
  root = pathlib.Path(ott_enot.__file__).parent
  modules = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root).with_suffix("").parts
    modules[".".join(p for p in parts if p != "__init__") or "__init__"] = path

  def resolve(dotted):
    name = dotted[len("ott_enot"):].lstrip(".")
    return name if name in modules else None

  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
          "ott_enot"):
        for alias in node.names:
          target = resolve(f"{node.module}.{alias.name}") or resolve(
              node.module)
          deps.add(target)
      elif isinstance(node, ast.Import):
        deps |= {resolve(a.name) for a in node.names
                 if a.name.startswith("ott_enot")}
    graph[name] = deps - {name, None, ""}
  return graph


def test_the_package_has_no_import_cycles():
  """The modules of ott_enot import each other as a DAG (the package's
  ``__init__``, the demo and the kept old paths aside)."""
  graph = {k: v for k, v in _import_graph().items()
           if k not in ("__init__", "__main__", "_legacy")}
  order, state = [], {}

  def visit(node, path):
    if state.get(node) == "done":
      return
    assert state.get(node) != "open", f"import cycle: {' -> '.join(path)}"
    state[node] = "open"
    for dep in sorted(graph.get(node, ())):
      visit(dep, path + [dep])
    state[node] = "done"
    order.append(node)

  for node in sorted(graph):
    visit(node, [node])
  assert set(order) >= set(graph)


def test_no_layer_imports_a_layer_above_it():
  rank = {layer: i for i, layer in enumerate(LAYERS)}
  upward = []
  for name, deps in _import_graph().items():
    layer = name.split(".")[0]
    if layer not in rank:  # the package's __init__, the demo, old paths
      assert layer in ("__init__", "__main__", "_legacy"), name
      continue
    for dep in deps:
      if rank[dep.split(".")[0]] > rank[layer]:
        upward.append(f"{name} -> {dep}")
  assert not upward, upward
  # every sub-package is a layer
  folders = {p.parent.name for p in pathlib.Path(ott_enot.__file__).parent
             .rglob("__init__.py")} - {"ott_enot"}
  assert folders == set(LAYERS) - {"versions", "checks"}, folders


def test_hypothesis_is_loaded_only_by_the_cost_tests():
  """`import ott_enot` (and training) leaves hypothesis unloaded; the
  property engine loads it when a cost is checked."""
  code = ("import sys, ott_enot; import ott_enot.solvers; "
          "assert 'hypothesis' not in sys.modules; "
          "from ott_enot import testing; assert 'hypothesis' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# names each old module path showed (README, CHANGELOG, tutorial)
OLD_NAMES = {
    "step": ["ENOTTrainState", "NetworkState", "PopulationState",
             "Hyperparameters", "enot_step", "validation_metrics",
             "TrainingDivergedError", "is_forward"],
    "maps": ["TransportModel", "resolve_parameterisation", "check_networks"],
    "loop": ["LoopConfig", "Chunk", "plan_chunks", "run_chunk", "Feed", "train",
             "validate", "chunk_programs_compiled"],
    "feeds": ["ChunkBatches", "StackedBatches", "StreamBatches",
              "SamplerBatches", "DeviceFeed", "IteratorFeed"],
    "solver": ["ENOTSolver", "default_optimizer"],
    "compat": ["ExpectileNeuralDual"],
    "conditional": ["ConditionalExpectileNeuralDual", "ConditionalPotentials"],
    "conditional_data": ["ConditionalStream"],
    "population": ["ENOTPopulation", "PopulationResult", "grid", "Member"],
    "potentials": ["ENOTPotentials"],
    "metrics": ["l2_uv", "sinkhorn_divergence", "fit_and_floor"],
    "sphere": ["exp_map", "log_map", "geodesic_distance", "SphereGeodesicPower"],
    "numerics": ["norm"],
    "checkpoints": ["checkpoint_steps", "CheckpointError", "Checkpointer"],
    "sharding": ["DataParallel", "fingerprint", "batch_mesh"],
    "w2bench": ["W2Pair"],
    "losses": ["enot_loss", "expectile_loss"],
    "networks": ["ConditionalMLP"],
    "conjugate": ["ExpectileConjugateSolver"],
    "properties": ["search", "PROPERTIES"],
}


@pytest.mark.parametrize("old", sorted(_legacy.MOVED))
def test_the_flat_layouts_import_paths_keep_working(old):
  module = importlib.import_module(f"ott_enot.{old}")
  assert getattr(ott_enot, old) is module
  for name in OLD_NAMES[old]:
    assert hasattr(module, name), (old, name)
  # the same objects as at their new homes
  target = importlib.import_module(_legacy.MOVED[old][0])
  for name in OLD_NAMES[old]:
    if hasattr(target, name):
      assert getattr(module, name) is getattr(target, name)
  assert OLD_NAMES.keys() == _legacy.MOVED.keys()


def test_old_paths_in_from_imports():
  code = ("from ott_enot.step import PopulationState, enot_step; "
          "from ott_enot.loop import train; import ott_enot.maps as m; "
          "assert m.TransportModel is __import__('ott_enot').model.TransportModel")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
