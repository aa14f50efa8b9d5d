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


def test_memory_benchmark_python_objects(tmp_path, capsys):
    out = tmp_path / "memory.json"
    load("benchmarks/bench_memory.py").main(
        ["--evals", "6", "--rows", "5000", "--variants", "bounded", "--python-objects",
         "--json", str(out)])
    table = capsys.readouterr().out
    assert "Python objects' growth in bounded, kB a candidate from 3 to 6" in table
    objects = json.loads(out.read_text())[0]["python_objects_per_candidate"]
    files = [name for name, _ in objects["by_file"]]
    assert "autodeuq/ensemble/_catalogue.py" in files  # every candidate's predictions
    assert all(not name.startswith("/") for name in files)  # shortened to the package
    total = objects["rest"] + sum(size for _, size in objects["by_file"])
    assert math.isclose(total, objects["total"], rel_tol=1e-9, abs_tol=1e-6)


def test_short_source_names():
    short = load("benchmarks/bench_memory.py")._short
    assert short("/work/x/autodeuq/ensemble/_catalogue.py") == "autodeuq/ensemble/_catalogue.py"
    assert (short("/v/lib/python3.11/site-packages/distributed/protocol/pickle.py")
            == "distributed/protocol/pickle.py")
    assert short("/v/lib/python3.11/site-packages/psutil/_common.py") == "psutil/_common.py"
    assert short("/usr/lib/python3.11/asyncio/events.py") == "python3.11/asyncio/events.py"
    assert short("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"
