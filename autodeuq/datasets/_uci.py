"""Loader of the UCI regression benchmarks in the standard (PBP) split protocol."""

import os
from pathlib import Path

import numpy as np

__all__ = ["UCI_DATASETS", "load_uci"]

#: Datasets whose files the loader knows (``<name>.npz`` in ``data_dir``).
UCI_DATASETS = ("concrete", "energy", "kin8nm", "power-plant", "yacht")

_ENV = "AUTODEUQ_UCI_DIR"


def load_uci(name, split=0, data_dir=None):
    """Load one train/test split of a UCI regression dataset from a local ``.npz`` file.

    Each file holds ``X`` (n, d), ``y`` (n,) and ``test_mask`` (n_splits, n); split ``s``
    tests on the rows where ``test_mask[s]`` is True and trains on the others. Nothing is
    downloaded.

    Parameters
    ----------
    name : str
        File stem, e.g. ``"yacht"`` (any ``<name>.npz`` in ``data_dir`` works).
    split : int, default=0
        Index of the split.
    data_dir : str or path-like, default=None
        Folder with the files; None uses the ``AUTODEUQ_UCI_DIR`` environment variable.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray
    """
    if data_dir is None:
        data_dir = os.environ.get(_ENV) or None
        if data_dir is None:
            raise ValueError(f"data_dir must be given (the folder holding {name}.npz); got None "
                             f"and ${_ENV} is not set. Pass data_dir= or set {_ENV}.")
    path = Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        found = sorted(p.stem for p in Path(data_dir).glob("*.npz")) if Path(
            data_dir).is_dir() else []
        raise FileNotFoundError(f"name={name!r}: no file {path}. Datasets in {data_dir}: "
                                f"{found or 'none (is data_dir right?)'}.")
    with np.load(path, allow_pickle=False) as data:
        missing = {"X", "y", "test_mask"} - set(data.files)
        if missing:
            raise ValueError(f"{path} must hold arrays X, y and test_mask; it lacks "
                             f"{sorted(missing)}.")
        X, y, masks = data["X"], data["y"], data["test_mask"]
    if X.ndim != 2 or y.shape != (len(X),) or masks.ndim != 2 or masks.shape[1] != len(X):
        raise ValueError(f"{path} must hold X (n, d), y (n,) and test_mask (n_splits, n); got "
                         f"shapes {X.shape}, {y.shape} and {masks.shape}.")
    if not isinstance(split, (int, np.integer)) or isinstance(split, bool) or not (
            0 <= split < len(masks)):
        raise ValueError(f"split must be an int in [0, {len(masks) - 1}] for {name}; got "
                         f"{split!r}.")
    test = masks[split].astype(bool)
    return X[~test], y[~test], X[test], y[test]
