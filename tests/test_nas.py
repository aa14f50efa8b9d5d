"""NASRegressor: search, keep the best network, resume from a journal, fail clearly."""

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import search_dir
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from autodeuq import NASRegressor
from autodeuq.estimators import SearchFailedError
from autodeuq.space import Float, Int
from autodeuq.uncertainty import calibrated_levels

TINY_SPACE = {"num_layers": 1, "units_1": Int(4, 16), "learning_rate": Float(1e-3, 1e-1, log=True),
              "max_epochs": 15, "patience": 5}


def nas(**params):
    defaults = {"search_space": TINY_SPACE, "algorithm": "random", "max_evals": 4,
                "backend": "serial", "random_state": 0}
    return NASRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted(regression_data):
    X, y, _, _ = regression_data
    return nas(refit=False).fit(X, y)


def test_results_table_and_best(fitted):
    table = fitted.search_results_
    assert isinstance(table, pd.DataFrame)
    assert len(table) == 4
    assert {"job_id", "p:units_1", "p:learning_rate", "objective", "valid_nll", "status",
            "start_time", "end_time", "duration", "worker"} <= set(table.columns)
    assert (table["status"] == "success").all()
    best = table.loc[table["objective"].idxmax()]
    assert fitted.best_score_ == pytest.approx(best["objective"])
    assert fitted.best_params_["units_1"] == best["p:units_1"]
    assert fitted.best_config_["layers"][0]["units"] == best["p:units_1"]
    np.testing.assert_allclose(table["valid_nll"], -table["objective"])


def test_fitted_result_is_an_ordinary_pipeline(fitted, regression_data):
    X_test = regression_data[2]
    assert isinstance(fitted.pipeline_, Pipeline)
    unc = fitted.predict_uncertainty(X_test)
    np.testing.assert_array_equal(unc.mean, fitted.pipeline_.predict(X_test))
    assert np.all(unc.epistemic_std == 0)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X_test), unc.mean)
    # Nothing Dask survives fit.
    for value in vars(fitted).values():
        assert "distributed" not in type(value).__module__


def test_kept_network_scores_its_validation_nll(fitted):
    model = fitted.pipeline_[-1]
    assert model.validation_nll_ == pytest.approx(-fitted.best_score_)


def test_serial_search_is_deterministic(fitted, regression_data):
    X, y, X_test, _ = regression_data
    again = nas(refit=False).fit(X, y)
    pd.testing.assert_series_equal(again.search_results_["objective"],
                                   fitted.search_results_["objective"])
    np.testing.assert_array_equal(again.predict(X_test), fitted.predict(X_test))


def test_refit_trains_the_best_config_on_all_data(fitted, regression_data):
    X, y, X_test, _ = regression_data
    refitted = nas(refit=True, rescore_top=0).fit(X, y)
    assert refitted.best_params_ == fitted.best_params_
    assert refitted.pipeline_[-1].config_["layers"] == fitted.best_config_["layers"]
    assert refitted.refit_time_ > 0
    assert fitted.refit_time_ == 0
    # Another network: trained on other rows, from another seed.
    assert not np.allclose(refitted.predict(X_test), fitted.predict(X_test))
    assert nas().refit is True


def test_the_best_candidates_are_scored_again_before_the_winner_is_chosen(regression_data):
    X, y, _, _ = regression_data
    est = nas(rescore_top=3).fit(X, y)
    table = est.search_results_
    assert [r["trial_id"] for r in est.rescored_] == list(table.nsmallest(3, "valid_nll")["job_id"])
    for r in est.rescored_:
        assert np.isfinite(r["rescore_nll"])
        assert r["mean_nll"] == pytest.approx((r["valid_nll"] + r["rescore_nll"]) / 2)
    winner = min(est.rescored_, key=lambda r: r["mean_nll"])["trial_id"]
    assert est.best_params_ == table.loc[table["job_id"] == winner].filter(like="p:").rename(
        columns=lambda c: c[2:]).iloc[0].to_dict()
    assert nas(rescore_top=0).fit(X, y).rescored_ == []


def test_the_kept_network_is_recalibrated_on_its_held_out_predictions(regression_data):
    X, y, X_test, _ = regression_data
    fits = {mode: nas(refit=True, rescore_top=3, recalibrate=mode).fit(X, y)
            for mode in (False, "fit", "widen")}
    raw = fits[False]
    assert raw.std_scale_ == 1.0
    mean, std = raw.predict(X_test, return_std=True)
    for mode in ("fit", "widen"):  # the same network (serial: the same search and refit)
        est = fits[mode]
        assert est.best_params_ == raw.best_params_
        scaled_mean, scaled_std = est.predict(X_test, return_std=True)
        np.testing.assert_allclose(scaled_mean, mean)
        np.testing.assert_allclose(scaled_std, std * est.std_scale_)
        assert est.pipeline_[-1].std_scale_ == est.std_scale_
    # "widen" is the fitted factor when it widens, else 1; the fitted one does lower the NLL
    # of the held-out predictions it was fitted on, which is checked by fit_std_scale's tests.
    assert fits["widen"].std_scale_ == max(1.0, fits["fit"].std_scale_)
    assert fits["fit"].std_scale_ != 1.0


def test_the_kept_networks_intervals_are_calibrated_on_its_held_out_predictions(
        regression_data):
    X, y, X_test, _ = regression_data
    fits = {calibrate: nas(refit=True, rescore_top=3, interval_calibration=calibrate).fit(X, y)
            for calibrate in (False, True)}
    raw, est = fits[False], fits[True]
    assert raw.pipeline_[-1].interval_pits_ is None
    np.testing.assert_array_equal(raw.predict_interval(X_test)[1],
                                  raw.predict_distribution(X_test).interval(0.9)[1])
    pits = est.pipeline_[-1].interval_pits_
    assert len(pits) >= 0.2 * len(y)  # the validation part, and the second with rescoring
    assert np.all(np.diff(pits) >= 0)
    # The same network (serial: the same search and refit); only the levels differ.
    np.testing.assert_array_equal(est.predict(X_test), raw.predict(X_test))
    lower, upper = calibrated_levels(pits, 0.8)
    dist = est.predict_distribution(X_test)
    np.testing.assert_array_equal(est.predict_interval(X_test, coverage=0.8)[0],
                                  dist.ppf(np.full(len(X_test), lower)))
    np.testing.assert_array_equal(est.predict_interval(X_test, coverage=0.8)[1],
                                  dist.ppf(np.full(len(X_test), upper)))


def test_failed_refit_keeps_the_searched_network(fitted, regression_data, monkeypatch):
    from autodeuq.evaluation import _train

    def broken(*args):
        raise RuntimeError("injected refit failure")

    monkeypatch.setattr(_train, "refit_data", broken)
    X, y, X_test, _ = regression_data
    with pytest.warns(RuntimeWarning, match="searched networks are kept.*injected refit failure"):
        est = nas(refit=True).fit(X, y)
    np.testing.assert_array_equal(est.predict(X_test), fitted.predict(X_test))


def test_a_refit_far_worse_than_its_search_keeps_the_searched_network(fitted, regression_data,
                                                                       monkeypatch):
    """A refit can land in a poor optimum without diverging; it must not replace the
    searched network."""
    from autodeuq.estimators import _search_base

    real = _search_base.run_refits

    def stuck(*args, **kwargs):
        results = real(*args, **kwargs)
        for result in results:
            result.objective += 2 * _search_base.REFIT_TOLERANCE
        return results

    monkeypatch.setattr(_search_base, "run_refits", stuck)
    X, y, X_test, _ = regression_data
    with pytest.warns(RuntimeWarning, match="searched networks are kept.*held-out NLL"):
        est = nas(refit=True, rescore_top=0).fit(X, y)
    np.testing.assert_array_equal(est.predict(X_test), fitted.predict(X_test))
    # Rescoring (which retrains too) may then pick a winner whose weights were not kept.
    with pytest.warns(RuntimeWarning, match="searched networks are kept.*held-out NLL"):
        est = nas(refit=True, rescore_top=3).fit(X, y)
    assert est.predict(X_test).shape == (len(X_test),)


@pytest.mark.parametrize("algorithm", ["random", "evolution", "bo", "agebo"])
def test_every_algorithm_runs_on_the_default_space(regression_data, algorithm):
    X, y, _, _ = regression_data
    est = NASRegressor(algorithm=algorithm, max_evals=3, backend="serial", random_state=0,
                       search_space=None, trial_timeout=20).fit(X[:80], y[:80])
    assert len(est.search_results_) == 3


def test_resume_does_not_repeat_finished_trials(regression_data, tmp_path):
    X, y, _, _ = regression_data
    first = nas(max_evals=3, checkpoint_dir=tmp_path).fit(X, y)
    resumed = nas(max_evals=5, checkpoint_dir=tmp_path).fit(X, y)
    table = resumed.search_results_
    assert list(table["job_id"]) == [0, 1, 2, 3, 4]
    # The three journaled trials were read back, not trained again.
    pd.testing.assert_frame_equal(table.iloc[:3][["p:units_1", "objective", "duration"]],
                                  first.search_results_[["p:units_1", "objective", "duration"]])
    assert len((search_dir(tmp_path) / "journal.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize(("change", "level", "named"), [
    ({"y": 1.0}, "INFO", "differ in X, y or their validation split (random_state, "
                         "validation_fraction)."),
    ({"random_state": 1}, "INFO", "differ in X, y or their validation split (random_state, "
                                  "validation_fraction); random_state."),
    ({"validation_fraction": 0.3}, "INFO", "differ in X, y or their validation split "
                                           "(random_state, validation_fraction)."),
    ({"search_space": {**TINY_SPACE, "units_1": Int(4, 32)}}, "WARNING",
     "differ in search_space."),
    ({"algorithm": "bo"}, "WARNING", "differ in algorithm."),
    ({"early_discard": "successive_halving"}, "WARNING", "differ in early_discard."),
])
def test_a_search_of_other_data_or_settings_starts_beside_and_says_what_differs(
        regression_data, tmp_path, caplog, change, level, named):
    # One checkpoint_dir used to hold one search: another was refused, so a cross-validation
    # or a grid search could not journal its fits. Each search now has its own subdirectory;
    # a fit of changed settings on the same data (a resume meant, perhaps) is warned of.
    X, y, _, _ = regression_data
    nas(max_evals=1, checkpoint_dir=tmp_path).fit(X, y)
    shift = change.pop("y", 0.0)
    with caplog.at_level("INFO", logger="autodeuq.evaluation._journal"):
        est = nas(max_evals=1, checkpoint_dir=tmp_path, **change).fit(X, y + shift)
    assert len(list(tmp_path.glob("search-*"))) == 2
    assert len(est.search_results_) == 1  # a search of its own, nothing resumed
    [record] = [r for r in caplog.records if r.name == "autodeuq.evaluation._journal"]
    assert record.levelname == level
    assert "a new search, beside 1 other(s)" in record.getMessage()
    assert f"they {named}" in record.getMessage()


def test_cross_validation_journals_each_fold_and_resumes_them(regression_data, tmp_path):
    from sklearn.model_selection import KFold, cross_val_score

    X, y, _, _ = regression_data
    folds = KFold(2, shuffle=True, random_state=0)
    # Two folds at a time, in two processes: each locks its own search, not the directory.
    scores = cross_val_score(nas(max_evals=2, checkpoint_dir=tmp_path), X, y, cv=folds,
                             n_jobs=2, error_score="raise")
    searches = sorted(tmp_path.glob("search-*"))
    assert len(searches) == 2
    lines = {d.name: (d / "journal.jsonl").read_text() for d in searches}
    assert all(len(text.splitlines()) == 2 for text in lines.values())
    # Run again (after a crash, say): every fold resumes its own search, trains nothing.
    again = cross_val_score(nas(max_evals=2, checkpoint_dir=tmp_path), X, y, cv=folds,
                            error_score="raise")
    np.testing.assert_allclose(again, scores)
    assert {d.name: (d / "journal.jsonl").read_text()
            for d in tmp_path.glob("search-*")} == lines


def test_a_checkpoint_dir_of_the_old_layout_is_refused_untouched(regression_data, tmp_path):
    X, y, _, _ = regression_data
    (tmp_path / "meta.json").write_text('{"format": 1, "fingerprint": "abc"}')
    with pytest.raises(ValueError, match=r"holds a journal in the layout of an earlier "
                                         r"development version .* Use an empty directory"):
        nas(max_evals=1, checkpoint_dir=tmp_path).fit(X, y)
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_a_search_object_is_left_as_it_was_and_resumes(regression_data, tmp_path):
    # fit used to go on from the object's last state (trial ids 3-5 in a second fit), and its
    # repr, counting the trials told, made the journal's fingerprint refuse a resume.
    from autodeuq.search import RandomSearch
    from autodeuq.space import SearchSpace

    X, y, _, _ = regression_data
    search = RandomSearch(SearchSpace.coerce(TINY_SPACE), random_state=0)
    first = nas(algorithm=search, max_evals=3).fit(X, y)
    again = nas(algorithm=search, max_evals=3).fit(X, y)
    assert search.n_told == 0
    assert list(again.search_results_["job_id"]) == [0, 1, 2]
    pd.testing.assert_frame_equal(again.search_results_[["p:units_1", "objective"]],
                                  first.search_results_[["p:units_1", "objective"]])
    est = nas(algorithm=search, max_evals=3, checkpoint_dir=tmp_path).fit(X, y)
    resumed = est.set_params(max_evals=4).fit(X, y)  # the same object, resumed
    assert list(resumed.search_results_["job_id"]) == [0, 1, 2, 3]


def test_a_search_object_searches_its_own_space_and_another_search_space_is_refused(
        regression_data):
    # search_space was ignored for the object's own space (the default one, for AgEBO()),
    # and checked instead of it.
    from autodeuq.search import AgEBO
    from autodeuq.space import SearchSpace

    X, y, _, _ = regression_data
    with pytest.raises(ValueError, match=r"search_space must be None or the space of the search "
                                         r"object given as algorithm \(AgEBO searches its own "
                                         r"space\)"):
        nas(algorithm=AgEBO(n_initial=2), max_evals=2).fit(X, y)  # AgEBO(): the default space
    own = nas(algorithm=AgEBO(SearchSpace.coerce(TINY_SPACE), n_initial=2), search_space=None,
              max_evals=3).fit(X, y)
    assert own.search_results_["p:units_1"].between(4, 16).all()


def test_initial_configs_of_numpy_values_are_journaled(regression_data, tmp_path):
    # As a row of search_results_ gives them: the journal's JSON failed on np.int64 after
    # the first trial had trained.
    X, y, _, _ = regression_data
    first = nas(max_evals=1).fit(X, y).search_results_.iloc[0]
    config = {name[2:]: first[name] for name in first.index if name.startswith("p:")}
    assert isinstance(config["units_1"], np.integer)
    est = nas(max_evals=2, initial_configs=[config], checkpoint_dir=tmp_path).fit(X, y)
    assert est.search_results_["p:units_1"].iloc[0] == config["units_1"]
    assert len((search_dir(tmp_path) / "journal.jsonl").read_text().splitlines()) == 2


def test_interrupt_keeps_finished_trials_and_resume_reaches_the_budget(regression_data, tmp_path,
                                                                       monkeypatch):
    from autodeuq.evaluation import _journal

    X, y, _, _ = regression_data
    original = _journal.Journal.append
    calls = []

    def interrupt_after_two(self, result):
        original(self, result)
        calls.append(result.trial_id)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_journal.Journal, "append", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        nas(max_evals=4, checkpoint_dir=tmp_path).fit(X, y)
    monkeypatch.setattr(_journal.Journal, "append", original)
    assert len((search_dir(tmp_path) / "journal.jsonl").read_text().splitlines()) == 2
    resumed = nas(max_evals=4, checkpoint_dir=tmp_path).fit(X, y)
    assert sorted(resumed.search_results_["job_id"]) == [0, 1, 2, 3]


def test_all_trials_failing_is_a_clear_error(regression_data):
    X, y, _, _ = regression_data
    diverging = {**TINY_SPACE, "optimizer": "sgd", "learning_rate": 1e4}
    with pytest.raises(SearchFailedError, match="none of the 2 trials succeeded"):
        nas(search_space=diverging, max_evals=2).fit(X, y)


def test_a_time_budget_too_short_for_any_trial_says_so(regression_data):
    # It used to say "none of the 0 trials succeeded [...] First errors: []. Check the search
    # space and the data, or raise trial_timeout", none of which was at fault.
    X, y, _, _ = regression_data
    with pytest.raises(SearchFailedError, match=r"time_budget=1e-09 seconds ran out before any "
                                                r"trial finished, so there is no model\. Raise "
                                                r"time_budget"):
        nas(max_evals=None, time_budget=1e-9).fit(X, y)


@pytest.fixture
def no_search(monkeypatch):
    from autodeuq.estimators import _search_base

    def refuse(*args, **kwargs):
        raise AssertionError("the search started before the input was rejected")

    monkeypatch.setattr(_search_base, "run_search", refuse)


@pytest.mark.usefixtures("no_search")
@pytest.mark.parametrize(("params", "match"), [
    ({"max_evals": 0}, "max_evals"),
    ({"max_evals": None, "time_budget": None}, "max_evals and time_budget"),
    ({"time_budget": -1}, "time_budget"),
    ({"n_jobs": 0}, "n_jobs"),
    ({"backend": "mpi"}, "backend"),
    ({"backend": "serial", "scheduler": "tcp://127.0.0.1:1"}, "backend='serial'"),
    ({"validation_fraction": 0.0}, "validation_fraction"),
    ({"trial_timeout": 0}, "trial_timeout"),
    ({"devices": "gpu", "backend": "dask"}, "devices"),
    ({"devices": [], "backend": "dask"}, "devices"),
    ({"devices": [7], "backend": "dask"}, "devices"),
    ({"algorithm": "simulated-annealing"}, "algorithm"),
    ({"search_space": 5}, "search_space|SearchSpace"),
    ({"checkpoint_dir": 3}, "checkpoint_dir"),
    ({"refit": "yes"}, "refit"),
    ({"rescore_top": -1}, "rescore_top"),
    ({"recalibrate": "narrow"}, "recalibrate"),
])
def test_invalid_parameters_are_refused_before_the_search(regression_data, params, match):
    X, y, _, _ = regression_data
    with pytest.raises((ValueError, TypeError), match=match):
        nas(**params).fit(X, y)


@pytest.mark.usefixtures("no_search")
def test_too_few_samples_are_refused(regression_data):
    X, y, _, _ = regression_data
    with pytest.raises(ValueError, match="n_samples = 4"):
        nas().fit(X[:4], y[:4])


@parametrize_with_checks([nas(max_evals=2, search_space={**TINY_SPACE, "learning_rate": 1e-2,
                                                         "max_epochs": 30})])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- on Dask ---------------------------------------------------------------------------------


def test_search_on_a_real_cluster_uses_every_worker(client, regression_data):
    X, y, X_test, _ = regression_data
    est = nas(backend="dask", scheduler=client, max_evals=6).fit(X, y)
    table = est.search_results_
    assert sorted(table["job_id"]) == list(range(6))
    assert table["worker"].nunique() == 2
    assert est.predict(X_test).shape == (len(X_test),)
    assert client.status == "running"  # the user's client is used, never closed


def test_worker_killed_mid_search_every_trial_accounted_for(client, regression_data):
    import os
    import signal
    import threading
    import time

    X, y, _, _ = regression_data
    # Long enough (2-3 s a trial here) for the kill, 0.3 s after a worker is busy, to land
    # mid-trial; 400 epochs took the test a minute.
    space = {**TINY_SPACE, "max_epochs": 200, "patience": None}

    def kill_one_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items() if keys]
            if busy:
                time.sleep(0.3)
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    est = nas(backend="dask", scheduler=client, search_space=space, max_evals=4).fit(X, y)
    killer.join()
    table = est.search_results_
    assert sorted(table["job_id"]) == [0, 1, 2, 3]
    assert table["attempts"].max() == 2  # the killed trial ran again
    assert set(table["status"]) <= {"success", "lost"}
    client.wait_for_workers(2, timeout=60)


def test_embedded_cluster_is_closed_after_fit(regression_data):
    distributed = pytest.importorskip("distributed")
    X, y, _, _ = regression_data
    est = nas(backend="dask", n_jobs=2, max_evals=2).fit(X, y)
    assert len(est.search_results_) == 2
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()


@pytest.mark.parametrize("how", ["address", "scheduler_file"])
def test_fit_on_an_external_cluster(external_cluster, regression_data, how):
    X, y, X_test, _ = regression_data
    address, scheduler_file = external_cluster
    est = nas(backend="dask", scheduler=address if how == "address" else str(scheduler_file),
              max_evals=4).fit(X, y)
    assert sorted(est.search_results_["job_id"]) == [0, 1, 2, 3]
    assert est.search_results_["worker"].str.startswith("tcp://127.0.0.1:").all()
    assert est.predict(X_test).shape == (len(X_test),)


def test_search_starts_from_the_default_network(regression_data):
    X, y, _, _ = regression_data
    est = NASRegressor(max_evals=2, backend="serial", random_state=0, algorithm="random",
                       search_space={**TINY_SPACE, "units_1": Int(4, 256)}).fit(X, y)
    first = est.search_results_.iloc[0]
    assert first["p:units_1"] == 128  # GaussianMLPRegressor's width, inside this space
    scratch = nas(initial_configs=None, max_evals=1).fit(X, y)
    given = nas(initial_configs=[{**scratch.best_params_}], max_evals=1).fit(X, y)
    assert given.best_params_ == scratch.best_params_
    with pytest.raises(ValueError, match=r"initial_configs\[0\]"):
        nas(initial_configs=[{"units_1": 1000}]).fit(X, y)


def test_the_time_budget_keeps_time_for_rescoring_and_refit():
    timed = [(0.1, 4.0), (0.2, 2.0), (0.3, 8.0), (0.4, 1.0)]
    # rescoring the best 3 two at a time (the 8-s one on one worker, the others on the
    # other), then the winner's refit, taken as the slowest of them; each training as long
    # as its search trial and half of it again
    assert NASRegressor(time_budget=300)._time_reserve(timed, 2, 1.0) == pytest.approx(
        1.5 * 8 + 1.5 * 8)
    assert NASRegressor(time_budget=300, rescore_top=1)._time_reserve(timed, 2, 1.0) == 6
    assert NASRegressor(time_budget=300, refit=False)._time_reserve(timed, 2, 1.0) == 0


def test_fitting_and_predicting_leave_the_global_random_streams_alone(regression_data):
    # backend="serial" trains trials, rescorings and the refit in this process.
    import torch

    X, y, X_test, _ = regression_data
    torch.manual_seed(2024)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    est = nas().fit(X, y)
    est.predict(X_test, return_std=True)
    est.predict_interval(X_test)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
