"""DaskEvaluator: trials on Dask workers, asynchronously, on any cluster.

Which cluster: the ``scheduler`` parameter when given (a ``Client``, a scheduler address or a
scheduler-file path, as written by ``dask scheduler --scheduler-file`` on an HPC system), else
the user's active ``Client``, else an embedded cluster that :meth:`DaskEvaluator.start` starts
and :meth:`DaskEvaluator.close` closes: one single-threaded worker process per core, or one per
GPU with ``CUDA_VISIBLE_DEVICES`` pinned. A client or cluster the user made is used and never
closed.
"""

import functools
import logging
import math
import os
import statistics
import time
import uuid
from collections import deque

from distributed.diagnostics.plugin import WorkerPlugin

from ._base import Evaluator
from ._result import TrialResult
from ._train import train_candidate

__all__ = ["DaskEvaluator", "TorchThreads", "available_cores"]

logger = logging.getLogger(__name__)

# Seconds past a trial's own time limit before the evaluator gives up on it (an epoch in
# progress finishes before the in-trial limit is checked).
_TIMEOUT_GRACE = 30.0

# Seconds a worker's queue should cover: about the time from a trial's end to the arrival of
# the trial submitted in its place (Dask's batched streams, the scheduler, this process), with
# room to spare. Trials shorter than this get a deeper queue (see DaskEvaluator.max_prefetch).
_ROUND_TRIP = 0.05

# Seconds of trials one Dask task may hold when trials are very short: each Dask task costs
# about 2 ms of CPU in this process, the scheduler and the worker, whatever it runs, so trials
# of under 5 ms run several to a task (see DaskEvaluator.max_bundle).
_BUNDLE_TIME = 0.01

# Finished trials whose median duration sets the queue depth and the bundle size.
_RECENT = 16


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _warm_up_torch():
    # The first optimizer built in a process imports torch._dynamo (2-3 s): pay it once here.
    import torch

    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(module.parameters(), fused=True)
    module(torch.zeros(1, 2)).sum().backward()
    optimizer.step()


class TorchThreads(WorkerPlugin):
    """Worker plugin: set torch's intra-op threads and warm torch up before the first trial.

    Parameters
    ----------
    threads : int or None, default=None
        Threads per worker; None gives the worker's cores divided by its task threads, so
        concurrent trials do not oversubscribe the cores (two threads per worker on two cores
        made training about 6x slower).
    """

    name = "autodeuq-torch-threads"
    idempotent = True

    def __init__(self, threads=None):
        self.threads = threads

    def setup(self, worker):
        import torch

        threads = self.threads or max(1, available_cores() // max(1, worker.state.nthreads))
        torch.set_num_threads(threads)
        _warm_up_torch()


def _run_trials(task, data, device, trials):
    """Run very short trials one after another in one Dask task (see ``max_bundle``).

    ``trials`` holds ``(config, seed, time_limit, trial_id, deadline, holdout)`` tuples; each
    trial's result, or the exception it raised, comes back in their order.
    """
    outcomes = []
    for config, seed, time_limit, trial_id, deadline, holdout in trials:
        kwargs = {} if holdout is None else {"holdout": holdout}
        try:
            outcomes.append(task(config, data, seed, device, time_limit, trial_id, deadline,
                                 **kwargs))
        except Exception as exc:  # reported for this trial alone, as Dask would
            outcomes.append(exc)
    return outcomes


def _is_worker_loss(exc):
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return isinstance(exc, KilledWorker | CommClosedError | OSError)


class DaskEvaluator(Evaluator):
    """Run trials on Dask workers; results come back as each finishes.

    Parameters
    ----------
    n_workers : int or None, default=None
        Worker processes of an embedded cluster; None uses every available core (or every
        GPU). Ignored with an existing cluster.
    scheduler : distributed.Client, str or None, default=None
        An existing cluster: a ``Client``, a scheduler address (``"tcp://host:8786"``) or the
        path of a scheduler file. None uses the active ``Client``, else an embedded cluster.
    devices : None, "cpu" or sequence of int or str, default=None
        GPUs of an embedded cluster, one worker each (ints, ``"cuda:1"``-style strings or MIG
        UUIDs, set as that worker's ``CUDA_VISIBLE_DEVICES``). None uses every visible CUDA
        device when there are any, else the CPU; ``"cpu"`` never uses a GPU.
    trial_timeout : float or None, default=None
        Seconds of training per trial; past it a trial is recorded as ``"timeout"``.
    max_retries : int, default=1
        Times a trial whose worker was lost is started again before it is recorded as
        ``"lost"``.
    security : distributed.security.Security or None, default=None
        TLS settings for connecting to an external scheduler.
    task : callable, default=train_candidate
        What runs on a worker, with :func:`train_candidate`'s signature and result (tests and
        benchmarks swap in cheaper ones).
    prefetch : int, default=1
        Trials queued on each worker besides the running one, so a worker starts its next
        trial without waiting for a round trip to this process (it halves the scheduling
        overhead of short trials; the search proposes them slightly earlier).
    max_prefetch : int, default=4
        Deepest queue per worker, used only while trials are very short: the queue holds
        enough trials to cover a round trip to this process (about 50 ms), judged from the
        median duration of the last 16 finished trials, between ``prefetch`` and
        ``max_prefetch``. Trials of 50 ms or more always get ``prefetch``, so a model-based
        search is not asked for candidates earlier than the workers need them.
        ``max_prefetch=prefetch`` keeps the queue fixed.
    max_bundle : int, default=8
        Most trials run one after another in one Dask task, used only for trials of under
        5 ms (median of the last 16), whose cost would otherwise be mostly Dask's own per
        task; their results come back together when the task ends. 1 never bundles.

    Notes
    -----
    Trials submitted one after another (as the search loop does) go to the scheduler together,
    as one graph, when :meth:`collect` is next called: one message and one graph update for
    the lot instead of one per trial.
    """

    def __init__(self, n_workers=None, scheduler=None, devices=None, trial_timeout=None,
                 max_retries=1, security=None, task=train_candidate, prefetch=1,
                 max_prefetch=4, max_bundle=8):
        self.n_workers_param = n_workers
        self.scheduler = scheduler
        self.devices = devices
        self.trial_timeout = trial_timeout
        self.max_retries = max_retries
        self.security = security
        self.task = task
        self.prefetch = prefetch
        self.max_prefetch = max_prefetch
        self.max_bundle = max_bundle
        self._n_workers = (0, -1.0)  # (count, when read): the scheduler is asked once a second
        self._client = None
        self._cluster = None
        self._owns_client = False
        self._data = self._raw_data = None
        self._futures = {}  # Dask future -> metadata of its trials (several in a bundle)
        self._pending = []  # submitted, not yet sent to the scheduler (see _flush)
        self._durations = deque(maxlen=_RECENT)
        self._completed = None
        self._device = "cpu"
        self._gpu_resource = False
        self._token = uuid.uuid4().hex[:8]

    # -- lifecycle --------------------------------------------------------------------------

    def _gpu_list(self):
        if isinstance(self.devices, str) and self.devices == "cpu":
            return []
        if self.devices is not None:
            return [str(d).removeprefix("cuda:") for d in self.devices]
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]

    def _start_embedded(self):
        import dask
        from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

        gpus = self._gpu_list()
        # A lost worker makes the task fail at once: the evaluator retries it itself. The
        # scheduler hands each worker its whole queue (up to 1 + max_prefetch Dask tasks)
        # rather than holding tasks past its default 1.1 per thread (which applies once more
        # tasks are in flight than twice the threads, i.e. with a deep queue); the evaluator
        # itself bounds what is in flight (capacity).
        saturation = float(1 + max(self.prefetch, self.max_prefetch))
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.scheduler.worker-saturation": saturation}):
            if gpus:
                workers = {
                    f"gpu-{i}": {"cls": Nanny, "options": {
                        "nthreads": 1, "host": "127.0.0.1", "resources": {"GPU": 1},
                        "env": {"CUDA_VISIBLE_DEVICES": device}, "dashboard_address": None}}
                    for i, device in enumerate(gpus)
                }
                scheduler = {"cls": Scheduler, "options": {
                    "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}
                cluster = SpecCluster(workers=workers, scheduler=scheduler,
                                      silence_logs=logging.ERROR)
                threads = max(1, available_cores() // len(gpus))
            else:
                n = self.n_workers_param or available_cores()
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.ERROR)
                threads = max(1, available_cores() // n)
        return cluster, threads

    def _connect(self):
        from distributed import Client

        target = self.scheduler
        try:
            if os.path.isfile(str(target)):
                return Client(scheduler_file=str(target), security=self.security, timeout="20s")
            return Client(target, security=self.security, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"scheduler={target!r}: could not connect to a Dask scheduler ({exc}). Check "
                "the address or scheduler file and that the scheduler is running, or pass "
                "scheduler=None to start an embedded cluster."
            ) from exc

    def start(self, data):
        from distributed import Client, as_completed, default_client

        threads = None
        if self.scheduler is not None and isinstance(self.scheduler, Client):
            self._client = self.scheduler
        elif self.scheduler is not None:
            self._client, self._owns_client = self._connect(), True
        else:
            try:
                self._client = default_client()
            except ValueError:
                self._cluster, threads = self._start_embedded()
                self._client = Client(self._cluster, set_as_default=False)
                self._owns_client = True
        try:
            self._client.register_plugin(TorchThreads(threads))
            info = self._client.scheduler_info(n_workers=-1)["workers"]
            self._gpu_resource = any("GPU" in w.get("resources", {}) for w in info.values())
            self._device = "cuda" if self._gpu_resource else "cpu"
            logger.debug("Dask dashboard: %s", self._client.dashboard_link)
            self._raw_data = data
            self._scatter()
            # Results are fetched in the background as each trial ends.
            self._completed = as_completed(loop=self._client.loop, with_results=True,
                                           raise_errors=False)
        except BaseException:
            self.close()
            raise
        return self

    def _scatter(self):
        # Once, to every worker; again only if every copy was lost with its workers.
        [self._data] = self._client.scatter([self._raw_data], broadcast=True, hash=False)

    def close(self):
        futures = list(self._futures)
        self._futures, self._pending = {}, []
        self._completed = None
        if self._client is not None and futures:
            self._client.cancel(futures)
        if self._data is not None:
            self._data.release()
            self._data = self._raw_data = None
        if self._owns_client and self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client, self._cluster, self._owns_client = None, None, False

    @property
    def dashboard_link(self):
        """The Dask dashboard's address while started, else None (the progress shows it)."""
        return None if self._client is None else self._client.dashboard_link

    # -- work -------------------------------------------------------------------------------

    @property
    def n_workers(self):
        if self._client is None:
            return 0
        count, when = self._n_workers
        if time.monotonic() - when > 1.0:
            workers = self._client.scheduler_info(n_workers=-1)["workers"].values()
            if self._gpu_resource:
                count = sum(int(w.get("resources", {}).get("GPU", 0)) for w in workers)
            else:
                count = sum(w.get("nthreads", 1) for w in workers)
            self._n_workers = (count, time.monotonic())
        return count

    def _shape(self):
        """``(depth, bundle)``: Dask tasks queued per worker, and trials per Dask task.

        ``(prefetch, 1)`` until trials are known to be very short (see ``max_prefetch`` and
        ``max_bundle``).
        """
        depth, bundle = self.prefetch, 1
        if self._durations:
            median = statistics.median(self._durations)
            if median <= 0:
                return max(depth, self.max_prefetch), max(1, self.max_bundle)
            bundle = max(1, min(self.max_bundle, math.floor(_BUNDLE_TIME / median)))
            wanted = math.ceil(_ROUND_TRIP / (bundle * median))
            depth = max(depth, min(self.max_prefetch, wanted))
        return depth, bundle

    @property
    def capacity(self):
        depth, bundle = self._shape()
        return self.n_workers * (1 + depth) * bundle

    @property
    def n_running(self):
        return sum(map(len, self._futures.values())) + len(self._pending)

    def submit(self, trial_id, config, seed, deadline=None, holdout=None, attempts=1):
        # Sent with the others submitted before the next collect(), as one graph (_flush).
        self._pending.append({"trial_id": trial_id, "config": config, "seed": seed,
                              "attempts": attempts, "limit": self.trial_timeout,
                              "deadline": deadline, "holdout": holdout})

    def _flush(self):
        """Send the pending trials to the scheduler: one ``Client.map`` per ``holdout`` (and
        one more for bundles of very short trials)."""
        if not self._pending:
            return
        if self._data.status != "finished":
            logger.warning("the training data were lost with their workers; sending them again")
            self._scatter()
        pending, self._pending = self._pending, []
        depth, bundle = self._shape()
        groups = {}
        for meta in pending:
            # A trial may wait for those queued before it on its worker (_give_up_at).
            meta["ahead"] = (1 + depth) * bundle
            groups.setdefault(meta["holdout"], []).append(meta)
        resources = {"GPU": 1} if self._gpu_resource else None
        for holdout, metas in groups.items():
            chunks = [metas[i:i + bundle] for i in range(0, len(metas), bundle)]
            single = [c[0] for c in chunks if len(c) == 1]
            bundles = [c for c in chunks if len(c) > 1]
            submitted = time.time()
            if single:
                n = len(single)
                futures = self._client.map(
                    self.task, [m["config"] for m in single], [self._data] * n,
                    [m["seed"] for m in single], [self._device] * n,
                    [m["limit"] for m in single], [m["trial_id"] for m in single],
                    [m["deadline"] for m in single],
                    key=[f"autodeuq-trial-{self._token}-{m['trial_id']}-{m['attempts']}"
                         for m in single],
                    pure=False, resources=resources,
                    **({} if holdout is None else {"holdout": holdout}),
                )
                self._track(futures, [[m] for m in single], submitted)
            if bundles:
                n = len(bundles)
                futures = self._client.map(
                    functools.partial(_run_trials, self.task), [self._data] * n,
                    [self._device] * n,
                    [[(m["config"], m["seed"], m["limit"], m["trial_id"], m["deadline"],
                       m["holdout"]) for m in c] for c in bundles],
                    key=[f"autodeuq-trials-{self._token}-{c[0]['trial_id']}-{c[0]['attempts']}"
                         for c in bundles],
                    pure=False, resources=resources,
                )
                self._track(futures, bundles, submitted)

    def _track(self, futures, metas, submitted):
        self._completed.update(futures)
        for future, trials in zip(futures, metas, strict=True):
            self._futures[future] = [{**m, "submitted": submitted} for m in trials]

    def _wait_ready(self, timeout):
        """Block until a future completes or ``timeout`` seconds pass (None: no limit)."""
        end = None if timeout is None else time.monotonic() + timeout
        condition = self._completed.thread_condition  # as_completed notifies it per future
        with condition:
            while not self._completed.has_ready():
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return
                condition.wait(timeout=left)

    def _give_up_at(self, meta):
        # A queued trial may wait for the ones before it on its worker to finish first (with
        # bundles, also those before it in its own bundle): at most meta["ahead"] trials.
        return meta["submitted"] + meta["ahead"] * meta["limit"] + _TIMEOUT_GRACE

    def collect(self, timeout=None):
        self._flush()
        if not self._futures:
            return []
        # The trials of one Dask task share their submission time and queue.
        give_up = [self._give_up_at(m[0]) for m in self._futures.values()
                   if m[0]["limit"] is not None]
        if give_up:
            until = max(0.0, min(give_up) - time.time())
            timeout = until if timeout is None else min(timeout, until)
        self._wait_ready(timeout)
        done = [(f, r) for f, r in self._completed.next_batch(block=False) if f in self._futures]
        results = [r for f, outcome in done for r in self._finish(f, outcome)]
        now = time.time()
        for future, metas in list(self._futures.items()):
            meta = metas[0]
            if meta["limit"] is not None and now > self._give_up_at(meta):
                del self._futures[future]
                future.cancel()
                results.extend(
                    self._failure(m, "timeout", f"no result {m['limit']}s + {_TIMEOUT_GRACE}s "
                                  "after it could have started; cancelled") for m in metas)
        self._flush()  # retries of trials whose worker was lost
        return results

    def _failure(self, meta, status, error):
        return TrialResult(trial_id=meta["trial_id"], config=meta["config"], status=status,
                           seed=int(meta["seed"]), error=error, attempts=meta["attempts"],
                           start=meta["submitted"], end=time.time())

    def _finish(self, future, outcome):
        """The finished trials of a Dask task; a lost worker's trials are resubmitted instead.

        ``outcome`` is what as_completed fetched: the result (a list of results or exceptions
        for a bundle), ``(type, exc, traceback)`` for an error, or an exception for a cancelled
        future.
        """
        metas = self._futures.pop(future)
        if future.status == "finished":
            outcomes = outcome if len(metas) > 1 else [outcome]
        else:
            outcomes = [outcome[1] if future.status == "error" else None] * len(metas)
        results = []
        for meta, trial in zip(metas, outcomes, strict=True):
            if future.status == "finished" and not (len(metas) > 1
                                                    and isinstance(trial, BaseException)):
                trial.attempts = meta["attempts"]
                duration = trial.end - trial.start
                if math.isfinite(duration):
                    self._durations.append(max(0.0, duration))
                results.append(trial)
                continue
            result = self._settle(meta, trial)
            if result is not None:
                results.append(result)
        return results

    def _settle(self, meta, exc):
        """A trial that raised ``exc`` (None: cancelled): failed, or retried if its worker was
        lost (None then), or lost after ``max_retries``."""
        if exc is None or _is_worker_loss(exc):
            reason = f"worker lost: {type(exc).__name__}: {exc}" if exc else "task cancelled"
            if meta["attempts"] <= self.max_retries:
                logger.warning("trial %d: %s; retrying", meta["trial_id"], reason)
                self.submit(meta["trial_id"], meta["config"], meta["seed"], meta["deadline"],
                            meta["holdout"], meta["attempts"] + 1)
                return None
            return self._failure(meta, "lost", reason)
        return self._failure(meta, "failed", f"{type(exc).__name__}: {exc}")
