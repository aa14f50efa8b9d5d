"""AutoDEUQ on the tutorial's toy problem, beside one network and a plain deep ensemble.

``y = 2 sin(x) + noise`` is observed on two islands, ``[-30, -20]`` (noise sd 0.5) and
``[20, 30]`` (noise sd 1.0); the test inputs cover ``[-40, 40]``, so most of them lie where
there was no data. Three models are fitted on the same data:

* ``GaussianMLPRegressor``: one network with a mean and a variance head (the baseline);
* ``DeepEnsembleRegressor``: ``--members`` such networks from random initializations;
* ``AutoDEUQRegressor``: a joint search over architectures (up to ``--max-layers`` hidden
  layers) and training hyperparameters on an embedded Dask cluster (one worker process per
  core, started and closed by the estimator; an active ``distributed.Client`` is used
  instead), then a deep ensemble of ``--members`` networks selected from every searched
  candidate and trained again on all the data, in ``--time-budget`` seconds in all.

Selection is the estimator's default, ``greedy``: it adds a candidate (again, with
replacement) only while the validation NLL of the mixture falls. The validation points lie on
the islands, where one good network does as well as a mixture, so it may give one
configuration most of the weight; the refit then trains that configuration several times from
independent seeds (``--members`` networks in all), so the ensemble keeps its epistemic part.
``--selection bagged`` averages greedy weights over bootstrap resamples of the validation
points; ``--selection topk`` takes the candidates with the best validation NLL, equally
weighted.

What it prints:

1. a table of the three models on the test set: NLL of the predictive mixture, RMSE, coverage
   of the 90% interval, and the seconds each took to fit (AutoDEUQ's: all of its ``fit``,
   the cluster and the search included);
2. the members AutoDEUQ selected, one line each: weight, layers (units, activation, dropout,
   skip connections), optimizer, learning rate, batch size and its own validation NLL;
3. the mean aleatoric and epistemic standard deviations inside and outside the training range
   for each model, and the ratio of epistemic std outside / inside: one network has no
   epistemic part; the ensembles' grows away from the data, while the aleatoric part tells the
   two noise levels apart on the islands;
4. with matplotlib, a figure (``--out``) with one panel per model: the 95% band of the
   aleatoric part alone, and how far the epistemic part widens it.

Run it with ``make demo`` (about 4 minutes on 2 cores) or::

    python examples/demo_autodeuq.py [--time-budget 90] [--n-jobs 2] [--out FIGURE.png]

``examples/tutorial_deep_ensemble.py`` is the step before: the deep ensemble alone.
"""

import argparse
import contextlib
import logging
import time

import numpy as np

from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.space import SearchSpace, default_space
from autodeuq.uncertainty import regression_report

ISLANDS = ((-30.0, -20.0), (20.0, 30.0))


@contextlib.contextmanager
def torch_threads(n):
    """Train in this process on ``n`` threads (torch's own setting is restored after).

    A network of this size on 400 rows trains fastest on one thread; two threads on two busy
    cores were 20x slower. The search's and the ensemble's workers use one thread each too.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def search_space(max_layers, max_epochs=None):
    """The AutoDEUQ space up to ``max_layers`` hidden layers, with ``max_epochs`` fixed if given.

    The default space goes up to 10 layers; a one-dimensional problem needs fewer, and a
    smaller space gets more candidates trained in a short search.
    """
    space = default_space(max_layers=max_layers)
    if max_epochs is None:
        return space
    dims = {**space.dimensions, "max_epochs": max_epochs}
    return SearchSpace(dims, conditions=dict(space.conditions))


def short_float(value):
    """3.1e-3 rather than 3.1e-03."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def describe_member(member, n_networks=1):
    """One readable line: weight, layers, training hyperparameters, validation NLL."""
    config = member["config"]
    layers = []
    for layer in config["layers"]:
        text = f"{layer['units']} {layer['activation']}"
        extras = []
        if layer.get("dropout"):
            extras.append(f"dropout {layer['dropout']:.2g}")
        if layer.get("skip"):
            extras.append("skip from " + ", ".join(map(str, layer["skip"])))
        layers.append(text + (f" ({'; '.join(extras)})" if extras else ""))
    n = len(layers)
    architecture = (f"{n} layer{'s' if n != 1 else ''}: " + " -> ".join(layers) if n
                    else "0 layers (linear)")
    training = (f"{config['optimizer']} lr={short_float(config['learning_rate'])} "
                f"batch {config['batch_size']}")
    if config.get("lr_schedule"):
        training += f" {config['lr_schedule']} schedule"
    networks = f"{n_networks} networks, " if n_networks > 1 else ""
    return (f"w={member['weight'] * n_networks:.2f}  {architecture}  {training}  "
            f"valid NLL {member['valid_nll']:.3f}  ({networks}trial {member['trial_id']})")


def plot(X_train, y_train, X_test, y_test, results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'autodeuq[plot]')")
        return
    from autodeuq.plotting import PredictiveBandsDisplay

    x = X_test[:, 0]
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3.2 * len(results)), sharex=True,
                             constrained_layout=True)
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        for lo, hi in ISLANDS:
            ax.axvspan(lo, hi, color="0.92", zorder=0)
        # The 95% band of the aleatoric part, then what the epistemic part adds on each side.
        PredictiveBandsDisplay.from_predictions(
            x, *result["unc"], X_train=X_train, y_train=y_train, ax=ax, std_panel=False,
            shade_gaps=False, legend=False, train_kwargs={"s": 3})
        ax.plot(x, y_test, "k--", lw=1, label="true 2 sin(x)")
        ax.set(xlabel="", ylabel="y", ylim=(-12, 12),
               title=f"{result['name']}: test NLL {result['report']['nll']:.2f}, "
                     f"90% coverage {result['report']['coverage']:.2f}")
    ax.set_xlabel("x")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nfigure saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-budget", type=float, default=90.0,
                        help="seconds of AutoDEUQ search and refit (default: 90)")
    parser.add_argument("--max-evals", type=int, default=None,
                        help="most candidates the search trains (default: no limit, the time "
                             "budget ends it)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="Dask worker processes of the search, and members the deep "
                             "ensemble trains in parallel (default: every core)")
    parser.add_argument("--members", type=int, default=5,
                        help="members of the deep ensemble, most members AutoDEUQ selects")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="fix the epochs of the baselines and of every candidate (for "
                             "tests; default: the estimators' and the space's own)")
    parser.add_argument("--max-layers", type=int, default=3,
                        help="most hidden layers of a searched network (default: 3)")
    parser.add_argument("--selection", choices=("greedy", "bagged", "topk"), default="greedy",
                        help="how AutoDEUQ selects its members (default: greedy, see above)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="autodeuq_demo.png",
                        help="where to save the figure (needs matplotlib)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the library's progress messages (logging at INFO)")
    args = parser.parse_args(argv)
    # Warnings from every library; autodeuq's progress with --verbose. Dask's own INFO messages
    # (the embedded cluster starting and closing) are left out either way.
    handler = logging.StreamHandler()
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or (
        args.verbose and record.name.startswith("autodeuq")))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if args.verbose:
        logging.getLogger("autodeuq").setLevel(logging.INFO)

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    network = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    models = [
        ("baseline (1 network)", GaussianMLPRegressor(random_state=args.seed, **network)),
        (f"deep ensemble ({args.members} random inits)", DeepEnsembleRegressor(
            GaussianMLPRegressor(**network), n_members=args.members,
            n_jobs=-1 if args.n_jobs is None else args.n_jobs, random_state=args.seed)),
        ("AutoDEUQ", AutoDEUQRegressor(
            search_space=search_space(args.max_layers, args.max_epochs),
            time_budget=args.time_budget, max_evals=args.max_evals, n_jobs=args.n_jobs,
            ensemble_size=args.members, selection=args.selection, random_state=args.seed)),
    ]
    print(f"y = 2 sin(x) + noise: {len(X_train)} training points on [-30, -20] (noise 0.5) and "
          f"[20, 30] (noise 1.0); {len(X_test)} test points on [-40, 40]")

    x = X_test[:, 0]
    inside = np.zeros(len(x), dtype=bool)
    for lo, hi in ISLANDS:
        inside |= (x >= lo) & (x <= hi)
    results = []
    for name, est in models:
        budget = (f", searching and refitting in {args.time_budget:g}s"
                  if isinstance(est, AutoDEUQRegressor) else "")
        print(f"fitting {name}{budget} ...", flush=True)
        start = time.perf_counter()
        with torch_threads(1):
            est.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        dist = est.predict_distribution(X_test)
        results.append({"name": name, "est": est, "seconds": seconds, "dist": dist,
                        "unc": dist.uncertainty(),
                        "report": regression_report(y_test, dist, level=0.9)})
    auto = results[-1]
    members = auto["est"].members_
    auto["name"] = (f"AutoDEUQ ({len({m['trial_id'] for m in members})} configs, "
                    f"{len(members)} networks)")

    print(f"\n{'test set, x in [-40, 40]':<38}{'NLL':>8}{'RMSE':>8}{'90% cov':>9}"
          f"{'fit s':>8}")
    for r in results:
        rep = r["report"]
        print(f"{r['name']:<38}{rep['nll']:>8.3f}{rep['rmse']:>8.3f}{rep['coverage']:>9.2f}"
              f"{r['seconds']:>8.1f}")

    est = auto["est"]
    trials = est.search_results_
    print(f"\nAutoDEUQ searched {len(trials)} candidates in {est.search_time_:.0f}s "
          f"({est.n_candidates_} trained successfully), selected "
          f"{len({m['trial_id'] for m in est.members_})} configurations ({args.selection}; "
          f"validation NLL {est.validation_nll_:.3f}) and trained {len(est.members_)} "
          f"networks of them on all the data:")
    # A configuration selected with a large weight was trained as several networks.
    by_trial = {}
    for member in est.members_:
        by_trial.setdefault(member["trial_id"], []).append(member)
    for group in sorted(by_trial.values(), key=lambda g: -sum(m["weight"] for m in g)):
        print("  " + describe_member(group[0], n_networks=len(group)))

    print(f"\n{'mean std':<38}{'inside training range':>23}{'outside training range':>24}")
    print(f"{'':<38}{'aleatoric':>12}{'epistemic':>11}{'aleatoric':>13}{'epistemic':>11}")
    for r in results:
        unc = r["unc"]
        print(f"{r['name']:<38}{unc.aleatoric_std[inside].mean():>12.3f}"
              f"{unc.epistemic_std[inside].mean():>11.3f}"
              f"{unc.aleatoric_std[~inside].mean():>13.3f}"
              f"{unc.epistemic_std[~inside].mean():>11.3f}")
    print()
    for r in results[1:]:
        epi = r["unc"].epistemic_std
        if epi[inside].mean() > 0:
            ratio = f"{epi[~inside].mean() / epi[inside].mean():.1f}x"
        else:
            ratio = "none (a single member has no epistemic part)"
        print(f"epistemic std outside / inside the training range, {r['name']}: {ratio}")
    left, right = (x >= -30) & (x <= -20), (x >= 20) & (x <= 30)
    for r in results:
        alea = r["unc"].aleatoric_std
        print(f"aleatoric std, left island (noise 0.5) {alea[left].mean():.2f}, right island "
              f"(noise 1.0) {alea[right].mean():.2f}: {r['name']}")
    plot(X_train, y_train, X_test, y_test, results, args.out)


if __name__ == "__main__":
    main()
