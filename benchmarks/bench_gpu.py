"""Candidates per hour on one GPU with 1, 2 and 4 candidates training on it at once.

What ``trials_per_device`` buys: for each k in ``--ks`` (1, 2, 4), an embedded Dask cluster
on one GPU (``DaskEvaluator(devices=[GPU], trials_per_device=k)``: k worker processes pinned
to it, each with 1/k of a ``GPU`` resource) trains AutoDEUQ-style candidates for
``--seconds`` (90) of wall time, and the throughput is compared with k = 1 in the same run.

The candidates: a fixed cycle of small configurations of the kind the default search space
proposes (one to three hidden layers of 32 to 256 units, batch sizes 32 to 256, Adam or
AdamW), each trained for a fixed ``--epochs`` (30) without early stopping, so every k does
the same work per candidate. The data: a synthetic regression problem of ``--rows`` (10,000)
rows and ``--features`` (8) features, split as a search splits it (a fifth to validate on, a
tenth of the rest to early-stop on). Before the clock starts, every worker has trained one
one-epoch candidate (its CUDA context and kernels ready).

Throughput is counted in epochs: ``trials/h`` = epochs trained / ``--epochs`` / wall hours, so
candidates cut short by the end of the budget count for the part they did; ``done`` is the
candidates that finished whole. ``GPU %`` and ``GPU MiB`` are the mean utilization and the
peak memory that ``nvidia-smi`` reports during the run (blank without it).

    python benchmarks/bench_gpu.py [--device 0] [--ks 1,2,4] [--seconds 90] [--epochs 30]
        [--rows 10000] [--features 8] [--seed 0] [--json PATH]

Exits with status 2 and says so when this machine has no CUDA device. Dask's worker processes
import this script again (as ``__mp_main__``), so it does its work only under ``if __name__ ==
"__main__"``.
"""

import argparse
import itertools
import json
import logging
import platform
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

# The candidates, cycled: small networks of the default space's kind.
CONFIGS = [
    {"layers": [{"units": 64, "activation": "relu"}], "batch_size": 32, "optimizer": "adam"},
    {"layers": [{"units": 128, "activation": "tanh"}, {"units": 64, "activation": "relu"}],
     "batch_size": 64, "optimizer": "adamw"},
    {"layers": [{"units": 32, "activation": "silu"}] * 3, "batch_size": 32,
     "optimizer": "adam"},
    {"layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"}],
     "batch_size": 128, "optimizer": "adam"},
    {"layers": [{"units": 64, "activation": "elu", "dropout": 0.1}] * 2, "batch_size": 256,
     "optimizer": "adamw"},
]


def no_cuda_reason():
    """Why this machine cannot run the benchmark, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"no CUDA device: torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return "no CUDA device: torch sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    return None


def make_data(rows, features, seed):
    """A standardized synthetic problem with input-dependent noise, split as a search does."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    signal = np.sin(X[:, 0]) + X[:, 1] * X[:, 2 % features] + 0.5 * X[:, 3 % features]
    y = signal + (0.1 + 0.3 * np.abs(X[:, -1])) * rng.normal(size=rows)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    order = rng.permutation(rows)
    n_valid = rows // 5
    n_stop = (rows - n_valid) // 10
    valid, stop, train = np.split(order, [n_valid, n_valid + n_stop])
    return {"X_train": X[train], "y_train": y[train], "X_stop": X[stop], "y_stop": y[stop],
            "X_valid": X[valid], "y_valid": y[valid]}


class CycleSearch:
    """A search that proposes the fixed configurations in turn (ask/tell, as run_search
    needs)."""

    def __init__(self, configs):
        self._configs = itertools.cycle(configs)
        self._ids = itertools.count()

    def ask(self):
        from autodeuq.search import Trial

        return Trial(next(self._ids), dict(next(self._configs)))

    def tell(self, trial_id, objective, status):
        pass


class GpuMonitor:
    """Samples ``nvidia-smi`` once a second in a thread: mean utilization, peak memory."""

    def __init__(self, device):
        self.device = str(device)
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        query = ["nvidia-smi", f"--id={self.device}", "--format=csv,noheader,nounits",
                 "--query-gpu=utilization.gpu,memory.used"]
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, memory = (float(v) for v in out.strip().splitlines()[0].split(","))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                continue
            self.samples.append((util, memory))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self):
        if not self.samples:
            return None, None
        return (float(np.mean([u for u, _ in self.samples])),
                float(max(m for _, m in self.samples)))


def run_one(k, data, configs, args):
    """Train candidates for ``args.seconds`` with ``k`` per GPU; one row of the table."""
    from autodeuq.evaluation import DaskEvaluator, run_search

    started = time.perf_counter()
    with DaskEvaluator(devices=[args.device], trials_per_device=k) as evaluator:
        evaluator.start(data)
        up = time.perf_counter() - started
        # Warm-up: a one-epoch candidate per worker (CUDA context, kernels, cuBLAS handles).
        n_workers = evaluator.n_workers
        for i in range(n_workers):
            evaluator.submit(-1 - i, {**configs[i % len(configs)], "max_epochs": 1}, seed=i)
        warm = []
        while len(warm) < n_workers:
            warm += evaluator.collect(timeout=600)
        failed = [r for r in warm if r.status != "success"]
        if failed:
            raise RuntimeError(f"k={k}: the warm-up candidate failed: {failed[0].error}")
        with GpuMonitor(args.device) as monitor:
            start = time.perf_counter()
            results = run_search(CycleSearch(configs), evaluator,
                                 np.random.SeedSequence(args.seed), time_budget=args.seconds)
            wall = time.perf_counter() - start
    bad = [r for r in results if r.status not in ("success", "timeout")]
    if bad:
        raise RuntimeError(f"k={k}: {len(bad)} candidate(s) failed, e.g. {bad[0].status}: "
                           f"{(bad[0].error or '').strip().splitlines()[-1:]}")
    epochs = sum(r.n_epochs for r in results)
    util, memory = monitor.summary()
    return {"k": k, "workers": len(warm), "startup_s": round(up, 1), "wall_s": round(wall, 1),
            "done": sum(r.status == "success" and r.n_epochs == args.epochs for r in results),
            "epochs": epochs, "trials_per_hour": epochs / args.epochs / wall * 3600,
            "gpu_util_pct": util, "gpu_mem_mib": memory}


def _cell(value, digits=0):
    return "" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="0", help="the GPU (index or UUID; default 0)")
    parser.add_argument("--ks", default="1,2,4",
                        help="candidates per GPU to compare, the first the reference")
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="wall time of training per setting (default: 90)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per candidate")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows there")
    args = parser.parse_args(argv)
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        parser.error(f"--ks must be comma-separated ints, e.g. 1,2,4; got {args.ks!r}")
    if not ks or min(ks) < 1:
        parser.error(f"--ks must be ints >= 1; got {args.ks!r}")
    reason = no_cuda_reason()
    if reason is not None:
        print(f"bench_gpu: {reason}. It measures candidates per hour on a GPU; run it on a "
              "machine with one (and a CUDA build of torch).", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)

    import torch

    data = make_data(args.rows, args.features, args.seed)
    configs = [{**c, "max_epochs": args.epochs, "patience": None, "learning_rate": 1e-3}
               for c in CONFIGS]
    index = int(args.device) if str(args.device).isdigit() else 0
    print(f"GPU {args.device}: {torch.cuda.get_device_name(index)}; torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, Python {platform.python_version()}; {args.rows} rows x "
          f"{args.features} features, {len(configs)} configurations cycled, {args.epochs} "
          f"epochs each, {args.seconds:g} s per setting", flush=True)
    rows = []
    for k in ks:
        rows.append(run_one(k, data, configs, args))
        print(f"  k={k}: {rows[-1]['trials_per_hour']:.0f} candidates/h", flush=True)
    reference = rows[0]["trials_per_hour"]
    print(f"\n{'k':>3} {'workers':>7} {'done':>5} {'epochs':>7} {'wall s':>7} {'trials/h':>9} "
          f"{'ratio':>6} {'GPU %':>6} {'GPU MiB':>8}")
    for row in rows:
        row["ratio"] = row["trials_per_hour"] / reference if reference else None
        print(f"{row['k']:>3} {row['workers']:>7} {row['done']:>5} {row['epochs']:>7} "
              f"{row['wall_s']:>7.1f} {row['trials_per_hour']:>9.0f} "
              f"{_cell(row['ratio'], 2):>6} {_cell(row['gpu_util_pct']):>6} "
              f"{_cell(row['gpu_mem_mib']):>8}")
    print(f"(ratio: trials per hour against k={ks[0]} in this run)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
