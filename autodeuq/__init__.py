"""autodeuq: automated deep ensembles with uncertainty quantification.

Scikit-learn estimators on PyTorch, skorch and Dask that predict a mean and say how sure they
are, splitting the predictive variance into aleatoric (noise in the data) and epistemic (lack
of knowledge) parts.
"""

__version__ = "0.1.0.dev0"

from .estimators import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor, NASRegressor
from .persistence import load, save
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
    "save",
]


def __getattr__(name):
    """``autodeuq.plotting`` (the matplotlib displays) is imported on first use; it imports
    matplotlib only when a display draws."""
    if name == "plotting":
        import importlib

        return importlib.import_module(".plotting", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
