"""Behaviour users rely on: the uncertainty API, units, seeds, persistence and composition."""

import pickle

import joblib
import numpy as np
import pytest
from conftest import FAST
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor, NormalMixture
from autodeuq.datasets import make_tutorial_regression
from autodeuq.exceptions import AutoDEUQError, ConfigError, NotFittedError


def single(**params):
    return GaussianMLPRegressor(**{**FAST, "random_state": 0, **params})


def ensemble(n_members=3, **params):
    return DeepEnsembleRegressor(single(), **{"n_members": n_members, "random_state": 0, **params})


@pytest.fixture(scope="module")
def fitted(regression_data):
    X, y, _, _ = regression_data
    return {"single": single().fit(X, y), "ensemble": ensemble().fit(X, y)}


# -- the uncertainty API ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_predict_matches_predict_uncertainty(fitted, regression_data, kind):
    est, X_test = fitted[kind], regression_data[2]
    mean, std = est.predict(X_test, return_std=True)
    unc = est.predict_uncertainty(X_test)
    assert mean.shape == std.shape == (len(X_test),)
    np.testing.assert_array_equal(est.predict(X_test), mean)
    np.testing.assert_array_equal(unc.mean, mean)
    np.testing.assert_array_equal(unc.total_std, std)
    # The decomposition is exact: total variance = aleatoric + epistemic.
    np.testing.assert_allclose(unc.total_std**2, unc.aleatoric_std**2 + unc.epistemic_std**2,
                               rtol=1e-12)
    lower, upper = est.predict_interval(X_test, coverage=0.9)
    assert np.all(lower < mean)
    assert np.all(mean < upper)


def test_single_network_has_no_epistemic_part(fitted, regression_data):
    unc = fitted["single"].predict_uncertainty(regression_data[2])
    assert np.all(unc.epistemic_std == 0)
    np.testing.assert_array_equal(unc.total_std, unc.aleatoric_std)


def test_one_member_ensemble_has_no_epistemic_part(regression_data):
    X, y, X_test, _ = regression_data
    unc = ensemble(n_members=1).fit(X, y).predict_uncertainty(X_test)
    assert np.all(unc.epistemic_std == 0)


def test_ensemble_is_the_weighted_mixture_of_its_members(fitted, regression_data):
    est, X_test = fitted["ensemble"], regression_data[2]
    parts = [m.predict_distribution(X_test) for m in est.estimators_]
    means = np.stack([p.mean for p in parts])
    variances = np.stack([p.var for p in parts])
    mean = means.mean(axis=0)
    unc = est.predict_uncertainty(X_test)
    np.testing.assert_allclose(unc.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(unc.aleatoric_std**2, variances.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(unc.epistemic_std**2, ((means - mean) ** 2).mean(axis=0),
                               rtol=1e-10, atol=1e-300)
    assert np.all(unc.epistemic_std > 0)


def test_recalibrate_scales_every_members_std(regression_data):
    X, y, X_test, y_test = regression_data
    est = ensemble().fit(X, y)
    before = est.predict_uncertainty(X_test)
    assert est.std_scale_ == 1.0
    assert est.recalibrate(X_test, y_test) is est
    after = est.predict_uncertainty(X_test)
    np.testing.assert_array_equal(after.mean, before.mean)
    np.testing.assert_allclose(after.epistemic_std, before.epistemic_std)
    np.testing.assert_allclose(after.aleatoric_std, before.aleatoric_std * est.std_scale_)
    # Calling it again starts from the raw members, so the factor does not compound.
    assert est.recalibrate(X_test, y_test).std_scale_ == pytest.approx(
        est.std_scale_, rel=1e-6)


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_calibrate_intervals_moves_the_interval_not_the_distribution(regression_data, kind):
    X, y, X_test, y_test = regression_data
    est = (single() if kind == "single" else ensemble()).fit(X, y)
    est.std_scale_ = 4.0  # far too wide: the raw 90% interval holds every held-out point
    before = est.predict_distribution(X_test)
    raw_lower, raw_upper = est.predict_interval(X_test, coverage=0.9)
    np.testing.assert_array_equal(raw_lower, before.interval(0.9)[0])
    assert est.interval_pits_ is None
    assert est.calibrate_intervals(X_test, y_test) is est
    np.testing.assert_array_equal(est.interval_pits_, np.sort(before.cdf(y_test)))
    after = est.predict_distribution(X_test)
    np.testing.assert_array_equal(after.means, before.means)
    np.testing.assert_array_equal(after.stds, before.stds)
    lower, upper = est.predict_interval(X_test, coverage=0.9)
    assert np.all(lower < upper)
    assert np.all(upper - lower < raw_upper - raw_lower)
    # On the points it was calibrated on, the interval holds 90% of them, up to the ranks'
    # granularity (the conformal ranks err wide by at most one point per side).
    n = len(y_test)
    inside = np.mean((y_test >= lower) & (y_test <= upper))
    assert np.mean((y_test >= raw_lower) & (y_test <= raw_upper)) == 1.0
    assert 0.9 - 1 / n <= inside <= 0.9 + 3 / n
    # fit starts again uncalibrated; recalibrating the stds drops the calibration made with
    # the old ones.
    assert est.fit(X, y).interval_pits_ is None
    if kind == "ensemble":
        est.calibrate_intervals(X_test, y_test).recalibrate(X_test, y_test)
        assert est.interval_pits_ is None


def test_ensemble_weights_are_respected(regression_data):
    X, y, X_test, _ = regression_data
    est = DeepEnsembleRegressor(single(), n_members=2, weights=[3, 1], random_state=0).fit(X, y)
    np.testing.assert_allclose(est.weights_, [0.75, 0.25])
    a, b = (m.predict(X_test) for m in est.estimators_)
    np.testing.assert_allclose(est.predict(X_test), 0.75 * a + 0.25 * b, rtol=1e-12)

    only_first = clone(est).set_params(weights=[1, 0]).fit(X, y)
    first = only_first.estimators_[0].predict_uncertainty(X_test)
    unc = only_first.predict_uncertainty(X_test)
    np.testing.assert_allclose(unc.mean, first.mean, rtol=1e-12)
    assert np.all(unc.epistemic_std == 0)


def test_members_from_configs_and_estimators(regression_data):
    X, y, X_test, _ = regression_data
    config = single(hidden_layer_sizes=(8, 8), activation=["tanh", "relu"],
                    skip_connections="all").get_config()
    est = DeepEnsembleRegressor(single(), members=[config, single(hidden_layer_sizes=(4,))],
                                random_state=0).fit(X, y)
    assert [m.config_["layers"] for m in est.estimators_] == [
        config["layers"], single(hidden_layer_sizes=(4,)).get_config()["layers"]]
    assert isinstance(est.predict_distribution(X_test), NormalMixture)
    assert est.predict_distribution(X_test).n_components == 2


def test_config_round_trip():
    est = single(hidden_layer_sizes=(8, 4, 2), activation=["tanh", "gelu", "relu"],
                 dropout=[0.0, 0.1, 0.2], skip_connections=[[], [0], [0, 1]],
                 optimizer="adamw", lr_schedule="cosine", gradient_clip=1.0)
    config = est.get_config()
    assert GaussianMLPRegressor.from_config(config).get_config() == config
    assert GaussianMLPRegressor.from_config(config, device="auto").device == "auto"


# -- units and scaling -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_outputs_are_in_the_units_of_y(regression_data, kind):
    X, y, X_test, _ = regression_data
    make = single if kind == "single" else ensemble
    base = make().fit(X, y).predict_uncertainty(X_test)
    scaled = make().fit(X, 1000.0 * y - 7.0).predict_uncertainty(X_test)
    np.testing.assert_allclose(scaled.mean, 1000.0 * base.mean - 7.0, rtol=1e-4, atol=1e-2)
    for field in ("total_std", "aleatoric_std", "epistemic_std"):
        np.testing.assert_allclose(getattr(scaled, field), 1000.0 * getattr(base, field),
                                   rtol=1e-4, atol=1e-6)


def test_validation_nll_is_in_the_units_of_y(regression_data):
    X, y, _, _ = regression_data
    a = single().fit(X, y)
    b = single().fit(X, 10.0 * y)
    assert b.validation_nll_ == pytest.approx(a.validation_nll_ + np.log(10.0), abs=1e-4)


# -- seeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_same_seed_same_result_other_seed_other_result(regression_data, kind):
    X, y, X_test, _ = regression_data
    make = single if kind == "single" else ensemble
    first = make(random_state=1) if kind == "single" else ensemble(random_state=1)
    again = clone(first)
    other = clone(first).set_params(random_state=2)
    p1, p2, p3 = (est.fit(X, y).predict(X_test) for est in (first, again, other))
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_members_get_different_seeds(fitted, regression_data):
    preds = [m.predict(regression_data[2]) for m in fitted["ensemble"].estimators_]
    assert not np.allclose(preds[0], preds[1])
    assert len({m.random_state for m in fitted["ensemble"].estimators_}) == 3


def test_parallel_members_match_sequential(regression_data):
    X, y, X_test, _ = regression_data
    sequential = ensemble(n_members=2).fit(X, y).predict(X_test)
    parallel = ensemble(n_members=2, n_jobs=2).fit(X, y).predict(X_test)
    np.testing.assert_allclose(parallel, sequential, rtol=1e-5, atol=1e-6)


# -- persistence and composition -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_pickle_and_joblib_round_trip(fitted, regression_data, tmp_path, kind):
    est, X_test = fitted[kind], regression_data[2]
    expected = est.predict_uncertainty(X_test)
    restored = pickle.loads(pickle.dumps(est))
    joblib.dump(est, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    for other in (restored, loaded):
        for got, want in zip(other.predict_uncertainty(X_test), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_pipeline_passes_return_std(regression_data):
    X, y, X_test, _ = regression_data
    pipe = Pipeline([("scale", StandardScaler()), ("model", single())]).fit(X, y)
    mean, std = pipe.predict(X_test, return_std=True)
    assert mean.shape == std.shape == (len(X_test),)
    assert np.all(std > 0)


def test_grid_search_and_cross_validation(regression_data):
    X, y, _, _ = regression_data
    search = GridSearchCV(single(), {"learning_rate": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert search.best_params_["learning_rate"] in (1e-3, 1e-2)
    nested = GridSearchCV(ensemble(n_members=2), {"estimator__hidden_layer_sizes": [(4,), (8,)]},
                          cv=2).fit(X, y)
    assert nested.best_estimator_.estimators_[0].hidden_layer_sizes in ((4,), (8,))
    scores = cross_val_score(single(), X, y, cv=3)
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores))


def test_pandas_input_keeps_feature_names(regression_data):
    pd = pytest.importorskip("pandas")
    X, y, X_test, _ = regression_data
    columns = ["a", "b", "c"]
    est = ensemble(n_members=2).fit(pd.DataFrame(X, columns=columns), pd.Series(y))
    np.testing.assert_array_equal(est.feature_names_in_, columns)
    mean = est.predict(pd.DataFrame(X_test, columns=columns))
    assert mean.shape == (len(X_test),)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(pd.DataFrame(X_test, columns=["c", "b", "a"]))


# -- what the ensemble is for ----------------------------------------------------------------


def test_epistemic_grows_outside_the_training_range():
    X, y, X_test, _ = make_tutorial_regression(n_samples_per_region=100, random_state=0)
    est = DeepEnsembleRegressor(
        GaussianMLPRegressor(hidden_layer_sizes=(32, 32), max_epochs=150, learning_rate=3e-3),
        n_members=3, random_state=0).fit(X, y)
    unc = est.predict_uncertainty(X_test)
    x = X_test[:, 0]
    outside = (np.abs(x) < 15) | (np.abs(x) > 35)
    inside = (np.abs(x) > 20) & (np.abs(x) < 30)
    assert unc.epistemic_std[outside].mean() > 2 * unc.epistemic_std[inside].mean()


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any network training starts: errors must come before any work."""
    from autodeuq.estimators import _gaussian_mlp

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(_gaussian_mlp, "train_network", refuse)


BAD_PARAMS = [
    ("hidden_layer_sizes", [0], ConfigError),
    ("hidden_layer_sizes", "64", ConfigError),
    ("activation", "rleu", ConfigError),
    ("activation", ["relu"], ConfigError),  # one activation for two layers
    ("dropout", 1.5, ConfigError),
    ("skip_connections", [[1]], ConfigError),
    ("optimizer", "adamm", ConfigError),
    ("learning_rate", -1.0, ConfigError),
    ("learning_rate", float("nan"), ConfigError),
    ("batch_size", 0, ConfigError),
    ("max_epochs", 0, ConfigError),
    ("weight_decay", -0.1, ConfigError),
    ("early_stopping", "yes", ValueError),
    ("patience", 0, ConfigError),
    ("validation_fraction", 1.0, ValueError),
    ("validation_fraction", -0.1, ValueError),
    ("lr_schedule", "exponential", ConfigError),
    ("gradient_clip", -1.0, ConfigError),
    ("device", "gpu", ValueError),
    ("device", "cuda:7", ValueError),
    ("random_state", "seed", ValueError),
]


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("name", "value", "error"), BAD_PARAMS,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_PARAMS])
@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_invalid_parameter_is_refused_before_training(regression_data, name, value, error, kind):
    X, y, _, _ = regression_data
    params = {"hidden_layer_sizes": (8, 8), name: value}
    if kind == "single":
        est = single(**params)
    elif name == "random_state":  # the ensemble's seed replaces its members' seeds
        est = DeepEnsembleRegressor(single(), random_state=value)
    else:
        est = DeepEnsembleRegressor(single(**params))
    with pytest.raises(error, match=name.split("_")[0]):
        est.fit(X, y)


BAD_ENSEMBLE_PARAMS = [
    ({"n_members": 0}, ValueError, "n_members"),
    ({"n_members": 2.5}, ValueError, "n_members"),
    ({"members": []}, ValueError, "members"),
    ({"members": [1]}, TypeError, r"members\[0\]"),
    ({"members": {"layers": []}}, TypeError, "members"),
    ({"members": [{"layers": [], "lr": 1}]}, ConfigError, "config keys"),
    ({"members": [{"layers": []}] * 2, "n_members": 3}, ValueError, "n_members"),
    ({"n_members": 3, "weights": [1, 2]}, ValueError, "one value per member"),
    ({"n_members": 3, "weights": [1, -1, 1]}, ValueError, ">= 0"),
    ({"n_members": 3, "weights": [0, 0, 0]}, ValueError, "not all 0"),
    ({"estimator": StandardScaler()}, TypeError, "estimator"),
]


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("params", "error", "match"), BAD_ENSEMBLE_PARAMS,
                         ids=[str(p) for p, _, _ in BAD_ENSEMBLE_PARAMS])
def test_invalid_ensemble_parameter_is_refused_before_training(regression_data, params, error,
                                                               match):
    X, y, _, _ = regression_data
    est = DeepEnsembleRegressor(**{"estimator": single(), **params})
    with pytest.raises(error, match=match):
        est.fit(X, y)


def _bad_data(X, y):
    X_nan, y_nan, X_inf = X.copy(), y.copy(), X.copy()
    X_nan[3, 1] = np.nan
    y_nan[5] = np.nan
    X_inf[2, 0] = np.inf
    return {
        "NaN in X": (X_nan, y, ValueError, "NaN"),
        "inf in X": (X_inf, y, ValueError, "infinity"),
        "NaN in y": (X, y_nan, ValueError, "NaN"),
        "1-D X": (X[:, 0], y, ValueError, "2D array"),
        "3-D X": (X[:, :, None], y, ValueError, "dim 3"),
        "strings in X": (np.array([["a", "b", "c"]] * len(X)), y, ValueError, "string"),
        "empty X": (X[:0], y[:0], ValueError, "0 sample"),
        "one sample": (X[:1], y[:1], ValueError, "1 sample"),
        "mismatched lengths": (X, y[:-1], ValueError, "inconsistent numbers of samples"),
        "two targets": (X, np.column_stack([y, y]), ValueError, "one target"),
    }


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize("case", list(_bad_data(np.zeros((10, 3)), np.zeros(10))))
@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_invalid_data_is_refused_before_training(regression_data, case, kind):
    X, y, _, _ = regression_data
    X_bad, y_bad, error, match = _bad_data(X, y)[case]
    est = single() if kind == "single" else ensemble()
    with pytest.raises(error, match=match):
        est.fit(X_bad, y_bad)


@pytest.mark.parametrize("kind", ["single", "ensemble"])
def test_invalid_data_at_predict(fitted, regression_data, kind):
    est, X_test = fitted[kind], regression_data[2]
    with pytest.raises(ValueError, match="features"):
        est.predict(X_test[:, :2])
    bad = X_test.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict_uncertainty(bad)
    with pytest.raises(ValueError, match="coverage"):
        est.predict_interval(X_test, coverage=1.5)


@pytest.mark.parametrize("est", [single(), ensemble()], ids=["single", "ensemble"])
def test_predict_before_fit(est, regression_data):
    with pytest.raises(NotFittedError, match="fit") as info:
        est.predict(regression_data[2])
    assert isinstance(info.value, SklearnNotFittedError)
    assert isinstance(info.value, AutoDEUQError)
