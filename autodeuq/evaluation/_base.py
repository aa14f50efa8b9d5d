"""The evaluator interface: submit trials, collect finished results."""

import abc

__all__ = ["Evaluator"]


class Evaluator(abc.ABC):
    """Runs :func:`train_candidate` for submitted trials and hands back finished results.

    Use as a context manager, or call :meth:`start` and :meth:`close`. ``collect`` blocks until
    at least one trial finishes (or ``timeout`` passes), so a search loop submits a new trial
    the moment a worker frees.
    """

    #: Number of trials that can run at once.
    n_workers = 1

    @property
    def capacity(self):
        """Trials to keep submitted: the workers, plus any queued to start without delay."""
        return self.n_workers

    def start(self, data):
        """Acquire resources and make ``data`` available to the workers (sent once)."""
        return self

    @abc.abstractmethod
    def submit(self, trial_id, config, seed, deadline=None, holdout=None, rungs=None):
        """Start training ``config`` as trial ``trial_id`` (an evaluator may send what was
        submitted at its next :meth:`collect`, so submit a batch, then collect).

        ``deadline`` (Unix time) ends its training normally, keeping the best weights so far:
        the end of the search's time budget. ``holdout`` makes it a refit on all the data,
        ``rungs`` (a hashable tuple of ``(epoch, threshold)`` pairs) discards it early if it
        is poor (see :func:`train_candidate`); neither is passed to the task when None.
        """

    @abc.abstractmethod
    def collect(self, timeout=None):
        """Return a list of finished :class:`TrialResult`; at least one unless ``timeout``."""

    @property
    @abc.abstractmethod
    def n_running(self):
        """Trials submitted and not yet collected."""

    @abc.abstractmethod
    def close(self):
        """Release what :meth:`start` acquired; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
