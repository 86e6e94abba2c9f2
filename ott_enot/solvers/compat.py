r"""ott's face on the ENOT solver: every ``W2NeuralDual`` / ott 0.4.7-0.5.1 shim.

:class:`ExpectileNeuralDual` is :class:`~ott_enot.ENOTSolver` as a
drop-in for ott's :class:`~ott.neural.methods.neuraldual.W2NeuralDual` and
ott's ``ExpectileNeuralDual`` (0.4.7 to 0.6.0). Everything that exists only
for that is here:

- the keywords ``is_bidirectional`` and ``use_dot_product`` (ott
  0.4.7-0.5.1) and ``back_and_forth`` (``W2NeuralDual``), translated to the
  core's ``bidirectional`` and ``parameterisation``;
- ``W2NeuralDual`` keywords that ENOT accepts but does not use
  (``num_inner_iters``, ``pos_weights``, ``beta``, ``amortization_loss``,
  ``parallel_updates``), with a warning;
- ``W2NeuralDual``'s attributes, set to what describes ENOT
  (``amortization_loss == "objective"``, ``pos_weights is False``, ...);
- :attr:`~ExpectileNeuralDual.state_f` / :attr:`~ExpectileNeuralDual.state_g`
  as ott :class:`~ott.neural.networks.potentials.PotentialTrainState` s;
- ``train_neuraldual``, ``train_neuraldual_parallel``,
  ``train_neuraldual_alternating``, ``train_fn``, ``setup`` and
  ``get_step_fn`` (which raises: ENOT has one step, ``step_fns``).

Not supported: a *gradient network* as ``neural_g`` (a module whose
``is_potential`` is ``False``, such as ott's ``MLP(is_potential=False)``,
that ``W2NeuralDual`` can use as :math:`\nabla g`). ENOT's objective needs
the values :math:`g(y)` (the dual term and the expectile regression on
:math:`f(x) + g(y) - c(x, y)`), which a gradient network does not give; the
solver refuses it with a ``ValueError`` before anything compiles.
"""
import warnings
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import optax
from ott import utils
from ott.neural.methods import neuraldual
from ott.neural.networks import potentials as ott_potentials

from ott_enot.methods import enot as enot_lib
from ott_enot.model import networks
from ott_enot.model import parameterisations as models
from ott_enot.solvers import enot as solver_lib
from ott_enot.training import inputs, sharding

__all__ = ["ExpectileNeuralDual"]


def _warn_unused_w2_options(
    *, num_inner_iters: int, pos_weights: Optional[bool],
    beta: Optional[float], amortization_loss: Optional[str],
    parallel_updates: bool
) -> None:
  """Warn about ``W2NeuralDual`` keywords that ENOT accepts but does not use."""
  ignored = []
  if num_inner_iters != 1:
    ignored.append(f"num_inner_iters={num_inner_iters!r}")
  if pos_weights is not None:
    ignored.append(f"pos_weights={pos_weights!r}")
  if beta is not None:
    ignored.append(f"beta={beta!r}")
  if amortization_loss not in (None, "objective"):
    ignored.append(f"amortization_loss={amortization_loss!r}")
  if not parallel_updates:
    ignored.append("parallel_updates=False")
  if ignored and sharding.is_main_process():  # one voice: process 0
    warnings.warn(
        f"ExpectileNeuralDual ignores the W2NeuralDual option(s) "
        f"{', '.join(ignored)}: ENOT updates both networks from one gradient "
        f"with its own (objective) amortisation and uses the networks as "
        f"given.",
        UserWarning,
        stacklevel=3,
    )


def _direction(
    is_bidirectional: Optional[bool], back_and_forth: Optional[bool],
    bidirectional: Optional[bool]
) -> Optional[bool]:
  """The core's ``bidirectional`` from ott's two names for it."""
  given = {
      name: bool(value) for name, value in (
          ("is_bidirectional", is_bidirectional),
          ("back_and_forth", back_and_forth), ("bidirectional", bidirectional)
      ) if value is not None
  }
  if len(set(given.values())) > 1:
    raise ValueError(
        f"{', '.join(f'`{k}={v}`' for k, v in given.items())} disagree "
        f"(they are names of one option); pass one."
    )
  return next(iter(given.values()), None)


def _parameterisation(use_dot_product: bool,
                      parameterisation: Optional[str]) -> Optional[str]:
  """The core's ``parameterisation`` from ott 0.5.1's ``use_dot_product``."""
  if not use_dot_product:
    return parameterisation
  if parameterisation not in (None, "correlation"):
    raise ValueError(
        f"`use_dot_product=True` means parameterisation='correlation', "
        f"which conflicts with parameterisation={parameterisation!r}; "
        f"pass only one of them."
    )
  return "correlation"


class ExpectileNeuralDual(solver_lib.ENOTSolver, neuraldual.W2NeuralDual):
  r"""ENOT as a drop-in ott neural dual solver.

  :class:`~ott_enot.ENOTSolver` (every argument, the maths and the
  training methods are documented there) with the positional arguments of
  ott 0.6.0's ``ExpectileNeuralDual``: ``dim_data, neural_f, neural_g,
  optimizer_f, optimizer_g, cost_fn, expectile, expectile_loss_coef,
  num_train_iters, valid_freq, log_freq, logging, rng``, with the same
  defaults, and these keywords of ott's (see :mod:`ott_enot.solvers.compat`):

  Args:
    args: ``ENOTSolver``'s positional arguments (above).
    is_bidirectional: ott 0.4.7-0.5.1's name of ``bidirectional``. With the
      default networks, ``False`` selects the direct map, as in ott 0.5.1.
    use_dot_product: Train in correlation form (ott 0.4.7-0.5.1), the same
      as ``parameterisation="correlation"``.
    back_and_forth: ``W2NeuralDual``'s name of ``bidirectional``.
    num_inner_iters: ``W2NeuralDual`` option without meaning in ENOT (both
      networks are updated from one gradient each step); warns unless 1.
    pos_weights: ``W2NeuralDual`` option for ICNNs; ENOT uses the networks as
      given and does not need convexity; warns if set.
    beta: ``W2NeuralDual`` option (weight penalty); warns if set.
    amortization_loss: ENOT's amortisation is the ``"objective"`` form
      (:math:`\mathbb{E}[c(x, T(x)) - g(T(x))]`); warns for ``"regression"``.
    parallel_updates: ENOT always updates both networks together; warns if
      ``False``.
    kwargs: ``ENOTSolver``'s keywords (``parameterisation``,
      ``bidirectional``, ``conjugate_solver``, ``progress_bar``,
      ``chunk_size``, ``checkpoint_*``, ``mesh``).

  Raises:
    TypeError, ValueError: for bad arguments, before anything compiles.
  """

  def __init__(
      self,
      *args: Any,
      is_bidirectional: Optional[bool] = None,
      use_dot_product: bool = False,
      back_and_forth: Optional[bool] = None,
      num_inner_iters: int = 1,
      pos_weights: Optional[bool] = None,
      beta: Optional[float] = None,
      amortization_loss: Optional[str] = None,
      parallel_updates: bool = True,
      **kwargs: Any,
  ):
    _warn_unused_w2_options(
        num_inner_iters=num_inner_iters,
        pos_weights=pos_weights,
        beta=beta,
        amortization_loss=amortization_loss,
        parallel_updates=parallel_updates,
    )
    kwargs["bidirectional"] = _direction(
        is_bidirectional, back_and_forth, kwargs.get("bidirectional")
    )
    kwargs["parameterisation"] = _parameterisation(
        use_dot_product, kwargs.get("parameterisation")
    )
    solver_lib.ENOTSolver.__init__(self, *args, **kwargs)
    # W2NeuralDual's attributes, with the values that describe what ENOT does
    # (its __init__ would store L-BFGS-specific defaults that ENOT ignores)
    self.num_inner_iters = 1
    self.parallel_updates = True
    self.amortization_loss = "objective"
    self.pos_weights = False
    self.beta = 0.0
    self.train_fn = self.train_neuraldual

  # ---- ott's names of the core's attributes ----

  @property
  def is_bidirectional(self) -> bool:
    """ott 0.4.7-0.5.1's name of :attr:`bidirectional`."""
    return self.bidirectional

  @property
  def back_and_forth(self) -> bool:
    """``W2NeuralDual``'s name of :attr:`bidirectional`."""
    return self.bidirectional

  @property
  def use_dot_product(self) -> bool:
    """Whether the map is in correlation form (ott 0.4.7-0.5.1)."""
    return isinstance(self.model, models.Correlation)

  def _train_state_view(self, net: str) -> ott_potentials.PotentialTrainState:
    state: enot_lib.NetworkState = getattr(self.state, net)
    module = self.neural_f if net == "f" else self.neural_g
    forward = net == "f"
    model = self.model

    def value_fn(params: Any, other_potential_value_fn: Any = None):
      del other_potential_value_fn
      if forward and not model.f_is_potential:
        raise NotImplementedError(
            "With the direct parameterisation the f network is the map "
            "T(x), not a potential: use `potential_gradient_fn` for T."
        )
      value = model.potential_f if forward else model.potential_g
      return lambda x: value(params, x[None])[0]

    def gradient_fn(params: Any):
      transport = model.forward_map if forward else model.inverse_map
      return lambda x: transport(params, x[None])[0]

    return ott_potentials.PotentialTrainState(
        step=self.state.step,
        apply_fn=module.apply,
        params=state.params,
        tx=state.tx,
        opt_state=state.opt_state,
        potential_value_fn=value_fn,
        potential_gradient_fn=gradient_fn,
    )

  def _set_train_state(self, net: str, value: Any) -> None:
    network = getattr(self.state, net).replace(
        params=value.params, opt_state=value.opt_state
    )
    self.state = self.state.replace(**{net: network})

  @property
  def state_f(self) -> ott_potentials.PotentialTrainState:
    """The ``f`` network's state as ott's ``PotentialTrainState`` (a view).

    ``params``, ``opt_state`` and ``tx`` are the solver's; ``step`` is the
    run's step counter (``ENOTTrainState.step``, which a
    new run restarts at 0; ott counts updates over all runs);
    ``potential_value_fn(params)`` is the network's potential in the
    training problem and ``potential_gradient_fn(params)`` the map
    :math:`T`, as ``W2NeuralDual``'s callers use them. Assigning a state
    with other ``params`` / ``opt_state`` sets them.
    """
    return self._train_state_view("f")

  @state_f.setter
  def state_f(self, value: Any) -> None:
    self._set_train_state("f", value)

  @property
  def state_g(self) -> ott_potentials.PotentialTrainState:
    """The ``g`` network's state as ott's ``PotentialTrainState`` (a view);
    ``potential_gradient_fn(params)`` is the inverse map (see
    :attr:`state_f`)."""
    return self._train_state_view("g")

  @state_g.setter
  def state_g(self, value: Any) -> None:
    self._set_train_state("g", value)

  # ---- W2NeuralDual's methods ----

  def setup(
      self,
      rng: jax.Array,
      neural_f: Any,
      neural_g: Any,
      dim_data: int,
      optimizer_f: optax.GradientTransformation,
      optimizer_g: optax.GradientTransformation,
  ) -> None:
    """Initialise fresh networks (``W2NeuralDual.setup``): the solver's own
    (equal ones may be passed; an NNX instance restarts from the parameters
    of the one the solver was built with, a function ``rngs -> nnx.Module``
    from ``rng``).

    Args:
      rng: Key of the initialisation.
      neural_f: The solver's ``neural_f`` (or an equal network).
      neural_g: The solver's ``neural_g`` (or an equal network).
      dim_data: The solver's ``dim_data``.
      optimizer_f: Optax optimiser of :math:`f`.
      optimizer_g: Optax optimiser of :math:`g`.

    Raises:
      ValueError: for other networks or another dimension (build a new
        solver for those).
    """
    given = (networks.as_network(neural_f, "neural_f"),
             networks.as_network(neural_g, "neural_g"), dim_data)
    if given != (self.neural_f, self.neural_g, self.dim_data):
      raise ValueError(
          "`setup` re-initialises the solver's own networks; build a new "
          "solver for other networks or another dimension."
      )
    self.state = self.init_state(
        utils.default_prng_key(rng), optimizer_f, optimizer_g
    )

  def train_neuraldual(
      self,
      trainloader_source: Iterator[jnp.ndarray],
      trainloader_target: Iterator[jnp.ndarray],
      validloader_source: Iterator[jnp.ndarray],
      validloader_target: Iterator[jnp.ndarray],
      callback: Optional[Callable[[int, Any], Any]] = None,
      resume: bool = False,
  ) -> solver_lib.Train_t:
    """Train on the loaders and return the logs (``W2NeuralDual``'s
    ``train_neuraldual_*``); otherwise as :meth:`__call__`.

    Args:
      trainloader_source: Iterator of source batches ``[n, d]``.
      trainloader_target: Iterator of target batches ``[m, d]``.
      validloader_source: Iterator of held-out source batches.
      validloader_target: Iterator of held-out target batches.
      callback: Called as ``callback(step, potentials)`` after each chunk of
        steps (a raise stops training; the last good state is kept).
      resume: Go on from the solver's state (and its loaders' positions)
        instead of starting at step 0.

    Returns:
      The logs, ``{"train_logs": ..., "valid_logs": ...}`` with lists of
      floats per logged step (ott's keys).
    """
    feed = inputs.feed_for(
        inputs.Loaders((trainloader_source, trainloader_target,
                        validloader_source, validloader_target)),
        self.model.data_spec)
    return self.train(feed, callback, resume)

  # W2NeuralDual's two training loops both mean "train" for ENOT
  train_neuraldual_parallel = train_neuraldual
  train_neuraldual_alternating = train_neuraldual

  def get_step_fn(self, train: bool, to_optimize: str):
    """Not available: ENOT has no W2NeuralDual step functions.

    Args:
      train: ott's flag (training or evaluation step).
      to_optimize: ott's choice of network (``"f"``, ``"g"``, ``"both"``).

    Raises:
      NotImplementedError: use ``step_fns`` (``{forward: step}``, jitted
        :func:`~ott_enot.methods.enot_step`) instead.
    """
    raise NotImplementedError(
        "ExpectileNeuralDual has no W2NeuralDual step functions "
        f"(get_step_fn(train={train!r}, to_optimize={to_optimize!r})); use "
        "`solver.step_fns[forward](state, x, y)`, the jitted "
        "`ott_enot.methods.enot_step`."
    )
