"""Exceptions raised by autodeuq.

Every exception derives from :class:`AutoDEUQError`, so ``except AutoDEUQError`` catches
anything the package raises on purpose. Each also derives from the built-in or scikit-learn
exception a user would expect (``ValueError``, ``NotFittedError``, ...), so code written for
scikit-learn estimators keeps working.
"""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "AutoDEUQError",
    "ClusterStartError",
    "ConfigError",
    "NotFittedError",
    "PersistenceError",
    "SchedulerConnectionError",
    "TimeLimitExceeded",
    "TrainingDivergedError",
    "WorkersLostError",
]


class AutoDEUQError(Exception):
    """Root of every exception autodeuq raises on purpose."""


class ClusterStartError(AutoDEUQError, RuntimeError):
    """The embedded Dask cluster's worker processes could not start.

    The usual cause is a script that calls ``fit`` without an ``if __name__ == "__main__":``
    guard: each worker process imports the main module first, and would run the script (and
    start a cluster of its own) again. The message says so, and the other ways out.
    """


class ConfigError(AutoDEUQError, ValueError):
    """A network or training configuration is malformed."""


class NotFittedError(AutoDEUQError, _SklearnNotFittedError):
    """An estimator was used before ``fit``."""


class PersistenceError(AutoDEUQError, ValueError):
    """A saved model cannot be loaded: not an autodeuq model file, damaged, or written in a
    newer format version than this autodeuq reads. The message names the file, what is wrong
    and the fix."""


class SchedulerConnectionError(AutoDEUQError, ConnectionError, ValueError):
    """No Dask scheduler answered at the ``scheduler`` address or scheduler file.

    Raised before any trial starts. A ``ConnectionError`` (the scheduler may be down), and a
    ``ValueError`` like every other bad argument of a fit.
    """


class TrainingDivergedError(AutoDEUQError, FloatingPointError):
    """Training produced a non-finite (NaN or infinite) loss.

    Attributes
    ----------
    epoch : int
        The epoch (1-based) at which the loss stopped being finite.
    loss_name : str
        Which loss was non-finite, ``"train_loss"`` or ``"valid_loss"``.
    """

    def __init__(self, message, *, epoch=None, loss_name=None):
        super().__init__(message)
        self.epoch = epoch
        self.loss_name = loss_name


class TimeLimitExceeded(AutoDEUQError, TimeoutError):
    """Training went past its time limit (a search trial's ``trial_timeout``)."""


class WorkersLostError(AutoDEUQError, RuntimeError):
    """Every Dask worker of a search's cluster is gone, and none came back in time.

    The message says how long the cluster had no worker and how to recover: trials finished
    before are kept in ``checkpoint_dir`` (when set), so fitting again with it resumes.
    """
