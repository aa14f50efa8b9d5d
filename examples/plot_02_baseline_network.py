"""A baseline Gaussian network
===========================

The starting point of the workshop is one neural network that predicts, for every input, a
Gaussian: a mean and a variance. :class:`~autodeuq.GaussianMLPRegressor` is a multilayer
perceptron with two heads, trained by minimizing the Gaussian negative log-likelihood (NLL)
rather than the squared error, so the variance head learns how noisy the data are. A tenth of
the training data is held out: training stops when the NLL on it has not improved for
``patience`` epochs, and the weights of the best epoch are restored.

This step fits the network, reads its training history (the NLL per epoch on the training
and the held-out part), and looks at its mean prediction inside and outside the training
range. ``predict(X)`` gives the mean, as any scikit-learn regressor does;
``predict(X, return_std=True)`` also gives the predictive standard deviation, as
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` does. Inside the islands the mean
follows ``2 sin(x)``; outside, the network extrapolates with nothing to go on. Whether its
standard deviation says so is the subject of the uncertainty baseline (step 4).

Run it with ``python examples/plot_02_baseline_network.py [--max-epochs 1000] [--out FIG.png]``.
"""

import argparse
import time

import matplotlib.pyplot as plt
import numpy as np

from autodeuq import GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import PredictiveBandsDisplay


def plot(est, X_train, y_train, X_test, y_test, out):
    fig, (curve, fit) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained",
                                     width_ratios=(1, 2))
    epochs = [row["epoch"] for row in est.history_]
    curve.plot(epochs, [row["train_loss"] for row in est.history_], label="training part")
    curve.plot(epochs, [row["valid_loss"] for row in est.history_], label="held-out tenth")
    curve.axvline(est.best_epoch_, color="k", ls=":", lw=1, label="best epoch (restored)")
    curve.set(xlabel="epoch", ylabel="NLL of standardized y", title="training history")
    curve.legend(fontsize=8)
    # The mean and its 95% band (one network: all of it aleatoric) at the test inputs.
    PredictiveBandsDisplay.from_estimator(
        est, X_test, y_test, grid=False, X_train=X_train, y_train=y_train, target_name="y",
        ax=fit, data_kwargs={"s": 1, "label": "2 sin(x), the test targets"})
    fit.set(xlabel="x", ylim=(-12, 12), title="one Gaussian network")
    if out:
        fig.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=1000,
                        help="most training epochs (default: 1000; early stopping ends "
                             "sooner)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    # Two hidden layers of 128 ReLU units, Adam at 3e-3, batches of 32: the defaults.
    est = GaussianMLPRegressor(max_epochs=args.max_epochs, random_state=args.seed)
    start = time.perf_counter()
    est.fit(X_train, y_train)
    print(f"trained {est.n_epochs_} epochs in {time.perf_counter() - start:.1f}s; the best "
          f"held-out NLL was at epoch {est.best_epoch_}: {est.validation_nll_:.3f} (units of y)")
    layers = " -> ".join(f"{layer['units']} {layer['activation']}"
                         for layer in est.config_["layers"])
    print(f"network: 1 input -> {layers} -> mean and variance heads; optimizer "
          f"{est.config_['optimizer']}, learning rate {est.config_['learning_rate']:g}")

    print("\nNLL of the standardized target, by epoch:")
    print(f"{'epoch':>6}{'training part':>15}{'held-out tenth':>16}")
    step = max(1, len(est.history_) // 8)
    for row in est.history_[::step]:
        print(f"{row['epoch']:>6}{row['train_loss']:>15.3f}{row['valid_loss']:>16.3f}")

    mean = est.predict(X_test)  # the mean alone, as any regressor
    mean, std = est.predict(X_test, return_std=True)  # and its standard deviation
    inside = (np.abs(X_test[:, 0]) >= 20) & (np.abs(X_test[:, 0]) <= 30)  # on the islands
    rmse = {name: float(np.sqrt(np.mean((mean[mask] - y_test[mask]) ** 2)))
            for name, mask in (("inside", inside), ("outside", ~inside))}
    print(f"\nRMSE of the mean against 2 sin(x): {rmse['inside']:.3f} inside the training "
          f"range, {rmse['outside']:.3f} outside it (predicting 0 everywhere scores 1.41)")
    print(f"predicted std: {std[inside].mean():.3f} inside, {std[~inside].mean():.3f} outside "
          "on average")
    plot(est, X_train, y_train, X_test, y_test, args.out)
    return {"estimator": est, "rmse_inside": rmse["inside"], "rmse_outside": rmse["outside"],
            "std_inside": float(std[inside].mean()), "std_outside": float(std[~inside].mean())}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # networks this small train fastest on one thread
    main()
    plt.show()  # where there is a screen
