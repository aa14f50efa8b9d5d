"""Post-hoc recalibration on held-out data: one factor on every component's standard
deviation (the NLL), and the quantile levels of calibrated intervals."""

import math
import numbers

import numpy as np
from scipy.optimize import minimize_scalar

from ._metrics import nll
from ._mixture import NormalMixture

__all__ = ["calibrated_levels", "fit_std_scale"]

# The factor is searched in [e^-3, e^3]: far beyond any honest miscalibration.
_LOG_BOUND = 3.0
# Calibrated levels stay this far inside (0, 1), where every quantile is finite.
_LEVEL_EPS = 1e-12


def fit_std_scale(y_true, y_pred, widen_only=False):
    """The factor on every component's std that minimizes the NLL of held-out data.

    Scaling the components' standard deviations by ``s`` keeps the means (so the epistemic
    part) and multiplies the aleatoric variance by ``s**2``: it corrects networks that are
    over- or under-confident about the noise, the usual failure of a Gaussian network trained
    on a small sample. Fit it on data the members were not trained on.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : NormalMixture
        Predictions for the same samples.
    widen_only : bool, default=False
        Return ``max(1, s)``: correct overconfidence only. A factor below 1 gains at most
        ``-log s`` per well-predicted point but multiplies the squared error term of a point
        far from every mean by ``1 / s**2``; fitted on a few hundred points that also chose
        the members (which then look better there than they are), it is biased low.

    Returns
    -------
    float
        ``s > 0``; 1 means the predictions were already calibrated in NLL.
    """
    if not isinstance(y_pred, NormalMixture):
        raise TypeError(f"y_pred must be a NormalMixture; got {type(y_pred).__name__}.")
    if not isinstance(widen_only, bool | np.bool_):
        raise TypeError(f"widen_only must be a bool; got {widen_only!r}. Pass True or False.")

    def loss(log_scale):
        return nll(y_true, NormalMixture(y_pred.means, y_pred.stds * np.exp(log_scale),
                                         y_pred.weights))

    result = minimize_scalar(loss, bounds=(-_LOG_BOUND, _LOG_BOUND), method="bounded",
                             options={"xatol": 1e-4})
    # Keep 1 unless scaling really helps (a flat loss must not drift the factor).
    scale = float(np.exp(result.x)) if result.fun < loss(0.0) else 1.0
    return max(1.0, scale) if widen_only else scale


def check_coverage(coverage):
    """Refuse an interval's ``coverage`` that is not a number in (0, 1) (a bool included)."""
    if (not isinstance(coverage, numbers.Real) or isinstance(coverage, bool)
            or not 0.0 < coverage < 1.0):
        raise ValueError(f"coverage must be a float in (0, 1); got {coverage!r}. Use e.g. 0.9 "
                         "for a 90% interval.")


def calibrated_levels(pits, coverage=0.9):
    """The predictive quantile levels whose central interval held ``coverage`` of held-out data.

    Quantile recalibration (Kuleshov, Fenner and Ermon, ICML 2018) with the order statistics
    of split conformal prediction. ``pits`` are the predictive CDF's values at held-out
    targets (the probability integral transform, ``NormalMixture.cdf(y)``). A calibrated
    model's are uniform, and its central interval from the ``(1 - coverage) / 2`` to the
    ``(1 + coverage) / 2`` quantile holds ``coverage`` of new points. When they are not, the
    levels returned are the ``floor((n + 1) (1 - coverage) / 2)``-th and
    ``ceil((n + 1) (1 + coverage) / 2)``-th smallest of the ``n`` values: an overconfident
    model gets levels further out, an underconfident one levels further in, a skewed error an
    asymmetric interval. A new point drawn as the held-out ones were (and predicted by the
    same model) falls inside the interval with probability at least ``coverage``. Only the
    interval's levels move; the distribution is unchanged.

    Parameters
    ----------
    pits : array-like of shape (n_points,)
        Predictive CDF values of held-out targets, in [0, 1]: data the model was not trained on.
    coverage : float, default=0.9
        The fraction of new points the interval should hold, in (0, 1).

    Returns
    -------
    lower, upper : float
        Levels in the open interval (0, 1), ``lower <= upper``. Where ``n`` is too small to
        resolve the coverage (``(n + 1) (1 - coverage) / 2 < 1``), the level on that side is
        ``1e-12`` from 0 or 1: an interval as wide as the distribution can say.
    """
    pits = np.asarray(pits, dtype=np.float64)
    if pits.ndim != 1 or pits.size < 2:
        raise ValueError(f"pits must be a 1-D array of at least 2 values; got shape "
                         f"{pits.shape}. Pass NormalMixture.cdf(y) of held-out points.")
    if not np.all((pits >= 0.0) & (pits <= 1.0)):
        raise ValueError(f"pits must lie in [0, 1]; got values from {float(np.nanmin(pits))} to "
                         f"{float(np.nanmax(pits))}. Pass NormalMixture.cdf(y) of held-out points.")
    check_coverage(coverage)
    pits = np.sort(pits)
    n = pits.size
    # 1-based ranks (0 and n + 1: beyond the sample); the slack keeps an exact product such
    # as 20 * 0.05 from rounding to the wrong side (0.9999999999999998 is 1).
    low = math.floor((n + 1) * (1.0 - coverage) / 2 + 1e-9)
    high = math.ceil((n + 1) * (1.0 + coverage) / 2 - 1e-9)
    lower = pits[low - 1] if low >= 1 else 0.0
    upper = pits[high - 1] if high <= n else 1.0
    # The quantile function takes open-interval levels (a point far out has a PIT of exactly
    # 0 or 1 in floating point).
    lower, upper = np.clip([lower, upper], _LEVEL_EPS, 1.0 - _LEVEL_EPS)
    return float(lower), float(upper)
