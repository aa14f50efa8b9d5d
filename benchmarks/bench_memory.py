"""Peak resident memory of AutoDEUQRegressor over a long search (500 candidates by default).

The main process holds the search, the Dask client (and the embedded scheduler) and the
catalogue of every finished candidate: validation predictions for all of them, weights in
memory only for the ``max_in_memory`` best. This measures its resident memory (RSS) while
``AutoDEUQRegressor(max_evals=--evals, n_jobs=2)`` runs on the Dask backend (the embedded
LocalCluster, two single-threaded worker processes), in three variants, each in a fresh
Python process so that one variant's freed heap cannot raise the next one's numbers:

- ``bounded``: ``max_in_memory=50`` (the default);
- ``unbounded``: ``max_in_memory=max(1000, evals)``, every candidate's weights kept;
- ``checkpoint``: ``max_in_memory=50`` and ``checkpoint_dir`` a temporary directory (every
  candidate's weights on disk, as ``.npz`` files).

A background thread samples the main process's RSS every 50 ms (and its child processes',
the two Dask workers', every 250 ms) together with how many candidates have finished (counted
from the ``trial ...`` debug records of ``autodeuq.evaluation._loop``, which logs one per
finished trial). The table gives the peak RSS sampled up to the moment ``0.1, 0.2, 0.5, 1.0 x
evals`` candidates had finished (50, 100, 250 and 500 at the default), the growth from 20% to
100% of the candidates per candidate (a bounded catalogue grows by its validation predictions
only: 2 x 4 bytes x n_valid per candidate, float32), the kernel's peak (``VmHWM``, which also
covers the ensemble selection after the search and anything between samples), the workers'
peak RSS, and the wall time of ``fit``. The last lines compare the growth over the search with every
weight kept against the bound of 50, and give the size of one candidate's arrays as written by
the journal (weights and float32 validation predictions, from the checkpoint run).

Candidates are tiny so that 500 of them finish in 4-6 minutes on two (shared) cores, so about
15 minutes for the three variants: the default space with two hidden layers of 64-512 units
(``num_layers`` fixed at 2, the units' range narrowed so that weights, 0.02-1 MB a candidate,
about 0.27 MB on average, are not negligible beside the validation predictions),
``max_epochs=2`` and ``batch_size=256``. The data are Friedman #1 (10 features,
``--rows`` 10,000 rows; ``validation_fraction=0.2`` makes 2,000 validation points, so the
catalogue's predictions are 16 kB a candidate, 8 MB at 500). Candidates train on 8,000 rows.

    python benchmarks/bench_memory.py                      # 500 candidates, three variants
    python benchmarks/bench_memory.py --evals 100 --rows 5000 --variants bounded unbounded
    python benchmarks/bench_memory.py --json memory.json
    python benchmarks/bench_memory.py --variants bounded --python-objects   # and by file

``--python-objects`` also traces Python's allocations (:mod:`tracemalloc`) and reports how the
memory held by Python objects grew, per candidate, from the second reported point to the last,
by the source file that allocated it: what the catalogue, the trial records, Dask and the
search hold, against the RSS growth, which also counts the allocator and native libraries.

Dask's worker processes import this script again (as ``__mp_main__``), so it does its work
only under ``if __name__ == "__main__"``. RSS is read with psutil, which ``distributed``
requires.
"""

import argparse
import gc
import json
import logging
import math
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

VARIANTS = ("bounded", "unbounded", "checkpoint")
FRACTIONS = (0.1, 0.2, 0.5, 1.0)
MB = 1024.0**2
LOOP_LOGGER = "autodeuq.evaluation._loop"


def tiny_space():
    """The default space with two hidden layers of 64-512 units, 2 epochs, batches of 256."""
    from autodeuq.space import Int, SearchSpace, default_space

    space = default_space(max_layers=2)
    dims = {**space.dimensions, "num_layers": 2, "units_1": Int(64, 512, log=True),
            "units_2": Int(64, 512, log=True), "max_epochs": 2, "batch_size": 256}
    return SearchSpace(dims, conditions=dict(space.conditions))


def checkpoints(evals):
    """Numbers of finished candidates at which the peak is reported (50, 100, 250, 500)."""
    return sorted({max(1, round(f * evals)) for f in FRACTIONS})


class FinishedCounter(logging.Handler):
    """Counts the per-trial debug records of ``run_search`` (one per finished trial) and,
    while :mod:`tracemalloc` traces, snapshots the Python objects when ``snapshot_at``
    candidates have finished."""

    def __init__(self, snapshot_at=()):
        super().__init__(logging.DEBUG)
        self.count = 0
        self.snapshot_at = set(snapshot_at)
        self.snapshots = {}

    def emit(self, record):
        if isinstance(record.msg, str) and record.msg.startswith("trial "):
            self.count += 1
            if self.count in self.snapshot_at and tracemalloc.is_tracing():
                gc.collect()
                self.snapshots[self.count] = tracemalloc.take_snapshot()


def python_objects(first, last, n, top=8):
    """Growth of the memory held by Python objects between two snapshots, per candidate
    (bytes), by the source file that allocated it: the ``top`` largest, then the rest and the
    total. ``n`` candidates finished between them."""
    stats = last.compare_to(first, "filename")
    rows = [(_short(s.traceback[0].filename), s.size_diff / n) for s in stats]
    rows.sort(key=lambda row: -abs(row[1]))
    shown = rows[:top]
    rest = sum(size for _, size in rows[top:])
    return {"by_file": shown, "rest": rest, "total": sum(size for _, size in rows)}


def _short(filename):
    """A source path from its package down (``autodeuq/ensemble/_catalogue.py``)."""
    parts = Path(filename).parts
    for package in ("autodeuq", "distributed", "dask", "sklearn", "numpy", "torch"):
        if package in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(package):])
    for anchor in ("site-packages", "lib"):  # another package, or the standard library
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    return filename


class Sampler(threading.Thread):
    """Samples (seconds, finished candidates, main RSS) and the children's RSS until stopped."""

    def __init__(self, counter, interval=0.05, children_every=5):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.counter = counter
        self.interval = interval
        self.children_every = children_every
        self.samples = []  # (seconds, finished, rss bytes)
        self.worker_peak = 0  # largest RSS of one child process
        self.workers_peak = 0  # largest sum over the child processes
        self.n_workers = 0
        self._halt = threading.Event()
        self._start = time.perf_counter()

    def sample(self):
        self.samples.append((time.perf_counter() - self._start, self.counter.count,
                             self.process.memory_info().rss))

    def sample_children(self):
        import psutil

        rss = []
        for child in self.process.children(recursive=True):
            try:  # the Dask workers (multiprocessing's spawn), not its resource tracker
                if any("spawn_main" in part for part in child.cmdline()):
                    rss.append(child.memory_info().rss)
            except psutil.Error:  # exited between listing and reading
                pass
        if rss:
            self.worker_peak = max(self.worker_peak, max(rss))
            self.workers_peak = max(self.workers_peak, sum(rss))
            self.n_workers = max(self.n_workers, len(rss))

    def run(self):
        tick = 0
        while not self._halt.is_set():
            self.sample()
            if tick % self.children_every == 0:
                self.sample_children()
            tick += 1
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        self.sample()


def peak_rss():
    """The kernel's high-water mark of this process's RSS (bytes), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_variant(variant, evals, rows, algorithm, seed=0, trace=False):
    """One fit in this process; returns its measurements (sizes in bytes). With ``trace``,
    :mod:`tracemalloc` traces the fit (slower) and the growth of Python objects from the
    second reported point to the last is measured by source file."""
    import numpy as np
    from sklearn.datasets import make_friedman1

    from autodeuq import AutoDEUQRegressor

    X, y = make_friedman1(n_samples=rows, n_features=10, noise=1.0, random_state=seed)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        est = AutoDEUQRegressor(
            search_space=tiny_space(), algorithm=algorithm, max_evals=evals, n_jobs=2,
            backend="dask", validation_fraction=0.2,
            max_in_memory=max(1000, evals) if variant == "unbounded" else 50,
            checkpoint_dir=tmp if variant == "checkpoint" else None, random_state=seed)
        points = checkpoints(evals)
        counter = FinishedCounter((points[1], evals) if trace and len(points) > 1 else ())
        logger = logging.getLogger(LOOP_LOGGER)
        old_level = logger.level
        logger.addHandler(counter)
        logger.setLevel(logging.DEBUG)
        sampler = Sampler(counter)
        before = sampler.process.memory_info().rss
        if counter.snapshot_at:
            tracemalloc.start()
        sampler.start()
        start = time.perf_counter()
        try:
            est.fit(X, y)
        finally:
            wall = time.perf_counter() - start
            sampler.stop()
            tracemalloc.stop()
            logger.removeHandler(counter)
            logger.setLevel(old_level)
        weights = sorted(Path(tmp).glob("search-*/weights/trial-*.npz"))
        npz_bytes = (sum(p.stat().st_size for p in weights) / len(weights)) if weights else None

    samples = sampler.samples
    peaks = {}
    for n in points:
        # Up to the first sample that saw n finished: the selection after the search is in
        # the kernel's peak (VmHWM) only.
        reached = next((t for t, finished, _ in samples if finished >= n), math.inf)
        upto = [rss for t, _, rss in samples if t <= reached]
        peaks[n] = max(upto) if upto else None
    low, high = points[1], evals
    slope = None
    if high > low and peaks[low] is not None and peaks[high] is not None:
        slope = (peaks[high] - peaks[low]) / (high - low)
    objects = None
    if len(counter.snapshots) == 2:
        first, last = sorted(counter.snapshots)
        objects = python_objects(counter.snapshots[first], counter.snapshots[last],
                                 last - first)
    statuses = {k: int(v) for k, v in est.search_results_["status"].value_counts().items()}
    n_valid = math.ceil(0.2 * rows)
    return {
        "variant": variant, "evals": evals, "rows": rows, "n_valid": n_valid,
        "algorithm": algorithm, "max_in_memory": est.max_in_memory,
        "checkpoint_dir": variant == "checkpoint",
        "n_candidates": int(est.n_candidates_), "statuses": statuses,
        "finished_counted": counter.count, "rss_before_fit": before,
        "peak_at": {str(n): v for n, v in peaks.items()},
        "growth_per_candidate": slope, "vm_hwm": peak_rss(),
        "rss_after_fit": samples[-1][2], "worker_peak_rss": sampler.worker_peak or None,
        "workers_peak_rss_sum": sampler.workers_peak or None, "n_workers": sampler.n_workers,
        "journal_npz_bytes_per_candidate": npz_bytes,
        "catalogue_prediction_bytes_per_candidate": 2 * 4 * n_valid,  # float32 mean and var
        "python_objects_per_candidate": objects,
        "wall_time": wall, "n_samples": len(samples), "timeline": samples,
        "python": sys.version.split()[0], "numpy": np.__version__,
    }


def run_in_child(variant, args):
    """Runs one variant in a fresh interpreter; returns its JSON line's measurements."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
               "--evals", str(args.evals), "--rows", str(args.rows),
               "--algorithm", args.algorithm, *(["--python-objects"] if args.python_objects
                                                else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"variant {variant!r} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mb(value):
    return "" if value is None else f"{value / MB:.1f}"


def summarize(runs):
    """A markdown table (MB) and the comparison lines."""
    evals = runs[0]["evals"]
    points = checkpoints(evals)
    lines = ["| variant | max_in_memory | RSS before fit | "
             + " | ".join(f"peak at {n}" for n in points)
             + " | kB / candidate | peak of fit (VmHWM) | worker peak RSS | fit s |",
             "|---|---|---|" + "---|" * len(points) + "---|---|---|---|"]
    for r in runs:
        slope = r["growth_per_candidate"]
        label = r["variant"] + (" (checkpoint_dir)" if r["checkpoint_dir"] else "")
        lines.append(
            f"| {label} | {r['max_in_memory']} | {_mb(r['rss_before_fit'])} | "
            + " | ".join(_mb(r["peak_at"][str(n)]) for n in points)
            + f" | {'' if slope is None else f'{slope / 1024:.1f}'} | {_mb(r['vm_hwm'])} | "
            f"{_mb(r['worker_peak_rss'])} | {r['wall_time']:.1f} |")
    by_name = {r["variant"]: r for r in runs}
    notes = [f"\nMain-process RSS in MB; {evals} candidates, {runs[0]['rows']} rows "
             f"({runs[0]['n_valid']} validation points: the catalogue's predictions are "
             f"{runs[0]['catalogue_prediction_bytes_per_candidate'] / 1024:.1f} kB a "
             "candidate); kB / candidate is the peak's growth from "
             f"{points[1] if len(points) > 1 else points[0]} to {evals} candidates."]

    def growth(r):
        peak = r["peak_at"][str(evals)]
        return None if peak is None else peak - r["rss_before_fit"]

    if "bounded" in by_name and "unbounded" in by_name:
        g_b, g_u = growth(by_name["bounded"]), growth(by_name["unbounded"])
        if g_b and g_u is not None:
            notes.append(f"Growth over the search (peak at {evals} - RSS before fit): "
                         f"max_in_memory={by_name['unbounded']['max_in_memory']} "
                         f"{g_u / MB:.1f} MB, max_in_memory=50 {g_b / MB:.1f} MB, ratio "
                         f"{g_u / g_b:.2f}.")
    if "checkpoint" in by_name:
        r = by_name["checkpoint"]
        if r["journal_npz_bytes_per_candidate"] is not None:
            notes.append(f"One candidate's arrays as journaled (weights and float32 validation "
                         f"predictions): {r['journal_npz_bytes_per_candidate'] / 1024:.1f} kB "
                         "on average.")
    for r in runs:
        objects = r.get("python_objects_per_candidate")
        if objects:
            shown = "; ".join(f"{name} {size / 1024:.1f}" for name, size in objects["by_file"])
            notes.append(f"Python objects' growth in {r['variant']}, kB a candidate from "
                         f"{points[1]} to {evals} (tracemalloc, by allocating file): "
                         f"{objects['total'] / 1024:.1f} in all: {shown}; the rest "
                         f"{objects['rest'] / 1024:.1f}.")
    return "\n".join(lines) + "\n" + "\n".join(notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=500, help="candidates per search")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the synthetic data")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--algorithm", default="agebo",
                        help="search algorithm (the estimator's default, agebo)")
    parser.add_argument("--json", type=Path, help="also write every variant's measurements")
    parser.add_argument("--python-objects", action="store_true",
                        help="also trace Python's allocations (tracemalloc, slower; the RSS "
                             "columns then include its bookkeeping) and report their growth "
                             "by source file")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.evals < 2:
        parser.error(f"--evals must be >= 2; got {args.evals}")

    if args.child:  # one variant, in this fresh process: its measurements as one JSON line
        result = run_variant(args.child, args.evals, args.rows, args.algorithm,
                             trace=args.python_objects)
        print(json.dumps(result))
        return result

    runs = []
    for variant in args.variants:
        run = run_in_child(variant, args)
        runs.append(run)
        print(f"{variant:<10} peak at {args.evals}: "
              f"{_mb(run['peak_at'][str(args.evals)])} MB, fit {run['wall_time']:.1f}s, "
              f"statuses {run['statuses']}", file=sys.stderr, flush=True)
    print(summarize(runs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return runs


if __name__ == "__main__":
    main()
