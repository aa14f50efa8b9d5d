"""Faults on the real Dask path, and the security of that path.

Every test here runs worker processes: the session's two-worker cluster (``client``), a
one-worker cluster of this module that the tests break (``tight``), or clusters the
estimators start.
Budgets are tiny (a few trials of a few epochs on 200 rows).
"""

import json
import os
import signal
import threading
import time
import zipfile

import numpy as np
import pytest
from conftest import search_dir

from autodeuq import NASRegressor
from autodeuq.evaluation import Journal, TrialResult, checkpoint_lock
from autodeuq.exceptions import WorkersLostError
from autodeuq.space import Categorical, Float, Int

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

TINY_SPACE = {"num_layers": 1, "units_1": Int(4, 16), "learning_rate": Float(1e-3, 1e-1, log=True),
              "max_epochs": 15, "patience": 5}


def nas(**params):
    defaults = {"search_space": TINY_SPACE, "algorithm": "random", "max_evals": 4,
                "backend": "dask", "refit": False, "random_state": 0}
    return NASRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def tight():
    """A cluster of one worker process with a small memory limit, that tests break: the
    memory test makes its nanny restart it, then the last test removes it for good."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                           memory_limit="700MiB")
    with distributed.Client(cluster, set_as_default=False) as client:
        yield cluster, client
    cluster.close()


def journal_lines(directory):
    """The lines of the journal of the one search in ``directory`` (a checkpoint_dir)."""
    directory = search_dir(directory)
    path = None if directory is None else directory / "journal.jsonl"
    return path.read_text().splitlines() if path is not None and path.exists() else []


def when_journal_has(directory, n, action, timeout=600):
    """Run ``action()`` in a thread as soon as ``directory``'s journal has ``n`` lines."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(journal_lines(directory)) >= n:
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def assert_consistent(directory):
    """Every journal line is a whole trial record, once per id, with its weights if it
    succeeded; returns the records."""
    records = [json.loads(line) for line in journal_lines(directory)]
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids))
    for record in records:
        if record["status"] == "success":
            with np.load(search_dir(directory) / "weights" / f"trial-{record['trial_id']}.npz",
                         allow_pickle=False) as arrays:
                assert np.all(np.isfinite(arrays["valid_mean"]))
    return records


def listening(processes):
    """(address, port) of the TCP sockets the processes listen on."""
    found = set()
    for process in processes:
        try:
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return found


def this_process_tree():
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


# -- faults ----------------------------------------------------------------------------------


def test_a_diverging_candidate_is_recorded_and_the_search_goes_on(client, regression_data):
    X, y, X_test, _ = regression_data
    space = {"num_layers": 1, "units_1": 16, "optimizer": "sgd",
             "learning_rate": Categorical([1e-2, 1e4]), "max_epochs": 15, "patience": 5}
    diverging = {"num_layers": 1, "units_1": 16, "optimizer": "sgd", "learning_rate": 1e4,
                 "max_epochs": 15, "patience": 5}
    est = nas(scheduler=client, search_space=space, initial_configs=[diverging], max_evals=3)
    est.fit(X, y)
    table = est.search_results_.set_index("job_id")
    assert len(table) == 3
    assert table.loc[0, "status"] == "diverged"
    assert "TrainingDivergedError" in table.loc[0, "error"]
    assert np.isnan(table.loc[0, "objective"])
    assert (table["status"] == "success").sum() >= 1
    assert est.best_params_["learning_rate"] == 1e-2
    assert np.all(np.isfinite(est.predict(X_test)))


def test_a_trial_past_its_timeout_is_recorded_and_its_worker_goes_on(client, regression_data):
    X, y, _, _ = regression_data
    endless = {"num_layers": 1, "units_1": 16, "learning_rate": 1e-2, "max_epochs": 100000,
               "patience": None}
    # The search runs these in turn: the endless one, then three short ones.
    short = [{**endless, "units_1": units, "max_epochs": 5, "patience": 5} for units in (4, 6, 8)]
    space = {**TINY_SPACE, "max_epochs": Categorical([5, 100000]),
             "patience": Categorical([5, None])}
    est = nas(scheduler=client, search_space=space, initial_configs=[endless, *short],
              max_evals=4, trial_timeout=4.0).fit(X, y)
    table = est.search_results_.set_index("job_id")
    late = table.loc[0]
    assert late["status"] == "timeout"
    assert "TimeLimitExceeded" in late["error"]
    assert late["duration"] < 30  # stopped after the epoch that passed the limit
    assert (table.drop(index=0)["status"] == "success").all(), table["error"].tolist()
    # Nothing of it goes on running on its worker.
    running = client.run(lambda dask_worker: [ts.key for ts in dask_worker.state.executing],
                         workers=[late["worker"]])
    assert running == {late["worker"]: []}


def test_a_hung_trial_is_cancelled_and_its_worker_restarted(client, monkeypatch):
    """A trial that never checks its time limit (stuck in C code, say): the evaluator gives up
    on it, records a timeout and restarts its worker, which Dask alone cannot free."""
    from autodeuq.evaluation import DaskEvaluator, _dask

    monkeypatch.setattr(_dask, "_TIMEOUT_GRACE", 1.0)

    def task(config, data, seed, device="cpu", time_limit=None, trial_id=-1, deadline=None,
             holdout=None):
        start = time.time()
        time.sleep(3600 if config["hang"] else 0.1)
        return TrialResult(trial_id=trial_id, config=config, status="success", objective=0.0,
                           seed=int(seed), start=start, end=time.time(),
                           worker=str(os.getpid()))

    client.wait_for_workers(2, timeout=120)
    pids = set(client.run(os.getpid).values())
    with DaskEvaluator(scheduler=client, trial_timeout=2.0, task=task) as evaluator:
        evaluator.start({"X": np.zeros(2)})
        for trial_id in range(6):
            evaluator.submit(trial_id, {"hang": trial_id == 0}, seed=trial_id)
        results = []
        while evaluator.n_running:
            results += evaluator.collect(timeout=30)
    by_id = {r.trial_id: r for r in results}
    assert sorted(by_id) == list(range(6))
    assert by_id[0].status == "timeout"
    assert "cancelled" in by_id[0].error
    assert all(by_id[i].status == "success" for i in range(1, 6))
    # The stuck worker's process was killed (its nanny starts a new one), and only that one.
    deadline, now = time.monotonic() + 300, pids
    while time.monotonic() < deadline:
        try:
            now = set(client.run(os.getpid).values())
        except (OSError, distributed.comm.CommClosedError):
            now = pids
        if len(now) == 2 and now != pids:
            break
        time.sleep(0.5)
    assert len(pids - now) == 1
    client.wait_for_workers(2, timeout=120)


def test_a_trial_that_exhausts_its_memory_limit_is_recorded(tight, regression_data):
    X, y, _, _ = regression_data
    # 8192 x 8192 weights, their gradients and Adam's two moments: about 1 GiB.
    hog = {"num_layers": 2, "units_1": 8192, "units_2": 8192, "learning_rate": 1e-2,
           "max_epochs": 15, "patience": 5}
    small = {**hog, "units_1": 8, "units_2": 8}
    space = {**hog, "units_1": Categorical([8, 8192]), "units_2": Categorical([8, 8192])}
    _, small_worker = tight
    est = nas(scheduler=small_worker, search_space=space, initial_configs=[hog, small],
              max_evals=2).fit(X, y)
    table = est.search_results_.set_index("job_id")
    assert table.loc[0, "status"] == "failed"
    assert "out of memory" in table.loc[0, "error"]
    assert "memory limit" in table.loc[0, "error"]
    assert table.loc[0, "attempts"] == 2  # retried once on a fresh worker, then recorded
    # Queued behind it on the killed worker, it had not started: sent again, no attempt spent.
    assert table.loc[1, "status"] == "success"
    assert table.loc[1, "attempts"] == 1
    assert est.best_params_["units_1"] == 8


def test_every_worker_gone_is_a_clear_error_and_keeps_finished_trials(tight, client,
                                                                      regression_data, tmp_path):
    X, y, _, _ = regression_data
    cluster, lonely = tight
    lonely.wait_for_workers(1, timeout=120)
    gone = []

    def remove_every_worker():  # scale(0) closes the nanny too: no restart
        gone.append(time.monotonic())
        cluster.scale(0)

    when_journal_has(tmp_path, 2, remove_every_worker)
    with dask.config.set({"autodeuq.no-workers-timeout": 1}), \
            pytest.raises(WorkersLostError) as info:
        nas(scheduler=lonely, max_evals=40, checkpoint_dir=tmp_path).fit(X, y)
    assert time.monotonic() - gone[0] < 60  # 1 s without workers, not a hang
    message = str(info.value)
    assert f"every worker of the Dask cluster at {cluster.scheduler_address}" in message
    assert "no_workers_timeout=1 s" in message
    assert f"kept in checkpoint_dir={str(tmp_path)!r}" in message
    assert "fit again with the same checkpoint_dir" in message
    kept = assert_consistent(tmp_path)
    assert len(kept) >= 2
    assert f"The {len(kept)} trial(s) finished so far" in message
    # Recovery as the message says: the same checkpoint_dir on a cluster with workers.
    resumed = nas(scheduler=client, max_evals=len(kept) + 1, checkpoint_dir=tmp_path).fit(X, y)
    again = assert_consistent(tmp_path)
    assert again[:len(kept)] == kept  # nothing finished was repeated or rewritten
    assert len(again) == len(resumed.search_results_) == len(kept) + 1


def test_keyboard_interrupt_closes_the_cluster_and_fitting_again_resumes(client, regression_data,
                                                                         tmp_path):
    X, y, _, _ = regression_data
    # Trials of about half a second, so that the Ctrl-C lands mid-search even when a loaded
    # machine delays it.
    params = {"max_evals": 12, "checkpoint_dir": tmp_path,
              "search_space": {**TINY_SPACE, "max_epochs": 60, "patience": 60}}
    before = {p.pid for p in this_process_tree()}
    sockets = listening(this_process_tree())
    fitting = threading.Event()
    fitting.set()
    pressed = []

    def ctrl_c():
        if fitting.is_set():
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal
            pressed.append(len(journal_lines(tmp_path)))

    # As in a terminal: a test run started in the background by a non-interactive shell
    # (`make test &`) inherits SIGINT ignored, and Python then installs no handler for it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = when_journal_has(tmp_path, 2, ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            nas(n_jobs=1, **params).fit(X, y)  # on a cluster of its own
    finally:
        fitting.clear()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    assert pressed
    assert pressed[0] < 12  # mid-search
    # The cluster it started is closed: its worker processes ended, its ports are free.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = [p for p in this_process_tree() if p.pid not in before
                   and p.status() != psutil.STATUS_ZOMBIE]
        if not started:
            break
        time.sleep(0.2)
    assert started == []
    assert listening(this_process_tree()) <= sockets
    kept = assert_consistent(tmp_path)
    assert 2 <= len(kept) < 12
    resumed = nas(scheduler=client, **params).fit(X, y)
    records = assert_consistent(tmp_path)
    assert records[:len(kept)] == kept  # not trained again
    table = resumed.search_results_.set_index("job_id")
    assert len(table) == len(records) == 12
    for record in kept:
        assert table.loc[record["trial_id"], "duration"] == record["end"] - record["start"]


def test_two_fits_at_once_on_embedded_clusters_listen_on_loopback_ports_of_their_own(
        regression_data, tmp_path):
    X, y, _, _ = regression_data
    barrier = threading.Barrier(2)
    fitted, spans, errors, opened = {}, {}, [], []
    before = listening(this_process_tree())

    def fit(name):
        try:
            barrier.wait(timeout=60)
            start = time.monotonic()
            fitted[name] = nas(n_jobs=1, max_evals=3, checkpoint_dir=tmp_path / name).fit(X, y)
            spans[name] = (start, time.monotonic())
        except Exception as exc:  # reported below
            errors.append(exc)

    def look():  # while both search: every socket their clusters listen on
        opened.append(listening(this_process_tree()) - before)

    when_journal_has(tmp_path / "a", 1, lambda: when_journal_has(tmp_path / "b", 1, look))
    threads = [threading.Thread(target=fit, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1  # they did run at the same time
    assert b0 < a1
    # Their schedulers, dashboards, nannies and workers all listen on 127.0.0.1 (nothing on
    # 0.0.0.0 or a public address), on ports the system picked.
    # (How many are up at that instant depends on the machine's load: a 3-trial search can be
    # closing already; each cluster's own workers are checked below.)
    [sockets] = opened
    assert sockets
    assert {ip for ip, _ in sockets} == {"127.0.0.1"}
    workers = [set(fitted[name].search_results_["worker"]) for name in ("a", "b")]
    assert not workers[0] & workers[1]  # a cluster each
    for name in ("a", "b"):
        assert all(w.startswith("tcp://127.0.0.1:") for w in fitted[name].search_results_
                   ["worker"])
        assert len(assert_consistent(tmp_path / name)) == 3


def test_a_checkpoint_dir_in_use_is_refused_at_once(client, regression_data, tmp_path):
    X, y, _, _ = regression_data
    outcome = {}

    def first():
        outcome["first"] = nas(scheduler=client, max_evals=6, checkpoint_dir=tmp_path).fit(X, y)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while not journal_lines(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(ValueError, match=r"checkpoint_dir=.* is in use by another fit"):
            nas(scheduler=client, max_evals=6, checkpoint_dir=tmp_path).fit(X, y)
        assert thread.is_alive()  # refused while the first one was still running
    finally:
        thread.join()
    records = assert_consistent(tmp_path)
    assert sorted(r["trial_id"] for r in records) == list(range(6))
    assert len(outcome["first"].search_results_) == 6
    with checkpoint_lock(search_dir(tmp_path)):  # free again once the first fit is over
        pass


def test_a_crash_mid_line_costs_only_that_line(tmp_path):
    def result(i):
        return TrialResult(trial_id=i, config={"i": i}, status="failed", error="x")

    journal = Journal(tmp_path, "fp")
    journal.append(result(0))
    with open(tmp_path / "journal.jsonl", "a") as handle:
        handle.write('{"trial_id": 1, "conf')  # the process died while writing trial 1
    reopened = Journal(tmp_path, "fp")
    reopened.append(result(2))  # must not be glued to the broken line
    assert [r.trial_id for r in Journal(tmp_path, "fp").load()] == [0, 2]
    lines = journal_lines(tmp_path)
    (tmp_path / "journal.jsonl").write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"line 2 of journal\.jsonl is not a trial record"):
        Journal(tmp_path, "fp").load()


# -- security --------------------------------------------------------------------------------


class Payload:
    """Unpickling this would call ``EXECUTED.append``: the tests check it never happens."""

    def __reduce__(self):
        return (EXECUTED.append, ("unpickled",))


EXECUTED = []


def test_a_journal_is_read_as_data_only(tmp_path):
    import pickle

    journal = Journal(tmp_path, "fp")
    journal.append(TrialResult(trial_id=0, config={"i": 0}, status="success", objective=1.0,
                               valid_mean=np.zeros(3), valid_var=np.ones(3),
                               state={"w": np.ones(2)}))
    weights = tmp_path / "weights" / "trial-0.npz"
    # An object array (a pickle inside the .npz), then a bare pickle in its place.
    np.savez(weights, valid_mean=np.array([Payload()], dtype=object), valid_var=np.ones(3))
    [record] = Journal(tmp_path, "fp").load(with_arrays=False)
    with pytest.raises(ValueError, match=r"weights/trial-0\.npz of trial 0 cannot be read"):
        Journal(tmp_path, "fp").read_arrays(record)
    weights.write_bytes(pickle.dumps({"valid_mean": Payload()}))
    with pytest.raises(ValueError, match="cannot be read"):
        Journal(tmp_path, "fp").load()
    (tmp_path / "journal.jsonl").write_bytes(pickle.dumps(Payload()) + b"\n")
    with pytest.raises(ValueError, match="is not a trial record"):
        Journal(tmp_path, "fp").load()
    assert EXECUTED == []


def test_security_is_checked_before_any_work(regression_data):
    X, y, _, _ = regression_data
    with pytest.raises(TypeError, match=r"security must be a distributed\.security\.Security"):
        nas(security="tls").fit(X, y)
    from distributed.security import Security

    with pytest.raises(ValueError, match="backend='serial' runs in this process, so security"):
        nas(backend="serial", security=Security()).fit(X, y)


def test_a_tls_cluster(regression_data, tmp_path):
    pytest.importorskip("cryptography")  # Security.temporary() makes its certificates with it
    from distributed.security import Security

    import autodeuq
    from autodeuq.evaluation import DaskEvaluator

    X, y, X_test, _ = regression_data
    security = Security.temporary()
    before = listening(this_process_tree())
    # An embedded cluster with TLS: scheduler and workers on 127.0.0.1, every link encrypted.
    with DaskEvaluator(n_workers=1, security=security) as evaluator:
        evaluator.start({"X": np.zeros(2)})
        address = evaluator._client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert {ip for ip, _ in listening(this_process_tree()) - before} == {"127.0.0.1"}
        # An estimator connects to it by address with the credentials...
        est = nas(scheduler=address, security=security, max_evals=2).fit(X, y)
        assert est.search_results_["worker"].str.startswith("tls://127.0.0.1:").all()
        # ...and without them it cannot.
        with pytest.raises(ConnectionError, match="could not connect"):
            nas(scheduler=address, max_evals=2).fit(X, y)
    # The credentials are not written into a saved model (they load as None).
    est.save(tmp_path / "model.autodeuq")
    with zipfile.ZipFile(tmp_path / "model.autodeuq") as archive:
        for name in archive.namelist():
            assert b"PRIVATE KEY" not in archive.read(name)
    loaded = autodeuq.load(tmp_path / "model.autodeuq")
    assert loaded.security is None
    np.testing.assert_array_equal(loaded.predict(X_test), est.predict(X_test))
