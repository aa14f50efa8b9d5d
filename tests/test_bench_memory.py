"""benchmarks/bench_memory.py runs end to end (at a tiny budget), so it cannot rot."""

import json
import math

from conftest import load


def test_memory_benchmark(tmp_path, capsys):
    out = tmp_path / "memory.json"
    load("benchmarks/bench_memory.py").main(
        ["--evals", "6", "--rows", "300", "--json", str(out)])
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")}
    assert set(rows) == {"bounded", "unbounded", "checkpoint (checkpoint_dir)"}
    for line in rows.values():
        cells = [c.strip() for c in line.strip().strip("|").split("|")[1:]]
        assert len(cells) == 9  # max_in_memory, before, 3 peaks, slope, VmHWM, workers, s
        values = [float(c) for c in cells]
        assert all(math.isfinite(v) for v in values)
        assert all(v > 0 for i, v in enumerate(values) if i != 5)  # the slope may be <= 0
    assert "ratio" in table
    assert "as journaled" in table
    runs = json.loads(out.read_text())
    assert [r["variant"] for r in runs] == ["bounded", "unbounded", "checkpoint"]
    assert all(r["n_candidates"] == 6 and r["finished_counted"] == 6 for r in runs)
