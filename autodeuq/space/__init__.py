"""Search spaces for AutoDEUQ: dimensions, conditions, constraints and flat configurations.

A search proposes *flat* configurations (one key per searched value, see
:func:`to_network_config` for the naming) drawn from a :class:`SearchSpace`;
:func:`to_network_config` turns one into the network configuration that
:func:`autodeuq.nn.normalize_config` accepts. :func:`default_space` is the AutoDEUQ space
over Gaussian MLP architectures and their training hyperparameters.
"""

from ._default import (
    ARCHITECTURE,
    MAX_SKIP_DISTANCE,
    TRAINING,
    check_space,
    default_space,
    split_names,
    to_flat_config,
    to_network_config,
)
from ._dimensions import Categorical, Dimension, Float, Int
from ._space import Condition, SearchSpace

__all__ = [
    "ARCHITECTURE",
    "MAX_SKIP_DISTANCE",
    "TRAINING",
    "Categorical",
    "Condition",
    "Dimension",
    "Float",
    "Int",
    "SearchSpace",
    "check_space",
    "default_space",
    "split_names",
    "to_flat_config",
    "to_network_config",
]
