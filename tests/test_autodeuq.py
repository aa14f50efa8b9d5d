"""AutoDEUQRegressor: catalogue, ensemble selection and the fitted ensemble."""

import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import ndtri
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor
from autodeuq.estimators._search_base import BATCH_COST
from autodeuq.space import Float, Int
from autodeuq.uncertainty import calibrated_levels, transfer_pits

SPACE = {"num_layers": 1, "units_1": Int(4, 32), "learning_rate": Float(1e-3, 3e-2, log=True),
         "max_epochs": 40, "patience": 10}


def auto(**params):
    # max_networks=None: a time budget's leftover does not add networks (tested on its own).
    defaults = {"search_space": SPACE, "algorithm": "random", "max_evals": 8,
                "backend": "serial", "ensemble_size": 3, "max_networks": None,
                "random_state": 0}
    return AutoDEUQRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted(regression_data):
    X, y, _, _ = regression_data
    return auto().fit(X, y)


def test_the_fitted_result_is_a_pipeline_holding_the_ensemble(fitted, regression_data):
    X_test = regression_data[2]
    assert isinstance(fitted.pipeline_, Pipeline)
    ensemble = fitted.pipeline_[-1]
    assert isinstance(ensemble, DeepEnsembleRegressor)
    assert len(ensemble.estimators_) == len(fitted.members_) == 3  # refit: ensemble_size nets
    np.testing.assert_allclose(ensemble.weights_, [m["weight"] for m in fitted.members_])
    assert sum(m["weight"] for m in fitted.members_) == pytest.approx(1.0)
    unc = fitted.predict_uncertainty(X_test)
    np.testing.assert_allclose(unc.total_std**2, unc.aleatoric_std**2 + unc.epistemic_std**2,
                               rtol=1e-12)
    np.testing.assert_array_equal(unc.mean, fitted.pipeline_.predict(X_test))
    lower, upper = fitted.predict_interval(X_test, coverage=0.9)
    assert np.all(lower < upper)


def test_intervals_are_calibrated_on_the_validation_predictions(fitted, regression_data):
    _, y, X_test, y_test = regression_data
    ensemble = fitted.pipeline_[-1]
    pits = ensemble.interval_pits_
    # The searched ensemble's CDF at every validation point (both parts, with rescoring).
    assert pits.ndim == 1
    assert len(pits) > 0.2 * len(y)
    assert np.all(np.diff(pits) >= 0)
    assert np.all((pits >= 0) & (pits <= 1))
    dist = fitted.predict_distribution(X_test)
    for coverage in (0.5, 0.9):
        lower, upper = calibrated_levels(pits, coverage)
        want = dist.ppf(np.full(len(X_test), lower)), dist.ppf(np.full(len(X_test), upper))
        got = fitted.predict_interval(X_test, coverage=coverage)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        # The pipeline alone gives the same intervals.
        alone = ensemble.predict_interval(fitted.pipeline_[:-1].transform(X_test), coverage)
        np.testing.assert_array_equal(alone[0], got[0])
    # Calibrating again on other held-out data replaces the levels, not the distribution.
    again = pickle.loads(pickle.dumps(fitted))
    assert again.calibrate_intervals(X_test, y_test) is again
    np.testing.assert_array_equal(again.pipeline_[-1].interval_pits_,
                                  np.sort(dist.cdf(y_test)))
    np.testing.assert_array_equal(again.predict_distribution(X_test).stds, dist.stds)


def test_without_interval_calibration_the_interval_is_the_mixtures(regression_data):
    X, y, X_test, _ = regression_data
    est = auto(max_evals=4, interval_calibration=False).fit(X, y)
    assert est.pipeline_[-1].interval_pits_ is None
    want = est.predict_distribution(X_test).interval(0.9)
    got = est.predict_interval(X_test, coverage=0.9)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_members_are_readable_and_marked_in_the_results(fitted):
    table = fitted.search_results_
    assert table["selected"].sum() == pytest.approx(1.0)
    for member in fitted.members_:
        assert member["config"]["layers"][0]["units"] in range(4, 33)
        row = table.loc[table["job_id"] == member["trial_id"]].iloc[0]
        assert row["selected"] == pytest.approx(sum(
            m["weight"] for m in fitted.members_ if m["trial_id"] == member["trial_id"]))
        assert row["valid_nll"] == pytest.approx(member["valid_nll"])
    assert fitted.n_candidates_ == (table["status"] == "success").sum()


def test_greedy_ensemble_is_no_worse_than_its_best_member_on_validation(fitted, regression_data):
    # Scored on both validation parts (of equal size): a candidate alone scores the mean of
    # its two NLLs there.
    best_single = min((r["valid_nll"] + r["rescore_nll"]) / 2 for r in fitted.rescored_)
    assert fitted.validation_nll_ <= best_single + 1e-9
    X, y, _, _ = regression_data
    # Rescored as three networks: scored on the second split alone, each candidate as its
    # networks' mixture.
    three = auto(rescore_networks=3).fit(X, y)
    assert three.validation_nll_ <= min(r["rescore_nll"] for r in three.rescored_) + 1e-9
    alone = auto(rescore_top=0).fit(X, y)
    assert alone.validation_nll_ <= alone.search_results_["valid_nll"].min() + 1e-9


def test_rescoring_scores_the_best_candidates_again_before_selecting(fitted):
    table = fitted.search_results_
    rescored = {r["trial_id"]: r for r in fitted.rescored_}
    # The best rescore_top (10 > 8 trials: all of them) by their own validation NLL.
    assert set(rescored) == set(table.loc[table["status"] == "success", "job_id"])
    for trial_id, r in rescored.items():
        row = table.loc[table["job_id"] == trial_id].iloc[0]
        assert r["valid_nll"] == pytest.approx(row["valid_nll"])
        assert row["rescore_nll"] == pytest.approx(r["rescore_nll"])
        assert np.isfinite(r["rescore_nll"])
        assert r["rescore_nll"] != r["valid_nll"]
    assert {m["trial_id"] for m in fitted.members_} <= set(rescored)


def test_rescoring_keeps_the_best_and_the_first_selection(regression_data, monkeypatch):
    from autodeuq.ensemble import GreedySelector

    first = []
    real = GreedySelector._select

    def recording(self, y, means, variances, objectives):
        indices, weights = real(self, y, means, variances, objectives)
        first.append(indices)
        return indices, weights

    monkeypatch.setattr(GreedySelector, "_select", recording)
    X, y, _, _ = regression_data
    est = auto(rescore_top=2, max_evals=10).fit(X, y)
    table = est.search_results_
    ok = table.loc[table["status"] == "success"].reset_index(drop=True)
    picked = set(ok.loc[list(first[0]), "job_id"])  # catalogue order is trial order here
    best_two = set(ok.nsmallest(2, "valid_nll")["job_id"])
    assert {r["trial_id"] for r in est.rescored_} == picked | best_two
    assert table["rescore_nll"].notna().sum() == len(picked | best_two)


def _time_candidates(monkeypatch, seconds):
    """Every candidate in the catalogue is taken to have trained for ``seconds`` (a number,
    or a function of its catalogue entry)."""
    from autodeuq.ensemble import Catalogue

    real_add = Catalogue.add

    def timed(self, result):
        entry = real_add(self, result)
        entry.duration = seconds(entry) if callable(seconds) else seconds
        return entry

    monkeypatch.setattr(Catalogue, "add", timed)


def _record_trainings(monkeypatch, refits):
    """The configurations of each call that trains refits (``refits=True``) or rescorings,
    in a list filled as they come."""
    from autodeuq.estimators import _search_base

    real, calls = _search_base.run_refits, []

    def recording(evaluator, configs, seeds, holdout, deadline=None, **options):
        if isinstance(holdout, float) == refits:
            calls.append(configs)
        return real(evaluator, configs, seeds, holdout, deadline=deadline, **options)

    monkeypatch.setattr(_search_base, "run_refits", recording)
    return calls


def _fit_an_hour(monkeypatch, regression_data, seconds):
    """A fit with an hour's budget whose candidates all took ``seconds`` to train; the fitted
    estimator and its rescoring calls."""
    _time_candidates(monkeypatch, seconds)
    rescorings = _record_trainings(monkeypatch, refits=False)
    X, y, _, _ = regression_data
    return auto(time_budget=3600, max_evals=12).fit(X, y), rescorings


def _fit_rescorings_taking(monkeypatch, regression_data, took, time_budget=3600, networks=1,
                           **params):
    """A fit whose candidates all trained for 100 s in the search and whose rescoring rounds
    (serial: one candidate of ``networks`` networks a round) take ``took(round)`` seconds
    each, on a clock that moves on by as much."""
    import time

    from autodeuq.estimators import _autodeuq, _search_base

    clock = {"offset": 0.0}
    monkeypatch.setattr(_autodeuq, "time", type("Clock", (), {
        "time": staticmethod(lambda: time.time() + clock["offset"]),
        "monotonic": staticmethod(time.monotonic)}))
    _time_candidates(monkeypatch, 100.0)
    real, rounds = _search_base.run_refits, []

    def slow_rescores(evaluator, configs, seeds, holdout, deadline=None, **options):
        results = real(evaluator, configs, seeds, holdout, deadline=deadline, **options)
        if not isinstance(holdout, float):
            seconds = took(len(rounds))
            rounds.append(seconds)
            for r in results:
                r.end = r.start + seconds
            clock["offset"] += seconds
        return results

    monkeypatch.setattr(_search_base, "run_refits", slow_rescores)
    X, y, _, _ = regression_data
    return auto(**{"time_budget": time_budget, "max_evals": 12, "rescore_networks": networks,
                   **params}).fit(X, y)


@pytest.mark.parametrize(("took", "n_rescored"), [(0, 10), (400, 3), (1200, 0)])
def test_rescoring_takes_only_the_time_the_refit_leaves(regression_data, monkeypatch,
                                                        took, n_rescored):
    est = _fit_rescorings_taking(monkeypatch, regression_data, lambda _: took)
    # The refit of the first selection's 3 networks, one after another, is taken to last
    # 3 x 1.5 x 1.25 x 100 s (refit_round), scaled by the rescorings' time over the search's
    # once they ran. took=400: 4 times as long, so 2250 s stay free for the refit; the
    # rounds end at 400, 800 and 1200 s, and a fourth would pass 3600 - 2250 s. took=1200:
    # the refit alone is then taken to need 6750 s; one candidate rescored alone is
    # compared with nothing, so none is used.
    assert len(est.rescored_) == n_rescored
    if n_rescored:
        best = est.search_results_.nsmallest(1, "valid_nll")["job_id"].item()
        assert est.rescored_[0]["trial_id"] == best  # greedy's first pick: the best alone


def test_rescoring_leaves_room_for_the_networks_planned(regression_data, monkeypatch):
    # The budget stops the search (its reserve is all of it once 12 trials succeeded): with
    # max_networks, the gate keeps room for twice ensemble_size networks of the first
    # selection's picks (two per pick, trained together: 1.45 times one), not
    # ensemble_size, so fewer 100-s rounds of rescoring fit in 1500 s.
    monkeypatch.setattr(AutoDEUQRegressor, "_time_reserve", lambda self, timed, slots, rows: (
        0.0 if len(timed) < 12 else self.time_budget))
    counts = []
    for max_networks in (None, 20):
        est = _fit_rescorings_taking(monkeypatch, regression_data, lambda _: 100.0,
                                     time_budget=1500, max_evals=None,
                                     max_networks=max_networks)
        counts.append(len(est.rescored_))
    assert 2 <= counts[1] < counts[0] < 10


def test_one_slow_rescoring_does_not_stop_the_others(regression_data, monkeypatch):
    # The third rescoring takes 300 s for a 100-s candidate, the others 10 s: all together
    # 1.07 times the search's time, so the refit is taken to need 3 x 187.5 x 1.07 = 600 s
    # of the 2250, and every round fits (taken at 1.07 x 100 s). Scaled by the slowest
    # (3 times), the refit would keep 1687.5 s and a fourth round would not start.
    est = _fit_rescorings_taking(monkeypatch, regression_data,
                                 lambda n: 300.0 if n == 2 else 10.0, time_budget=2250)
    assert len(est.rescored_) == 10


def test_a_rescoring_of_several_networks_is_expected_to_take_as_many_trainings(
        regression_data, monkeypatch):
    # Three networks a candidate, 300 s a round for 100-s candidates: as expected, so the
    # refit keeps its 3 x 187.5 s and all ten rounds fit in the hour. Taken as one
    # training, the rescorings would look three times slower than the search: the refit
    # would be taken to need 1687.5 s, and only six rounds would start.
    est = _fit_rescorings_taking(monkeypatch, regression_data, lambda _: 300.0, networks=3)
    assert len(est.rescored_) == 10


def test_one_worker_rescores_nothing_when_one_round_fits(regression_data, monkeypatch):
    # Serial (one network a round), every candidate trained for 500 s: the refit of 3
    # networks is taken to need 3 x 1.5 x 1.25 x 500 = 2812.5 s, so an hour leaves room for
    # one rescoring round, not the two that two candidates need, and one candidate rescored
    # alone would be compared with nothing: none is trained.
    est, rescorings = _fit_an_hour(monkeypatch, regression_data, 500.0)
    assert rescorings == []
    assert est.rescored_ == []
    assert len(est.members_) == 3  # the refit still ran


def test_rescoring_leaves_room_for_refitting_the_first_selection(regression_data,
                                                                 monkeypatch):
    # The first selection's picks took 1000 s each to train: their refit (3 networks of
    # 1.5 x rows x 1000 s) fills the hour, so nothing is rescored and the refit keeps its
    # time.
    est, rescorings = _fit_an_hour(monkeypatch, regression_data, 1000.0)
    assert rescorings == []
    assert est.rescored_ == []


def test_the_refit_starts_its_longest_networks_first(regression_data, monkeypatch):
    from autodeuq.evaluation._train import network_config

    _time_candidates(monkeypatch, lambda entry: float(entry.trial_id))  # later, longer
    submitted = _record_trainings(monkeypatch, refits=True)
    X, y, _, _ = regression_data
    est = auto(ensemble_size=4).fit(X, y)
    ids = [m["trial_id"] for m in est.members_]
    configs = {m["trial_id"]: m["config"] for m in est.members_}
    [order] = submitted
    assert [network_config(c) for c in order] == [configs[i] for i in sorted(ids, reverse=True)]
    assert len(set(ids)) > 1  # the order was tested on more than one configuration


def test_the_refits_seeds_do_not_depend_on_how_long_candidates_took(regression_data,
                                                                     monkeypatch):
    # Serial, one random_state: the same refitted networks whichever order the refit
    # submits them in (the later trials longest, then the earlier ones).
    X, y, X_test, _ = regression_data
    fits = []
    for sign in (1.0, -1.0):
        with monkeypatch.context() as patched:
            _time_candidates(patched, lambda entry, sign=sign: 100.0 + sign * entry.trial_id)
            fits.append(auto(rescore_top=0).fit(X, y))
    assert len({m["trial_id"] for m in fits[0].members_}) > 1
    np.testing.assert_array_equal(fits[0].predict(X_test), fits[1].predict(X_test))


def _search_three_seconds(monkeypatch):
    """The budget stops the search (max_evals=None) after about 3 s: the reserve keeps the
    rest for what follows."""
    monkeypatch.setattr(AutoDEUQRegressor, "_time_reserve",
                        lambda self, timed, slots, rows: self.time_budget - 3.0)


def test_the_time_the_refit_leaves_trains_more_networks(regression_data, monkeypatch):
    X, y, X_test, _ = regression_data
    deadlines = []
    from autodeuq.estimators import _search_base
    real = _search_base.run_refits

    def recording(evaluator, configs, seeds, holdout, deadline=None, **options):
        if isinstance(holdout, float):  # the refit's networks
            deadlines.append((len(configs), deadline))
        return real(evaluator, configs, seeds, holdout, deadline=deadline, **options)

    monkeypatch.setattr(_search_base, "run_refits", recording)
    _search_three_seconds(monkeypatch)
    est = auto(time_budget=3600, max_evals=None, max_networks=7).fit(X, y)
    ensemble = est.pipeline_[-1]
    assert len(est.members_) == len(ensemble.estimators_) == 7
    # The refit's 3 networks, then one round of the 4 more (the hour holds them all), all by
    # the fit's deadline.
    assert [n for n, _ in deadlines] == [3, 4]
    assert len({d for _, d in deadlines}) == 1
    # A configuration's weight is shared equally among its networks, in D'Hondt proportion.
    by_trial = {}
    for m in est.members_:
        by_trial.setdefault(m["trial_id"], []).append(m["weight"])
    assert sum(sum(w) for w in by_trial.values()) == pytest.approx(1.0)
    for weights in by_trial.values():
        np.testing.assert_allclose(weights, weights[0])
    np.testing.assert_allclose(ensemble.weights_, [m["weight"] for m in est.members_])
    counts = {t: len(w) for t, w in by_trial.items()}
    totals = {t: sum(w) for t, w in by_trial.items()}
    for t in counts:  # each extra network went to the largest weight per network
        for u in counts:
            if counts[t] > 1:
                assert totals[t] / (counts[t] - 1) >= totals[u] / counts[u] - 1e-12
    # Networks of one configuration come from distinct seeds.
    for t, n in counts.items():
        if n > 1:
            nets = [net for net, m in zip(ensemble.estimators_, est.members_, strict=True)
                    if m["trial_id"] == t]
            assert not np.array_equal(nets[0].predict(X_test), nets[1].predict(X_test))
    assert est.search_results_["selected"].sum() == pytest.approx(1.0)


def test_no_more_networks_where_a_round_would_not_fit(regression_data, monkeypatch):
    from autodeuq.estimators import _search_base
    real = _search_base.run_refits

    def slow(evaluator, configs, seeds, holdout, deadline=None, **options):
        results = real(evaluator, configs, seeds, holdout, deadline=deadline, **options)
        if isinstance(holdout, float):  # refits taken to have trained for an hour
            for r in results:
                r.end = r.start + 3600.0
        return results

    monkeypatch.setattr(_search_base, "run_refits", slow)
    _search_three_seconds(monkeypatch)
    X, y, _, _ = regression_data
    est = auto(time_budget=600, max_evals=None, max_networks=7).fit(X, y)
    assert len(est.members_) == 3


@pytest.mark.parametrize("time_budget", [None, 3600])
def test_a_search_that_ran_its_max_evals_trains_ensemble_size_networks(regression_data,
                                                                       time_budget):
    # Without a budget nothing is left to fill; with one, max_evals (not the budget) ended
    # the search, and the fit ends after the refit.
    X, y, _, _ = regression_data
    est = auto(max_evals=4, max_networks=20, time_budget=time_budget).fit(X, y)
    assert len(est.members_) == len(est.pipeline_[-1].estimators_) == 3


def test_makespan_is_the_longest_first_schedule():
    from autodeuq.estimators._search_base import makespan

    assert makespan([], 2) == 0
    assert makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7  # 3+2+2 | 3+2
    assert makespan([5.0, 1.0, 1.0], 1) == 7
    assert makespan([5.0, 1.0, 1.0], 2) == 5
    assert makespan([4.0], 8) == 4
    assert makespan([2.0, 2.0], 0) == 4  # no worker counts as one


def test_a_batch_is_expected_to_take_its_networks_cost_of_the_slowest_task_seen():
    from autodeuq.estimators._search_base import batch_seconds

    five = 1 + 4 * BATCH_COST  # a task of 5 networks costs 2.8 networks alone
    assert batch_seconds([(5, 28.0)], 5) == pytest.approx(28.0)
    # One network more fits where the whole task would not: a fifth of the networks, 1/2.8
    # of the time; two, 1.45/2.8.
    assert batch_seconds([(5, 28.0)], 1) == pytest.approx(28.0 / five)
    assert batch_seconds([(5, 28.0)], 2) == pytest.approx(28.0 * (1 + BATCH_COST) / five)
    # More networks than a task had: in proportion, as if none shared the pass.
    assert batch_seconds([(2, 10.0)], 6) == pytest.approx(30.0)
    # The slowest of the configuration's tasks, each scaled to the batch.
    assert batch_seconds([(1, 4.0), (5, 28.0), (1, 9.0)], 1) == pytest.approx(10.0)
    assert batch_seconds([(1, 4.0), (1, 9.0)], 1) == 9.0


def test_failed_rescoring_selects_on_the_search_alone(regression_data, monkeypatch):
    from autodeuq.estimators import _search_base

    real = _search_base.run_refits

    def failing_rescores(evaluator, configs, seeds, holdout, deadline=None, **options):
        results = real(evaluator, configs, seeds, holdout, deadline=deadline, **options)
        if not isinstance(holdout, float):  # the rescoring, not the refit
            for r in results:
                r.status, r.error = "failed", "injected"
        return results

    monkeypatch.setattr(_search_base, "run_refits", failing_rescores)
    X, y, _, _ = regression_data
    est = auto().fit(X, y)
    alone = auto(rescore_top=0).fit(X, y)
    assert all(r["rescore_nll"] is None for r in est.rescored_)
    assert est.search_results_["rescore_nll"].isna().all()
    assert est.validation_nll_ == pytest.approx(alone.validation_nll_)
    assert [m["trial_id"] for m in est.members_] == [m["trial_id"] for m in alone.members_]


SEEDED = {"num_layers": 1, "units_1": 16, "learning_rate": 0.01, "max_epochs": 40,
          "patience": 10}


def _last_candidate():
    """A selector that picks the last candidate alone: the seeds' group in the selection
    after rescoring (and the last trial in the first)."""
    from autodeuq.ensemble import Selector

    class LastCandidate(Selector):
        takes_networks = True

        def _select(self, y, means, variances, objectives):
            return np.array([len(means) - 1]), np.array([1.0])

    return LastCandidate()


def test_a_configuration_s_seeds_are_rescored_and_selected_as_their_ensemble(
        regression_data, monkeypatch):
    # Three trials of one configuration from their own seeds (as initial_configs="default"
    # makes of the default network): one more candidate after rescoring, their equal
    # mixture on the search's part and that of three new networks on the second part.
    from autodeuq.ensemble import GreedySelector

    shapes = []
    real = GreedySelector._select

    def recording(self, y, means, variances, objectives):
        shapes.append(means.shape)
        return real(self, y, means, variances, objectives)

    monkeypatch.setattr(GreedySelector, "_select", recording)
    X, y, _, _ = regression_data
    est = auto(initial_configs=[SEEDED] * 3, rescore_top=2).fit(X, y)
    group = [r for r in est.rescored_ if r["trial_id"] is None]
    assert len(group) == 1
    assert group[0]["trial_ids"] == [0, 1, 2]
    assert group[0]["networks"] == 3
    table = est.search_results_.set_index("job_id")
    # The mixture of three seeds scores no worse than their mean alone (concavity of log).
    assert group[0]["valid_nll"] <= table.loc[[0, 1, 2], "valid_nll"].mean() + 1e-9
    assert np.isfinite(group[0]["rescore_nll"])
    assert table["rescore_nll"].notna().sum() == len(est.rescored_) - 1
    singles = len(est.rescored_) - 1
    # First selection: one network a candidate; second: every candidate as three networks
    # (a single one repeated), the group last, on both parts.
    assert len(shapes[0]) == 2
    assert shapes[1] == (singles + 1, 3, shapes[0][1] * 2)

    # Selected, the group's configuration is refitted as networks of its own...
    chosen = auto(initial_configs=[SEEDED] * 3, rescore_top=2, selection=_last_candidate(),
                  max_networks=None).fit(X, y)
    assert [m["trial_id"] for m in chosen.members_] == [0, 0, 0]
    assert all(m["config"]["layers"][0]["units"] == 16 for m in chosen.members_)
    # ... and without the refit it is its three searched networks, a third of the weight each.
    kept = auto(initial_configs=[SEEDED] * 3, rescore_top=2, selection=_last_candidate(),
                refit=False).fit(X, y)
    assert [m["trial_id"] for m in kept.members_] == [0, 1, 2]
    np.testing.assert_allclose([m["weight"] for m in kept.members_], 1 / 3)
    table = kept.search_results_.set_index("job_id")
    np.testing.assert_allclose(table.loc[[0, 1, 2], "selected"], 1 / 3)


def test_without_repeated_configurations_nothing_is_grouped(fitted):
    assert all(r["trial_id"] is not None for r in fitted.rescored_)


def test_the_search_starts_with_the_default_deep_ensemble(regression_data):
    # ensemble_size trials of the default network (at most a tenth of max_evals), each from
    # its own seed, so that selection can compare its seed ensemble with the rest.
    X, y, _, _ = regression_data
    est = auto(max_evals=20, ensemble_size=2, rescore_top=0,
               search_space={**SPACE, "units_1": Int(4, 256)}).fit(X, y)
    table = est.search_results_.sort_values("job_id")
    params = [c for c in table.columns if c.startswith("p:")]
    first = table.iloc[:3]
    assert (first["p:units_1"].iloc[:2] == 128).all()  # GaussianMLPRegressor's width
    assert first[params].iloc[0].equals(first[params].iloc[1])
    assert not first[params].iloc[0].equals(first[params].iloc[2])
    assert first["valid_nll"].iloc[0] != first["valid_nll"].iloc[1]  # two seeds
    copies = {(None, 5): 5, (100, 5): 5, (30, 5): 3, (20, 2): 2, (8, 3): 1, (1, 3): 1}
    for (max_evals, size), n in copies.items():
        assert auto(max_evals=max_evals, ensemble_size=size)._default_networks() == n


def test_topk_selects_k_members_with_equal_weights(regression_data):
    X, y, _, _ = regression_data
    est = auto(selection="topk").fit(X, y)
    assert len(est.members_) == 3
    np.testing.assert_allclose([m["weight"] for m in est.members_], 1 / 3)
    # The best three by the mean of their two validation NLLs, after rescoring ...
    best_three = sorted(est.rescored_, key=lambda r: r["valid_nll"] + r["rescore_nll"])[:3]
    assert {m["trial_id"] for m in est.members_} == {r["trial_id"] for r in best_three}
    # ... or by the search's alone without it.
    alone = auto(selection="topk", rescore_top=0).fit(X, y)
    best_three = alone.search_results_.nsmallest(3, "valid_nll")["job_id"]
    assert {m["trial_id"] for m in alone.members_} == set(best_three)


def test_one_member_has_no_epistemic_part(regression_data):
    X, y, X_test, _ = regression_data
    est = auto(ensemble_size=1).fit(X, y)
    assert np.all(est.predict_uncertainty(X_test).epistemic_std == 0)


def test_a_dominant_configuration_is_refitted_as_several_networks(regression_data):
    from autodeuq.ensemble import Selector

    class OnlyTheBest(Selector):  # what greedy selection does when one candidate dominates
        def _select(self, y_valid, means, variances, objectives):
            return [int(np.argmin(objectives))], [1.0]

    X, y, X_test, _ = regression_data
    est = auto(selection=OnlyTheBest()).fit(X, y)
    assert len({m["trial_id"] for m in est.members_}) == 1
    assert len(est.members_) == 3
    np.testing.assert_allclose([m["weight"] for m in est.members_], 1 / 3)
    # Independent seeds and holdouts: an ensemble, with an epistemic part.
    assert np.all(est.predict_uncertainty(X_test).epistemic_std > 0)
    searched = auto(selection=OnlyTheBest(), refit=False).fit(X, y)
    assert len(searched.members_) == 1


@pytest.mark.parametrize("journal", [True, False], ids=["read-from-journal", "retrained"])
def test_members_beyond_the_memory_bound_are_still_usable(regression_data, tmp_path, journal):
    X, y, X_test, _ = regression_data
    # Without refit the searched weights are the members: kept, journaled or retrained.
    bounded = auto(selection="topk", max_in_memory=1, refit=False,
                   checkpoint_dir=tmp_path if journal else None).fit(X, y)
    unbounded = auto(selection="topk", refit=False).fit(X, y)
    np.testing.assert_allclose(bounded.predict(X_test), unbounded.predict(X_test), rtol=1e-6)


def test_refit_trains_the_selected_configs_again_on_all_the_data(fitted, regression_data):
    X, y, X_test, _ = regression_data
    searched = auto(refit=False).fit(X, y)
    # The same configurations (the refit's networks are ensemble_size, a configuration
    # selected with a large weight several times).
    refitted = {m["trial_id"]: m["config"] for m in fitted.members_}
    assert [m["trial_id"] for m in searched.members_] == list(refitted)
    assert [m["config"] for m in searched.members_] == list(refitted.values())
    assert len(fitted.members_) == 3
    assert fitted.refit_time_ > 0
    assert searched.refit_time_ == 0
    assert not np.allclose(searched.predict(X_test), fitted.predict(X_test))
    # Each member early-stopped on its own tenth of the data, so they trained on other rows.
    members = fitted.pipeline_[-1].estimators_
    assert len({m.validation_nll_ for m in members}) == len(members)
    # The intervals' levels: the searched ensemble's validation PITs (kept as they are
    # without a refit), moved on the normal scale by one factor, never outwards, for the
    # refitted ensemble's spread (transfer_pits).
    z_searched = ndtri(searched.pipeline_[-1].interval_pits_)
    z_refitted = ndtri(fitted.pipeline_[-1].interval_pits_)
    far = np.isfinite(z_searched) & (np.abs(z_searched) > 0.1)
    factor = z_refitted[far] / z_searched[far]
    np.testing.assert_allclose(factor, factor[0], rtol=1e-6)
    assert factor[0] <= 1.0 + 1e-9


def test_the_intervals_levels_move_to_the_refitted_ensemble(regression_data, monkeypatch):
    from autodeuq.estimators import _autodeuq

    calls = []

    def spy(pits, y_held, held, target, narrow_only=False):
        moved = transfer_pits(pits, y_held, held, target, narrow_only=narrow_only)
        calls.append((pits, y_held, held, target, narrow_only, moved))
        return moved

    monkeypatch.setattr(_autodeuq, "transfer_pits", spy)
    X, y, _, _ = regression_data
    est = auto(max_evals=6).fit(X, y)
    [(pits, y_held, held, target, narrow_only, moved)] = calls
    # From the searched members' PITs at the validation targets (both parts, with
    # rescoring) to the refitted ensemble's mixture on the validation rows, never outwards;
    # what is kept is what it returned.
    np.testing.assert_allclose(pits, held.cdf(y_held))
    assert held.n_samples == len(y_held) >= target.n_samples == round(0.2 * len(y))
    assert target.n_components == len(est.members_) == 3
    assert narrow_only is True
    np.testing.assert_array_equal(est.pipeline_[-1].interval_pits_, moved)
    calls.clear()
    assert auto(max_evals=6, refit=False).fit(X, y).pipeline_[-1].interval_pits_ is not None
    assert not calls  # the searched members predict: their own PITs


def _unlucky_refits(monkeypatch, how, every_time=False):
    """Make the first refit of the first round (or of every round) diverge or land far
    worse than its searched network; the refit rounds' seeds are returned as they come."""
    from autodeuq.estimators import _search_base

    real = _search_base.run_refits
    rounds = []

    def unlucky(evaluator, configs, seeds, holdout, deadline=None, **options):
        results = real(evaluator, configs, seeds, holdout, deadline=deadline, **options)
        if isinstance(holdout, float):  # the refit, not a rescoring
            rounds.append(list(seeds))
            if every_time or len(rounds) == 1:
                if how == "diverged":
                    results[0].status, results[0].state = "diverged", None
                    results[0].error = "TrainingDivergedError: injected"
                else:
                    results[0].objective += 2 * _search_base.REFIT_TOLERANCE
        return results

    monkeypatch.setattr(_search_base, "run_refits", unlucky)
    return rounds


def _fit_warning(regression_data):
    """A default fit, and the messages of its warnings that searched networks were kept."""
    X, y, _, _ = regression_data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = auto().fit(X, y)
    return est, [str(w.message) for w in caught
                 if "searched networks are kept" in str(w.message)]


@pytest.mark.parametrize("how", ["diverged", "far worse"])
def test_an_unlucky_refit_trains_again_from_another_seed(regression_data, monkeypatch, how):
    rounds = _unlucky_refits(monkeypatch, how)
    est, kept = _fit_warning(regression_data)
    assert kept == []
    assert [len(seeds) for seeds in rounds] == [3, 1]
    assert rounds[1][0] not in rounds[0]  # a fresh seed
    # Every member is a refit: its own held-out NLL, not its searched network's.
    for network, member in zip(est.pipeline_[-1].estimators_, est.members_, strict=True):
        assert network.validation_nll_ != pytest.approx(member["valid_nll"])


@pytest.mark.parametrize("how", ["diverged", "far worse"])
def test_a_refit_unlucky_twice_keeps_the_searched_network(regression_data, monkeypatch, how):
    rounds = _unlucky_refits(monkeypatch, how, every_time=True)
    est, [message] = _fit_warning(regression_data)
    assert "refitting 1 of 3 network(s)" in message
    assert f"(2 seeds; {'diverged' if how == 'diverged' else 'failed'}: " in message
    assert len(rounds) == 2
    # One network is its searched one: its validation NLL is the search's.
    searched = [member for network, member in zip(est.pipeline_[-1].estimators_, est.members_,
                                                  strict=True)
                if network.validation_nll_ == pytest.approx(member["valid_nll"])]
    assert len(searched) == 1
    assert f"trial {searched[0]['trial_id']} (2 seeds" in message


def test_no_second_seed_when_the_time_budget_has_no_room_for_it(regression_data, monkeypatch):
    from autodeuq.estimators._search_base import SearchRegressorBase

    rounds = _unlucky_refits(monkeypatch, "diverged")
    # Time enough to start the refit, none left for a round as long as it took.
    monkeypatch.setattr(SearchRegressorBase, "_out_of_time",
                        staticmethod(lambda outcome, keep=0.0: keep > 0))
    _, [message] = _fit_warning(regression_data)
    assert "(diverged: TrainingDivergedError: injected)" in message
    assert len(rounds) == 1


def test_recalibration_scales_the_aleatoric_part_only(fitted, regression_data):
    X, y, X_test, _ = regression_data
    fitted = auto(recalibrate=False).fit(X, y)
    recalibrated = auto(recalibrate="fit").fit(X, y)
    widened = auto().fit(X, y)  # "widen": the fitted factor, but never below 1
    assert fitted.std_scale_ == 1.0
    assert recalibrated.std_scale_ != 1.0
    assert widened.std_scale_ == max(1.0, recalibrated.std_scale_)
    assert recalibrated.validation_nll_ < fitted.validation_nll_
    before, after = fitted.predict_uncertainty(X_test), recalibrated.predict_uncertainty(X_test)
    np.testing.assert_array_equal(after.mean, before.mean)
    np.testing.assert_allclose(after.epistemic_std, before.epistemic_std)
    np.testing.assert_allclose(after.aleatoric_std, before.aleatoric_std
                               * recalibrated.std_scale_)


def test_pickle_and_clone(fitted, regression_data):
    X_test = regression_data[2]
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X_test), fitted.predict(X_test))
    assert clone(fitted).get_params() == fitted.get_params()
    # The fitted ensemble's parameters describe its members, so it can be retrained.
    retrainable = clone(fitted.pipeline_[-1])
    assert len(retrainable.members) == len(fitted.members_)


@pytest.mark.parametrize(("params", "match"), [
    ({"ensemble_size": 0}, "ensemble_size"),
    ({"max_in_memory": 0}, "max_in_memory"),
    ({"rescore_top": -1}, "rescore_top must be an int >= 0; got -1"),
    ({"rescore_top": 2.5}, "rescore_top"),
    ({"rescore_top": True}, "rescore_top"),
    ({"rescore_networks": 0}, "rescore_networks must be an int >= 1; got 0"),
    ({"selection": "best"}, "selection|greedy"),
    ({"refit": "yes"}, "refit must be True or False"),
    ({"recalibrate": 1}, "recalibrate must be 'widen', 'fit', True or False"),
    ({"recalibrate": "narrow"}, "recalibrate must be 'widen', 'fit', True or False"),
])
def test_invalid_parameters(regression_data, params, match):
    X, y, _, _ = regression_data
    with pytest.raises(ValueError, match=match):
        auto(**params).fit(X, y)


def test_on_a_real_cluster(client, regression_data):
    X, y, X_test, _ = regression_data
    est = auto(backend="dask", scheduler=client).fit(X, y)
    assert est.search_results_["worker"].nunique() == 2
    assert est.predict(X_test).shape == (len(X_test),)


@parametrize_with_checks([auto(max_evals=3, search_space={**SPACE, "learning_rate": 1e-2})])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_the_time_budget_keeps_time_for_the_refit():
    # Five networks of the five best configurations (search times 4, 6, 8, 2 and 6 s; the
    # 2-s one counts as the best one's 4 s, as the best may be refitted in its place), each
    # refit_round of its time (1.5 x 1.25 rows), two at a time longest first: 8 + 4 + 4 s on
    # one worker, 6 + 6 on the other, times 1.875.
    timed = [(0.1, 4.0), (0.2, 6.0), (0.3, 8.0), (0.4, 2.0), (0.5, 6.0), (9.0, 100.0)]
    est = AutoDEUQRegressor(time_budget=300, ensemble_size=5, rescore_top=0, max_networks=None)
    assert est._time_reserve(timed, slots=2, refit_rows=1.25) == pytest.approx(1.875 * 16)
    assert est._time_reserve(timed, slots=8, refit_rows=1.0) == pytest.approx(1.5 * 8)
    # Before a trial succeeds, a trial is taken to train for a thirtieth of the budget.
    # Fewer candidates than networks: the best ones are refitted several times, together
    # (five networks of one configuration: batches of 3 and 2 on the two workers).
    assert est._time_reserve([], slots=2, refit_rows=1.25) == pytest.approx(
        1.875 * 10 * (1 + 2 * BATCH_COST))
    assert est._time_reserve(timed[:1], slots=2, refit_rows=1.0) == pytest.approx(
        1.5 * 4 * (1 + 2 * BATCH_COST))
    assert AutoDEUQRegressor(time_budget=20)._time_reserve(timed, 2, 1.25) == 10  # half at most
    assert AutoDEUQRegressor(time_budget=300, refit=False,
                             rescore_top=0)._time_reserve(timed, 2, 1.25) == 0
    # Rescoring the best ten (six here) two at a time, each round as long as its slowest
    # search time (6, 8 and 100 s), on as many rows as a trial's; a rescoring of three
    # networks as three trainings.
    assert AutoDEUQRegressor(time_budget=300, ensemble_size=5, max_networks=None)._time_reserve(
        timed, slots=2, refit_rows=1.25) == pytest.approx(114 + 1.875 * 16)
    assert AutoDEUQRegressor(time_budget=3600, ensemble_size=5, rescore_networks=3,
                             max_networks=None)._time_reserve(
        timed, slots=2, refit_rows=1.25) == pytest.approx(3 * 114 + 1.875 * 16)
    # With max_networks, time for twice ensemble_size networks: two of each configuration,
    # trained together, so each task as one network times 1 + BATCH_COST.
    assert AutoDEUQRegressor(time_budget=300, ensemble_size=5, rescore_top=0)._time_reserve(
        timed, slots=2, refit_rows=1.25) == pytest.approx(1.875 * 16 * (1 + BATCH_COST))
    assert AutoDEUQRegressor(max_evals=5)._time_reserve(timed, 2, 1.25) == 0


def test_refits_are_expected_to_take_as_they_train_together():
    from autodeuq.estimators._search_base import refits_seconds

    # Distinct configurations, one network each: the longest-first schedule of makespan.
    assert refits_seconds([3.0, 2.0, 2.0], ["a", "b", "c"], 2) == 4
    # One configuration's networks in one task (slowest x batch cost); one worker.
    assert refits_seconds([3.0, 2.0, 1.0], ["a", "a", "b"], 1) == pytest.approx(
        3 * (1 + BATCH_COST) + 1)
    # Four networks of one configuration on two workers: two tasks of two.
    assert refits_seconds([2.0] * 4, ["a"] * 4, 2) == pytest.approx(2 * (1 + BATCH_COST))
    assert refits_seconds([], [], 2) == 0


def test_the_time_budget_keeps_time_for_slow_best_candidates():
    # The two best candidates trained for 40 s, the many others for 1 s: what follows the
    # search is sized on the candidates it will retrain, not on a typical one (the best
    # five's median, 1 s, kept 13 s where rescoring and refitting them takes over 200 s).
    # The best may be refitted as all five networks: each counts as 40 s, three rounds.
    timed = [(0.1, 40.0), (0.2, 40.0)] + [(1.0 + i, 1.0) for i in range(20)]
    est = AutoDEUQRegressor(time_budget=3600, ensemble_size=5, max_networks=None)
    assert est._time_reserve(timed, slots=2, refit_rows=1.25) == pytest.approx(
        40 + 4 * 1 + 3 * 1.5 * 1.25 * 40)


def test_time_is_kept_for_twice_ensemble_size_networks_where_more_may_train():
    budget = {"time_budget": 600, "ensemble_size": 5}
    assert AutoDEUQRegressor(**budget)._planned_networks() == 10
    assert AutoDEUQRegressor(**budget, max_networks=7)._planned_networks() == 7
    assert AutoDEUQRegressor(**budget, max_networks=3)._planned_networks() == 5
    assert AutoDEUQRegressor(**budget, max_networks=None)._planned_networks() == 5
    assert AutoDEUQRegressor(**budget, refit=False)._planned_networks() == 5
    assert AutoDEUQRegressor(ensemble_size=5)._planned_networks() == 5  # no budget to fill
    # A search that ran its max_evals trains no more networks: none are planned then.
    ran = SimpleNamespace(results=[None] * 8)
    assert AutoDEUQRegressor(**budget, max_evals=8)._planned_networks(ran) == 5
    assert AutoDEUQRegressor(**budget, max_evals=9)._planned_networks(ran) == 10


def test_refits_end_at_the_time_budgets_deadline(regression_data, monkeypatch):
    import time

    from autodeuq.estimators import _search_base

    seen = []
    real = _search_base.run_refits

    def recording(evaluator, configs, seeds, holdout, deadline=None, **options):
        seen.append(deadline)
        return real(evaluator, configs, seeds, holdout, deadline=deadline, **options)

    monkeypatch.setattr(_search_base, "run_refits", recording)
    X, y, _, _ = regression_data
    start = time.time()
    est = auto(time_budget=120).fit(X, y)
    assert len(est.members_) == 3
    *rescoring, deadline = seen  # the rescoring, round by round, leaves the refit time
    assert start + 120 <= deadline <= time.time() + 120
    assert rescoring
    assert all(r < deadline for r in rescoring)
    auto().fit(X, y)  # no time budget: no deadline
    assert seen[-1] is None


def test_a_time_budget_spent_before_the_refit_keeps_the_searched_networks(regression_data,
                                                                          monkeypatch):
    from autodeuq.estimators._search_base import SearchRegressorBase

    X, y, X_test, _ = regression_data
    monkeypatch.setattr(SearchRegressorBase, "_out_of_time",
                        staticmethod(lambda outcome, keep=0.0: True))
    # (A long budget, so that its reserve cannot end the search early on a slow machine.)
    with pytest.warns(RuntimeWarning, match=r"time_budget=3600 s ran out before the refit"):
        late = auto(time_budget=3600).fit(X, y)
    assert late.refit_time_ == 0
    searched = auto(time_budget=3600, refit=False).fit(X, y)
    np.testing.assert_allclose(late.predict(X_test), searched.predict(X_test), rtol=1e-6)


def test_fitting_and_predicting_leave_the_global_random_streams_alone(regression_data):
    # Trials and refits train in this process with backend="serial": the user's torch and
    # numpy streams must come out as they went in (the searched networks were rebuilt with
    # a throw-away initialization drawn from torch's global stream).
    import torch

    X, y, X_test, _ = regression_data
    torch.manual_seed(2024)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    est = auto(max_evals=3).fit(X, y)
    est.predict_uncertainty(X_test)
    est.predict_interval(X_test)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
