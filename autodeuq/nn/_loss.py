"""Gaussian negative log-likelihood, the loss every candidate is trained with."""

import math

import torch
from torch import nn

__all__ = ["GaussianNLLLoss", "gaussian_nll_loss"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_nll_loss(mean, var, target):
    """Mean negative log-likelihood of ``target`` under ``N(mean, var)``, constant included.

    Unlike :class:`torch.nn.GaussianNLLLoss` it adds the ``0.5 log(2 pi)`` constant, so the
    value is the true NLL and compares directly with the metrics in
    :mod:`autodeuq.uncertainty`; it also skips that class's per-call checks, which cost a
    synchronisation on every batch.
    """
    return _HALF_LOG_2PI + 0.5 * (torch.log(var) + (target - mean) ** 2 / var).mean()


class GaussianNLLLoss(nn.Module):
    """Criterion taking the ``(mean, var)`` output of :class:`GaussianMLP` and the targets."""

    def forward(self, y_pred, y_true):
        mean, var = y_pred
        return gaussian_nll_loss(mean, var, y_true)
