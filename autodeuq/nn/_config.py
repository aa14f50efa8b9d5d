"""Candidate configurations: the plain, JSON-able dicts that describe one Gaussian network.

A configuration joins the architecture and the training hyperparameters of one candidate::

    {
        "layers": [
            {"units": 64, "activation": "relu", "dropout": 0.0, "skip": []},
            {"units": 32, "activation": "tanh", "dropout": 0.1, "skip": [0]},
        ],
        "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32,
        "weight_decay": 0.0, "max_epochs": 1000, "patience": 50,
        "lr_schedule": None, "gradient_clip": None,
    }

Hidden layers are numbered from 1; output 0 is the input features. Layer ``k`` always reads the
output of layer ``k - 1``; its ``skip`` list names further earlier outputs ``j`` (``0 <= j <= k -
2``) that are projected linearly to its width and added to its pre-activation.

Configurations cross process boundaries (Dask workers, journals, saved models), so they hold
only str, int, float, bool, None, lists and dicts.
"""

import math
import numbers

from ..exceptions import ConfigError

__all__ = [
    "ACTIVATIONS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "TRAINING_DEFAULTS",
    "layers_from_params",
    "normalize_config",
]

ACTIVATIONS = (
    "relu", "leaky_relu", "tanh", "gelu", "silu", "elu", "selu", "softplus", "sigmoid",
    "mish", "identity",
)
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = (None, "cosine", "plateau")

#: Training hyperparameters a configuration may leave out, with the values used then.
TRAINING_DEFAULTS = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 32,
    "weight_decay": 0.0,
    "max_epochs": 1000,
    "patience": 50,
    "lr_schedule": None,
    "gradient_clip": None,
}

_LAYER_KEYS = ("units", "activation", "dropout", "skip")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(name, rule, value, fix):
    raise ConfigError(f"{name} must be {rule}; got {value!r}. {fix}")


def _config_name(k, key=None):
    name = f"config['layers'][{k - 1}]"
    return name if key is None else f"{name}[{key!r}]"


def _param_name(k, key=None):
    param = {"units": "hidden_layer_sizes", "skip": "skip_connections"}.get(key, key)
    return f"{param or 'hidden layer'} (hidden layer {k})"


def _check_layer(layer, k, name_of=_config_name):
    name = name_of(k)
    if not isinstance(layer, dict):
        _fail(name, "a dict with keys " + ", ".join(_LAYER_KEYS), layer,
              "Describe each hidden layer as {'units': 64, 'activation': 'relu'}.")
    unknown = sorted(set(layer) - set(_LAYER_KEYS))
    if unknown:
        _fail(f"{name} keys", "among " + ", ".join(_LAYER_KEYS), unknown,
              "Remove or rename the unknown keys.")
    units = layer.get("units")
    if not _is_int(units) or units < 1:
        _fail(name_of(k, "units"), "an int >= 1", units, "Give the width of the layer.")
    activation = layer.get("activation", "relu")
    if activation not in ACTIVATIONS:
        _fail(name_of(k, "activation"), "one of " + ", ".join(ACTIVATIONS), activation,
              "Pick a supported activation name.")
    dropout = layer.get("dropout", 0.0)
    if not _is_real(dropout) or not 0.0 <= dropout < 1.0:
        _fail(name_of(k, "dropout"), "a float in [0, 1)", dropout,
              "Use 0.0 for no dropout.")
    skip = layer.get("skip", [])
    if skip is None:
        skip = []
    if not isinstance(skip, (list, tuple)) or not all(_is_int(j) for j in skip):
        _fail(name_of(k, "skip"), "a list of ints", skip,
              "List the earlier outputs to add, e.g. [0] for the input features.")
    bad = [j for j in skip if not 0 <= j <= k - 2]
    if bad:
        _fail(name_of(k, "skip"), f"a list of earlier outputs in [0, {k - 2}] for layer {k} "
              "(0 is the input; layer k already reads output k - 1)", list(skip),
              "Remove the indices that are not strictly earlier outputs.")
    return {
        "units": int(units),
        "activation": str(activation),
        "dropout": float(dropout),
        "skip": sorted({int(j) for j in skip}),
    }


def normalize_config(config):
    """Validate a candidate configuration and return a complete copy.

    Parameters
    ----------
    config : dict
        Architecture (``"layers"``) and training hyperparameters; missing training keys take
        the values in :data:`TRAINING_DEFAULTS`.

    Returns
    -------
    dict
        A new dict with every key present, plain Python types, and sorted skip lists.

    Raises
    ------
    ConfigError
        If a key is unknown or a value breaks its rule; the message names the key, the rule,
        the value received and the fix.
    """
    if not isinstance(config, dict):
        _fail("config", "a dict", type(config).__name__,
              "Pass {'layers': [{'units': 64}], ...}.")
    unknown = sorted(set(config) - {"layers", *TRAINING_DEFAULTS})
    if unknown:
        _fail("config keys", "among 'layers', " + ", ".join(map(repr, TRAINING_DEFAULTS)),
              unknown, "Remove or rename the unknown keys.")
    layers = config.get("layers")
    if not isinstance(layers, (list, tuple)):
        _fail("config['layers']", "a list of layer dicts (it may be empty)", layers,
              "Pass e.g. [{'units': 64, 'activation': 'relu'}].")
    out = {"layers": [_check_layer(layer, k)
                      for k, layer in enumerate(layers, start=1)]}
    merged = {**TRAINING_DEFAULTS, **{k: v for k, v in config.items() if k != "layers"}}

    if merged["optimizer"] not in OPTIMIZERS:
        _fail("optimizer", "one of " + ", ".join(OPTIMIZERS), merged["optimizer"],
              "Pick a supported optimizer name.")
    lr = merged["learning_rate"]
    if not _is_real(lr) or not (math.isfinite(lr) and lr > 0):
        _fail("learning_rate", "a finite float > 0", lr, "A typical value is 1e-3.")
    bs = merged["batch_size"]
    if not _is_int(bs) or bs < 1:
        _fail("batch_size", "an int >= 1", bs, "A typical value is 32.")
    wd = merged["weight_decay"]
    if not _is_real(wd) or not (math.isfinite(wd) and wd >= 0):
        _fail("weight_decay", "a finite float >= 0", wd, "Use 0.0 for no weight decay.")
    epochs = merged["max_epochs"]
    if not _is_int(epochs) or epochs < 1:
        _fail("max_epochs", "an int >= 1", epochs, "Give the most epochs to train.")
    patience = merged["patience"]
    if patience is not None and (not _is_int(patience) or patience < 1):
        _fail("patience", "an int >= 1 or None (no early stopping)", patience,
              "A typical value is 50.")
    if merged["lr_schedule"] not in LR_SCHEDULES:
        _fail("lr_schedule", "one of " + ", ".join(map(repr, LR_SCHEDULES)),
              merged["lr_schedule"], "Use None for a constant learning rate.")
    clip = merged["gradient_clip"]
    if clip is not None and (not _is_real(clip) or not (math.isfinite(clip) and clip > 0)):
        _fail("gradient_clip", "a float > 0 or None", clip, "Use None for no clipping.")

    out.update(
        optimizer=str(merged["optimizer"]),
        learning_rate=float(lr),
        batch_size=int(bs),
        weight_decay=float(wd),
        max_epochs=int(epochs),
        patience=None if patience is None else int(patience),
        lr_schedule=merged["lr_schedule"],
        gradient_clip=None if clip is None else float(clip),
    )
    return out


def _per_layer(value, n_layers, name, kind):
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ConfigError(
                f"{name} must be one {kind} or a list with one per hidden layer "
                f"({n_layers}); got {len(value)} values {list(value)!r}. "
                f"Give a single {kind} or {n_layers} of them."
            )
        return list(value)
    return [value] * n_layers


def layers_from_params(hidden_layer_sizes, activation="relu", dropout=0.0,
                       skip_connections=None):
    """Build the ``"layers"`` list of a configuration from estimator-style parameters.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int
        Width of each hidden layer.
    activation : str or sequence of str, default="relu"
        One activation for every layer, or one per layer.
    dropout : float or sequence of float, default=0.0
        One dropout rate for every layer, or one per layer.
    skip_connections : None, "all" or sequence of sequences of int, default=None
        None for a plain MLP; ``"all"`` to add every earlier output (the input included) to
        each layer; or one list of earlier outputs per layer (see the module docstring).

    Returns
    -------
    list of dict
    """
    if _is_int(hidden_layer_sizes):
        hidden_layer_sizes = [hidden_layer_sizes]
    if getattr(hidden_layer_sizes, "ndim", None) == 1 and hasattr(hidden_layer_sizes, "tolist"):
        hidden_layer_sizes = hidden_layer_sizes.tolist()  # a numpy array, as sklearn's MLPs take
    if not isinstance(hidden_layer_sizes, (list, tuple)):
        _fail("hidden_layer_sizes", "a sequence of ints", hidden_layer_sizes,
              "Pass e.g. (64, 64); () gives a linear Gaussian model.")
    n = len(hidden_layer_sizes)
    activations = _per_layer(activation, n, "activation", "name")
    dropouts = _per_layer(dropout, n, "dropout", "rate")
    if skip_connections is None:
        skips = [[] for _ in range(n)]
    elif skip_connections == "all":
        skips = [list(range(k - 1)) for k in range(1, n + 1)]
    else:
        skips = _per_layer(skip_connections, n, "skip_connections", "list")
        if not isinstance(skip_connections, (list, tuple)):
            _fail("skip_connections", "None, 'all' or one list of earlier outputs per layer",
                  skip_connections, "Use None for a plain MLP.")
    layers = []
    for k, (units, act, rate, skip) in enumerate(
        zip(hidden_layer_sizes, activations, dropouts, skips, strict=True), start=1
    ):
        layers.append(_check_layer({"units": units, "activation": act, "dropout": rate,
                                    "skip": skip}, k, _param_name))
    return layers
