"""UCI regression benchmark: test NLL, RMSE and coverage next to the published numbers.

Runs each estimator on each standard split of the UCI datasets (the PBP protocol; files as in
``../shared/data/uci``) and prints a markdown table of means over splits: test NLL of the exact
mixture and of the moment-matched Gaussian (original units), RMSE, the 90% coverage of the
estimator's ``predict_interval`` (calibrated on the validation part by the searching
estimators) and of the mixture's own quantiles, and wall time per split, beside the published
anchors on the same splits.

    python benchmarks/bench_uci.py --estimators autodeuq deep_ensemble gaussian_mlp \
        --time-budget 240                                  # make bench-uci
    python benchmarks/bench_uci.py --datasets kin8nm power-plant --splits 0 \
        --estimators autodeuq deep_ensemble --time-budget 360
    python benchmarks/bench_uci.py --estimators deep_ensemble gaussian_mlp --json out.json
    python benchmarks/bench_uci.py --datasets concrete energy --splits 0 \
        --estimators gaussian_mlp nas --time-budget 300
    python benchmarks/bench_uci.py --datasets energy concrete --estimators deep_ensemble \
        --seeds 5                        # the baseline's spread over its random seeds
    python benchmarks/bench_uci.py --datasets concrete --estimators autodeuq \
        --first-seed 1 --seeds 2         # two more runs per split, after an earlier seed 0

With ``--seeds K`` every estimator runs K times per split (``random_state`` = split, then
split + 1000, split + 2000, ...; ``--first-seed N`` starts at split + 1000 N, so that runs
added later draw seeds not drawn before); a split's numbers are then the mean over its runs,
the table's means and sds are over splits, and the column "seed sd" is the NLL's sd over the
runs of one split, averaged over splits. On a small test set the NLL of one run can hang on a single
point (energy split 1: one test point with y = 13.7 where every network predicts 10.8 makes up
most of the NLL), so one seed of a cheap baseline says little about its expected NLL.
"""

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor, NASRegressor
from autodeuq.datasets import UCI_DATASETS, load_uci
from autodeuq.space import SearchSpace, default_space
from autodeuq.uncertainty import regression_report

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"

# Published RMSE / NLL on these splits (means over 20 splits; ../shared/data/uci/README.md).
PUBLISHED = {
    "concrete": {"Deep Ensembles": (6.03, 3.06), "MC dropout 2018": (4.82, 2.93),
                 "NGBoost": (None, 3.04)},
    "energy": {"Deep Ensembles": (2.09, 1.38), "MC dropout 2018": (0.54, 1.21),
               "NGBoost": (None, 0.60)},
    "kin8nm": {"Deep Ensembles": (0.09, -1.20), "MC dropout 2018": (0.08, -1.14),
               "NGBoost": (None, -0.49)},
    "power-plant": {"Deep Ensembles": (4.11, 2.79), "MC dropout 2018": (4.01, 2.80),
                    "NGBoost": (None, 2.79)},
    "yacht": {"Deep Ensembles": (1.58, 1.18), "MC dropout 2018": (0.67, 1.25),
              "NGBoost": (None, 0.20)},
}

# Default parameters are what is benchmarked; member parameters are only for smoke tests.
ESTIMATORS = {
    "deep_ensemble": lambda seed, budget, **member: DeepEnsembleRegressor(
        GaussianMLPRegressor(**member), random_state=seed),
    "gaussian_mlp": lambda seed, budget, **member: GaussianMLPRegressor(random_state=seed,
                                                                        **member),
    "nas": lambda seed, budget, **member: NASRegressor(
        time_budget=budget, max_evals=None, random_state=seed,
        search_space=_smoke_space(member.get("max_epochs"))),
    "autodeuq": lambda seed, budget, **member: AutoDEUQRegressor(
        time_budget=budget, max_evals=None, random_state=seed,
        search_space=_smoke_space(member.get("max_epochs"))),
}


def _smoke_space(max_epochs):
    """None (the default space), or a small one with max_epochs fixed, for smoke tests."""
    if max_epochs is None:
        return None
    space = default_space(max_layers=2)
    dims = {**space.dimensions, "max_epochs": max_epochs}
    return SearchSpace(dims, conditions=dict(space.conditions))


#: ``random_state`` of run ``i`` of a split is ``split + SEED_STRIDE * i``.
SEED_STRIDE = 1000


def run_split(name, dataset, split, data_dir, max_epochs=None, budget=300.0, run=0):
    X_train, y_train, X_test, y_test = load_uci(dataset, split, data_dir)
    member = {} if max_epochs is None else {"max_epochs": max_epochs}
    seed = split + SEED_STRIDE * run
    est = ESTIMATORS[name](seed, budget, **member)
    start = time.perf_counter()
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    report = regression_report(y_test, est.predict_distribution(X_test), level=0.9)
    # The estimator's own 90% interval: calibrated on the validation part by the searching
    # estimators (interval_calibration), the mixture's quantiles otherwise ("coverage").
    lower, upper = est.predict_interval(X_test, coverage=0.9)
    row = {"estimator": name, "dataset": dataset, "split": split, "seed": seed, "seconds": seconds,
           **{k: float(v) for k, v in report.items()},
           "interval_coverage": float(np.mean((y_test >= lower) & (y_test <= upper))),
           "interval_width_calibrated": float(np.mean(upper - lower))}
    if hasattr(est, "search_results_"):  # what the search did within the budget
        row["trials"] = len(est.search_results_)
        row["search_seconds"] = est.search_time_
        row["refit_seconds"] = est.refit_time_
    if hasattr(est, "rescored_"):  # candidates trained a second time to be scored
        row["rescored"] = len(est.rescored_)
    if hasattr(est, "members_"):  # networks in the fitted ensemble
        row["networks"] = len(est.members_)
    return row


def _mean_trials(group):
    trials = [r["trials"] for r in group if "trials" in r]
    return f"{statistics.mean(trials):.0f}" if trials else ""


def mean_sd(group, key):
    """``"mean ± sd"`` of ``key`` over the rows of ``group`` (sd 0 for one row)."""
    values = [r[key] for r in group]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def per_split(group):
    """One row per split: the mean of every number over that split's runs (seeds), with
    ``runs`` and ``seed_sd`` (the NLL's sd over them, 0 for one run)."""
    splits = {}
    for row in group:
        splits.setdefault(row["split"], []).append(row)
    merged = []
    for runs in splits.values():
        row = {key: statistics.mean(r[key] for r in runs) for key, value in runs[0].items()
               if isinstance(value, int | float) and not isinstance(value, bool)
               and all(key in r for r in runs)}
        row.update(runs=len(runs), seed_sd=statistics.stdev(r["nll"] for r in runs)
                   if len(runs) > 1 else 0.0)
        merged.append(row)
    return merged


def summarize(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["dataset"], {}).setdefault(row["estimator"], []).append(row)
    lines = ["| dataset | model | splits | runs/split | NLL | seed sd | NLL (moment-matched) | "
             "RMSE | 90% coverage (predict_interval) | 90% coverage (mixture) | seconds/run | "
             "trials/run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    for dataset, by_name in groups.items():
        for name, runs in by_name.items():
            group = per_split(runs)
            lines.append(f"| {dataset} | {name} | {len(group)} | "
                         f"{statistics.mean(r['runs'] for r in group):g} | "
                         f"{mean_sd(group, 'nll')} | "
                         f"{statistics.mean(r['seed_sd'] for r in group):.3f} | "
                         f"{mean_sd(group, 'nll_moment_matched')} | {mean_sd(group, 'rmse')} | "
                         f"{mean_sd(group, 'interval_coverage')} | "
                         f"{mean_sd(group, 'coverage')} | "
                         f"{statistics.mean(r['seconds'] for r in group):.1f} | "
                         f"{_mean_trials(group)} |")
        for paper, (rmse, nll) in PUBLISHED.get(dataset, {}).items():
            lines.append(f"| {dataset} | *{paper} (published)* | 20 | | {nll:.2f} | | | "
                         f"{'' if rmse is None else f'{rmse:.2f}'} | | | | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete"],
                        choices=UCI_DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--estimators", nargs="+", default=["deep_ensemble"],
                        choices=sorted(ESTIMATORS))
    parser.add_argument("--json", type=Path, help="also write every split's row here")
    parser.add_argument("--max-epochs", type=int, help="override the defaults (smoke tests)")
    parser.add_argument("--time-budget", type=float, default=300.0,
                        help="seconds of search per split for the searching estimators")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="runs per estimator and split, each from its own random_state "
                             "(default 1)")
    parser.add_argument("--first-seed", type=int, default=0, metavar="N",
                        help="the first run's index: its random_state is split + 1000 N "
                             "(default 0), to add runs to earlier ones with other seeds")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    if args.seeds < 1:
        parser.error(f"--seeds must be an int >= 1 (runs per split); got {args.seeds}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be an int >= 0 (the first run's index); got "
                     f"{args.first_seed}")

    rows = []
    runs = range(args.first_seed, args.first_seed + args.seeds)
    for dataset, name, split, run in itertools.product(args.datasets, args.estimators,
                                                       args.splits, runs):
        row = run_split(name, dataset, split, args.data_dir, args.max_epochs,
                        args.time_budget, run)
        rows.append(row)
        trials = f" {row['trials']} trials" if "trials" in row else ""
        if "rescored" in row:
            trials += f" ({row['rescored']} rescored)"
        if "networks" in row:
            trials += f" {row['networks']} networks"
        print(f"{dataset:<12} {name:<14} split {split} seed {row['seed']}: "
              f"NLL {row['nll']:.3f} RMSE {row['rmse']:.3f} cov {row['interval_coverage']:.2f} "
              f"(mixture {row['coverage']:.2f}) "
              f"{row['seconds']:.1f}s{trials}", file=sys.stderr, flush=True)
    print(summarize(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
