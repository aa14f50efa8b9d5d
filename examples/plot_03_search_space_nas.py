"""Search space and neural architecture search
============================================

Two hidden layers of 128 ReLU units trained by Adam at 3e-3 is a guess. Neural architecture
search replaces the guess by a search: a *search space* says which networks and which
training settings may be tried, and a search algorithm proposes candidates from it, trains
each on an inner training part and ranks it by its NLL on a held-out validation part.

The space of :func:`autodeuq.space.default_space` is AutoDEUQ's: the number of hidden layers,
then for each layer its width, activation, dropout and skip connections from earlier layers
(each defined only when the network has that layer: a *condition*), then the optimizer,
learning rate, batch size, weight decay, epochs, patience and learning-rate schedule. A
candidate is a flat dict of those values; :func:`autodeuq.space.to_network_config` turns it
into the network it describes.

:class:`~autodeuq.NASRegressor` runs the search on Dask workers: an embedded cluster on this
machine (one worker process per core), the active ``distributed.Client`` if there is one, or
any cluster given as ``scheduler=``. Candidates train in parallel and asynchronously, a new
one starting as soon as a worker frees. At the end it keeps the best network, trained again
on all the data. Its ``search_results_`` holds one row per candidate, in the layout of
DeepHyper's ``results.csv``.

Run it with ``python examples/plot_03_search_space_nas.py [--time-budget 45] [--out FIG.png]``.
"""

import argparse

import numpy as np

from autodeuq import NASRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import SearchTrajectoryDisplay
from autodeuq.space import SearchSpace, default_space, to_network_config


def plot(nas, out):
    # Each candidate's validation NLL when it finished, and the best so far.
    display = SearchTrajectoryDisplay.from_estimator(nas, x="time")
    display.ax_.set_title("the search's trajectory")
    if out:
        display.figure_.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget", type=float, default=45.0,
                        help="seconds of search (default: 45)")
    parser.add_argument("--max-evals", type=int, default=None,
                        help="most candidates to train (default: no limit, the time budget "
                             "ends the search)")
    parser.add_argument("--max-layers", type=int, default=3,
                        help="most hidden layers of a candidate (default: 3)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="fix every candidate's epochs (default: searched, 100 to 1000)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="Dask workers of the embedded cluster (default: one per core)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    # The space. A one-dimensional problem needs few layers, and a smaller space gets more of
    # its candidates tried in a short search.
    space = default_space(max_layers=args.max_layers)
    if args.max_epochs is not None:
        # Any dimension can be replaced, here by a constant.
        space = SearchSpace({**space.dimensions, "max_epochs": args.max_epochs},
                            conditions=dict(space.conditions))
    print(space)
    rng = np.random.default_rng(args.seed)
    config = space.sample(rng)
    print(f"\na candidate, as the search sees it ({len(config)} values; only the dimensions "
          f"of its {config['num_layers']} layer(s) are there):\n  {config}")
    network = to_network_config(config)
    print("the same candidate as a network configuration:\n  layers: "
          + "; ".join(str(layer) for layer in network["layers"]))

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    nas = NASRegressor(search_space=space, max_evals=args.max_evals,
                       time_budget=args.time_budget, n_jobs=args.n_jobs,
                       random_state=args.seed)
    print(f"\nsearching for {args.time_budget:g}s ...", flush=True)
    nas.fit(X_train, y_train)

    results = nas.search_results_
    print(f"\n{len(results)} candidates in {nas.search_time_:.0f}s: "
          + ", ".join(f"{n} {status}" for status, n in results["status"].value_counts().items()))
    print(f"search_results_ columns: {', '.join(results.columns[:6])}, ... (the p: columns are "
          "the candidate's values)")
    columns = ["job_id", "p:num_layers", "p:units_1", "p:activation_1", "p:optimizer",
               "p:learning_rate", "p:batch_size", "valid_nll", "duration", "worker"]
    best = results.sort_values("valid_nll").head(5)[columns]
    print("\nthe five best by validation NLL:")
    print(best.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if nas.rescored_:
        print(f"\nthe best {len(nas.rescored_)} trained once more on the data split anew (one "
              "low score among many is partly luck):")
        for row in nas.rescored_:
            print(f"  trial {row['trial_id']}: {row['valid_nll']:.3f} then "
                  f"{row['rescore_nll']:.3f}, mean {row['mean_nll']:.3f}")
    layers = " -> ".join(f"{layer['units']} {layer['activation']}"
                         for layer in nas.best_config_["layers"])
    print(f"\nkept: {layers}, {nas.best_config_['optimizer']} at learning rate "
          f"{nas.best_config_['learning_rate']:.2g}; best_score_ (minus its validation NLL) "
          f"{nas.best_score_:.3f}")
    mean = nas.predict(X_test)
    print(f"test RMSE against 2 sin(x) on [-40, 40]: "
          f"{np.sqrt(np.mean((mean - y_test) ** 2)):.3f}")
    plot(nas, args.out)
    return {"estimator": nas, "results": results, "space": space}


if __name__ == "__main__":  # Dask's worker processes import this file again: keep the guard
    import matplotlib.pyplot as plt

    main()
    plt.show()  # where there is a screen
