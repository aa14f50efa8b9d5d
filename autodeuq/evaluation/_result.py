"""TrialResult: what training one candidate produces, as plain data that crosses processes."""

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["STATUSES", "TrialResult"]

#: Trial outcomes. Only "success" carries weights; "discarded" (stopped early at a rung, see
#: :mod:`autodeuq.evaluation._discard`) carries its partial objective only.
STATUSES = ("success", "failed", "diverged", "timeout", "lost", "discarded")


@dataclass
class TrialResult:
    """The outcome of one trial (one candidate trained once).

    Holds only plain data: numpy arrays and Python scalars, never a live module, a tensor on a
    GPU, a client or a future, so it pickles across Dask and into a journal.

    Attributes
    ----------
    trial_id : int
    config : dict
        The candidate configuration (flat search-space keys, or a network config).
    status : str
        One of :data:`STATUSES`.
    objective : float or None
        Validation NLL of the standardized target at the restored epoch (lower is better);
        for ``"discarded"``, the best reached before it stopped; None otherwise.
    valid_mean, valid_var : ndarray of shape (n_valid,) or None
        Predictions on the validation part (standardized units), for ensemble selection; of
        shape (networks, n_valid) for a rescoring of several networks (see
        ``autodeuq.evaluation._train.Resplit``).
    state : dict of str to ndarray, or None
        The trained weights (CPU arrays), to rebuild the network without retraining; None
        for a rescoring of several networks, which is only scored.
    n_epochs, best_epoch : int
    start, end : float
        Unix timestamps of the start and end of training on the worker.
    worker : str
        Where it ran (a Dask worker address, or ``"local:<pid>"``).
    error : str or None
        Error text (with traceback) for a failed trial.
    seed : int
    attempts : int
        How many times it was started (more than 1 after a lost worker).
    rung_nlls : list of [int, float]
        ``[epoch, best validation NLL so far]`` at each rung of early discarding it reached
        (empty without early discarding).
    networks : list of TrialResult
        For a batched refit (``autodeuq.evaluation._train.Refit``), each network's own
        result, with the whole task's start and end; empty otherwise.
    """

    trial_id: int
    config: dict
    status: str
    objective: float | None = None
    valid_mean: np.ndarray | None = field(default=None, repr=False)
    valid_var: np.ndarray | None = field(default=None, repr=False)
    state: dict | None = field(default=None, repr=False)
    n_epochs: int = 0
    best_epoch: int = 0
    start: float = float("nan")
    end: float = float("nan")
    worker: str = ""
    error: str | None = None
    seed: int = 0
    attempts: int = 1
    rung_nlls: list = field(default_factory=list)
    networks: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}; got {self.status!r}.")

    @property
    def ok(self):
        """Whether the trial succeeded (it has an objective and, unless it is a rescoring of
        several networks, weights)."""
        return self.status == "success"

    def drop_arrays(self):
        """Forget the weights and validation predictions (keep the record), to bound memory."""
        self.state = self.valid_mean = self.valid_var = None
        self.networks = []

    @property
    def duration(self):
        """Seconds from the start to the end of training."""
        return self.end - self.start

    def record(self):
        """The JSON-able part (no arrays): what a journal line and a results row hold."""
        row = asdict(self)
        for key in ("valid_mean", "valid_var", "state", "networks"):
            row.pop(key)
        return row
