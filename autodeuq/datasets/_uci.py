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
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a dataset's file stem, a non-empty str; got {name!r}. "
                         "Pass e.g. name='yacht' for yacht.npz.")
    if data_dir is None:
        data_dir = os.environ.get(_ENV) or None
        if data_dir is None:
            raise ValueError(f"data_dir must be given (the folder holding {name}.npz); got None "
                             f"and ${_ENV} is not set. Pass data_dir= or set {_ENV}.")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data_dir must be a folder's path (a str or path-like) or None; got "
                         f"{data_dir!r}. Pass the folder holding {name}.npz.")
    path = Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        found = sorted(p.stem for p in Path(data_dir).glob("*.npz")) if Path(
            data_dir).is_dir() else []
        raise FileNotFoundError(f"name={name!r}: no file {path}. Datasets in {data_dir}: "
                                f"{found or 'none (is data_dir right?)'}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:  # numpy calls a file that is no archive a pickle
        raise ValueError(f"{path} must be a numpy .npz archive of arrays X, y and test_mask; "
                         f"it cannot be read as one ({type(exc).__name__}). Write it with "
                         "np.savez(path, X=X, y=y, test_mask=test_mask).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} must be a numpy .npz archive of arrays X, y and test_mask; "
                         "it holds a single array. Write it with np.savez(path, X=X, y=y, "
                         "test_mask=test_mask).")
    with archive as data:
        missing = {"X", "y", "test_mask"} - set(data.files)
        if missing:
            raise ValueError(f"{path} must hold arrays X, y and test_mask; it lacks "
                             f"{sorted(missing)}.")
        try:
            X, y, masks = data["X"], data["y"], data["test_mask"]
        except ValueError:  # an object array: numbers only are read, never a pickle
            raise ValueError(f"{path} must hold numeric arrays X, y and test_mask; one of them "
                             "holds Python objects. Save them as numbers, e.g. "
                             "X.astype(float).") from None
    if (X.ndim != 2 or y.shape != (len(X),) or masks.ndim != 2 or masks.shape[1] != len(X)
            or len(masks) == 0):
        raise ValueError(f"{path} must hold X (n, d), y (n,) and test_mask (n_splits, n); got "
                         f"shapes {X.shape}, {y.shape} and {masks.shape}.")
    if not isinstance(split, (int, np.integer)) or isinstance(split, bool) or not (
            0 <= split < len(masks)):
        raise ValueError(f"split must be an int in [0, {len(masks) - 1}] for {name}; got "
                         f"{split!r}.")
    test = masks[split].astype(bool)
    if test.all() or not test.any():
        raise ValueError(f"{path}: test_mask[{split}] must hold both training and test rows; "
                         f"it marks {int(test.sum())} of {len(test)} rows as test. Fix the "
                         "file's test_mask.")
    return X[~test], y[~test], X[test], y[test]
