"""The uncertainty baseline: one network knows only the noise
==========================================================

A Gaussian network's standard deviation is *aleatoric*: it is what the network learned about
the noise around its mean, from the data it saw. On the islands it does well: it finds that the
right island is about twice as noisy as the left one. But it is one network, one set of
weights; it cannot know what it does not know. Its ``predict_uncertainty`` returns an
epistemic part of exactly zero, and away from the data its standard deviation is whatever its
variance head happens to extrapolate to.

This step shows why that is not enough. It fits the same network from a few random seeds:
on the islands they agree, within the noise they all predict; outside the training range each
is as sure of itself as on the islands, yet they disagree with each other by much more than any
of their standard deviations says. That disagreement is the epistemic uncertainty a single
network leaves out, and what an ensemble of networks (step 5) measures. The 90% interval of
one network covers the truth on the islands but not outside them.

Run it with ``python examples/plot_04_uncertainty_baseline.py [--seeds 3] [--out FIG.png]``.
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np

from autodeuq import GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import PredictiveBandsDisplay
from autodeuq.uncertainty import NormalMixture, coverage, nll


def plot(X_train, y_train, X_test, y_test, predictions, out):
    fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    # Each network's mean and 95% band in a colour of its own, on one Axes; the data once.
    for seed, unc in predictions.items():
        data = {"y": y_test, "X_train": X_train, "y_train": y_train} if seed == 0 else {}
        PredictiveBandsDisplay.from_predictions(
            X_test, *unc, **data, target_name="y", ax=ax, legend=False,
            aleatoric_kwargs={"color": f"C{seed}", "alpha": 0.15, "label": None},
            mean_kwargs={"color": f"C{seed}", "lw": 1.2, "label": f"network, seed {seed}"},
            data_kwargs={"s": 1, "label": "2 sin(x), the test targets"})
    ax.set(xlabel="x", ylim=(-12, 12),
           title="one network each: sure of itself everywhere, and they disagree off the data")
    ax.legend(loc="lower center", ncol=3, fontsize=8, markerscale=3)
    if out:
        fig.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="networks to fit, from different random seeds (default: 3)")
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42, help="seed of the data")
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    x = X_test[:, 0]
    left, right = (x >= -30) & (x <= -20), (x >= 20) & (x <= 30)
    inside = left | right

    predictions = {}
    for seed in range(args.seeds):
        est = GaussianMLPRegressor(max_epochs=args.max_epochs, random_state=seed)
        predictions[seed] = est.fit(X_train, y_train).predict_uncertainty(X_test)

    unc = predictions[0]
    print(f"one network (seed 0): epistemic std is {np.abs(unc.epistemic_std).max():g} "
          "everywhere: a single network has no epistemic part")
    print(f"its aleatoric std: {unc.aleatoric_std[left].mean():.2f} on the left island (noise "
          f"0.5), {unc.aleatoric_std[right].mean():.2f} on the right one (noise 1.0), "
          f"{unc.aleatoric_std[~inside].mean():.2f} outside the training range")

    # The targets on the test grid are noise-free, so a 90% interval should hold 2 sin(x) at
    # least 90% of the time where the model is honest about what it knows.
    print(f"\n{'':<24}{'NLL':>8}{'90% coverage':>14}{'mean std':>10}")
    single = NormalMixture(unc.mean, unc.total_std)
    scores = {}
    for name, mask in (("inside training range", inside), ("outside training range", ~inside)):
        part = NormalMixture(unc.mean[mask], unc.total_std[mask])
        scores[name] = {"nll": nll(y_test[mask], part),
                        "coverage": coverage(y_test[mask], part, 0.9)}
        print(f"{name:<24}{scores[name]['nll']:>8.2f}{scores[name]['coverage']:>14.2f}"
              f"{unc.total_std[mask].mean():>10.2f}")
    print(f"{'all test points':<24}{nll(y_test, single):>8.2f}"
          f"{coverage(y_test, single, 0.9):>14.2f}{unc.total_std.mean():>10.2f}")

    # Why it is not enough: fit again from other seeds, and compare how far apart the means
    # are with how wide each network thinks its own prediction is.
    means = np.stack([p.mean for p in predictions.values()])
    stds = np.stack([p.aleatoric_std for p in predictions.values()])
    spread = means.std(axis=0)
    ratio = {"inside": float(spread[inside].mean() / stds[:, inside].mean()),
             "outside": float(spread[~inside].mean() / stds[:, ~inside].mean())}
    print(f"\n{args.seeds} networks from different seeds: the spread of their means is "
          f"{ratio['inside']:.2f} of their own std inside the training range, "
          f"{ratio['outside']:.2f} outside it")
    print("at a few inputs, each network's mean ± std:")
    for x0 in (-25.0, 0.0, 25.0, 38.0):
        i = int(np.argmin(np.abs(x - x0)))
        cells = "   ".join(f"{m[i]:+6.2f} ± {s[i]:.2f}" for m, s in zip(means, stds, strict=True))
        print(f"  x = {x[i]:+6.1f} ({'inside' if inside[i] else 'outside'}; truth "
              f"{y_test[i]:+.2f}):  {cells}")
    plot(X_train, y_train, X_test, y_test, predictions, args.out)
    return {"predictions": predictions, "scores": scores, "disagreement": ratio,
            "aleatoric_left": float(unc.aleatoric_std[left].mean()),
            "aleatoric_right": float(unc.aleatoric_std[right].mean())}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # networks this small train fastest on one thread
    main()
    plt.show()  # where there is a screen
