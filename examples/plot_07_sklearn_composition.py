"""Composition with Pipeline, GridSearchCV and cross_val_score
===========================================================

Every autodeuq estimator is an ordinary scikit-learn regressor, so the tools built for those
work on it unchanged. This step puts a network in a :class:`~sklearn.pipeline.Pipeline` (a
``StandardScaler`` stands in for your own preprocessing; the estimator standardizes its
inputs anyway) and tunes it with :class:`~sklearn.model_selection.GridSearchCV`. Then
:func:`~sklearn.model_selection.cross_val_score` asks a harder question, with
:class:`~sklearn.model_selection.GroupKFold` and the island as the group: trained on one
island, how well does a model predict the other? One network is as sure of itself there as at
home; a deep ensemble of it is not, and its NLL shows it.

Two things to know. First, ``Pipeline.predict(X, return_std=True)`` passes ``return_std`` to
the last step, so a pipeline predicts the standard deviation too (and so MAPIE can use it,
step 8). Second, scikit-learn's default score for a regressor is R², which looks at the mean
alone: a model that is wrong about its own uncertainty scores as well as one that is right. A
scorer is any function ``scorer(estimator, X, y)`` returning a number where higher is better,
so minus the Gaussian NLL of ``predict(X, return_std=True)`` makes the search choose by the
quality of the whole predictive distribution. The grid search's folds are shuffled: the data
are sorted by island, and unshuffled folds would hold out a whole island, which tests
extrapolation instead (the question of the second part).

Run it with ``python examples/plot_07_sklearn_composition.py [--max-epochs 500] [--out FIG.png]``.
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.uncertainty import gaussian_nll


def neg_nll(estimator, X, y):
    """Minus the mean Gaussian NLL of ``estimator``'s predictions (higher is better)."""
    mean, std = estimator.predict(X, return_std=True)
    return -gaussian_nll(y, mean, std)


def plot(cv_scores, held_out, out):
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    width = 0.8 / len(cv_scores)
    for i, (name, scores) in enumerate(cv_scores.items()):
        ax.bar(np.arange(len(held_out)) + i * width, -scores, width, label=name)
    ax.set_xticks(np.arange(len(held_out)) + width * (len(cv_scores) - 1) / 2,
                  [f"{island} island held out" for island in held_out])
    ax.set(ylabel="NLL (lower is better)", yscale="symlog",
           title="trained on one island, scored on the other")
    ax.legend()
    if out:
        fig.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=500,
                        help="most epochs of every network (default: 500; early stopping ends "
                             "most sooner)")
    parser.add_argument("--cv", type=int, default=3,
                        help="folds of the grid search (default: 3)")
    parser.add_argument("--members", type=int, default=3,
                        help="networks of the deep ensemble compared (default: 3)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, _ = make_tutorial_regression(random_state=args.seed)
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("net", GaussianMLPRegressor(max_epochs=args.max_epochs, random_state=args.seed)),
    ])
    folds = KFold(args.cv, shuffle=True, random_state=args.seed)
    grid = {"net__hidden_layer_sizes": [(32,), (128, 128)], "net__learning_rate": [3e-3, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=folds, scoring={"nll": neg_nll, "r2": "r2"},
                          refit="nll")
    search.fit(X_train, y_train)

    print(f"GridSearchCV, {len(search.cv_results_['params'])} candidates x {args.cv} folds, "
          "chosen by NLL:")
    print(f"{'hidden layers':<15}{'learning rate':>14}{'NLL':>8}{'R2':>7}{'rank':>6}")
    for i, params in enumerate(search.cv_results_["params"]):
        print(f"{params['net__hidden_layer_sizes']!s:<15}{params['net__learning_rate']:>14g}"
              f"{-search.cv_results_['mean_test_nll'][i]:>8.3f}"
              f"{search.cv_results_['mean_test_r2'][i]:>7.3f}"
              f"{search.cv_results_['rank_test_nll'][i]:>6}")
    print(f"best: {search.best_params_}")

    best = search.best_estimator_  # a fitted Pipeline, refitted on all the training data
    _, std = best.predict(X_test, return_std=True)  # return_std goes to the last step
    inside = (np.abs(X_test[:, 0]) >= 20) & (np.abs(X_test[:, 0]) <= 30)  # on the islands
    print(f"the tuned pipeline's std on the test grid: {std[inside].mean():.3f} inside the "
          f"training range, {std[~inside].mean():.3f} outside")

    # Extrapolation: train on one island, score on the other (GroupKFold, the island as the
    # group), the tuned network alone and a deep ensemble of it.
    islands = np.where(X_train[:, 0] < 0, "left", "right")
    by_island = GroupKFold(n_splits=2)
    held_out = [islands[test][0] for _, test in by_island.split(X_train, y_train, islands)]
    ensemble = Pipeline([("scale", StandardScaler()), ("ensemble", DeepEnsembleRegressor(
        best.named_steps["net"], n_members=args.members, random_state=args.seed))])
    cv_scores = {name: cross_val_score(model, X_train, y_train, groups=islands, cv=by_island,
                                       scoring=neg_nll)
                 for name, model in (("one network", best),
                                     (f"ensemble of {args.members}", ensemble))}
    print("\ncross_val_score with GroupKFold: trained on one island, NLL on the other")
    print(f"{'':<18}" + "".join(f"{f'{island} held out':>20}" for island in held_out))
    for name, scores in cv_scores.items():
        print(f"{name:<18}" + "".join(f"{-score:>20.4g}" for score in scores))
    plot(cv_scores, held_out, args.out)
    return {"search": search, "cv_scores": cv_scores, "held_out": held_out}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # networks this small train fastest on one thread
    main()
    plt.show()  # where there is a screen
