"""benchmarks/bench_discard.py runs end to end (at a tiny budget, on synthetic data written as
a UCI file), so it cannot rot; and its summary over seeds counts what it says."""

import json
import math

import numpy as np
from conftest import load
from sklearn.datasets import make_friedman1

bench = load("benchmarks/bench_discard.py")


def test_median_ratio_counts_a_run_that_never_reached_as_infinite():
    assert bench.median_ratio([0.2, 0.4, 0.9]) == 0.4
    assert bench.median_ratio([0.2, None, 0.4]) == 0.4
    assert bench.median_ratio([0.2, float("nan"), 0.4, 0.3]) == 0.35
    assert bench.median_ratio([0.2, None, None]) is None
    assert bench.median_ratio([0.2, None]) is None  # the middle is infinite: "never"
    assert bench.mean_of([0.5, None, 0.7]) == "0.600 (1 without)"
    assert bench.mean_of([None, float("nan")]) == "none"


def test_discard_benchmark_over_two_seeds(tmp_path, capsys):
    X, y = make_friedman1(n_samples=120, n_features=6, noise=0.5, random_state=0)
    mask = np.zeros((1, 120), dtype=bool)
    mask[0, ::6] = True
    np.savez(tmp_path / "yacht.npz", X=X, y=y, test_mask=mask)
    out = tmp_path / "discard.json"
    bench.main(["--data-dir", str(tmp_path), "--datasets", "yacht", "--max-evals", "3",
                "--max-layers", "1", "--seeds", "0", "1", "--policies", "one_epoch",
                "--json", str(out)])
    printed = capsys.readouterr().out
    runs = json.loads(out.read_text())
    assert [(r["seed"], r["policy"]) for r in runs] == [
        (0, "none"), (0, "one_epoch"), (1, "none"), (1, "one_epoch")]
    for r in runs:
        assert r["dataset"] == "yacht"
        assert r["split"] == 0
        assert math.isfinite(r["best_nll"])
        assert r["search_seconds"] > 0
    for full in (r for r in runs if r["policy"] == "none"):
        assert full["trials"] == 3
        assert full["discarded"] == 0
        assert full["best_nll"] == full["target_nll"]
        assert full["ratio"] == 1.0
        # Half its time in, its best was no better than at the end.
        assert full["best_nll_half"] is None or full["best_nll_half"] >= full["best_nll"]
    summary = [line for line in printed.splitlines() if line.startswith("| yacht | ")
               and line.count("|") == 8]
    assert len(summary) == 2
    reached = sum(r["seconds_to_target"] is not None for r in runs if r["policy"] == "one_epoch")
    assert summary[0].startswith("| yacht | none | 2 of 2 | 1.00 |")
    assert summary[1].startswith(f"| yacht | one_epoch | {reached} of 2 |")
