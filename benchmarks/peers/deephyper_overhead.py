"""DeepHyper's side of ``benchmarks/bench_search.py``: utilization and per-evaluation overhead.

Runs in its own virtual environment (``benchmarks/.venv-deephyper``, made by bench_search.py
with ``deephyper==0.13.2``), never in the package's: it imports neither autodeuq nor torch.
It measures what bench_search.py measures for autodeuq, with DeepHyper's own API:

- ``deephyper.hpo.RandomSearch`` over a ``HpProblem`` with the same four hyperparameters as
  bench_search.py's trivial space;
- ``Evaluator.create(run, method="process", method_kwargs={"num_workers": W, ...})``: a
  ``ProcessPoolExecutor`` (forked workers on Linux);
- ``search.search(evaluator, max_evals=N, max_evals_strict=True)`` (without strict it runs one
  evaluation more), timed alone; the evaluator is made and its worker processes are forked
  (one short task each) before the clock starts, as bench_search.py starts the Dask cluster
  first;
- a fresh evaluator, search and temporary ``log_dir`` for every run.

DeepHyper maximizes; the run function returns a random number, which random search ignores.
By default a run keeps no ``results.csv`` (``checkpoint_history_to_csv=False``, like autodeuq's
``run_search`` without a journal); ``--csv`` runs its default, which writes it.

Prints one JSON line:

    .venv-deephyper/bin/python benchmarks/peers/deephyper_overhead.py \
        [--workers 2] [--evals 200] [--repeats 3] [--util-evals 40] [--trial-seconds 1.0]
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import wait


def run(job, seconds=0.0):
    """The run function: sleep ``seconds``, return a random objective and the timestamps.

    A module-level function: the process pool pickles it by reference, and the forked workers
    hold this module.
    """
    start = time.time()
    if seconds > 0:
        time.sleep(seconds)
    value = random.Random(hash(tuple(sorted(job.parameters.items())))).random()
    return {"objective": value, "metadata": {"start": start, "end": time.time()}}


def problem():
    from deephyper.hpo import HpProblem

    space = HpProblem()
    space.add_hyperparameter((1e-4, 1e-1, "log-uniform"), "learning_rate")
    space.add_hyperparameter((16, 512, "log-uniform"), "units")
    space.add_hyperparameter((16, 256), "batch_size")
    space.add_hyperparameter(["relu", "tanh", "swish"], "activation")
    return space


def _noop(seconds):
    time.sleep(seconds)
    return os.getpid()


def measure(n_evals, workers, seconds, seed, csv=False):
    """One search of ``n_evals`` evaluations; returns its wall time and trial durations."""
    from deephyper.evaluator import Evaluator
    from deephyper.hpo import RandomSearch

    with tempfile.TemporaryDirectory(prefix="deephyper-bench-") as log_dir:
        evaluator = Evaluator.create(run, method="process", method_kwargs={
            "num_workers": workers, "run_function_kwargs": {"seconds": seconds}})
        t0 = time.perf_counter()
        # Fork the pool's workers before the clock starts (one short task each).
        pids = [evaluator.executor.submit(_noop, 0.2) for _ in range(workers)]
        wait(pids)
        startup = time.perf_counter() - t0
        n_pids = len({f.result() for f in pids})
        search = RandomSearch(problem(), random_state=seed, log_dir=log_dir,
                              checkpoint_history_to_csv=csv)
        t0 = time.perf_counter()
        results = search.search(evaluator, max_evals=n_evals, max_evals_strict=True)
        wall = time.perf_counter() - t0
        evaluator.executor.shutdown(wait=True)
        busy = float((results["m:end"] - results["m:start"]).sum())
        return {"n_evals": len(results), "wall_time": wall, "busy_time": busy,
                "startup": startup, "worker_pids": n_pids,
                "failed": int((results["job_status"] != "DONE").sum())
                if "job_status" in results else 0}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evals", type=int, default=200, help="0 skips the overhead runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--util-evals", type=int, default=40, help="0 skips utilization")
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    parser.add_argument("--csv", action="store_true",
                        help="also time overhead runs that write results.csv (the default)")
    args = parser.parse_args(argv)

    import deephyper

    out = {"library": "deephyper", "version": deephyper.__version__,
           "python": sys.version.split()[0], "search": "deephyper.hpo.RandomSearch",
           "evaluator": "process (ProcessPoolEvaluator)", "workers": args.workers}
    if args.util_evals > 0:
        m = measure(args.util_evals, args.workers, args.trial_seconds, seed=0)
        m["utilization"] = m["busy_time"] / (m["wall_time"] * args.workers)
        m["trial_seconds"] = args.trial_seconds
        out["utilization"] = m
    for key, csv in [("overhead", False)] + ([("overhead_csv", True)] if args.csv else []):
        if args.evals <= 0:
            break
        runs = [measure(args.evals, args.workers, 0.0, seed=1 + i, csv=csv)
                for i in range(args.repeats)]
        per_eval = [r["wall_time"] * args.workers / r["n_evals"] for r in runs]
        out[key] = {"n_evals": runs[0]["n_evals"], "repeats": args.repeats,
                    "wall_times": [r["wall_time"] for r in runs],
                    "per_eval": per_eval, "per_eval_median": statistics.median(per_eval),
                    "busy_times": [r["busy_time"] for r in runs],
                    "startups": [r["startup"] for r in runs],
                    "failed": sum(r["failed"] for r in runs), "csv": csv}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
