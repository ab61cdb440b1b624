"""The five Stochastic MuZero networks, the value support and device choice."""

from shared.model.networks import MuZeroNetworks, parameter_counts, select_device
from shared.model.support import ValueSupport

__all__ = ["MuZeroNetworks", "ValueSupport", "parameter_counts", "select_device"]
