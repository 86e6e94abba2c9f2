"""The import paths of the flat layout, kept working.

Until the sub-packages, every part of ott_enot was a module of its own
(``ott_enot.step``, ``ott_enot.maps``, ``ott_enot.loop``, ...); README pages,
notebooks and users' code import them. Each old path now names the module
that does its job (:data:`MOVED`), imported on first use, so that ``import
ott_enot.step``, ``from ott_enot.loop import train`` and ``ott_enot.metrics``
keep working without loading what is not used (hypothesis, for
``ott_enot.properties``). An old module whose job was split is a namespace of
the public names of its new modules.
"""
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Dict, Optional, Tuple

__all__ = ["MOVED", "load", "install"]

#: Old module (under ``ott_enot.``) -> the module(s) that do its job now.
MOVED: Dict[str, Tuple[str, ...]] = {
    "checkpoints": ("ott_enot.training.checkpoints",),
    "compat": ("ott_enot.solvers.compat",),
    "conditional": ("ott_enot.solvers.conditional",),
    "conditional_data": ("ott_enot.data.conditional",),
    "conjugate": ("ott_enot.model.conjugate",),
    "feeds": ("ott_enot.training.feeds",),
    "loop": ("ott_enot.training.loop",),
    "losses": ("ott_enot.model.losses",),
    "maps": ("ott_enot.model.parameterisations",),
    "metrics": ("ott_enot.evaluation.metrics",),
    "networks": ("ott_enot.model.networks",),
    "numerics": ("ott_enot.costs.numerics",),
    "population": ("ott_enot.solvers.population",),
    "potentials": ("ott_enot.model.potentials",),
    "properties": ("ott_enot.costs.properties",),
    "sharding": ("ott_enot.training.sharding",),
    "solver": ("ott_enot.solvers.enot",),
    "sphere": ("ott_enot.costs.sphere",),
    "step": ("ott_enot.methods.enot", "ott_enot.methods.population",
             "ott_enot.training.state"),
    "w2bench": ("ott_enot.evaluation.w2bench",),
}


def load(old: str) -> types.ModuleType:
  """The module of the old path ``ott_enot.<old>``."""
  targets = [importlib.import_module(name) for name in MOVED[old]]
  if len(targets) == 1:
    return targets[0]
  merged = types.ModuleType(
      f"ott_enot.{old}", f"Kept import path: the public names of "
      f"{', '.join(MOVED[old])}.")
  for module in reversed(targets):  # the first module's names win
    for name in module.__all__:
      setattr(merged, name, getattr(module, name))
  merged.__all__ = sorted({n for m in targets for n in m.__all__})
  return merged


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Finds ``ott_enot.<old>`` for the old paths of :data:`MOVED`."""

  def find_spec(self, fullname: str, path=None,
                target=None) -> Optional[importlib.machinery.ModuleSpec]:
    del path, target
    package, _, old = fullname.partition(".")
    if package == "ott_enot" and old in MOVED:
      return importlib.machinery.ModuleSpec(fullname, self)
    return None

  def create_module(self, spec: importlib.machinery.ModuleSpec):
    return load(spec.name.partition(".")[2])

  def exec_module(self, module: types.ModuleType) -> None:
    del module  # loaded by create_module


def install() -> None:
  """Let the import system find the old paths (once)."""
  if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
