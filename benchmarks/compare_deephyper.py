"""AutoDEUQ side by side with DeepHyper 0.13.2: the same job, data, splits, wall time, workers.

For each dataset and split, on the same machine, one after the other:

- ``autodeuq``: ``AutoDEUQRegressor(time_budget=B, max_evals=None, n_jobs=W,
  random_state=split)``, every other parameter at its default (the default space, AgEBO,
  greedy selection of 5, refit and recalibration);
- ``deephyper``: the same pipeline as DeepHyper 0.13.2 documents it,
  ``benchmarks/peers/deephyper_autodeuq.py`` run with the Python of
  ``benchmarks/.venv-deephyper`` (made on first use: ``deephyper==0.13.2`` as
  ``bench_search.py`` makes it, plus torch pinned by ``constraints.txt``; never a dependency of
  the package): an ``HpProblem`` of autodeuq's default space, its default ``CBO`` with a
  "process" evaluator of W workers and the same first candidate, the same Gaussian network
  trained the same way in plain torch, then ``GreedySelector(k=5)`` and
  ``MixedNormalAggregator`` in an ``EnsemblePredictor``;
- ``deep_ensemble``: ``DeepEnsembleRegressor(random_state=split)``, the fixed-architecture
  baseline (5 networks of GaussianMLPRegressor's defaults).

What is the same for all: the data, scaled here with the training split's statistics (X by a
``StandardScaler``, y by its mean and standard deviation) and handed over as the same arrays;
for the two searches, the inner training/validation split (the 20% holdout that
``AutoDEUQRegressor`` draws for ``random_state=split``, sent to the peer as arrays), the
search space, the first candidate, the time budget (a running trial ends at the budget's
deadline with its best weights on both sides) and the number of worker processes (one torch
thread each); the metrics, computed here in original units with
``autodeuq.uncertainty.regression_report`` from each model's predictive mixture (for
DeepHyper, its selected members' means and standard deviations with its weights; its own
moment-matched prediction is checked against them). Which search goes first alternates from
split to split, so a passing load on the machine falls on both. What could not be made the
same is listed in ``benchmarks/peers/README.md``.

Per (dataset, model), means over splits: test NLL of the exact mixture and of the
moment-matched Gaussian (original units), RMSE, 90% interval coverage, candidates trained
(successful trials with a model), worker utilization (sum of trial durations / (wall time x
workers)), peak memory (RSS summed over the process that runs the fit, the harness's own or
the peer's, and all its descendants, sampled every 0.25 s with psutil; without psutil,
``resource.getrusage`` of the harness and its largest finished child, which is a lifetime
peak) and wall time (the harness's own timing of ``fit`` for autodeuq and the baseline; for
DeepHyper, from just before its evaluator is made to its fitted ``EnsemblePredictor``). A
second table shows where the searches' time goes. The markdown is printed and written with a
JSON file of the summary and of every split's row (with the machine's load average when the
run began) to ``--out``, rewritten after every run. A run that fails is reported, left out
of the tables and listed under them; the others go on, and the exit status is then 1.

    python benchmarks/compare_deephyper.py                      # make bench-peer: 3 x 3 x 5 min
    python benchmarks/compare_deephyper.py --datasets yacht --splits 0 --time-budget 60
    python benchmarks/compare_deephyper.py --data-dir DIR --datasets NAME --models autodeuq \
        deephyper --workers 2 --time-budget 120 --out /tmp/compare

Dask's worker processes are spawned and import this script again, so it does its work only
under ``if __name__ == "__main__"``.
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_uci import DEFAULT_DATA_DIR, PUBLISHED, mean_sd
from sklearn.preprocessing import StandardScaler

from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import load_uci
from autodeuq.estimators._base import holdout_split, seed_sequence
from autodeuq.space import default_space, to_flat_config
from autodeuq.uncertainty import NormalMixture, regression_report

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEER_SCRIPT = BENCH_DIR / "peers" / "deephyper_autodeuq.py"
DEFAULT_OUT = BENCH_DIR / "results" / "compare_deephyper"
MODELS = ("autodeuq", "deephyper", "deep_ensemble")
#: AutoDEUQRegressor's default validation_fraction: the inner holdout both searches rank on.
VALIDATION_FRACTION = 0.2
ENSEMBLE_SIZE = 5


# -- data ----------------------------------------------------------------------------------

@dataclass
class ScaledSplit:
    """One split, scaled with its training part's statistics: what every model is given."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray  # original units: the metrics use it
    y_mean: float
    y_scale: float

    def to_original(self, mixture):
        """A predictive mixture of scaled y, in original units."""
        return mixture.affine(shift=self.y_mean, scale=self.y_scale)


def scale_split(X_train, y_train, X_test, y_test):
    """Standardize X with a ``StandardScaler`` and y with its mean and std, both fitted on the
    training split alone."""
    x_scaler = StandardScaler().fit(X_train)
    y_mean, y_scale = float(np.mean(y_train)), float(np.std(y_train))
    if not y_scale > 0:
        raise ValueError(f"y_train must vary to be standardized; got std {y_scale}. Check the "
                         "dataset file.")
    return ScaledSplit(X_train=x_scaler.transform(X_train), y_train=(y_train - y_mean) / y_scale,
                       X_test=x_scaler.transform(X_test), y_test=np.asarray(y_test, float),
                       y_mean=y_mean, y_scale=y_scale)


def inner_split(n, random_state, validation_fraction=VALIDATION_FRACTION):
    """The ``(train, valid)`` row indices ``AutoDEUQRegressor(random_state=...)`` ranks its
    candidates on: ``ceil(validation_fraction * n)`` rows held out, drawn as its fit draws them
    (the first of the four children of its seed sequence)."""
    split_sequence = seed_sequence(random_state).spawn(4)[0]
    return holdout_split(n, math.ceil(validation_fraction * n), split_sequence)


def peer_arrays(scaled, train, valid):
    """The arrays written for the DeepHyper peer: the same scaled data, split as autodeuq's
    inner split, as float32 (what autodeuq's workers train on)."""
    X, y = scaled.X_train.astype(np.float32), scaled.y_train.astype(np.float32)
    return {"X_train": X[train], "y_train": y[train], "X_valid": X[valid], "y_valid": y[valid],
            "X_test": scaled.X_test.astype(np.float32)}


def first_candidate(space):
    """GaussianMLPRegressor's defaults as a flat configuration of ``space``: the first
    candidate of AutoDEUQRegressor's search (``initial_configs="default"``), given to the peer
    as its problem's default configuration."""
    return space.project(to_flat_config(GaussianMLPRegressor().get_config()),
                         np.random.default_rng(0))


def metrics(scaled, mixture):
    """Test scores in original units (``regression_report`` at level 0.9)."""
    report = regression_report(scaled.y_test, scaled.to_original(mixture), level=0.9)
    return {k: float(v) for k, v in report.items()}


# -- memory --------------------------------------------------------------------------------

class PeakMemory:
    """Peak RSS of a process and all its descendants, summed, while the ``with`` block runs.

    With psutil a thread samples the tree every ``interval`` seconds; without it the peak is
    ``resource.getrusage``'s: this process's peak plus that of its largest finished child, over
    their whole lives (an upper bound, not a peak of this block alone). ``method`` says which.
    """

    def __init__(self, pid=None, interval=0.25):
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.peak_bytes = 0
        try:
            import psutil
        except ImportError:
            self._psutil = None
            self.method = "getrusage (self + largest child, lifetime peaks)"
        else:
            self._psutil = psutil
            self.method = "psutil (RSS summed over the process tree, 0.25 s samples)"
        self._stop = threading.Event()
        self._thread = None

    def sample(self):
        """The tree's RSS now, in bytes (and the peak updated)."""
        psutil = self._psutil
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        if self._psutil is not None:
            self.sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            kib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                   + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            self.peak_bytes = kib * 1024
        return False

    @property
    def peak_mb(self):
        return self.peak_bytes / 2**20


# -- the three models ----------------------------------------------------------------------

def run_autodeuq(scaled, split, budget, workers, max_evals=None):
    est = AutoDEUQRegressor(time_budget=budget, max_evals=max_evals, n_jobs=workers,
                            random_state=split)
    with PeakMemory() as memory:
        start = time.perf_counter()
        est.fit(scaled.X_train, scaled.y_train)
        wall = time.perf_counter() - start
    table = est.search_results_
    busy = float(np.nansum(table["duration"].to_numpy(dtype=float)))
    row = {"wall_time": wall, "n_candidates": int(est.n_candidates_), "n_trials": len(table),
           "n_failed": int((table["status"] != "success").sum()),
           "statuses": {str(k): int(v) for k, v in table["status"].value_counts().items()},
           "busy_time": busy,
           "workers": workers, "search_time": float(est.search_time_),
           "after_search_time": wall - float(est.search_time_),
           "refit_time": float(getattr(est, "refit_time_", 0.0)),
           "peak_memory_mb": memory.peak_mb, "memory_method": memory.method}
    return row, est.predict_distribution(scaled.X_test)


def run_deep_ensemble(scaled, split, budget=None, workers=None, max_evals=None):
    est = DeepEnsembleRegressor(random_state=split)
    with PeakMemory() as memory:
        start = time.perf_counter()
        est.fit(scaled.X_train, scaled.y_train)
        wall = time.perf_counter() - start
    row = {"wall_time": wall, "n_candidates": len(est.estimators_),
           "n_trials": len(est.estimators_), "busy_time": None, "workers": 1,
           "peak_memory_mb": memory.peak_mb, "memory_method": memory.method}
    return row, est.predict_distribution(scaled.X_test)


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def peer_python():
    """The Python of ``benchmarks/.venv-deephyper`` with deephyper 0.13.2 and torch, made or
    completed on first use (``bench_search.peer_python`` makes it with deephyper)."""
    from bench_search import peer_python as deephyper_python

    python = deephyper_python()
    if subprocess.run([str(python), "-c", "import torch"], capture_output=True,
                      env=_clean_env()).returncode != 0:
        print(f"installing torch into {python.parents[1]} (first use only)...", file=sys.stderr,
              flush=True)
        command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                   "-c", str(ROOT / "constraints.txt"), "torch"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}"
                               f"{done.stderr[-3000:]}")
    return python


def run_deephyper(scaled, split, budget, workers, max_evals=None, *, python, work_dir):
    """Write the peer's inputs, run it in its environment, read its ensemble back."""
    train, valid = inner_split(len(scaled.X_train), split)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data_path = work_dir / "data.npz"
    np.savez(data_path, **peer_arrays(scaled, train, valid))
    space = default_space()
    job = {"data": str(data_path), "out_dir": str(work_dir / "out"), "space": space.to_dict(),
           "initial_config": first_candidate(space), "time_budget": budget,
           "max_evals": max_evals, "workers": workers, "seed": split,
           "ensemble_size": ENSEMBLE_SIZE, "var_floor": 1e-6}
    job_path = work_dir / "job.json"
    job_path.write_text(json.dumps(job))
    command = [str(python), str(PEER_SCRIPT), "--job", str(job_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_clean_env(), cwd=ROOT)
    with PeakMemory(process.pid) as memory:
        stdout, stderr = process.communicate()
    lines = stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n"
                           f"{stderr[-3000:]}")
    result = json.loads(Path(lines[-1]).read_text())
    with np.load(result["predictions"]) as predictions:
        mixture = NormalMixture(predictions["member_loc"], predictions["member_scale"],
                                predictions["weights"])
        # DeepHyper's own (moment-matched) prediction must be the mixture's moments.
        gap = max(float(np.max(np.abs(predictions["loc"] - mixture.mean))),
                  float(np.max(np.abs(predictions["scale"] - mixture.std))))
    row = {"wall_time": result["wall_time"], "n_candidates": result["n_candidates"],
           "n_trials": result["n_trials"], "busy_time": float(sum(result["trial_durations"])),
           "workers": workers, "search_time": result["search_time"],
           "after_search_time": result["ensemble_time"], "ask_time": result["ask_time"],
           "n_asks": result["n_asks"], "n_failed": result["n_failed"],
           "statuses": result["statuses"], "members": result["members"],
           "aggregator_gap": gap, "peak_memory_mb": memory.peak_mb,
           "memory_method": memory.method, "deephyper": result["version"]}
    return row, mixture


# -- tables --------------------------------------------------------------------------------

def _utilization(row):
    if row.get("busy_time") is None:
        return None
    return row["busy_time"] / (row["wall_time"] * row["workers"])


def _mean(values, digits=1):
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.{digits}f}" if values else "n/a"


def summarize(rows):
    """The markdown tables and the JSON summary: one row per (dataset, model), means over
    splits (``mean ± sd`` for the scores)."""
    groups = {}
    for row in rows:
        groups.setdefault(row["dataset"], {}).setdefault(row["model"], []).append(row)
    lines = ["| dataset | model | splits | NLL | NLL (moment-matched) | RMSE | 90% coverage | "
             "candidates/split | utilization | peak memory (MB) | wall s/split |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    time_lines = ["| dataset | model | wall s | search s | after search s | optimizer asks | "
                  "optimizer s | trials | failed |", "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for dataset, by_model in groups.items():
        for model, group in by_model.items():
            entry = {"dataset": dataset, "model": model, "splits": len(group)}
            for key in ("nll", "nll_moment_matched", "rmse", "coverage", "n_candidates",
                        "wall_time", "peak_memory_mb"):
                values = [r[key] for r in group]
                entry[key] = statistics.mean(values)
                entry[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            utilization = [_utilization(r) for r in group]
            entry["utilization"] = (None if None in utilization
                                    else statistics.mean(utilization))
            summary.append(entry)
            lines.append(
                f"| {dataset} | {model} | {len(group)} | {mean_sd(group, 'nll')} | "
                f"{mean_sd(group, 'nll_moment_matched')} | {mean_sd(group, 'rmse')} | "
                f"{mean_sd(group, 'coverage')} | {_mean([r['n_candidates'] for r in group])} | "
                f"{_mean(utilization, 2)} | {_mean([r['peak_memory_mb'] for r in group], 0)} | "
                f"{_mean([r['wall_time'] for r in group])} |")
            if model != "deep_ensemble":
                time_lines.append(
                    f"| {dataset} | {model} | {_mean([r['wall_time'] for r in group])} | "
                    f"{_mean([r.get('search_time') for r in group])} | "
                    f"{_mean([r.get('after_search_time') for r in group])} | "
                    f"{_mean([r.get('n_asks') for r in group], 0)} | "
                    f"{_mean([r.get('ask_time') for r in group])} | "
                    f"{_mean([r['n_trials'] for r in group])} | "
                    f"{_mean([r.get('n_failed') for r in group], 1)} |")
        for paper, (rmse, nll) in PUBLISHED.get(dataset, {}).items():
            lines.append(f"| {dataset} | *{paper} (published)* | 20 | {nll:.2f} | | "
                         f"{'' if rmse is None else f'{rmse:.2f}'} | | | | | |")
    markdown = "\n".join(lines) + "\n\nWhere the time goes (means per split):\n\n" + \
        "\n".join(time_lines)
    return markdown, summary


# -- command line --------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder of <dataset>.npz files (X, y, test_mask)")
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete"])
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--time-budget", type=float, default=300.0,
                        help="seconds of search per split for autodeuq and DeepHyper")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of both searches")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--max-evals", type=int,
                        help="also stop both searches after this many trials (default: none)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for table.md and table.json")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the peer's files (models, results.csv) here; default: a "
                             "temporary folder, removed")
    parser.add_argument("--python", type=Path,
                        help="a Python with deephyper 0.13.2 and torch (default: "
                             "benchmarks/.venv-deephyper, made on first use)")
    return parser


def parse_args(argv=None):
    """Parse and check the arguments; every error names the argument, the value and the fix."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir must be a folder of <dataset>.npz files; got {args.data_dir}, "
                     "which is not a folder. Pass the folder holding them.")
    for dataset in args.datasets:
        path = args.data_dir / f"{dataset}.npz"
        if not path.is_file():
            found = sorted(p.stem for p in args.data_dir.glob("*.npz"))
            parser.error(f"--datasets {dataset}: no file {path}. Datasets there: {found}.")
        with np.load(path) as data:
            n_splits = len(data["test_mask"]) if "test_mask" in data.files else 0
        bad = [s for s in args.splits if not 0 <= s < n_splits]
        if bad:
            parser.error(f"--splits must be in [0, {n_splits - 1}] for {dataset}; got {bad}.")
    if not (math.isfinite(args.time_budget) and args.time_budget > 0):
        parser.error(f"--time-budget must be a number of seconds > 0; got {args.time_budget}.")
    if args.workers < 1:
        parser.error(f"--workers must be an int >= 1; got {args.workers}.")
    if args.max_evals is not None and args.max_evals < 1:
        parser.error(f"--max-evals must be an int >= 1; got {args.max_evals}. Leave it out to "
                     "stop at the time budget only.")
    return args


def _order(models, split):
    """The models in the order they run on ``split``: the two searches swap places each
    split, the baseline last."""
    searches = [m for m in ("autodeuq", "deephyper") if m in models]
    if split % 2:
        searches.reverse()
    return searches + [m for m in models if m not in searches]


def _run(model, scaled, dataset, split, args, python, work_root):
    """One model on one split: its row (scores and measurements) for the tables."""
    load = os.getloadavg()[0]
    if model == "deephyper":
        row, mixture = run_deephyper(scaled, split, args.time_budget, args.workers,
                                     args.max_evals, python=python,
                                     work_dir=work_root / f"{dataset}-{split}")
    else:
        runner = {"autodeuq": run_autodeuq, "deep_ensemble": run_deep_ensemble}[model]
        row, mixture = runner(scaled, split, args.time_budget, args.workers, args.max_evals)
    return {"dataset": dataset, "model": model, "split": split, **metrics(scaled, mixture),
            **row, "load_average_before": load}


def write_tables(out, rows, failures, meta):
    """Print nothing; write ``table.md`` and ``table.json`` to ``out`` (after every run, so a
    long run that stops keeps what it measured)."""
    markdown, summary = summarize(rows)
    if failures:
        markdown += "\n\nRuns that failed (not in the tables):\n\n" + "\n".join(
            f"- {f['dataset']} split {f['split']} {f['model']}: {f['error']}" for f in failures)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown + "\n")
    (out / "table.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "rows": rows, "failures": failures}, indent=2,
        default=str))
    return markdown


def main(argv=None):
    args = parse_args(argv)
    python = peer_python() if args.python is None and "deephyper" in args.models else args.python
    meta = {"command": " ".join(["python", "benchmarks/compare_deephyper.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "time_budget": args.time_budget, "workers": args.workers,
            "max_evals": args.max_evals, "data_dir": str(args.data_dir),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "load_average_at_start": os.getloadavg()}}
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="compare-deephyper-") as scratch:
        work_root = Path(args.work_dir or scratch)
        for dataset in args.datasets:
            for split in args.splits:
                scaled = scale_split(*load_uci(dataset, split, args.data_dir))
                for model in _order(args.models, split):
                    try:
                        row = _run(model, scaled, dataset, split, args, python, work_root)
                    except Exception as exc:  # one failed run must not lose the others
                        traceback.print_exc()
                        failures.append({"dataset": dataset, "model": model, "split": split,
                                         "error": f"{type(exc).__name__}: {exc}"[:500]})
                        print(f"{dataset:<10} {model:<13} split {split}: FAILED", file=sys.stderr,
                              flush=True)
                    else:
                        rows.append(row)
                        utilization = _utilization(row)
                        print(f"{dataset:<10} {model:<13} split {split}: NLL {row['nll']:.3f} "
                              f"RMSE {row['rmse']:.3f} cov {row['coverage']:.2f} "
                              f"{row['n_candidates']} candidates util "
                              f"{'n/a' if utilization is None else f'{utilization:.2f}'} "
                              f"{row['peak_memory_mb']:.0f} MB {row['wall_time']:.1f}s",
                              file=sys.stderr, flush=True)
                    markdown = write_tables(args.out, rows, failures, meta)
    print(markdown)
    if failures:
        sys.exit(f"{len(failures)} run(s) failed; see the end of {args.out / 'table.md'}.")


if __name__ == "__main__":
    main()
