"""autodeuq: automated deep ensembles with uncertainty quantification.

Scikit-learn estimators on PyTorch, skorch and Dask that predict a mean and say how sure they
are, splitting the predictive variance into aleatoric (noise in the data) and epistemic (lack
of knowledge) parts.
"""

__version__ = "0.1.0.dev0"

from .estimators import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor, NASRegressor
from .persistence import load
from .uncertainty import NormalMixture, PredictiveUncertainty

__all__ = [
    "AutoDEUQRegressor",
    "DeepEnsembleRegressor",
    "GaussianMLPRegressor",
    "NASRegressor",
    "NormalMixture",
    "PredictiveUncertainty",
    "__version__",
    "load",
]
