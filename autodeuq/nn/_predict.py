"""Inference in batches of fixed size on the network's device, gathered on the CPU."""

import numbers

import numpy as np
import torch

__all__ = ["PREDICT_BATCH_SIZE", "predict_in_batches"]

#: Rows per forward pass of :func:`predict_in_batches`: the memory a prediction needs on the
#: device is bounded by this many rows' activations, however many rows are predicted.
PREDICT_BATCH_SIZE = 4096


def predict_in_batches(module, X, batch_size=PREDICT_BATCH_SIZE):
    """Mean and variance of a Gaussian network for every row of ``X``, ``batch_size`` rows at
    a time.

    Each batch goes to the device of the module's parameters, through the network (in
    inference mode) and back to the CPU, so a prediction on millions of rows holds only one
    batch on a GPU.

    Parameters
    ----------
    module : torch.nn.Module
        A network returning ``(mean, var)``, e.g. :class:`GaussianMLP`; used as it is (put it
        in evaluation mode first).
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Inputs, converted to the dtype of the module's parameters.
    batch_size : int, default=PREDICT_BATCH_SIZE
        Rows per forward pass.

    Returns
    -------
    mean, var : torch.Tensor of shape (n_samples,)
        On the CPU, in the dtype of the module's parameters.
    """
    if (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}. Use e.g. "
                         f"{PREDICT_BATCH_SIZE}.")
    parameter = next(module.parameters())
    X = torch.as_tensor(X if torch.is_tensor(X) else np.asarray(X), dtype=parameter.dtype)
    means, variances = [], []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            mean, var = module(X[start:start + int(batch_size)].to(parameter.device))
            means.append(mean.cpu())
            variances.append(var.cpu())
    if not means:  # no rows: empty outputs of the right dtype
        empty = torch.empty(0, dtype=parameter.dtype)
        return empty, empty.clone()
    return torch.cat(means), torch.cat(variances)
