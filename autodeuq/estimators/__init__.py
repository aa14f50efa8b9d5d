"""The scikit-learn estimators."""

from ._base import UncertaintyRegressorMixin
from ._deep_ensemble import DeepEnsembleRegressor
from ._gaussian_mlp import GaussianMLPRegressor

__all__ = ["DeepEnsembleRegressor", "GaussianMLPRegressor", "UncertaintyRegressorMixin"]
