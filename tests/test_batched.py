"""Batched training of an ensemble's members: the same members as one after another, faster."""

import logging
import pickle

import joblib
import numpy as np
import pytest
import torch
from conftest import FAST
from sklearn.base import clone

import autodeuq
from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.estimators import _deep_ensemble
from autodeuq.exceptions import TrainingDivergedError
from autodeuq.nn import (
    OPTIMIZERS,
    GaussianMLP,
    StackedGaussianMLP,
    gaussian_nll_loss,
    member_nll,
    normalize_config,
    train_network,
    train_networks,
)

LAYERS = [
    {"units": 12, "activation": "tanh", "dropout": 0.0, "skip": []},
    {"units": 8, "activation": "relu", "dropout": 0.0, "skip": [0]},
    {"units": 6, "activation": "gelu", "dropout": 0.0, "skip": [0, 1]},
]


def config(**params):
    return normalize_config({"layers": LAYERS, "learning_rate": 1e-2, "batch_size": 32,
                             "max_epochs": 4, "patience": None, **params})


@pytest.fixture(scope="module")
def data():
    """Scaled rows, and three members' own training and validation rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 3)).astype(np.float32)
    y = (np.sin(X[:, 0]) + X[:, 1] + 0.3 * rng.normal(size=160)).astype(np.float32)
    orders = [rng.permutation(160) for _ in range(3)]
    train = np.stack([np.sort(order[20:]) for order in orders])
    valid = np.stack([np.sort(order[:20]) for order in orders])
    return X, y, train, valid


def sequential(cfg, data, seeds, with_valid=True):
    X, y, train, valid = data
    return [train_network(cfg, X[t], y[t], X[v] if with_valid else None,
                          y[v] if with_valid else None, seed=seed)
            for t, v, seed in zip(train, valid, seeds, strict=True)]


def batched(cfg, data, seeds, with_valid=True):
    X, y, train, valid = data
    return train_networks(cfg, X, y, train, valid if with_valid else None, seeds=seeds)


def assert_same_weights(got, want, atol):
    for a, b in zip(got, want, strict=True):
        for (name, p), (other, q) in zip(a.module.state_dict().items(),
                                         b.module.state_dict().items(), strict=True):
            assert name == other
            torch.testing.assert_close(p, q, atol=atol, rtol=0)


# -- the stacked module ----------------------------------------------------------------------


def test_stacked_module_computes_what_its_members_compute():
    torch.manual_seed(0)
    members = [GaussianMLP(3, LAYERS) for _ in range(4)]
    stacked = StackedGaussianMLP.from_modules(members, 3, LAYERS)
    x = torch.randn(4, 10, 3)
    mean, var = stacked(x)
    assert mean.shape == var.shape == (4, 10)
    for k, member in enumerate(members):
        m, v = member(x[k])
        torch.testing.assert_close(mean[k], m)
        torch.testing.assert_close(var[k], v)
    # Unstacking gives ordinary modules with the very same weights, holding no view of the
    # stack (a pickled member must not carry the others' weights).
    for member, back in zip(members, stacked.to_modules(), strict=True):
        assert isinstance(back, GaussianMLP)
        for (name, p), q in zip(member.state_dict().items(), back.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
            assert q.untyped_storage().nbytes() == q.numel() * q.element_size()


def test_stacking_refuses_members_of_another_architecture():
    members = [GaussianMLP(3, LAYERS), GaussianMLP(3, LAYERS[:1])]
    with pytest.raises(ValueError, match=r"modules\[1\]"):
        StackedGaussianMLP.from_modules(members, 3, LAYERS)


def test_member_nll_is_each_members_gaussian_nll():
    mean, target = torch.randn(3, 7), torch.randn(3, 7)
    var = torch.rand(3, 7) + 0.1
    expected = torch.stack([gaussian_nll_loss(mean[k], var[k], target[k]) for k in range(3)])
    torch.testing.assert_close(member_nll(mean, var, target), expected)


# -- train_networks against train_network -------------------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("lr_schedule", [None, "cosine"])
def test_every_optimizer_trains_each_member_as_alone(data, optimizer, lr_schedule):
    # Without dropout the members start from the same weights and see the same batches as
    # when trained one by one: only rounding differs.
    cfg = config(optimizer=optimizer, lr_schedule=lr_schedule, weight_decay=1e-3,
                 gradient_clip=0.5)
    seeds = np.random.SeedSequence(1).spawn(3)
    got, want = batched(cfg, data, seeds), sequential(cfg, data, seeds)
    assert_same_weights(got, want, atol=1e-4)
    for a, b in zip(got, want, strict=True):
        assert [set(row) for row in a.history] == [set(row) for row in b.history]
        np.testing.assert_allclose([r["valid_loss"] for r in a.history],
                                   [r["valid_loss"] for r in b.history], rtol=1e-4)
        assert a.best_epoch == b.best_epoch


def test_members_stop_early_on_their_own_and_keep_their_best_weights(data):
    X, y, _, valid = data
    cfg = config(max_epochs=60, patience=3, learning_rate=3e-2)
    seeds = np.random.SeedSequence(2).spawn(3)
    got = batched(cfg, data, seeds)
    want = sequential(cfg, data, seeds)
    epochs = [r.n_epochs for r in got]
    assert len(set(epochs)) > 1, "the members should stop at different epochs"
    assert epochs == [r.n_epochs for r in want]
    for result, rows in zip(got, valid, strict=True):
        losses = [row["valid_loss"] for row in result.history]
        assert result.n_epochs < 60
        assert result.best_epoch == int(np.argmin(losses)) + 1 == result.n_epochs - 3
        # The module holds the best epoch's weights: its NLL on its own validation rows.
        with torch.no_grad():
            mean, var = result.module(torch.as_tensor(X[rows]))
        nll = float(gaussian_nll_loss(mean, var, torch.as_tensor(y[rows])))
        assert nll == pytest.approx(result.best_valid_loss, abs=1e-5)
    assert_same_weights(got, want, atol=1e-3)


def test_plateau_schedule_lowers_each_members_rate_on_its_own(data):
    cfg = config(max_epochs=30, patience=8, learning_rate=5e-2, lr_schedule="plateau")
    seeds = np.random.SeedSequence(3).spawn(3)
    got, want = batched(cfg, data, seeds), sequential(cfg, data, seeds)
    rates = [[row["event_lr"] for row in r.history] for r in got]
    assert any(min(r) < cfg["learning_rate"] for r in rates), "no rate was lowered"
    assert len({tuple(r) for r in rates}) > 1, "the members' rates should differ"
    assert rates == [[row["event_lr"] for row in r.history] for r in want]
    assert_same_weights(got, want, atol=1e-3)


def test_without_validation_every_member_runs_max_epochs(data):
    cfg = config(max_epochs=5)
    seeds = np.random.SeedSequence(4).spawn(3)
    got = batched(cfg, data, seeds, with_valid=False)
    assert [(r.n_epochs, r.best_epoch, r.best_valid_loss) for r in got] == [(5, 5, None)] * 3
    assert_same_weights(got, sequential(cfg, data, seeds, with_valid=False), atol=1e-4)


def test_training_ends_at_stop_after_with_the_best_weights_so_far(data):
    # Past stop_after, every member stops as if early-stopped (after the epoch that passed
    # it) and keeps its best epoch's weights; past time_limit, training is an error.
    from autodeuq.exceptions import TimeLimitExceeded

    cfg = config(max_epochs=50)
    X, y, train, valid = data
    stopped = train_networks(cfg, X, y, train, valid, seeds=[1, 2, 3], stop_after=0.0)
    assert [len(t.history) for t in stopped] == [1, 1, 1]
    assert [t.best_epoch for t in stopped] == [1, 1, 1]
    one_epoch = train_networks(config(max_epochs=1), X, y, train, valid, seeds=[1, 2, 3])
    assert_same_weights(stopped, one_epoch, atol=1e-6)
    full = train_networks(cfg, X, y, train, valid, seeds=[1, 2, 3])
    assert min(len(t.history) for t in full) > 1
    with pytest.raises(TimeLimitExceeded, match=r"past its time limit of 0\.0s, after 1 epochs"):
        train_networks(cfg, X, y, train, valid, seeds=[1, 2, 3], time_limit=0.0)


def test_dropout_members_differ_but_same_seed_same_result(data):
    cfg = config(layers=[{**layer, "dropout": 0.2} for layer in LAYERS])
    seeds = np.random.SeedSequence(5).spawn(3)
    first, again = batched(cfg, data, seeds), batched(cfg, data, seeds)
    assert_same_weights(first, again, atol=0)
    other = batched(cfg, data, np.random.SeedSequence(6).spawn(3))
    assert not torch.equal(first[0].module.head.weight, other[0].module.head.weight)
    heads = [r.module.head.weight for r in first]
    assert not torch.allclose(heads[0], heads[1])


def test_torch_global_random_state_is_left_alone(data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    batched(config(max_epochs=1), data, [0, 1, 2])
    torch.testing.assert_close(torch.rand(3), expected)


def test_divergence_names_the_member(data):
    cfg = config(optimizer="sgd", learning_rate=1e8, max_epochs=20)
    with pytest.raises(TrainingDivergedError, match="member"):
        batched(cfg, data, [0, 1, 2])


def test_verbose_logs_every_epoch(data, caplog):
    X, y, train, valid = data
    with caplog.at_level(logging.INFO, logger="autodeuq.nn._batched"):
        train_networks(config(max_epochs=2), X, y, train, valid, seeds=[0, 1, 2], verbose=1)
    assert sum("valid_loss" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"seeds": []}, "seeds must be a non-empty sequence"),
    ({"y": np.zeros(5)}, r"y must be of shape \(160,\)"),
    ({"train_index": np.zeros((2, 10), dtype=int)}, r"train_index must be an int array"),
    ({"train_index": np.full((3, 10), 999)}, r"train_index must be row indices"),
    ({"valid_index": np.zeros((3, 4))}, "valid_index must be an array of integer"),
])
def test_train_networks_refuses_bad_shapes(data, kwargs, match):
    X, y, train, valid = data
    args = {"y": y, "train_index": train, "valid_index": valid, "seeds": [0, 1, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        train_networks(config(), X, args.pop("y"), args.pop("train_index"), **args)


# -- DeepEnsembleRegressor ---------------------------------------------------------------------


def ensemble(**params):
    member = GaussianMLPRegressor(**{**FAST, "random_state": 0,
                                     **params.pop("member", {})})
    return DeepEnsembleRegressor(member, **{"n_members": 3, "random_state": 0, **params})


@pytest.fixture
def spy(monkeypatch):
    """Count the batched training runs."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs["seeds"])
        return train_networks(*args, **kwargs)

    monkeypatch.setattr(_deep_ensemble, "train_networks", counted)
    return calls


def test_auto_batches_copies_of_one_network(regression_data, spy):
    X, y, X_test, _ = regression_data
    est = ensemble().fit(X, y)
    assert [len(seeds) for seeds in spy] == [3]
    # Nothing to batch, several workers asked for, batching turned off: one by one.
    with joblib.parallel_config(backend="threading"):
        for params in ({"n_members": 1}, {"n_jobs": 2}, {"batched": False}):
            ensemble(**params).fit(X, y)
    assert len(spy) == 1
    # Members are the same fitted estimators as the ones trained one by one.
    alone = ensemble(batched=False).fit(X, y)
    for got, want in zip(est.estimators_, alone.estimators_, strict=True):
        assert type(got) is type(want)
        assert set(vars(got)) == set(vars(want))
        assert got.config_ == want.config_
        assert (got.y_mean_, got.y_scale_) == (want.y_mean_, want.y_scale_)
        assert got.module_.head.weight.dtype == torch.float64
        assert got.n_epochs_ == want.n_epochs_
    # Without dropout the ensembles agree to rounding.
    np.testing.assert_allclose(est.predict(X_test), alone.predict(X_test), rtol=1e-3, atol=1e-3)


def test_auto_trains_members_of_different_configurations_one_by_one(regression_data, spy):
    X, y, _, _ = regression_data
    members = [GaussianMLPRegressor(**FAST), GaussianMLPRegressor(**{**FAST, "dropout": 0.1})]
    est = DeepEnsembleRegressor(members=members, random_state=0).fit(X, y)
    assert not spy
    assert [m.config_["layers"][0]["dropout"] for m in est.estimators_] == [0.0, 0.1]


def test_batched_agrees_in_distribution_with_sequential(regression_data):
    # With dropout the two paths draw different masks: compare what users look at.
    X, y, X_test, y_test = regression_data
    member = {"dropout": 0.1, "max_epochs": 60, "patience": 15}
    runs = {mode: ensemble(n_members=6, batched=mode, member=member).fit(X, y)
            for mode in (True, False)}
    nlls = {mode: np.array([m.validation_nll_ for m in est.estimators_])
            for mode, est in runs.items()}
    spread = np.sqrt((nlls[True].var(ddof=1) + nlls[False].var(ddof=1)) / 6)
    assert abs(nlls[True].mean() - nlls[False].mean()) < 4 * spread + 0.05
    preds = {mode: est.predict(X_test) for mode, est in runs.items()}
    assert np.sqrt(np.mean((preds[True] - preds[False]) ** 2)) < 0.25 * np.std(y_test)
    epochs = [m.n_epochs_ for m in runs[True].estimators_]
    assert len(set(epochs)) > 1, "each member should stop on its own"
    weights = [m.module_.head.weight for m in runs[True].estimators_]
    assert all(not torch.allclose(weights[0], w) for w in weights[1:])


def test_batched_ensemble_same_seed_same_result(regression_data):
    X, y, X_test, _ = regression_data
    first = ensemble(random_state=1, batched=True, member={"dropout": 0.1})
    p1, p2, p3 = (est.fit(X, y).predict(X_test) for est in
                  (first, clone(first), clone(first).set_params(random_state=2)))
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_batched_ensemble_pickles_and_saves(regression_data, tmp_path):
    X, y, X_test, _ = regression_data
    est = ensemble(batched=True).fit(X, y)
    expected = est.predict_uncertainty(X_test)
    est.save(tmp_path / "model.autodeuq")
    for other in (pickle.loads(pickle.dumps(est)), autodeuq.load(tmp_path / "model.autodeuq")):
        for got, want in zip(other.predict_uncertainty(X_test), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert autodeuq.load(tmp_path / "model.autodeuq").batched is True


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(_deep_ensemble, "train_networks", refuse)
    monkeypatch.setattr(_deep_ensemble, "_fit_member", refuse)


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(("params", "match"), [
    ({"batched": "yes"}, "batched must be 'auto', True or False; got 'yes'"),
    ({"batched": 1}, "batched must be 'auto', True or False; got 1"),
    ({"batched": True, "n_jobs": 2}, "n_jobs=2"),
    ({"batched": True, "members": [{"layers": [{"units": 4}]}, {"layers": [{"units": 8}]}]},
     r"members\[1\] differs from members\[0\] in \['layers'\]"),
    ({"batched": True, "members": [GaussianMLPRegressor(**FAST),
                                   GaussianMLPRegressor(**FAST, validation_fraction=0.2)]},
     r"members\[1\] differs .* validation_fraction"),
])
def test_batched_parameter_is_checked_before_training(regression_data, params, match):
    X, y, _, _ = regression_data
    if "members" in params:
        params = {**params, "n_members": None}
    with pytest.raises(ValueError, match=match):
        ensemble(**params).fit(X, y)


@pytest.mark.usefixtures("no_training")
def test_batched_refuses_too_few_rows_before_training():
    est = ensemble(batched=True, member={"validation_fraction": 0.6})
    with pytest.raises(ValueError, match="2 sample"):
        est.fit(np.zeros((2, 3)), np.arange(2.0))
