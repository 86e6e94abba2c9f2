r"""Optax optimisers as hashable values, so that equal settings share programs.

An optax :class:`~optax.GradientTransformation` is a pair of closures, equal
only to itself: two solvers built with ``optax.adam(1e-3)`` each carry a new
one, and every jitted program whose static configuration holds it compiles
again. :class:`OptaxCall` describes the call instead, ``optax.<name>(*args,
**kwargs)``, as a frozen value compared by its name and arguments; it builds
the transformation where it is used (inside the traced step), so two
descriptions of the same call share their compiled programs::

  from ott_enot import optax_call as oc
  opt = oc.adam(learning_rate=oc.cosine_decay_schedule(1e-3, 20_000), b1=0.9)
  opt == oc.adam(learning_rate=oc.cosine_decay_schedule(1e-3, 20_000), b1=0.9)
  # True; opt.init(params), opt.update(grads, state, params) as optax's

Arguments may be numbers, strings, :obj:`None`, other descriptions (a
schedule, a chain's parts), tuples, lists and dicts of these, and hashable
callables (compared by identity, as Python compares functions). Arrays are
refused: they have no value equality (pass the optax transformation itself;
it is then compared by identity, and each solver built with it compiles its
own programs).
"""
import dataclasses
from typing import Any, Callable, Tuple

import numpy as np
import optax

__all__ = ["OptaxCall", "optax_call", "freeze"]

_KINDS = ("tuple", "list", "dict")


@dataclasses.dataclass(frozen=True)
class _Frozen:
  """A list, tuple or dict of frozen values, rebuilt by ``_thaw``."""
  kind: str
  items: Tuple[Any, ...]


def freeze(value: Any, where: str = "argument") -> Any:
  """``value`` as a hashable value that ``_thaw`` turns back.

  Numbers become Python numbers (``np.float64(0.9)`` is ``0.9``), containers
  ``_Frozen`` values; anything else must be hashable.

  Raises:
    TypeError: for an array or another unhashable value, naming ``where``.
  """
  if isinstance(value, (bool, int, float, str, type(None), OptaxCall)):
    return value
  if isinstance(value, np.generic) and value.ndim == 0:
    return value.item()
  if isinstance(value, (tuple, list)):
    return _Frozen(type(value).__name__,
                   tuple(freeze(v, where) for v in value))
  if isinstance(value, dict):
    return _Frozen("dict", tuple(sorted(
        ((freeze(k, where), freeze(v, where)) for k, v in value.items()),
        key=repr)))
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    raise TypeError(
        f"{where} is an array ({type(value).__name__} of shape "
        f"{np.shape(value)}): a hashable optimiser description takes "
        f"numbers, strings, tuples and other descriptions; pass a Python "
        f"number or the optax transformation itself."
    )
  try:
    hash(value)
  except TypeError as e:
    raise TypeError(
        f"{where} ({type(value).__name__}) is not hashable: a hashable "
        f"optimiser description takes numbers, strings, tuples, dicts, "
        f"functions and other descriptions."
    ) from e
  return value


def _thaw(value: Any, build: bool = True) -> Any:
  """The value :func:`freeze` froze; descriptions built into optax (or, with
  ``build=False``, kept as they are, for :func:`repr`)."""
  if isinstance(value, OptaxCall) and build:
    return value.build()
  if isinstance(value, _Frozen):
    thaw = lambda v: _thaw(v, build)
    if value.kind == "dict":
      return {thaw(k): thaw(v) for k, v in value.items}
    items = [thaw(v) for v in value.items]
    return items if value.kind == "list" else tuple(items)
  return value


@dataclasses.dataclass(frozen=True)
class OptaxCall:
  """``optax.<name>(*args, **kwargs)`` as a hashable value.

  Compared and hashed by ``name`` and the arguments, so that two equal
  descriptions (two solvers of equal settings) share compiled programs. It
  has optax's ``init`` and ``update`` (building the transformation, which is
  cheap, on each call: inside a traced step it is built once per trace), and
  describes a schedule as well (:meth:`build` gives optax's function of the
  step). Build one with :data:`optax_call` (``optax_call.adam(1e-3)``) or
  :meth:`of`.

  Attributes:
    name: The name of the optax function (``"adam"``, ``"chain"``,
      ``"cosine_decay_schedule"``, ...).
    args: Its positional arguments, frozen.
    kwargs: Its keyword arguments as sorted ``(name, value)`` pairs, frozen.
  """
  name: str
  args: Tuple[Any, ...] = ()
  kwargs: Tuple[Tuple[str, Any], ...] = ()

  @classmethod
  def of(cls, name: str, *args: Any, **kwargs: Any) -> "OptaxCall":
    """The description of ``optax.<name>(*args, **kwargs)``.

    Raises:
      ValueError: if optax has no callable ``name``.
      TypeError: for an argument that has no value equality (an array).
    """
    if not callable(getattr(optax, name, None)) or name.startswith("_"):
      raise ValueError(
          f"optax has no function {name!r}: use a name of optax's public "
          f"API, e.g. 'adam', 'chain' or 'cosine_decay_schedule'."
      )
    return cls(
        name,
        tuple(freeze(a, f"`optax.{name}` argument {i}")
              for i, a in enumerate(args)),
        tuple(sorted((k, freeze(v, f"`optax.{name}({k}=...)`"))
                     for k, v in kwargs.items())),
    )

  def build(self) -> Any:
    """The optax object: ``optax.<name>(*args, **kwargs)``, descriptions in
    the arguments built first."""
    return getattr(optax, self.name)(
        *(_thaw(a) for a in self.args),
        **{k: _thaw(v) for k, v in self.kwargs})

  def init(self, params: Any) -> optax.OptState:
    """The optimiser's ``init(params)``."""
    return self.build().init(params)

  def update(self, updates: Any, state: optax.OptState,
             params: Any = None, **extra_args: Any) -> tuple:
    """The optimiser's ``update(updates, state, params)``.

    Args:
      updates: Gradients, a pytree of the parameters' structure.
      state: The optimiser's state.
      params: The parameters (optimisers that need them).
      extra_args: optax's extra arguments (e.g. ``value`` of
        ``optax.contrib`` transformations).

    Returns:
      ``(updates, state)`` as optax's ``GradientTransformation.update``.
    """
    transform = self.build()
    if extra_args:
      return transform.update(updates, state, params, **extra_args)
    return transform.update(updates, state, params)

  def __call__(self, *args: Any) -> Any:
    """A schedule's value: ``optax.<name>(...)(count)``."""
    return self.build()(*args)

  def __repr__(self) -> str:
    parts = [repr(_thaw(a, build=False)) for a in self.args]
    parts += [f"{k}={_thaw(v, build=False)!r}" for k, v in self.kwargs]
    return f"optax_call.{self.name}({', '.join(parts)})"


class _Namespace:
  """``optax_call.<name>(...)`` is :meth:`OptaxCall.of` ``(name, ...)``."""

  def __getattr__(self, name: str) -> Callable[..., OptaxCall]:
    if name.startswith("_"):
      raise AttributeError(name)
    if not callable(getattr(optax, name, None)):
      raise AttributeError(
          f"optax has no function {name!r} (optax_call.{name}).")
    def call(*args: Any, **kwargs: Any) -> OptaxCall:
      return OptaxCall.of(name, *args, **kwargs)
    call.__name__ = name
    call.__doc__ = f"The hashable description of ``optax.{name}(...)``."
    return call

  def __dir__(self):
    return [n for n in dir(optax)
            if not n.startswith("_") and callable(getattr(optax, n))]

  def __repr__(self) -> str:
    return "optax_call (hashable descriptions of optax calls)"


#: ``optax_call.adam(1e-3)``: the :class:`OptaxCall` of ``optax.adam(1e-3)``.
optax_call = _Namespace()
