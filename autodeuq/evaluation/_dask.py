"""DaskEvaluator: trials on Dask workers, asynchronously, on any cluster.

Which cluster: the ``scheduler`` parameter when given (a ``Client``, a scheduler address or a
scheduler-file path, as written by ``dask scheduler --scheduler-file`` on an HPC system), else
the user's active ``Client``, else an embedded cluster that :meth:`DaskEvaluator.start` starts
and :meth:`DaskEvaluator.close` closes: one single-threaded worker process per core, or one per
GPU with ``CUDA_VISIBLE_DEVICES`` pinned. A client or cluster the user made is used and never
closed.
"""

import logging
import os
import time
import uuid

from distributed.diagnostics.plugin import WorkerPlugin

from ._base import Evaluator
from ._result import TrialResult
from ._train import train_candidate

__all__ = ["DaskEvaluator", "TorchThreads", "available_cores"]

logger = logging.getLogger(__name__)

# Seconds past a trial's own time limit before the evaluator gives up on it (an epoch in
# progress finishes before the in-trial limit is checked).
_TIMEOUT_GRACE = 30.0


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
    """

    def __init__(self, n_workers=None, scheduler=None, devices=None, trial_timeout=None,
                 max_retries=1, security=None, task=train_candidate, prefetch=1):
        self.n_workers_param = n_workers
        self.scheduler = scheduler
        self.devices = devices
        self.trial_timeout = trial_timeout
        self.max_retries = max_retries
        self.security = security
        self.task = task
        self.prefetch = prefetch
        self._n_workers = (0, -1.0)  # (count, when read): the scheduler is asked once a second
        self._client = None
        self._cluster = None
        self._owns_client = False
        self._data = self._raw_data = None
        self._futures = {}
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
        # A lost worker makes the task fail at once: the evaluator retries it itself.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
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
            logger.info("Dask dashboard: %s", self._client.dashboard_link)
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
        self._futures = {}
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

    @property
    def capacity(self):
        return self.n_workers * (1 + self.prefetch)

    @property
    def n_running(self):
        return len(self._futures)

    def submit(self, trial_id, config, seed, deadline=None, holdout=None, attempts=1):
        limit = self.trial_timeout
        if self._data.status != "finished":
            logger.warning("the training data were lost with their workers; sending them again")
            self._scatter()
        future = self._client.submit(
            self.task, config, self._data, seed, self._device, limit, trial_id,
            deadline, key=f"autodeuq-trial-{self._token}-{trial_id}-{attempts}", pure=False,
            resources={"GPU": 1} if self._gpu_resource else None,
            **({} if holdout is None else {"holdout": holdout}),
        )
        self._completed.add(future)
        self._futures[future] = {"trial_id": trial_id, "config": config, "seed": seed,
                                 "attempts": attempts, "submitted": time.time(),
                                 "limit": limit, "deadline": deadline, "holdout": holdout}

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
        # A queued trial may wait for the ones before it on its worker to finish first.
        return meta["submitted"] + (1 + self.prefetch) * meta["limit"] + _TIMEOUT_GRACE

    def collect(self, timeout=None):
        if not self._futures:
            return []
        give_up = [self._give_up_at(m) for m in self._futures.values() if m["limit"] is not None]
        if give_up:
            until = max(0.0, min(give_up) - time.time())
            timeout = until if timeout is None else min(timeout, until)
        self._wait_ready(timeout)
        done = [(f, r) for f, r in self._completed.next_batch(block=False) if f in self._futures]
        results = [r for r in (self._finish(f, r) for f, r in done) if r is not None]
        now = time.time()
        for future, meta in list(self._futures.items()):
            if meta["limit"] is not None and now > self._give_up_at(meta):
                del self._futures[future]
                future.cancel()
                results.append(self._failure(meta, "timeout", f"no result {meta['limit']}s + "
                                             f"{_TIMEOUT_GRACE}s after it could have started; "
                                             "cancelled"))
        return results

    def _failure(self, meta, status, error):
        return TrialResult(trial_id=meta["trial_id"], config=meta["config"], status=status,
                           seed=int(meta["seed"]), error=error, attempts=meta["attempts"],
                           start=meta["submitted"], end=time.time())

    def _finish(self, future, outcome):
        """A finished trial's result, or None when its lost worker's trial was resubmitted.

        ``outcome`` is what as_completed fetched: the result, ``(type, exc, traceback)`` for
        an error, or an exception for a cancelled future.
        """
        meta = self._futures.pop(future)
        if future.status == "finished":
            outcome.attempts = meta["attempts"]
            return outcome
        exc = outcome[1] if future.status == "error" else None
        if exc is None or _is_worker_loss(exc):
            reason = f"worker lost: {type(exc).__name__}: {exc}" if exc else "task cancelled"
            if meta["attempts"] <= self.max_retries:
                logger.warning("trial %d: %s; retrying", meta["trial_id"], reason)
                self.submit(meta["trial_id"], meta["config"], meta["seed"], meta["deadline"],
                            meta["holdout"], meta["attempts"] + 1)
                return None
            return self._failure(meta, "lost", reason)
        return self._failure(meta, "failed", f"{type(exc).__name__}: {exc}")
