"""The examples and benchmarks run end to end (at tiny budgets), so they cannot rot."""

import re

import numpy as np
import pytest
from conftest import load


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


def test_uci_benchmark(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=60)
    masks = np.zeros((2, 60), dtype=bool)
    masks[0, :6] = masks[1, 6:12] = True
    np.savez(tmp_path / "yacht.npz", X=X, y=y, test_mask=masks)
    load("benchmarks/bench_uci.py").main(
        ["--data-dir", str(tmp_path), "--datasets", "yacht", "--splits", "0", "1",
         "--estimators", "gaussian_mlp", "deep_ensemble", "nas", "autodeuq",
         "--max-epochs", "3",
         "--time-budget", "3",
         "--json", str(tmp_path / "rows.json")])
    table = capsys.readouterr().out
    assert "| yacht | gaussian_mlp | 2 |" in table
    assert "| yacht | deep_ensemble | 2 |" in table
    assert "Deep Ensembles (published)" in table
    assert "| yacht | nas | 2 |" in table
    assert "| yacht | autodeuq | 2 |" in table
    assert (tmp_path / "rows.json").read_text().count('"split"') == 8
