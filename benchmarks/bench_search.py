"""The search loop's cost: worker utilization, overhead per evaluation against DeepHyper, BO ask.

Three measurements, in one run:

1. Utilization with ``--trial-seconds`` (1 s) trials on ``--workers`` (2) Dask workers:
   ``run_search`` with ``DaskEvaluator(n_workers=2, task=sleep_task)`` for ``--util-evals``
   (40) trials; utilization = sum(trial end - start) / (wall time x workers), the wall time
   measured around ``run_search`` alone (the cluster's start-up is shown on its own line).
2. Scheduling overhead per evaluation with a trivial objective (the task returns at once):
   wall time x workers / evaluations, for ``--evals`` (200) evaluations of a random search,
   median of ``--repeats`` (3) runs. The same numbers come from DeepHyper 0.13.2 (its
   ``RandomSearch`` with the "process" evaluator, ``max_evals_strict=True``) through
   ``benchmarks/peers/deephyper_overhead.py``, run with the Python of
   ``benchmarks/.venv-deephyper``, which this script makes on first use (``python -m venv`` and
   ``pip install deephyper==0.13.2``; DeepHyper never enters the package's dependencies). Both
   sides search the same four hyperparameters with the same workers and evaluation count;
   every run gets fresh workers, started (and run once each) before the clock starts; the two
   sides take turns, so a passing load on the machine falls on both. DeepHyper runs without
   its ``results.csv`` (like ``run_search`` without a journal), and again with it (its
   default), and also runs the utilization measure with the same sleeps. The DaskEvaluator
   runs with its defaults, which adapt to trials this short (median under 5 ms): up to 8
   trials to a Dask task and up to 4 Dask tasks queued per worker (its ``max_bundle`` and
   ``max_prefetch``); ``--max-bundle 1 --max-prefetch 1`` measures one trial per Dask task
   with the queue that 1 s trials get.
3. ``BayesianOptimization`` and ``AgEBO`` ``ask()`` on the default space (63 dimensions) at
   100 and 1,000 observations, median ms, with no trial pending and with 2 pending (constant
   liar); measured with ``benchmarks/bench_ask.py``'s functions.

Targets: utilization >= 0.95 with 1 s trials; overhead per evaluation below DeepHyper's in the
same run; BO ``ask`` <= 50 ms at 1,000 observations.

    python benchmarks/bench_search.py [--evals 200] [--util-evals 40] [--trial-seconds 1.0]
        [--workers 2] [--repeats 3] [--max-bundle N] [--max-prefetch N] [--skip-peer]
        [--skip-ask] [--json PATH]

Dask's worker processes are spawned and import this script again (as ``__mp_main__``), so it
does its work only under ``if __name__ == "__main__"``. The DeepHyper side runs in another
process of another environment, which never imports torch: its forked workers cannot inherit a
torch thread pool (a known deadlock when a parent ran multi-threaded torch before forking).
"""

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from autodeuq.evaluation import TrialResult, run_search
from autodeuq.search import RandomSearch
from autodeuq.space import Categorical, Float, Int, SearchSpace

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEER_SCRIPT = BENCH_DIR / "peers" / "deephyper_overhead.py"
PEER_VENV = BENCH_DIR / ".venv-deephyper"
PEER_REQUIREMENT = "deephyper==0.13.2"


def sleep_task(config, data, seed, device="cpu", time_limit=None, trial_id=-1,
               deadline=None):
    """The trial: sleep ``data["seconds"]``, return a random objective and the timestamps.

    Has :func:`autodeuq.evaluation.train_candidate`'s signature and result. The Dask workers
    (spawned processes) get it through cloudpickle: run as a script, this module is
    ``__main__``, which cloudpickle always sends by value; imported under its own name (from a
    test, say) it would go by reference to a module that the workers import only if
    ``benchmarks/`` is on their ``sys.path`` when they start, so :func:`main` registers the
    module to be pickled by value in that case too (see ``_send_by_value``).
    """
    start = time.time()
    if data["seconds"] > 0:
        time.sleep(data["seconds"])
    return TrialResult(trial_id=trial_id, config=config, status="success",
                       objective=random.Random(seed).random(), seed=int(seed), start=start,
                       end=time.time(), worker=str(os.getpid()))


def _send_by_value():
    if __name__ != "__main__":
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])


def trivial_space():
    """Four hyperparameters, the same as the DeepHyper peer's ``HpProblem``."""
    return SearchSpace({
        "learning_rate": Float(1e-4, 1e-1, log=True),
        "units": Int(16, 512, log=True),
        "batch_size": Int(16, 256),
        "activation": Categorical(["relu", "tanh", "swish"]),
    })


def autodeuq_run(workers, seconds, n_evals, seed, **options):
    """One timed search of ``n_evals`` trials on a fresh DaskEvaluator.

    The evaluator is started (its cluster and workers) and every worker runs the task once
    before the clock starts; the clock runs around ``run_search`` alone. The warm-up and the
    timed search share one search object (``n_done`` continues its trial ids), so no Dask key
    is reused. ``options`` go to ``DaskEvaluator`` (``max_bundle``, ``max_prefetch``).
    """
    from autodeuq.evaluation import DaskEvaluator

    evaluator = DaskEvaluator(n_workers=workers, devices="cpu", task=sleep_task, **options)
    t0 = time.perf_counter()
    evaluator.start({"seconds": seconds})
    startup = time.perf_counter() - t0
    search = RandomSearch(trivial_space(), random_state=seed)
    sequence = np.random.SeedSequence(seed)
    try:
        if evaluator.n_workers != workers:
            raise RuntimeError(f"the cluster has {evaluator.n_workers} workers, not {workers}")
        done = len(run_search(search, evaluator, sequence, max_evals=workers))  # warm-up
        t0 = time.perf_counter()
        results = run_search(search, evaluator, sequence, max_evals=done + n_evals, n_done=done)
        wall = time.perf_counter() - t0
    finally:
        evaluator.close()
    return {"n_evals": len(results), "wall_time": wall, "startup": startup,
            "busy_time": sum(r.end - r.start for r in results),
            "failed": sum(not r.ok for r in results),
            "worker_pids": len({r.worker for r in results})}


def utilization(run, workers, seconds):
    return dict(run, trial_seconds=seconds,
                utilization=run["busy_time"] / (run["wall_time"] * workers))


def summary(runs, workers):
    """Overhead per evaluation (wall time x workers / evals) of each run, and the median."""
    per_eval = [r["wall_time"] * workers / r["n_evals"] for r in runs]
    return {"n_evals": runs[0]["n_evals"], "repeats": len(runs),
            "wall_times": [r["wall_time"] for r in runs],
            "wall_time_median": statistics.median(r["wall_time"] for r in runs),
            "per_eval": per_eval, "per_eval_median": statistics.median(per_eval),
            "startups": [r["startup"] for r in runs],
            "failed": sum(r["failed"] for r in runs)}


# -- DeepHyper, in its own virtual environment ------------------------------------------------

def _venv_python(venv):
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _deephyper_version(python):
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import deephyper; print(deephyper.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def peer_python(venv=None):
    """The Python of ``venv`` (default ``PEER_VENV``) with DeepHyper, made on first use."""
    venv = PEER_VENV if venv is None else venv
    python = _venv_python(venv)
    wanted = PEER_REQUIREMENT.split("==")[1]
    if _deephyper_version(python) == wanted:
        return python
    print(f"making {venv} with {PEER_REQUIREMENT} (first use only; a minute or more)...",
          file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # deephyper 0.13.2 needs no torch (only its "core"/"torch" extras do); the constraints
    # file pins torch to the local CPU build in case anything ever pulls it in.
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "-c", str(ROOT / "constraints.txt"), PEER_REQUIREMENT]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}"
                           f"{done.stderr[-3000:]}")
    version = _deephyper_version(python)
    if version != wanted:
        raise RuntimeError(f"{venv} has deephyper {version}, not {wanted}")
    return python


def deephyper_call(python, workers, seconds, util_evals, evals, csv=False):
    """Run the peer script once (one utilization run, or one overhead run) and parse its line."""
    command = [str(python), str(PEER_SCRIPT), "--workers", str(workers), "--evals", str(evals),
               "--repeats", "1", "--util-evals", str(util_evals),
               "--trial-seconds", str(seconds)] + (["--csv"] if csv else [])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure_both(args):
    """autodeuq and DeepHyper in turn, each run on fresh workers, so that a load that comes and
    goes on the machine (other processes) falls on both sides alike.

    Returns
    -------
    ours, peer : dict
        ``peer`` is None when DeepHyper could not be installed or run.
    peer_error : str or None
        Why not.
    """
    options = {k: v for k, v in (("max_bundle", args.max_bundle),
                                 ("max_prefetch", args.max_prefetch)) if v is not None}
    ours = {"library": "autodeuq", "search": "autodeuq.search.RandomSearch",
            "evaluator": "DaskEvaluator (embedded LocalCluster, worker processes)",
            "evaluator_options": options, "workers": args.workers}
    peer, peer_error, python = {}, None, None
    if args.skip_peer:
        peer_error = "--skip-peer"
    else:
        try:
            python = peer_python()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            peer_error = str(exc)

    def peer_step(**kwargs):
        nonlocal peer_error
        if peer_error is not None:
            return None
        try:
            line = deephyper_call(python, args.workers, **kwargs)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            peer_error = str(exc)
            return None
        peer.update({k: v for k, v in line.items()
                     if k not in ("utilization", "overhead", "overhead_csv")})
        return line

    if args.util_evals > 0:
        ours["utilization"] = utilization(
            autodeuq_run(args.workers, args.trial_seconds, args.util_evals, seed=0, **options),
            args.workers, args.trial_seconds)
        line = peer_step(seconds=args.trial_seconds, util_evals=args.util_evals, evals=0)
        if line is not None:
            peer["utilization"] = line["utilization"]
    runs = {"ours": [], "overhead": [], "overhead_csv": []}
    for i in range(args.repeats):
        runs["ours"].append(autodeuq_run(args.workers, 0.0, args.evals, seed=1 + i,
                                         **options))
        line = peer_step(seconds=0.0, util_evals=0, evals=args.evals, csv=True)
        for key in ("overhead", "overhead_csv") if line is not None else ():
            o = line[key]
            runs[key].append({"n_evals": o["n_evals"], "wall_time": o["wall_times"][0],
                              "startup": o["startups"][0], "failed": o["failed"]})
    ours["overhead"] = summary(runs["ours"], args.workers)
    if peer_error is not None:
        return ours, None, None if args.skip_peer else peer_error
    peer["overhead"] = summary(runs["overhead"], args.workers)
    peer["overhead_csv"] = summary(runs["overhead_csv"], args.workers)
    return ours, peer, None


# -- BO ask ------------------------------------------------------------------------------------

def measure_ask(observations, repeats):
    """Median ms per ``ask()`` with 0 and 2 pending trials, via bench_ask.py's functions."""
    sys.path.insert(0, str(BENCH_DIR))
    import bench_ask

    from autodeuq.space import default_space

    space = default_space()
    rows = []
    for name, cls in bench_ask.ALGORITHMS.items():
        for n in observations:
            row = {"algorithm": name, "observations": n, "dimensions": len(space.names)}
            for pending in (0, 2):
                search = bench_ask.filled(cls, space, n)
                # filled() leaves its untimed first model-based ask pending: tell it (pending
                # 0) or keep it and ask once more (pending 2). Each timed ask is then told, so
                # every timed ask sees exactly `pending` lies.
                for trial in search.pending[pending:]:
                    search.tell(trial.trial_id, bench_ask.objective(space, trial.config))
                while search.n_pending < pending:
                    search.ask()
                row[f"pending_{pending}_ms"] = bench_ask.time_asks(search, space, repeats,
                                                                   concurrent=False)
            rows.append(row)
    return rows


# -- report ------------------------------------------------------------------------------------

def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _get(result, *keys):
    for key in keys:
        try:
            result = result[key]
        except (KeyError, IndexError, TypeError):
            return None
    return result


def report(args, ours, peer, peer_error, asks):
    print(f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.workers} workers, "
          "random search over the same 4 hyperparameters")
    if ours.get("evaluator_options"):
        print("DaskEvaluator options: " + ", ".join(
            f"{k}={v}" for k, v in ours["evaluator_options"].items()))
    name = f"deephyper {peer['version']}" if peer else "deephyper"
    print(f"{'':<44} {'autodeuq':>10} {name:>17} {'ratio dh/ad':>12}")

    def row(label, key, scale, spec, ratio=False):
        a, d = _get(ours, *key), _get(peer, *key)
        a = None if a is None else a * scale
        d = None if d is None else d * scale
        r = d / a if ratio and a and d is not None else None
        print(f"{label:<44} {_fmt(a, spec):>10} {_fmt(d, spec):>17} {_fmt(r, '.2f'):>12}")

    if args.util_evals > 0:
        row(f"utilization, {args.util_evals} x {args.trial_seconds:g} s trials",
            ("utilization", "utilization"), 1, ".3f")
        row("  wall time (s)", ("utilization", "wall_time"), 1, ".2f")
        row("  workers' start-up before the clock (s)", ("utilization", "startup"), 1, ".2f")
    row(f"overhead per eval (ms), {args.evals} trivial evals", ("overhead", "per_eval_median"),
        1e3, ".2f", ratio=True)
    row(f"  wall time (s), median of {args.repeats}", ("overhead", "wall_time_median"), 1, ".3f")
    for i in range(args.repeats):
        row(f"  run {i + 1} (ms per eval)", ("overhead", "per_eval", i), 1e3, ".2f", ratio=True)
    row("  with DeepHyper's results.csv (ms per eval)", ("overhead_csv", "per_eval_median"),
        1e3, ".2f")
    print("(overhead per eval = wall time x workers / evals; ratio = DeepHyper / autodeuq)")
    if peer_error:
        print(f"DeepHyper not measured: {peer_error}")

    if isinstance(asks, str):
        print(f"BO ask not measured: {asks}")
    else:
        print(f"\nask() on the default space ({asks[0]['dimensions']} dimensions), median ms")
        print(f"{'algorithm':<10} {'observations':>12} {'pending 0':>10} {'pending 2':>10}")
        for r in asks:
            print(f"{r['algorithm']:<10} {r['observations']:>12} {r['pending_0_ms']:>10.1f} "
                  f"{r['pending_2_ms']:>10.1f}")

    print()
    checks = []
    util = _get(ours, "utilization", "utilization")
    if util is not None:
        checks.append((f"utilization >= 0.95 with {args.trial_seconds:g} s trials",
                       util >= 0.95))
    if peer is not None:
        checks.append(("overhead per eval below DeepHyper's",
                       ours["overhead"]["per_eval_median"]
                       < peer["overhead"]["per_eval_median"]))
    if not isinstance(asks, str):
        at_1000 = [r for r in asks if r["algorithm"] == "bo" and r["observations"] == 1000]
        if at_1000:
            worst = max(at_1000[0]["pending_0_ms"], at_1000[0]["pending_2_ms"])
            checks.append(("BO ask <= 50 ms at 1,000 observations", worst <= 50))
    for label, ok in checks:
        print(f"target: {label:<48} {'met' if ok else 'MISSED'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=200,
                        help="trivial evaluations per overhead run")
    parser.add_argument("--util-evals", type=int, default=40,
                        help="trials of the utilization run (0 skips it)")
    parser.add_argument("--trial-seconds", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="overhead runs per library")
    parser.add_argument("--max-bundle", type=int, default=None,
                        help="DaskEvaluator's max_bundle (default: its own)")
    parser.add_argument("--max-prefetch", type=int, default=None,
                        help="DaskEvaluator's max_prefetch (default: its own)")
    parser.add_argument("--observations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--ask-repeats", type=int, default=25)
    parser.add_argument("--skip-peer", action="store_true", help="measure autodeuq only")
    parser.add_argument("--skip-ask", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    _send_by_value()
    ours, peer, peer_error = measure_both(args)
    asks = "--skip-ask"
    if not args.skip_ask:
        try:
            asks = measure_ask(args.observations, args.ask_repeats)
        except (ImportError, AttributeError, TypeError) as exc:
            asks = f"benchmarks/bench_ask.py is not usable ({type(exc).__name__}: {exc})"
    report(args, ours, peer, peer_error, asks)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "autodeuq": ours, "deephyper": peer,
                                         "deephyper_error": peer_error, "ask": asks},
                                        indent=2))


if __name__ == "__main__":
    main()
