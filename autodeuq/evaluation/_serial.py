"""SerialEvaluator: trials run one at a time in this process (deterministic, no Dask)."""

from collections import deque

from ._base import Evaluator
from ._train import train_candidate

__all__ = ["SerialEvaluator"]


class SerialEvaluator(Evaluator):
    """Run each trial in the calling process when it is collected.

    Parameters
    ----------
    device : str, default="cpu"
    trial_timeout : float or None, default=None
        Seconds of training per trial before it is recorded as ``"timeout"``.
    task : callable, default=train_candidate
        What runs for each trial, with :func:`train_candidate`'s signature and result.
    """

    n_workers = 1

    def __init__(self, device="cpu", trial_timeout=None, task=train_candidate):
        self.device = device
        self.trial_timeout = trial_timeout
        self.task = task
        self._queue = deque()
        self._data = None

    def start(self, data):
        self._data = data
        return self

    def submit(self, trial_id, config, seed, deadline=None, holdout=None, rungs=None):
        self._queue.append((trial_id, config, seed, deadline, holdout, rungs))

    def collect(self, timeout=None):
        if not self._queue:
            return []
        trial_id, config, seed, deadline, holdout, rungs = self._queue.popleft()
        options = {} if holdout is None else {"holdout": holdout}
        if rungs is not None:
            options["rungs"] = rungs
        return [self.task(config, self._data, seed, device=self.device,
                          time_limit=self.trial_timeout, trial_id=trial_id, deadline=deadline,
                          **options)]

    @property
    def n_running(self):
        return len(self._queue)

    def close(self):
        self._queue.clear()
        self._data = None
