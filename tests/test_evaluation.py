"""Evaluation: train_candidate's outcomes, the journal, and the evaluators on real Dask."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from autodeuq.evaluation import (
    Journal,
    SerialEvaluator,
    TrialResult,
    fingerprint,
    refit_tasks,
    run_refits,
    run_search,
    train_candidate,
    trial_seed,
)

distributed = pytest.importorskip("distributed")

NET = {"layers": [{"units": 16}], "max_epochs": 20, "learning_rate": 1e-2, "patience": 5}
DIVERGES = {**NET, "optimizer": "sgd", "learning_rate": 1e4}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.normal(size=300)).astype(np.float32)
    return {"X_train": X[:240], "y_train": y[:240], "X_valid": X[240:], "y_valid": y[240:]}


@dataclass(frozen=True)
class Trial:
    trial_id: int
    config: dict


class ListSearch:
    """A search that proposes the given configs in turn and records what it is told."""

    def __init__(self, configs):
        self.configs, self.told = list(configs), []

    def ask(self):
        trial_id = getattr(self, "_next", 0)
        self._next = trial_id + 1
        return Trial(trial_id, self.configs[trial_id % len(self.configs)])

    def tell(self, trial_id, objective, status):
        self.told.append((trial_id, objective, status))


# -- train_candidate -------------------------------------------------------------------------


def test_successful_trial_carries_everything_needed_downstream(data):
    result = train_candidate(NET, data, seed=3, trial_id=7)
    assert result.status == "success"
    assert result.trial_id == 7
    assert np.isfinite(result.objective)
    assert result.valid_mean.shape == result.valid_var.shape == (60,)
    assert np.all(result.valid_var > 0)
    assert all(isinstance(v, np.ndarray) for v in result.state.values())
    assert 1 <= result.best_epoch <= result.n_epochs <= 20
    assert result.end >= result.start
    assert result.worker.startswith("local:")
    json.dumps(result.record())  # the journal line is plain JSON
    # The objective is the validation NLL of the returned predictions.
    mean, var, y = result.valid_mean, result.valid_var, data["y_valid"]
    nll = np.mean(0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var))
    assert result.objective == pytest.approx(nll, rel=1e-4)


@pytest.mark.parametrize(("config", "status", "text"), [
    (DIVERGES, "diverged", "TrainingDivergedError"),
    ({"layers": [{"units": 0}]}, "failed", "ConfigError"),
    ({**NET, "max_epochs": 100000, "patience": None}, "timeout", "TimeLimitExceeded"),
])
def test_bad_candidates_are_results_not_crashes(data, config, status, text):
    result = train_candidate(config, data, seed=0, time_limit=0.5)
    assert result.status == status
    assert text in result.error
    assert result.objective is None
    assert result.state is None


def test_deadline_keeps_the_best_weights(data):
    result = train_candidate({**NET, "max_epochs": 100000, "patience": None}, data, seed=0,
                             deadline=time.time() + 0.5)
    assert result.status == "success"
    assert result.state is not None
    late = train_candidate(NET, data, seed=0, deadline=time.time() - 1)
    assert late.status == "timeout"
    assert "before this trial started" in late.error


def test_refit_data_splits_all_the_rows_anew(data):
    from autodeuq.evaluation._train import refit_data

    every = np.sort(np.concatenate([data["y_train"], data["y_valid"]]))
    first, second = refit_data(data, 0.1, seed=1), refit_data(data, 0.1, seed=2)
    for part in (first, second):
        assert len(part["y_valid"]) == 30
        assert len(part["y_train"]) == 270
        np.testing.assert_array_equal(np.sort(np.concatenate([part["y_train"],
                                                              part["y_valid"]])), every)
    assert not np.array_equal(first["y_valid"], second["y_valid"])


def test_held_out_targets_are_the_validation_part_of_a_refit_or_rescoring(data):
    # What the main process scores a worker's refit or rescoring on, read without the inputs.
    from autodeuq.evaluation._train import Resplit, held_out_targets, refit_data, resplit_data

    np.testing.assert_array_equal(held_out_targets(data, 0.1, seed=3),
                                  refit_data(data, 0.1, seed=3)["y_valid"])
    split = Resplit(0.2, 0.1, seed=7)
    np.testing.assert_array_equal(held_out_targets(data, split),
                                  resplit_data(data, split)["y_valid"])
    assert len(held_out_targets(data, split)) == 60


def test_a_resplit_is_shared_by_every_trial_given_it(data):
    from autodeuq.evaluation._train import Resplit, resplit_data

    every = np.sort(np.concatenate([data["y_train"], data["y_valid"]]))
    split = Resplit(0.2, 0.1, seed=7)
    parts = resplit_data(data, split)
    assert [len(parts[f"y_{p}"]) for p in ("valid", "stop", "train")] == [60, 24, 216]
    np.testing.assert_array_equal(np.sort(np.concatenate(
        [parts[f"y_{p}"] for p in ("train", "stop", "valid")])), every)
    np.testing.assert_array_equal(resplit_data(data, split)["X_valid"], parts["X_valid"])
    assert not np.array_equal(resplit_data(data, Resplit(0.2, 0.1, 8))["y_valid"],
                              parts["y_valid"])
    # Trials given it train from their own seeds but are scored on the same points: their
    # predictions are on parts["X_valid"], and the objective is the NLL there.
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        results = run_refits(evaluator, [NET, NET], seeds=[4, 5], holdout=split)
    assert all(r.ok for r in results)
    assert results[0].valid_mean.shape == (60,)
    assert not np.allclose(results[0].valid_mean, results[1].valid_mean)
    for r in results:
        z = parts["y_valid"] - r.valid_mean
        assert r.objective == pytest.approx(
            np.mean(0.5 * (np.log(2 * np.pi * r.valid_var) + z**2 / r.valid_var)), rel=1e-4)


def test_a_rescoring_of_several_networks_is_scored_as_their_mixture(data):
    # Three networks of one configuration, trained together on the shared split from seeds
    # spawned from the trial's: their predictions on the split's validation part, scored as
    # their equal mixture; the same seed gives the same networks, another seed others.
    from autodeuq.evaluation._train import Resplit, resplit_data
    from autodeuq.uncertainty import NormalMixture, nll

    split = Resplit(0.2, 0.1, seed=7, networks=3)
    y_valid = resplit_data(data, split)["y_valid"]
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        first, again, other = run_refits(evaluator, [NET, NET, NET], seeds=[4, 4, 5],
                                         holdout=split)
    assert first.ok
    assert first.state is None  # scored only: no network to keep
    assert first.valid_mean.shape == first.valid_var.shape == (3, 60)
    assert not np.allclose(first.valid_mean[0], first.valid_mean[1])  # independent seeds
    mixture = NormalMixture(first.valid_mean, np.sqrt(first.valid_var))
    assert first.objective == pytest.approx(nll(y_valid, mixture), rel=1e-9)
    np.testing.assert_array_equal(again.valid_mean, first.valid_mean)
    assert not np.allclose(other.valid_mean, first.valid_mean)


def test_a_rescoring_of_several_networks_that_diverges_is_a_result(data):
    from autodeuq.evaluation._train import Resplit

    result = train_candidate(DIVERGES, data, seed=1, holdout=Resplit(0.2, 0.1, 7, networks=2))
    assert result.status == "diverged"
    assert result.valid_mean is None


def test_refits_run_on_the_evaluator_in_order(data):
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        results = run_refits(evaluator, [NET, DIVERGES], seeds=[4, 5], holdout=0.1)
    assert [r.trial_id for r in results] == [-1, -2]
    assert [r.status for r in results] == ["success", "diverged"]
    assert results[0].valid_mean.shape == (30,)  # early-stopped on its own tenth


def test_refits_of_one_configuration_train_together_as_they_would_alone(data):
    # Two refits of NET and one of another configuration: NET's two train in one batched
    # task, each from its own seed on its own tenth, and come back as two results, as close
    # to training each alone as batched products round (no dropout, a few epochs).
    from autodeuq.evaluation._train import held_out_targets

    other = {**NET, "layers": [{"units": 8}]}
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        together = run_refits(evaluator, [NET, other, NET], seeds=[4, 6, 5], holdout=0.1)
        alone = run_refits(evaluator, [NET, other, NET], seeds=[4, 6, 5], holdout=0.1,
                           together=False)
    assert [r.trial_id for r in together] == [-1, -2, -3]
    assert [r.seed for r in together] == [4, 6, 5]
    assert all(r.ok and r.state is not None for r in together)
    assert (together[0].start, together[0].end) == (together[2].start, together[2].end)
    assert together[1].end != together[0].end
    for t, a in zip(together, alone, strict=True):
        y = held_out_targets(data, 0.1, t.seed)  # scored on its own tenth, as alone
        z = y - t.valid_mean
        assert t.objective == pytest.approx(
            np.mean(0.5 * (np.log(2 * np.pi * t.valid_var) + z**2 / t.valid_var)), rel=1e-5)
        assert t.n_epochs == a.n_epochs
        np.testing.assert_allclose(t.valid_mean, a.valid_mean, atol=1e-3)
        for name, weights in t.state.items():
            np.testing.assert_allclose(weights, a.state[name], atol=1e-3)
    assert not np.allclose(together[0].valid_mean[:5], together[2].valid_mean[:5])


def test_a_batched_refit_that_diverges_fails_each_of_its_networks(data):
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        results = run_refits(evaluator, [DIVERGES, DIVERGES, NET], seeds=[4, 5, 6],
                             holdout=0.1)
    assert [r.status for r in results] == ["diverged", "diverged", "success"]
    assert [(r.trial_id, r.seed) for r in results] == [(-1, 4), (-2, 5), (-3, 6)]
    assert results[0].error == results[1].error
    assert "Diverged" in results[0].error


def test_refit_tasks_group_a_configuration_and_keep_every_worker_busy():
    a, b = {"units": 1}, {"units": 2}
    assert refit_tasks([a, b, a, a], 1) == [[0, 2, 3], [1]]
    assert refit_tasks([a, b, a, a], 2) == [[0, 2, 3], [1]]
    assert refit_tasks([a, b, a, a], 3) == [[0, 2], [3], [1]]  # the largest halved
    assert refit_tasks([a] * 5, 2) == [[0, 1, 2], [3, 4]]
    assert refit_tasks([a, b], 8) == [[0], [1]]
    assert refit_tasks([dict(reversed(list({"x": 1, "y": 2}.items()))), {"x": 1, "y": 2}],
                       1) == [[0, 1]]  # the same configuration whatever its keys' order
    assert refit_tasks([], 2) == []


def test_trial_seed_depends_only_on_root_and_id():
    root = np.random.SeedSequence(42)
    seeds = [trial_seed(root, i) for i in range(5)]
    assert len(set(seeds)) == 5
    assert [trial_seed(np.random.SeedSequence(42), i) for i in (4, 2, 0)] == \
        [seeds[4], seeds[2], seeds[0]]


# -- the serial loop -------------------------------------------------------------------------


def test_serial_search_is_reproducible(data):
    configs = [NET, {**NET, "layers": [{"units": 8}, {"units": 8}]}]

    def run():
        search = ListSearch(configs)
        with SerialEvaluator() as evaluator:
            evaluator.start(data)
            results = run_search(search, evaluator, np.random.SeedSequence(1), max_evals=4)
        return search, results

    (s1, r1), (_, r2) = run(), run()
    assert [r.trial_id for r in r1] == [0, 1, 2, 3]
    assert [r.objective for r in r1] == [r.objective for r in r2]
    assert [t[1] for t in s1.told] == [r.objective for r in r1]


def test_time_budget_stops_the_search(data):
    search = ListSearch([{**NET, "max_epochs": 100000, "patience": None}])
    start = time.monotonic()
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        results = run_search(search, evaluator, np.random.SeedSequence(0), time_budget=1.0)
    assert time.monotonic() - start < 5
    assert results
    assert results[0].status == "success"  # stopped with its best weights, not thrown away


class DeadlineRecorder(SerialEvaluator):
    """A serial evaluator that records every submission's deadline and time."""

    def __init__(self):
        super().__init__()
        self.submitted = []

    def submit(self, trial_id, config, seed, deadline=None, **options):
        self.submitted.append((trial_id, time.time(), deadline))
        super().submit(trial_id, config, seed, deadline=deadline, **options)


def test_the_reserve_ends_the_search_before_the_budget(data):
    # The end of the budget is kept for the refit: trials stop at the budget less the
    # reserve, and none starts once only the reserve is left.
    search = ListSearch([{**NET, "max_epochs": 100000, "patience": None}])
    asked = []

    def reserve(slots):
        asked.append(slots)
        return 1.5

    start = time.monotonic()
    with DeadlineRecorder() as evaluator:
        evaluator.start(data)
        results = run_search(search, evaluator, np.random.SeedSequence(0), time_budget=2.0,
                             reserve=reserve)
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == ["success"]  # one trial: then only the reserve left
    [(_, submitted, deadline)] = evaluator.submitted
    assert deadline - submitted == pytest.approx(0.5, abs=0.2)
    assert elapsed < 10  # not the whole budget again: the search stopped at its end
    assert asked
    assert set(asked) == {evaluator.n_workers}


class QueueingRecorder(DeadlineRecorder):
    """Keeps more trials submitted than it has workers, as a Dask evaluator does for short
    trials (a queue per worker, several trials per task)."""

    capacity = 6


def test_the_reserve_counts_worker_slots_not_the_queue(data):
    # What follows the search (rescoring, refits) trains n_workers networks at once, however
    # many short trials the search kept queued: the reserve is sized on the workers.
    asked = []

    def reserve(slots):
        asked.append(slots)
        return 0.0

    with QueueingRecorder() as evaluator:
        evaluator.start(data)
        run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0), max_evals=1,
                   time_budget=60.0, reserve=reserve)
    assert asked
    assert set(asked) == {1}


def test_no_reserve_keeps_the_whole_budget_for_the_search(data):
    search = ListSearch([NET])
    with DeadlineRecorder() as evaluator:
        evaluator.start(data)
        run_search(search, evaluator, np.random.SeedSequence(0), max_evals=1, time_budget=60)
        run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0), max_evals=1)
    (_, t0, with_budget), (_, _, without) = evaluator.submitted
    assert with_budget - t0 == pytest.approx(60, abs=1)
    assert without is None


def test_refits_end_at_the_deadline(data):
    endless = {**NET, "max_epochs": 100000, "patience": None}
    start = time.monotonic()
    with DeadlineRecorder() as evaluator:
        evaluator.start(data)
        [refit] = run_refits(evaluator, [endless], [0], 0.1, deadline=time.time() + 0.5)
    assert refit.status == "success"  # the best weights when the deadline came
    assert time.monotonic() - start < 10
    assert evaluator.submitted[0][2] is not None


# -- the journal -----------------------------------------------------------------------------


def test_journal_round_trip_and_crash_safety(tmp_path, data):
    good = train_candidate(NET, data, seed=0, trial_id=0)
    bad = train_candidate(DIVERGES, data, seed=0, trial_id=1)
    journal = Journal(tmp_path, "abc")
    journal.append(good)
    journal.append(bad)
    with open(tmp_path / "journal.jsonl", "a") as handle:
        handle.write('{"trial_id": 2, "conf')  # a crash in the middle of a line
    loaded = Journal(tmp_path, "abc").load()
    assert [r.trial_id for r in loaded] == [0, 1]
    assert loaded[0].objective == good.objective
    np.testing.assert_array_equal(loaded[0].valid_mean, good.valid_mean)
    assert loaded[0].state.keys() == good.state.keys()
    for key, value in good.state.items():
        np.testing.assert_array_equal(loaded[0].state[key], value)
    assert loaded[1].status == "diverged"
    assert loaded[1].state is None


def test_journal_refuses_another_search(tmp_path):
    Journal(tmp_path, "one")
    with pytest.raises(ValueError, match="other data or settings"):
        Journal(tmp_path, "two")
    (tmp_path / "meta.json").write_text(json.dumps({"format": 999, "fingerprint": "one"}))
    with pytest.raises(ValueError, match="format"):
        Journal(tmp_path, "one")


def test_fingerprint_changes_with_data_and_settings(data):
    base = fingerprint(data, {"a": 1})
    assert fingerprint(dict(data), {"a": 1}) == base
    assert fingerprint(data, {"a": 2}) != base
    changed = {**data, "y_valid": data["y_valid"] + 1}
    assert fingerprint(changed, {"a": 1}) != base


# -- Dask ------------------------------------------------------------------------------------


def _dask_run(client, data, configs, max_evals, **kwargs):
    from autodeuq.evaluation import DaskEvaluator

    search = ListSearch(configs)
    evaluator = DaskEvaluator(scheduler=client, **kwargs)
    with evaluator:
        evaluator.start(data)
        results = run_search(search, evaluator, np.random.SeedSequence(0), max_evals=max_evals)
    return search, results


def test_dask_matches_serial_and_uses_both_workers(client, data):
    _, results = _dask_run(client, data, [NET], 6)
    assert sorted(r.trial_id for r in results) == list(range(6))
    assert len({r.worker for r in results}) == 2
    with SerialEvaluator() as evaluator:
        evaluator.start(data)
        serial = run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0),
                            max_evals=6)
    by_id = {r.trial_id: r.objective for r in serial}
    for r in results:
        assert r.objective == pytest.approx(by_id[r.trial_id], rel=1e-5)
    assert client.status == "running"  # a client the user made is never closed


def _kill_worker_running(client, key_part, timeout=30):
    """SIGKILL the worker process that is running a task whose key contains key_part."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            if any(key_part in str(k) for k in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                time.sleep(0.5)  # let training start
                os.kill(pid, signal.SIGKILL)
                return address
        time.sleep(0.05)
    raise AssertionError(f"no task {key_part} started within {timeout}s")


def _wait_for_workers(client, n, timeout=60):
    client.wait_for_workers(n, timeout=timeout)


def test_killed_worker_trial_is_retried_then_recorded_lost(client, data):
    import threading

    from autodeuq.evaluation import DaskEvaluator

    slow = {**NET, "max_epochs": 100000, "patience": None}
    evaluator = DaskEvaluator(scheduler=client, trial_timeout=None)
    killed = []

    def killer():
        for attempt in (1, 2):  # the first run and its one retry
            killed.append(_kill_worker_running(client, f"-0-{attempt}"))
            _wait_for_workers(client, 2)

    with evaluator:
        evaluator.start(data)
        thread = threading.Thread(target=killer)
        thread.start()
        evaluator.submit(0, slow, seed=1)
        results = []
        while not results:
            results = evaluator.collect(timeout=60)
        thread.join()
    [result] = results
    assert result.status == "lost"
    assert result.attempts == 2
    assert "worker lost" in result.error
    assert len(killed) == 2
    _wait_for_workers(client, 2)


def test_killed_worker_trial_succeeds_on_retry(client, data):
    import threading

    from autodeuq.evaluation import DaskEvaluator

    config = {**NET, "max_epochs": 300, "patience": None}
    evaluator = DaskEvaluator(scheduler=client)
    with evaluator:
        evaluator.start(data)
        thread = threading.Thread(target=_kill_worker_running, args=(client, "-0-1"))
        thread.start()
        evaluator.submit(0, config, seed=1)
        results = []
        while not results:
            results = evaluator.collect(timeout=60)
        thread.join()
    [result] = results
    assert result.status == "success"
    assert result.attempts == 2
    _wait_for_workers(client, 2)


def _worker_log_filters(client):
    """Each worker's filters on distributed's worker logger, by class name."""
    return client.run(lambda: [type(f).__name__
                               for f in logging.getLogger("distributed.worker").filters])


def test_embedded_cluster_is_started_and_closed(data):
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator(n_workers=1)
    with evaluator:
        evaluator.start(data)
        cluster = evaluator._cluster
        assert cluster is not None
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")  # loopback only
        results = run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0),
                             max_evals=2)
        filters = _worker_log_filters(evaluator._client)
    assert [r.status for r in results] == ["success", "success"]
    # Its workers keep Dask's harmless heartbeat traceback at shutdown to themselves.
    assert list(filters.values()) == [["_ClosingHeartbeat"]]
    assert cluster.status.name == "closed"
    assert evaluator._client is None


def test_a_failed_connection_leaves_no_default_client(monkeypatch):
    # distributed registers a Client as the session's default before it connects; one that
    # never connected was then taken for the user's cluster by the next embedded fit.
    from distributed import default_client

    from autodeuq.evaluation import DaskEvaluator, _dask
    from autodeuq.exceptions import SchedulerConnectionError

    monkeypatch.setattr(_dask, "_CONNECT_TIMEOUT", "1s")
    with pytest.raises(SchedulerConnectionError) as refused:
        DaskEvaluator(scheduler="inproc://nothing")._connect()
    assert refused.value.__cause__ is not None  # its traceback holds the half-made Client
    with pytest.raises(ValueError, match="No clients found"):
        default_client()


def test_a_default_client_that_is_not_running_is_passed_over(data, caplog, monkeypatch):
    # A user's Client whose connection failed, or which lost its scheduler, can stay the
    # session's default; the fit starts its own cluster rather than fail on it. A stand-in:
    # a real one, made here, left distributed's shared event loop in a state the suite's
    # later clusters tripped on (a script doing the same fits well, warned).
    import distributed

    from autodeuq.evaluation import DaskEvaluator

    class Stale:
        status = "connecting"

        def __repr__(self):
            return "<Client: scheduler='tcp://gone:8786'>"

    monkeypatch.setattr(distributed, "default_client", Stale)
    evaluator = DaskEvaluator(n_workers=1)
    with caplog.at_level(logging.WARNING, logger="autodeuq.evaluation._dask"), evaluator:
        evaluator.start(data)
        assert evaluator._cluster is not None
        assert isinstance(evaluator._client, distributed.Client)
        results = run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0),
                             max_evals=1)
    assert [r.status for r in results] == ["success"]
    assert ("default Dask client <Client: scheduler='tcp://gone:8786'> is connecting, not "
            "running: starting an embedded cluster instead") in caplog.text


@pytest.mark.parametrize("how", ["address", "scheduler_file"])
def test_external_scheduler(external_cluster, data, how):
    from autodeuq.evaluation import DaskEvaluator
    from autodeuq.evaluation._dask import scheduler_workers

    address, scheduler_file = external_cluster
    evaluator = DaskEvaluator(scheduler=address if how == "address" else str(scheduler_file))
    with evaluator:
        evaluator.start(data)
        assert evaluator.n_workers == 2
        evaluator_workers = list(scheduler_workers(evaluator._client))
        results = run_search(ListSearch([NET]), evaluator, np.random.SeedSequence(0),
                             max_evals=4)
        filters = _worker_log_filters(evaluator._client)
    assert sorted(r.trial_id for r in results) == [0, 1, 2, 3]
    assert all(r.status == "success" for r in results)
    assert {r.worker for r in results} <= set(evaluator_workers)
    assert all(f == [] for f in filters.values())  # a user's cluster logs as it was set up


def _every_millisecond(callback):
    callback.stop()  # a new period applies from its next start
    callback.callback_time = 1
    callback.start()


def test_every_worker_is_counted_at_every_read(data):
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator(n_workers=2)
    with evaluator:
        evaluator.start(data)
        # distributed's client refreshes a cached record of its cluster, holding no worker,
        # every few seconds (the scheduler sets how often); here every millisecond, so that a
        # count read from that cache would race with it.
        refresh = evaluator._client._periodic_callbacks["scheduler-info"]
        evaluator._client.loop.add_callback(_every_millisecond, refresh)
        time.sleep(0.1)
        counts = []
        for _ in range(1000):
            evaluator._n_workers = (0, -math.inf)  # ask again each time
            counts.append(evaluator.n_workers)
    assert set(counts) == {2}


@pytest.mark.parametrize("embedded", [True, False])
def test_workers_still_starting_are_no_alarm_but_workers_lost_are(monkeypatch, caplog,
                                                                    embedded):
    from autodeuq.evaluation import DaskEvaluator

    counts = iter([0, 2, 0, 2])
    monkeypatch.setattr(DaskEvaluator, "n_workers", property(lambda self: next(counts)))
    evaluator = DaskEvaluator(no_workers_timeout=60)
    evaluator._cluster = object() if embedded else None
    evaluator._client = type("Client", (), {"scheduler": type("S", (), {"address": "tcp://x"})})
    caplog.set_level(logging.INFO, logger="autodeuq.evaluation._dask")
    assert [evaluator._check_workers() for _ in range(4)] == [False, True, False, True]
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    first = (("INFO", "waiting up to 60.0 s for the embedded Dask cluster's workers to join")
             if embedded else
             ("WARNING", "the Dask cluster at tcp://x has no worker yet; waiting up to 60.0 s "
                         "for one"))
    assert said == [
        first,
        ("INFO", "the Dask cluster's workers have joined"),
        ("WARNING", "the Dask cluster at tcp://x has no worker; waiting up to 60.0 s for one"),
        ("WARNING", "the Dask cluster has workers again")]


@pytest.mark.parametrize("had_workers", [False, True])
def test_a_cluster_without_workers_is_told_apart_from_one_that_lost_them(monkeypatch,
                                                                          had_workers):
    # A cluster that never had a worker was told its workers were gone, and to read their
    # logs for why they stopped.
    from autodeuq.evaluation import DaskEvaluator
    from autodeuq.exceptions import WorkersLostError

    ticks = [0.0, 100.0]  # the first check, then 100 s on (and after)
    # Only this thread's clock is faked: a thread left running by an earlier test (Dask's,
    # logging's) reading it would take the first tick, and the checks see no time pass.
    here, real = threading.get_ident(), time.monotonic

    def clock():
        if threading.get_ident() != here:
            return real()
        return ticks.pop(0) if len(ticks) > 1 else ticks[0]

    monkeypatch.setattr(time, "monotonic", clock)
    monkeypatch.setattr(DaskEvaluator, "n_workers", property(lambda self: 0))
    evaluator = DaskEvaluator(no_workers_timeout=60)
    evaluator._client = type("Client", (), {"scheduler": type("S", (), {"address": "tcp://x"})})
    evaluator._had_workers = had_workers
    assert evaluator._check_workers() is False
    with pytest.raises(WorkersLostError) as info:
        evaluator._check_workers()
    if had_workers:
        assert str(info.value).startswith("every worker of the Dask cluster at tcp://x is gone")
    else:
        assert str(info.value).startswith(
            "the Dask cluster at tcp://x has no worker: none came in 100 s "
            "(no_workers_timeout=60 s), so the search cannot start. Start workers for it")
        assert "gone" not in str(info.value)


@pytest.mark.parametrize(("status", "message", "kept"), [
    ("closing", "Failed to communicate with scheduler during heartbeat.", False),
    ("closed", "Failed to communicate with scheduler during heartbeat.", False),
    ("running", "Failed to communicate with scheduler during heartbeat.", True),
    ("closing", "Unexpected exception during heartbeat. Closing worker.", True),
])
def test_only_a_closing_workers_heartbeat_traceback_is_dropped(status, message, kept):
    from distributed.core import Status

    from autodeuq.evaluation._dask import _ClosingHeartbeat

    worker = type("FakeWorker", (), {"status": Status[status]})()
    record = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, (),
                               None)
    assert _ClosingHeartbeat(worker).filter(record) is kept


UNGUARDED = """
import numpy as np
from autodeuq import NASRegressor

X = np.random.default_rng(0).normal(size=(60, 2))
NASRegressor(max_evals=1, refit=False, n_jobs=2).fit(X, X[:, 0])
print("fitted")
"""


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path):
    # A real script run as users run theirs: its embedded cluster's workers import it first.
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode != 0
    assert "fitted" not in run.stdout
    # Each worker says why it stopped (before training anything), then the script's own fit.
    worker = ("ClusterStartError: fit was called while a worker process of the embedded Dask "
              f"cluster imported the main module {str(script)!r}")
    assert worker in run.stderr
    # (Searched for, not taken as the last line: a closing cluster may log after it.)
    said = [line for line in run.stderr.splitlines() if line.startswith(
        "autodeuq.exceptions.ClusterStartError: scheduler=None: the embedded Dask cluster's "
        "worker processes failed to start")]
    assert len(said) == 1
    assert f"When fit runs from a script ({str(script)!r})" in said[0]
    assert 'must be under `if __name__ == "__main__":`' in said[0]
    assert "backend='serial'" in said[0]


def test_a_cluster_that_fails_to_start_names_the_ways_out(data, monkeypatch):
    import distributed

    from autodeuq.evaluation import DaskEvaluator
    from autodeuq.exceptions import ClusterStartError

    def fails(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", fails)
    # In a notebook the main module has no file: no word of a script's guard.
    monkeypatch.setitem(sys.modules, "__main__", type(sys)("__main__"))
    with pytest.raises(ClusterStartError) as info:
        DaskEvaluator(n_workers=1).start(data)
    assert str(info.value) == (
        "scheduler=None: the embedded Dask cluster's worker processes failed to start (Nanny "
        "failed to start.). Else pass backend='serial' to train in this process, or "
        "scheduler= a running cluster's address.")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_ctrl_c_while_the_cluster_starts_closes_it(data, monkeypatch):
    # A Ctrl-C inside distributed's start left the start running in its event loop thread:
    # the worker processes came up, with their ports, and outlived the fit (nothing held
    # the cluster to close them).
    import _thread

    import distributed

    from autodeuq.evaluation import DaskEvaluator

    made = []
    real = distributed.LocalCluster

    def interrupted_while_starting(*args, **kwargs):
        _thread.interrupt_main()  # a Ctrl-C, arriving while the workers start
        time.sleep(0.5)
        made.append(real(n_workers=1, threads_per_worker=1, processes=False,
                         dashboard_address=None))
        return made[-1]

    monkeypatch.setattr(distributed, "LocalCluster", interrupted_while_starting)
    # interrupt_main() does nothing while SIGINT is not Python's to handle (ignored, as a
    # background job inherits it, or another handler left by an earlier test): once, in a full
    # suite, this test saw no KeyboardInterrupt. Python's own handler for the test's time.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            DaskEvaluator(n_workers=1).start(data)
    finally:
        signal.signal(signal.SIGINT, previous)
    [cluster] = made
    assert cluster.status.name == "closed"


def test_no_cluster_is_started_while_a_worker_imports_the_main_module(data, monkeypatch):
    import multiprocessing

    import distributed

    from autodeuq.evaluation import DaskEvaluator
    from autodeuq.exceptions import ClusterStartError

    started = []
    monkeypatch.setattr(distributed, "LocalCluster", lambda *a, **k: started.append(1))
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    script = type(sys)("__mp_main__")
    script.__file__ = "/home/me/run.py"
    monkeypatch.setitem(sys.modules, "__mp_main__", script)
    with pytest.raises(ClusterStartError, match=r"imported the main module '/home/me/run\.py'"):
        DaskEvaluator(n_workers=1).start(data)
    assert started == []


def test_unreachable_scheduler_is_a_clear_error(data, monkeypatch):
    from autodeuq.evaluation import DaskEvaluator, _dask

    monkeypatch.setattr(_dask, "_CONNECT_TIMEOUT", "1s")  # Dask retries until then (20 s)
    evaluator = DaskEvaluator(scheduler="tcp://127.0.0.1:9")
    with pytest.raises(ConnectionError, match=r"scheduler='tcp://127\.0\.0\.1:9'"):
        evaluator.start(data)


def test_trial_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="status"):
        TrialResult(trial_id=0, config={}, status="weird")


def test_one_worker_per_gpu_with_its_device_pinned(data):
    """The GPU layout, checked without GPUs: each worker sees only its own device."""
    from autodeuq.evaluation import DaskEvaluator
    from autodeuq.evaluation._dask import scheduler_workers

    evaluator = DaskEvaluator(devices=["MIG-4f2c-example", "cuda:3"])
    with evaluator:
        evaluator.start(data)
        client = evaluator._client
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        resources = [w["resources"] for w in scheduler_workers(client).values()]
        assert sorted(seen.values()) == ["3", "MIG-4f2c-example"]
        assert resources == [{"GPU": 1}, {"GPU": 1}]
        assert evaluator.n_workers == 2
        assert evaluator._device == "cuda"


# -- DaskEvaluator: queue depth, bundles of very short trials, batched submission ------------


def test_queue_depth_and_bundles_follow_the_trial_duration():
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator()
    assert evaluator._shape() == (1, 1)  # nothing measured yet: prefetch, one trial a task
    # (Dask tasks queued per worker, trials per Dask task) for trials of each duration.
    for seconds, shape in [(1.0, (1, 1)), (0.1, (1, 1)), (0.02, (3, 1)), (0.004, (4, 2)),
                           (0.0, (4, 8))]:
        evaluator._durations.clear()
        evaluator._durations.extend([seconds] * 5)
        assert evaluator._shape() == shape, seconds
    fixed = DaskEvaluator(prefetch=2, max_prefetch=2, max_bundle=1)
    fixed._durations.extend([0.0] * 5)
    assert fixed._shape() == (2, 1)


class _Done:
    """Stands for a Dask future in _finish: only its status is read."""

    def __init__(self, status):
        self.status = status


def _metas(ids, attempts=1):
    return [{"trial_id": i, "config": {"i": i}, "seed": i, "attempts": attempts, "limit": None,
             "deadline": None, "holdout": None, "submitted": time.time(), "ahead": 40}
            for i in ids]


def test_a_lost_bundle_retries_each_of_its_trials_then_records_them_lost():
    from distributed import KilledWorker

    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator()
    from types import SimpleNamespace

    killed = KilledWorker("key", SimpleNamespace(address="tcp://127.0.0.1:1"), 0)
    lost = (KilledWorker, killed, None)
    first = _Done("error")
    evaluator._futures[first] = _metas([3, 4])
    assert evaluator._finish(first, lost) == []  # both resubmitted, nothing to report
    assert [(m["trial_id"], m["attempts"]) for m in evaluator._pending] == [(3, 2), (4, 2)]
    assert evaluator.n_running == 2
    evaluator._pending = []
    second = _Done("error")
    evaluator._futures[second] = _metas([3, 4], attempts=2)
    results = evaluator._finish(second, lost)
    assert [(r.trial_id, r.status, r.attempts) for r in results] == [(3, "lost", 2),
                                                                     (4, "lost", 2)]
    assert all("KilledWorker" in r.error for r in results)
    assert evaluator._pending == []


def test_a_cancelled_trial_that_never_started_is_sent_again_without_spending_an_attempt(
        monkeypatch):
    # When the workers die, a trial still queued behind another loses its scattered data and
    # is cancelled rather than killed: no worker is named, and it used to spend an attempt.
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator()
    evaluator._client = object()  # only _started (stubbed) asks it
    monkeypatch.setattr(DaskEvaluator, "_started", lambda self, worker=None: {"ran"})
    queued, running = _Done("cancelled"), _Done("cancelled")
    queued.key, running.key = "queued", "ran"
    evaluator._futures[queued] = _metas([1])
    evaluator._futures[running] = _metas([2])
    assert evaluator._finish(queued, None) == []
    assert evaluator._finish(running, None) == []
    assert [(m["trial_id"], m["attempts"], m.get("requeued", 0))
            for m in evaluator._pending] == [(1, 1, 1), (2, 2, 0)]
    evaluator._client = None


def test_a_bundled_trial_that_raises_fails_alone():
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator()
    done = _Done("finished")
    evaluator._futures[done] = _metas([5, 6, 7])
    ok = TrialResult(trial_id=5, config={"i": 5}, status="success", objective=1.0, start=10.0,
                     end=10.001)
    results = evaluator._finish(done, [ok, ValueError("boom"), OSError("disk gone")])
    assert [(r.trial_id, r.status) for r in results] == [(5, "success"), (6, "failed")]
    assert results[1].error == "ValueError: boom"
    assert [(m["trial_id"], m["attempts"]) for m in evaluator._pending] == [(7, 2)]  # as lost
    assert list(evaluator._durations) == [pytest.approx(0.001)]


def test_very_short_trials_run_in_bundles_and_each_comes_back_once(client, data):
    from autodeuq.evaluation import DaskEvaluator

    def quick(config, data, seed, device="cpu", time_limit=None, trial_id=-1, deadline=None,
              holdout=None):
        if config.get("raise"):
            raise ValueError("boom")
        now = time.time()
        return TrialResult(trial_id=trial_id, config=config, status="success",
                           objective=float(seed) if holdout is None else holdout,
                           seed=int(seed), start=now, end=now, worker=str(os.getpid()))

    search = ListSearch([{"i": 0}] * 9 + [{"raise": True}])
    evaluator = DaskEvaluator(scheduler=client, task=quick)
    widest = []
    with evaluator:
        evaluator.start(data)
        # Submitted trials wait for the next collect() and then go to the scheduler together.
        for i in range(3):
            evaluator.submit(1000 + i, {"i": i}, seed=i)
        assert evaluator.n_running == 3
        assert not evaluator._futures
        early = []
        while len(early) < 3:
            early += evaluator.collect(timeout=30)
        assert sorted(r.trial_id for r in early) == [1000, 1001, 1002]

        def on_result(result):
            widest.append(max((len(m) for m in evaluator._futures.values()), default=0))

        results = run_search(search, evaluator, np.random.SeedSequence(0), max_evals=80,
                             on_result=on_result)
        assert evaluator._shape()[1] > 1
        refits = run_refits(evaluator, [{"i": 0}] * 5, seeds=[1, 2, 3, 4, 5], holdout=0.25,
                            together=False)
    assert max(widest) > 1  # some Dask tasks held several trials
    assert sorted(r.trial_id for r in results) == list(range(80))
    for r in results:
        assert r.attempts == 1
        if r.trial_id % 10 == 9:
            assert (r.status, r.error) == ("failed", "ValueError: boom")
        else:
            assert r.status == "success"
            assert r.objective == float(trial_seed(np.random.SeedSequence(0), r.trial_id))
    assert [r.trial_id for r in refits] == [-1, -2, -3, -4, -5]
    assert all(r.ok and r.objective == 0.25 for r in refits)  # holdout= reached the task
    assert client.status == "running"
