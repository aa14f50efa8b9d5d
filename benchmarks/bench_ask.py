"""Milliseconds per ``ask()`` of the model-based searches, with 100 and 1,000 observations.

For each algorithm and each number of observations n, a search over the default space
(10 layers) is filled with n told trials of a cheap synthetic objective (asked at random, so
the filling is fast), then timed over ``--repeats`` rounds of one ``ask()`` and its ``tell()``
("sequential": the surrogate is refitted at each ask since a result came in) and over
``--repeats`` asks in a row without tells ("concurrent": each ask adds a pending trial, and so
a lie, to the surrogate's data). Each ask is timed alone; the table shows medians.

The target is ``ask() <= 50 ms`` at 1,000 observations on a 2-core machine.

    python benchmarks/bench_ask.py [--observations 100 1000] [--repeats 25]
"""

import argparse
import statistics
import time

import numpy as np

from autodeuq.search import AgEBO, BayesianOptimization
from autodeuq.space import default_space

ALGORITHMS = {"bo": BayesianOptimization, "agebo": AgEBO}


def objective(space, config):
    """A cheap stand-in for a validation NLL: a quadratic of a few encoded dimensions."""
    x = space.encode([config])[0]
    cols = [space.names.index(n) for n in ("num_layers", "units_1", "learning_rate",
                                           "batch_size")]
    return float(np.sum((x[cols] - 0.3) ** 2))


def filled(cls, space, n, seed=0):
    """A search with ``n`` told trials (asked at random: n_initial is raised while filling)."""
    search = cls(space, random_state=seed)
    search.n_initial = n + 1
    for _ in range(n):
        trial = search.ask()
        if trial.trial_id % 20 == 19:
            search.tell(trial.trial_id, status="failed")
        else:
            search.tell(trial.trial_id, objective(space, trial.config))
    search.n_initial = 10
    search.ask()  # the first model-based ask fills the candidate pool once; not timed
    return search


def time_asks(search, space, repeats, concurrent):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trial = search.ask()
        times.append(time.perf_counter() - start)
        if not concurrent:
            search.tell(trial.trial_id, objective(space, trial.config))
    return 1e3 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS),
                        choices=list(ALGORITHMS))
    parser.add_argument("--max-layers", type=int, default=10)
    args = parser.parse_args(argv)

    space = default_space(max_layers=args.max_layers)
    print(f"default space: {len(space.names)} dimensions; median ms per ask()")
    print(f"{'algorithm':<10} {'observations':>12} {'sequential':>11} {'concurrent':>11}")
    for name in args.algorithms:
        for n in args.observations:
            search = filled(ALGORITHMS[name], space, n)
            sequential = time_asks(search, space, args.repeats, concurrent=False)
            concurrent = time_asks(search, space, args.repeats, concurrent=True)
            print(f"{name:<10} {n:>12} {sequential:>11.1f} {concurrent:>11.1f}")


if __name__ == "__main__":
    main()
