"""The default AutoDEUQ search space and the mapping between flat and network configurations.

The search works on flat dicts; a network is described by the nested configuration of
:func:`autodeuq.nn.normalize_config`. Flat keys, with hidden layers numbered from 1:

- ``num_layers``: the number of hidden layers (an int >= 0);
- ``units_k``, ``activation_k``, ``dropout_k`` for ``k = 1 .. num_layers``;
- ``skip_k_d`` in {0, 1}: 1 adds a skip connection to layer ``k`` from output ``k - 1 - d``
  (output 0 is the input features; layer ``k`` always reads output ``k - 1``), defined only
  when ``k - 1 - d >= 0``;
- the training keys of :data:`autodeuq.nn.TRAINING_DEFAULTS`.
"""

import re
from collections.abc import Mapping

import numpy as np

from ..exceptions import ConfigError
from ..nn import ACTIVATIONS, LR_SCHEDULES, OPTIMIZERS, TRAINING_DEFAULTS, normalize_config
from ._dimensions import Categorical, Float, Int, _fail, _is_int
from ._space import Condition, SearchSpace

__all__ = [
    "ARCHITECTURE",
    "MAX_SKIP_DISTANCE",
    "TRAINING",
    "check_space",
    "default_space",
    "split_names",
    "to_flat_config",
    "to_network_config",
]

#: Flat training keys (those of :data:`autodeuq.nn.TRAINING_DEFAULTS`), in order.
TRAINING = tuple(TRAINING_DEFAULTS)

#: Templates of the flat architecture keys (``k`` a hidden layer from 1, ``d`` a skip
#: distance from 1).
ARCHITECTURE = ("num_layers", "units_{k}", "activation_{k}", "dropout_{k}", "skip_{k}_{d}")

#: Skip distances ``d`` that :func:`default_space` searches and :func:`to_flat_config` always
#: writes (as 0 or 1) where the layer has such an earlier output.
MAX_SKIP_DISTANCE = 3

_LAYER_KEY = re.compile(r"(units|activation|dropout)_([1-9][0-9]*)")
_SKIP_KEY = re.compile(r"skip_([1-9][0-9]*)_([1-9][0-9]*)")


def default_space(max_layers=10):
    """The AutoDEUQ search space over Gaussian MLPs and their training.

    Parameters
    ----------
    max_layers : int, default=10
        The most hidden layers a network may have.

    Returns
    -------
    SearchSpace
        With ``num_layers`` Int(1, max_layers) and, for each layer ``k`` (active when
        ``num_layers >= k``), ``units_k`` Int(16, 512, log=True), ``activation_k`` (every
        name in :data:`autodeuq.nn.ACTIVATIONS`), ``dropout_k`` Float(0.0, 0.5) and
        ``skip_k_d`` Categorical([0, 1]) for each ``d`` in 1..3 with ``k - 1 - d >= 0``; then
        ``optimizer``, ``learning_rate`` Float(1e-4, 1e-1, log=True), ``batch_size``
        {16, ..., 256}, ``weight_decay`` Float(1e-8, 1e-2, log=True), ``max_epochs``
        Int(100, 1000, log=True), ``patience`` Int(10, 100, log=True), ``lr_schedule`` and
        the constant ``gradient_clip`` None (so that configurations carry every training
        key, like :func:`to_flat_config`'s).

    Examples
    --------
    >>> import numpy as np
    >>> config = default_space(max_layers=3).sample(np.random.default_rng(0))
    >>> network = to_network_config(config)
    >>> len(network["layers"]) == config["num_layers"]
    True
    """
    if not _is_int(max_layers) or max_layers < 1:
        _fail("max_layers", "an int >= 1", max_layers, "A typical value is 10.")
    dims = {"num_layers": Int(1, int(max_layers))}
    conditions = {}
    for k in range(1, max_layers + 1):
        layer = {
            f"units_{k}": Int(16, 512, log=True),
            f"activation_{k}": Categorical(list(ACTIVATIONS)),
            f"dropout_{k}": Float(0.0, 0.5),
        }
        for d in range(1, MAX_SKIP_DISTANCE + 1):
            if k - 1 - d >= 0:
                layer[f"skip_{k}_{d}"] = Categorical([0, 1])
        dims.update(layer)
        conditions.update({name: Condition("num_layers", ">=", k) for name in layer})
    dims.update(
        optimizer=Categorical(list(OPTIMIZERS)),
        learning_rate=Float(1e-4, 1e-1, log=True),
        batch_size=Categorical([16, 32, 64, 128, 256]),
        weight_decay=Float(1e-8, 1e-2, log=True),
        max_epochs=Int(100, 1000, log=True),
        patience=Int(10, 100, log=True),
        lr_schedule=Categorical(list(LR_SCHEDULES)),
        gradient_clip=Categorical([None]),
    )
    return SearchSpace(dims, conditions)


def split_names(space):
    """Split a space's names into architecture and training names.

    Parameters
    ----------
    space : SearchSpace, dict or None
        Anything :meth:`SearchSpace.coerce` accepts.

    Returns
    -------
    architecture_names, training_names : list of str
        Training names are those in :data:`TRAINING`; every other name counts as
        architecture. Both keep the space's order.
    """
    names = SearchSpace.coerce(space).names
    return ([n for n in names if n not in TRAINING], [n for n in names if n in TRAINING])


def _layer_keys(flat):
    """Split the flat keys into per-layer keys, skip keys, training keys and unknown keys."""
    layers, skips, training, unknown = {}, {}, {}, []
    for key, value in flat.items():
        if key == "num_layers":
            continue
        if key in TRAINING_DEFAULTS:
            training[key] = value
        elif m := _LAYER_KEY.fullmatch(key):
            layers[(int(m[2]), m[1])] = value
        elif m := _SKIP_KEY.fullmatch(key):
            skips[(int(m[1]), int(m[2]))] = value
        else:
            unknown.append(key)
    return layers, skips, training, unknown


def to_network_config(flat):
    """Turn a flat configuration into the network configuration it describes.

    Parameters
    ----------
    flat : dict
        Flat keys (see the module docstring). ``activation_k``, ``dropout_k`` and
        ``skip_k_d`` default to "relu", 0.0 and 0; missing training keys take the values in
        :data:`autodeuq.nn.TRAINING_DEFAULTS`. Without ``num_layers``, the largest ``k`` of a
        layer key is used.

    Returns
    -------
    dict
        ``autodeuq.nn.normalize_config`` of ``{"layers": [...], **training}``.

    Raises
    ------
    ConfigError
        If a key is unknown, a layer key names a layer beyond ``num_layers``, ``units_k`` is
        missing, or a value breaks its rule.
    """
    if not isinstance(flat, Mapping):
        _fail("flat config", "a dict", type(flat).__name__,
              "Pass e.g. {'num_layers': 1, 'units_1': 64}.")
    layers, skips, training, unknown = _layer_keys(flat)
    if unknown:
        _fail("flat config keys", "num_layers, units_k, activation_k, dropout_k, skip_k_d or "
              "one of " + ", ".join(TRAINING), sorted(unknown),
              "Remove or rename the unknown keys (layers are numbered from 1).")
    inferred = max([k for k, _ in layers] + [k for k, _ in skips], default=0)
    n = flat.get("num_layers", inferred)
    if not _is_int(n) or n < 0:
        _fail("num_layers", "an int >= 0", n, "Give the number of hidden layers.")
    beyond = sorted(f"{key}_{k}" for k, key in layers if k > n) \
        + sorted(f"skip_{k}_{d}" for k, d in skips if k > n)
    if beyond:
        _fail("flat config keys", f"for hidden layers 1..num_layers ({n})", beyond,
              "Remove the keys of inactive layers or raise num_layers.")
    nested = []
    for k in range(1, n + 1):
        if (k, "units") not in layers:
            _fail(f"units_{k}", f"present for each hidden layer k <= num_layers ({n})", None,
                  f"Add units_{k} or lower num_layers.")
        skip = []
        for d in sorted(d for kk, d in skips if kk == k):
            value = skips[(k, d)]
            if not (_is_int(value) or isinstance(value, (bool, np.bool_))) \
                    or value not in (0, 1):
                _fail(f"skip_{k}_{d}", "0 or 1", value, "Use 1 to add the skip connection.")
            if k - 1 - d < 0:
                _fail(f"skip_{k}_{d}", f"defined only for d <= k - 1 = {k - 1}", value,
                      f"Remove skip_{k}_{d}: layer {k} has no output {k - 1 - d} to read.")
            if value:
                skip.append(k - 1 - d)
        nested.append({
            "units": layers[(k, "units")],
            "activation": layers.get((k, "activation"), "relu"),
            "dropout": layers.get((k, "dropout"), 0.0),
            "skip": sorted(skip),
        })
    return normalize_config({"layers": nested, **training})


def to_flat_config(network_config):
    """Turn a network configuration into the flat configuration of the default naming.

    Parameters
    ----------
    network_config : dict
        A configuration accepted by :func:`autodeuq.nn.normalize_config`, e.g.
        ``GaussianMLPRegressor().get_config()``.

    Returns
    -------
    dict
        ``num_layers``; ``units_k``, ``activation_k``, ``dropout_k`` and ``skip_k_d`` (0 or
        1) for ``d`` in 1..min(3, k - 1), plus ``skip_k_d = 1`` for any longer skip; then every
        training key. :func:`to_network_config` maps it back to the normalized configuration.

    Raises
    ------
    ConfigError
        If ``network_config`` is invalid.
    """
    config = normalize_config(network_config)
    flat = {"num_layers": len(config["layers"])}
    for k, layer in enumerate(config["layers"], start=1):
        flat[f"units_{k}"] = layer["units"]
        flat[f"activation_{k}"] = layer["activation"]
        flat[f"dropout_{k}"] = layer["dropout"]
        distances = {k - 1 - j for j in layer["skip"]}
        for d in range(1, k):
            if d <= MAX_SKIP_DISTANCE or d in distances:
                flat[f"skip_{k}_{d}"] = int(d in distances)
    flat.update({key: config[key] for key in TRAINING})
    return flat


def _layer_of(name):
    """The hidden layer (from 1) a flat architecture key belongs to, or None."""
    if m := _LAYER_KEY.fullmatch(name):
        return int(m[2])
    if m := _SKIP_KEY.fullmatch(name):
        return int(m[1])
    return None


# Layer counts an Int num_layers is checked at, each of them, up to this many (beyond, at its
# bounds only: a deeper range than any search needs).
_LAYER_COUNTS_CHECKED = 64


def _probe_values(dimension):
    """The values to check of a dimension: the bounds of a range, every choice of a set (the
    rules of a network configuration are intervals or sets, so these are enough)."""
    if isinstance(dimension, (Int, Float)):
        return [dimension.low, dimension.high]
    return list(dimension.choices)


def check_space(space):
    """Check that every configuration of a search space describes a trainable network.

    A search over a space with a name no network has, a value no network can take (a
    ``learning_rate`` range reaching 0, an unknown optimizer among the choices) or per-layer
    dimensions that do not match ``num_layers`` would only fail trial by trial, after the
    workers started. This refuses it at once: each range is checked at its bounds and each
    categorical dimension at every choice, against the rules of
    :func:`autodeuq.nn.normalize_config`, and the per-layer dimensions at every value of
    ``num_layers``. Constraints are not called.

    Parameters
    ----------
    space : SearchSpace, dict or None
        Anything :meth:`SearchSpace.coerce` accepts.

    Returns
    -------
    SearchSpace
        The space, coerced.

    Raises
    ------
    ConfigError
        Naming the dimension, the rule, the value it allows and the fix.

    Examples
    --------
    >>> check_space({"num_layers": 1, "units_1": Int(8, 64), "learning_rate": Float(-1.0, 1.0)})
    Traceback (most recent call last):
    ...
    autodeuq.exceptions.ConfigError: search_space['learning_rate'] = Float(-1.0, 1.0) allows -1.0, which no network can take: learning_rate must be a finite float > 0; got -1.0. A typical value is 1e-3.
    """  # noqa: E501
    space = SearchSpace.coerce(space)
    dimensions = space.dimensions
    if not dimensions:
        raise ConfigError("search_space must have at least one dimension; got an empty space, "
                          "in which every candidate would be the same default network. Pass "
                          "search_space=None for the default space, or add dimensions, e.g. "
                          "{'num_layers': Int(1, 5), 'units_1': Int(16, 512, log=True)}; for "
                          "one fixed network trained several times, use "
                          "DeepEnsembleRegressor.")
    unknown = _layer_keys(dict.fromkeys(dimensions))[3]
    if unknown:
        _fail("search_space names", "num_layers, units_k, activation_k, dropout_k, skip_k_d "
              "(layers numbered from 1) or one of " + ", ".join(TRAINING), sorted(unknown),
              "Remove or rename those dimensions: a network has no such setting.")
    for name, dimension in dimensions.items():
        layer = _layer_of(name)
        for value in _probe_values(dimension):
            if name == "num_layers":  # its layers' keys are checked below
                probe = {} if _is_int(value) and value >= 0 else {"num_layers": value}
            elif layer is None:
                probe = {"num_layers": 0, name: value}
            else:
                probe = {"num_layers": layer, **{f"units_{k}": 1 for k in range(1, layer + 1)},
                         name: value}
            try:
                to_network_config(probe)
            except ConfigError as exc:
                raise ConfigError(f"search_space[{name!r}] = {dimension!r} allows {value!r}, "
                                  f"which no network can take: {exc}") from None
    if "num_layers" in dimensions:
        counts = _probe_values(dimensions["num_layers"])
        layers = dimensions["num_layers"]
        if isinstance(layers, Int) and layers.high - layers.low <= _LAYER_COUNTS_CHECKED:
            # Every count: a condition's threshold can leave a layer's units out between the
            # bounds (units_2 active from num_layers 3 only, num_layers 2 allowed).
            counts = list(range(layers.low, layers.high + 1))
    else:  # to_network_config infers it from the deepest layer key
        counts = [max((_layer_of(name) or 0) for name in dimensions)] if dimensions else []
    for n in counts:
        active = set(space.active({"num_layers": n}))
        missing = [f"units_{k}" for k in range(1, n + 1) if f"units_{k}" not in active]
        if missing:
            raise ConfigError(
                f"search_space must have units_k for every hidden layer k <= num_layers; "
                f"num_layers can be {n} but {missing[:5]} {'is' if len(missing) == 1 else 'are'}"
                f" missing. Add them (e.g. {missing[0]!r}: Int(16, 256)) or lower num_layers."
            )
        extra = [name for name in space.names if name in active and (_layer_of(name) or 0) > n]
        if extra:
            raise ConfigError(
                f"search_space dimensions {extra[:5]} must be inactive when num_layers = {n} "
                f"(the network has no such layer); got them active. Give each a condition, "
                f"e.g. SearchSpace(dims, conditions={{{extra[0]!r}: Condition('num_layers', "
                f"'>=', {_layer_of(extra[0])})}}), as default_space() does, or narrow "
                "num_layers."
            )
    return space
