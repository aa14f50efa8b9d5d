"""The ask/tell interface shared by every search algorithm.

A search proposes candidate configurations (:meth:`Search.ask`) and learns from their scores
(:meth:`Search.tell`). Asking several times before telling is the asynchronous case: many Dask
workers train candidates at once, and each finished one is told while others still run. The
base class keeps the bookkeeping every algorithm shares, so the algorithms only say how to
propose a configuration and what to do with a result:

- trial ids (0, 1, 2, ... in the order of the asks), the pending trials and the history;
- validation of :meth:`Search.tell`'s arguments; a non-finite objective with status
  ``"success"`` is recorded as ``"failed"``;
- distinct configurations: a proposal equal to one asked before is drawn again, then replaced
  by random samples of the space (only an exhausted space, or a configuration queued
  several times with :meth:`Search.enqueue`, repeats one);
- determinism: one :class:`numpy.random.Generator` made from ``random_state`` drives every
  draw, so the same sequence of asks and tells gives the same configurations;
- resuming: :meth:`Search.add` records trials evaluated elsewhere (a journal of an earlier
  run) as if they had been asked and told.
"""

import abc
import collections
import dataclasses
import math
import numbers
import operator

import numpy as np

from ..space import SearchSpace
from ..space._dimensions import _plain
from ..space._space import config_key

__all__ = ["STATUSES", "Result", "Search", "Trial"]

#: The statuses :meth:`Search.tell` accepts. Every status but ``"success"`` means the candidate
#: produced no usable score (training raised, diverged, ran past its time limit, or its worker
#: was lost) and comes with ``objective=None``.
STATUSES = ("success", "failed", "diverged", "timeout", "lost")

#: Proposals drawn from the algorithm, then random samples drawn, to find a new configuration.
_PROPOSAL_TRIES = 10
_RANDOM_TRIES = 50


@dataclasses.dataclass(frozen=True)
class Trial:
    """A candidate to evaluate: what :meth:`Search.ask` returns.

    Attributes
    ----------
    trial_id : int
        The id to pass back to :meth:`Search.tell`; 0, 1, 2, ... in the order of the asks.
    config : dict
        The flat configuration (dimension name -> value) of the active dimensions; a copy the
        caller may keep or change.
    """

    trial_id: int
    config: dict


@dataclasses.dataclass(frozen=True)
class Result:
    """A told trial: one entry of :attr:`Search.history`.

    Attributes
    ----------
    trial_id : int
    config : dict
    objective : float or None
        The validation NLL (lower is better); None unless ``status == "success"``.
    status : str
        One of :data:`STATUSES`.
    """

    trial_id: int
    config: dict
    objective: float | None
    status: str

    @property
    def ok(self):
        """Whether the trial produced a usable score (``status == "success"``)."""
        return self.status == "success"


def _copy(result):
    return dataclasses.replace(result, config=dict(result.config))


def _check_random_state(random_state):
    try:
        if isinstance(random_state, bool):  # not a seed, though numpy takes True for 1
            raise TypeError
        return np.random.default_rng(random_state)
    except (TypeError, ValueError):
        raise ValueError(
            f"random_state must be None, an int >= 0, a numpy SeedSequence or Generator; got "
            f"{random_state!r}. Pass e.g. random_state=0 for a reproducible search."
        ) from None


def _check_real(name, value, rule, ok, fix):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or not ok(value)):
        raise ValueError(f"{name} must be {rule}; got {value!r}. {fix}")
    return float(value)


def _check_outcome(objective, status):
    """Validate a told outcome; return ``(objective, status)`` as recorded."""
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(map(repr, STATUSES))}; got "
                         f"{status!r}. Use 'failed' for any other failure.")
    if status == "success":
        if (objective is None or isinstance(objective, (bool, np.bool_))
                or not isinstance(objective, numbers.Real)):
            raise ValueError(f"objective must be a real number when status is 'success'; "
                             f"got {objective!r}. Pass the validation NLL, or a failure "
                             "status such as status='failed'.")
        objective = float(objective)
        if not math.isfinite(objective):
            objective, status = None, "failed"
    elif objective is not None:
        raise ValueError(f"objective must be None when status is {status!r} (the trial "
                         f"produced no usable score); got {objective!r}. Pass "
                         "objective=None, or status='success' with the score.")
    return objective, status


class Search(abc.ABC):
    """Base class of the search algorithms: an ask/tell loop over a search space.

    Subclasses implement :meth:`_propose` (one configuration) and may extend
    :meth:`_on_ask` and :meth:`_on_tell` to follow the trials.

    Parameters
    ----------
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds every draw. The same seed and the same sequence of asks and tells give the same
        configurations. A Generator is used as is (and advanced).

    Attributes
    ----------
    space : SearchSpace
    history : list of Result
        The told trials, in the order they were told (failures included).
    """

    def __init__(self, space=None, random_state=None):
        self.space = SearchSpace.coerce(space)
        self.random_state = random_state
        self._rng = _check_random_state(random_state)
        self._next_id = 0
        self._pending = {}        # trial_id -> config, in the order of the asks
        self._results = []        # Result, in the order of the tells
        self._told = {}           # trial_id -> Result
        self._asked = collections.Counter()   # config_key -> times asked (or added)
        self._queue = []          # configurations to propose before the algorithm's own
        self._dequeued = collections.Counter()  # config_key -> times taken from the queue

    # ----------------------------------------------------------------------------- state
    @property
    def n_pending(self):
        """Number of trials asked and not yet told."""
        return len(self._pending)

    @property
    def n_told(self):
        """Number of trials told, failures included."""
        return len(self._results)

    @property
    def pending(self):
        """The pending trials, in the order they were asked (a list of :class:`Trial`)."""
        return [Trial(i, dict(c)) for i, c in self._pending.items()]

    @property
    def history(self):
        """The told trials, in the order they were told (a list of :class:`Result`)."""
        return [_copy(r) for r in self._results]

    @property
    def best(self):
        """The successful trial with the lowest objective (the earliest on ties).

        Returns
        -------
        Result or None
            None until a trial succeeded.
        """
        best = None
        for result in self._results:
            if result.ok and (best is None or result.objective < best.objective):
                best = result
        return None if best is None else _copy(best)

    def __repr__(self):
        return (f"{type(self).__name__}(n_told={self.n_told}, n_pending={self.n_pending}, "
                f"n_dims={len(self.space.names)})")

    # ----------------------------------------------------------------------------- ask
    def ask(self):
        """Propose a configuration to evaluate.

        May be called again before the previous trials are told (asynchronous workers); the
        pending trials are taken into account and the configurations are distinct.

        Returns
        -------
        Trial
        """
        config = key = None
        while self._queue and config is None:
            queued = self._queue.pop(0)
            key = config_key(queued)
            self._dequeued[key] += 1
            # Its n-th copy in the queue is proposed unless it was asked n times already.
            config = queued if self._asked[key] < self._dequeued[key] else None
        if config is None:
            config = self._new_config()
            key = config_key(config)
        trial_id = self._next_id
        self._next_id += 1
        self._pending[trial_id] = config
        self._asked[key] += 1
        self._on_ask(trial_id, config)
        return Trial(trial_id, dict(config))

    def enqueue(self, config):
        """Have the next :meth:`ask` propose ``config`` (a warm start from a known-good one).

        Queued configurations come first, in order. A configuration queued ``n`` times is
        proposed ``n`` times (trials of their own seeds, such as the networks of a deep
        ensemble), counting the times it was asked before: on a resumed search the copies
        already evaluated are skipped. The algorithm's own proposals never repeat one.

        Raises
        ------
        ValueError
            If ``config`` is not valid in the space.
        """
        self.space.validate(config)
        # Python values, as the search's own proposals hold (numpy scalars, e.g. from a row of
        # search_results_, would stop the journal's JSON after the trial trained).
        self._queue.append({name: _plain(value) for name, value in config.items()})

    def _is_new(self, config):
        """Whether ``config`` was never asked."""
        return self._asked[config_key(config)] == 0

    def _new_config(self):
        for _ in range(_PROPOSAL_TRIES):
            config = self._propose()
            if self._is_new(config) and self.space.is_valid(config):
                return config
        config = None
        for _ in range(_RANDOM_TRIES):  # the algorithm is stuck: explore at random
            config = self.space.sample(self._rng)
            if self._is_new(config):
                break
        return config  # a repeat only when the space is (nearly) exhausted

    @abc.abstractmethod
    def _propose(self):
        """Return one configuration (a new dict, valid for the space)."""

    def _on_ask(self, trial_id, config):  # noqa: B027 (an optional hook)
        """Called after a trial was asked (``config`` is the search's own copy)."""

    # ----------------------------------------------------------------------------- tell
    def tell(self, trial_id, objective=None, status="success"):
        """Report the outcome of a trial.

        Parameters
        ----------
        trial_id : int
            The id of a pending trial (from :meth:`ask`, not yet told).
        objective : float or None, default=None
            The validation NLL; lower is better. Required when ``status == "success"``;
            must be None otherwise. A non-finite value (NaN, inf) records the trial as
            ``"failed"``.
        status : {"success", "failed", "diverged", "timeout", "lost"}, default="success"
            Anything but ``"success"`` means the candidate produced no usable score. Failed
            trials are kept in :attr:`history`; how an algorithm uses them is in its docstring.

        Raises
        ------
        ValueError
            If ``trial_id`` is unknown or already told, ``status`` is not one of
            :data:`STATUSES`, or ``objective`` does not match ``status``. Nothing is recorded
            then.
        """
        try:
            trial_id = operator.index(trial_id)
        except TypeError:
            raise ValueError(f"trial_id must be an int returned by ask(); got {trial_id!r}. "
                             "Pass Trial.trial_id.") from None
        if trial_id in self._told:
            raise ValueError(f"trial_id must be a pending trial; got {trial_id}, which was "
                             "already told. Tell each trial once.")
        if trial_id not in self._pending:
            raise ValueError(f"trial_id must be a pending trial (returned by ask() and not yet "
                             f"told); got {trial_id}, which was never asked. Pass "
                             "Trial.trial_id from this search's ask().")
        objective, status = _check_outcome(objective, status)
        config = self._pending.pop(trial_id)
        result = Result(trial_id, config, objective, status)
        self._results.append(result)
        self._told[trial_id] = result
        self._on_tell(result)

    def add(self, trial_id, config, objective=None, status="success"):
        """Record a trial evaluated outside of this search, as if it was asked and told.

        Resumes a search from its journal: the finished trials of an earlier run are added
        (in the order they finished), then the search goes on; ids of later asks continue
        after the largest id added. Random draws are not replayed, so the configurations
        asked next differ from those of an uninterrupted run.

        Parameters
        ----------
        trial_id : int
            An id >= 0 not used by this search yet.
        config : dict
            A valid configuration of the space.
        objective, status
            As in :meth:`tell`.

        Raises
        ------
        ValueError
            If ``trial_id`` is negative or used, ``config`` is not valid for the space
            (:class:`~autodeuq.exceptions.ConfigError`), or the outcome is as :meth:`tell`
            rejects. Nothing is recorded then.
        """
        given = trial_id
        try:
            trial_id = None if isinstance(given, bool) else operator.index(given)
        except TypeError:
            trial_id = None
        if trial_id is None or trial_id < 0:
            raise ValueError(f"trial_id must be an int >= 0; got {given!r}. Pass the id "
                             "the trial had when it was asked.")
        if trial_id in self._told or trial_id in self._pending:
            raise ValueError(f"trial_id must not be used by this search yet; got {trial_id}, "
                             "which was already asked. Add each trial once, before asking.")
        self.space.validate(config)
        objective, status = _check_outcome(objective, status)
        config = dict(config)
        self._next_id = max(self._next_id, trial_id + 1)
        self._asked[config_key(config)] += 1
        result = Result(trial_id, config, objective, status)
        self._results.append(result)
        self._told[trial_id] = result
        self._on_tell(result)

    def _on_tell(self, result):  # noqa: B027 (an optional hook)
        """Called after a trial was told (``result.config`` is the search's own copy)."""
