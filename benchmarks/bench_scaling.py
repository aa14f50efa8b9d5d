"""How the time and peak resident memory of AutoDEUQRegressor grow with rows and evaluations.

Two sweeps; every point is one ``AutoDEUQRegressor(..., n_jobs=--workers, backend="dask")``
fit (the embedded LocalCluster of ``--workers`` single-threaded worker processes, 2 by
default; refit and recalibration on, as by default), each in a fresh Python process so that
one point's freed heap cannot raise the next one's numbers. The data are Friedman #1
(``sklearn.datasets.make_friedman1``, 8 features, noise 1.0, seed 0).

1. **Rows** (``--rows``: 1k, 3k, 10k, 30k and 100k): ``max_evals=8`` candidates of a small
   space with the same work per epoch whatever the rows: 1-2 hidden layers of 16-64 units
   (activations, dropout, skips, optimizer and learning rate searched as by default), batches
   of 128, ``max_epochs=10`` and ``patience=None``, so every candidate and every refitted
   member trains exactly 10 epochs. The search is ``algorithm="random"`` so that every size
   trains the same 8 configurations (the first is GaussianMLPRegressor's default network
   brought into the space). Reported: wall time of ``fit``, worker seconds per
   candidate-epoch (the search's trial durations summed, over their epochs summed).
2. **Evaluations** (``--evals``: 50, 100, 200, 500 and 1,000): cheap candidates (500 rows,
   one hidden layer of 8-32 units, batches of 64, ``max_epochs=2``, ``patience=None``) with the
   estimator's default algorithm, AgEBO (``--algorithm``), so the search's own cost (its
   surrogate is refitted as observations accumulate) is in the numbers. Reported: wall time
   of ``fit``, seconds per evaluation and the search's overhead per evaluation: (search wall
   time - trial durations summed / workers) / evaluations, the time the workers did not
   spend training.

Both tables give the peak RSS of the main process (the kernel's high-water mark, ``VmHWM``:
it holds the search, the Dask client and scheduler and the catalogue of every candidate's
validation predictions, weights for the ``max_in_memory=50`` best), its growth during ``fit``
(``VmHWM`` - RSS just before ``fit``) and the peak RSS summed over the whole process tree
(main process and Dask workers, sampled every 0.25 s by ``compare_deephyper.PeakMemory``).
Each table has the size and time ratios against its smallest size, and their quotient
(``time ratio / size ratio``: 1 is linear growth, below 1 is slower than linear, as a fixed
cost such as starting the workers is spread over more work). Under each table: the exponent
``b`` of ``cost ~ size^b``, the least-squares slope of log(cost) on log(size) over all sizes
and between the two largest, for the wall time and for the per-unit costs.

The defaults are sized to finish in about 15-20 minutes on two quiet cores, most of it in the
1,000- and 500-evaluation searches. Wall times are only comparable within one run on a quiet
machine: each child records the load average when it starts (``load_average`` in the JSON).

    python benchmarks/bench_scaling.py                                 # both sweeps
    python benchmarks/bench_scaling.py --rows 1000 10000 --skip-evals
    python benchmarks/bench_scaling.py --evals 50 200 --skip-rows --json scaling.json

Dask's worker processes import this script again (as ``__mp_main__``), so it does its work
only under ``if __name__ == "__main__"``. RSS is read with psutil, which ``distributed``
requires.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SWEEPS = ("rows", "evals")
DEFAULT_ROWS = (1_000, 3_000, 10_000, 30_000, 100_000)
DEFAULT_EVALS = (50, 100, 200, 500, 1_000)
N_FEATURES = 8
#: The rows sweep: candidates per search, epochs each, batch size.
ROWS_MAX_EVALS, ROWS_EPOCHS, ROWS_BATCH = 8, 10, 128
#: The evaluations sweep: rows of data, epochs each, batch size.
EVALS_ROWS, EVALS_EPOCHS, EVALS_BATCH = 500, 2, 64
MIN_ROWS, MIN_EVALS = 100, 5
MB = 1024.0**2


def rows_space():
    """1-2 hidden layers of 16-64 units, batches of 128, 10 epochs without early stopping."""
    from autodeuq.space import Int, SearchSpace, default_space

    space = default_space(max_layers=2)
    dims = {**space.dimensions, "num_layers": Int(1, 2), "units_1": Int(16, 64, log=True),
            "units_2": Int(16, 64, log=True), "batch_size": ROWS_BATCH,
            "max_epochs": ROWS_EPOCHS, "patience": None}
    return SearchSpace(dims, conditions=dict(space.conditions))


def evals_space():
    """One hidden layer of 8-32 units, batches of 64, 2 epochs without early stopping."""
    from autodeuq.space import Int, SearchSpace, default_space

    space = default_space(max_layers=1)
    dims = {**space.dimensions, "num_layers": 1, "units_1": Int(8, 32, log=True),
            "batch_size": EVALS_BATCH, "max_epochs": EVALS_EPOCHS, "patience": None}
    return SearchSpace(dims, conditions=dict(space.conditions))


def run_point(sweep, size, workers, algorithm, seed=0):
    """One fit in this process; returns its measurements (times in s, sizes in bytes)."""
    import numpy as np
    import psutil
    from bench_memory import peak_rss
    from compare_deephyper import PeakMemory
    from sklearn.datasets import make_friedman1

    from autodeuq import AutoDEUQRegressor

    if sweep == "rows":
        rows, evals, space, algorithm = size, ROWS_MAX_EVALS, rows_space(), "random"
    else:
        rows, evals, space = EVALS_ROWS, size, evals_space()
    X, y = make_friedman1(n_samples=rows, n_features=N_FEATURES, noise=1.0, random_state=seed)
    est = AutoDEUQRegressor(search_space=space, algorithm=algorithm, max_evals=evals,
                            n_jobs=workers, backend="dask", random_state=seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    before = psutil.Process().memory_info().rss
    with PeakMemory() as tree:
        start = time.perf_counter()
        est.fit(X, y)
        wall = time.perf_counter() - start
    table = est.search_results_
    busy = float(np.nansum(table["duration"].to_numpy(dtype=float)))
    epochs = float(np.nansum(table["n_epochs"].to_numpy(dtype=float)))
    search_time = float(est.search_time_)
    main_peak = peak_rss()
    return {
        "sweep": sweep, "size": size, "rows": rows, "evals": evals, "workers": workers,
        "algorithm": algorithm, "n_trials": len(table), "n_candidates": int(est.n_candidates_),
        "statuses": {str(k): int(v) for k, v in table["status"].value_counts().items()},
        "wall_time": wall, "search_time": search_time,
        "refit_time": float(getattr(est, "refit_time_", 0.0)),
        "busy_time": busy, "candidate_epochs": epochs,
        "seconds_per_candidate_epoch": busy / epochs if epochs else None,
        "seconds_per_eval": wall / evals,
        "overhead_per_eval": (search_time - busy / workers) / evals,
        "rss_before_fit": before, "main_peak_rss": main_peak,
        "main_growth": None if main_peak is None else main_peak - before,
        "tree_peak_rss": tree.peak_bytes, "tree_memory_method": tree.method,
        "load_average": load, "python": sys.version.split()[0], "numpy": np.__version__,
    }


def run_in_child(sweep, size, args):
    """Runs one point in a fresh interpreter; returns its JSON line's measurements."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", sweep, str(size),
               "--workers", str(args.workers), "--algorithm", args.algorithm]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{sweep}={size} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def exponent(sizes, costs):
    """Least-squares slope of log(cost) on log(size), or None without two positive points."""
    import numpy as np

    points = [(s, c) for s, c in zip(sizes, costs, strict=True) if c is not None and c > 0]
    if len(points) < 2:
        return None
    x, y = np.log(np.array(points, dtype=float)).T
    return float(np.polyfit(x, y, 1)[0])


def exponents(runs, measures):
    """For each measure: its exponent over every size and between the two largest."""
    sizes = [r["size"] for r in runs]
    return {m: {"all": exponent(sizes, [r[m] for r in runs]),
                "largest_two": exponent(sizes[-2:], [r[m] for r in runs[-2:]])}
            for m in measures}


#: Per sweep: (JSON key, column header, format) of its own columns, and the measures whose
#: exponent is printed under its table.
COLUMNS = {
    "rows": [("seconds_per_candidate_epoch", "s / candidate-epoch", "{:.4f}")],
    "evals": [("seconds_per_eval", "s / eval", "{:.3f}"),
              ("overhead_per_eval", "overhead s / eval", "{:.3f}")],
}
MEASURES = {
    "rows": ("wall_time", "seconds_per_candidate_epoch", "main_growth", "tree_peak_rss"),
    "evals": ("wall_time", "overhead_per_eval", "main_growth", "tree_peak_rss"),
}
LABELS = {"wall_time": "fit s", "seconds_per_candidate_epoch": "s / candidate-epoch",
          "overhead_per_eval": "overhead s / eval", "main_growth": "main RSS growth",
          "tree_peak_rss": "tree RSS peak"}


def _mb(value):
    return "" if value is None else f"{value / MB:.1f}"


def _fmt(fmt, value):
    return "" if value is None else fmt.format(value)


def _exp(value):
    return "n/a" if value is None else f"{value:.2f}"


def summarize(sweep, runs, slopes):
    """A markdown table of one sweep and its exponent lines."""
    extra = COLUMNS[sweep]
    lines = [f"| {sweep} | size ratio | fit s | time ratio | time ratio / size ratio | "
             + "".join(f"{header} | " for _, header, _ in extra)
             + "main RSS peak MB | main growth MB | tree RSS peak MB |",
             "|---|---|---|---|---|" + "---|" * len(extra) + "---|---|---|"]
    first = runs[0]
    for r in runs:
        size_ratio = r["size"] / first["size"]
        time_ratio = r["wall_time"] / first["wall_time"]
        lines.append(
            f"| {r['size']} | {size_ratio:.1f} | {r['wall_time']:.1f} | {time_ratio:.2f} | "
            f"{time_ratio / size_ratio:.2f} | "
            + "".join(f"{_fmt(fmt, r[key])} | " for key, _, fmt in extra)
            + f"{_mb(r['main_peak_rss'])} | {_mb(r['main_growth'])} | "
            f"{_mb(r['tree_peak_rss'])} |")
    if sweep == "rows":
        setting = (f"{first['evals']} candidates ({first['algorithm']} search) of "
                   f"{ROWS_EPOCHS} epochs, batches of {ROWS_BATCH}")
    else:
        setting = (f"{first['rows']} rows, {first['algorithm']} search, candidates of "
                   f"{EVALS_EPOCHS} epochs, batches of {EVALS_BATCH}")
    notes = [f"\n{setting}, {first['workers']} Dask workers, refit on. Exponent b of "
             f"cost ~ {sweep}^b (least-squares slope of log cost on log {sweep}; 1 = linear), "
             f"over {runs[0]['size']}-{runs[-1]['size']} / between the two largest:"]
    notes += [f"- {LABELS[m]}: {_exp(s['all'])} / {_exp(s['largest_two'])}"
              for m, s in slopes.items()]
    if sweep == "evals" and len(runs) > 1 and None not in (first["main_growth"],
                                                           runs[-1]["main_growth"]):
        per_eval = ((runs[-1]["main_growth"] - first["main_growth"])
                    / (runs[-1]["size"] - first["size"]))
        notes.append(f"- main RSS growth per added evaluation: {per_eval / 1024:.1f} kB")
    return "\n".join(lines) + "\n" + "\n".join(notes)


def _size_list(parser, values, name, minimum):
    if len(values) < 2 or min(values) < minimum:
        parser.error(f"--{name} needs at least two sizes, each >= {minimum} (an exponent needs "
                     f"two points); got {values}. Pass e.g. --{name} "
                     f"{minimum * 2} {minimum * 4}.")
    return sorted(set(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS),
                        help="row counts of the rows sweep")
    parser.add_argument("--evals", type=int, nargs="+", default=list(DEFAULT_EVALS),
                        help="max_evals of the evaluations sweep")
    parser.add_argument("--skip-rows", action="store_true", help="leave out the rows sweep")
    parser.add_argument("--skip-evals", action="store_true",
                        help="leave out the evaluations sweep")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--algorithm", default="agebo",
                        help="search algorithm of the evaluations sweep (the estimator's "
                             "default, agebo); the rows sweep always uses random")
    parser.add_argument("--json", type=Path, help="also write every point's measurements")
    parser.add_argument("--child", nargs=2, metavar=("SWEEP", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1; got {args.workers}. Pass e.g. --workers 2.")

    if args.child:  # one point, in this fresh process: its measurements as one JSON line
        result = run_point(args.child[0], int(args.child[1]), args.workers, args.algorithm)
        print(json.dumps(result))
        return result

    sizes = {"rows": _size_list(parser, args.rows, "rows", MIN_ROWS),
             "evals": _size_list(parser, args.evals, "evals", MIN_EVALS)}
    sweeps = [s for s in SWEEPS if not getattr(args, f"skip_{s}")]
    if not sweeps:
        parser.error("--skip-rows and --skip-evals together leave nothing to run; drop one.")
    report = {}
    for sweep in sweeps:
        runs = []
        for size in sizes[sweep]:
            run = run_in_child(sweep, size, args)
            runs.append(run)
            print(f"{sweep}={size}: fit {run['wall_time']:.1f}s, main peak "
                  f"{_mb(run['main_peak_rss'])} MB, statuses {run['statuses']}",
                  file=sys.stderr, flush=True)
        slopes = exponents(runs, MEASURES[sweep])
        print(summarize(sweep, runs, slopes) + "\n")
        report[sweep] = {"runs": runs, "exponents": slopes}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
