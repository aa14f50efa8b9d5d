"""The scikit-learn estimators."""

from ._autodeuq import AutoDEUQRegressor
from ._base import UncertaintyRegressorMixin
from ._deep_ensemble import DeepEnsembleRegressor
from ._gaussian_mlp import GaussianMLPRegressor
from ._nas import NASRegressor
from ._search_base import SearchFailedError

__all__ = [
    "AutoDEUQRegressor",
    "DeepEnsembleRegressor",
    "GaussianMLPRegressor",
    "NASRegressor",
    "SearchFailedError",
    "UncertaintyRegressorMixin",
]
