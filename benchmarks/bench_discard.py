"""Early discarding: time to reach the same validation NLL with and without it, in one run.

For each UCI dataset (split 0 by default), a NASRegressor search first trains every candidate
to the end (``max_evals`` candidates); its final best validation NLL is the target. Then the
same search (same seed, so the same validation rows and the same first proposals) runs with
each early-discarding policy for at most the full search's wall time. Each run's time to
target is when its best finished candidate first reaches the target (discarded candidates
never count); the ratio is discarding's time over the full search's to the same value, and
the last column is it over the full search's whole time (what the full search costs); and
"best NLL in half the time" is each run's best by half the full search's time. Times
are the trials' end times (wall, from the first trial's start) and, as a cross-check that a
shared machine's load does not move, this process's CPU time at the same moments (serial
backend, one torch thread: the trials are the process's only work).

The searches start from scratch (``initial_configs=None``, ``--initial default`` to change):
both would otherwise train the same default configuration first, which says nothing about
discarding. ``refit=False``: only the search is timed.

    nice -n 19 python benchmarks/bench_discard.py                 # energy and concrete, split 0
    nice -n 19 python benchmarks/bench_discard.py --datasets energy --max-evals 20 \
        --policies one_epoch --json out.json
    nice -n 19 python benchmarks/bench_discard.py --seeds 0 1 2 3 4   # and a summary over seeds

One seed's comparison is mostly luck (which search draws the configuration that scores best
on the validation rows, and when): with several seeds, a summary gives for each policy how
many seeds reached their full search's best and the medians of the ratios, a run that never
reached it counting as infinite.
"""

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autodeuq import NASRegressor
from autodeuq.datasets import UCI_DATASETS, load_uci
from autodeuq.evaluation import SuccessiveHalving
from autodeuq.space import default_space

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"
POLICIES = ("successive_halving", "one_epoch")


class CpuClock(logging.Handler):
    """Notes this process's CPU time when the search loop logs a finished trial."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.at = {}

    def emit(self, record):
        if record.msg.startswith("trial "):
            self.at[int(record.args[0])] = time.process_time()


def search(X, y, args, seed, early_discard, max_evals, time_budget):
    logger = logging.getLogger("autodeuq.evaluation._loop")
    clock = CpuClock()
    logger.addHandler(clock)
    logger.setLevel(logging.DEBUG)
    try:
        start = time.process_time()
        est = NASRegressor(
            search_space=default_space(max_layers=args.max_layers), algorithm=args.algorithm,
            max_evals=max_evals, time_budget=time_budget, backend="serial", refit=False,
            rescore_top=0, initial_configs="default" if args.initial == "default" else None,
            random_state=seed, early_discard=early_discard).fit(X, y)
    finally:
        logger.removeHandler(clock)
    table = est.search_results_.copy()
    table["cpu_time"] = table["job_id"].map(clock.at) - start
    return est, table


def time_to(table, target, column):
    """When the best finished candidate first reached ``target`` (None if it never did)."""
    ok = table.loc[table["status"] == "success"].sort_values(column)
    reached = ok.loc[ok["valid_nll"].cummin() <= target + 1e-12, column]
    return None if reached.empty else float(reached.iloc[0])


def best_by(table, seconds):
    """The best validation NLL of a candidate finished by ``seconds`` (None if none had)."""
    ok = table.loc[(table["status"] == "success") & (table["end_time"] <= seconds), "valid_nll"]
    return None if ok.empty else float(ok.min())


def summary(name, est, table, target, half):
    discarded = table["status"] == "discarded"
    return {
        "policy": name,
        "trials": len(table),
        "discarded": int(discarded.sum()),
        "epochs": int(table["n_epochs"].sum()),
        "seconds_discarded": float(table.loc[discarded, "duration"].sum()),
        "search_seconds": float(est.search_time_),
        "best_nll": float(table.loc[table["status"] == "success", "valid_nll"].min()),
        "best_nll_half": best_by(table, half),
        "seconds_to_target": time_to(table, target, "end_time"),
        "cpu_to_target": time_to(table, target, "cpu_time"),
    }


def fmt(value, digits=1):
    return "never" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--datasets", nargs="+", default=["energy", "concrete"],
                        choices=UCI_DATASETS)
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--max-evals", type=int, default=30,
                        help="candidates of the full search (default 30)")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--algorithm", default="agebo")
    parser.add_argument("--max-layers", type=int, default=3,
                        help="of the default space (default 3: small tabular networks)")
    parser.add_argument("--initial", choices=("none", "default"), default="none")
    parser.add_argument("--sh-min-epochs", type=int, nargs="+", default=[9], metavar="R",
                        help="successive halving's first rung(s), one run each (default 9, "
                             "the library's default)")
    parser.add_argument("--sh-min-trials", type=int, metavar="N",
                        help="values a rung needs before it discards (default: the "
                             "library's, 9)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                        help="search seeds, one full search and one run per policy each; "
                             "with several, a summary over them follows the table")
    parser.add_argument("--json", type=Path, help="also write every run's row here")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    torch.set_num_threads(1)

    rows = []
    for dataset in args.datasets:
        X, y, _, _ = load_uci(dataset, args.split, args.data_dir)
        for seed in args.seeds:
            rows += compare(X, y, args, dataset, seed)
    print_table(rows, args)
    if len(args.seeds) > 1:
        print_summary(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def policies_of(args):
    """``(label, early_discard)`` of every run after the full search."""
    policies = []
    for policy in args.policies:
        if policy == "successive_halving":
            label = "" if args.sh_min_trials is None else f" n={args.sh_min_trials}"
            least = {} if args.sh_min_trials is None else {"min_trials": args.sh_min_trials}
            policies += [(f"{policy} r={r}{label}", SuccessiveHalving(r, **least))
                         for r in args.sh_min_epochs]
        else:
            policies.append((policy, policy))
    return policies


def compare(X, y, args, dataset, seed):
    """The full search and each policy's, from one seed: their rows."""
    est, table = search(X, y, args, seed, None, args.max_evals, None)
    target = float(table.loc[table["status"] == "success", "valid_nll"].min())
    half = est.search_time_ / 2  # half the full search's time
    full = summary("none", est, table, target, half)
    runs = [full]
    for name, policy in policies_of(args):
        # As long as the full search took, whatever the number of candidates.
        est, table = search(X, y, args, seed, policy, None, full["search_seconds"])
        runs.append(summary(name, est, table, target, half))
    for run in runs:
        run.update(dataset=dataset, split=args.split, seed=seed, target_nll=target,
                   ratio=_over(run["seconds_to_target"], full["seconds_to_target"]),
                   cpu_ratio=_over(run["cpu_to_target"], full["cpu_to_target"]),
                   ratio_whole=_over(run["seconds_to_target"], full["search_seconds"]))
        print(f"{dataset:<9} seed {seed:<3} {run['policy']:<18} {run['trials']:>3} trials, "
              f"best NLL {run['best_nll']:.3f}, target {target:.3f} reached at "
              f"{fmt(run['seconds_to_target'])} s", file=sys.stderr, flush=True)
    return runs


def _over(value, base):
    """``value / base``, or None (never reached) when ``value`` is None."""
    return None if value is None else value / base


def print_table(rows, args):
    load = os.getloadavg()
    print(f"Search {args.algorithm}, default space up to {args.max_layers} layers, serial, "
          f"seeds {' '.join(map(str, args.seeds))}, full search {args.max_evals} candidates; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end.\n")
    print("| dataset | seed | early_discard | trials | discarded | epochs | search s | best NLL "
          "| best NLL in half the time | s to target | ratio | CPU s to target | CPU ratio | "
          "ratio to the whole full search |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['seed']} | {r['policy']} | {r['trials']} | "
              f"{r['discarded']} | {r['epochs']} | {r['search_seconds']:.1f} | "
              f"{r['best_nll']:.3f} | {fmt(r['best_nll_half'], 3)} | "
              f"{fmt(r['seconds_to_target'])} | {fmt(r['ratio'], 2)} | "
              f"{fmt(r['cpu_to_target'])} | {fmt(r['cpu_ratio'], 2)} | "
              f"{fmt(r['ratio_whole'], 2)} |")


def median_ratio(values):
    """The median of ratios where a run that never reached its target counts as infinite
    (so the median is "never" when half the runs or more never did)."""
    median = float(np.median([math.inf if pd.isna(v) else v for v in values]))
    return None if math.isinf(median) else median


def print_summary(rows):
    """Per dataset and policy, over the seeds: how often, and how soon, the target was hit,
    and the best NLL on average at the end and in half the full search's time."""
    print("\n| dataset | early_discard | seeds reaching the target | median ratio | median ratio "
          "to the whole full search | mean best NLL | mean best NLL in half the time |")
    print("|---|---|---|---|---|---|---|")
    table = pd.DataFrame(rows)
    for (dataset, policy), runs in table.groupby(["dataset", "policy"], sort=False):
        reached = int(runs["seconds_to_target"].notna().sum())
        print(f"| {dataset} | {policy} | {reached} of {len(runs)} | "
              f"{fmt(median_ratio(runs['ratio'].tolist()), 2)} | "
              f"{fmt(median_ratio(runs['ratio_whole'].tolist()), 2)} | "
              f"{runs['best_nll'].mean():.3f} | {mean_of(runs['best_nll_half'])} |")


def mean_of(values):
    """The mean of the values given, saying how many seeds had none (no candidate finished in
    half the time)."""
    values = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if values.isna().all():
        return "none"
    missing = int(values.isna().sum())
    return f"{values.mean():.3f}" + (f" ({missing} without)" if missing else "")


if __name__ == "__main__":
    main()
