"""Save fitted estimators to a file, and load them back without running code from the file.

A saved model is one zip archive (any name; ``.autodeuq`` by convention) holding:

``model.json``
    The format name and version, the versions of autodeuq and of the libraries that wrote it,
    and the estimator as a tree of nodes: the class name (one of a fixed registry), the
    parameters (``get_params``) and the fitted attributes, as JSON.
``arrays/<name>.npy``
    Every fitted array (network weights, input scaling, mixture weights), in numpy's ``.npy``
    format, referenced from ``model.json`` by name with its dtype and shape.

Loading reads JSON and numeric ``.npy`` arrays only: no pickle, no ``torch.load``, no
``eval``, no import of a name found in the file. Only the classes of ``_REGISTRY`` can be
built, from values that are checked (types, shapes, consistency) before they are used, so a
crafted file can fail to load but cannot run code. Networks are rebuilt from their saved
configuration with :class:`autodeuq.nn.GaussianMLP` and get the saved weights, so a loaded
estimator predicts exactly what the saved one did, on any machine, without a cluster.

Version policy: a file records ``format_version`` ``"MAJOR.MINOR"``. A reader loads every file
of its major version: a minor version only adds fields that older readers may ignore (nothing
that changes predictions). A change that older readers would get wrong is a new major version;
they refuse it with an error that says to upgrade autodeuq. Files of older major versions stay
readable.

Why npy and not safetensors: ``.npy`` is numpy's own format (no new dependency), it holds
float64 exactly, and reading it here goes through the header parser of ``numpy.lib.format``
and ``numpy.frombuffer`` with the dtype checked to be a plain number type, so it never
unpickles. Why one zip and not a directory: one file to copy, upload or version, written to a
temporary name and renamed, so a crash while saving never leaves half a model; each member
carries a CRC-32, so a damaged file is detected; ``unzip -p model.autodeuq model.json`` shows
what is inside.
"""

import inspect
import io
import json
import math
import os
import platform
import re
import secrets
import warnings
import zipfile
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from . import __version__
from .estimators import (
    AutoDEUQRegressor,
    DeepEnsembleRegressor,
    GaussianMLPRegressor,
    NASRegressor,
)
from .estimators._base import check_fitted
from .exceptions import ConfigError, PersistenceError
from .nn import GaussianMLP, normalize_config
from .space import Dimension, SearchSpace

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]

#: The ``format`` field of every model.json written by :func:`save`.
FORMAT_NAME = "autodeuq.model"
#: ``(major, minor)`` of the format :func:`save` writes; :func:`load` reads every minor
#: version of this major version.
FORMAT_VERSION = (1, 1)

_MODEL_JSON = "model.json"
_ARRAYS = "arrays/"
_NUMERIC_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                             "uint32", "uint64", "float16", "float32", "float64"})
_FIX_DAMAGED = ("The file is damaged or was not written by autodeuq's save(); save the model "
                "again from the fitted estimator.")


class _Broken(Exception):
    """Raised while reading: what is wrong with the file (becomes a PersistenceError)."""


class _NotSaved(Exception):
    """Raised while writing: a value that JSON cannot hold (a parameter is then saved as
    null, with this reason as a note)."""


# -- values: JSON with a few tags ----------------------------------------------------------
#
# Plain JSON holds None, bool, int, float, str, list and dict with str keys. Values that JSON
# would change are tagged, so that parameters round-trip exactly: {"__tuple__": [...]},
# {"__float__": "nan" | "inf" | "-inf"} (so the file stays strict JSON), {"__numpy__": dtype,
# "value": v} (numpy scalars), {"__ndarray__": dtype, "shape": [...], "values": [...]} (small
# numeric arrays in parameters), {"__path__": str}, {"__dimension__": Dimension.to_dict()},
# {"__search_space__": SearchSpace.to_dict()} and {"__estimator__": node} (an unfitted
# estimator of the registry, e.g. a DeepEnsembleRegressor's members).


def _is_tag(key):
    return len(key) > 4 and key.startswith("__") and key.endswith("__")


def _type_name(value):
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode(value):
    """A JSON-able form of ``value``; raises _NotSaved for what JSON cannot hold."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        if value.dtype.name not in _NUMERIC_DTYPES:
            raise _NotSaved(f"a numpy {value.dtype} scalar is not JSON")
        return {"__numpy__": value.dtype.name, "value": _encode(value.item())}
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not _is_tag(k) for k in value):
            raise _NotSaved("a dict whose keys are not all plain strings is not JSON")
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _NUMERIC_DTYPES:
            raise _NotSaved(f"a numpy array of dtype {value.dtype} is not JSON")
        return {"__ndarray__": value.dtype.name, "shape": list(value.shape),
                "values": _encode(value.ravel().tolist())}
    if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
        return {"__path__": os.fspath(value)}
    if isinstance(value, Dimension):
        return {"__dimension__": _encode(value.to_dict())}
    if isinstance(value, SearchSpace):
        if value.constraints:
            raise _NotSaved("a SearchSpace with constraints is not saved: constraints are "
                            "code")
        return {"__search_space__": _encode(value.to_dict())}
    if type(value) in _CLASS_NAMES and _CLASS_NAMES[type(value)] in _ESTIMATORS:
        return {"__estimator__": _params_node(value)}
    raise _NotSaved(f"a {_type_name(value)} is not JSON")


def _decode(value, where):
    """The value :func:`_encode` encoded (only the tags above are understood)."""
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    tags = [k for k in value if _is_tag(k)]
    if not tags:
        return {k: _decode(v, f"{where}.{k}") for k, v in value.items()}
    tag, payload = tags[0], value[tags[0]]
    extra = {"__numpy__": {"value"}, "__ndarray__": {"shape", "values"}}.get(tag, set())
    if len(tags) != 1 or set(value) != {tag} | extra:
        raise _Broken(f"{where} is a malformed tagged value {sorted(value)}")
    if tag == "__tuple__" and isinstance(payload, list):
        return tuple(_decode(payload, where))
    if tag == "__float__" and payload in ("nan", "inf", "-inf"):
        return float(payload)
    if tag == "__numpy__" and payload in _NUMERIC_DTYPES:
        item = _decode(value["value"], where)
        try:
            if not isinstance(item, (bool, int, float)):
                raise TypeError(f"got {item!r}")
            return np.dtype(payload).type(item)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Broken(f"{where} is not a {payload} number ({exc})") from None
    if tag == "__ndarray__" and payload in _NUMERIC_DTYPES:
        shape, values = value["shape"], _decode(value["values"], where)
        if (not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape)
                or not isinstance(values, list) or len(values) != math.prod(shape)
                or not all(isinstance(v, (bool, int, float)) for v in values)):
            raise _Broken(f"{where} is a malformed array")
        try:
            return np.asarray(values, dtype=payload).reshape(shape)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Broken(f"{where} does not hold {payload} values ({exc})") from None
    if tag == "__path__" and isinstance(payload, str):
        return Path(payload)
    try:
        if tag == "__dimension__":
            return Dimension.from_dict(_decode(payload, where))
        if tag == "__search_space__":
            return SearchSpace.from_dict(_decode(payload, where))
    except (ConfigError, TypeError, ValueError) as exc:
        raise _Broken(f"{where} is not a valid {tag.strip('_').replace('_', ' ')}: "
                      f"{str(exc).rstrip('.')}") from None
    if tag == "__estimator__":
        return _construct(payload, where, _ESTIMATORS)
    raise _Broken(f"{where} holds an unknown or malformed tag {tag!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- nodes: class, parameters, fitted attributes ---------------------------------------------


def _params_node(est):
    """``{"class", "params"[, "params_not_saved"]}`` of an estimator of the registry."""
    params, notes = {}, {}
    defaults = inspect.signature(type(est)).parameters
    for name, value in est.get_params(deep=False).items():
        try:
            params[name] = _encode(value)
        except _NotSaved as exc:
            params[name] = None
            notes[name] = (f"not saved: {exc}; it loads as the default, "
                           f"{defaults[name].default!r}. Set it with set_params before "
                           "fitting the loaded estimator again.")
    node = {"class": _CLASS_NAMES[type(est)], "params": params}
    if notes:
        node["params_not_saved"] = notes
    return node


def _class_name(node, where, allowed):
    """The class a node asks for, if it is one ``allowed`` there (a fixed list: nothing named
    in a file is ever imported)."""
    if not isinstance(node, dict):
        raise _Broken(f"{where} is not an estimator node")
    name = node.get("class")
    if name not in allowed:
        raise _Broken(f"{where} asks for class {name!r}, which cannot be loaded there: only "
                      f"{', '.join(sorted(allowed))} can (classes come from a fixed list)")
    return name


def _construct(node, where, allowed=None):
    """An unfitted estimator from a node's class and parameters."""
    name = _class_name(node, where, _ESTIMATORS if allowed is None else allowed)
    cls = _REGISTRY[name][0]
    params = _field(node, "params", where, dict, default={})
    not_saved = _field(node, "params_not_saved", where, dict, default={})
    known = set(cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        warnings.warn(f"{where}: parameters {unknown} of {name} are unknown to this autodeuq "
                      f"({__version__}) and are ignored.", UserWarning, stacklevel=4)
    kwargs = {k: _decode(v, f"{where}.params.{k}") for k, v in params.items()
              if k in known and k not in not_saved}
    return cls(**kwargs)


def _write_node(est, w, key):
    cls = type(est)
    if cls not in _CLASS_NAMES:
        raise TypeError(f"cannot save a {_type_name(est)} inside an autodeuq model.")
    name = _CLASS_NAMES[cls]
    node = {"class": name} if cls is Pipeline else _params_node(est)
    node["fitted"] = _REGISTRY[name][1](est, w, key)
    return node


def _read_node(node, r, where, allowed):
    name = _class_name(node, where, allowed)
    fitted = _field(node, "fitted", where, dict)
    est = None if name == "Pipeline" else _construct(node, where, {name})
    return _REGISTRY[name][2](est, fitted, r, f"{where}.fitted")


def _field(mapping, key, where, types, default=inspect.Parameter.empty):
    """``mapping[key]``, checked to be of ``types`` (None passes when it is the default)."""
    if key not in mapping:
        if default is not inspect.Parameter.empty:
            return default
        raise _Broken(f"{where} is missing {key!r}")
    value = mapping[key]
    if value is None and default is None:
        return None
    if not any(_is_int(value) if t is int else _is_number(value) if t is float
               else isinstance(value, t)
               for t in (types if isinstance(types, tuple) else (types,))):
        wanted = " or ".join(_JSON_TYPES[t] for t in (types if isinstance(types, tuple)
                                                       else (types,)))
        raise _Broken(f"{where}.{key} must be {wanted}; got {json.dumps(value)[:80]}")
    return value


_JSON_TYPES = {int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "an object", object: "a value"}


def _positive_int(mapping, key, where):
    value = _field(mapping, key, where, int)
    if value < 1:
        raise _Broken(f"{where}.{key} must be >= 1; got {value}")
    return value


def _finite(mapping, key, where, positive=False):
    value = float(_field(mapping, key, where, float))
    if not math.isfinite(value) or (positive and value <= 0):
        raise _Broken(f"{where}.{key} must be a finite number{' > 0' if positive else ''}; "
                      f"got {value}")
    return value


def _write_features(est, fitted):
    fitted["n_features_in_"] = int(est.n_features_in_)
    if hasattr(est, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(name) for name in est.feature_names_in_]


def _read_features(est, fitted, where):
    n = _positive_int(fitted, "n_features_in_", where)
    est.n_features_in_ = n
    names = _field(fitted, "feature_names_in_", where, list, default=None)
    if names is not None:
        if len(names) != n or not all(isinstance(x, str) for x in names):
            raise _Broken(f"{where}.feature_names_in_ must be {n} strings")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    return n


def _read_json_attrs(est, fitted, names, where):
    for name in names:
        if name in fitted:
            setattr(est, name, _decode(fitted[name], f"{where}.{name}"))


# -- StandardScaler and Pipeline (the parts of a searching estimator's pipeline_) -----------

_SCALER_ARRAYS = ("mean_", "var_", "scale_")


def _write_scaler(scaler, w, key):
    fitted = {}
    _write_features(scaler, fitted)
    seen = scaler.n_samples_seen_
    fitted["n_samples_seen_"] = (w.array(f"{key}/n_samples_seen_", seen)
                                 if isinstance(seen, np.ndarray) else _encode(seen))
    for name in _SCALER_ARRAYS:
        value = getattr(scaler, name)
        fitted[name] = None if value is None else w.array(f"{key}/{name}", value)
    return fitted


def _read_scaler(scaler, fitted, r, where):
    n = _read_features(scaler, fitted, where)
    seen = fitted.get("n_samples_seen_")
    if isinstance(seen, dict) and "array" in seen:
        seen = r.array(seen, f"{where}.n_samples_seen_", shape=(n,), kinds="iuf")
    else:
        seen = _decode(seen, f"{where}.n_samples_seen_")
        if not _is_number(seen) and not isinstance(seen, np.number):
            raise _Broken(f"{where}.n_samples_seen_ must be a number")
    scaler.n_samples_seen_ = seen
    for name in _SCALER_ARRAYS:
        ref = _field(fitted, name, where, dict, default=None)
        setattr(scaler, name, None if ref is None else r.array(ref, f"{where}.{name}", (n,)))
    if (scaler.with_mean and scaler.mean_ is None) or (scaler.with_std and scaler.scale_ is None):
        raise _Broken(f"{where} is missing its mean_ or scale_")
    return scaler


def _write_pipeline(pipeline, w, key):
    return {"steps": [{"name": name, "estimator": _write_node(step, w, f"{key}/{name}")}
                      for name, step in pipeline.steps]}


def _read_pipeline(_, fitted, r, where):
    steps = _field(fitted, "steps", where, list)
    if not steps:
        raise _Broken(f"{where}.steps is empty")
    built = []
    for i, step in enumerate(steps):
        here = f"{where}.steps[{i}]"
        if not isinstance(step, dict):
            raise _Broken(f"{here} is not a step")
        name = _field(step, "name", here, str)
        allowed = ({"DeepEnsembleRegressor", "GaussianMLPRegressor"} if i == len(steps) - 1
                   else {"StandardScaler"})
        built.append((name, _read_node(_field(step, "estimator", here, dict), r,
                                       f"{here}.estimator", allowed)))
    if len({name for name, _ in built}) != len(built):
        raise _Broken(f"{where}.steps have repeated names")
    if len({est.n_features_in_ for _, est in built}) != 1:
        raise _Broken(f"{where}: the steps disagree on the number of features")
    return Pipeline(built)


# -- the estimators --------------------------------------------------------------------------


def _write_gaussian(est, w, key):
    fitted = {}
    _write_features(est, fitted)
    module = est.module_
    fitted.update({
        "config_": _encode(est.config_),
        "x_scaler_": _write_node(est.x_scaler_, w, f"{key}/x_scaler_"),
        "y_mean_": _encode(est.y_mean_),
        "y_scale_": _encode(est.y_scale_),
        "module_": {
            "class": "GaussianMLP",
            "n_features": int(est.n_features_in_),
            "var_floor": float(module.var_floor),
            "state_dict": {name: w.array(f"{key}/module_/{name}", tensor.detach().cpu().numpy())
                           for name, tensor in module.state_dict().items()},
        },
        "n_epochs_": _encode(est.n_epochs_),
        "best_epoch_": _encode(est.best_epoch_),
        "validation_nll_": _encode(est.validation_nll_),
        "std_scale_": _encode(getattr(est, "std_scale_", 1.0)),
        "interval_pits_": _write_pits(est, w, key),
        "history_": _encode(est.history_),
    })
    return fitted


def _write_pits(est, w, key):
    """The interval calibration's held-out CDF values (null when there is none)."""
    pits = getattr(est, "interval_pits_", None)  # absent on estimators pickled before
    return None if pits is None else w.array(f"{key}/interval_pits_",
                                             np.asarray(pits, dtype=np.float64))


def _read_pits(fitted, r, where):
    """``interval_pits_``: None when not calibrated (and in files written before 1.1)."""
    ref = fitted.get("interval_pits_")
    if ref is None:
        return None
    pits = r.array(ref, f"{where}.interval_pits_")
    if (pits.ndim != 1 or pits.size < 2 or not np.all((pits >= 0) & (pits <= 1))
            or np.any(np.diff(pits) < 0)):
        raise _Broken(f"{where}.interval_pits_ must be at least 2 sorted values in [0, 1]")
    return pits


def _read_gaussian(est, fitted, r, where):
    n = _read_features(est, fitted, where)
    try:
        config = normalize_config(_decode(_field(fitted, "config_", where, dict),
                                          f"{where}.config_"))
    except (ConfigError, TypeError, ValueError) as exc:
        raise _Broken(f"{where}.config_ is not a valid network configuration: "
                      f"{str(exc).rstrip('.')}") from None
    est.config_ = config
    scaler = _read_node(_field(fitted, "x_scaler_", where, dict), r, f"{where}.x_scaler_",
                        {"StandardScaler"})
    if scaler.n_features_in_ != n:
        raise _Broken(f"{where}.x_scaler_ has {scaler.n_features_in_} features, not {n}")
    est.x_scaler_ = scaler
    est.y_mean_ = _decode_number(fitted, "y_mean_", where)
    est.y_scale_ = _decode_number(fitted, "y_scale_", where, positive=True)
    for name in ("n_epochs_", "best_epoch_"):
        value = _decode(_field(fitted, name, where, object), f"{where}.{name}")
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise _Broken(f"{where}.{name} must be an int >= 0")
        setattr(est, name, value)
    nll = _decode(fitted.get("validation_nll_"), f"{where}.validation_nll_")
    if nll is not None and not isinstance(nll, (int, float)):
        raise _Broken(f"{where}.validation_nll_ must be a number or null")
    est.validation_nll_ = nll
    # Files written before networks carried a recalibration factor have none: 1.
    est.std_scale_ = (_decode_number(fitted, "std_scale_", where, positive=True)
                      if "std_scale_" in fitted else 1.0)
    est.interval_pits_ = _read_pits(fitted, r, where)
    est.history_ = _decode(_field(fitted, "history_", where, list), f"{where}.history_")

    saved = _field(fitted, "module_", where, dict)
    here = f"{where}.module_"
    if saved.get("class") != "GaussianMLP" or _field(saved, "n_features", here, int) != n:
        raise _Broken(f"{here} must be a GaussianMLP of {n} features")
    var_floor = _finite(saved, "var_floor", here, positive=True)
    refs = _field(saved, "state_dict", here, dict)
    expected = {name: tuple(t.shape) for name, t in
                GaussianMLP.empty(n, config["layers"], var_floor=var_floor).state_dict().items()}
    if set(refs) != set(expected):
        missing, unexpected = sorted(set(expected) - set(refs)), sorted(set(refs) - set(expected))
        raise _Broken(f"{here}.state_dict does not match the network of config_ (missing "
                      f"{missing}, unexpected {unexpected})")
    state = {name: torch.from_numpy(r.array(refs[name], f"{here}.state_dict.{name}",
                                            expected[name]))
             for name in expected}
    est.module_ = GaussianMLP.from_state_dict(n, config["layers"], state,
                                              var_floor=var_floor).double().eval()
    return est


def _decode_number(fitted, key, where, positive=False):
    """A finite number (an int, a float or a numpy scalar, as it was saved)."""
    value = _decode(_field(fitted, key, where, object), f"{where}.{key}")
    if (not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool)
            or not math.isfinite(value) or (positive and value <= 0)):
        raise _Broken(f"{where}.{key} must be a finite number{' > 0' if positive else ''}; "
                      f"got {value!r}")
    return value


def _write_ensemble(est, w, key):
    fitted = {}
    _write_features(est, fitted)
    fitted["weights_"] = w.array(f"{key}/weights_", est.weights_)
    fitted["std_scale_"] = _encode(getattr(est, "std_scale_", 1.0))
    fitted["interval_pits_"] = _write_pits(est, w, key)
    fitted["estimators_"] = [_write_node(member, w, f"{key}/estimators_/{i}")
                             for i, member in enumerate(est.estimators_)]
    return fitted


def _read_ensemble(est, fitted, r, where):
    n = _read_features(est, fitted, where)
    saved = _field(fitted, "estimators_", where, list)
    if not saved:
        raise _Broken(f"{where}.estimators_ is empty")
    members = [_read_node(m, r, f"{where}.estimators_[{i}]", {"GaussianMLPRegressor"})
               for i, m in enumerate(saved)]
    if any(m.n_features_in_ != n for m in members):
        raise _Broken(f"{where}: a member's number of features is not {n}")
    weights = r.array(_field(fitted, "weights_", where, dict), f"{where}.weights_",
                      (len(members),))
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise _Broken(f"{where}.weights_ must be finite, >= 0 and not all 0")
    est.estimators_ = members
    est.weights_ = weights
    est.std_scale_ = _decode_number(fitted, "std_scale_", where, positive=True)
    est.interval_pits_ = _read_pits(fitted, r, where)
    return est


_SEARCH_ATTRS = {
    "NASRegressor": ("best_params_", "best_config_", "best_score_", "std_scale_",
                     "search_time_", "refit_time_"),
    "AutoDEUQRegressor": ("members_", "validation_nll_", "std_scale_", "n_candidates_",
                          "search_time_", "refit_time_"),
}


def _write_search(est, w, key):
    fitted = {}
    _write_features(est, fitted)
    fitted["pipeline_"] = _write_node(est.pipeline_, w, f"{key}/pipeline_")
    for name in _SEARCH_ATTRS[_CLASS_NAMES[type(est)]]:
        if hasattr(est, name):
            try:
                fitted[name] = _encode(getattr(est, name))
            except _NotSaved as exc:
                raise TypeError(f"cannot save {type(est).__name__}.{name}: {exc}.") from None
    if hasattr(est, "search_results_"):
        fitted["search_results_"] = _write_table(est.search_results_)
    return fitted


def _read_search(est, fitted, r, where):
    n = _read_features(est, fitted, where)
    pipeline = _read_node(_field(fitted, "pipeline_", where, dict), r, f"{where}.pipeline_",
                          {"Pipeline"})
    if pipeline[-1].n_features_in_ != n:
        raise _Broken(f"{where}.pipeline_ has {pipeline[-1].n_features_in_} features, not {n}")
    est.pipeline_ = pipeline
    _read_json_attrs(est, fitted, _SEARCH_ATTRS[_CLASS_NAMES[type(est)]], where)
    if "search_results_" in fitted:
        est.search_results_ = _read_table(fitted["search_results_"], f"{where}.search_results_")
    return est


# -- search_results_: a DataFrame as columns of JSON values ----------------------------------


def _write_table(frame):
    import pandas as pd

    columns = []
    for name in frame.columns:
        if not isinstance(name, str):
            raise TypeError(f"cannot save search_results_: column {name!r} is not named by a "
                            "string.")
        column = frame[name]
        dtype = column.dtype
        numeric = isinstance(dtype, np.dtype) and dtype.name in _NUMERIC_DTYPES
        try:
            values = [None if numeric and dtype.kind == "f" and math.isnan(v) else _encode(v)
                      for v in column.tolist()]
        except _NotSaved as exc:
            raise TypeError(f"cannot save search_results_: column {name!r} holds a value that "
                            f"is not JSON ({exc}).") from None
        columns.append({"name": name, "dtype": str(dtype), "values": values})
    table = {"columns": columns}
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        table["index"] = _encode(frame.index.tolist())
    return table


def _read_table(table, where):
    import pandas as pd

    if not isinstance(table, dict):
        raise _Broken(f"{where} is not a table")
    columns = _field(table, "columns", where, list)
    data, length = {}, None
    for i, column in enumerate(columns):
        here = f"{where}.columns[{i}]"
        if not isinstance(column, dict):
            raise _Broken(f"{here} is not a column")
        name, dtype = _field(column, "name", here, str), _field(column, "dtype", here, str)
        values = _decode(_field(column, "values", here, list), f"{here}.values")
        if length is not None and len(values) != length:
            raise _Broken(f"{here} has {len(values)} values, not {length}")
        length = len(values)
        try:
            if dtype in _NUMERIC_DTYPES:
                if np.dtype(dtype).kind == "f":
                    values = [np.nan if v is None else v for v in values]
                data[name] = pd.Series(values, dtype=dtype)
            elif dtype == "object":
                data[name] = pd.Series(values, dtype=object)
            else:  # text: as pandas infers it from the same values when fitting
                data[name] = pd.Series(values)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Broken(f"{here} ({name!r}) does not hold {dtype} values: {exc}") from None
    frame = pd.DataFrame(data)
    if "index" in table:
        index = _decode(table["index"], f"{where}.index")
        if not isinstance(index, list) or len(index) != len(frame):
            raise _Broken(f"{where}.index must hold one label per row")
        frame.index = index
    return frame


# -- the registry: the only classes a file can build -----------------------------------------

_REGISTRY = {
    "GaussianMLPRegressor": (GaussianMLPRegressor, _write_gaussian, _read_gaussian),
    "DeepEnsembleRegressor": (DeepEnsembleRegressor, _write_ensemble, _read_ensemble),
    "NASRegressor": (NASRegressor, _write_search, _read_search),
    "AutoDEUQRegressor": (AutoDEUQRegressor, _write_search, _read_search),
    "StandardScaler": (StandardScaler, _write_scaler, _read_scaler),
    "Pipeline": (Pipeline, _write_pipeline, _read_pipeline),
}
_CLASS_NAMES = {cls: name for name, (cls, _, _) in _REGISTRY.items()}
#: The estimators save() accepts and load() returns, with the attribute fit sets.
_ESTIMATORS = {"GaussianMLPRegressor": "module_", "DeepEnsembleRegressor": "estimators_",
               "NASRegressor": "pipeline_", "AutoDEUQRegressor": "pipeline_"}


# -- arrays ----------------------------------------------------------------------------------


class _Writer:
    """Collects the arrays of a model; each gets a unique name."""

    def __init__(self):
        self.arrays = {}

    def array(self, key, value):
        value = np.asarray(value)
        if value.dtype.name not in _NUMERIC_DTYPES:
            raise TypeError(f"cannot save array {key!r} of dtype {value.dtype}.")
        value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        self.arrays[key] = value
        return {"array": key, "dtype": value.dtype.name, "shape": list(value.shape)}


class _Reader:
    """Reads the arrays a model.json references, checking each before reading its data."""

    def __init__(self, archive):
        self.archive = archive
        self.names = set(archive.namelist())

    def array(self, ref, where, shape=None, kinds="f"):
        if not isinstance(ref, dict) or not isinstance(ref.get("array"), str):
            raise _Broken(f"{where} is not an array reference")
        member = f"{_ARRAYS}{ref['array']}.npy"
        declared = ref.get("shape")
        if (not isinstance(declared, list) or not all(_is_int(s) and s >= 0 for s in declared)
                or ref.get("dtype") not in _NUMERIC_DTYPES):
            raise _Broken(f"{where} has a malformed shape or dtype")
        if shape is not None and tuple(declared) != tuple(shape):
            raise _Broken(f"{where} has shape {tuple(declared)}; the model needs {tuple(shape)}")
        if member not in self.names:
            raise _Broken(f"array {member!r} ({where}) is missing")
        with self.archive.open(member) as handle:
            array = _read_npy(handle, member)
        if (array.dtype.kind not in kinds or array.dtype.name != ref["dtype"]
                or list(array.shape) != declared):
            raise _Broken(f"array {member!r} ({where}) holds {array.dtype} {array.shape}; "
                          f"model.json says {ref['dtype']} {tuple(declared)}")
        return array


def _read_npy(handle, member):
    """A numeric array from an ``.npy`` stream, never unpickling (header checked first)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise _Broken(f"array {member!r} has a malformed .npy header ({exc})") from None
    if dtype.name not in _NUMERIC_DTYPES or dtype.byteorder == ">":
        raise _Broken(f"array {member!r} has dtype {dtype}, not a plain number type")
    size = math.prod(shape) * dtype.itemsize
    data = handle.read(size)
    if len(data) != size or handle.read(1):
        raise _Broken(f"array {member!r} does not hold {size} bytes of data")
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape,
                                                                order="F" if fortran else "C")


# -- save and load ---------------------------------------------------------------------------


def save(estimator, path):
    """Save a fitted estimator to ``path`` in autodeuq's model format (no pickle).

    The file is a zip archive: ``model.json`` (format version, parameters, fitted attributes,
    network configurations) and one ``.npy`` per array. :func:`load` reads it back without
    running code from the file, and the loaded estimator predicts exactly what this one does.
    The file is written under a temporary name and renamed, so an existing ``path`` is
    replaced whole or not at all.

    Parameters that JSON cannot hold (a dask ``Client``, a custom ``Selector`` or ``Search``,
    a ``RandomState``, a search space with constraints) are saved as null, with a note in
    ``params_not_saved``, and load as their defaults: they matter only to fit again.

    Parameters
    ----------
    estimator : GaussianMLPRegressor, DeepEnsembleRegressor, NASRegressor or AutoDEUQRegressor
        Fitted.
    path : str, path-like, bytes or binary file object
        Where to write; ``.autodeuq`` is the usual suffix; ``~`` is the home directory.

    Raises
    ------
    autodeuq.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If ``estimator`` is not one of the classes above (a subclass neither: pickle it), or
        ``path`` is neither a path nor a binary file object (a text-mode one, say).
    FileNotFoundError, IsADirectoryError, OSError
        If ``path``'s directory does not exist, ``path`` is a directory, or writing fails;
        the message names ``path``, not the temporary file.
    """
    name = _CLASS_NAMES.get(type(estimator))
    if name not in _ESTIMATORS:
        raise TypeError(f"save() takes a GaussianMLPRegressor, DeepEnsembleRegressor, "
                        f"NASRegressor or AutoDEUQRegressor; got {_type_name(estimator)}. Use "
                        "pickle or joblib for other objects.")
    check_fitted(estimator, _ESTIMATORS[name])
    writer = _Writer()
    document = {
        "format": FORMAT_NAME,
        "format_version": f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}",
        "autodeuq_version": __version__,
        "written_with": {"python": platform.python_version(), "numpy": np.__version__,
                         "torch": torch.__version__, "scikit-learn": sklearn.__version__},
        "estimator": _write_node(estimator, writer, "estimator"),
    }
    text = json.dumps(document, indent=1, allow_nan=False, ensure_ascii=False)
    path = _check_path(path, "save", "write")
    if hasattr(path, "write"):
        _write_archive(path, text, writer.arrays)
        return
    where = repr(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {where}: it is a directory. Give a file "
                                f"name, e.g. {os.fspath(path / 'model.autodeuq')!r}.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {where}: the directory "
                                f"{os.fspath(path.parent)!r} does not exist. Create it first, "
                                "e.g. with Path(path).parent.mkdir(parents=True), or save "
                                "elsewhere.")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            _write_archive(handle, text, writer.arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # named by the user's path, not the temporary one
        raise type(exc)(f"cannot save to {where}: {exc.strerror or exc}. Save to a file in a "
                        "directory you can write to, with room for the model.") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _check_path(path, action, mode):
    """``path`` as a :class:`~pathlib.Path` (``~`` expanded, bytes decoded as the OS does), or
    the binary file object it is; a text-mode file object, or anything else, is refused."""
    method = "write" if mode == "write" else "read"
    if hasattr(path, method):
        if isinstance(path, io.TextIOBase) or "b" not in getattr(path, "mode", "b"):
            raise TypeError(f"{action}() needs a binary file object; got one opened in text "
                            f"mode ({getattr(path, 'mode', type(path).__name__)!r}). Open it "
                            f"with open(path, {'wb' if mode == 'write' else 'rb'!r}), or pass "
                            "the path itself.")
        return path
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{action}() takes a path (a str or path-like) or a binary file "
                        f"object to {method}; got {_type_name(path)}. Pass e.g. "
                        "'model.autodeuq'.")
    if os.fspath(path) == "":
        raise ValueError(f"{action}() needs a file name; got an empty path ''. Pass e.g. "
                         "'model.autodeuq'.")
    return Path(path).expanduser()


def _write_archive(handle, text, arrays):
    with zipfile.ZipFile(handle, "w") as archive:
        # A fixed date: the same model gives the same bytes.
        info = zipfile.ZipInfo(_MODEL_JSON, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, text.encode("utf-8"))
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{_ARRAYS}{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=array.nbytes > 2**30) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def load(path):
    """Load an estimator saved by ``save``, without running code from the file.

    Only JSON and numeric ``.npy`` arrays are read (no pickle, no ``torch.load``), and only
    autodeuq's estimator classes can be built; every value is checked before it is used.
    The loaded estimator is fitted and predicts exactly what the saved one did, with no
    cluster.

    Parameters
    ----------
    path : str, path-like, bytes or binary file object
        ``~`` is the home directory.

    Returns
    -------
    GaussianMLPRegressor, DeepEnsembleRegressor, NASRegressor or AutoDEUQRegressor

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        If ``path`` does not exist, or is a directory (the message names a model file in it).
    TypeError
        If ``path`` is neither a path nor a binary file object (a text-mode one, say).
    autodeuq.exceptions.PersistenceError
        A ``ValueError``, naming the file and what is wrong, if the file is not an autodeuq
        model (e.g. a pickle), is damaged, or was saved in a newer major format version than
        this autodeuq reads (then upgrade autodeuq).
    """
    path = _check_path(path, "load", "read")
    where = repr(os.fspath(path)) if not hasattr(path, "read") else repr(
        getattr(path, "name", "<file object>"))
    if not hasattr(path, "read") and path.is_dir():
        models = [*sorted(path.glob("*.autodeuq")), path / "model.autodeuq"]
        raise IsADirectoryError(f"cannot load {where}: it is a directory. Pass the model file "
                                f"in it, e.g. {os.fspath(models[0])!r}.")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PersistenceError(f"cannot load {where}: {_not_an_archive(path)}") from None
    with archive:
        try:
            if _MODEL_JSON not in archive.namelist():
                raise _Broken(f"the archive has no {_MODEL_JSON}")
            try:
                document = json.loads(archive.read(_MODEL_JSON).decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                raise _Broken(f"{_MODEL_JSON} is not valid JSON ({exc})") from None
            _check_format(document, where)
            return _read_node(_field(document, "estimator", _MODEL_JSON, dict),
                              _Reader(archive), "estimator", _ESTIMATORS)
        except _Broken as exc:
            raise PersistenceError(f"cannot load {where}: {exc}. {_FIX_DAMAGED}") from None
        except RecursionError:
            raise PersistenceError(f"cannot load {where}: {_MODEL_JSON} is nested too deeply. "
                                   f"{_FIX_DAMAGED}") from None
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
            raise PersistenceError(f"cannot load {where}: the archive is damaged ({exc}). "
                                   f"{_FIX_DAMAGED}") from None


def _check_format(document, where):
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        found = document.get("format") if isinstance(document, dict) else None
        raise _Broken(f"{_MODEL_JSON} is not an autodeuq model (format {found!r}, expected "
                      f"{FORMAT_NAME!r})")
    version = document.get("format_version")
    match = re.fullmatch(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
    if match is None:
        raise _Broken(f"{_MODEL_JSON} has a malformed format_version {version!r}")
    major = int(match.group(1))
    supported = f"{FORMAT_VERSION[0]}.x"
    if major > FORMAT_VERSION[0]:
        raise PersistenceError(
            f"cannot load {where}: it was saved in autodeuq model format {version} (by autodeuq "
            f"{document.get('autodeuq_version', 'unknown')}), and this autodeuq ({__version__}) "
            f"reads format {supported} only. Upgrade autodeuq (pip install --upgrade autodeuq) "
            "to load it.")
    if major < 1:
        raise _Broken(f"{_MODEL_JSON} has format_version {version}, which was never written")


def _not_an_archive(path):
    """Why a file that is not a zip archive cannot be loaded, and what to do."""
    try:
        if hasattr(path, "read"):
            path.seek(0)
            head = path.read(2)
        else:
            with open(path, "rb") as handle:
                head = handle.read(2)
    except OSError:
        head = b""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("it is a pickle (e.g. from joblib.dump), not an autodeuq model file. Pickles "
                "run code when loaded: use joblib.load only on files you trust.")
    return ("it is not an autodeuq model file (not a zip archive). Save models with "
            "estimator.save(path).")
