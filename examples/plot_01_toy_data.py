"""Toy data and scaling
=====================

The workshop's problem is one-dimensional so that every kind of uncertainty can be seen on a
plot: ``y = 2 sin(x) + noise``, observed on two islands, ``[-30, -20]`` with noise standard
deviation 0.5 and ``[20, 30]`` with noise 1.0. The test inputs cover ``[-40, 40]``: three
quarters of them lie where there was no data at all (the gap in the middle and the two outer
edges). A good model should be sure of itself only on the islands, and say why it is unsure
elsewhere: *aleatoric* uncertainty is the noise in the data (twice as large on the right
island), *epistemic* uncertainty is the model's lack of knowledge (large away from the data).

This first step only looks at the data. It measures the noise on each island, then shows what
standardization does to it. Neural networks train best on inputs and targets of order one,
and ``x`` here spans tens of units, so every autodeuq estimator standardizes ``X`` and ``y``
itself (its ``x_scaler_``, ``y_mean_`` and ``y_scale_`` attributes) and maps every prediction
back to the units of ``y``: pass raw data in, read predictions in the data's own units.

Run it with ``python examples/plot_01_toy_data.py [--out FIGURE.png]``.
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np
from sklearn.preprocessing import StandardScaler

from autodeuq.datasets import make_tutorial_regression

ISLANDS = {"left island": (-30.0, -20.0), "right island": (20.0, 30.0)}


def plot(X_train, y_train, X_test, y_test, Xs_train, ys_train, Xs_test, out):
    fig, (raw, scaled) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for lo, hi in ISLANDS.values():
        raw.axvspan(lo, hi, color="0.92", zorder=0)
    raw.scatter(X_train[:, 0], y_train, s=4, color="k", alpha=0.5, label="training data")
    raw.plot(X_test[:, 0], y_test, "k--", lw=1, label="2 sin(x), the test targets")
    raw.set(xlabel="x", ylabel="y", title="the data, in its own units")
    raw.legend(loc="lower center", fontsize=8)
    scaled.scatter(Xs_train[:, 0], ys_train, s=4, color="tab:blue", alpha=0.5)
    scaled.set(xlim=(Xs_test.min(), Xs_test.max()), xlabel="standardized x (over the test range)",
               ylabel="standardized y",
               title="what the networks see: standardized X and y")
    if out:
        fig.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-island", type=int, default=200,
                        help="training points on each island (default: 200)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = make_tutorial_regression(
        n_samples_per_region=args.n_per_island, random_state=args.seed)
    x = X_train[:, 0]
    print(f"{len(X_train)} training points, x in [{x.min():.1f}, {x.max():.1f}]; "
          f"{len(X_test)} test points on [-40, 40] with noise-free targets 2 sin(x)")

    # The noise is what is left around the true function: the aleatoric part a model should
    # learn, different on each island.
    noise = {}
    for name, (lo, hi) in ISLANDS.items():
        on = (x >= lo) & (x <= hi)
        noise[name] = float(np.std(y_train[on] - 2 * np.sin(x[on])))
        print(f"{name} [{lo:g}, {hi:g}]: {on.sum()} points, noise std {noise[name]:.2f}")
    x_test = X_test[:, 0]
    inside = np.zeros(len(x_test), dtype=bool)
    for lo, hi in ISLANDS.values():
        inside |= (x_test >= lo) & (x_test <= hi)
    print(f"test points inside the training range: {inside.mean():.0%}; the other "
          f"{(~inside).mean():.0%} are out of distribution")

    # What the estimators do inside fit: standardize X, and y, with statistics of the
    # training data; predictions are mapped back, so this never needs doing by hand.
    x_scaler = StandardScaler().fit(X_train)
    Xs_train, Xs_test = x_scaler.transform(X_train), x_scaler.transform(X_test)
    y_mean, y_scale = float(np.mean(y_train)), float(np.std(y_train))
    ys_train = (y_train - y_mean) / y_scale
    print(f"\nstandardizing x: mean {x_scaler.mean_[0]:.2f}, scale {x_scaler.scale_[0]:.2f}; "
          f"the islands become [{Xs_train[x < 0, 0].min():.2f}, {Xs_train[x < 0, 0].max():.2f}]"
          f" and [{Xs_train[x > 0, 0].min():.2f}, {Xs_train[x > 0, 0].max():.2f}], the test "
          f"range [{Xs_test.min():.2f}, {Xs_test.max():.2f}]")
    print(f"standardizing y: mean {y_mean:.2f}, scale {y_scale:.2f}; the noise stds become "
          + ", ".join(f"{s / y_scale:.2f}" for s in noise.values())
          + " (stds are divided by the scale, and multiplied back on prediction)")
    plot(X_train, y_train, X_test, y_test, Xs_train, ys_train, Xs_test, args.out)
    return {"noise": noise, "inside_fraction": float(inside.mean()),
            "x_scaled_mean": float(Xs_train.mean()), "x_scaled_std": float(Xs_train.std()),
            "y_scale": y_scale}


if __name__ == "__main__":
    main()
    plt.show()  # where there is a screen
