"""scikit-learn's common estimator checks on every public estimator, at a tiny budget."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor

TINY = {"hidden_layer_sizes": (16,), "max_epochs": 40, "learning_rate": 1e-2, "patience": 10,
        "random_state": 0}

# Each tolerated failure, with its reason. Keep this list short and honest.
EXPECTED_FAILED = {}


@parametrize_with_checks(
    [
        GaussianMLPRegressor(**TINY),
        DeepEnsembleRegressor(GaussianMLPRegressor(**TINY), n_members=2, random_state=0),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
