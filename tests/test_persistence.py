"""save(path) / autodeuq.load(path): a format that loads without running code."""

import io
import json
import pickle
import re
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import autodeuq
from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor, NASRegressor
from autodeuq.ensemble import TopKSelector
from autodeuq.exceptions import AutoDEUQError, NotFittedError, PersistenceError
from autodeuq.persistence import FORMAT_NAME, FORMAT_VERSION
from autodeuq.space import Float, Int, SearchSpace

TINY = {"hidden_layer_sizes": (8,), "max_epochs": 5, "random_state": 0}
SPACE = {"num_layers": 1, "units_1": Int(4, 16), "learning_rate": Float(1e-3, 3e-2, log=True),
         "max_epochs": 5, "patience": 10}
SEARCH = {"search_space": SPACE, "algorithm": "random", "max_evals": 3, "backend": "serial",
          "random_state": 0}
KINDS = ["single", "ensemble", "nas", "auto"]
#: Fitted on a DataFrame, so they have feature names; the others on arrays.
WITH_NAMES = {"single", "auto"}


def frame(X):
    return pd.DataFrame(X, columns=["x0", "x1", "noise"])


@pytest.fixture(scope="module")
def fitted(regression_data):
    X, y, _, _ = regression_data
    return {
        "single": GaussianMLPRegressor(**TINY).fit(frame(X), y),
        "ensemble": DeepEnsembleRegressor(GaussianMLPRegressor(**TINY), n_members=2,
                                          random_state=0).fit(X, y),
        "nas": NASRegressor(**SEARCH).fit(X, y),
        "auto": AutoDEUQRegressor(**SEARCH, ensemble_size=2).fit(frame(X), y),
    }


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """Each fitted estimator saved once: kind -> path."""
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for kind, est in fitted.items():
        paths[kind] = folder / f"{kind}.autodeuq"
        est.save(paths[kind])
    return paths


def inputs_for(kind, regression_data):
    X_test = regression_data[2]
    return frame(X_test) if kind in WITH_NAMES else X_test


def assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    for x, z in zip(a.predict(X, return_std=True), b.predict(X, return_std=True), strict=True):
        np.testing.assert_array_equal(x, z)
    for x, z in zip(a.predict_uncertainty(X), b.predict_uncertainty(X), strict=True):
        np.testing.assert_array_equal(x, z)
    for x, z in zip(a.predict_interval(X, coverage=0.8), b.predict_interval(X, coverage=0.8),
                    strict=True):
        np.testing.assert_array_equal(x, z)


def assert_same_value(a, b, where="value"):
    """Equal, and of the same type, recursively (estimators by class and parameters)."""
    if isinstance(a, BaseEstimator):
        assert type(a) is type(b), where
        assert_same_value(a.get_params(deep=False), b.get_params(deep=False), where)
    elif isinstance(a, dict):
        assert type(b) is dict, where
        assert list(a) == list(b), where
        for key in a:
            assert_same_value(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b), where
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b, strict=True)):
            assert_same_value(x, z, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b)
    else:
        assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


# -- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_loaded_model_predicts_identically(fitted, saved, regression_data, kind):
    loaded = autodeuq.load(saved[kind])
    assert type(loaded) is type(fitted[kind])
    X_test = inputs_for(kind, regression_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. sklearn's feature-name warnings
        assert_same_predictions(fitted[kind], loaded, X_test)


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_round_trip(fitted, saved, kind):
    loaded = autodeuq.load(saved[kind])
    assert_same_value(fitted[kind].get_params(deep=False), loaded.get_params(deep=False))


@pytest.mark.parametrize("kind", KINDS)
def test_saving_a_loaded_model_gives_the_same_bytes(saved, tmp_path, kind):
    # Every attribute, array and history row round-trips exactly; and saving is
    # deterministic (no time stamps), so equal models give equal files.
    autodeuq.load(saved[kind]).save(tmp_path / "again.autodeuq")
    assert (tmp_path / "again.autodeuq").read_bytes() == saved[kind].read_bytes()
    autodeuq.save(autodeuq.load(saved[kind]), tmp_path / "function.autodeuq")  # as load's pair
    assert (tmp_path / "function.autodeuq").read_bytes() == saved[kind].read_bytes()


def test_a_single_networks_fitted_attributes_round_trip(fitted, saved):
    est, loaded = fitted["single"], autodeuq.load(saved["single"])
    for name in ("config_", "y_mean_", "y_scale_", "history_", "n_epochs_", "best_epoch_",
                 "validation_nll_", "std_scale_", "n_features_in_"):
        assert_same_value(getattr(est, name), getattr(loaded, name), name)
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        assert_same_value(getattr(est.x_scaler_, name), getattr(loaded.x_scaler_, name), name)
    state, loaded_state = est.module_.state_dict(), loaded.module_.state_dict()
    assert list(state) == list(loaded_state)
    for name in state:
        assert loaded_state[name].dtype == torch.float64
        torch.testing.assert_close(state[name], loaded_state[name], rtol=0, atol=0)
    assert not loaded.module_.training


def test_a_search_keeps_its_results_and_members(fitted, saved):
    for kind, names in [("nas", ("best_params_", "best_config_", "best_score_", "search_time_",
                                 "refit_time_")),
                        ("auto", ("members_", "validation_nll_", "std_scale_", "n_candidates_",
                                  "search_time_", "refit_time_"))]:
        est, loaded = fitted[kind], autodeuq.load(saved[kind])
        for name in names:
            assert_same_value(getattr(est, name), getattr(loaded, name), f"{kind}.{name}")
        pd.testing.assert_frame_equal(est.search_results_, loaded.search_results_)
        assert [name for name, _ in loaded.pipeline_.steps] == [
            name for name, _ in est.pipeline_.steps]
    ensemble = autodeuq.load(saved["auto"]).pipeline_[-1]
    assert ensemble.std_scale_ == fitted["auto"].pipeline_[-1].std_scale_
    np.testing.assert_array_equal(ensemble.weights_, fitted["auto"].pipeline_[-1].weights_)


@pytest.mark.parametrize("kind", sorted(WITH_NAMES))
def test_feature_names_are_kept(fitted, saved, kind):
    loaded = autodeuq.load(saved[kind])
    np.testing.assert_array_equal(loaded.feature_names_in_, fitted[kind].feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    assert not hasattr(autodeuq.load(saved["ensemble"]), "feature_names_in_")
    if hasattr(loaded, "pipeline_"):  # the pipeline alone checks them too
        np.testing.assert_array_equal(loaded.pipeline_.feature_names_in_,
                                      fitted[kind].feature_names_in_)


def test_a_loaded_model_pickles_and_composes(fitted, saved, regression_data):
    X, y, X_test, _ = regression_data
    for kind in KINDS:
        loaded = autodeuq.load(saved[kind])
        restored = pickle.loads(pickle.dumps(loaded))
        np.testing.assert_array_equal(restored.predict(inputs_for(kind, regression_data)),
                                      fitted[kind].predict(inputs_for(kind, regression_data)))
    # Its parameters describe the same model, so clone trains it afresh, in a Pipeline too.
    for kind in ("single", "ensemble"):
        pipe = Pipeline([("scale", StandardScaler()),
                         ("model", clone(autodeuq.load(saved[kind])))])
        mean, std = pipe.fit(X, y).predict(X_test, return_std=True)
        assert mean.shape == std.shape == (len(X_test),)
    # A searching estimator's pipeline_ is an ordinary fitted Pipeline.
    loaded = autodeuq.load(saved["nas"])
    np.testing.assert_array_equal(loaded.pipeline_.predict(X_test),
                                  fitted["nas"].pipeline_.predict(X_test))


def test_save_and_load_through_file_objects(fitted, saved, regression_data):
    buffer = io.BytesIO()
    fitted["ensemble"].save(buffer)
    assert buffer.getvalue() == saved["ensemble"].read_bytes()
    buffer.seek(0)
    assert_same_predictions(fitted["ensemble"], autodeuq.load(buffer), regression_data[2])
    with open(saved["single"], "rb") as handle:
        assert isinstance(autodeuq.load(handle), GaussianMLPRegressor)


def test_loading_leaves_the_global_torch_rng_alone(saved):
    state = torch.get_rng_state()
    autodeuq.load(saved["auto"])
    assert torch.equal(state, torch.get_rng_state())


def test_saving_replaces_an_existing_file_whole(fitted, saved, tmp_path):
    path = tmp_path / "model.autodeuq"
    path.write_bytes(b"old")
    fitted["single"].save(str(path))
    assert path.read_bytes() == saved["single"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.autodeuq"]  # no temp file


def test_the_file_is_a_zip_of_strict_json_and_npy_arrays(saved):
    with zipfile.ZipFile(saved["auto"]) as archive:
        names = archive.namelist()
        text = archive.read("model.json").decode()
    assert names[0] == "model.json"
    assert all(name.startswith("arrays/") and name.endswith(".npy") for name in names[1:])

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(text, parse_constant=refuse)
    assert document["format"] == FORMAT_NAME
    assert document["format_version"] == f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    assert document["autodeuq_version"] == autodeuq.__version__
    assert document["estimator"]["class"] == "AutoDEUQRegressor"
    assert document["estimator"]["params"]["search_space"]["units_1"] == {
        "__dimension__": {"type": "int", "low": 4, "high": 16, "log": False}}


def test_every_kind_of_network_and_parameter_round_trips(regression_data, tmp_path):
    X, y, X_test, _ = regression_data
    # Skip projections, dropout, no validation part (validation_nll_ is None), and an
    # ensemble given as a config dict and an estimator with unequal weights as an array.
    net = GaussianMLPRegressor(hidden_layer_sizes=(6, 5, 4), activation=["tanh", "relu", "gelu"],
                               dropout=(0.1, 0.0, 0.2), skip_connections="all",
                               validation_fraction=0.0, max_epochs=3, random_state=1)
    members = [net.get_config(), GaussianMLPRegressor(**TINY)]
    for est in (net, DeepEnsembleRegressor(members=members, weights=np.array([1.0, 3.0]),
                                           random_state=0)):
        est.fit(X, y)
        est.save(tmp_path / "m.autodeuq")
        loaded = autodeuq.load(tmp_path / "m.autodeuq")
        assert_same_predictions(est, loaded, X_test)
        assert_same_value(est.get_params(deep=False), loaded.get_params(deep=False))
    assert net.validation_nll_ is None


# -- parameters JSON cannot hold -------------------------------------------------------------


def test_parameters_json_cannot_hold_are_saved_as_null_with_a_note(saved, tmp_path):
    est = autodeuq.load(saved["auto"]).set_params(
        selection=TopKSelector(k=2), scheduler=object(),
        search_space=SearchSpace.coerce(SPACE))
    est.save(tmp_path / "m.autodeuq")
    node = read_document(tmp_path / "m.autodeuq")["estimator"]
    assert node["params"]["selection"] is None
    assert node["params"]["scheduler"] is None
    assert "TopKSelector" in node["params_not_saved"]["selection"]
    assert "'greedy'" in node["params_not_saved"]["selection"]  # what it loads as
    loaded = autodeuq.load(tmp_path / "m.autodeuq")
    assert loaded.selection == "greedy"
    assert loaded.scheduler is None
    assert loaded.search_space == SearchSpace.coerce(SPACE)  # a space round-trips

    def constraint(config):
        return True

    constrained = SearchSpace.coerce(SPACE)
    constrained = SearchSpace(dict(constrained.dimensions), dict(constrained.conditions),
                              [constraint])
    est.set_params(search_space=constrained).save(tmp_path / "c.autodeuq")
    assert "constraints are code" in read_document(tmp_path / "c.autodeuq")[
        "estimator"]["params_not_saved"]["search_space"]
    assert autodeuq.load(tmp_path / "c.autodeuq").search_space is None


def test_a_random_state_object_is_not_saved(regression_data, tmp_path):
    X, y, X_test, _ = regression_data
    est = GaussianMLPRegressor(**{**TINY, "random_state": np.random.RandomState(0)}).fit(X, y)
    est.save(tmp_path / "m.autodeuq")
    loaded = autodeuq.load(tmp_path / "m.autodeuq")
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict(X_test), est.predict(X_test))


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GaussianMLPRegressor, DeepEnsembleRegressor, NASRegressor,
                                 AutoDEUQRegressor])
def test_saving_an_unfitted_estimator_raises_not_fitted(cls, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().save(tmp_path / "m.autodeuq")
    assert not (tmp_path / "m.autodeuq").exists()


def test_only_autodeuq_estimators_are_saved(tmp_path):
    class Custom(GaussianMLPRegressor):
        pass

    with pytest.raises(TypeError, match="pickle or joblib"):
        autodeuq.persistence.save(Custom(), tmp_path / "m.autodeuq")
    with pytest.raises(TypeError, match="pickle or joblib"):
        autodeuq.persistence.save(StandardScaler().fit([[0.0]]), tmp_path / "m.autodeuq")


def read_document(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("model.json"))


def rewrite(source, target, document=None, drop=(), replace=None):
    """A copy of a saved model with model.json or members changed."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if document is not None:
        members["model.json"] = json.dumps(document).encode()
    members.update(replace or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, data)
    return target


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_a_file_from_a_newer_major_version_is_refused_with_the_fix(saved, tmp_path):
    document = read_document(saved["single"])
    document["format_version"] = f"{FORMAT_VERSION[0] + 1}.0"
    document["autodeuq_version"] = "9.0.0"
    path = rewrite(saved["single"], tmp_path / "future.autodeuq", document)
    with pytest.raises(PersistenceError) as info:
        autodeuq.load(path)
    message = str(info.value)
    assert "future.autodeuq" in message
    assert f"format {FORMAT_VERSION[0] + 1}.0" in message  # the version found
    assert f"{FORMAT_VERSION[0]}.x" in message  # the version supported
    assert "autodeuq 9.0.0" in message
    assert "Upgrade autodeuq" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AutoDEUQError)


def test_a_newer_minor_version_with_extra_fields_loads(saved, tmp_path, regression_data):
    document = read_document(saved["ensemble"])
    document["format_version"] = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1] + 7}"
    document["something_new"] = {"added": "in a minor version"}
    document["estimator"]["fitted"]["new_attribute_"] = 1
    path = rewrite(saved["ensemble"], tmp_path / "minor.autodeuq", document)
    loaded = autodeuq.load(path)
    assert_same_predictions(autodeuq.load(saved["ensemble"]), loaded, regression_data[2])


def test_a_network_saved_before_it_had_a_recalibration_factor_loads_with_none(
        saved, tmp_path, regression_data):
    document = read_document(saved["single"])
    del document["estimator"]["fitted"]["std_scale_"]  # as format 1.0 files written before it
    loaded = autodeuq.load(rewrite(saved["single"], tmp_path / "old.autodeuq", document))
    assert loaded.std_scale_ == 1.0
    assert_same_predictions(autodeuq.load(saved["single"]), loaded, regression_data[2])


def test_a_recalibrated_network_predicts_identically_after_loading(fitted, tmp_path,
                                                                   regression_data):
    est = pickle.loads(pickle.dumps(fitted["single"]))
    est.std_scale_ = 1.7  # as NASRegressor sets it on the network it keeps
    est.save(tmp_path / "scaled.autodeuq")
    loaded = autodeuq.load(tmp_path / "scaled.autodeuq")
    assert loaded.std_scale_ == 1.7
    assert_same_predictions(est, loaded, regression_data[2])


def test_calibrated_intervals_round_trip_and_older_files_load_uncalibrated(
        fitted, saved, tmp_path, regression_data):
    X_test, y_test = regression_data[2], regression_data[3]
    # A search's calibration lives in its pipeline's last step.
    loaded = autodeuq.load(saved["auto"])
    np.testing.assert_array_equal(loaded.pipeline_[-1].interval_pits_,
                                  fitted["auto"].pipeline_[-1].interval_pits_)
    est = pickle.loads(pickle.dumps(fitted["ensemble"])).calibrate_intervals(X_test, y_test)
    est.save(tmp_path / "calibrated.autodeuq")
    again = autodeuq.load(tmp_path / "calibrated.autodeuq")
    np.testing.assert_array_equal(again.interval_pits_, est.interval_pits_)
    assert_same_predictions(est, again, X_test)
    # Written before intervals were calibrated (format 1.0): no field, so not calibrated.
    document = read_document(tmp_path / "calibrated.autodeuq")
    del document["estimator"]["fitted"]["interval_pits_"]
    old = autodeuq.load(rewrite(tmp_path / "calibrated.autodeuq", tmp_path / "old.autodeuq",
                                document))
    assert old.interval_pits_ is None
    assert_same_predictions(fitted["ensemble"], old, X_test)
    # Values a calibration cannot have (unsorted) are refused.
    broken = rewrite(tmp_path / "calibrated.autodeuq", tmp_path / "bad.autodeuq",
                     replace={"arrays/estimator/interval_pits_.npy":
                              npy(est.interval_pits_[::-1].copy())})
    with pytest.raises(PersistenceError, match="interval_pits_ must be at least 2 sorted values"):
        autodeuq.load(broken)


def _edit(document, kind):
    """Damage a GaussianMLPRegressor's model.json in one way."""
    fitted = document["estimator"]["fitted"]
    if kind == "missing attribute":
        del fitted["y_scale_"]
    elif kind == "wrong type":
        fitted["y_scale_"] = "large"
    elif kind == "negative scale":
        fitted["y_scale_"] = -1.0
    elif kind == "bad config":
        fitted["config_"]["layers"][0]["units"] = 0
    elif kind == "config disagrees with weights":
        fitted["config_"]["layers"][0]["units"] = 9
    elif kind == "declared shape":
        fitted["module_"]["state_dict"]["head.bias"]["shape"] = [3]
    elif kind == "unknown tag":
        fitted["history_"] = [{"__pickle__": "gASV"}]
    elif kind == "overflowing numpy scalar":
        fitted["y_scale_"] = {"__numpy__": "int8", "value": 300}
    elif kind == "not our format":
        document["format"] = "something.else"
    elif kind == "bad version":
        document["format_version"] = "one"
    return document


@pytest.mark.parametrize("kind", ["missing attribute", "wrong type", "negative scale",
                                  "bad config", "config disagrees with weights",
                                  "declared shape", "unknown tag", "overflowing numpy scalar",
                                  "not our format",
                                  "bad version"])
def test_a_damaged_model_json_is_refused_clearly(saved, tmp_path, kind):
    path = rewrite(saved["single"], tmp_path / "bad.autodeuq",
                   _edit(read_document(saved["single"]), kind))
    with pytest.raises(PersistenceError, match=r"cannot load '.*bad\.autodeuq'") as info:
        autodeuq.load(path)
    assert "save the model again" in str(info.value) or "format" in str(info.value)


HEAD_BIAS = "arrays/estimator/module_/head.bias.npy"


@pytest.mark.parametrize(("change", "match"), [
    ({"drop": ("model.json",)}, "no model.json"),
    ({"replace": {"model.json": b"{not json"}}, "not valid JSON"),
    ({"replace": {"model.json": b"[1, 2]"}}, "not an autodeuq model"),
    ({"drop": (HEAD_BIAS,)}, "head.bias.npy' .* is missing"),
    ({"replace": {HEAD_BIAS: npy(np.zeros(3))}}, "head.bias"),
    ({"replace": {HEAD_BIAS: npy(np.zeros(2, dtype=np.float32))}}, "float32"),
    ({"replace": {HEAD_BIAS: npy(np.zeros(2))[:-3]}}, "does not hold 16 bytes"),
    ({"replace": {HEAD_BIAS: b"not an npy file"}}, "malformed .npy header"),
])
def test_a_damaged_archive_is_refused_clearly(saved, tmp_path, change, match):
    path = rewrite(saved["single"], tmp_path / "bad.autodeuq", **change)
    with pytest.raises(PersistenceError, match=match) as info:
        autodeuq.load(path)
    assert "bad.autodeuq" in str(info.value)


def test_a_truncated_or_flipped_file_is_refused(saved, tmp_path):
    data = saved["single"].read_bytes()
    (tmp_path / "short.autodeuq").write_bytes(data[: len(data) // 2])
    with pytest.raises(PersistenceError, match=r"short\.autodeuq"):
        autodeuq.load(tmp_path / "short.autodeuq")
    # One flipped byte in stored array data: the zip's CRC-32 catches it.
    with zipfile.ZipFile(saved["single"]) as archive:
        info = archive.getinfo(HEAD_BIAS)
    flipped = bytearray(data)
    flipped[info.header_offset + 30 + len(info.filename) + len(info.extra)
            + info.file_size - 1] ^= 0xFF
    (tmp_path / "flipped.autodeuq").write_bytes(bytes(flipped))
    with pytest.raises(PersistenceError, match=r"archive is damaged .*CRC"):
        autodeuq.load(tmp_path / "flipped.autodeuq")
    (tmp_path / "text.autodeuq").write_text("hello")
    with pytest.raises(PersistenceError, match="not an autodeuq model file"):
        autodeuq.load(tmp_path / "text.autodeuq")
    with pytest.raises(FileNotFoundError):
        autodeuq.load(tmp_path / "missing.autodeuq")


def test_a_pickle_is_not_loaded(fitted, tmp_path):
    joblib.dump(fitted["single"], tmp_path / "model.joblib")
    with pytest.raises(PersistenceError, match="it is a pickle"):
        autodeuq.load(tmp_path / "model.joblib")


# -- nothing in a file is executed ------------------------------------------------------------

EXECUTED = []


class Payload:
    """Unpickling this would call ``EXECUTED.append``: the test checks it never happens."""

    def __reduce__(self):
        return (EXECUTED.append, ("unpickled",))


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "LinearRegression",
                                  "StandardScaler", "Pipeline", "GaussianMLP"])
def test_only_a_fixed_list_of_classes_is_built(saved, tmp_path, name):
    document = read_document(saved["single"])
    document["estimator"]["class"] = name
    path = rewrite(saved["single"], tmp_path / "crafted.autodeuq", document)
    with pytest.raises(PersistenceError,
                       match=re.escape(f"class '{name}', which cannot be loaded")):
        autodeuq.load(path)


def test_nested_classes_are_checked_too(saved, tmp_path):
    document = read_document(saved["auto"])
    steps = document["estimator"]["fitted"]["pipeline_"]["fitted"]["steps"]
    steps[0]["estimator"]["class"] = "GaussianMLPRegressor"  # the scaler's place
    with pytest.raises(PersistenceError, match="only StandardScaler can"):
        autodeuq.load(rewrite(saved["auto"], tmp_path / "a.autodeuq", document))
    document = read_document(saved["auto"])
    members = (document["estimator"]["fitted"]["pipeline_"]["fitted"]["steps"][1]
               ["estimator"]["params"]["members"])
    members[0]["__estimator__"]["class"] = "subprocess.Popen"
    with pytest.raises(PersistenceError, match=r"'subprocess\.Popen', which cannot be loaded"):
        autodeuq.load(rewrite(saved["auto"], tmp_path / "b.autodeuq", document))


def test_a_pickled_array_is_never_unpickled(saved, tmp_path):
    payload = npy(np.array([Payload(), Payload()], dtype=object), allow_pickle=True)
    path = rewrite(saved["single"], tmp_path / "crafted.autodeuq", replace={HEAD_BIAS: payload})
    with pytest.raises(PersistenceError, match="not a plain number type"):
        autodeuq.load(path)
    assert EXECUTED == []
