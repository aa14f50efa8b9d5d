"""Scores for probabilistic regression, in scikit-learn argument order."""

import numbers

import numpy as np
from scipy.special import ndtr

from ._mixture import NormalMixture, _as_float_array, _check_level, _describe

_INV_SQRT_PI = 1.0 / np.sqrt(np.pi)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_CRPS_CHUNK_ELEMENTS = 50_000_000


def _check_mixture(y_pred, name="y_pred"):
    if not isinstance(y_pred, NormalMixture):
        raise TypeError(
            f"{name} must be a NormalMixture; got {type(y_pred).__name__}. Use the "
            f"estimator's predictive distribution, or build one with NormalMixture(means, stds)."
        )
    return y_pred


def _check_1d(x, name, n=None):
    """Validate a finite 1-D float array, of length ``n`` if given."""
    a = _as_float_array(x, name)
    if a.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D with shape (n_samples,); got shape {a.shape}. Pass a single "
            f"target, e.g. y.ravel() for a column vector."
        )
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"{name} must have one value per predicted point ({n}); got length {a.shape[0]}. "
            f"Predict on the same rows as the targets."
        )
    if a.shape[0] == 0:
        raise ValueError(
            f"{name} must contain at least one value; got an empty array. Pass non-empty data."
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"{name} must be finite; got {np.count_nonzero(~np.isfinite(a))} NaN or infinite "
            f"value(s). Remove or impute them."
        )
    return a


def _check_y_true(y_true, y_pred):
    return _check_1d(y_true, "y_true", _check_mixture(y_pred).n_samples)


def _check_n_levels(n_levels):
    if isinstance(n_levels, bool) or not isinstance(n_levels, numbers.Integral) or n_levels < 1:
        raise ValueError(
            f"n_levels must be an int >= 1; got {n_levels!r}. Pass e.g. 19 for levels "
            f"0.05, 0.10, ..., 0.95."
        )
    return int(n_levels)


def _check_levels(levels, n_levels):
    if levels is None:
        return np.linspace(0.05, 0.95, _check_n_levels(n_levels))
    lv = _as_float_array(levels, "levels")
    if lv.ndim != 1 or lv.size == 0 or not np.all((lv > 0) & (lv < 1)):
        raise ValueError(
            f"levels must be a non-empty 1-D array of values in the open interval (0, 1); "
            f"got {_describe(lv)}. Pass central-interval probabilities such as [0.5, 0.9]."
        )
    return lv


def nll(y_true, y_pred):
    """Mean negative log-likelihood of the exact mixture density.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.

    Returns
    -------
    float
        ``-mean(y_pred.logpdf(y_true))``; lower is better.
    """
    y = _check_y_true(y_true, y_pred)
    return float(-np.mean(y_pred.logpdf(y)))


def gaussian_nll(y_true, mean, std):
    """Mean negative log-likelihood of independent Gaussians.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    mean : float or array-like of shape (n_samples,)
        Predictive means, finite.
    std : float or array-like of shape (n_samples,)
        Predictive standard deviations, finite and > 0.

    Returns
    -------
    float
        Same as ``nll(y_true, NormalMixture(mean, std))``.
    """
    y = _check_1d(y_true, "y_true")
    mu = _as_float_array(mean, "mean")
    sd = _as_float_array(std, "std")
    for name, a in (("mean", mu), ("std", sd)):
        if a.ndim > 1 or a.size not in (1, y.shape[0]):
            raise ValueError(
                f"{name} must be a scalar or have shape ({y.shape[0]},) like y_true; got "
                f"shape {a.shape}. Pass one value per target."
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite; got {_describe(a)}. Remove NaN/inf.")
    if not np.all(sd > 0):
        raise ValueError(
            f"std must be > 0 everywhere; got min {sd.min():g}. Pass standard deviations, "
            f"not variances or log-variances."
        )
    shape = y.shape
    return nll(y, NormalMixture(np.broadcast_to(mu, shape), np.broadcast_to(sd, shape)))


def rmse(y_true, y_pred):
    """Root mean squared error of the point prediction.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture or array-like of shape (n_samples,)
        Predictive distribution (its mean is used) or point predictions.

    Returns
    -------
    float
        ``sqrt(mean((y_true - mean)**2))``.
    """
    if isinstance(y_pred, NormalMixture):
        point = y_pred.mean
    else:
        point = _check_1d(y_pred, "y_pred")
    y = _check_1d(y_true, "y_true", point.shape[0])
    return float(np.sqrt(np.mean((y - point) ** 2)))


def _a(m, s2):
    """Grimit et al. (2006) ``A(m, s2) = E|X|`` for ``X ~ N(m, s2)``."""
    s = np.sqrt(s2)
    z = m / s
    return 2.0 * s * _INV_SQRT_2PI * np.exp(-0.5 * z**2) + m * (2.0 * ndtr(z) - 1.0)


def _crps_pointwise(y, mix):
    """CRPS of each point, shape (n_samples,)."""
    mu, sd, w = mix.means, mix.stds, mix.weights
    if mix.n_components == 1:
        z = (y - mu[0]) / sd[0]
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * z**2)
        return sd[0] * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - _INV_SQRT_PI)
    k = np.flatnonzero(w > 0)
    mu, var, w = mu[k], sd[k] ** 2, w[k]
    first = w @ _a(y - mu, var)
    # The pairwise term is symmetric in (i, j) and A(0, 2 s^2) = 2 s / sqrt(pi) on the
    # diagonal, so only pairs i < j are evaluated.
    second = 2.0 * _INV_SQRT_PI * (w**2 @ sd[k])
    rows, cols = np.triu_indices(k.size, 1)
    ww = 2.0 * w[rows] * w[cols]
    n = y.shape[0]
    chunk = max(1, _CRPS_CHUNK_ELEMENTS // max(1, rows.size))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        pairs = _a(mu[rows, sl] - mu[cols, sl], var[rows, sl] + var[cols, sl])
        second[sl] += ww @ pairs
    return first - 0.5 * second


def crps(y_true, y_pred):
    """Mean continuous ranked probability score, in closed form.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.

    Returns
    -------
    float
        Mean CRPS, in the units of the target; lower is better.

    Notes
    -----
    One Gaussian: ``sigma * (z * (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))`` with
    ``z = (y - mu) / sigma``. A mixture uses the formula of Grimit et al. (2006), whose
    pairwise term costs ``O(n_components**2 * n_samples)``
    time and is evaluated in chunks of points to bound memory.
    """
    y = _check_y_true(y_true, y_pred)
    return float(np.mean(_crps_pointwise(y, y_pred)))


def _inside(u, levels):
    """Whether PIT values ``u`` (n,) fall in each central interval; shape (L, n)."""
    levels = np.asarray(levels)[:, np.newaxis]
    return ((0.5 - levels / 2) <= u) & (u <= (0.5 + levels / 2))


def coverage(y_true, y_pred, level=0.9):
    """Fraction of targets inside the central prediction interval.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.
    level : float, default=0.9
        Nominal probability mass of the central interval, in (0, 1).

    Returns
    -------
    float
        Observed coverage; ``level`` for a calibrated model.

    Notes
    -----
    Computed through the probability integral transform: ``y`` is inside iff
    ``(1 - level) / 2 <= cdf(y) <= (1 + level) / 2``, which needs no quantile solve.
    """
    level = _check_level(level)
    y = _check_y_true(y_true, y_pred)
    return float(np.mean(_inside(y_pred.cdf(y), [level])))


def interval_width(y_pred, level=0.9):
    """Mean width of the central prediction interval.

    Parameters
    ----------
    y_pred : NormalMixture
        Predictive distribution.
    level : float, default=0.9
        Probability mass of the central interval, in (0, 1).

    Returns
    -------
    float
        Mean of ``upper - lower``, in the units of the target.
    """
    lower, upper = _check_mixture(y_pred).interval(level)
    return float(np.mean(upper - lower))


def calibration_curve(y_true, y_pred, n_levels=19, *, levels=None):
    """Observed against nominal coverage of central prediction intervals.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.
    n_levels : int, default=19
        Number of levels, evenly spaced in [0.05, 0.95]. Ignored if ``levels`` is given.
    levels : array-like of shape (n_levels,), default=None
        Nominal levels in (0, 1) to use instead.

    Returns
    -------
    expected : ndarray of shape (n_levels,)
        Nominal levels.
    observed : ndarray of shape (n_levels,)
        Observed coverage at each level.
    """
    expected = _check_levels(levels, n_levels)
    y = _check_y_true(y_true, y_pred)
    observed = np.mean(_inside(y_pred.cdf(y), expected), axis=1)
    return expected, observed


def calibration_error(y_true, y_pred, n_levels=19, norm="l1", *, levels=None):
    """Gap between observed and nominal coverage, averaged over levels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.
    n_levels : int, default=19
        Number of levels, as in :func:`calibration_curve`.
    norm : {"l1", "l2"}, default="l1"
        Mean absolute gap, or root mean squared gap.
    levels : array-like of shape (n_levels,), default=None
        Nominal levels in (0, 1) to use instead of ``n_levels``.

    Returns
    -------
    float
        0 for perfect calibration; at most 1.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(
            f'norm must be "l1" or "l2"; got {norm!r}. Use "l1" for the mean absolute gap '
            f'or "l2" for the root mean squared gap.'
        )
    expected, observed = calibration_curve(y_true, y_pred, n_levels, levels=levels)
    gap = observed - expected
    if norm == "l1":
        return float(np.mean(np.abs(gap)))
    return float(np.sqrt(np.mean(gap**2)))


def regression_report(y_true, y_pred, level=0.9):
    """All scores of a probabilistic regression in one dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed targets.
    y_pred : NormalMixture
        Predictive distribution with ``n_samples`` points.
    level : float, default=0.9
        Level used for ``"coverage"`` and ``"interval_width"``.

    Returns
    -------
    dict of str to float
        Keys ``"nll"``, ``"nll_moment_matched"`` (NLL of ``y_pred.moment_matched()``),
        ``"rmse"``, ``"crps"``, ``"coverage"``, ``"interval_width"`` and
        ``"calibration_error"`` (l1, 19 levels).
    """
    level = _check_level(level)
    y = _check_y_true(y_true, y_pred)
    return {
        "nll": nll(y, y_pred),
        "nll_moment_matched": nll(y, y_pred.moment_matched()),
        "rmse": rmse(y, y_pred),
        "crps": crps(y, y_pred),
        "coverage": coverage(y, y_pred, level),
        "interval_width": interval_width(y_pred, level),
        "calibration_error": calibration_error(y, y_pred),
    }
