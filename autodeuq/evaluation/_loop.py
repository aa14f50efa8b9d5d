"""run_search: the asynchronous ask / submit / collect / tell loop."""

import dataclasses
import logging
import numbers
import time

import numpy as np

from ..space._space import config_key
from ._discard import search_outcome
from ._train import Refit

__all__ = ["refit_tasks", "run_refits", "run_search", "trial_seed"]

logger = logging.getLogger(__name__)


def trial_seed(sequence, trial_id):
    """The seed of trial ``trial_id``: a child of ``sequence`` keyed by the id.

    It depends only on the root seed and the id, not on the order trials finish in, so an
    asynchronous search and its resumed continuation train each trial from the same seed.
    """
    child = np.random.SeedSequence(sequence.entropy,
                                   spawn_key=(*sequence.spawn_key, int(trial_id)))
    return int(child.generate_state(1)[0])


def run_search(search, evaluator, seed_sequence, *, max_evals=None, time_budget=None,
               on_result=None, n_done=0, progress=None, rung_table=None, reserve=None):
    """Run a search until ``max_evals`` trials finished or ``time_budget`` seconds passed.

    A new trial is submitted the moment a worker frees, so no worker waits for the slowest.
    When the time budget runs out no new trial starts, and running ones end with the best
    weights they have (every trial carries the budget's deadline). ``reserve`` keeps the end
    of the budget for work after the search (the refit).

    Parameters
    ----------
    search : autodeuq.search.Search
        Asked for configurations and told their outcomes.
    evaluator : autodeuq.evaluation.Evaluator
        Already started.
    seed_sequence : numpy.random.SeedSequence
        Root of every trial's seed (see :func:`trial_seed`).
    max_evals : int or None
        Trials to run in all, counting ``n_done``.
    time_budget : float or None
        Seconds from the call.
    on_result : callable or None
        Called with each :class:`TrialResult` as it arrives (journal, progress).
    n_done : int, default=0
        Trials finished before (a resumed search).
    progress : autodeuq.evaluation.SearchProgress or None, default=None
        Told of every submitted and finished trial; started here, and closed (its summary
        logged) when the search ends, however it ends.
    rung_table : autodeuq.evaluation.RungTable or None, default=None
        Early discarding: each trial is submitted with the rung thresholds of the values
        recorded so far (frozen then), and each finished trial's rung values are recorded
        in it (a resumed search records the earlier trials before the call).
    reserve : callable or None, default=None
        With ``time_budget``: ``reserve(slots)`` returns the seconds to keep at the end of
        the budget for what follows the search, which trains ``slots`` networks at once (the
        evaluator's ``n_workers``: what follows is a few trainings, none queued behind). It
        is asked before each submission, so it can grow with what the finished trials show;
        the search stops starting trials when no more than that is left, and each trial's
        deadline leaves it free.

    Returns
    -------
    list of TrialResult
        The trials finished by this call, in the order they finished.
    """
    start = time.monotonic()

    def time_left():
        """Seconds the search may still use: the budget's rest less the reserve."""
        if time_budget is None:
            return None
        kept = 0.0 if reserve is None else reserve(evaluator.n_workers)
        return time_budget - kept - (time.monotonic() - start)

    def may_start():
        left = time_left()
        return ((max_evals is None or n_started < max_evals) and (left is None or left > 0))

    results, n_started = [], n_done
    if progress is not None:
        progress.start(evaluator, max_evals=max_evals, time_budget=time_budget, n_done=n_done)
    try:
        while True:
            while may_start() and evaluator.n_running < max(1, evaluator.capacity):
                trial = search.ask()
                options = {} if rung_table is None else {"rungs": rung_table.rungs()}
                left = time_left()
                evaluator.submit(trial.trial_id, trial.config,
                                 trial_seed(seed_sequence, trial.trial_id),
                                 deadline=None if left is None else time.time() + left,
                                 **options)
                n_started += 1
                if progress is not None:
                    progress.submitted(trial.trial_id)
            if evaluator.n_running == 0:
                break
            if progress is not None:
                progress.refresh()
            left = time_left()
            for result in evaluator.collect(timeout=None if left is None or left <= 0 else left):
                search.tell(result.trial_id, *search_outcome(result))
                if rung_table is not None:
                    rung_table.record(result)
                results.append(result)
                logger.debug("trial %d %s objective=%s on %s in %.1fs", result.trial_id,
                             result.status, result.objective, result.worker, result.duration)
                if progress is not None:
                    progress.result(result)
                if on_result is not None:
                    on_result(result)
    except BaseException as exc:
        if progress is not None:
            progress.close(exc)
        raise
    if progress is not None:
        progress.close()
    return results


def run_refits(evaluator, configs, seeds, holdout, deadline=None, together=True, tasks=None):
    """Train each configuration again on all the data, in parallel on the evaluator's workers.

    Each refit early-stops on its own ``holdout`` fraction of the data, drawn from its seed
    (see :func:`train_candidate`), so together the refits see every row. With ``together``,
    refits of the same configuration train in one batched pass (a ``Refit`` holdout, see
    :func:`autodeuq.nn.train_networks`), as few such tasks as keep every worker busy (see
    :func:`refit_tasks`): the same networks in distribution in a fraction of the time, for
    small ones.

    Parameters
    ----------
    evaluator : autodeuq.evaluation.Evaluator
        Already started, with the search's data.
    configs : list of dict
    seeds : list of int
    holdout : float or Resplit
        A fraction: refits. A ``Resplit``: rescorings, each trained alone.
    deadline : float or None, default=None
        Unix time at which every refit ends with the best weights it has (the end of the
        fit's time budget).
    together : bool, default=True
        Batch the refits of one configuration; False trains each alone.
    tasks : list or None, default=None
        Gets the positions in ``configs`` of each training task submitted, in order.

    Returns
    -------
    list of TrialResult
        In the order of ``configs``; ``trial_id`` is the position, counted from -1 down
        (never a search trial's id). Refits trained together share their task's start and
        end, and a failure of the task (one network diverging fails the batch) is each one's.
    """
    batch = together and isinstance(holdout, numbers.Real)
    formed = (refit_tasks(configs, evaluator.n_workers) if batch
              else [[i] for i in range(len(configs))])
    if tasks is not None:
        tasks.extend(formed)
    for task in formed:
        first = task[0]
        evaluator.submit(-1 - first, configs[first], seeds[first], deadline=deadline,
                         holdout=holdout if len(task) == 1 else Refit(
                             float(holdout), tuple(int(seeds[i]) for i in task)))
    by_first = {task[0]: task for task in formed}
    results = {}
    while evaluator.n_running:
        for result in evaluator.collect():
            task = by_first[-1 - result.trial_id]
            parts = result.networks if len(task) > 1 and result.networks else [
                dataclasses.replace(result, seed=int(seeds[i])) for i in task]
            for i, part in zip(task, parts, strict=True):
                part.trial_id, part.attempts = -1 - i, result.attempts
                results[i] = part
            logger.debug("refit %s %s on %s in %.1fs", task, result.status, result.worker,
                         result.duration)
    return [results[i] for i in range(len(configs))]


def refit_tasks(configs, slots):
    """Positions of ``configs`` grouped into the tasks of a batched refit: one per distinct
    configuration (in the order they first appear), the largest split in halves while there
    are fewer tasks than ``slots`` workers, so that none idles while a batch could be shared.
    """
    return batch_tasks([config_key(config) for config in configs], slots)


def batch_tasks(keys, slots):
    """:func:`refit_tasks` of networks given by hashable ``keys``, one per network, equal
    for the networks of one configuration."""
    groups = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    tasks = list(groups.values())
    while tasks and len(tasks) < max(1, slots):
        largest = max(range(len(tasks)), key=lambda t: len(tasks[t]))
        task = tasks[largest]
        if len(task) < 2:
            break
        half = (len(task) + 1) // 2
        tasks[largest:largest + 1] = [task[:half], task[half:]]
    return tasks
