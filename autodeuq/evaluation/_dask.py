"""DaskEvaluator: trials on Dask workers, asynchronously, on any cluster.

Which cluster: the ``scheduler`` parameter when given (a ``Client``, a scheduler address or a
scheduler-file path, as written by ``dask scheduler --scheduler-file`` on an HPC system), else
the user's active ``Client``, else an embedded cluster that :meth:`DaskEvaluator.start` starts
and :meth:`DaskEvaluator.close` closes: one single-threaded worker process per core, or one per
GPU with ``CUDA_VISIBLE_DEVICES`` pinned (``trials_per_device`` per GPU to pack small trials).
A client or cluster the user made is used and never closed.
"""

import contextlib
import functools
import itertools
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections import deque

from distributed.diagnostics.plugin import WorkerPlugin

from .._checks import check_trials_per_device
from ..exceptions import ClusterStartError, SchedulerConnectionError
from ._base import Evaluator
from ._result import TrialResult
from ._train import train_candidate

__all__ = ["DaskEvaluator", "TorchThreads", "available_cores"]

logger = logging.getLogger(__name__)

# Embedded clusters start one at a time in a process: two fits in threads (GridSearchCV with a
# threading backend) starting theirs at once raced in distributed's lazy imports ("module
# 'distributed.dashboard' has no attribute 'scheduler'"). Each still gets its own ports.
_START_LOCK = threading.Lock()

_MAIN_GUARD = 'if __name__ == "__main__":'

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

# How long a search waits while its cluster has no worker before it gives up (a nanny brings
# a killed worker back in seconds): the Dask config key that sets it, and its default.
NO_WORKERS_CONFIG = "autodeuq.no-workers-timeout"
_NO_WORKERS_TIMEOUT = "60s"

# The event a worker logs when a trial starts on it, and how many times a trial lost with a
# worker before it started is sent again without spending one of its attempts.
_STARTED = "autodeuq-trial-started"
_MAX_REQUEUE = 5

# How long to try to reach an external scheduler (Dask retries until then) before giving up.
_CONNECT_TIMEOUT = "20s"

# A trial's GPU request is 1/k of a GPU less this relative margin: k requests of exactly 1/k
# do not always fit in 1 in floating point (k = 9: the ninth finds 1 - 8/9 < 1/9 left).
_GPU_SHARE_MARGIN = 1e-9


def _gpu_share(trials_per_device):
    """The ``GPU`` resource one trial asks for when ``trials_per_device`` share a GPU: 1/k,
    a hair less, so that exactly k fit in one GPU whatever the rounding."""
    return (1.0 - _GPU_SHARE_MARGIN) / trials_per_device


def check_open_client(client):
    """Refuse a ``scheduler`` Client that is closed (or closing): every call on it would fail
    with an AttributeError from inside distributed."""
    if client.status in ("closing", "closed"):
        raise SchedulerConnectionError(
            f"scheduler must be an open distributed.Client; got {client!r}, which is "
            f"{client.status} (after client.close(), or the end of its cluster). Pass an open "
            "Client, the scheduler's address, or None for an embedded cluster.")


def _running_default_client():
    """The session's default Client when it runs, else None. A Client whose connection
    failed stays the default until collected (distributed registers it before connecting):
    it is passed over, with a warning, for an embedded cluster."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:  # distributed's word for "no client"
        return None
    if client.status == "running":
        return client
    logger.warning(
        "The session's default Dask client %r is %s, not running: starting an embedded "
        "cluster instead. Pass scheduler=client (or its address) to use a cluster of yours.",
        client, client.status)
    return None


def check_scheduler_file(path):
    """Refuse a scheduler file that names no scheduler: distributed waits for such a file to
    become valid, then fails on an assertion."""
    problem = None
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError) as exc:  # a JSONDecodeError (empty, truncated) is one
        problem = f"it is not valid JSON ({exc})"
    else:
        if not isinstance(content, dict) or not isinstance(content.get("address"), str):
            problem = "it holds no scheduler \"address\""
    if problem is not None:
        raise SchedulerConnectionError(
            f"scheduler={str(path)!r} is not a Dask scheduler file: {problem}. Pass the file "
            "the scheduler wrote (`dask scheduler --scheduler-file PATH`) once it has started, "
            "or the scheduler's address.")


def scheduler_workers(client):
    """The scheduler's record of each of ``client``'s workers (address: status, threads,
    resources, ...), asked of the scheduler itself.

    Not ``Client.scheduler_info(n_workers=-1)``: that fetches every worker into a cache the
    client's own periodic refresh overwrites every few seconds (2 by default; the scheduler
    may change it) with a record of none (it asks for ``n_workers=0``), and reads the cache
    back after the fetch; a refresh landing in between returns no workers at all (8 reads
    in 1,000 with the refresh every 5 ms). A search then said "the Dask cluster ... has no
    worker" with both workers busy, and "has workers again" a second later.
    """
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def _gpu_slots(worker, trials_per_device):
    """Trials a worker (an entry of :func:`scheduler_workers`) runs at once on its GPU
    resource: as many shares as its ``GPU`` holds, at most its threads (Dask runs one task
    per thread)."""
    shares = math.floor(worker.get("resources", {}).get("GPU", 0) * trials_per_device + 1e-9)
    return min(worker.get("nthreads", 1), shares)


def _gpu_worker_specs(gpus, trials_per_device=1, **options):
    """``SpecCluster`` worker specs of an embedded cluster on GPUs.

    ``trials_per_device`` single-threaded worker processes per GPU (processes, not threads:
    small networks are bound by per-step Python work, and threads would share one GIL), each
    pinned to its GPU with ``CUDA_VISIBLE_DEVICES`` and declaring ``1 / trials_per_device``
    of a ``GPU`` resource, so that a GPU's workers declare one GPU in all.

    Parameters
    ----------
    gpus : list of str
        ``CUDA_VISIBLE_DEVICES`` values, one per GPU (indices or UUIDs).
    trials_per_device : int, default=1
    **options
        More options for every worker's ``Nanny`` (``security``, ``protocol``).

    Returns
    -------
    dict
        Worker name (``gpu-I`` for one trial per GPU, ``gpu-I-J`` for the J-th of several on
        GPU I) to spec.
    """
    from distributed import Nanny

    k = trials_per_device
    return {
        (f"gpu-{i}" if k == 1 else f"gpu-{i}-{j}"): {"cls": Nanny, "options": {
            "nthreads": 1, "host": "127.0.0.1", "resources": {"GPU": 1 / k},
            "env": {"CUDA_VISIBLE_DEVICES": device}, "dashboard_address": None, **options}}
        for i, device in enumerate(gpus) for j in range(k)
    }


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _idle_cores_advice(n_gpus, trials_per_device, cores):
    """What to set when an embedded cluster's GPU workers leave most of the cores idle, or
    None when they do not: one worker per GPU on a machine with at least four cores per GPU.

    Small tabular networks train a step mostly in Python, so one such worker keeps a GPU
    busy a small part of the time (an H200 9%, with 16 cores: ``benchmarks/RESULTS.md``, "On
    one GPU") while the other cores wait."""
    if trials_per_device > 1 or cores < 4 * n_gpus:
        return None
    per_gpu = cores // n_gpus
    return (f"the embedded Dask cluster trains one candidate at a time on each of {n_gpus} "
            f"GPU(s), while this machine has {cores} cores: for small networks, "
            f"trials_per_device={per_gpu} (several candidates per GPU at once) or "
            f"devices='cpu' (one worker per core) trains more of them an hour")


def _warm_up_torch():
    # The first optimizer built in a process imports torch._dynamo (2-3 s): pay it once here.
    import torch

    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(module.parameters(), fused=True)
    module(torch.zeros(1, 2)).sum().backward()
    optimizer.step()


def _main_script():
    """The main module's file when Python runs a script (None in a notebook or a shell)."""
    return getattr(sys.modules.get("__main__"), "__file__", None)


def _importing_script():
    """The script a spawned process is importing as ``__mp_main__`` (multiprocessing's name
    for the parent's main module in a child), else the main module's file."""
    return getattr(sys.modules.get("__mp_main__"), "__file__", None) or _main_script()


def _check_not_importing_main():
    """Refuse to start an embedded cluster from a worker process still importing the main
    module: the script calls ``fit`` outside a main guard, and every worker would run it (and
    start a cluster) again. Said here, in the worker, before any work; the parent hears it as
    its workers failing to start (:func:`_cluster_start_errors`)."""
    # multiprocessing's own test for this (spawn.py, _check_not_importing_main).
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ClusterStartError(
            f"fit was called while a worker process of the embedded Dask cluster imported "
            f"the main module {_importing_script()!r}: the script calls fit outside an "
            f"`{_MAIN_GUARD}` guard, so each worker process runs it again. Put the code that "
            f"calls fit under `{_MAIN_GUARD}`, or pass backend='serial'.")


@contextlib.contextmanager
def _cluster_start_errors():
    """Say why an embedded cluster's workers may have failed to start, and the ways out."""
    try:
        yield
    except RuntimeError as exc:  # distributed's "Nanny failed to start."
        script = _main_script()
        guard = (f" When fit runs from a script ({script!r}), each worker process imports it "
                 f"first: the code that calls fit must be under `{_MAIN_GUARD}` (the error "
                 f"each worker printed above says so if that is the cause)." if script else "")
        raise ClusterStartError(
            f"scheduler=None: the embedded Dask cluster's worker processes failed to start "
            f"({exc}).{guard} Else pass backend='serial' to train in this process, or "
            "scheduler= a running cluster's address.") from exc


def _start_whole(make):
    """``make()`` (a cluster's start) in a thread of its own, so that a Ctrl-C cannot cut it
    short: cut short inside distributed, the start went on in its event loop thread, worker
    processes came up, and nothing held the cluster to close them (they outlived the fit,
    each with its ports open). A Ctrl-C meanwhile waits for the start to end, closes the
    cluster, then is raised; a second one is raised at once."""
    made, running, done = {}, threading.Event(), threading.Event()

    def run():
        running.set()
        try:
            made["cluster"] = make()
        except BaseException as exc:  # re-raised in the caller's thread
            made["error"] = exc
        finally:
            done.set()

    # Waited for on an Event, not Thread.join: a Ctrl-C inside join() makes Python 3.11 take
    # the thread for ended while it still runs. One inside start() (which waits for the
    # thread to run) counts as the first too, once the thread runs.
    interrupted = None
    try:
        threading.Thread(target=run, name="autodeuq-cluster-start", daemon=True).start()
    except KeyboardInterrupt as exc:
        if not running.wait(1.0):
            raise  # no start to wait for
        interrupted = exc
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt as exc:
            if interrupted is not None:
                raise  # the second: the user will not wait
            interrupted = exc
    if interrupted is not None:
        logger.warning("interrupted: closing the Dask cluster that was starting")
    if "error" in made:
        raise made["error"]
    if interrupted is not None:
        _quietly(made["cluster"].close, "closing the embedded Dask cluster")
        raise interrupted
    return made["cluster"]


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


class _TrialStarts(WorkerPlugin):
    """Worker plugin: log an event when a trial's Dask task starts to run on a worker, so a
    trial queued on a worker that dies is known not to have started (see ``_settle``)."""

    name = "autodeuq-trial-starts"
    idempotent = True

    def setup(self, worker):
        self._worker = worker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and isinstance(key, str) and key.startswith("autodeuq-trial"):
            self._worker.log_event(_STARTED, {"key": key, "worker": self._worker.address})


class _ClosingHeartbeat(logging.Filter):
    """Drop the traceback a worker logs when a heartbeat in flight meets its own closing
    (its comms to the scheduler shut under it): the search is over and nothing is wrong
    (dask/distributed#7105). A failed heartbeat of a running worker is still logged."""

    _MESSAGE = "Failed to communicate with scheduler during heartbeat"

    def __init__(self, worker):
        super().__init__()
        self._worker = worker

    def filter(self, record):
        from distributed.core import Status

        closing = self._worker.status in (Status.closing, Status.closing_gracefully,
                                          Status.closed)
        return not (closing and record.getMessage().startswith(self._MESSAGE))


class _QuietClose(WorkerPlugin):
    """Worker plugin of the embedded cluster (whose logging is this package's to tidy, unlike
    a user's cluster): keep the worker's harmless heartbeat traceback at shutdown off the
    user's console (see :class:`_ClosingHeartbeat`)."""

    name = "autodeuq-quiet-close"
    idempotent = True

    def setup(self, worker):  # once per worker process (idempotent: never registered twice)
        logging.getLogger("distributed.worker").addFilter(_ClosingHeartbeat(worker))


def _kill_worker_process(dask_worker):
    """Kill the worker process of a nanny (run there by Client.run): it starts a new one."""
    import psutil

    psutil.Process(dask_worker.process.process.pid).kill()


def _executing(dask_worker):
    """Keys of the tasks running on a worker (cancelled ones too), run there by Client.run."""
    return [ts.key for ts in dask_worker.state.executing]


def _run_trials(task, data, device, trials):
    """Run very short trials one after another in one Dask task (see ``max_bundle``).

    ``trials`` holds ``(config, seed, time_limit, trial_id, deadline, holdout, rungs)``
    tuples; each trial's result, or the exception it raised, comes back in their order.
    """
    outcomes = []
    for config, seed, time_limit, trial_id, deadline, holdout, rungs in trials:
        kwargs = {k: v for k, v in (("holdout", holdout), ("rungs", rungs)) if v is not None}
        try:
            outcomes.append(task(config, data, seed, device, time_limit, trial_id, deadline,
                                 **kwargs))
        except Exception as exc:  # reported for this trial alone, as Dask would
            outcomes.append(exc)
    return outcomes


def _quietly(close, what):
    """Call ``close()``; a failure (e.g. Dask's TimeoutError) is logged, not raised."""
    try:
        close()
    except Exception as exc:  # shutting down: nothing left to protect
        logger.warning("%s failed (%s: %s); going on", what, type(exc).__name__, exc)


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
        GPUs of an embedded cluster, one worker each (``trials_per_device`` each with more;
        ints, ``"cuda:1"``-style strings or MIG UUIDs, set as that worker's
        ``CUDA_VISIBLE_DEVICES``). None uses every visible CUDA
        device when there are any, else the CPU; ``"cpu"`` never uses a GPU.
    trials_per_device : int, default=1
        Trials that share one GPU at once, for candidates too small to fill a GPU alone. An
        embedded cluster starts that many single-threaded worker processes per GPU (each
        pinned to it and declaring ``1 / trials_per_device`` of a ``GPU`` resource); on an
        existing cluster whose workers offer a ``GPU`` resource, each trial asks for
        ``1 / trials_per_device`` of one, so a worker started with ``--nthreads 2
        --resources GPU=1`` runs two trials at once when ``trials_per_device=2``. Without a
        ``GPU`` resource (on the CPU) it changes nothing.
    trial_timeout : float or None, default=None
        Seconds of training per trial; past it a trial is recorded as ``"timeout"``. A trial
        that does not end by itself (checked after each epoch) is recorded so and cancelled
        once it could have run that long, plus 30 s; if it still runs 30 s later (or when the
        search ends, on a cluster that outlives it), its worker is restarted through its
        nanny to free it.
    max_retries : int, default=1
        Times a trial whose worker was lost is started again before it is recorded as
        ``"lost"`` (``"failed"`` when its worker's nanny killed it for exceeding its memory
        limit, with that said in its error).
    security : distributed.security.Security or None, default=None
        TLS settings (``Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...,
        require_encryption=True)``) to connect to an external scheduler; with an embedded
        cluster, its scheduler and workers use them too (``Security.temporary()`` gives
        throw-away credentials, so no other local user can connect). Ignored when
        ``scheduler`` is a ``Client`` or an active ``Client`` is used: it has its own.
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
    no_workers_timeout : float, str or None, default=None
        Seconds (or a Dask time string, ``"10 minutes"``) the search waits while the cluster
        has no worker before it raises :class:`~autodeuq.exceptions.WorkersLostError`.
        None reads the Dask config key ``autodeuq.no-workers-timeout`` (default ``"60s"``),
        so ``dask.config.set({"autodeuq.no-workers-timeout": "1h"})`` sets it for the
        estimators too; ``math.inf`` waits for ever.

    Attributes
    ----------
    advice : str or None
        Set when an embedded cluster of one worker per GPU starts on a machine with at least
        four cores per GPU: what to set to train more small candidates an hour
        (``trials_per_device`` or ``devices="cpu"``). A search's progress (``verbose``)
        shows it. None otherwise.

    Notes
    -----
    Trials submitted one after another (as the search loop does) go to the scheduler together,
    as one graph, when :meth:`collect` is next called: one message and one graph update for
    the lot instead of one per trial.
    """

    def __init__(self, n_workers=None, scheduler=None, devices=None, trials_per_device=1,
                 trial_timeout=None, max_retries=1, security=None, task=train_candidate,
                 prefetch=1, max_prefetch=4, max_bundle=8, no_workers_timeout=None):
        self.n_workers_param = n_workers
        self.scheduler = scheduler
        self.devices = devices
        self.trials_per_device = trials_per_device
        self.trial_timeout = trial_timeout
        self.max_retries = max_retries
        self.security = security
        self.task = task
        self.prefetch = prefetch
        self.max_prefetch = max_prefetch
        self.max_bundle = max_bundle
        self.no_workers_timeout = no_workers_timeout
        self._no_workers_since = None  # time.monotonic() since when the cluster had none
        self._had_workers = False  # whether this start has seen a worker yet
        self._stuck = {}  # key of a cancelled trial -> (its worker, when to check it, Unix)
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
        #: A line of advice on the settings, shown with the progress (verbose), or None.
        self.advice = None
        self._token = uuid.uuid4().hex[:8]
        self._serial = itertools.count()  # makes every Dask key new (see _key)

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
        from distributed import LocalCluster, Scheduler, SpecCluster

        gpus = self._gpu_list()
        self.advice = None
        # A lost worker makes the task fail at once: the evaluator retries it itself. The
        # scheduler hands each worker its whole queue (up to 1 + max_prefetch Dask tasks)
        # rather than holding tasks past its default 1.1 per thread (which applies once more
        # tasks are in flight than twice the threads, i.e. with a deep queue); the evaluator
        # itself bounds what is in flight (capacity).
        saturation = float(1 + max(self.prefetch, self.max_prefetch))
        # Loopback only; TLS too when security is given (the client inherits it).
        tls = self.security is not None and self.security.require_encryption
        secure = {} if self.security is None else {
            "security": self.security, "protocol": "tls://" if tls else "tcp://"}
        _check_not_importing_main()
        with (_START_LOCK, _cluster_start_errors(),
              dask.config.set({"distributed.scheduler.allowed-failures": 0,
                               "distributed.scheduler.worker-saturation": saturation})):
            if gpus:
                workers = _gpu_worker_specs(gpus, self.trials_per_device, **secure)
                self.advice = _idle_cores_advice(len(gpus), self.trials_per_device,
                                                 available_cores())
                scheduler = {"cls": Scheduler, "options": {
                    "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", **secure}}
                cluster = _start_whole(lambda: SpecCluster(
                    workers=workers, scheduler=scheduler, silence_logs=logging.ERROR,
                    security=secure.get("security")))
                threads = max(1, available_cores() // len(workers))
            else:
                n = self.n_workers_param or available_cores()
                cluster = _start_whole(lambda: LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, **secure))
                threads = max(1, available_cores() // n)
        return cluster, threads

    def _connect(self):
        from distributed import Client

        target = self.scheduler
        try:
            # Not the session's default: a Client that fails to connect stays registered as
            # the default (distributed registers it before connecting), and the user's own
            # dask.config (its default scheduler) is none of the search's business.
            if os.path.isfile(str(target)):
                return Client(scheduler_file=str(target), security=self.security,
                              timeout=_CONNECT_TIMEOUT, set_as_default=False)
            return Client(target, security=self.security, timeout=_CONNECT_TIMEOUT,
                          set_as_default=False)
        except (OSError, TimeoutError, ValueError, AssertionError) as exc:
            # ValueError, AssertionError: distributed's words for an address it cannot parse
            # ('inproc://nothing') or a scheduler file that turned bad after the fit's check.
            raise SchedulerConnectionError(
                f"scheduler={target!r}: could not connect to a Dask scheduler ({exc}). Check "
                "the address or scheduler file and that the scheduler is running, or pass "
                "scheduler=None to start an embedded cluster."
            ) from exc
        except TypeError as exc:  # distributed's word for a tls:// scheduler without TLS
            raise SchedulerConnectionError(
                f"scheduler={target!r}: could not connect: the scheduler uses TLS, and "
                f"security={self.security!r} gives no TLS credentials ({exc}). Pass "
                "security=Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=..., "
                "require_encryption=True) with the cluster's certificates."
            ) from exc

    def start(self, data):
        from distributed import Client, as_completed

        check_trials_per_device(self.trials_per_device)  # before any cluster or connection
        threads = None
        self._had_workers = False
        if self.scheduler is not None and isinstance(self.scheduler, Client):
            check_open_client(self.scheduler)
            self._client = self.scheduler
        elif self.scheduler is not None:
            self._client, self._owns_client = self._connect(), True
        else:
            self._client = _running_default_client()
            if self._client is None:
                self._cluster, threads = self._start_embedded()
        try:
            if self._client is None:  # the embedded cluster's
                self._client = Client(self._cluster, set_as_default=False)
                self._owns_client = True
            self._register(TorchThreads(threads))
            self._register(_TrialStarts())
            if self._cluster is not None:
                self._register(_QuietClose())
            info = scheduler_workers(self._client)
            self._gpu_resource = any("GPU" in w.get("resources", {}) for w in info.values())
            # devices="cpu" never trains on a GPU, even on workers that advertise one.
            cpu_only = isinstance(self.devices, str) and self.devices == "cpu"
            self._device = "cuda" if self._gpu_resource and not cpu_only else "cpu"
            logger.debug("Dask dashboard: %s", self._client.dashboard_link)
            self._raw_data = data
            self._scatter()  # waits for a worker: a clear error, not a hang, if none comes
            # Results are fetched in the background as each trial ends.
            self._completed = as_completed(loop=self._client.loop, with_results=True,
                                           raise_errors=False)
        except BaseException:
            self.close()
            raise
        return self

    def _register(self, plugin):
        # The scheduler keeps the plugin for workers to come even when handing it to those
        # there fails because one of them just died: then ask again (it is idempotent).
        for attempt in range(3):
            try:
                self._client.register_plugin(plugin)
                return
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def _scatter(self):
        # Once, to every worker; again only if every copy was lost with its workers. The
        # scheduler refuses a scatter while it has no worker: wait for one (see
        # _check_workers), asking afresh, as workers may go between the question and the
        # scatter.
        since = None
        while True:
            self._n_workers = (0, -1.0)
            self._await_workers()
            try:
                [self._data] = self._client.scatter([self._raw_data], broadcast=True,
                                                    hash=False)
                return
            except OSError:  # "No valid workers found" (a TimeoutError), or one died meanwhile
                now, wait = time.monotonic(), self._worker_wait()
                since = now if since is None else since
                if now - since >= wait:
                    if self.n_workers:  # not for want of workers
                        raise
                    raise self._gone(now - since, wait) from None
                time.sleep(0.25)

    def close(self):
        futures = list(self._futures)
        self._futures, self._pending = {}, []
        self._completed = None
        if self._client is not None and futures:
            self._client.cancel(futures)
        if self._stuck and self._client is not None and self._cluster is None:
            # A cluster that outlives the search: free it of cancelled trials still running.
            self._stuck = {key: (worker, 0.0) for key, (worker, _) in self._stuck.items()}
            self._free()
        self._stuck = {}
        if self._data is not None:
            self._data.release()
            self._data = self._raw_data = None
        # A slow shutdown (a loaded machine: Dask's close times out) must not lose a finished
        # search: log it and go on; the processes of an embedded cluster end with ours.
        # A Ctrl-C while the client closes still closes the embedded cluster.
        try:
            if self._owns_client and self._client is not None:
                _quietly(self._client.close, "closing the Dask client")
        finally:
            if self._cluster is not None:
                _quietly(self._cluster.close, "closing the embedded Dask cluster")
            self._client, self._cluster, self._owns_client = None, None, False

    def _address(self):
        try:
            return self._client.scheduler.address
        except AttributeError:
            return repr(self.scheduler)

    def _worker_wait(self):
        """Seconds to wait while the cluster has no worker (see ``no_workers_timeout``)."""
        import dask
        from dask.utils import parse_timedelta

        value = self.no_workers_timeout
        if value is None:
            value = dask.config.get(NO_WORKERS_CONFIG, _NO_WORKERS_TIMEOUT)
        seconds = math.inf if value is None else parse_timedelta(value, default="seconds")
        return float(seconds)

    def _check_workers(self):
        """Whether the cluster has a worker; raise :class:`WorkersLostError` once it has had
        none for ``no_workers_timeout`` seconds."""
        if self.n_workers > 0:
            if self._no_workers_since is not None:
                if self._had_workers:
                    logger.warning("the Dask cluster has workers again")
                else:
                    logger.info("the Dask cluster's workers have joined")
            self._no_workers_since = None
            self._had_workers = True
            return True
        now, wait = time.monotonic(), self._worker_wait()
        if self._no_workers_since is None:
            self._no_workers_since = now
            if self._had_workers:
                logger.warning("the Dask cluster at %s has no worker; waiting up to %s s for "
                               "one", self._address(), wait)
            elif self._cluster is not None:  # its workers are starting: nothing to report
                logger.info("waiting up to %s s for the embedded Dask cluster's workers to "
                            "join", wait)
            else:
                logger.warning("the Dask cluster at %s has no worker yet; waiting up to %s s "
                               "for one", self._address(), wait)
        elif now - self._no_workers_since >= wait:
            raise self._gone(now - self._no_workers_since, wait)
        return False

    def _gone(self, seconds, wait):
        """The :class:`WorkersLostError` for a cluster without a worker for ``seconds``."""
        from ..exceptions import WorkersLostError

        wait_longer = (f"or wait longer with dask.config.set({{{NO_WORKERS_CONFIG!r}: "
                       "'10 minutes'}).")
        if not self._had_workers:  # none came since the fit started: none was lost
            return WorkersLostError(
                f"the Dask cluster at {self._address()} has no worker: none came in "
                f"{seconds:.0f} s (no_workers_timeout={wait:g} s), so the search cannot start. "
                "Start workers for it (e.g. `dask worker ADDRESS`, or the job that launches "
                f"them), pass scheduler=None for an embedded cluster, {wait_longer}")
        return WorkersLostError(
            f"every worker of the Dask cluster at {self._address()} is gone: it has had none "
            f"for {seconds:.0f} s (no_workers_timeout={wait:g} s), so the search cannot go "
            f"on; {self.n_running} unfinished trial(s) are dropped. Start workers again (their "
            f"logs say why they stopped, e.g. memory), {wait_longer}")

    def _await_workers(self):
        """Block until the cluster has a worker (see :meth:`_check_workers`)."""
        while not self._check_workers():
            time.sleep(0.25)

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
            # Workers starting (or closing) take no trial yet: not counted.
            workers = [w for w in scheduler_workers(self._client).values()
                       if w.get("status", "running") in ("running", "paused")]
            if self._gpu_resource:  # trial slots: fractions of GPUs, shared by threads
                count = sum(_gpu_slots(w, self.trials_per_device) for w in workers)
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

    def submit(self, trial_id, config, seed, deadline=None, holdout=None, attempts=1,
               rungs=None):
        # Sent with the others submitted before the next collect(), as one graph (_flush).
        self._pending.append({"trial_id": trial_id, "config": config, "seed": seed,
                              "attempts": attempts, "limit": self.trial_timeout,
                              "deadline": deadline, "holdout": holdout, "rungs": rungs})

    def _flush(self):
        """Send the pending trials to the scheduler: one ``Client.map`` per ``holdout`` and
        ``rungs`` (and one more for bundles of very short trials)."""
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
            groups.setdefault((meta["holdout"], meta.get("rungs")), []).append(meta)
        resources = ({"GPU": _gpu_share(self.trials_per_device)} if self._gpu_resource
                     else None)
        for (holdout, rungs), metas in groups.items():
            options = {k: v for k, v in (("holdout", holdout), ("rungs", rungs)) if v is not None}
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
                    key=[self._key("trial", m) for m in single],
                    pure=False, resources=resources,
                    **options,
                )
                self._track(futures, [[m] for m in single], submitted)
            if bundles:
                n = len(bundles)
                futures = self._client.map(
                    functools.partial(_run_trials, self.task), [self._data] * n,
                    [self._device] * n,
                    [[(m["config"], m["seed"], m["limit"], m["trial_id"], m["deadline"],
                       m["holdout"], m.get("rungs")) for m in c] for c in bundles],
                    key=[self._key("trials", c[0]) for c in bundles],
                    pure=False, resources=resources,
                )
                self._track(futures, bundles, submitted)

    def _key(self, kind, meta):
        """A Dask key new for each submission. Reusing one (NAS's rescoring and its refit both
        submit trial -1) would hand back the earlier result while Dask still holds it: the
        weights of another configuration."""
        again = f"r{meta['requeued']}" if meta.get("requeued") else ""
        return (f"autodeuq-{kind}-{self._token}-{meta['trial_id']}-{meta['attempts']}{again}"
                f"-{next(self._serial)}")

    def _track(self, futures, metas, submitted):
        self._completed.update(futures)
        for future, trials in zip(futures, metas, strict=True):
            self._futures[future] = [{**m, "submitted": submitted} for m in trials]

    def _wait_ready(self, timeout):
        """Block until a future completes or ``timeout`` seconds pass (None: no limit)."""
        end = None if timeout is None else time.monotonic() + timeout
        condition = self._completed.thread_condition  # as_completed notifies it per future
        while True:
            with condition:
                # In slices of a second at most, to notice a cluster left without workers.
                left = None if end is None else end - time.monotonic()
                if self._completed.has_ready() or (left is not None and left <= 0):
                    return
                condition.wait(timeout=1.0 if left is None else min(left, 1.0))
                if self._completed.has_ready():
                    return
            self._check_workers()

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
        give_up += [when for _, when in self._stuck.values()]  # see _free
        if give_up:
            until = max(0.0, min(give_up) - time.time())
            timeout = until if timeout is None else min(timeout, until)
        self._wait_ready(timeout)
        done = [(f, r) for f, r in self._completed.next_batch(block=False) if f in self._futures]
        results = [r for f, outcome in done for r in self._finish(f, outcome)]
        now = time.time()
        expired = [f for f, metas in self._futures.items()
                   if metas[0]["limit"] is not None and now > self._give_up_at(metas[0])]
        if expired:
            started = self._started()
            hung = [f for f in expired if started is None or f.key in started]
            where = self._workers_running(hung)
            for future in expired:
                if future not in hung:  # still queued behind others: its wait starts again
                    for meta in self._futures[future]:
                        meta["submitted"] = now
                    continue
                metas = self._futures.pop(future)
                future.cancel()
                results.extend(
                    self._failure(m, "timeout", f"no result {m['limit']}s + {_TIMEOUT_GRACE}s "
                                  "after it could have started; cancelled") for m in metas)
                if future.key in where:  # still running there? checked after another grace
                    self._stuck[future.key] = (where[future.key], now + _TIMEOUT_GRACE)
        self._free()
        self._flush()  # retries of trials whose worker was lost
        return results

    def _workers_running(self, futures):
        """``{key: worker address}`` of those of ``futures`` a worker holds (running or
        queued)."""
        keys = {f.key for f in futures}
        try:
            processing = self._client.processing()
        except (OSError, TimeoutError):
            return {}
        return {key: w for w, held in processing.items() for key in keys.intersection(held)}

    def _free(self):
        """Restart (through its nanny) a worker still running a cancelled trial a grace
        period after it was cancelled: Dask cannot stop a running task, and a trial that does
        not check its time limit (stuck in native code, say) would hold its worker for ever.
        Trials queued behind it there are lost with it, so sent again."""
        now = time.time()
        due = {key: worker for key, (worker, when) in self._stuck.items() if now >= when}
        if not due:
            return
        for key in due:
            del self._stuck[key]
        try:
            running = self._client.run(_executing, workers=sorted(set(due.values())),
                                       on_error="return")
        except (OSError, TimeoutError):
            return
        workers = sorted({w for key, w in due.items()
                          if isinstance(running.get(w), list) and key in running[w]})
        if not workers:
            return
        logger.warning("killing worker process(es) %s, still running trials past their time "
                       "limit; their nannies start them again", ", ".join(workers))
        # From the nanny, which works even if the trial holds the worker's event loop; a
        # worker without a nanny ends itself instead (and is not restarted).
        killed = self._client.run(_kill_worker_process, workers=workers, nanny=True,
                                  on_error="return")
        for worker, outcome in killed.items():
            if isinstance(outcome, BaseException):
                self._client.run(os._exit, 1, workers=[worker], on_error="ignore", wait=False)

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
            result = self._settle(meta, trial, getattr(future, "key", None))
            if result is not None:
                results.append(result)
        return results

    def _settle(self, meta, exc, key=None):
        """A trial whose Dask task ``key`` raised ``exc`` (None: cancelled): failed, or
        retried if its worker was lost (None then), or lost after ``max_retries``.

        A trial that had not started on the lost worker (queued behind the one that ran
        there) is sent again without spending an attempt; one that was running when its
        worker's nanny killed it for exceeding its memory limit is recorded as ``"failed"``
        with that said, once its retries are spent.
        """
        if exc is None or _is_worker_loss(exc):
            reason = f"worker lost: {type(exc).__name__}: {exc}" if exc else "task cancelled"
            started, memory = self._loss(exc, key)
            requeued = meta.get("requeued", 0)
            if started is False and requeued < _MAX_REQUEUE:
                logger.info("trial %d had not started on its lost worker; sending it again",
                            meta["trial_id"])
                self.submit(meta["trial_id"], meta["config"], meta["seed"], meta["deadline"],
                            meta["holdout"], meta["attempts"], rungs=meta.get("rungs"))
                self._pending[-1]["requeued"] = requeued + 1
                return None
            if memory:
                reason = f"{memory} ({reason})"
            if meta["attempts"] <= self.max_retries:
                logger.warning("trial %d: %s; retrying", meta["trial_id"], reason)
                self.submit(meta["trial_id"], meta["config"], meta["seed"], meta["deadline"],
                            meta["holdout"], meta["attempts"] + 1, rungs=meta.get("rungs"))
                return None
            # Killed for memory while it ran, every time: the candidate needs too much.
            return self._failure(meta, "failed" if memory else "lost", reason)
        return self._failure(meta, "failed", f"{type(exc).__name__}: {exc}")

    def _loss(self, exc, key):
        """``(started, memory)`` for the Dask task ``key`` lost with its worker (``exc``, a
        ``KilledWorker``, or None for a cancelled task): whether it had started there
        (anywhere, when cancelled; None: unknown), and the nanny's reason if the worker was
        killed for exceeding its memory limit while it ran."""
        worker = getattr(exc, "last_worker", None)
        address, pid = getattr(worker, "address", None), getattr(worker, "pid", None)
        if key is None:
            return None, None
        if address is None:
            # Cancelled (exc None; the scattered data was lost with the workers): no worker is
            # named, but a task that no worker logged as started never ran.
            started = self._started()
            return (None if started is None else key in started), None
        started = self._started(address)
        if started is None or key not in started:
            return (None if started is None else False), None
        try:
            kills = self._client.get_events("worker-restart-memory")
        except (OSError, TimeoutError):
            kills = ()
        for _, event in reversed(kills):
            if event.get("worker") == address and event.get("pid") in (pid, None):
                rss = event.get("rss", 0) / 2**20
                return True, (
                    f"out of memory: worker {address} went past its memory limit ({rss:.0f} "
                    "MiB in use) while running this trial, and its nanny restarted it. Give "
                    "the workers more memory (memory_limit) or bound the search space's layer "
                    "widths and batch size")
        return True, None

    def _started(self, worker=None):
        """Keys of the trials' Dask tasks that started to run (on ``worker`` if given), as the
        workers logged them (see ``_TrialStarts``); None if unknown."""
        if self._client is None:
            return None
        try:
            events = self._client.get_events(_STARTED)
        except (OSError, TimeoutError):
            return None
        return {e.get("key") for _, e in events if worker is None or e.get("worker") == worker}
