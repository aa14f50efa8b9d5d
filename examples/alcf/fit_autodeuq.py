"""Fit AutoDEUQ on a Dask cluster that a job script started
=========================================================

The driver of the ALCF Polaris recipe (``polaris_job.sh`` in this folder, explained in its
README): it waits until every worker has joined the scheduler, fits an
:class:`~autodeuq.AutoDEUQRegressor` whose candidates train on those workers, one per GPU, and
saves the fitted model in autodeuq's safe format (``model.save(path)``, read back with
``autodeuq.load(path)`` on any machine, with or without a GPU).

The cluster is named by its *scheduler file*, which ``dask scheduler --scheduler-file`` writes
on the shared file system; the estimator connects to it itself (``scheduler=PATH``) and leaves
it running when it is done. Workers that offer a ``GPU`` resource get one candidate each at a
time, trained on their GPU (``--trials-per-device K``: K at a time, on workers started with
``--nthreads K``).

The data: a CSV file with a header row (``--data FILE --target COLUMN``; every other numeric
column is a feature), or, without ``--data``, the workshop's toy problem, whose test grid then
shows the aleatoric and epistemic parts inside and outside the training range. With
``--checkpoint-dir`` every finished candidate is journaled there, and a job that runs the same
command again resumes the search instead of starting over.

Run ``python fit_autodeuq.py --help`` for the options.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from autodeuq import AutoDEUQRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.space import SearchSpace, default_space
from autodeuq.uncertainty import regression_report


def wait_for_workers(scheduler_file, n_workers, timeout):
    """Block until ``n_workers`` workers have joined; return their names and the dashboard."""
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
        client.wait_for_workers(n_workers, timeout=timeout)
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        return sorted(w.get("name", "") for w in workers), client.dashboard_link


def load_data(parser, args):
    """``X, y`` and, for the toy problem, its test grid (None for a CSV file)."""
    if args.data is None:
        X, y, X_test, y_test = make_tutorial_regression(random_state=args.seed)
        return X, y, X_test, y_test
    import pandas as pd

    if not Path(args.data).is_file():
        parser.error(f"--data {args.data}: no such file")
    frame = pd.read_csv(args.data)
    if args.target is None or args.target not in frame.columns:
        parser.error(f"--target must name a column of {args.data}; got {args.target!r}, its "
                     f"columns are {', '.join(map(str, frame.columns))}")
    X = frame.drop(columns=[args.target]).select_dtypes("number")
    if X.shape[1] == 0:
        parser.error(f"{args.data} has no numeric column besides --target {args.target!r}")
    return X, frame[args.target], None, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler-file", required=True,
                        help="the scheduler file that `dask scheduler --scheduler-file` wrote")
    parser.add_argument("--n-workers", type=int, default=1,
                        help="wait until this many workers have joined (default: 1)")
    parser.add_argument("--wait-timeout", type=float, default=600.0,
                        help="seconds to wait for them before giving up (default: 600)")
    parser.add_argument("--data", default=None,
                        help="CSV file with a header row (default: the workshop's toy problem)")
    parser.add_argument("--target", default=None, help="the column of --data to predict")
    parser.add_argument("--out", required=True, help="where to save the fitted model")
    parser.add_argument("--time-budget", type=float, default=600.0,
                        help="seconds of search (default: 600)")
    parser.add_argument("--max-evals", type=int, default=None,
                        help="most candidates (default: no limit, the time budget ends it)")
    parser.add_argument("--ensemble-size", type=int, default=5)
    parser.add_argument("--max-layers", type=int, default=5,
                        help="most hidden layers of a candidate (default: 5)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="fix every candidate's epochs (default: searched, 100 to 1000)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="journal finished candidates there; the same command resumes")
    parser.add_argument("--trials-per-device", type=int, default=1,
                        help="candidates training at once on each GPU; start the workers with "
                             "as many threads (--nthreads) (default: 1)")
    parser.add_argument("--cpu", action="store_true",
                        help="train on the workers' CPUs even where they offer a GPU (to try "
                             "the recipe on a machine without one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The search's progress (verbose=1) as log lines: a batch job's output is not a terminal.
    logging.getLogger("autodeuq").setLevel(logging.INFO)

    X, y, X_test, y_test = load_data(parser, args)
    start = time.perf_counter()
    names, dashboard = wait_for_workers(args.scheduler_file, args.n_workers, args.wait_timeout)
    print(f"{len(names)} workers joined in {time.perf_counter() - start:.0f}s: "
          f"{', '.join(names)}; dashboard {dashboard}", flush=True)

    space = default_space(max_layers=args.max_layers)
    if args.max_epochs is not None:
        space = SearchSpace({**space.dimensions, "max_epochs": args.max_epochs},
                            conditions=dict(space.conditions))
    model = AutoDEUQRegressor(
        search_space=space, time_budget=args.time_budget, max_evals=args.max_evals,
        ensemble_size=args.ensemble_size, scheduler=str(args.scheduler_file),
        devices="cpu" if args.cpu else None, trials_per_device=args.trials_per_device,
        checkpoint_dir=args.checkpoint_dir, random_state=args.seed, verbose=1)
    model.fit(X, y)
    results = model.search_results_
    print(f"{len(results)} candidates in {model.search_time_:.0f}s "
          f"({(results['status'] == 'success').sum()} succeeded) on {results['worker'].nunique()}"
          f" workers; ensemble of {len(model.members_)} networks, validation NLL "
          f"{model.validation_nll_:.3f}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    results.to_csv(out.with_name(out.stem + "_search_results.csv"), index=False)
    print(f"model saved to {out} (load it with autodeuq.load), one row per candidate in "
          f"{out.stem}_search_results.csv")

    summary = {"model": model, "workers": names, "path": out}
    if X_test is not None:
        x = X_test[:, 0]
        inside = ((x >= -30) & (x <= -20)) | ((x >= 20) & (x <= 30))
        unc = model.predict_uncertainty(X_test)
        report = regression_report(y_test, model.predict_distribution(X_test))
        summary["epistemic_inside"] = float(np.mean(unc.epistemic_std[inside]))
        summary["epistemic_outside"] = float(np.mean(unc.epistemic_std[~inside]))
        print(f"toy problem's test grid: NLL {report['nll']:.3f}, RMSE {report['rmse']:.3f}; "
              f"epistemic std {summary['epistemic_inside']:.3f} inside the training range, "
              f"{summary['epistemic_outside']:.3f} outside")
    return summary


if __name__ == "__main__":
    main()
