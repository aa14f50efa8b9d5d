"""Evaluation: training candidates (on Dask workers or in process) and the search loop.

``DaskEvaluator`` is imported on first use, so ``import autodeuq`` does not pay for importing
``distributed``.
"""

from ._base import Evaluator
from ._discard import (
    EARLY_DISCARD,
    EarlyDiscard,
    OneEpoch,
    RungTable,
    SuccessiveHalving,
    make_early_discard,
    rung_threshold,
    search_outcome,
)
from ._journal import (
    Journal,
    checkpoint_lock,
    fingerprint,
    fingerprint_parts,
    open_search,
    search_directory,
)
from ._loop import refit_tasks, run_refits, run_search, trial_seed
from ._progress import SearchProgress
from ._result import STATUSES, TrialResult
from ._serial import SerialEvaluator
from ._train import train_candidate

__all__ = [
    "EARLY_DISCARD",
    "STATUSES",
    "DaskEvaluator",
    "EarlyDiscard",
    "Evaluator",
    "Journal",
    "OneEpoch",
    "RungTable",
    "SearchProgress",
    "SerialEvaluator",
    "SuccessiveHalving",
    "TorchThreads",
    "TrialResult",
    "checkpoint_lock",
    "fingerprint",
    "fingerprint_parts",
    "make_early_discard",
    "open_search",
    "refit_tasks",
    "run_refits",
    "run_search",
    "rung_threshold",
    "search_directory",
    "search_outcome",
    "train_candidate",
    "trial_seed",
]


def __getattr__(name):
    if name in ("DaskEvaluator", "TorchThreads"):
        from . import _dask

        return getattr(_dask, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
