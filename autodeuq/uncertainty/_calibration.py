"""Post-hoc recalibration on held-out data: one factor on every component's standard
deviation (the NLL), and the quantile levels of calibrated intervals."""

import math
import numbers
import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr, ndtri

from ._metrics import nll
from ._mixture import NormalMixture

__all__ = ["calibrated_levels", "fit_std_scale", "transfer_pits"]

# The factor is searched in [e^-3, e^3]: far beyond any honest miscalibration.
_LOG_BOUND = 3.0
# Calibrated levels stay this far inside (0, 1), where every quantile is finite.
_LEVEL_EPS = 1e-12
# The predicted squared error of a mixture's mean, c a - s, is kept at least this fraction of
# its variance a + s at every point (it cannot be negative; where the spread s exceeds c a,
# the members' errors are not as the held-out points measured them).
_ERROR_FLOOR = 0.05


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
        ``s > 0``; 1 means the predictions were already calibrated in NLL. The factor is
        searched in ``[e^-3, e^3]`` (about 0.05 to 20), far beyond any honest miscalibration;
        a ``UserWarning`` says when the best one lies at that bound.
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
    if abs(math.log(scale)) > _LOG_BOUND - 1e-3:
        warnings.warn(
            f"fit_std_scale: the factor on the stds that fits the held-out data best lies at or "
            f"beyond its bound, e^{_LOG_BOUND:g} = {math.exp(_LOG_BOUND):.1f} (or its inverse); "
            f"{scale:.4g} is returned. Predictions that far from calibrated point to members "
            "that did not learn the noise, or held-out data unlike the training data.",
            UserWarning, stacklevel=2)
    return max(1.0, scale) if widen_only else scale


def check_coverage(coverage):
    """Refuse an interval's ``coverage`` that is not a number in (0, 1) (a bool included)."""
    if (not isinstance(coverage, numbers.Real) or isinstance(coverage, bool)
            or not 0.0 < coverage < 1.0):
        raise ValueError(f"coverage must be a float in (0, 1); got {coverage!r}. Use e.g. 0.9 "
                         "for a 90% interval.")


def _check_pits(pits):
    """``pits`` as a 1-D float64 array of at least 2 values in [0, 1], else a ValueError."""
    try:
        pits = np.asarray(pits, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pits must be numbers in [0, 1]; got {type(pits).__name__} with a "
                         f"value that is not one ({exc}). Pass NormalMixture.cdf(y) of "
                         "held-out points.") from None
    if pits.ndim != 1 or pits.size < 2:
        raise ValueError(f"pits must be a 1-D array of at least 2 values; got shape "
                         f"{pits.shape}. Pass NormalMixture.cdf(y) of held-out points.")
    if np.isnan(pits).any():
        raise ValueError(f"pits must lie in [0, 1]; got {int(np.isnan(pits).sum())} NaN "
                         "value(s). Pass NormalMixture.cdf(y) of held-out points with finite "
                         "targets.")
    if not np.all((pits >= 0.0) & (pits <= 1.0)):
        raise ValueError(f"pits must lie in [0, 1]; got values from {float(np.min(pits))} to "
                         f"{float(np.max(pits))}. Pass NormalMixture.cdf(y) of held-out points.")
    return pits


def calibrated_levels(pits, coverage=0.9):
    """The predictive quantile levels whose central interval held ``coverage`` of held-out data.

    Quantile recalibration (Kuleshov, Fenner and Ermon, ICML 2018) with the order statistics
    of split conformal prediction. ``pits`` are the predictive CDF's values at held-out
    targets (the probability integral transform, ``NormalMixture.cdf(y)``). A calibrated
    model's are uniform, and its central interval from the ``(1 - coverage) / 2`` to the
    ``(1 + coverage) / 2`` quantile holds ``coverage`` of new points. When they are not, the
    levels returned are two order statistics of the ``n`` values, about the
    ``(n + 1) (1 - coverage) / 2``-th and ``(n + 1) (1 + coverage) / 2``-th smallest: an
    overconfident model gets levels further out, an underconfident one levels further in, a
    skewed error an asymmetric interval. A new point drawn as the held-out ones were (and
    predicted by the same model) falls inside the interval with probability at least
    ``coverage``. Only the interval's levels move; the distribution is unchanged.

    The ranks are the tightest that keep this guarantee: a new value lies between the
    ``l``-th and ``h``-th smallest of ``n`` exchangeable ones with probability
    ``(h - l) / (n + 1)``, so ``h - l`` is the least ``k`` with ``k / (n + 1) >= coverage``,
    and the ``n + 1 - k`` ranks left out are shared between the two tails (the upper one
    takes the odd one). Rounding each tail on its own, ``floor((n + 1) (1 - coverage) / 2)``
    and ``ceil((n + 1) (1 + coverage) / 2)``, can leave out one rank fewer: with the 56
    validation points of UCI yacht, a 90% interval that holds 53/57 = 0.930 of new points
    where 52/57 = 0.912 suffices.

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
        resolve the coverage (fewer than two ranks left out, about ``(n + 1) (1 - coverage)
        < 2``), the level on the lower side, or on both, is ``1e-12`` from 0 or 1: an
        interval as wide as the distribution can say.
    """
    pits = _check_pits(pits)
    check_coverage(coverage)
    pits = np.sort(pits)
    n = pits.size
    # 1-based ranks (0 and n + 1: beyond the sample); the slack keeps an exact product such
    # as 20 * 0.9 from rounding to the wrong side (18.000000000000004 is 18).
    # At most n + 1 (coverage < 1); at least 1, so that an interval of a tiny coverage keeps
    # its guarantee (0 ranks inside is an empty interval).
    inside = max(1, math.ceil((n + 1) * coverage - 1e-9))
    low = (n + 1 - inside) // 2
    high = low + inside
    lower = pits[low - 1] if low >= 1 else 0.0
    upper = pits[high - 1] if high <= n else 1.0
    # The quantile function takes open-interval levels (a point far out has a PIT of exactly
    # 0 or 1 in floating point).
    lower, upper = np.clip([lower, upper], _LEVEL_EPS, 1.0 - _LEVEL_EPS)
    return float(lower), float(upper)


def _member_calibration(y, mixture):
    """``c``: the mean squared error of the components over their mean variance, the
    weighted mean over components and points (1 for members calibrated on average)."""
    squared = mixture.weights @ (np.asarray(y, dtype=np.float64) - mixture.means) ** 2
    return float(np.mean(squared) / np.mean(mixture.aleatoric_var))


def _error_share(mixture, c):
    """The predicted mean over points of ``(y - mean)**2 / total variance``: ``(c a - s) /
    (a + s)`` (``a`` aleatoric, ``s`` epistemic variance), floored at ``_ERROR_FLOOR``."""
    a, s = mixture.aleatoric_var, mixture.epistemic_var
    return float(np.mean(np.maximum(c * a - s, _ERROR_FLOOR * (a + s)) / (a + s)))


def transfer_pits(pits, y_held, held, target, narrow_only=False):
    """Held-out PIT values of one ensemble, moved to another of more (or fewer) networks.

    Quantile recalibration (:func:`calibrated_levels`) assumes the model that predicts is
    the one the held-out PITs were measured on. A search measures them on its searched
    members and then predicts with networks of the same configurations trained again,
    often more of them; those have no held-out data left. This moves the PITs by the change
    in the ensemble's spread. For a mixture of weights ``w`` and means ``mu_i`` the squared
    error of its mean is, at every point, the weighted mean of the components' squared
    errors less their spread::

        (y - mean)**2 = sum_i w_i (y - mu_i)**2 - sum_i w_i (mu_i - mean)**2

    Members whose squared error is ``c`` times their variance on average (``c`` measured on
    the held-out points) give the mean an expected squared error of ``c a - s``, where
    ``a`` is the mixture's aleatoric variance and ``s`` its epistemic one, while the mixture
    has variance ``a + s``: the more the members disagree (more networks, more different
    ones), the wider the mixture is for its errors, and its PITs crowd the middle. Each PIT
    is moved on the normal scale, ``ndtr(ndtri(pit) * sqrt(r))``, with ``r`` the ratio of
    ``target``'s predicted mean of ``(y - mean)**2 / (a + s)`` to ``held``'s.

    Parameters
    ----------
    pits : array-like of shape (n_held,)
        ``held.cdf(y_held)`` or any PITs of ``held`` on held-out points.
    y_held : array-like of shape (n_held,)
        The held-out targets.
    held : NormalMixture
        The ensemble the PITs were measured with, at the held-out points.
    target : NormalMixture
        The ensemble that predicts, at points like the held-out ones (any number; they
        need no targets), in the same units as ``held``.
    narrow_only : bool, default=False
        Never move the PITs outwards (a ratio above 1 is taken as 1). For a ``target`` of
        the same configurations as ``held`` and at least as many networks, whose spread is
        then at least ``held``'s, predicted on rows it trained on, where networks agree
        more than on new rows: a ratio above 1 is that bias, not a real change.

    Returns
    -------
    ndarray of shape (n_held,)
        The moved PITs, sorted; unchanged when ``target`` spreads as ``held`` does.
    """
    for name, mixture in (("held", held), ("target", target)):
        if not isinstance(mixture, NormalMixture):
            raise TypeError(f"{name} must be a NormalMixture; got {type(mixture).__name__}. "
                            "Pass the ensemble's predict_distribution(X).")
    pits = _check_pits(pits)
    y_held = np.asarray(y_held, dtype=np.float64).ravel()
    if not pits.size == y_held.size == held.n_samples:
        raise ValueError(f"pits, y_held and held must describe the same held-out points; got "
                         f"{pits.size} PITs, {y_held.size} targets and {held.n_samples} "
                         "predictions. Pass held.cdf(y_held), y_held and held.")
    if not isinstance(narrow_only, bool | np.bool_):
        raise TypeError(f"narrow_only must be a bool; got {narrow_only!r}. Pass True or False.")
    if not np.all(np.isfinite(y_held)):
        raise ValueError("y_held must be finite; got NaN or infinite values. Pass the "
                         "held-out targets the PITs were computed from.")
    pits = np.sort(pits)
    c = _member_calibration(y_held, held)
    ratio = _error_share(target, c) / _error_share(held, c)
    if narrow_only:
        ratio = min(ratio, 1.0)
    return ndtr(ndtri(pits) * math.sqrt(ratio))
