"""Predictive distributions of deep ensembles and scores to evaluate them.

:class:`NormalMixture` holds one Gaussian mixture per data point and splits its variance
into aleatoric and epistemic parts; the metric functions take ``(y_true, y_pred)`` like
scikit-learn's, with ``y_pred`` a :class:`NormalMixture`.
"""

from ._calibration import calibrated_levels, fit_std_scale, transfer_pits
from ._metrics import (
    calibration_curve,
    calibration_error,
    coverage,
    crps,
    gaussian_nll,
    interval_width,
    nll,
    regression_report,
    rmse,
)
from ._mixture import NormalMixture, PredictiveUncertainty, mixture_moments

__all__ = [
    "NormalMixture",
    "PredictiveUncertainty",
    "calibrated_levels",
    "calibration_curve",
    "calibration_error",
    "coverage",
    "crps",
    "fit_std_scale",
    "gaussian_nll",
    "interval_width",
    "mixture_moments",
    "nll",
    "regression_report",
    "rmse",
    "transfer_pits",
]
