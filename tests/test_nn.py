"""Tests for autodeuq.nn: configurations, the Gaussian MLP, the loss, batching and the trainer."""

import copy
import itertools
import json
import math
import re

import numpy as np
import pytest
import skorch
import torch
from scipy import stats
from skorch.callbacks import Callback
from torch.utils.data import Subset

import autodeuq.nn._trainer as trainer_module
from autodeuq.exceptions import AutoDEUQError, ConfigError, TrainingDivergedError
from autodeuq.nn import (
    ACTIVATIONS,
    LR_SCHEDULES,
    OPTIMIZERS,
    TRAINING_DEFAULTS,
    GaussianMLP,
    GaussianNet,
    GaussianNLLLoss,
    TensorBatchIterator,
    TensorDataset,
    TrainedNetwork,
    gaussian_nll_loss,
    layers_from_params,
    normalize_config,
    resolve_device,
    train_network,
)


def _layer(units=8, activation="relu", dropout=0.0, skip=()):
    return {"units": units, "activation": activation, "dropout": dropout, "skip": list(skip)}


def _config(layers=None, **training):
    return {"layers": [_layer()] if layers is None else layers, **training}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a loaded machine the spinning
    threads slow these tests down 20x or more; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """300 rows, 3 features, y = x0 + 0.1 noise, standardized; 200 train / 100 valid."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    return X[:200], y[:200], X[200:], y[200:]


def _valid_nll(module, X, y):
    with torch.no_grad():
        mean, var = module(torch.as_tensor(X, dtype=torch.float32))
        return float(gaussian_nll_loss(mean, var, torch.as_tensor(y, dtype=torch.float32)))


# =========================================================================== configurations


def test_normalize_config_fills_defaults_and_is_json_and_idempotent():
    config = {
        "layers": [
            {"units": np.int64(8)},
            {"units": 4, "activation": "tanh", "dropout": np.float32(0.25), "skip": [0]},
            {"units": 3, "skip": (1, 0, 1)},
        ],
        "learning_rate": np.float32(0.01),
        "batch_size": np.int64(16),
    }
    original = copy.deepcopy(config)
    out = normalize_config(config)

    assert config["layers"][2]["skip"] == original["layers"][2]["skip"]  # input untouched
    assert set(out) == {"layers", *TRAINING_DEFAULTS}
    for key, default in TRAINING_DEFAULTS.items():
        if key not in ("learning_rate", "batch_size"):
            assert out[key] == default, key
    assert out["learning_rate"] == pytest.approx(0.01)
    assert out["batch_size"] == 16
    assert out["layers"] == [
        {"units": 8, "activation": "relu", "dropout": 0.0, "skip": []},
        {"units": 4, "activation": "tanh", "dropout": 0.25, "skip": [0]},
        {"units": 3, "activation": "relu", "dropout": 0.0, "skip": [0, 1]},
    ]
    # Plain Python types only: the JSON round trip is lossless.
    assert json.loads(json.dumps(out)) == out
    assert type(out["layers"][0]["units"]) is int
    assert type(out["learning_rate"]) is float
    again = normalize_config(out)
    assert again == out
    again["layers"][0]["units"] = 99  # a new copy, sharing nothing with its input
    assert out["layers"][0]["units"] == 8


def test_normalize_config_keeps_given_training_values():
    given = {"optimizer": "sgd", "learning_rate": 0.5, "batch_size": 7, "weight_decay": 1e-4,
             "max_epochs": 3, "patience": None, "lr_schedule": "cosine", "gradient_clip": 2.0}
    out = normalize_config({"layers": [], **given})
    assert out == {"layers": [], **given}


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, AutoDEUQError)


_L = "config['layers'][0]"
_L2 = "config['layers'][1]"

INVALID_CONFIGS = [
    ("not a dict", [_layer()], "config must be a dict"),
    ("unknown key", _config(learning_rat=0.1), "config keys.*learning_rat"),
    ("layers missing", {"optimizer": "adam"}, "config['layers']"),
    ("layers not a list", {"layers": {"units": 8}}, "config['layers']"),
    ("layer not a dict", {"layers": [8]}, f"{_L} must be a dict"),
    ("unknown layer key", {"layers": [{"units": 8, "width": 3}]}, f"{_L} keys.*width"),
    ("units missing", {"layers": [{"activation": "relu"}]}, f"{_L}['units']"),
    ("units 0", {"layers": [_layer(units=0)]}, f"{_L}['units']"),
    ("units float", {"layers": [_layer(units=8.0)]}, f"{_L}['units']"),
    ("units bool", {"layers": [_layer(units=True)]}, f"{_L}['units']"),
    ("units in layer 2", {"layers": [_layer(), _layer(units=-1)]}, f"{_L2}['units']"),
    ("activation", {"layers": [_layer(activation="swish")]}, f"{_L}['activation'].*swish"),
    ("dropout 1.0", {"layers": [_layer(dropout=1.0)]}, f"{_L}['dropout']"),
    ("dropout -0.1", {"layers": [_layer(dropout=-0.1)]}, f"{_L}['dropout']"),
    ("dropout nan", {"layers": [_layer(dropout=math.nan)]}, f"{_L}['dropout']"),
    ("skip not list", {"layers": [_layer(), {**_layer(), "skip": 0}]},
     f"{_L2}['skip']"),
    ("skip of layer 1", {"layers": [_layer(skip=[0])]}, f"{_L}['skip']"),
    ("skip to the read output", {"layers": [_layer(), _layer(skip=[1])]}, f"{_L2}['skip']"),
    ("skip to a later output", {"layers": [_layer(), _layer(skip=[5])]}, f"{_L2}['skip']"),
    ("skip negative", {"layers": [_layer(), _layer(skip=[-1])]}, f"{_L2}['skip']"),
    ("optimizer", _config(optimizer="adagrad"), "optimizer.*adagrad"),
    ("learning_rate 0", _config(learning_rate=0), "learning_rate"),
    ("learning_rate nan", _config(learning_rate=math.nan), "learning_rate"),
    ("learning_rate negative", _config(learning_rate=-1e-3), "learning_rate"),
    ("learning_rate str", _config(learning_rate="1e-3"), "learning_rate"),
    ("batch_size 0", _config(batch_size=0), "batch_size"),
    ("batch_size float", _config(batch_size=32.0), "batch_size"),
    ("weight_decay negative", _config(weight_decay=-1e-4), "weight_decay"),
    ("weight_decay inf", _config(weight_decay=math.inf), "weight_decay"),
    ("max_epochs 0", _config(max_epochs=0), "max_epochs"),
    ("patience 0", _config(patience=0), "patience"),
    ("patience bool", _config(patience=True), "patience"),
    ("lr_schedule", _config(lr_schedule="step"), "lr_schedule.*step"),
    ("gradient_clip 0", _config(gradient_clip=0), "gradient_clip"),
    ("gradient_clip negative", _config(gradient_clip=-1.0), "gradient_clip"),
]


@pytest.mark.parametrize(
    ("config", "pattern"),
    [pytest.param(c, p, id=i) for i, c, p in INVALID_CONFIGS],
)
def test_normalize_config_rejects_invalid(config, pattern):
    # Each pattern is the key as the message spells it, optionally followed by ".*value".
    regex = ".*".join(re.escape(part) for part in pattern.split(".*"))
    with pytest.raises(ConfigError, match=regex):
        normalize_config(config)


def test_layers_from_params_scalars_apply_to_every_layer():
    layers = layers_from_params((8, 4, 2), activation="tanh", dropout=0.1)
    assert layers == [{"units": u, "activation": "tanh", "dropout": 0.1, "skip": []}
                      for u in (8, 4, 2)]
    assert normalize_config({"layers": layers})["layers"] == layers


def test_layers_from_params_per_layer_lists():
    layers = layers_from_params([8, 4], activation=["relu", "gelu"], dropout=[0.0, 0.3],
                                skip_connections=[[], [0]])
    assert layers == [
        {"units": 8, "activation": "relu", "dropout": 0.0, "skip": []},
        {"units": 4, "activation": "gelu", "dropout": 0.3, "skip": [0]},
    ]


def test_layers_from_params_single_int_and_empty():
    assert layers_from_params(5) == [_layer(units=5)]
    assert layers_from_params(()) == []
    assert layers_from_params((), skip_connections="all") == []


def test_layers_from_params_all_skips_every_earlier_output():
    layers = layers_from_params((3, 3, 3, 3), skip_connections="all")
    # Layer k reads output k - 1 directly and adds every other earlier output.
    assert [layer["skip"] for layer in layers] == [[], [0], [0, 1], [0, 1, 2]]
    module = GaussianMLP(2, layers)
    assert [len(layer.projections) for layer in module.hidden] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        pytest.param({"activation": ["relu"]}, r"activation .*\(2\); got 1 values", id="act"),
        pytest.param({"dropout": [0.1, 0.1, 0.1]}, r"dropout .*\(2\); got 3 values", id="drop"),
        pytest.param({"skip_connections": [[]]}, r"skip_connections .*\(2\); got 1",
                     id="skip-length"),
        pytest.param({"skip_connections": "none"}, "skip_connections", id="skip-str"),
        pytest.param({"skip_connections": [[], [1]]},
                     re.escape("skip_connections (hidden layer 2)"), id="skip-bad-index"),
        pytest.param({"activation": "swish"}, re.escape("activation (hidden layer 1)"),
                     id="act-name"),
        pytest.param({"dropout": [0.0, 1.5]}, re.escape("dropout (hidden layer 2)"),
                     id="drop-value"),
    ],
)
def test_layers_from_params_errors_name_the_parameter(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        layers_from_params((8, 4), **kwargs)


@pytest.mark.parametrize(
    ("sizes", "pattern"),
    [
        ((8, 0), re.escape("hidden_layer_sizes (hidden layer 2)")),
        ((8.0,), re.escape("hidden_layer_sizes (hidden layer 1)")),
        ("64", "hidden_layer_sizes"),
        (None, "hidden_layer_sizes"),
    ],
)
def test_layers_from_params_rejects_bad_sizes(sizes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        layers_from_params(sizes)


# =========================================================================== module and loss


def test_module_output_shapes_and_positive_variance():
    torch.manual_seed(0)
    module = GaussianMLP(3, [_layer(16), _layer(8, "tanh")], var_floor=1e-4)
    X = torch.randn(50, 3)
    for scale in (1.0, 1e6, -1e6):
        mean, var = module(X * scale)
        assert mean.shape == (50,)
        assert var.shape == (50,)
        assert torch.isfinite(mean).all()
        assert torch.isfinite(var).all()
        assert (var > 0).all()
        assert (var >= 1e-4).all()


def test_module_variance_floor_is_reached_for_very_negative_raw_output():
    module = GaussianMLP(3, [_layer(4)], var_floor=0.01)
    with torch.no_grad():
        module.head.weight.zero_()
        module.head.bias.copy_(torch.tensor([0.0, -100.0]))
    _, var = module(torch.randn(5, 3))
    torch.testing.assert_close(var, torch.full((5,), 0.01))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_trains(activation):
    torch.manual_seed(0)
    module = GaussianMLP(3, [_layer(6, activation), _layer(4, activation, skip=[0])])
    for layer in module.hidden:
        assert type(layer.activation).__name__.lower() == activation.replace("_", "")
    mean, var = module(torch.randn(10, 3))
    assert mean.shape == var.shape == (10,)
    assert torch.isfinite(mean).all()
    assert (var > 0).all()
    gaussian_nll_loss(mean, var, torch.zeros(10)).backward()
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_zero_hidden_layers_is_a_linear_gaussian_model():
    torch.manual_seed(0)
    module = GaussianMLP(3, [])
    assert len(module.hidden) == 0
    assert sum(p.numel() for p in module.parameters()) == 3 * 2 + 2
    x1, x2 = torch.randn(8, 3), torch.randn(8, 3)
    m1, _ = module(x1)
    m2, _ = module(x2)
    m_mid, _ = module(0.3 * x1 + 0.7 * x2)
    torch.testing.assert_close(m_mid, 0.3 * m1 + 0.7 * m2)
    torch.testing.assert_close(m1, x1 @ module.head.weight[0] + module.head.bias[0])


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_skip_connection_adds_a_used_projection():
    torch.manual_seed(0)
    plain = GaussianMLP(3, [_layer(4), _layer(5)])
    skipped = GaussianMLP(3, [_layer(4), _layer(5, skip=[0])])
    assert _n_params(skipped) - _n_params(plain) == 3 * 5
    double = GaussianMLP(3, [_layer(4), _layer(5), _layer(6, skip=[0, 1])])
    assert _n_params(double) - _n_params(GaussianMLP(3, [_layer(4), _layer(5), _layer(6)])) \
        == (3 + 4) * 6

    (projection,) = skipped.hidden[1].projections
    assert projection.weight.shape == (5, 3)
    assert projection.bias is None
    mean, var = skipped(torch.randn(20, 3))
    gaussian_nll_loss(mean, var, torch.randn(20)).backward()
    assert projection.weight.grad is not None
    assert projection.weight.grad.abs().sum() > 0

    # The projection changes the output: zeroing it gives a different prediction.
    x = torch.randn(20, 3)
    before, _ = skipped(x)
    with torch.no_grad():
        projection.weight.zero_()
    after, _ = skipped(x)
    assert not torch.allclose(before, after)


def test_from_state_dict_holds_the_weights_and_draws_no_random_numbers():
    torch.manual_seed(0)
    layers = [_layer(4), _layer(5, skip=[0])]
    trained = GaussianMLP(3, layers, var_floor=1e-4).double()
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    stream = torch.get_rng_state()
    module = GaussianMLP.from_state_dict(3, layers, state, var_floor=1e-4)
    assert torch.equal(torch.get_rng_state(), stream)
    assert module.var_floor == 1e-4
    assert all(p.dtype == torch.float64 and p.device.type == "cpu"
               for p in module.parameters())
    x = torch.randn(7, 3, dtype=torch.float64)
    for got, want in zip(module(x), trained(x), strict=True):
        assert torch.equal(got, want)
    # The structure alone, for shapes: nothing allocated.
    assert all(t.is_meta for t in GaussianMLP.empty(3, layers).state_dict().values())


def test_from_state_dict_refuses_a_state_of_another_network():
    state = GaussianMLP(3, [_layer(4)]).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        GaussianMLP.from_state_dict(3, [_layer(6)], state)
    with pytest.raises(RuntimeError, match="Missing key"):
        GaussianMLP.from_state_dict(3, [_layer(4), _layer(4)], state)


def test_fresh_network_predicts_unit_variance():
    torch.manual_seed(0)
    module = GaussianMLP(3, [_layer(32), _layer(16, "tanh")])
    _, var = module(torch.randn(2000, 3))
    assert 0.7 < float(var.mean().detach()) < 1.4


def test_gaussian_nll_loss_matches_scipy():
    rng = np.random.default_rng(0)
    mean, y = rng.normal(size=100) * 3, rng.normal(size=100) * 3
    var = rng.uniform(0.01, 5.0, size=100)
    expected = -stats.norm.logpdf(y, mean, np.sqrt(var)).mean()
    t = [torch.as_tensor(a, dtype=torch.float64) for a in (mean, var, y)]
    got = gaussian_nll_loss(*t)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert float(GaussianNLLLoss()((t[0], t[1]), t[2])) == pytest.approx(expected, rel=1e-12)


# =========================================================================== data


def _ids(n):
    """Features whose first column is the row id, and targets equal to -id."""
    ids = np.arange(n, dtype=np.float64)
    return np.column_stack([ids, ids * 2]), -ids


@pytest.mark.parametrize(("n", "batch_size"), [(103, 10), (100, 10), (5, 32), (1, 1)])
def test_iterator_epoch_yields_every_row_once(n, batch_size):
    X, y = _ids(n)
    iterator = TensorBatchIterator(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                                   seed=0)
    batches = list(iterator)
    assert len(iterator) == len(batches) == math.ceil(n / batch_size)
    sizes = [len(xb) for xb, _ in batches]
    assert all(s == batch_size for s in sizes[:-1])
    assert 1 <= sizes[-1] <= batch_size
    Xs = torch.cat([xb for xb, _ in batches])
    ys = torch.cat([yb for _, yb in batches])
    assert Xs.dtype == ys.dtype == torch.float32
    assert sorted(Xs[:, 0].tolist()) == list(range(n))
    torch.testing.assert_close(ys, -Xs[:, 0])          # rows stay paired
    torch.testing.assert_close(Xs[:, 1], 2 * Xs[:, 0])


def test_iterator_accepts_subset_and_skorch_dataset():
    X, y = _ids(50)
    indices = [3, 7, 11, 42, 0, 19]
    subset = Subset(TensorDataset(X, y), indices)
    xb = torch.cat([b for b, _ in TensorBatchIterator(subset, batch_size=4)])
    assert xb[:, 0].tolist() == indices
    shuffled = torch.cat([b for b, _ in TensorBatchIterator(subset, batch_size=4,
                                                            shuffle=True, seed=1)])
    assert sorted(shuffled[:, 0].tolist()) == sorted(indices)

    iterator = TensorBatchIterator(skorch.dataset.Dataset(X, y), batch_size=16)
    xs, ys = zip(*iterator, strict=True)
    assert len(xs) == 4
    torch.testing.assert_close(torch.cat(xs)[:, 0], torch.arange(50, dtype=torch.float32))
    torch.testing.assert_close(torch.cat(ys), -torch.arange(50, dtype=torch.float32))


def test_iterator_without_targets_and_bad_datasets():
    X, _ = _ids(6)
    batches = list(TensorBatchIterator(TensorDataset(X), batch_size=4))
    assert [yb for _, yb in batches] == [None, None]
    with pytest.raises(TypeError, match="TensorDataset"):
        TensorBatchIterator([(1.0, 2.0)])
    with pytest.raises(ValueError, match="same length"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))


def _order(iterator):
    return torch.cat([xb for xb, _ in iterator])[:, 0].tolist()


def test_iterator_shuffling_is_seeded_and_changes_between_passes():
    X, y = _ids(40)
    dataset = TensorDataset(X, y)
    a = TensorBatchIterator(dataset, batch_size=8, shuffle=True, seed=123)
    b = TensorBatchIterator(dataset, batch_size=8, shuffle=True, seed=123)
    c = TensorBatchIterator(dataset, batch_size=8, shuffle=True, seed=124)
    first_a, first_b, first_c = _order(a), _order(b), _order(c)
    assert first_a == first_b
    assert first_a != first_c
    assert first_a != list(range(40))
    second_a = _order(a)
    assert second_a != first_a
    assert second_a == _order(b)  # the sequence of permutations is reproducible too
    plain = TensorBatchIterator(dataset, batch_size=8)
    assert _order(plain) == _order(plain) == list(range(40))


@pytest.mark.parametrize("seed", [0, None])
def test_iterator_leaves_global_rng_alone(seed):
    X, y = _ids(30)
    state = torch.get_rng_state()
    iterator = TensorBatchIterator(TensorDataset(X, y), batch_size=7, shuffle=True, seed=seed)
    for _ in range(3):
        list(iterator)
    assert torch.equal(torch.get_rng_state(), state)


# =========================================================================== device


def test_resolve_device_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"
    assert resolve_device() == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_auto_without_cuda():
    assert resolve_device("auto") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(("device", "index"), [("cuda", 0), ("cuda:1", 1)])
def test_resolve_device_missing_cuda(device, index):
    with pytest.raises(ValueError, match=rf"device='{re.escape(device)}'.*device {index}.*has 0"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", 3, None, "meta"])
def test_resolve_device_rejects_non_devices(device):
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(device)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_resolve_device_missing_mps():
    with pytest.raises(ValueError, match="device='mps'"):
        resolve_device("mps")


# =========================================================================== trainer

FAST = {"learning_rate": 1e-2, "batch_size": 32}


def test_train_network_learns(data):
    Xt, yt, Xv, yv = data
    result = train_network(_config([_layer(16)], max_epochs=30, patience=None, **FAST),
                           Xt, yt, Xv, yv, seed=0)
    assert isinstance(result, TrainedNetwork)
    assert result.n_epochs == 30
    assert all({"epoch", "train_loss", "valid_loss"} <= set(row) for row in result.history)
    assert [row["epoch"] for row in result.history] == list(range(1, 31))
    assert all("batches" not in row for row in result.history)
    # A model that ignores X has NLL 0.5 log(2 pi e) ~ 1.42; y ~ x0 with noise sd ~0.1.
    assert result.best_valid_loss < result.history[0]["valid_loss"] - 0.5
    assert result.best_valid_loss < 0.0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] - 0.5
    assert result.fit_time > 0
    module = result.module
    assert isinstance(module, GaussianMLP)
    assert not module.training
    assert not any(m.training for m in module.modules())
    assert all(p.device.type == "cpu" for p in module.parameters())


def _overfit(data, **extra):
    """A wide network on 20 rows at a high learning rate: the validation loss turns up."""
    Xt, yt, Xv, yv = data
    training = {"learning_rate": 3e-2, "batch_size": 10, "max_epochs": 120, "patience": None}
    config = _config([_layer(64), _layer(64)], **{**training, **extra})
    return train_network(config, Xt[:20], yt[:20] + 0.5 * np.sin(7 * Xt[:20, 1]), Xv, yv,
                         seed=0)


def test_best_weights_are_restored_from_a_real_copy(data):
    result = _overfit(data)
    losses = [row["valid_loss"] for row in result.history]
    assert result.n_epochs == 120
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.best_valid_loss == min(losses)
    assert result.best_epoch < result.n_epochs
    assert losses[-1] > result.best_valid_loss + 0.1  # the last weights are clearly worse
    recomputed = _valid_nll(result.module, data[2], data[3])
    assert recomputed == pytest.approx(result.best_valid_loss, rel=1e-5, abs=1e-6)
    bests = [row["valid_loss_best"] for row in result.history]
    assert bests[result.best_epoch - 1] is True
    assert not any(bests[result.best_epoch:])


def test_early_stopping_stops_patience_epochs_after_the_best(data):
    Xt, yt, Xv, yv = data
    result = train_network(_config([_layer(16)], max_epochs=500, patience=5, **FAST),
                           Xt, yt, Xv, yv, seed=0)
    assert result.n_epochs < 500
    assert result.n_epochs - result.best_epoch == 5
    losses = [row["valid_loss"] for row in result.history]
    assert result.best_valid_loss == min(losses)
    recomputed = _valid_nll(result.module, Xv, yv)
    assert recomputed == pytest.approx(result.best_valid_loss, rel=1e-5, abs=1e-6)


def test_no_patience_runs_every_epoch(data):
    result = _overfit(data, max_epochs=25)
    assert result.n_epochs == 25


def test_without_validation_data_keeps_the_last_epoch(data):
    Xt, yt, _, _ = data
    for X_valid in (None, np.empty((0, 3))):
        result = train_network(_config(max_epochs=7, patience=2, **FAST), Xt, yt, X_valid,
                               None if X_valid is None else np.empty(0), seed=0)
        assert result.n_epochs == 7
        assert result.best_epoch == 7
        assert result.best_valid_loss is None
        assert all("valid_loss" not in row for row in result.history)
        assert all(math.isfinite(row["train_loss"]) for row in result.history)


def _run(data, seed, **extra):
    Xt, yt, Xv, yv = data
    config = _config([_layer(8, dropout=0.1)], max_epochs=4, patience=None, **FAST, **extra)
    return train_network(config, Xt[:100], yt[:100], Xv, yv, seed=seed)


def test_training_is_reproducible_and_leaves_global_rng_alone(data):
    torch.manual_seed(12345)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    a = _run(data, seed=7)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
    b = _run(data, seed=7)
    c = _run(data, seed=np.random.SeedSequence(7))
    d = _run(data, seed=8)

    def losses(r):
        return [(row["train_loss"], row["valid_loss"]) for row in r.history]

    assert losses(a) == losses(b) == losses(c)
    for other in (b, c):
        sa, so = a.module.state_dict(), other.module.state_dict()
        assert sa.keys() == so.keys()
        assert all(torch.equal(sa[k], so[k]) for k in sa)
    assert losses(a) != losses(d)
    assert not torch.equal(a.module.head.weight, d.module.head.weight)
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize(
    ("where", "loss_name"),
    [("y_train", "train_loss"), ("X_train", "train_loss"), ("y_valid", "valid_loss")],
)
def test_divergence_raises(data, where, loss_name):
    Xt, yt, Xv, yv = (a.copy() for a in data)
    if where == "y_train":
        yt[3] = np.nan
    elif where == "X_train":
        Xt[5, 1] = np.inf
    else:
        yv[0] = np.nan
    state = torch.get_rng_state()
    with pytest.raises(TrainingDivergedError, match=f"{loss_name}.*epoch 1") as info:
        train_network(_config(max_epochs=5, **FAST), Xt, yt, Xv, yv, seed=0)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.epoch == 1
    assert info.value.loss_name == loss_name
    assert torch.equal(torch.get_rng_state(), state)


class _Interrupt(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


def test_keyboard_interrupt_is_not_swallowed(data):
    Xt, yt, _, _ = data
    net = GaussianNet(
        GaussianMLP, module__n_features=3, module__layers=[_layer(8)],
        optimizer=torch.optim.Adam, lr=1e-3, max_epochs=5, callbacks=[("boom", _Interrupt())],
    )
    with pytest.raises(KeyboardInterrupt):
        net.fit(Xt.astype(np.float32), yt.astype(np.float32))
    assert len(net.history) == 2


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_reduces_the_loss(data, optimizer):
    Xt, yt, Xv, yv = data
    result = train_network(
        _config([_layer(16)], optimizer=optimizer, learning_rate=1e-2, max_epochs=15,
                patience=None, weight_decay=1e-4),
        Xt, yt, Xv, yv, seed=0)
    assert result.n_epochs == 15
    first = result.history[0]
    assert min(row["train_loss"] for row in result.history) < first["train_loss"] - 0.5
    assert result.best_valid_loss < first["valid_loss"] - 0.5


def test_cosine_schedule_anneals_the_learning_rate(data):
    Xt, yt, Xv, yv = data
    result = train_network(
        _config(max_epochs=10, patience=None, lr_schedule="cosine", learning_rate=1e-2),
        Xt[:64], yt[:64], Xv, yv, seed=0)
    lrs = [row["event_lr"] for row in result.history]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(b < a for a, b in itertools.pairwise(lrs))
    assert lrs[-1] < 0.05 * lrs[0]


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_learning_rate_is_recorded_only_with_a_schedule(data, schedule):
    Xt, yt, Xv, yv = data
    result = train_network(_config(max_epochs=3, lr_schedule=schedule, learning_rate=1e-2),
                           Xt[:64], yt[:64], Xv, yv, seed=0)
    assert result.n_epochs == 3
    has_lr = ["event_lr" in row for row in result.history]
    assert has_lr == [schedule is not None] * 3


def test_plateau_schedule_halves_the_learning_rate(data):
    result = _overfit(data, max_epochs=60, lr_schedule="plateau")
    lrs = [row["event_lr"] for row in result.history]
    assert lrs[0] == pytest.approx(3e-2)
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    assert min(lrs) <= 1.5e-2
    halvings = [math.log2(3e-2 / lr) for lr in lrs]  # ReduceLROnPlateau(factor=0.5)
    assert all(abs(h - round(h)) < 1e-6 for h in halvings)


class _GradNormRecorder(Callback):
    def __init__(self):
        self.norms = []

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad.detach().flatten() for _, p in named_parameters if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clip_bounds_the_gradient_norm(data, monkeypatch, clip):
    recorder = _GradNormRecorder()
    original = trainer_module._callbacks

    def with_recorder(*args):
        return [*original(*args), ("grad_norm_recorder", recorder)]

    monkeypatch.setattr(trainer_module, "_callbacks", with_recorder)
    Xt, yt, Xv, yv = data
    result = train_network(_config(max_epochs=2, gradient_clip=clip, **FAST),
                           Xt[:64], yt[:64], Xv, yv, seed=0)
    assert len(recorder.norms) == 2 * 2  # 64 rows in batches of 32, two epochs
    if clip is None:
        assert min(recorder.norms) > 1e-2  # so the clipped run below really clips
    else:
        assert max(recorder.norms) <= 1e-3 * (1 + 1e-5)
        assert min(recorder.norms) > 0.5e-3  # clipped to the bound, not zeroed
    assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_dropout_is_off_in_the_returned_module(data):
    Xt, yt, Xv, yv = data
    result = train_network(_config([_layer(32, dropout=0.5)], max_epochs=3, **FAST),
                           Xt, yt, Xv, yv, seed=0)
    module = result.module
    X = torch.as_tensor(Xv, dtype=torch.float32)
    with torch.no_grad():
        m1, v1 = module(X)
        m2, v2 = module(X)
        assert torch.equal(m1, m2)
        assert torch.equal(v1, v2)
        module.train()
        m3, _ = module(X)
        m4, _ = module(X)
    assert not torch.equal(m3, m4)  # the dropout is really there in training mode


def test_column_vector_targets_are_raveled_and_matrices_rejected(data):
    # A (n, 1) target once broadcast against the (n,) mean into an (n, n) loss.
    Xt, yt, Xv, yv = data
    config = _config([_layer(8)], max_epochs=3, patience=None, **FAST)
    flat = train_network(config, Xt, yt, Xv, yv, seed=0)
    with pytest.raises(ValueError, match="y must be 1-D"):
        train_network(config, Xt, np.column_stack([yt, yt]), seed=0)
    column = train_network(config, Xt, yt[:, None], Xv, yv[:, None], seed=0)
    assert [row["train_loss"] for row in column.history] == pytest.approx(
        [row["train_loss"] for row in flat.history], rel=1e-5)
