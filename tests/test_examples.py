"""The examples and benchmarks run end to end (at tiny budgets), so they cannot rot."""

import ast
import json
import re
import sys

import numpy as np
import pytest
from conftest import ROOT, load


def test_tutorial_demo(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "bands.png"
    load("examples/tutorial_deep_ensemble.py").main(
        ["--members", "2", "--max-epochs", "40", "--out", str(figure)])
    out = capsys.readouterr().out
    assert "inside training range" in out
    assert "epistemic std outside / inside" in out
    assert figure.stat().st_size > 10_000


def test_autodeuq_demo(tmp_path, capsys, client):
    """`make demo`'s script at a tiny budget, on the session's Dask cluster (made active, so
    AutoDEUQRegressor uses it instead of starting one)."""
    pytest.importorskip("matplotlib")
    figure = tmp_path / "demo.png"
    with client.as_current():
        load("examples/demo_autodeuq.py").main(
            ["--max-evals", "4", "--time-budget", "20", "--max-epochs", "5", "--n-jobs", "1",
             "--members", "3", "--out", str(figure)])
    out = capsys.readouterr().out
    for model in ("baseline (1 network)", "deep ensemble (3 random inits)", "AutoDEUQ ("):
        assert model in out
    assert re.search(r"^  w=[01]\.\d\d  \d+ layers?: \d+ \w+", out, re.MULTILINE)
    assert "inside training range" in out
    assert "epistemic std outside / inside the training range, AutoDEUQ" in out
    assert figure.stat().st_size > 10_000


def test_training_benchmark(capsys):
    load("benchmarks/bench_training.py").main(
        ["--rows", "256", "--epochs", "2", "--repeats", "1", "--batch-sizes", "64"])
    last = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert last[0] == "64"
    assert all(np.isfinite(float(v)) and float(v) > 0 for v in last[1:])


def _tiny_uci(directory, seed):
    """A 60-row linear "yacht.npz" in ``directory`` with two splits of 6 test rows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=60)
    masks = np.zeros((2, 60), dtype=bool)
    masks[0, :6] = masks[1, 6:12] = True
    np.savez(directory / "yacht.npz", X=X, y=y, test_mask=masks)


def test_uci_benchmark(tmp_path, capsys):
    _tiny_uci(tmp_path, seed=0)
    # One split: four fits, two of them searches on clusters of their own, took 50 s with
    # two; test_uci_benchmark_seeds checks how splits are combined.
    load("benchmarks/bench_uci.py").main(
        ["--data-dir", str(tmp_path), "--datasets", "yacht", "--splits", "0",
         "--estimators", "gaussian_mlp", "deep_ensemble", "nas", "autodeuq",
         "--max-epochs", "3",
         "--time-budget", "3",
         "--json", str(tmp_path / "rows.json")])
    table = capsys.readouterr().out
    assert "| yacht | gaussian_mlp | 1 |" in table
    assert "| yacht | deep_ensemble | 1 |" in table
    assert "Deep Ensembles (published)" in table
    assert "| yacht | nas | 1 |" in table
    assert "| yacht | autodeuq | 1 |" in table
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 4
    # What the searches did within the budget, the candidates rescored included.
    searched = [r for r in rows if r["estimator"] in ("nas", "autodeuq")]
    assert all(r["trials"] >= 1 and r["rescored"] >= 0 for r in searched)
    assert not any("rescored" in r for r in rows if r not in searched)
    # The estimators' own intervals: the mixture's where nothing calibrates them.
    assert all(0 <= r["interval_coverage"] <= 1 for r in rows)
    assert all(abs(r["interval_coverage"] - r["coverage"]) <= 1 / 6 for r in rows
               if r not in searched)
    assert "| 90% coverage (predict_interval) | 90% coverage (mixture) |" in table


def test_uci_benchmark_seeds(tmp_path, capsys):
    """--seeds K: K runs per split from distinct seeds, a split's numbers their mean."""
    _tiny_uci(tmp_path, seed=1)
    bench = load("benchmarks/bench_uci.py")
    bench.main(["--data-dir", str(tmp_path), "--datasets", "yacht", "--splits", "0", "1",
                "--estimators", "gaussian_mlp", "--max-epochs", "3", "--seeds", "2",
                "--json", str(tmp_path / "rows.json")])
    table = capsys.readouterr().out
    assert "| yacht | gaussian_mlp | 2 | 2 |" in table
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert sorted((r["split"], r["seed"]) for r in rows) == [(0, 0), (0, 1000), (1, 1), (1, 1001)]
    merged = bench.per_split(rows)
    split0 = [r["nll"] for r in rows if r["split"] == 0]
    assert merged[0]["nll"] == pytest.approx(np.mean(split0))
    assert merged[0]["seed_sd"] == pytest.approx(np.std(split0, ddof=1))
    assert merged[0]["runs"] == 2
    # --first-seed N: runs added later draw the seeds after those drawn before.
    bench.main(["--data-dir", str(tmp_path), "--datasets", "yacht", "--splits", "0",
                "--estimators", "gaussian_mlp", "--max-epochs", "3", "--seeds", "1",
                "--first-seed", "2", "--json", str(tmp_path / "more.json")])
    more = json.loads((tmp_path / "more.json").read_text())
    assert [(r["split"], r["seed"]) for r in more] == [(0, 2000)]
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--first-seed", "-1"])
    assert "--first-seed must be an int >= 0" in capsys.readouterr().err


# -- the workshop's steps: examples/plot_NN_*.py ---------------------------------------------

WORKSHOP = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("plot_*.py"))


@pytest.fixture
def figure(tmp_path):
    """A path for an example's --out figure; every figure left open is closed after."""
    plt = pytest.importorskip("matplotlib.pyplot")
    yield tmp_path / "figure.png"
    plt.close("all")


def test_workshop_steps_are_gallery_scripts():
    """Each step sorts in order, opens with a sphinx-gallery title and a paragraph, and guards
    its work from Dask's worker processes, which import the main module again."""
    assert [re.match(r"examples/plot_(\d\d)_", path).group(1) for path in WORKSHOP] == [
        f"{i:02d}" for i in range(1, len(WORKSHOP) + 1)]
    assert len(WORKSHOP) == 8
    for path in WORKSHOP:
        tree = ast.parse((ROOT / path).read_text())
        title, underline, blank, paragraph = ast.get_docstring(tree).splitlines()[:4]
        assert set(underline) == {"="}, path
        assert len(underline) >= len(title), path
        assert not blank, path
        assert paragraph, path
        guards = [node for node in tree.body if isinstance(node, ast.If)
                  and ast.unparse(node.test) == "__name__ == '__main__'"]
        assert len(guards) == 1, path


def test_toy_data_example(figure, capsys):
    result = load("examples/plot_01_toy_data.py").main(["--out", str(figure)])
    # The generator's noise levels, measured back from the data.
    assert result["noise"]["left island"] == pytest.approx(0.5, abs=0.1)
    assert result["noise"]["right island"] == pytest.approx(1.0, abs=0.15)
    assert result["inside_fraction"] == pytest.approx(0.25, abs=0.01)
    assert result["x_scaled_mean"] == pytest.approx(0.0, abs=1e-9)
    assert result["x_scaled_std"] == pytest.approx(1.0)
    assert "out of distribution" in capsys.readouterr().out
    assert figure.stat().st_size > 10_000


def test_baseline_network_example(figure, capsys):
    result = load("examples/plot_02_baseline_network.py").main(
        ["--max-epochs", "30", "--out", str(figure)])
    est = result["estimator"]
    assert len(est.history_) == est.n_epochs_ <= 30
    assert 1 <= est.best_epoch_ <= est.n_epochs_
    assert np.isfinite(result["rmse_inside"])
    assert np.isfinite(result["rmse_outside"])
    assert result["std_inside"] > 0
    assert result["std_outside"] > 0
    out = capsys.readouterr().out
    assert "held-out tenth" in out
    assert "RMSE of the mean" in out
    assert figure.stat().st_size > 10_000


def test_nas_example(figure, capsys, client):
    """On the session's Dask cluster (made active, so the search uses it)."""
    with client.as_current():
        result = load("examples/plot_03_search_space_nas.py").main(
            ["--max-evals", "4", "--time-budget", "600", "--max-epochs", "5", "--max-layers",
             "2", "--out", str(figure)])
    results, nas = result["results"], result["estimator"]
    assert len(results) == 4
    assert set(results["p:max_epochs"]) == {5}
    assert results["p:num_layers"].between(1, 2).all()
    # The kept network is one of the candidates, scored as the table says.
    [winner] = results.index[np.isclose(results["valid_nll"], -nas.best_score_)]
    assert results.loc[winner, "p:num_layers"] == nas.best_params_["num_layers"]
    assert len(nas.best_config_["layers"]) == nas.best_params_["num_layers"]
    out = capsys.readouterr().out
    assert "SearchSpace(" in out
    assert "the five best by validation NLL" in out
    assert figure.stat().st_size > 10_000


def test_uncertainty_baseline_example(figure, capsys):
    result = load("examples/plot_04_uncertainty_baseline.py").main(
        ["--seeds", "2", "--max-epochs", "150", "--out", str(figure)])
    for unc in result["predictions"].values():
        assert np.all(unc.epistemic_std == 0.0)
        np.testing.assert_allclose(unc.total_std, unc.aleatoric_std)
    # Networks from two seeds disagree more, relative to their own std, off the data.
    assert result["disagreement"]["outside"] > result["disagreement"]["inside"]
    assert "a single network has no epistemic part" in capsys.readouterr().out
    assert figure.stat().st_size > 10_000


def test_deep_ensemble_example(figure, capsys):
    result = load("examples/plot_05_deep_ensemble.py").main(
        ["--members", "3", "--max-epochs", "150", "--out", str(figure)])
    assert len(result["member_nll"]) == 3
    # The mixture's log-likelihood is at least its members' average (Jensen).
    assert result["ensemble_nll"] <= np.mean(result["member_nll"]) + 1e-9
    assert result["epistemic"]["outside"] > result["epistemic"]["inside"] > 0
    out = capsys.readouterr().out
    assert "epistemic std outside / inside the training range" in out
    assert figure.stat().st_size > 10_000


def test_autodeuq_example(figure, capsys, client):
    with client.as_current():
        result = load("examples/plot_06_autodeuq.py").main(
            ["--max-evals", "2", "--time-budget", "600", "--max-epochs", "100", "--max-layers",
             "1", "--ensemble-size", "2", "--out", str(figure)])
    assert len(result["estimator"].members_) == 2
    assert result["epistemic_outside"] > result["epistemic_inside"] > 0
    out = capsys.readouterr().out
    assert "the gap (-20, 20)" in out
    assert "epistemic std outside / inside" in out
    assert figure.stat().st_size > 10_000


def test_composition_example(figure, capsys):
    result = load("examples/plot_07_sklearn_composition.py").main(
        ["--max-epochs", "5", "--cv", "2", "--members", "2", "--out", str(figure)])
    search = result["search"]
    assert len(search.cv_results_["params"]) == 4
    # Chosen by NLL, not by the default R2.
    assert search.best_index_ == int(np.argmax(search.cv_results_["mean_test_nll"]))
    assert search.best_estimator_.named_steps["net"].n_features_in_ == 1
    assert sorted(result["held_out"]) == ["left", "right"]  # one fold per island
    for scores in result["cv_scores"].values():
        assert len(scores) == 2
        assert np.all(np.isfinite(scores))
    assert "cross_val_score with GroupKFold" in capsys.readouterr().out
    assert figure.stat().st_size > 10_000


def test_conformal_example(figure, capsys):
    pytest.importorskip("mapie")
    result = load("examples/plot_08_conformal_mapie.py").main(
        ["--members", "2", "--max-epochs", "150", "--out", str(figure)])
    # MAPIE's std-normalized split conformal is mean ± q std, q a quantile of the scores.
    assert result["by_hand_gap"] < 1e-8
    intervals = result["intervals"]
    absolute = intervals["MAPIE split conformal, 'absolute' score"]
    normalized = intervals["MAPIE split conformal, 'std_normalized' score"]
    calibrated = intervals["the ensemble's own, after calibrate_intervals"]
    for r in (absolute, normalized, calibrated):  # 90% on average over draws; 200 points here
        assert r["coverage"] >= 0.8
    assert absolute["width_left"] == pytest.approx(absolute["width_right"])
    assert "width off data" in capsys.readouterr().out
    assert figure.stat().st_size > 10_000


def test_conformal_example_without_mapie(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mapie", None)  # import mapie now raises ImportError
    monkeypatch.setitem(sys.modules, "mapie.regression", None)
    assert load("examples/plot_08_conformal_mapie.py").main([]) is None
    assert "pip install 'autodeuq[conformal]'" in capsys.readouterr().out
