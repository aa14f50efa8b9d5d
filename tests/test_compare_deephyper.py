"""benchmarks/compare_deephyper.py: its own logic, without DeepHyper (fast).

The data the harness hands to autodeuq and to the DeepHyper peer, the tables it builds, its
command line, its memory probe; and that the peer's network (plain torch, in
benchmarks/peers/deephyper_autodeuq.py) is autodeuq's network.
"""

import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT, load

from autodeuq import AutoDEUQRegressor
from autodeuq.estimators import _search_base
from autodeuq.nn import GaussianMLP, gaussian_nll_loss
from autodeuq.space import SearchSpace, default_space, to_network_config
from autodeuq.uncertainty import NormalMixture


@pytest.fixture(scope="module")
def harness():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))  # it imports bench_uci, its sibling
        yield load("benchmarks/compare_deephyper.py")


@pytest.fixture(scope="module")
def peer():
    return load("benchmarks/peers/deephyper_autodeuq.py")


@pytest.fixture
def data_dir(tmp_path):
    """Three datasets in the UCI file format, 4 splits each."""
    rng = np.random.default_rng(0)
    for name in ("yacht", "energy", "concrete"):
        X = rng.normal(size=(40, 3))
        np.savez(tmp_path / f"{name}.npz", X=X, y=X @ [1.0, -2.0, 0.5],
                 test_mask=np.arange(40)[None, :] % 4 == np.arange(4)[:, None])
    return tmp_path


def _raw_split(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[5.0, -3.0, 100.0], scale=[2.0, 0.5, 30.0], size=(50, 3))
    y = 10.0 + 4.0 * X[:, 0] + rng.normal(size=50)
    return X[:40], y[:40], X[40:], y[40:]


def test_scaling_uses_the_training_split_only(harness):
    X_train, y_train, X_test, y_test = _raw_split()
    scaled = harness.scale_split(X_train, y_train, X_test, y_test)
    np.testing.assert_allclose(scaled.X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.X_train.std(axis=0), 1.0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    np.testing.assert_allclose(scaled.X_test, (X_test - mean) / std)
    np.testing.assert_allclose(scaled.y_train, (y_train - y_train.mean()) / y_train.std())
    np.testing.assert_array_equal(scaled.y_test, y_test)  # metrics are in original units
    back = scaled.to_original(NormalMixture(np.zeros(2), np.ones(2)))
    np.testing.assert_allclose(back.mean, y_train.mean())
    np.testing.assert_allclose(back.std, y_train.std())


def test_metrics_are_in_original_units(harness):
    X_train, y_train, X_test, y_test = _raw_split()
    scaled = harness.scale_split(X_train, y_train, X_test, y_test)
    mixture = NormalMixture(np.full(len(y_test), 0.1), np.full(len(y_test), 0.5))
    scores = harness.metrics(scaled, mixture)
    s = scaled.y_scale
    in_units = NormalMixture(scaled.y_mean + s * 0.1 * np.ones(len(y_test)),
                             s * 0.5 * np.ones(len(y_test)))
    nll = -np.mean(np.log(in_units.pdf(y_test)))
    assert scores["nll"] == pytest.approx(nll)
    # NLL in original units = NLL in standardized units + log(std of y).
    standardized = (y_test - scaled.y_mean) / s
    nll_std = np.mean(0.5 * np.log(2 * np.pi * 0.25) + (standardized - 0.1) ** 2 / 0.5)
    assert scores["nll"] == pytest.approx(nll_std + math.log(s))
    assert scores["rmse"] == pytest.approx(
        np.sqrt(np.mean((y_test - scaled.y_mean - s * 0.1) ** 2)))


def test_peer_gets_the_same_scaled_data_split_as_autodeuq(harness, monkeypatch):
    X_train, y_train, X_test, y_test = _raw_split()
    scaled = harness.scale_split(X_train, y_train, X_test, y_test)
    train, valid = harness.inner_split(len(scaled.X_train), 3)
    arrays = harness.peer_arrays(scaled, train, valid)
    assert len(valid) == math.ceil(0.2 * len(scaled.X_train))
    assert sorted([*train, *valid]) == list(range(len(scaled.X_train)))
    np.testing.assert_array_equal(arrays["X_train"], scaled.X_train[train].astype(np.float32))
    np.testing.assert_array_equal(arrays["y_valid"], scaled.y_train[valid].astype(np.float32))
    np.testing.assert_array_equal(arrays["X_test"], scaled.X_test.astype(np.float32))

    # The split is the one AutoDEUQRegressor(random_state=3) draws for the same data.
    drawn = []
    real = _search_base.holdout_split

    def spy(*args):
        drawn.append(real(*args))
        return drawn[-1]

    monkeypatch.setattr(_search_base, "holdout_split", spy)
    space = default_space(max_layers=1)
    tiny = SearchSpace({**space.dimensions, "max_epochs": 2, "units_1": 8},
                       conditions=dict(space.conditions))
    AutoDEUQRegressor(search_space=tiny, max_evals=1, backend="serial", random_state=3,
                      initial_configs=None, refit=False, ensemble_size=1).fit(
        scaled.X_train, scaled.y_train)
    np.testing.assert_array_equal(drawn[0][0], train)
    np.testing.assert_array_equal(drawn[0][1], valid)


def test_first_candidate_is_in_the_space(harness):
    space = default_space()
    config = harness.first_candidate(space)
    space.validate(config)
    assert config["num_layers"] == 2
    assert config["units_1"] == 128


def _fake_rows():
    rows = []
    for split, (nll, wall) in enumerate([(1.0, 100.0), (1.2, 110.0)]):
        common = {"dataset": "yacht", "split": split, "nll_moment_matched": nll + 0.1,
                  "rmse": 0.5, "coverage": 0.9, "peak_memory_mb": 1000.0}
        rows.append({**common, "model": "autodeuq", "nll": nll, "wall_time": wall,
                     "n_candidates": 40 + split, "n_trials": 42, "busy_time": 1.5 * wall,
                     "workers": 2, "search_time": 80.0, "after_search_time": wall - 80.0})
        rows.append({**common, "model": "deephyper", "nll": nll + 1, "wall_time": wall,
                     "n_candidates": 10, "n_trials": 12, "busy_time": wall, "workers": 2,
                     "search_time": 90.0, "after_search_time": wall - 90.0, "n_asks": 12,
                     "ask_time": 70.0, "n_failed": 2})
        rows.append({**common, "model": "deep_ensemble", "nll": nll + 2, "wall_time": 30.0,
                     "n_candidates": 5, "n_trials": 5, "busy_time": None, "workers": 1})
    return rows


def test_summary_tables_from_fake_results(harness):
    markdown, summary = harness.summarize(_fake_rows())
    scores, timing = markdown.split("Where the time goes")
    lines = {line.split("|")[2].strip(): line for line in scores.splitlines()
             if line.startswith("| yacht |")}
    cells = [c.strip() for c in lines["autodeuq"].strip().strip("|").split("|")]
    # dataset, model, splits, NLL, NLL mm, RMSE, coverage, candidates, utilization, MB, wall
    assert cells[2:] == ["2", "1.100 ± 0.141", "1.200 ± 0.141", "0.500 ± 0.000",
                         "0.900 ± 0.000", "40.5", "0.75", "1000", "105.0"]
    deephyper = [c.strip() for c in lines["deephyper"].strip().strip("|").split("|")]
    assert deephyper[3] == "2.100 ± 0.141"
    assert deephyper[8] == "0.50"
    baseline = [c.strip() for c in lines["deep_ensemble"].strip().strip("|").split("|")]
    assert baseline[8] == "n/a"  # no trials, no utilization
    assert "*Deep Ensembles (published)*" in markdown
    assert "| yacht | deephyper | 105.0 | 90.0 | 15.0 | 12 | 70.0 | 12.0 | 2.0 |" in timing
    assert "deep_ensemble" not in timing

    by_model = {entry["model"]: entry for entry in summary}
    assert by_model["autodeuq"]["nll"] == pytest.approx(1.1)
    assert by_model["autodeuq"]["nll_sd"] == pytest.approx(math.sqrt(0.02))
    assert by_model["autodeuq"]["utilization"] == pytest.approx(0.75)
    assert by_model["deephyper"]["n_candidates"] == 10
    assert by_model["deep_ensemble"]["utilization"] is None


def test_tables_are_written_with_the_failed_runs(harness, tmp_path):
    failure = {"dataset": "yacht", "model": "deephyper", "split": 2, "error": "RuntimeError: x"}
    markdown = harness.write_tables(tmp_path, _fake_rows(), [failure], {"time_budget": 60})
    assert (tmp_path / "table.md").read_text() == markdown + "\n"
    assert "- yacht split 2 deephyper: RuntimeError: x" in markdown.split("Runs that failed")[1]
    written = json.loads((tmp_path / "table.json").read_text())
    assert written["failures"] == [failure]
    assert written["meta"] == {"time_budget": 60}
    assert len(written["rows"]) == 6
    assert {e["model"] for e in written["summary"]} == set(harness.MODELS)


def test_command_line_defaults(harness, data_dir):
    args = harness.parse_args(["--data-dir", str(data_dir)])
    assert args.datasets == ["yacht", "energy", "concrete"]
    assert args.splits == [0, 1, 2]
    assert args.time_budget == 300.0
    assert args.workers == 2
    assert args.models == ["autodeuq", "deephyper", "deep_ensemble"]
    assert args.max_evals is None
    assert harness.build_parser().parse_args([]).data_dir == harness.DEFAULT_DATA_DIR
    args = harness.parse_args(["--data-dir", str(data_dir), "--datasets", "energy", "--splits",
                               "3", "--time-budget", "60", "--workers", "1", "--models",
                               "deephyper"])
    assert (args.datasets, args.splits, args.time_budget, args.workers, args.models) == (
        ["energy"], [3], 60.0, 1, ["deephyper"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "--workers must be an int >= 1; got 0"),
    (["--time-budget", "0"], "--time-budget must be a number of seconds > 0; got 0.0"),
    (["--max-evals", "0"], "--max-evals must be an int >= 1; got 0"),
    (["--splits", "4"], "--splits must be in [0, 3] for yacht; got [4]"),
    (["--datasets", "kin8nm"], "--datasets kin8nm: no file"),
])
def test_command_line_errors(harness, data_dir, capsys, argv, message):
    with pytest.raises(SystemExit):
        harness.parse_args(["--data-dir", str(data_dir), *argv])
    assert message in capsys.readouterr().err


def test_bad_data_dir_is_refused(harness, tmp_path, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args(["--data-dir", str(tmp_path / "missing")])
    assert "--data-dir must be a folder" in capsys.readouterr().err


def test_searches_take_turns_going_first(harness):
    assert harness._order(harness.MODELS, 0) == ["autodeuq", "deephyper", "deep_ensemble"]
    assert harness._order(harness.MODELS, 1) == ["deephyper", "autodeuq", "deep_ensemble"]
    assert harness._order(["deep_ensemble", "autodeuq"], 1) == ["autodeuq", "deep_ensemble"]


def test_peak_memory_sees_an_allocation(harness):
    with harness.PeakMemory(interval=0.05) as memory:
        before = memory.sample()
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        memory.sample()
        del block
    assert memory.peak_bytes >= before + 60 * 2**20
    assert "psutil" in memory.method


def test_peer_network_is_autodeuqs(peer):
    """Same layers, parameter names, initialisation of the variance head, outputs and loss."""
    rng = np.random.default_rng(1)
    space = default_space(max_layers=4)
    X = torch.as_tensor(rng.normal(size=(7, 3)), dtype=torch.float32)
    y = torch.as_tensor(rng.normal(size=7), dtype=torch.float32)
    for _ in range(10):
        flat = space.sample(rng)
        layers = to_network_config(flat)["layers"]
        assert peer.network_layers(flat) == layers
        ours, theirs = GaussianMLP(3, layers), peer.make_model(flat, 3, 1e-6)
        theirs.load_state_dict(ours.state_dict())  # the same names and shapes
        ours.eval()
        theirs.eval()
        with torch.no_grad():
            for a, b in zip(ours(X), theirs(X), strict=True):
                torch.testing.assert_close(a, b)
            torch.testing.assert_close(peer.gaussian_nll(*theirs(X), y),
                                       gaussian_nll_loss(*ours(X), y))
        with torch.no_grad():
            fresh_var = peer.make_model(flat, 3, 1e-6).head.bias[1].detach()
        assert float(torch.nn.functional.softplus(fresh_var)) == pytest.approx(1.0)


def test_peer_training_stops_early_and_at_the_deadline(peer):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 2)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.normal(size=60)).astype(np.float32)
    data = {"X_train": X[:45], "y_train": y[:45], "X_valid": X[45:], "y_valid": y[45:]}
    params = {"num_layers": 1, "units_1": 8, "activation_1": "tanh", "dropout_1": 0.0,
              "optimizer": "adam", "learning_rate": 1e-2, "batch_size": 16,
              "weight_decay": 1e-8, "max_epochs": 200, "patience": 3, "lr_schedule": "none"}
    model, best, n_epochs, best_epoch = peer.train(params, data, seed=0)
    assert math.isfinite(best)
    assert 1 <= best_epoch <= n_epochs <= 200
    assert n_epochs == 200 or n_epochs - best_epoch == 3  # patience 3
    with torch.no_grad():
        valid = float(peer.gaussian_nll(*model(torch.as_tensor(X[45:])), torch.as_tensor(y[45:])))
    assert valid == pytest.approx(best, rel=1e-5)  # the best epoch's weights are restored
    _, _, n_epochs, _ = peer.train(params, data, seed=0, deadline=0.0)  # already past
    assert n_epochs == 1
