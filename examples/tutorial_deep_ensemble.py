"""Deep ensemble on the tutorial's toy problem: where is the model unsure, and why?

``y = 2 sin(x) + noise`` is observed on two islands, ``[-30, -20]`` (noise sd 0.5) and
``[20, 30]`` (noise sd 1.0). The test inputs cover ``[-40, 40]``: outside the islands the model
has no data, and a good ensemble says so with a large epistemic uncertainty, while the
aleatoric part tells the two noise levels apart inside.

Run it with ``make demo`` or ``python examples/tutorial_deep_ensemble.py [--out FIGURE.png]``.
"""

import argparse
import logging
import time

import numpy as np

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.uncertainty import regression_report


def plot(X_train, y_train, X_test, y_test, unc, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'autodeuq[plot]')")
        return
    from autodeuq.plotting import PredictiveBandsDisplay

    x = X_test[:, 0]
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    # The 95% band of the aleatoric part, then what the epistemic part adds on each side.
    PredictiveBandsDisplay.from_predictions(
        x, *unc, X_train=X_train, y_train=y_train, ax=ax, std_panel=False,
        name="ensemble", legend=False, train_kwargs={"s": 4})
    ax.plot(x, y_test, "k--", lw=1, label="true 2 sin(x)")
    ax.set(xlabel="x", ylabel="y", ylim=(-12, 12),
           title="Deep ensemble: aleatoric inside the data, epistemic outside")
    ax.legend(loc="lower center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)
    print(f"figure saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="tutorial_deep_ensemble.png",
                        help="where to save the figure (needs matplotlib)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    est = DeepEnsembleRegressor(
        GaussianMLPRegressor(max_epochs=args.max_epochs),
        n_members=args.members,
        random_state=args.seed,
    )
    start = time.perf_counter()
    est.fit(X_train, y_train)
    print(f"fitted {args.members} members in {time.perf_counter() - start:.1f}s "
          f"(epochs: {[m.n_epochs_ for m in est.estimators_]})")

    dist = est.predict_distribution(X_test)
    unc = dist.uncertainty()
    x = X_test[:, 0]
    inside = ((x >= -30) & (x <= -20)) | ((x >= 20) & (x <= 30))

    print(f"\n{'region':<28}{'NLL':>8}{'RMSE':>8}{'90% cov':>9}{'aleatoric':>11}"
          f"{'epistemic':>11}")
    for name, mask in (("inside training range", inside), ("outside training range", ~inside),
                       ("all test points", np.ones_like(inside))):
        sub = type(dist)(dist.means[:, mask], dist.stds[:, mask], dist.weights)
        report = regression_report(y_test[mask], sub, level=0.9)
        print(f"{name:<28}{report['nll']:>8.3f}{report['rmse']:>8.3f}"
              f"{report['coverage']:>9.2f}{unc.aleatoric_std[mask].mean():>11.3f}"
              f"{unc.epistemic_std[mask].mean():>11.3f}")
    ratio = unc.epistemic_std[~inside].mean() / unc.epistemic_std[inside].mean()
    print(f"\nepistemic std outside / inside the training range: {ratio:.1f}x")
    left, right = (x >= -30) & (x <= -20), (x >= 20) & (x <= 30)
    print(f"aleatoric std on the left island (noise 0.5): {unc.aleatoric_std[left].mean():.2f}, "
          f"on the right (noise 1.0): {unc.aleatoric_std[right].mean():.2f}")
    plot(X_train, y_train, X_test, y_test, unc, args.out)


if __name__ == "__main__":
    main()
