"""benchmarks/bench_scaling.py: its exponent, its command line and (slow) a tiny full run."""

import json
import math
import re

import pytest
from conftest import load


@pytest.fixture(scope="module")
def bench():
    return load("benchmarks/bench_scaling.py")


def test_exponent_is_the_power_of_a_power_law(bench):
    sizes = [1_000, 3_000, 10_000, 30_000]
    assert bench.exponent(sizes, [2e-3 * s for s in sizes]) == pytest.approx(1.0)
    assert bench.exponent(sizes, [7e-6 * s**2 for s in sizes]) == pytest.approx(2.0)
    assert bench.exponent(sizes, [4.0] * len(sizes)) == pytest.approx(0.0, abs=1e-12)
    # Non-positive or missing costs are left out; fewer than two points give no exponent.
    assert bench.exponent(sizes, [None, -1.0, 0.0, 5.0]) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "1000"], "--rows needs at least two sizes, each >= 100"),
    (["--evals", "50", "2"], "--evals needs at least two sizes, each >= 5"),
    (["--skip-rows", "--skip-evals"], "leave nothing to run"),
    (["--workers", "0"], "--workers must be >= 1; got 0"),
])
def test_bad_arguments_are_refused_before_any_fit(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _table(text, first_header):
    """The data rows of the markdown table whose header starts with ``| first_header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip().strip("|").split("|")),
                             strict=True)))
    return rows


# Four fits, each in a fresh interpreter that starts its own two Dask workers: about 50 s of
# CPU time (measured), so over 30 s on two cores; not in `make test`
# (`pytest -m slow tests/test_bench_scaling.py` runs it).
@pytest.mark.slow
def test_scaling_benchmark_runs_end_to_end(bench, tmp_path, capsys):
    out = tmp_path / "scaling.json"
    bench.main(["--rows", "200", "400", "--evals", "6", "12", "--json", str(out)])
    text = capsys.readouterr().out

    for sweep, sizes, unit_column in (("rows", [200, 400], "s / candidate-epoch"),
                                      ("evals", [6, 12], "overhead s / eval")):
        rows = _table(text, sweep)
        assert [int(r[sweep]) for r in rows] == sizes
        assert [float(r["size ratio"]) for r in rows] == [1.0, 2.0]
        for r in rows:
            for column in ("fit s", "time ratio", "time ratio / size ratio",
                           "main RSS peak MB", "tree RSS peak MB"):
                assert float(r[column]) > 0, (sweep, column, r)
            assert math.isfinite(float(r[unit_column]))
        assert float(rows[0]["time ratio"]) == 1.0
        # The exponent of the fit time is printed under each table as a number.
        found = re.search(rf"cost ~ {sweep}\^b.*?\n- fit s: (-?[0-9.]+) / (-?[0-9.]+)", text,
                          re.S)
        assert found, text
        assert all(math.isfinite(float(g)) for g in found.groups())

    report = json.loads(out.read_text())
    assert set(report) == {"rows", "evals"}
    for sweep, sizes in (("rows", [200, 400]), ("evals", [6, 12])):
        runs = report[sweep]["runs"]
        assert [r["size"] for r in runs] == sizes
        for r in runs:
            assert r["n_trials"] == (bench.ROWS_MAX_EVALS if sweep == "rows" else r["size"])
            assert r["wall_time"] >= r["search_time"] > 0
            assert r["main_peak_rss"] >= r["rss_before_fit"] > 0
            assert r["tree_peak_rss"] > 0
        slopes = report[sweep]["exponents"]
        assert math.isfinite(slopes["wall_time"]["all"])
    rows_runs = report["rows"]["runs"]
    assert [r["rows"] for r in rows_runs] == [200, 400]
    # Every candidate of the rows sweep trains exactly its fixed number of epochs.
    assert all(r["candidate_epochs"] == bench.ROWS_MAX_EVALS * bench.ROWS_EPOCHS
               for r in rows_runs if r["statuses"] == {"success": bench.ROWS_MAX_EVALS})
