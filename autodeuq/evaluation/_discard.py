"""Early discarding: stop training poor candidates at rungs over epochs.

A *rung* is an epoch at which a trial's best validation NLL so far is compared with a
threshold; above it, training stops and the trial is recorded with status ``"discarded"``
(its objective the validation NLL of its best weights when it stopped, as a finished trial's
is, no weights). Two policies share the mechanism:

* :class:`SuccessiveHalving`, asynchronous successive halving (ASHA, Li et al., MLSys 2020):
  rungs at epochs ``r, r*eta, r*eta**2, ...`` (9, 27, 81, ... by default); a trial that
  reaches a rung goes on only if its value there is in the best ``1/eta`` of the values
  recorded at that rung.
* :class:`OneEpoch`, the one-epoch pre-filter of Egele et al. (ESANN 2023, "Is one epoch all
  you need for multi-fidelity hyperparameter optimization?"): one rung at epoch 1; a trial
  trains to the end only if its one-epoch score is in the best ``keep`` fraction of the
  one-epoch scores seen so far.

How the thresholds reach the workers: a trial runs on a Dask worker, which knows nothing of
the others. The search loop keeps a :class:`RungTable` of the values every finished trial
recorded at each rung (discarded trials included: they reached the rung they stopped at) and
sends, with each submission, every rung's current threshold (:func:`rung_threshold`) as a
tuple of ``(epoch, threshold)`` pairs. On the worker a skorch callback
(:class:`autodeuq.nn.RungStop`) compares the trial's value with the threshold at each rung
epoch; any other epoch costs one integer comparison.

The approximation: the thresholds are frozen when the trial is submitted and come from
finished trials only. ASHA proper compares with every value recorded at the rung when the
trial reaches it, running trials included. Here a trial does not see values recorded after
its submission, nor those of trials still running; with ``n`` workers, at most the ``2n``
trials in flight are missing, and a rung discards nothing until ``min_trials`` values were
recorded there. Serial searches (one trial at a time) see every earlier trial's values.

What the search algorithm is told: a discarded trial is told as a success whose objective is
its partial NLL (the best before it stopped), as DeepHyper reports stopped trials. The value
is pessimistic (more training would have lowered it), which is the right direction for a
trial judged poor, and it is never below the best finished trial's NLL (it is above a
threshold that is a rung value of a trial whose final NLL is lower still), so a discarded
trial is never the search's best. Reporting it as failed instead would teach a model-based
search nothing of how poor it was.
"""

import math
import numbers

import numpy as np

from .._checks import check_int

__all__ = [
    "EARLY_DISCARD",
    "EarlyDiscard",
    "OneEpoch",
    "RungTable",
    "SuccessiveHalving",
    "make_early_discard",
    "rung_threshold",
    "search_outcome",
]

#: The names ``early_discard`` accepts, with the policy each stands for.
EARLY_DISCARD = ("successive_halving", "one_epoch")

#: Rungs are generated up to this epoch (networks trained longer have no rung past it).
LAST_RUNG = 100_000


def rung_threshold(values, keep, min_trials):
    """The threshold of one rung: a trial whose value there is above it is discarded.

    A new value ``v`` is in the best ``keep`` fraction of the ``n + 1`` values made of
    ``values`` and ``v`` when at most ``k - 1`` of ``values`` are below it, with ``k =
    max(1, floor((n + 1) * keep))``: that is, when ``v`` is not above the ``k``-th smallest of
    ``values``, which is the threshold.

    Parameters
    ----------
    values : sequence of float
        The values recorded at the rung so far (best validation NLL so far at its epoch).
    keep : float in (0, 1)
        Fraction of trials that go on past the rung.
    min_trials : int
        Values needed before the rung discards anything.

    Returns
    -------
    float
        The ``k``-th smallest value, or ``inf`` (discard nothing) with fewer than
        ``min_trials`` values.
    """
    n = len(values)
    if n == 0 or n < min_trials:
        return math.inf
    k = min(n, max(1, math.floor((n + 1) * keep + 1e-9)))
    return float(np.partition(np.asarray(values, dtype=np.float64), k - 1)[k - 1])


def _check_min_trials(value, keep):
    """``min_trials``, None giving ``ceil(1 / keep)``: enough values that the best fraction
    holds at least one."""
    if value is None:
        return math.ceil(1 / keep - 1e-9)
    return check_int("min_trials", value)


class EarlyDiscard:
    """Base of the early-discarding policies: rung epochs and the fraction kept at each.

    Subclasses set :attr:`keep`, :attr:`min_trials` and :meth:`rung_epochs`.
    """

    #: Fraction of the trials reaching a rung that go on past it.
    keep = 1.0
    #: Values recorded at a rung before it discards anything.
    min_trials = 1

    def rung_epochs(self):
        """The rung epochs (1-based, increasing), up to :data:`LAST_RUNG`."""
        raise NotImplementedError

    def to_dict(self):
        """The class and the constructor's parameters, JSON-able (a checkpoint's fingerprint
        holds it)."""
        return {"class": type(self).__name__, **self._params}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other):
        return type(self) is type(other) and self._params == other._params

    def __hash__(self):
        return hash((type(self).__name__, tuple(self._params.items())))


class SuccessiveHalving(EarlyDiscard):
    """Asynchronous successive halving (ASHA) over epochs.

    Rungs at epochs ``min_epochs * eta**i`` (rounded down, i = 0, 1, ...); at each, a trial
    goes on only if its best validation NLL so far is in the best ``1/eta`` of the values
    recorded there.

    The defaults are the setting measured best on UCI energy and concrete
    (``benchmarks/RESULTS.md``), not ASHA's usual ``min_epochs=1``: the first epochs of a
    Gaussian network rank its final validation NLL poorly (Spearman 0.3-0.6 after one epoch,
    0.6-0.75 after nine), so rungs from epoch 1 discard the eventual best. Over five seeds
    each, rungs from epoch 9, each waiting for nine values, ended a fixed search time with a
    lower best NLL on average than training every candidate to the end; rungs from epoch 1
    (three values) reached the full search's best on one seed of four.

    Parameters
    ----------
    min_epochs : int, default=9
        The first rung (ASHA's minimum resource ``r``).
    eta : float, default=3
        Reduction factor (> 1): rungs ``eta`` times apart, ``1/eta`` kept at each.
    min_trials : int or None, default=9
        Values recorded at a rung before it discards anything; None gives ``ceil(eta)``.
    """

    def __init__(self, min_epochs=9, eta=3, min_trials=9):
        self._params = {"min_epochs": min_epochs, "eta": eta, "min_trials": min_trials}
        self.min_epochs = check_int("min_epochs", min_epochs)
        if (not isinstance(eta, numbers.Real) or isinstance(eta, bool)
                or not math.isfinite(eta) or eta <= 1):
            raise ValueError(f"eta must be a number > 1 (rungs eta times apart, 1/eta of the "
                             f"trials kept at each); got {eta!r}. ASHA's usual value is 3.")
        self.eta = float(eta)
        self.keep = 1 / self.eta
        self.min_trials = _check_min_trials(min_trials, self.keep)

    def rung_epochs(self):
        epochs, value = [], float(self.min_epochs)
        while value <= LAST_RUNG:
            epoch = int(value)
            if not epochs or epoch > epochs[-1]:
                epochs.append(epoch)
            value *= self.eta
        return tuple(epochs)


class OneEpoch(EarlyDiscard):
    """The one-epoch pre-filter (Egele et al., ESANN 2023).

    Every candidate trains one epoch; it trains on to the end only if its validation NLL
    after that epoch is in the best ``keep`` fraction of the one-epoch values seen so far
    (the paper keeps the top K of a fixed set; an asynchronous search keeps a fraction of
    those seen).

    Parameters
    ----------
    keep : float in (0, 1), default=0.2
        Fraction of the candidates trained to the end.
    min_trials : int or None, default=None
        One-epoch values recorded before anything is discarded; None gives ``ceil(1/keep)``.
    """

    def __init__(self, keep=0.2, min_trials=None):
        self._params = {"keep": keep, "min_trials": min_trials}
        if (not isinstance(keep, numbers.Real) or isinstance(keep, bool)
                or not 0 < keep < 1):
            raise ValueError(f"keep must be a fraction in (0, 1) of the candidates trained to "
                             f"the end; got {keep!r}. Try 0.2.")
        self.keep = float(keep)
        self.min_trials = _check_min_trials(min_trials, self.keep)

    def rung_epochs(self):
        return (1,)


def make_early_discard(value):
    """The policy an ``early_discard`` parameter stands for (None for no discarding).

    Raises
    ------
    ValueError
        For anything but None, one of :data:`EARLY_DISCARD` or an :class:`EarlyDiscard`.
    """
    if value is None or isinstance(value, EarlyDiscard):
        return value
    if isinstance(value, str) and value == "successive_halving":
        return SuccessiveHalving()
    if isinstance(value, str) and value == "one_epoch":
        return OneEpoch()
    raise ValueError(f"early_discard must be None, 'successive_halving', 'one_epoch' or an "
                     f"EarlyDiscard (SuccessiveHalving(...), OneEpoch(...)); got {value!r}. "
                     "Use None to train every candidate to the end.")


class RungTable:
    """The values finished trials recorded at each rung, and the thresholds they give.

    Parameters
    ----------
    policy : EarlyDiscard
    """

    def __init__(self, policy):
        self.policy = policy
        self._epochs = policy.rung_epochs()
        self._values = {epoch: [] for epoch in self._epochs}
        self._rungs = None  # cached thresholds, reset by record()

    def record(self, result):
        """Add the rung values of a finished trial (a ``TrialResult``)."""
        for epoch, value in result.rung_nlls:
            if int(epoch) in self._values and math.isfinite(value):
                self._values[int(epoch)].append(float(value))
                self._rungs = None

    def values(self, epoch):
        """The values recorded at rung ``epoch`` (a list, in the order they arrived)."""
        return list(self._values[epoch])

    def rungs(self):
        """What a trial submitted now carries: a tuple of ``(epoch, threshold)`` pairs."""
        if self._rungs is None:
            keep, least = self.policy.keep, self.policy.min_trials
            self._rungs = tuple((epoch, rung_threshold(self._values[epoch], keep, least))
                                for epoch in self._epochs)
        return self._rungs


def search_outcome(result):
    """``(objective, status)`` to tell the search algorithm of a finished trial.

    A discarded trial is told as a success with its partial NLL (see the module docstring);
    any other trial as it is, with an objective only for a success.
    """
    if result.status == "discarded":
        return result.objective, "success"
    return (result.objective if result.ok else None), result.status
