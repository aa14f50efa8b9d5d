"""The bad-input matrix (issue 6): every bad input gets one specific exception, with a message
naming the argument, the rule, the value and the fix, raised before any training, worker or
cluster starts. docs/bad_input.md lists the rows; each test below is one row."""

import math
import os
import re
import socket
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.exceptions import DataConversionWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

import autodeuq
from autodeuq import (
    AutoDEUQRegressor,
    DeepEnsembleRegressor,
    GaussianMLPRegressor,
    NASRegressor,
)
from autodeuq.estimators import _deep_ensemble, _gaussian_mlp, _search_base
from autodeuq.exceptions import (
    AutoDEUQError,
    ConfigError,
    NotFittedError,
    PersistenceError,
    SchedulerConnectionError,
)
from autodeuq.space import Condition, Float, Int, SearchSpace, check_space

SPACE = {"num_layers": 1, "units_1": Int(4, 8), "learning_rate": Float(1e-3, 1e-1, log=True),
         "max_epochs": 3, "patience": 2}


def gaussian(**params):
    return GaussianMLPRegressor(**{"hidden_layer_sizes": (4,), "max_epochs": 3,
                                   "random_state": 0, **params})


def ensemble(**params):
    return DeepEnsembleRegressor(**{"estimator": gaussian(), "n_members": 2, "random_state": 0,
                                    **params})


def nas(**params):
    return NASRegressor(**{"search_space": SPACE, "algorithm": "random", "max_evals": 2,
                           "backend": "serial", "refit": False, "random_state": 0, **params})


def auto(**params):
    return AutoDEUQRegressor(**{"search_space": SPACE, "algorithm": "random", "max_evals": 2,
                                "backend": "serial", "ensemble_size": 2, "refit": False,
                                "random_state": 0, **params})


MAKERS = {"gaussian": gaussian, "ensemble": ensemble, "nas": nas, "auto": auto}
ALL = list(MAKERS)
SEARCHES = ["nas", "auto"]
NETWORKS = ["gaussian", "ensemble"]


def make(kind, **params):
    """An estimator of ``kind``; network parameters of an ensemble go to its template."""
    if kind == "ensemble" and set(params) - set(DeepEnsembleRegressor().get_params()):
        return ensemble(estimator=gaussian(**params))
    return MAKERS[kind](**params)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    """Each estimator fitted on a DataFrame (its feature names kept)."""
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AutoDEUQ: fewer candidates than K
        return {kind: make(kind).fit(frame, y) for kind in ALL}


class WorkStarted(AssertionError):
    """Training, the search or a cluster started before the bad input was refused."""


def _refuse(*args, **kwargs):
    raise WorkStarted("work started before the bad input was refused")


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any network trains, a search runs or a Dask cluster or client starts."""
    import distributed

    from autodeuq.evaluation import DaskEvaluator

    monkeypatch.setattr(_gaussian_mlp, "train_network", _refuse)
    monkeypatch.setattr(_deep_ensemble, "train_networks", _refuse, raising=False)
    monkeypatch.setattr(_search_base, "run_search", _refuse)
    monkeypatch.setattr(DaskEvaluator, "start", _refuse)
    monkeypatch.setattr(distributed, "LocalCluster", _refuse)


def has_fix(message):
    """Whether a sentence (the fix) follows the one stating the rule and the value."""
    return re.search(r"[.:] [A-Z]", message) is not None


def refused(estimator, X, y, error, *parts):
    """Fit must raise ``error`` with every one of ``parts`` in its message."""
    with pytest.raises(error) as info:
        estimator.fit(X, y)
    for part in parts:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
    return info.value


# -- data at fit ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_nan_in_X(data, kind):
    X, y = data
    X = X.copy()
    X[3, 1] = np.nan
    refused(make(kind), X, y, ValueError, "Input X contains NaN", "imputer transformer")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_inf_in_X(data, kind):
    X, y = data
    X = X.copy()
    X[3, 1] = -np.inf
    refused(make(kind), X, y, ValueError, "Input X contains infinity",
            "Replace the infinite values")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("kind", ALL)
def test_nan_or_inf_in_y(data, kind, value):
    X, y = data
    y = y.copy()
    y[5] = value
    refused(make(kind), X, y, ValueError, "Input y contains", "Drop the rows",
            "np.isfinite(y)")


def _with_a_missing_value(values, missing, row=5):
    """``values`` as a Series of objects, the one at ``row`` ``missing``."""
    return pd.Series([*values[:row], missing, *values[row + 1:]], dtype=object)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("form", ["list", "objects", "Series"])
@pytest.mark.parametrize("missing", [None, pd.NA])
def test_a_missing_target_among_objects(data, kind, form, missing):
    # A None in an object y slipped past scikit-learn's check (it became NaN after it, and
    # training "diverged"); a pd.NA was called text to encode.
    X, y = data
    series = _with_a_missing_value(y, missing)
    y = {"list": series.tolist(), "objects": series.to_numpy(), "Series": series}[form]
    refused(make(kind), X, y, ValueError, "Input y contains NaN", "Drop the rows")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("dtype", [object, "string"])
@pytest.mark.parametrize("missing", [None, pd.NA])
def test_a_missing_value_in_an_object_or_string_column(data, kind, dtype, missing):
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["c"] = pd.array([*frame["c"].astype(str)[:5], missing, *frame["c"].astype(str)[6:]],
                          dtype=dtype)
    refused(make(kind), frame, y, ValueError, "Input X contains NaN", "imputer")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_1d_X(data, kind):
    X, y = data
    refused(make(kind), X[:, 0], y, ValueError, "Expected 2D array, got 1D array",
            "reshape(-1, 1)")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_3d_X(data, kind):
    X, y = data
    refused(make(kind), X[:, :, None], y, ValueError, "dim 3", "dim <= 2",
            "X.reshape(len(X), -1)")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_X_or_y_missing(data, kind):
    X, y = data
    refused(make(kind), None, y, ValueError, "X must be an array-like", "got None")
    refused(make(kind), X, None, ValueError, "requires y to be passed", "y is None")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_several_targets_are_refused(data, kind):
    X, y = data
    refused(make(kind), X, np.column_stack([y, y]), ValueError, "y must be one target",
            "got shape (40, 2)", "MultiOutputRegressor")


@pytest.mark.parametrize("kind", NETWORKS)
def test_a_column_vector_target_is_raveled_with_a_warning(data, kind):
    X, y = data
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        est = make(kind).fit(X, y[:, None])
    assert est.predict(X).shape == (len(X),)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_strings_in_X(data, kind):
    X, y = data
    text = np.array([["a", "b", "c"]] * len(X))
    refused(make(kind), text, y, ValueError, "X must hold numbers only", "'a'",
            "OneHotEncoder")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_categorical_column_in_a_dataframe(data, kind):
    X, y = data
    frame = pd.DataFrame({"colour": pd.Categorical(["red", "blue"] * 20), "x": X[:, 0]})
    refused(make(kind), frame, y, ValueError, "X must hold numbers only", "'red'",
            "OneHotEncoder")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_object_X_that_is_not_numbers(data, kind):
    X, y = data
    objects = X.astype(object)
    objects[0, 0] = {"a": 1}
    # numpy's TypeError stays a TypeError (scikit-learn's common checks expect it).
    refused(make(kind), objects, y, TypeError, "X must hold numbers only", "dict",
            "OneHotEncoder")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_strings_in_y(data, kind):
    X, _ = data
    refused(make(kind), X, np.array(["low", "high"] * 20), ValueError,
            "y must hold numbers only", "'low'", "real-valued target")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_boolean_y_is_refused(data, kind):
    X, y = data
    refused(make(kind), X, y > 0, ValueError, "y must be a real-valued target", "dtype bool",
            "y.astype(float)")


@pytest.mark.parametrize("kind", ALL)
def test_numeric_object_and_boolean_X_are_used_as_numbers(data, kind):
    X, y = data
    mixed = np.column_stack([X[:, :2], X[:, 2] > 0]).astype(object)  # numbers and bools
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AutoDEUQ: fewer candidates than K
        est = make(kind).fit(mixed, y)
    mean, std = est.predict(X > 0, return_std=True)
    assert np.isfinite(mean).all()
    assert (std > 0).all()


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("which", ["X", "y"])
@pytest.mark.parametrize("kind", ALL)
def test_sparse_input(data, kind, which):
    X, y = data
    if which == "X":
        X = scipy.sparse.csr_matrix(X)
    else:
        y = scipy.sparse.csr_matrix(y[:, None])
    refused(make(kind), X, y, TypeError, f"Sparse data was passed for {which}", ".toarray()")


@pytest.mark.parametrize("kind", ALL)
def test_pandas_input_keeps_feature_names(fitted, data, kind):
    X, _ = data
    est = fitted[kind]
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        np.testing.assert_allclose(est.predict(frame), est.predict(X))  # an array: a warning
    with pytest.raises(ValueError, match="feature names should match") as info:
        est.predict(frame.rename(columns={"a": "z"}))
    assert "unseen at fit time:\n- z" in str(info.value)
    with pytest.raises(ValueError, match="same order"):
        est.predict_uncertainty(frame[["b", "a", "c"]])


@pytest.mark.parametrize("kind", SEARCHES)
def test_the_pipeline_alone_checks_the_names_too(fitted, data, kind):
    # pipeline_ is the fitted model users take away: its scaler was fitted without the names
    # and took reordered columns silently, predicting other numbers.
    X, _ = data
    est, frame = fitted[kind], pd.DataFrame(X, columns=["a", "b", "c"])
    pipeline = est.pipeline_
    assert list(pipeline.feature_names_in_) == ["a", "b", "c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about names, from either
        np.testing.assert_array_equal(pipeline.predict(frame), est.predict(frame))
        est.predict_interval(frame)
        est.calibrate_intervals(frame, frame["a"].to_numpy())
    with pytest.raises(ValueError, match="same order"):
        pipeline.predict(frame[["c", "b", "a"]])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        pipeline.predict(X)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_empty_input(data, kind):
    X, y = data
    refused(make(kind), X[:0], y[:0], ValueError, "0 sample(s)", "Pass at least one row")
    refused(make(kind), X[:, :0], y, ValueError, "0 feature(s)",
            "Pass at least one feature column")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("kind", "n"), [("gaussian", 1), ("ensemble", 1), ("nas", 3),
                                         ("auto", 3)])
def test_fewer_samples_than_the_validation_split_needs(data, kind, n):
    X, y = data
    refused(make(kind), X[:n], y[:n], ValueError, f"n_samples = {n}", "validation_fraction",
            "Pass more samples")


@pytest.mark.parametrize("kind", ALL)
def test_constant_feature_works(data, kind):
    X, y = data
    X = X.copy()
    X[:, 1] = 7.0  # scaled by a unit scale, not divided by zero
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 anywhere
        warnings.simplefilter("ignore", UserWarning)  # AutoDEUQ: fewer candidates than K
        est = make(kind).fit(X, y)
        u = est.predict_uncertainty(X)
    assert all(np.isfinite(part).all() for part in u)
    assert (u.total_std > 0).all()


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("value", [3.0, 0.0])
def test_constant_target_gives_a_working_model(data, kind, value):
    X, _ = data
    y = np.full(len(X), value)  # standardized with a unit scale: no division by zero
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        est = make(kind).fit(X, y)
        mean, std = est.predict(X, return_std=True)
    assert np.isfinite(mean).all()
    assert np.isfinite(std).all()
    assert (std > 0).all()
    assert np.abs(mean - value).max() < 2.0  # near the constant, in its units


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("factor", [1e-13, 1e-40, 1e40])
def test_a_target_in_small_or_large_units_keeps_its_scale(data, kind, factor):
    # The same data in other units (metres at 1e-13 were once taken for a constant target
    # and predicted 1e10 of its spreads off): the same model, in the new units.
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = make(kind).fit(X, y).predict_uncertainty(X)
        scaled = make(kind).fit(X, y * factor).predict_uncertainty(X)
    for part, part_scaled in zip(base, scaled, strict=True):
        np.testing.assert_allclose(part_scaled / factor, part, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ALL)
def test_numbers_written_as_text_in_y_are_numbers(data, kind):
    # As scikit-learn reads such an X, or an object y (numpy's string y used to fail in the
    # target's scaling with a TypeError about add.reduce).
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = make(kind).fit(X, y).predict(X)
        for text in (y.astype(str), y.astype(str).tolist(), y.astype(bytes)):
            np.testing.assert_array_equal(make(kind).fit(X, text).predict(X), expected)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(("name", "factor", "parts"), [
    ("X", 1e300, ["X must have every |value| <= 1e+150", "magnitude", "divide it by 1e+300"]),
    ("y", 1e300, ["y must have every |value| <= 1e+150", "multiply the predictions back"]),
    ("y", 1e-300, ["y must have its largest |value| >= 1e-150", "multiply it by 1e+300"]),
])
def test_values_whose_square_leaves_float64(data, kind, name, factor, parts):
    # Refused before training: their variance overflows (or underflows), and training used
    # to diverge with advice to standardize the inputs, which the estimators already do.
    X, y = data
    X, y = (X * factor, y) if name == "X" else (X, y * factor)
    message = str(refused(make(kind), X, y, ValueError, *parts))
    assert has_fix(message)


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", ALL)
def test_mismatched_lengths(data, kind):
    X, y = data
    refused(make(kind), X, y[:-1], ValueError, "inconsistent numbers of samples: [40, 39]",
            "one target value per row of X")


# -- data at predict --------------------------------------------------------------------------

METHODS = ["predict", "predict_uncertainty", "predict_interval", "predict_distribution"]


def _bad_X(X):
    nan, inf = X.copy(), X.copy()
    nan[0, 0], inf[0, 0] = np.nan, np.inf
    return {
        "NaN": (nan, ValueError, ["Input X contains NaN"]),
        "inf": (inf, ValueError, ["Input X contains infinity", "Replace the infinite values"]),
        "1-D": (X[:, 0], ValueError, ["Expected 2D array", "reshape"]),
        "3-D": (X[:, :, None], ValueError, ["dim 3", "X.reshape(len(X), -1)"]),
        "strings": (np.full(X.shape, "a"), ValueError, ["X must hold numbers only"]),
        "sparse": (scipy.sparse.csr_matrix(X), TypeError, ["Sparse data", ".toarray()"]),
        "empty": (X[:0], ValueError, ["0 sample(s)", "Pass at least one row"]),
        "None": (None, ValueError, ["X must be an array-like", "got None"]),
        "fewer features": (X[:, :2], ValueError, ["X has 2 features", "expecting 3 features",
                                                  "Pass X with the columns the model was "
                                                  "fitted on"]),
        "more features": (np.column_stack([X, X[:, 0]]), ValueError,
                          ["X has 4 features", "expecting 3 features", "Pass X with the"]),
    }


@pytest.mark.parametrize("case", list(_bad_X(np.zeros((2, 3)))))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ALL)
def test_bad_X_at_predict(fitted, data, kind, method, case):
    X_bad, error, parts = _bad_X(data[0])[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fitted with feature names
        with pytest.raises(error) as info:
            getattr(fitted[kind], method)(X_bad)
    for part in parts:
        assert part in str(info.value)


@pytest.mark.parametrize("coverage", [0.0, 1.0, 1.5, -0.1, "0.9", float("nan"), True, None])
@pytest.mark.parametrize("kind", ALL)
def test_interval_coverage_out_of_range(fitted, data, kind, coverage):
    frame = pd.DataFrame(data[0], columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"coverage must be a float in \(0, 1\)") as info:
        fitted[kind].predict_interval(frame, coverage=coverage)
    assert f"got {coverage!r}. Use e.g. 0.9 for a 90% interval" in str(info.value)


@pytest.mark.parametrize("method", [*METHODS, "save"])
@pytest.mark.parametrize("kind", ALL)
def test_use_before_fit(data, kind, method, tmp_path):
    argument = tmp_path / "model.autodeuq" if method == "save" else data[0]
    with pytest.raises(NotFittedError, match=r"is not fitted yet\. Call fit\(X, y\)") as info:
        getattr(make(kind), method)(argument)
    assert isinstance(info.value, SklearnNotFittedError)
    assert isinstance(info.value, AutoDEUQError)


def test_recalibrate_bad_input(fitted, data):
    X, y = data
    with pytest.raises(NotFittedError, match="not fitted"):
        ensemble().recalibrate(X, y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="y must be one target"):
        fitted["ensemble"].recalibrate(frame, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="y must hold numbers only"):
        fitted["ensemble"].recalibrate(frame, np.array(["a"] * len(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an array, where names were fitted
        with pytest.raises(ValueError, match=r"X has 2 features.* Pass X with the columns"):
            fitted["ensemble"].recalibrate(X[:, :2], y)


def test_calibrate_intervals_bad_input(fitted, data):
    X, y = data
    with pytest.raises(NotFittedError, match="not fitted"):
        ensemble().calibrate_intervals(X, y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    est = fitted["ensemble"]
    with pytest.raises(ValueError, match="y must be one target"):
        est.calibrate_intervals(frame, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="y must hold numbers only"):
        est.calibrate_intervals(frame, np.array(["a"] * len(y)))
    with pytest.raises(ValueError, match=r"y must hold one target per row of X, at least 2; "
                                         r"got 9 for 10 rows"):
        est.calibrate_intervals(frame[:10], y[:9])
    with pytest.raises(ValueError, match="y must be finite; got NaN"):
        est.calibrate_intervals(frame[:10], np.r_[y[:9], np.nan])
    assert getattr(est, "interval_pits_", None) is None  # nothing half-done kept


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NETWORKS)
def test_hidden_layer_sizes_as_a_numpy_array(data, kind):
    # As scikit-learn's MLPRegressor takes it (it was refused as no sequence of ints).
    X, y = data
    as_array = make(kind, hidden_layer_sizes=np.array([4, 3])).fit(X, y)
    as_tuple = make(kind, hidden_layer_sizes=(4, 3)).fit(X, y)
    np.testing.assert_array_equal(as_array.predict(X), as_tuple.predict(X))


NETWORK_PARAMS = [
    ("hidden_layer_sizes", 3.5, ConfigError, "a sequence of ints"),
    ("hidden_layer_sizes", (0,), ConfigError, "an int >= 1"),
    ("activation", "rleu", ConfigError, "one of relu"),
    ("dropout", 1.0, ConfigError, "a float in [0, 1)"),
    ("optimizer", None, ConfigError, "one of adam"),
    ("learning_rate", "0.1", ConfigError, "a finite float > 0"),
    ("batch_size", True, ConfigError, "an int >= 1"),
    ("max_epochs", 0, ConfigError, "an int >= 1"),
    ("weight_decay", -1.0, ConfigError, "a finite float >= 0"),
    ("early_stopping", 1, ValueError, "True or False"),
    ("patience", -3, ConfigError, "an int >= 1 or None"),
    ("validation_fraction", 1.0, ValueError, "a float in [0, 1)"),
    ("lr_schedule", "step", ConfigError, "one of None"),
    ("gradient_clip", "1", ConfigError, "a float > 0 or None"),
    ("verbose", -1, ValueError, "an int >= 0"),
    ("device", -1, ValueError, "a string such as 'cpu'"),
    ("device", "tpu", ValueError, "'cpu', 'cuda', 'cuda:N'"),
    ("device", "cuda:-1", ValueError, "'cpu', 'cuda', 'cuda:N'"),
    ("device", "cuda:99", ValueError, "names CUDA device 99"),
    ("random_state", -1, ValueError, "an int >= 0"),
    ("random_state", "seed", ValueError, "None, an int"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("name", "value", "error", "rule"), NETWORK_PARAMS,
                         ids=[f"{n}={v!r}" for n, v, _, _ in NETWORK_PARAMS])
@pytest.mark.parametrize("kind", NETWORKS)
def test_invalid_network_parameter(data, kind, name, value, error, rule):
    X, y = data
    if kind == "ensemble" and name == "random_state":  # the ensemble's seeds its members
        est = ensemble(random_state=value)
    else:
        est = make(kind, **{name: value})
    shown = repr(value[0] if isinstance(value, tuple) else value)
    err = refused(est, X, y, error, name, rule, shown)
    assert has_fix(str(err))


ENSEMBLE_PARAMS = [
    ({"n_members": 0}, ValueError, "n_members must be an int >= 1 or None"),
    ({"n_members": "3"}, ValueError, "n_members must be an int >= 1 or None"),
    ({"n_jobs": 0}, ValueError, "n_jobs must be None or a nonzero int"),
    ({"n_jobs": "2"}, ValueError, "n_jobs must be None or a nonzero int"),
    ({"verbose": "loud"}, ValueError, "verbose must be an int >= 0"),
    ({"weights": "1,2"}, ValueError, "weights must be a list of numbers"),
    ({"weights": [1.0, float("nan")]}, ValueError, "weights must be finite"),
    ({"weights": [1, 2, 3]}, ValueError, "weights must have one value per member"),
    ({"estimator": GaussianMLPRegressor}, TypeError, "estimator must be a GaussianMLPRegressor"),
    ({"members": [1], "n_members": None}, TypeError, "members[0] must be a GaussianMLPRegressor"),
    ({"members": [{"layers": "x"}], "n_members": None}, ConfigError,
     "config['layers'] must be a list"),
    ({"batched": "yes"}, ValueError, "batched must be 'auto', True or False"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("params", "error", "message"), ENSEMBLE_PARAMS,
                         ids=[str(p) for p, _, _ in ENSEMBLE_PARAMS])
def test_invalid_ensemble_parameter(data, params, error, message):
    X, y = data
    err = refused(ensemble(**params), X, y, error, message)
    assert has_fix(str(err))


BUDGETS = [
    ({"max_evals": None, "time_budget": None}, "max_evals and time_budget must not both be None"),
    ({"max_evals": 0}, "max_evals must be an int >= 1 or None; got 0"),
    ({"max_evals": -1}, "max_evals must be an int >= 1 or None; got -1"),
    ({"max_evals": 2.5}, "max_evals must be an int >= 1 or None; got 2.5"),
    ({"max_evals": "5"}, "max_evals must be an int >= 1 or None; got '5'"),
    ({"max_evals": True}, "max_evals must be an int >= 1 or None; got True"),
    ({"time_budget": 0}, "time_budget must be a number of seconds > 0 or None; got 0"),
    ({"time_budget": -5}, "time_budget must be a number of seconds > 0 or None; got -5"),
    ({"time_budget": "60"}, "time_budget must be a number of seconds > 0 or None; got '60'"),
    ({"time_budget": math.inf}, "time_budget must be a number of seconds > 0 or None; got inf"),
    ({"trial_timeout": 0}, "trial_timeout must be a number of seconds > 0 or None; got 0"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("params", "message"), BUDGETS, ids=[str(p) for p, _ in BUDGETS])
@pytest.mark.parametrize("kind", SEARCHES)
def test_invalid_budget(data, kind, params, message):
    X, y = data
    err = refused(make(kind, **params), X, y, ValueError, message)
    assert has_fix(str(err))


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("algorithm", ["simulated-annealing", None, 3])
@pytest.mark.parametrize("kind", SEARCHES)
def test_unknown_algorithm(data, kind, algorithm):
    X, y = data
    refused(make(kind, algorithm=algorithm), X, y, ValueError,
            "algorithm must be one of 'random', 'evolution', 'bo', 'agebo'", repr(algorithm),
            "Pass e.g. algorithm='agebo'")


SEARCH_PARAMS = [
    ("nas", {"n_jobs": -2}, ValueError, "n_jobs must be an int >= 1 or None"),
    ("nas", {"n_jobs": -1.0}, ValueError, "n_jobs must be an int >= 1 or None"),
    ("nas", {"backend": "mpi"}, ValueError, "backend must be one of ('dask', 'serial')"),
    ("nas", {"validation_fraction": 0.0}, ValueError, "validation_fraction must be in (0, 1)"),
    ("nas", {"validation_fraction": "0.2"}, ValueError, "validation_fraction must be in (0, 1)"),
    ("nas", {"checkpoint_dir": 3}, ValueError, "checkpoint_dir must be a path or None"),
    ("auto", {"checkpoint_dir": 3}, ValueError, "checkpoint_dir must be a path or None"),
    ("auto", {"checkpoint_dir": ""}, ValueError, "checkpoint_dir must be a path or None"),
    ("nas", {"initial_configs": "best"}, ValueError, "initial_configs must be None, 'default'"),
    ("nas", {"initial_configs": [1]}, ValueError, "initial_configs[0] must be a dict"),
    ("nas", {"initial_configs": [{"units_1": 100}]}, ValueError,
     "initial_configs[0] is not a configuration of the search space"),
    ("nas", {"verbose": "loud"}, ValueError, "verbose must be an int >= 0"),
    ("nas", {"refit": "yes"}, ValueError, "refit must be True or False"),
    ("auto", {"max_networks": 0}, ValueError, "max_networks must be None or an int >= 1"),
    ("auto", {"max_networks": 2.5}, ValueError, "max_networks must be None or an int >= 1"),
    ("auto", {"interval_calibration": "yes"}, ValueError,
     "interval_calibration must be True or False"),
    ("nas", {"interval_calibration": None}, ValueError,
     "interval_calibration must be True or False"),
    ("nas", {"rescore_top": -1}, ValueError, "rescore_top must be an int >= 0"),
    ("nas", {"random_state": -1}, ValueError, "random_state must be None, an int >= 0"),
    ("auto", {"ensemble_size": 0}, ValueError, "ensemble_size must be an int >= 1"),
    ("auto", {"ensemble_size": 2.0}, ValueError, "ensemble_size must be an int >= 1"),
    ("auto", {"max_in_memory": 0}, ValueError, "max_in_memory must be an int >= 1"),
    ("auto", {"selection": "best"}, ValueError,
     "selection must be one of ['bagged', 'greedy', 'topk']"),
    ("auto", {"selection": None}, TypeError, "selection must be a str"),
    ("auto", {"recalibrate": 1}, ValueError,
     "recalibrate must be 'widen', 'fit', True or False"),
    ("nas", {"recalibrate": "narrow"}, ValueError,
     "recalibrate must be 'widen', 'fit', True or False"),
    ("nas", {"early_discard": "halving"}, ValueError, "early_discard must be None"),
    ("auto", {"security": "tls"}, TypeError, "security must be a distributed.security"),
    ("nas", {"trials_per_device": 0}, ValueError, "trials_per_device must be an int >= 1"),
    ("auto", {"trials_per_device": 1.5}, ValueError, "trials_per_device must be an int >= 1"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("kind", "params", "error", "message"), SEARCH_PARAMS,
                         ids=[f"{k}-{p}" for k, p, _, _ in SEARCH_PARAMS])
def test_invalid_search_parameter(data, kind, params, error, message):
    X, y = data
    err = refused(make(kind, **params), X, y, error, message)
    assert has_fix(str(err))


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", SEARCHES)
def test_checkpoint_dir_that_is_a_file(data, kind, tmp_path):
    X, y = data
    path = tmp_path / "journal.txt"
    path.write_text("not a directory")
    refused(make(kind, checkpoint_dir=path), X, y, ValueError,
            "checkpoint_dir must be a directory", "which is a file", "Pass the path of a "
            "directory")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", SEARCHES)
def test_checkpoint_dir_that_cannot_be_made(data, kind, tmp_path):
    # A file on its path (a permission or a read-only file system fails the same way): the
    # OS's own error used to name neither checkpoint_dir nor a fix.
    X, y = data
    (tmp_path / "a_file").write_text("")
    path = tmp_path / "a_file" / "journal"
    refused(make(kind, checkpoint_dir=path), X, y, NotADirectoryError,
            f"checkpoint_dir={str(path)!r} cannot be used: Not a directory",
            "Pass a directory this process can create and write to, or checkpoint_dir=None")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("kind", SEARCHES)
def test_numpy_booleans_are_booleans(data, kind):
    X, y = data
    with pytest.raises(WorkStarted):  # validation passed: the search was about to start
        make(kind, refit=np.True_).fit(X, y)


@pytest.mark.filterwarnings("ignore:refitting:RuntimeWarning")  # a refit may be kept out
@pytest.mark.parametrize("refit", [False, True])
def test_ensemble_size_larger_than_the_search_produced(data, refit):
    X, y = data
    est = auto(max_evals=2, ensemble_size=4, refit=refit)
    with pytest.warns(UserWarning, match=r"ensemble_size=4 but the search produced 2 "
                                         r"successful candidate\(s\).*Raise max_evals"):
        est.fit(X, y)
    assert est.n_candidates_ == 2
    assert len({m["trial_id"] for m in est.members_}) <= 2
    assert len(est.members_) == (4 if refit else len({m["trial_id"] for m in est.members_}))
    assert np.isfinite(est.predict(X)).all()


BAD_SPACES = [
    ("not a dict", 5, TypeError, "search space must be None"),
    ("bad entry", {**SPACE, "units_1": object()}, TypeError, "dimensions['units_1'] must be"),
    ("dict entry", {**SPACE, "units_1": {"type": "int"}}, TypeError,
     "dimensions['units_1'] must be"),
    ("unnamed", {"": 3}, TypeError, "dimension names must be non-empty str"),
    ("empty", {}, ConfigError, "search_space must have at least one dimension"),
    ("unknown name", {**SPACE, "colour": "red"}, ConfigError, "got ['colour']"),
    ("value out of rule", {**SPACE, "learning_rate": Float(-1.0, 1.0)}, ConfigError,
     "search_space['learning_rate'] = Float(-1.0, 1.0) allows -1.0"),
    ("bad choice", {**SPACE, "optimizer": ["adam", "bogus"]}, ConfigError,
     "search_space['optimizer'] = Categorical(['adam', 'bogus']) allows 'bogus'"),
    ("bad constant", {**SPACE, "max_epochs": 0}, ConfigError,
     "search_space['max_epochs'] = Categorical([0]) allows 0"),
    ("zero units", {**SPACE, "units_1": Int(0, 8)}, ConfigError,
     "search_space['units_1'] = Int(0, 8) allows 0"),
    ("missing layer", {**SPACE, "num_layers": Int(1, 2)}, ConfigError,
     "['units_2'] is missing"),
    ("unconditioned layer", {**SPACE, "num_layers": Int(1, 2), "units_2": Int(4, 8)},
     ConfigError, "['units_2'] must be inactive when num_layers = 1"),
    # Between the bounds (checked there only, it failed trial by trial at num_layers = 2).
    ("missing layer inside the range", SearchSpace(
        {**SPACE, "num_layers": Int(1, 3), "units_2": Int(4, 8), "units_3": Int(4, 8)},
        conditions={"units_2": Condition("num_layers", ">=", 3),
                    "units_3": Condition("num_layers", ">=", 3)}),
     ConfigError, "num_layers can be 2 but ['units_2'] is missing"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("space", "error", "message"), [c[1:] for c in BAD_SPACES],
                         ids=[c[0] for c in BAD_SPACES])
@pytest.mark.parametrize("kind", SEARCHES)
def test_malformed_search_space(data, kind, space, error, message):
    X, y = data
    err = refused(make(kind, search_space=space), X, y, error, message)
    assert has_fix(str(err))


def test_malformed_dimension_is_refused_where_it_is_made():
    with pytest.raises(ConfigError, match=r"Int\(low=..., high=...\) must be low <= high; "
                                          r"got \(8, 4\)\. Swap the bounds"):
        Int(8, 4)
    with pytest.raises(ConfigError, match=r"Categorical\(choices=...\) must be non-empty"):
        SearchSpace({"activation_1": []})


def test_well_formed_spaces_pass_the_check():
    assert len(check_space(None)) > 50  # the default space
    check_space(SPACE)
    conditioned = SearchSpace({"num_layers": Int(1, 2), "units_1": Int(4, 8),
                               "units_2": Int(4, 8), "dropout_2": Float(0.0, 0.5)},
                              conditions={"units_2": Condition("num_layers", ">=", 2),
                                          "dropout_2": Condition("num_layers", ">=", 2)})
    assert check_space(conditioned) is conditioned


# -- cluster parameters (backend="dask") ----------------------------------------------------------


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail the test if an embedded cluster starts or a network trains."""
    import distributed

    from autodeuq.evaluation import DaskEvaluator

    monkeypatch.setattr(distributed, "LocalCluster", _refuse)
    monkeypatch.setattr(distributed, "SpecCluster", _refuse)
    monkeypatch.setattr(DaskEvaluator, "_start_embedded", _refuse)
    monkeypatch.setattr(_search_base, "run_search", _refuse)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("kind", SEARCHES)
@pytest.mark.parametrize("where", ["tcp", "inproc"])
def test_unreachable_scheduler(data, kind, monkeypatch, where):
    from autodeuq.evaluation import _dask

    monkeypatch.setattr(_dask, "_CONNECT_TIMEOUT", "1s")  # Dask retries until then (20 s)
    X, y = data
    # Nothing listens there; distributed fails to parse an inproc address of no process
    # (a ValueError about unpacking, once).
    address = (f"tcp://127.0.0.1:{_free_port()}" if where == "tcp" else "inproc://nothing")
    start = time.monotonic()
    err = refused(make(kind, backend="dask", scheduler=address), X, y,
                  SchedulerConnectionError, f"scheduler={address!r}", "could not connect",
                  "scheduler=None to start an embedded cluster")
    assert isinstance(err, ConnectionError)
    assert isinstance(err, ValueError)
    assert time.monotonic() - start < 30


MALFORMED_SCHEDULERS = [
    (5, TypeError, "scheduler must be None, a distributed.Client"),
    ("localhost", ValueError, "missing port number"),
    ("no-such-dir/scheduler.json", ValueError,
     "must be an existing scheduler file or a Dask scheduler address"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("scheduler", "error", "message"), MALFORMED_SCHEDULERS,
                         ids=[repr(s) for s, _, _ in MALFORMED_SCHEDULERS])
@pytest.mark.parametrize("kind", SEARCHES)
def test_malformed_scheduler(data, kind, scheduler, error, message):
    X, y = data
    refused(make(kind, backend="dask", scheduler=scheduler), X, y, error, message,
            repr(scheduler), "'tcp://10.0.0.5:8786'")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("content", "problem"), [
    ("", "it is not valid JSON"),
    ("{not json", "it is not valid JSON"),
    ('{"id": "Scheduler-1"}', 'it holds no scheduler "address"'),
    ('["tcp://10.0.0.5:8786"]', 'it holds no scheduler "address"'),
])
@pytest.mark.parametrize("kind", SEARCHES)
def test_a_scheduler_file_that_names_no_scheduler(data, kind, tmp_path, content, problem):
    # distributed waited up to 10 s for such a file, then failed on a bare AssertionError.
    X, y = data
    path = tmp_path / "scheduler.json"
    path.write_text(content)
    err = refused(make(kind, backend="dask", scheduler=str(path)), X, y,
                  SchedulerConnectionError, f"scheduler={str(path)!r} is not a Dask scheduler "
                  f"file: {problem}", "--scheduler-file")
    assert has_fix(str(err))


@pytest.mark.parametrize("kind", SEARCHES)
def test_a_closed_client(data, kind, monkeypatch):
    # Its calls used to fail inside distributed: 'NoneType' object has no attribute
    # 'register_worker_plugin'.
    from distributed import Client, LocalCluster

    X, y = data
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        client = Client(cluster)
        client.close()
        # Refused before the fit starts anything (so no_work's stubs go in only now).
        monkeypatch.setattr(_search_base, "run_search", _refuse)
        err = refused(make(kind, backend="dask", scheduler=client), X, y,
                      SchedulerConnectionError, "scheduler must be an open distributed.Client",
                      "which is closed", "Pass an open Client")
        assert has_fix(str(err))


def _gpu_count():
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


BAD_DEVICES = [
    ("cuda:99", ["cuda:99"], "names GPU 99, but this machine has"),
    ("negative", [-1], "devices[0] must be a GPU index >= 0"),
    ("bad string", ["gpu0"], "devices[0] must be a GPU index >= 0"),
    ("no index", ["cuda"], "devices[0] must be a GPU index >= 0"),
    ("float", [1.5], "devices[0] must be a GPU index >= 0"),
    ("bool", [True], "devices[0] must be a GPU index >= 0"),
    ("not a list", "cuda:0", "Wrap one GPU in a list"),
    ("int", 0, "Wrap one GPU in a list"),
    ("empty", [], "devices must hold at least one GPU"),
]


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(("devices", "message"), [c[1:] for c in BAD_DEVICES],
                         ids=[c[0] for c in BAD_DEVICES])
@pytest.mark.parametrize("kind", SEARCHES)
def test_devices_that_do_not_exist(data, kind, devices, message):
    X, y = data
    refused(make(kind, backend="dask", devices=devices), X, y, ValueError, message,
            "Use devices=None" if "names GPU" in message else "got")


@pytest.mark.usefixtures("no_work")
@pytest.mark.skipif(_gpu_count() > 0, reason="only a machine without GPUs refuses every UUID")
def test_gpu_uuid_on_a_machine_without_gpus(data):
    X, y = data
    refused(nas(backend="dask", devices=["GPU-5a3c8e2f"]), X, y, ValueError,
            "names GPUs, but this machine has no CUDA device", "Use devices=None or 'cpu'")


FAIL_FAST = {
    "NaN in X": ({}, "Input X contains NaN"),
    "max_evals=0": ({"max_evals": 0}, "max_evals must be an int >= 1"),
    "bad space": ({"search_space": {**SPACE, "optimizer": ["adam", "bogus"]}},
                  "search_space['optimizer']"),
    "bad device": ({"devices": [-1]}, "devices[0] must be a GPU index"),
    "devices with serial": ({"backend": "serial", "devices": [0]},
                            "backend='serial' runs in this process"),
}


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("bad", list(FAIL_FAST))
@pytest.mark.parametrize("kind", SEARCHES)
def test_bad_input_fails_before_a_cluster_starts(data, kind, bad):
    X, y = data
    if bad == "NaN in X":
        X = X.copy()
        X[0, 0] = np.nan
    params, message = FAIL_FAST[bad]
    start = time.monotonic()
    # The no_cluster fixture turns a cluster start (or a search) into a failure of the test.
    with pytest.raises(ValueError, match=re.escape(message)):
        make(kind, **{"backend": "dask", **params}).fit(X, y)
    assert time.monotonic() - start < 10  # no cluster, no worker: well under a second here


# -- persistence --------------------------------------------------------------------------------


def test_save_and_load_bad_input(tmp_path):
    with pytest.raises(TypeError, match="save\\(\\) takes a GaussianMLPRegressor"):
        autodeuq.persistence.save(object(), tmp_path / "object.autodeuq")
    with pytest.raises(FileNotFoundError):
        autodeuq.load(tmp_path / "missing.autodeuq")
    junk = tmp_path / "junk.autodeuq"
    junk.write_bytes(b"not a model")
    with pytest.raises(PersistenceError, match="not an autodeuq model file") as info:
        autodeuq.load(junk)
    assert f"cannot load {str(junk)!r}" in str(info.value)
    assert "estimator.save(path)" in str(info.value)


def test_save_and_load_paths_that_cannot_be_used(fitted, data, tmp_path, monkeypatch):
    # Each names the path the user gave (once the temporary file's) and the fix.
    X, _ = data
    est = fitted["gaussian"]
    with pytest.raises(FileNotFoundError, match=r"the directory '.*/no/such' does not exist\. "
                                                r"Create it first"):
        est.save(tmp_path / "no" / "such" / "m.autodeuq")
    with pytest.raises(IsADirectoryError, match=r"it is a directory\. Give a file name, e\.g\. "
                                                r".*model\.autodeuq"):
        est.save(tmp_path)
    with pytest.raises(ValueError, match="needs a file name; got an empty path ''"):
        est.save("")
    with pytest.raises(TypeError, match=r"takes a path .* got int"):
        est.save(3)
    with open(tmp_path / "text.autodeuq", "w") as handle, pytest.raises(
            TypeError, match=r"needs a binary file object; got one opened in text mode \('w'\)"
                             r"\. Open it with open\(path, 'wb'\)"):
        est.save(handle)
    est.save(tmp_path / "m.autodeuq")
    with open(tmp_path / "m.autodeuq") as handle, pytest.raises(TypeError, match="'rb'"):
        autodeuq.load(handle)
    with pytest.raises(IsADirectoryError, match=r"Pass the model file in it, e\.g\. "
                                                r".*m\.autodeuq'"):
        autodeuq.load(tmp_path)
    # What the operating system takes works too: bytes, and ~ for the home directory.
    est.save(os.fsencode(tmp_path / "b.autodeuq"))
    monkeypatch.setenv("HOME", str(tmp_path))
    np.testing.assert_array_equal(autodeuq.load("~/b.autodeuq").predict(X), est.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
