"""A deep ensemble from random initializations
============================================

The networks of step 4 disagree where there was no data. A deep ensemble (Lakshminarayanan
et al., 2017) turns that disagreement into a measurement: train several networks from
different random initializations (here also on different held-out tenths) and predict with
all of them. Their predictions form a Gaussian *mixture*, and its variance splits exactly into
two parts:

* aleatoric, ``sum_i w_i sigma_i^2``: the noise the members agree is in the data;
* epistemic, ``sum_i w_i (mu_i - mu)^2``: how much the members' means disagree.

:class:`~autodeuq.DeepEnsembleRegressor` does this with ``n_members`` copies of one
:class:`~autodeuq.GaussianMLPRegressor`. ``predict_distribution`` returns the mixture itself
(``means`` and ``stds`` of every member), ``predict_uncertainty`` the mean and the total,
aleatoric and epistemic standard deviations, with ``total**2 == aleatoric**2 + epistemic**2``.

On the islands the members agree, and the uncertainty is aleatoric; off them, the epistemic
part grows. The mixture also scores better than its members: its NLL is never above their
average (the log of an average is at least the average of the logs), and off the data it is
much better than any one member's, because it is no longer sure of itself there.

Run it with ``python examples/plot_05_deep_ensemble.py [--members 5] [--out FIGURE.png]``.
"""

import argparse
import time

import numpy as np

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import PredictiveBandsDisplay
from autodeuq.uncertainty import NormalMixture, coverage, nll


def plot(X_train, y_train, X_test, y_test, dist, out):
    # The bands of the mixture, the standard deviations below, and each member's mean.
    display = PredictiveBandsDisplay.from_predictions(
        X_test, *dist.uncertainty(), y=y_test, X_train=X_train, y_train=y_train,
        target_name="y", legend=False, mean_kwargs={"label": "ensemble mean"},
        data_kwargs={"s": 1, "label": "2 sin(x), the test targets"})
    for i, member_mean in enumerate(dist.means):
        display.ax_.plot(X_test[:, 0], member_mean, color="0.4", lw=0.6,
                         label="a member's mean" if i == 0 else None)
    display.ax_.set(ylim=(-12, 12), title=f"deep ensemble of {dist.n_components}")
    display.ax_.legend(loc="lower center", ncol=4, fontsize=8, markerscale=3)
    display.ax_std_.set(xlabel="x", yscale="log")
    display.ax_std_.legend(fontsize=8)
    if out:
        display.figure_.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5, help="networks (default: 5)")
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="members trained in parallel by joblib (default: one at a time)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    ensemble = DeepEnsembleRegressor(GaussianMLPRegressor(max_epochs=args.max_epochs),
                                     n_members=args.members, n_jobs=args.n_jobs,
                                     random_state=args.seed)
    start = time.perf_counter()
    ensemble.fit(X_train, y_train)
    print(f"fitted {args.members} members in {time.perf_counter() - start:.1f}s (epochs: "
          f"{[m.n_epochs_ for m in ensemble.estimators_]})")

    dist = ensemble.predict_distribution(X_test)  # the mixture: dist.means, dist.stds
    unc = dist.uncertainty()
    gap = np.abs(unc.total_std**2 - unc.aleatoric_std**2 - unc.epistemic_std**2).max()
    print(f"total^2 = aleatoric^2 + epistemic^2 holds to {gap:.1e}")
    inside = (np.abs(X_test[:, 0]) >= 20) & (np.abs(X_test[:, 0]) <= 30)  # on the islands

    print(f"\n{'test NLL':<20}{'inside':>9}{'outside':>9}{'all':>9}{'90% cov':>9}")
    member_nll = []
    for i in range(dist.n_components):
        one = NormalMixture(dist.means[i], dist.stds[i])
        scores = [nll(y_test[m], NormalMixture(dist.means[i, m], dist.stds[i, m]))
                  for m in (inside, ~inside)]
        member_nll.append(nll(y_test, one))
        print(f"{f'member {i}':<20}{scores[0]:>9.2f}{scores[1]:>9.2f}{member_nll[-1]:>9.2f}"
              f"{coverage(y_test, one, 0.9):>9.2f}")
    sub = [nll(y_test[m], NormalMixture(dist.means[:, m], dist.stds[:, m], dist.weights))
           for m in (inside, ~inside)]
    ensemble_nll = nll(y_test, dist)
    print(f"{'the ensemble':<20}{sub[0]:>9.2f}{sub[1]:>9.2f}{ensemble_nll:>9.2f}"
          f"{coverage(y_test, dist, 0.9):>9.2f}")
    print(f"the mixture's NLL {ensemble_nll:.2f} <= the members' average "
          f"{np.mean(member_nll):.2f}")

    epistemic = {"inside": float(unc.epistemic_std[inside].mean()),
                 "outside": float(unc.epistemic_std[~inside].mean())}
    aleatoric = {"inside": float(unc.aleatoric_std[inside].mean()),
                 "outside": float(unc.aleatoric_std[~inside].mean())}
    print(f"\nmean std     {'aleatoric':>10}{'epistemic':>10}")
    for where in ("inside", "outside"):
        print(f"{where:<13}{aleatoric[where]:>10.3f}{epistemic[where]:>10.3f}")
    print(f"epistemic std outside / inside the training range: "
          f"{epistemic['outside'] / epistemic['inside']:.1f}x")
    plot(X_train, y_train, X_test, y_test, dist, args.out)
    return {"estimator": ensemble, "member_nll": member_nll, "ensemble_nll": ensemble_nll,
            "epistemic": epistemic, "aleatoric": aleatoric}


if __name__ == "__main__":
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)  # networks this small train fastest on one thread
    main()
    plt.show()  # where there is a screen
