"""Gaussian networks: configurations, the torch module, the loss and the trainer."""

from ._batched import member_nll, train_networks
from ._callbacks import BestWeights, DivergenceGuard, RungStop, TimeLimit
from ._config import (
                      ACTIVATIONS,
                      LR_SCHEDULES,
                      OPTIMIZERS,
                      TRAINING_DEFAULTS,
                      layers_from_params,
                      normalize_config,
)
from ._data import TensorBatchIterator, TensorDataset
from ._device import resolve_device
from ._loss import GaussianNLLLoss, gaussian_nll_loss
from ._module import GaussianMLP
from ._predict import PREDICT_BATCH_SIZE, predict_in_batches
from ._stacked import StackedGaussianMLP
from ._trainer import GaussianNet, TrainedNetwork, train_network

__all__ = [
    "ACTIVATIONS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "PREDICT_BATCH_SIZE",
    "TRAINING_DEFAULTS",
    "BestWeights",
    "DivergenceGuard",
    "GaussianMLP",
    "GaussianNLLLoss",
    "GaussianNet",
    "RungStop",
    "StackedGaussianMLP",
    "TensorBatchIterator",
    "TensorDataset",
    "TimeLimit",
    "TrainedNetwork",
    "gaussian_nll_loss",
    "layers_from_params",
    "member_nll",
    "normalize_config",
    "predict_in_batches",
    "resolve_device",
    "train_network",
    "train_networks",
]
