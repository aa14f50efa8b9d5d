"""Conformal prediction intervals with MAPIE
=========================================

A 90% interval from a model's own predictive distribution covers 90% of new points only if the
model is right about its uncertainty. Split conformal prediction makes the coverage hold
whatever the model: hold out a *conformalization* set the model never saw, measure how far off
the model is there (a conformity score per point), and widen or narrow every interval by the
quantile of those scores. If new points are exchangeable with the held-out ones (drawn the
same way), at least 90% of them fall inside, on average over draws of the held-out set.

`MAPIE <https://mapie.readthedocs.io>`_ does this for any scikit-learn regressor. Its
``SplitConformalRegressor`` takes a fitted model (``prefit=True``); two conformity scores are
compared here on a deep ensemble:

* ``"absolute"``, ``|y - mean|``: one width for every input. It covers 90% overall, but too
  much where the noise is low and too little where it is high.
* ``"std_normalized"``, ``|y - mean| / std``: MAPIE calls the model's
  ``predict(X, return_std=True)``, which autodeuq's estimators (and pipelines ending in one)
  provide. The intervals are the model's own standard deviation, rescaled: they keep its shape,
  narrow on the quiet island, wide on the noisy one, and wider still where the epistemic part
  says the model is guessing. MAPIE computes ``mean ± q * std``, with ``q`` the
  ``ceil((n + 1) * 0.9)``-th smallest score of the ``n`` held-out points; the example computes
  that by hand too, to show there is nothing more to it.

The ensemble can also calibrate its own interval on the same held-out points:
``calibrate_intervals(X_cal, y_cal)`` keeps the predictive CDF's values there, and
``predict_interval`` then takes the quantiles at the levels whose interval held 90% of them
(quantile recalibration with the same conformal ranks). Its interval keeps the mixture's shape,
skew included, rather than ``mean ± q * std``; :class:`~autodeuq.AutoDEUQRegressor` and
:class:`~autodeuq.NASRegressor` do this on their validation part by themselves.

The guarantee is for exchangeable points: here, new draws on the islands. Outside the training
range no held-out point says anything, and only the model's epistemic part can widen the
interval there.

MAPIE is an optional dependency: ``pip install 'autodeuq[conformal]'``. Without it this example
says so and stops. Run it with ``python examples/plot_08_conformal_mapie.py [--out FIG.png]``.
"""

import argparse
import copy
import math

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression

LEVEL = 0.9


def plot(X_train, y_train, X_grid, y_grid, intervals, out):
    # The intervals as they are (MAPIE's are not a mean and standard deviations), one panel
    # each, over the same data.
    x = X_grid[:, 0]
    fig, axes = plt.subplots(len(intervals), 1, figsize=(10, 2.6 * len(intervals)),
                             sharex=True, layout="constrained")
    for ax, (name, (lower, upper)) in zip(axes, intervals.items(), strict=True):
        for lo, hi in ((-30, -20), (20, 30)):
            ax.axvspan(lo, hi, color="0.92", zorder=0)
        ax.fill_between(x, lower, upper, color="tab:green", alpha=0.35, label="90% interval")
        ax.scatter(X_train[:, 0], y_train, s=3, color="k", alpha=0.4, label="training data")
        ax.plot(x, y_grid, "k--", lw=1, label="2 sin(x)")
        ax.set(ylabel="y", ylim=(-12, 12), title=name)
    axes[0].legend(loc="lower center", ncol=3, fontsize=8)
    axes[-1].set_xlabel("x")
    if out:
        fig.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5, help="networks (default: 5)")
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        from mapie.regression import SplitConformalRegressor
    except ImportError:
        print("MAPIE is not installed, so there is nothing to show here. Install it with "
              "pip install 'autodeuq[conformal]' (or pip install mapie).")
        return None

    X_train, y_train, X_grid, y_grid = make_tutorial_regression(random_state=args.seed)
    # New draws of the same islands, never seen in training: half to conformalize on, half
    # to check the coverage on.
    X_new, y_new, _, _ = make_tutorial_regression(random_state=args.seed + 1)
    order = np.random.default_rng(args.seed).permutation(len(X_new))
    cal, test = order[: len(order) // 2], order[len(order) // 2:]
    X_cal, y_cal, X_test, y_test = X_new[cal], y_new[cal], X_new[test], y_new[test]

    model = DeepEnsembleRegressor(GaussianMLPRegressor(max_epochs=args.max_epochs),
                                  n_members=args.members, random_state=args.seed)
    model.fit(X_train, y_train)

    intervals = {"the ensemble's own 90% interval": model.predict_interval}
    calibrated = copy.deepcopy(model).calibrate_intervals(X_cal, y_cal)
    intervals["the ensemble's own, after calibrate_intervals"] = calibrated.predict_interval
    for score in ("absolute", "std_normalized"):
        mapie = SplitConformalRegressor(model, confidence_level=LEVEL, conformity_score=score,
                                        prefit=True)
        mapie.conformalize(X_cal, y_cal)

        def predict_interval(X, mapie=mapie):
            _, bounds = mapie.predict_interval(X)  # shape (n, 2, n_levels)
            return bounds[:, 0, 0], bounds[:, 1, 0]

        intervals[f"MAPIE split conformal, {score!r} score"] = predict_interval

    # What "std_normalized" computes, by hand: sort the scores |y - mean| / std of the n
    # held-out points; q is the k-th smallest, k = ceil((n + 1) * 0.9), and the interval is
    # mean + q * std above. Below it is mean - q_low * std, q_low the floor((n + 1) * 0.9)-th
    # (MAPIE takes each bound from its own end of the sorted scores; the same q unless
    # (n + 1) * 0.9 is a whole number).
    mean_cal, std_cal = model.predict(X_cal, return_std=True)
    scores = np.sort(np.abs(y_cal - mean_cal) / std_cal)
    n = len(scores)
    q, q_low = scores[math.ceil((n + 1) * LEVEL) - 1], scores[math.floor((n + 1) * LEVEL) - 1]
    mean_test, std_test = model.predict(X_test, return_std=True)
    mapie_lower, mapie_upper = intervals[
        "MAPIE split conformal, 'std_normalized' score"](X_test)
    by_hand_gap = float(max(np.abs(mapie_upper - (mean_test + q * std_test)).max(),
                            np.abs(mapie_lower - (mean_test - q_low * std_test)).max()))
    print(f"'std_normalized': the interval reaches q = {q:.3f} stds either side of the mean "
          f"({norm.ppf(0.5 + LEVEL / 2):.3f} if the model's std were exactly right and its "
          f"errors Gaussian; below, it overstated them). MAPIE's intervals and the ones by hand "
          f"differ by {by_hand_gap:.1e}")

    x_test, x_grid = X_test[:, 0], X_grid[:, 0]
    left = x_test < 0
    outside = (np.abs(x_grid) < 20) | (np.abs(x_grid) > 30)  # off the islands
    print(f"\n{len(test)} new points on the islands ({len(cal)} more to conformalize on):")
    print(f"{'90% interval':<48}{'coverage':>9}{'left':>7}{'right':>7}{'width L':>9}"
          f"{'width R':>9}{'width off data':>16}")
    results = {}
    for name, predict_interval in intervals.items():
        lower, upper = predict_interval(X_test)
        covered = (y_test >= lower) & (y_test <= upper)
        width = upper - lower
        grid_lower, grid_upper = predict_interval(X_grid)
        results[name] = {"coverage": float(covered.mean()),
                         "coverage_left": float(covered[left].mean()),
                         "coverage_right": float(covered[~left].mean()),
                         "width_left": float(width[left].mean()),
                         "width_right": float(width[~left].mean()),
                         "width_outside": float((grid_upper - grid_lower)[outside].mean())}
        r = results[name]
        print(f"{name:<48}{r['coverage']:>9.2f}{r['coverage_left']:>7.2f}"
              f"{r['coverage_right']:>7.2f}{r['width_left']:>9.2f}{r['width_right']:>9.2f}"
              f"{r['width_outside']:>16.2f}")
    print("(left island: noise 0.5, right island: noise 1.0; off data: the test grid outside "
          "the training range)")
    plot(X_train, y_train, X_grid, y_grid,
         {name: predict_interval(X_grid) for name, predict_interval in intervals.items()},
         args.out)
    return {"intervals": results, "quantile": float(q), "by_hand_gap": by_hand_gap}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # networks this small train fastest on one thread
    main()
    plt.show()  # where there is a screen
