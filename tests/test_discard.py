"""Early discarding: rung thresholds, the trainer's rung stop, and the searching estimators."""

import json
import math
import warnings

import numpy as np
import pytest
from conftest import search_dir

from autodeuq import AutoDEUQRegressor, NASRegressor
from autodeuq.evaluation import (
    OneEpoch,
    RungTable,
    SuccessiveHalving,
    TrialResult,
    make_early_discard,
    rung_threshold,
    search_outcome,
    train_candidate,
)
from autodeuq.space import Float, Int

EPOCHS = 8
SPACE = {"num_layers": 1, "units_1": Int(4, 16), "learning_rate": Float(1e-6, 1e-1, log=True),
         "batch_size": 16, "max_epochs": EPOCHS, "patience": None}


def config(units, learning_rate):
    return {"num_layers": 1, "units_1": units, "learning_rate": learning_rate,
            "batch_size": 16, "max_epochs": EPOCHS, "patience": None}


GOOD = [config(16, 3e-2), config(15, 3e-2), config(14, 3e-2)]
BAD = [config(4, 1e-6), config(5, 1e-6)]


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(160, 3))
    return X, np.sin(X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=len(X))


def nas(initial, **params):
    defaults = {"search_space": SPACE, "algorithm": "random", "max_evals": len(initial),
                "backend": "serial", "random_state": 0, "refit": False,
                "initial_configs": initial}
    return NASRegressor(**{**defaults, **params})


def row(table, job_id):
    return table.loc[table["job_id"] == job_id].iloc[0]


# -- the rung logic --------------------------------------------------------------------------


def test_threshold_is_the_value_that_keeps_the_best_fraction():
    # 5 values recorded, keep 1/3: a 6th value is among the best floor(6/3) = 2 of the six
    # when it is not above the 2nd smallest recorded.
    assert rung_threshold([5.0, 1.0, 3.0, 2.0, 4.0], keep=1 / 3, min_trials=3) == 2.0
    assert rung_threshold([5.0, 1.0], keep=1 / 3, min_trials=3) == math.inf
    assert rung_threshold([], keep=0.5, min_trials=1) == math.inf
    # Never fewer than one kept: with 1 value and keep 0.2, beat it to go on.
    assert rung_threshold([0.7], keep=0.2, min_trials=1) == 0.7


@pytest.mark.parametrize("keep", [0.2, 1 / 3, 0.5, 0.75])
def test_passing_the_threshold_is_being_in_the_best_fraction(keep):
    rng = np.random.default_rng(1)
    for n in range(1, 30):
        values = rng.integers(0, 10, size=n).astype(float)  # ties included
        threshold = rung_threshold(values, keep, min_trials=1)
        for v in np.arange(-1.0, 11.0):
            # The brute-force rule: v's rank among all n + 1 values (ties in its favour).
            k = max(1, math.floor((n + 1) * keep + 1e-9))
            assert (v <= threshold) == (np.sum(values < v) + 1 <= k)


def test_rung_table_gives_each_rung_the_threshold_of_its_values():
    table = RungTable(SuccessiveHalving(min_epochs=2, eta=2, min_trials=2))
    assert [e for e, _ in table.rungs()][:5] == [2, 4, 8, 16, 32]
    assert all(t == math.inf for _, t in table.rungs())
    for i, values in enumerate([[[2, 0.9], [4, 0.5]], [[2, 0.3]], [[2, 0.6], [4, 0.8]]]):
        table.record(TrialResult(trial_id=i, config={}, status="success", rung_nlls=values))
    rungs = dict(table.rungs())
    assert table.values(2) == [0.9, 0.3, 0.6]
    assert rungs[2] == 0.6  # 3 values, keep 1/2: the best 2 of 4 -> 2nd smallest
    assert rungs[4] == 0.5  # 2 values: the best 1 of 3 -> smallest
    assert rungs[8] == math.inf  # no value there yet


def test_schedules():
    # The defaults: rungs from epoch 9 (the first epochs rank poorly), nine values each.
    assert SuccessiveHalving().rung_epochs()[:5] == (9, 27, 81, 243, 729)
    assert SuccessiveHalving().min_trials == 9
    assert SuccessiveHalving(1).rung_epochs()[:5] == (1, 3, 9, 27, 81)
    assert SuccessiveHalving(eta=3, min_trials=None).min_trials == 3
    assert make_early_discard("successive_halving") == SuccessiveHalving(9, 3, 9)
    assert OneEpoch().rung_epochs() == (1,)
    assert OneEpoch(keep=0.2).min_trials == 5
    assert make_early_discard("one_epoch") == OneEpoch()
    assert make_early_discard(None) is None


def test_a_discarded_trial_is_told_as_a_success_with_its_partial_nll():
    discarded = TrialResult(trial_id=0, config={}, status="discarded", objective=1.5)
    failed = TrialResult(trial_id=1, config={}, status="failed")
    assert search_outcome(discarded) == (1.5, "success")
    assert search_outcome(failed) == (None, "failed")


# -- on the worker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(xy):
    X, y = xy
    X, y = X.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32)
    return {"X_train": X[:128], "y_train": y[:128], "X_valid": X[128:], "y_valid": y[128:]}


def test_a_trial_above_a_rung_threshold_stops_there(data):
    net = {"layers": [{"units": 8}], "learning_rate": 1e-2, "max_epochs": EPOCHS,
           "patience": None}
    full = train_candidate(net, data, seed=3)
    recorded = train_candidate(net, data, seed=3, rungs=((1, math.inf), (3, math.inf)))
    # Rungs that never stop change nothing but the record.
    assert (recorded.status, recorded.n_epochs) == ("success", EPOCHS)
    assert recorded.objective == full.objective
    for key, value in full.state.items():
        np.testing.assert_array_equal(recorded.state[key], value)
    assert [e for e, _ in recorded.rung_nlls] == [1, 3]
    assert recorded.rung_nlls[1][1] <= recorded.rung_nlls[0][1]  # best so far
    stopped = train_candidate(net, data, seed=3, rungs=((1, math.inf), (3, -math.inf)))
    assert (stopped.status, stopped.n_epochs) == ("discarded", 3)
    assert stopped.objective == recorded.rung_nlls[1][1]
    assert stopped.rung_nlls == recorded.rung_nlls
    assert (stopped.state, stopped.valid_mean) == (None, None)
    # A rung at the last epoch would discard a finished network: it is ignored.
    last = train_candidate(net, data, seed=3, rungs=((EPOCHS, -math.inf),))
    assert (last.status, last.rung_nlls) == ("success", [])


def test_a_discarded_trial_is_scored_on_the_validation_part_as_finished_ones_are(data):
    # With early-stopping rows apart (as the estimators give), rung values are read there,
    # but the objective the search ranks by is on the validation part for every trial.
    shifted = {**data, "X_train": data["X_train"][:96], "y_train": data["y_train"][:96],
               "X_stop": data["X_train"][96:], "y_stop": data["y_train"][96:] + 20}
    net = {"layers": [{"units": 8}], "learning_rate": 1e-2, "max_epochs": EPOCHS,
           "patience": None}
    stopped = train_candidate(net, shifted, seed=3, rungs=((2, -math.inf),))
    assert (stopped.status, stopped.n_epochs) == ("discarded", 2)
    rung_value = stopped.rung_nlls[0][1]
    assert rung_value > 20  # the shifted rows are far from every prediction
    assert stopped.objective < rung_value / 4  # the validation part is not
    finished = train_candidate(net, shifted, seed=3)
    assert abs(stopped.objective - finished.objective) < rung_value / 4  # the same scale


# -- in the search ---------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "first_rung"), [
    (OneEpoch(keep=0.75, min_trials=2), 1),
    (SuccessiveHalving(min_epochs=6, eta=4 / 3, min_trials=2), 6),  # rungs 6, 8, ...
])
def test_a_bad_candidate_is_discarded_at_the_first_rung_and_a_good_one_runs_on(xy, policy,
                                                                             first_rung):
    X, y = xy
    # Two values are needed at a rung: the bad candidate is judged against the two good ones,
    # keeping the best 3/4 of 3; the last good one against all three, keeping 3 of 4.
    est = nas([GOOD[0], GOOD[1], BAD[0], GOOD[2]], early_discard=policy).fit(X, y)
    table = est.search_results_
    bad, good = row(table, 2), row(table, 3)
    assert (bad["status"], bad["discarded"], bad["n_epochs"], bad["rung"]) == (
        "discarded", True, first_rung, 1)
    assert np.isfinite(bad["valid_nll"])
    assert (good["status"], good["discarded"], good["n_epochs"]) == ("success", False, EPOCHS)
    assert good["rung"] == 1
    assert est.best_params_ != BAD[0]


def test_discarded_trials_are_never_selected(xy):
    X, y = xy
    est = AutoDEUQRegressor(
        search_space=SPACE, algorithm="random", max_evals=5, backend="serial", random_state=0,
        refit=False, ensemble_size=5, initial_configs=[GOOD[0], GOOD[1], *BAD, GOOD[2]],
        early_discard=OneEpoch(keep=0.5, min_trials=2)).fit(X, y)
    table = est.search_results_
    discarded = table.loc[table["discarded"], "job_id"].tolist()
    # Both bad candidates go; the first two are never judged (min_trials=2). The last good
    # one is judged on its one-epoch NLL against the others', which may discard it too.
    assert {2, 3} <= set(discarded) <= {2, 3, 4}
    assert (table.loc[table["discarded"], "selected"] == 0).all()
    assert not {m["trial_id"] for m in est.members_} & set(discarded)
    assert est.n_candidates_ == 5 - len(discarded)
    # The search results show what discarding saved: epochs and seconds.
    kept = table.loc[~table["discarded"]]
    assert (table.loc[table["discarded"], "n_epochs"] == 1).all()
    assert (kept["n_epochs"] == EPOCHS).all()
    assert (table["rung"] == 1).all()
    # Seconds too, but comparing them would be a timing test (a loaded machine can stretch
    # a one-epoch trial past an eight-epoch one): each is recorded.
    assert (table["duration"] > 0).all()


def test_resume_restores_the_rung_values_of_journaled_trials(xy, tmp_path):
    X, y = xy
    policy = OneEpoch(keep=0.5, min_trials=2)
    first = nas([GOOD[0], GOOD[1], BAD[0]], early_discard=policy,
                checkpoint_dir=tmp_path).fit(X, y)
    assert list(first.search_results_["status"]) == ["success", "success", "discarded"]
    journal = search_dir(tmp_path)
    lines = [json.loads(s) for s in (journal / "journal.jsonl").read_text().splitlines()]
    assert (lines[2]["status"], lines[2]["rung_nlls"][0][0]) == ("discarded", 1)
    assert not (journal / "weights" / "trial-2.npz").exists()
    # Resumed: the three journaled trials are read back, and the next bad candidate is judged
    # against their one-epoch values (2 are needed before anything is discarded).
    resumed = nas([GOOD[0], GOOD[1], BAD[0], BAD[1]], early_discard=policy,
                  checkpoint_dir=tmp_path).fit(X, y)
    table = resumed.search_results_
    assert list(table["status"]) == ["success", "success", "discarded", "discarded"]
    assert row(table, 2)["duration"] == row(first.search_results_, 2)["duration"]
    # Another policy's rung values are not comparable: its search is another one.
    other = nas([GOOD[0]], max_evals=1, early_discard=OneEpoch(keep=0.25),
                checkpoint_dir=tmp_path).fit(X, y)
    assert len(other.search_results_) == 1
    assert len(list(tmp_path.glob("search-*"))) == 2


@pytest.mark.parametrize(("value", "match"), [
    ("halving", "early_discard must be None, 'successive_halving', 'one_epoch'"),
    (0.5, "early_discard must be None"),
])
def test_invalid_option_is_refused_before_the_search(xy, tmp_path, value, match):
    X, y = xy
    with pytest.raises(ValueError, match=match):
        nas([GOOD[0]], early_discard=value, checkpoint_dir=tmp_path / "journal").fit(X, y)
    assert not (tmp_path / "journal").exists()  # nothing started


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SuccessiveHalving(eta=1), "eta must be a number > 1"),
    (lambda: SuccessiveHalving(min_epochs=0), "min_epochs must be an int >= 1"),
    (lambda: OneEpoch(keep=1.0), r"keep must be a fraction in \(0, 1\)"),
    (lambda: OneEpoch(min_trials=0), "min_trials must be an int >= 1"),
])
def test_invalid_policy_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_thresholds_reach_the_dask_workers(client, data):
    from autodeuq.evaluation import DaskEvaluator

    def echo(config, data, seed, device="cpu", time_limit=None, trial_id=-1, deadline=None,
             rungs=None):
        return TrialResult(trial_id=trial_id, config=config, status="discarded", objective=1.0,
                           rung_nlls=[[epoch, threshold] for epoch, threshold in rungs])

    rungs = [((1, 0.5), (3, math.inf)), ((1, 0.25), (3, 0.75))]
    with DaskEvaluator(scheduler=client, task=echo) as evaluator:
        evaluator.start(data)
        for trial_id, trial_rungs in enumerate(rungs):
            evaluator.submit(trial_id, {}, seed=trial_id, rungs=trial_rungs)
        results = []
        while evaluator.n_running:
            results += evaluator.collect(timeout=60)
    for result in results:
        assert [tuple(r) for r in result.rung_nlls] == list(rungs[result.trial_id])


@pytest.mark.parametrize(("space", "policy", "warns"), [
    (SPACE, "successive_halving", True),                   # max_epochs 8 < the first rung, 9
    ({**SPACE, "max_epochs": Int(2, 8)}, SuccessiveHalving(), True),
    ({**SPACE, "max_epochs": Int(2, 12)}, "successive_halving", False),
    (SPACE, SuccessiveHalving(min_epochs=1, min_trials=2), False),
    (SPACE, "one_epoch", False),
    (SPACE, None, False),
])
def test_a_rung_no_candidate_reaches_is_warned_of(xy, space, policy, warns):
    X, y = xy
    est = nas([GOOD[0]], search_space=space, early_discard=policy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    said = [str(w.message) for w in caught if "first rung" in str(w.message)]
    if warns:
        assert len(said) == 1
        assert "first rung at epoch 9" in said[0]
        assert "at most 8 epoch(s)" in said[0]
        assert "SuccessiveHalving(min_epochs=1)" in said[0]
    else:
        assert said == []
    assert est.search_results_["status"].tolist() == ["success"]  # the fit went on
