"""The model: how maps and potentials come from the networks, ENOT's loss,
the networks, the conjugate solver and the learned potentials.

Layer: above the engine (:mod:`ott_enot.training`, whose checkpoints its
potentials read) and the costs; below the training methods. Files:

- :mod:`~ott_enot.model.parameterisations`: the model description,
  :class:`TransportModel`, one class per parameterisation (:class:`Twist`,
  :class:`Correlation`, :class:`Direct`), the one lookup by name;
- :mod:`~ott_enot.model.networks`: how networks take points and conditions,
  Linen and NNX networks (:class:`NNXNetwork`, :func:`as_network`), the
  default networks, :class:`ConditionalMLP`, :class:`PiecewiseMLP`;
- :mod:`~ott_enot.model.losses`: the expectile loss and ENOT's objective;
- :mod:`~ott_enot.model.conjugate`: :class:`ExpectileConjugateSolver`;
- :mod:`~ott_enot.model.potentials`: :class:`ENOTPotentials`,
  :class:`ConditionalPotentials`;
- :mod:`~ott_enot.model.langevin`: Langevin samplers (ULA, MALA) with an
  adapted step size;
- :mod:`~ott_enot.model.entropic`: the entropic plan as an energy
  (:class:`EnergyModel`) and :class:`EntropicPotentials`.
"""
from ott_enot.model import (
    conjugate,
    entropic,
    langevin,
    losses,
    networks,
    parameterisations,
    potentials,
)
from ott_enot.model.conjugate import ExpectileConjugateSolver
from ott_enot.model.losses import ENOTLossTerms, enot_loss, expectile_loss
from ott_enot.model.networks import (
    CONDITIONING,
    ConditionalMLP,
    NetworkInputs,
    NNXNetwork,
    PiecewiseMLP,
    as_network,
    default_network,
)
from ott_enot.model.parameterisations import (
    MODELS,
    Correlation,
    Direct,
    TransportModel,
    Twist,
    check_networks,
    resolve_parameterisation,
    transport_model,
)
from ott_enot.model.entropic import EnergyModel, EntropicPotentials
from ott_enot.model.potentials import ConditionalPotentials, ENOTPotentials

__all__ = [
    "TransportModel",
    "Twist",
    "Correlation",
    "Direct",
    "MODELS",
    "transport_model",
    "resolve_parameterisation",
    "check_networks",
    "NetworkInputs",
    "NNXNetwork",
    "as_network",
    "CONDITIONING",
    "default_network",
    "ConditionalMLP",
    "PiecewiseMLP",
    "expectile_loss",
    "enot_loss",
    "ENOTLossTerms",
    "ExpectileConjugateSolver",
    "ENOTPotentials",
    "ConditionalPotentials",
    "EnergyModel",
    "EntropicPotentials",
    "conjugate",
    "entropic",
    "langevin",
    "losses",
    "networks",
    "parameterisations",
    "potentials",
]
