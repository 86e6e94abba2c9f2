"""Which ott-jax this package supports, checked once, at import.

ott_enot's drop-in face (:class:`~ott_enot.ExpectileNeuralDual`) is ott's
Linen ``W2NeuralDual`` (``state_f``/``state_g`` as ``PotentialTrainState``,
``setup(rng, neural_f, neural_g, dim_data, optimizer_f, optimizer_g)``,
``get_step_fn``), and its default networks are ott's Linen ``MLP``. ott-jax
0.6.0 is the newest release with that API. On ott's main branch (built as
``0.6.1.devN``) the neural solvers moved to Flax NNX: ``MLP`` and
``W2NeuralDual`` are NNX, ``state_f``/``state_g`` became ``opt_f``/``opt_g``
(``nnx.Optimizer``), ``setup`` takes ``(neural_f, neural_g, optimizer_f,
optimizer_g)`` and ``get_step_fn`` is gone. Rather than fail deep inside a
solver, :func:`check_ott` refuses such an ott at ``import ott_enot`` with
the installed version, the supported ones and what to install.

The pin in ``pyproject.toml`` (:data:`SUPPORTED_OTT`) excludes ott's
pre-releases of 0.6.1 too (PEP 440: ``<0.6.1`` admits no ``0.6.1.devN``);
the check here reads the API itself, for installs that bypass the pin (from
source, ``--no-deps``).
"""
import re
from types import ModuleType
from typing import Optional, Tuple

__all__ = ["SUPPORTED_OTT", "MINIMUM_OTT", "check_ott"]

#: The ott-jax versions this package supports (``pyproject.toml``'s pin).
SUPPORTED_OTT = ">=0.6,<0.6.1"
#: The oldest ott-jax release supported.
MINIMUM_OTT: Tuple[int, ...] = (0, 6)

_INSTALL = f'pip install "ott-jax[neural]{SUPPORTED_OTT}"'


def _release(version: str) -> Tuple[int, ...]:
  """The release numbers of a version string (``"0.6.1.dev3"`` ->
  ``(0, 6, 1)``)."""
  match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
  return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def _nnx_api(potentials: ModuleType, neuraldual: ModuleType) -> Optional[str]:
  """What shows that ott's neural API is NNX, or :obj:`None` (Linen)."""
  from flax import linen as nn  # pylint: disable=import-outside-toplevel
  mlp = getattr(potentials, "MLP", None)
  if not (isinstance(mlp, type) and issubclass(mlp, nn.Module)):
    return ("`ott.neural.networks.potentials.MLP` is not a Linen module (it "
            "is Flax NNX)")
  solver = getattr(neuraldual, "W2NeuralDual", None)
  if solver is None or not hasattr(solver, "get_step_fn"):
    return ("`ott.neural.methods.neuraldual.W2NeuralDual` has no "
            "`get_step_fn` (its NNX form)")
  return None


def check_ott() -> None:
  """Refuse an ott-jax whose neural API this package does not support.

  Raises:
    ImportError: naming the installed version, :data:`SUPPORTED_OTT` and the
      command that installs a supported one, for an ott-jax older than
      :data:`MINIMUM_OTT`, or one whose neural networks and ``W2NeuralDual``
      are Flax NNX (ott's main branch).
  """
  # pylint: disable=import-outside-toplevel
  import ott
  version = getattr(ott, "__version__", "unknown")
  if _release(version) < MINIMUM_OTT:
    reason = "older than 0.6 (ott_enot uses 0.6's costs and potentials)"
  else:
    try:
      from ott.neural.methods import neuraldual
      from ott.neural.networks import potentials
    except ImportError as err:
      reason = f"its neural module does not import ({err}; flax installed?)"
    else:
      reason = _nnx_api(potentials, neuraldual)
  if reason is None:
    return
  raise ImportError(
      f"ott_enot supports ott-jax {SUPPORTED_OTT} (its Linen neural API), but "
      f"ott-jax {version} is installed: {reason}. Install a supported "
      f"version: {_INSTALL}. (Flax NNX networks themselves are supported as "
      f"`neural_f`/`neural_g`: see the README, Networks.)"
  )
