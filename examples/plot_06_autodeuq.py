"""AutoDEUQ: a searched ensemble, and its uncertainty taken apart
==============================================================

AutoDEUQ (Egele et al., 2022) joins the two previous steps. The members of a deep ensemble
need not share one hand-picked architecture: a search (step 3) trains many candidates anyway,
each a Gaussian network, so keep them all in a catalogue and build the ensemble from it.
:class:`~autodeuq.AutoDEUQRegressor` searches architectures and training settings on Dask
workers, then selects ``ensemble_size`` members greedily, adding (with replacement) the
candidate that most lowers the NLL of the mixture on the validation part. Members that are
good *and different* lower it most, which is what an ensemble's epistemic part needs. Each
selected configuration is then trained again on all the data; one that the selection weighted
heavily is trained several times, from independent seeds.

The prediction is the members' weighted Gaussian mixture, and its variance splits exactly into
aleatoric and epistemic parts. This step reads them region by region: on the two islands
the aleatoric part should find the two noise levels (0.5 and 1.0) and the epistemic part
should be small; in the gap between the islands and past their outer edges the epistemic part
should dominate, growing with the distance from the data.

Run it with ``python examples/plot_06_autodeuq.py [--time-budget 60] [--out FIGURE.png]``.
"""

import argparse

import numpy as np

from autodeuq import AutoDEUQRegressor
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import PredictiveBandsDisplay
from autodeuq.space import SearchSpace, default_space


def plot(X_train, y_train, X_test, y_test, unc, out):
    # The bands of the selected ensemble, and its standard deviations below.
    display = PredictiveBandsDisplay.from_predictions(
        X_test, *unc, y=y_test, X_train=X_train, y_train=y_train, target_name="y",
        mean_kwargs={"label": "AutoDEUQ mean"},
        data_kwargs={"s": 1, "label": "2 sin(x), the test targets"})
    display.ax_.set(ylim=(-12, 12), title="AutoDEUQ")
    display.ax_std_.set(xlabel="x", yscale="log")
    if out:
        display.figure_.savefig(out, dpi=110)
        print(f"figure saved to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="seconds of search (default: 60)")
    parser.add_argument("--max-evals", type=int, default=None,
                        help="most candidates (default: no limit, the time budget ends it)")
    parser.add_argument("--ensemble-size", type=int, default=5,
                        help="networks in the final ensemble (default: 5)")
    parser.add_argument("--max-layers", type=int, default=3,
                        help="most hidden layers of a candidate (default: 3)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="fix every candidate's epochs (default: searched, 100 to 1000)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="Dask workers of the embedded cluster (default: one per core)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="save the figure there (needs matplotlib)")
    args = parser.parse_args(argv)

    space = default_space(max_layers=args.max_layers)
    if args.max_epochs is not None:
        space = SearchSpace({**space.dimensions, "max_epochs": args.max_epochs},
                            conditions=dict(space.conditions))
    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=args.seed)
    auto = AutoDEUQRegressor(search_space=space, time_budget=args.time_budget,
                             max_evals=args.max_evals, ensemble_size=args.ensemble_size,
                             n_jobs=args.n_jobs, random_state=args.seed)
    print(f"searching for {args.time_budget:g}s, then selecting {args.ensemble_size} "
          "networks ...", flush=True)
    auto.fit(X_train, y_train)

    print(f"\n{len(auto.search_results_)} candidates searched in {auto.search_time_:.0f}s, "
          f"{auto.n_candidates_} in the catalogue; the selection's validation NLL "
          f"{auto.validation_nll_:.3f}; stds recalibrated by x{auto.std_scale_:.2f}")
    # A configuration selected with a large weight is trained as several networks.
    by_trial = {}
    for member in auto.members_:
        by_trial.setdefault(member["trial_id"], []).append(member)
    print(f"the ensemble's {len(auto.members_)} networks, by the searched candidate whose "
          "configuration they have:")
    for trial_id, members in by_trial.items():
        config = members[0]["config"]
        layers = ", ".join(f"{layer['units']} {layer['activation']}"
                           for layer in config["layers"])
        print(f"  trial {trial_id:>3}: {len(members)} network(s), weight "
              f"{sum(m['weight'] for m in members):.2f}  [{layers}]  {config['optimizer']} "
              f"lr={config['learning_rate']:.1e}  its validation NLL "
              f"{members[0]['valid_nll']:.3f}")

    unc = auto.predict_uncertainty(X_test)  # mean, total, aleatoric and epistemic std
    total, aleatoric, epistemic = unc.total_std, unc.aleatoric_std, unc.epistemic_std
    print(f"\ntotal^2 = aleatoric^2 + epistemic^2 holds to "
          f"{np.abs(total**2 - aleatoric**2 - epistemic**2).max():.1e}")
    x = X_test[:, 0]
    regions = {
        "left island [-30, -20]": (x >= -30) & (x <= -20),
        "right island [20, 30]": (x >= 20) & (x <= 30),
        "the gap (-20, 20)": (x > -20) & (x < 20),
        "outer edges |x| > 30": np.abs(x) > 30,
    }
    print(f"\n{'mean std':<26}{'aleatoric':>10}{'epistemic':>10}{'epistemic share':>17}")
    for name, mask in regions.items():
        share = np.mean(epistemic[mask] ** 2 / total[mask] ** 2)
        print(f"{name:<26}{aleatoric[mask].mean():>10.3f}{epistemic[mask].mean():>10.3f}"
              f"{share:>16.0%}")
    inside = regions["left island [-30, -20]"] | regions["right island [20, 30]"]
    result = {"estimator": auto, "epistemic_inside": float(epistemic[inside].mean()),
              "epistemic_outside": float(epistemic[~inside].mean()),
              "aleatoric_left": float(aleatoric[regions["left island [-30, -20]"]].mean()),
              "aleatoric_right": float(aleatoric[regions["right island [20, 30]"]].mean())}
    print(f"\nepistemic std outside / inside the training range: "
          f"{result['epistemic_outside'] / result['epistemic_inside']:.1f}x")
    plot(X_train, y_train, X_test, y_test, unc, args.out)
    return result


if __name__ == "__main__":  # Dask's worker processes import this file again: keep the guard
    import matplotlib.pyplot as plt

    main()
    plt.show()  # where there is a screen
