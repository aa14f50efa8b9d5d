"""Tensors held on one device and mini-batches drawn by slicing them.

skorch's default ``DataLoader`` collates one sample at a time, which costs 2-5x the training
step itself for small tabular networks. Here the data live as two tensors on the training
device; each epoch draws one permutation and yields contiguous slices of the permuted tensors.
"""

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

__all__ = ["TensorBatchIterator", "TensorDataset"]


class TensorDataset(Dataset):
    """Features and targets as two float tensors of the same length on one device."""

    def __init__(self, X, y=None, device="cpu", dtype=torch.float32):
        self.X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X,
                                 dtype=dtype, device=device)
        self.y = None if y is None else torch.as_tensor(
            np.asarray(y) if not torch.is_tensor(y) else y, dtype=dtype, device=device)
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got shape "
                             f"{tuple(self.X.shape)}. Reshape it, e.g. X.reshape(-1, 1).")
        if self.y is not None and self.y.ndim == 2 and self.y.shape[1] == 1:
            self.y = self.y.reshape(-1)
        if self.y is not None and self.y.ndim != 1:
            raise ValueError(f"y must be 1-D (one target per row); got shape "
                             f"{tuple(self.y.shape)}. Train one network per target.")
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"X and y must have the same length; got {len(self.X)} and "
                             f"{len(self.y)}.")

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], (None if self.y is None else self.y[i])


def _tensors_of(dataset):
    """Return ``(X, y)`` tensors for a TensorDataset, a skorch Dataset or a Subset of either."""
    if isinstance(dataset, Subset):
        X, y = _tensors_of(dataset.dataset)
        index = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long, device=X.device)
        return X[index], (None if y is None else y[index])
    if isinstance(dataset, TensorDataset):
        return dataset.X, dataset.y
    X, y = getattr(dataset, "X", None), getattr(dataset, "y", None)
    if X is None:
        raise TypeError(
            f"TensorBatchIterator needs a TensorDataset, a skorch Dataset or a Subset of one; "
            f"got {type(dataset).__name__}. Wrap the data with autodeuq.nn.TensorDataset."
        )
    data = TensorDataset(X, y)
    return data.X, data.y


class TensorBatchIterator:
    """Iterate over mini-batches of a dataset by slicing whole tensors.

    Parameters
    ----------
    dataset : TensorDataset, skorch Dataset, or torch Subset of one
        The data; a ``Subset`` (as produced by skorch's ``ValidSplit``) is materialised once.
    batch_size : int, default=32
        Rows per batch; the last batch of an epoch may be smaller.
    shuffle : bool, default=False
        Draw a new permutation at the start of every pass.
    seed : int or None, default=None
        Seed of the generator used for the permutations (reproducible shuffling that does not
        touch torch's global random state).
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=None):
        self.X, self.y = _tensors_of(dataset)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def __len__(self):
        return -(-len(self.X) // self.batch_size)

    def __iter__(self):
        X, y, n, size = self.X, self.y, len(self.X), self.batch_size
        if self.shuffle and n > 1:
            perm = torch.randperm(n, generator=self.generator).to(X.device)
            X = X[perm]
            y = None if y is None else y[perm]
        for start in range(0, n, size):
            yield X[start:start + size], (None if y is None else y[start:start + size])
