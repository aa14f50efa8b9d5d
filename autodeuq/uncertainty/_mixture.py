"""Gaussian mixtures: the predictive distribution of a deep ensemble."""

import numbers
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri
from sklearn.utils import check_random_state

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_PPF_RTOL = 4 * np.finfo(np.float64).eps
_PPF_MAX_ITER = 200
# Stds (and |means|) whose squares float64 holds: nonzero above 1e-154, and finite, with the
# spread of means added, below 1e153.
_STD_RANGE = (1e-154, 1e153)


def _describe(a):
    """Short description of an array for error messages."""
    a = np.asarray(a)
    if a.size <= 6:
        return np.array2string(a, precision=6, separator=", ")
    return f"an array of shape {a.shape}"


def _as_float_array(x, name):
    """Convert ``x`` to a float64 array, naming ``name`` if that fails."""
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be array-like of real numbers; got {type(x).__name__} ({exc}). "
            f"Pass a numpy array or a list of floats, every row of the same length."
        ) from exc


def _components(x, name):
    """Return ``x`` as a float64 array of shape (n_components, n_samples)."""
    a = _as_float_array(x, name)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (n_samples,) or (n_components, n_samples) with at "
            f"least one component; got shape {np.shape(x)}. Stack the members' predictions "
            f"along the first axis."
        )
    return a


def _check_finite(a, name):
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"{name} must be finite; got {np.count_nonzero(~np.isfinite(a))} NaN or "
            f"infinite value(s). Remove or impute them."
        )


def _check_weights(weights, n_components):
    """Validate mixture weights and return them normalised to sum 1."""
    if weights is None:
        return np.full(n_components, 1.0 / n_components)
    w = _as_float_array(weights, "weights")
    if w.ndim != 1 or w.shape[0] != n_components:
        raise ValueError(
            f"weights must have shape ({n_components},), one per component; got shape "
            f"{w.shape}. Pass one weight per ensemble member, or None for uniform weights."
        )
    _check_finite(w, "weights")
    if np.any(w < 0):
        raise ValueError(f"weights must be >= 0; got min {w.min():g}. Pass non-negative weights.")
    largest = w.max()
    if largest > 0:  # scaled first: a sum of huge weights overflows to inf (and w / inf to 0)
        w = w / largest
    total = w.sum()
    if not total > 0:
        raise ValueError(
            f"weights must have a positive sum; got {_describe(w)}. Give at least one "
            f"component a positive weight."
        )
    return w / total


def _check_squares(mu, sd):
    """Refuse stds and means whose squares (the variances, the means' spread) leave float64:
    the moments would be 0 or infinite, and every metric after them wrong."""
    if sd.size and not (sd.min() >= _STD_RANGE[0] and sd.max() <= _STD_RANGE[1]):
        raise ValueError(
            f"stds must lie in [{_STD_RANGE[0]:g}, {_STD_RANGE[1]:g}] (their squares, the "
            f"variances, must stay finite and nonzero in float64); got values from "
            f"{sd.min():g} to {sd.max():g}. Rescale the target, and the predictions, by a "
            f"power of ten."
        )
    if mu.size and np.abs(mu).max() > _STD_RANGE[1]:
        raise ValueError(
            f"means must have every |value| <= {_STD_RANGE[1]:g} (their spread's square must "
            f"stay finite in float64); got {np.abs(mu).max():g}. Rescale the target, and the "
            f"predictions, by a power of ten."
        )


def _frozen(a):
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def mixture_moments(means, variances, weights=None):
    """Mean and variance decomposition of a weighted mixture.

    Parameters
    ----------
    means : array-like of shape (n_components, n_samples)
        Component means. A 1-D array is read as a single component.
    variances : array-like of shape (n_components, n_samples)
        Component variances, finite and non-negative.
    weights : array-like of shape (n_components,), default=None
        Non-negative component weights; normalised to sum 1. None means uniform.

    Returns
    -------
    mean : ndarray of shape (n_samples,)
        Mixture mean ``sum_i w_i mu_i``.
    aleatoric_var : ndarray of shape (n_samples,)
        Expected component variance ``sum_i w_i sigma_i^2``.
    epistemic_var : ndarray of shape (n_samples,)
        Variance of the component means ``sum_i w_i (mu_i - mean)^2``; never negative,
        exactly zero for one component.

    Notes
    -----
    ``aleatoric_var + epistemic_var`` is the mixture variance (law of total variance).
    """
    mu = _components(means, "means")
    var = _components(variances, "variances")
    if mu.shape != var.shape:
        raise ValueError(
            f"variances must have the same shape as means; got {var.shape} and {mu.shape}. "
            f"Pass one variance per component mean."
        )
    _check_finite(mu, "means")
    _check_finite(var, "variances")
    if np.any(var < 0):
        raise ValueError(
            f"variances must be >= 0 everywhere; got min {var.min():g}. Pass variances, "
            f"not log-variances."
        )
    w = _check_weights(weights, mu.shape[0])
    return _moments(mu, var, w)


def _moments(mu, var, w):
    wc = w[:, np.newaxis]
    mean = np.sum(wc * mu, axis=0)
    aleatoric = np.sum(wc * var, axis=0)
    epistemic = np.sum(wc * (mu - mean) ** 2, axis=0)
    return mean, aleatoric, epistemic


class PredictiveUncertainty(NamedTuple):
    """Predictive mean and standard deviations, split into their sources.

    Unpack it as ``mean, total_std, aleatoric_std, epistemic_std = result``.

    Attributes
    ----------
    mean : ndarray of shape (n_samples,)
        Predictive mean.
    total_std : ndarray of shape (n_samples,)
        Total predictive standard deviation,
        ``sqrt(aleatoric_std**2 + epistemic_std**2)``.
    aleatoric_std : ndarray of shape (n_samples,)
        Square root of the mean member variance (data noise).
    epistemic_std : ndarray of shape (n_samples,)
        Standard deviation of the member means (model disagreement).
    """

    mean: np.ndarray
    total_std: np.ndarray
    aleatoric_std: np.ndarray
    epistemic_std: np.ndarray

    @property
    def total_var(self):
        """ndarray of shape (n_samples,): total predictive variance."""
        return self.total_std**2

    @property
    def aleatoric_var(self):
        """ndarray of shape (n_samples,): aleatoric variance."""
        return self.aleatoric_std**2

    @property
    def epistemic_var(self):
        """ndarray of shape (n_samples,): epistemic variance."""
        return self.epistemic_std**2


class NormalMixture:
    """Weighted mixture of Gaussians, one mixture per data point.

    Component ``i`` at point ``j`` is ``N(means[i, j], stds[i, j]**2)`` with weight
    ``weights[i]``; this is the predictive distribution of a deep ensemble of
    Gaussian networks on ``n_samples`` points.

    Parameters
    ----------
    means : array-like of shape (n_components, n_samples) or (n_samples,)
        Component means, finite. A 1-D array is a single component.
    stds : array-like of the same shape as ``means``
        Component standard deviations, finite and strictly positive.
    weights : array-like of shape (n_components,), default=None
        Finite, non-negative weights with a positive sum; normalised to sum 1.
        None means uniform.

    Attributes
    ----------
    means : ndarray of shape (n_components, n_samples)
        Component means (read-only).
    stds : ndarray of shape (n_components, n_samples)
        Component standard deviations (read-only).
    weights : ndarray of shape (n_components,)
        Normalised weights (read-only).

    Examples
    --------
    >>> import numpy as np
    >>> from autodeuq.uncertainty import NormalMixture
    >>> mix = NormalMixture([[0.0, 1.0], [2.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]])
    >>> mix.mean, mix.epistemic_var
    (array([1., 1.]), array([1., 0.]))
    """

    def __init__(self, means, stds, weights=None):
        mu = _components(means, "means")
        sd = _components(stds, "stds")
        if mu.shape != sd.shape:
            raise ValueError(
                f"stds must have the same shape as means; got {sd.shape} and {mu.shape}. "
                f"Pass one standard deviation per component mean."
            )
        _check_finite(mu, "means")
        _check_finite(sd, "stds")
        if sd.size and not sd.min() > 0:
            raise ValueError(
                f"stds must be > 0 everywhere; got min {sd.min():g}. Pass standard "
                f"deviations, not variances or log-variances, and floor them at a small "
                f"positive value."
            )
        _check_squares(mu, sd)
        w = _check_weights(weights, mu.shape[0])
        self._means = _frozen(mu)
        self._stds = _frozen(sd)
        self._weights = _frozen(w)
        self._active = np.flatnonzero(w > 0)
        self._moments = tuple(_frozen(m) for m in _moments(mu, sd**2, w))

    def __reduce__(self):
        return (type(self), (self._means, self._stds, self._weights))

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_components={self.n_components}, n_samples={self.n_samples})"
        )

    @property
    def means(self):
        """ndarray of shape (n_components, n_samples): component means."""
        return self._means

    @property
    def stds(self):
        """ndarray of shape (n_components, n_samples): component standard deviations."""
        return self._stds

    @property
    def weights(self):
        """ndarray of shape (n_components,): normalised component weights."""
        return self._weights

    @property
    def n_components(self):
        """int: number of mixture components."""
        return self._means.shape[0]

    @property
    def n_samples(self):
        """int: number of data points."""
        return self._means.shape[1]

    @property
    def mean(self):
        """ndarray of shape (n_samples,): mixture mean."""
        return self._moments[0]

    @property
    def aleatoric_var(self):
        """ndarray of shape (n_samples,): weighted mean of the component variances."""
        return self._moments[1]

    @property
    def epistemic_var(self):
        """ndarray of shape (n_samples,): weighted variance of the component means."""
        return self._moments[2]

    @property
    def var(self):
        """ndarray of shape (n_samples,): total variance, aleatoric plus epistemic."""
        return self._moments[1] + self._moments[2]

    @property
    def std(self):
        """ndarray of shape (n_samples,): total standard deviation."""
        return np.sqrt(self.var)

    @property
    def aleatoric_std(self):
        """ndarray of shape (n_samples,): square root of the aleatoric variance."""
        return np.sqrt(self._moments[1])

    @property
    def epistemic_std(self):
        """ndarray of shape (n_samples,): square root of the epistemic variance."""
        return np.sqrt(self._moments[2])

    def uncertainty(self):
        """Mean and standard deviations by source.

        Returns
        -------
        PredictiveUncertainty
            ``(mean, total_std, aleatoric_std, epistemic_std)``, each of shape (n_samples,).
        """
        return PredictiveUncertainty(
            self.mean.copy(), self.std, self.aleatoric_std, self.epistemic_std
        )

    def _points(self, y, name):
        """``y`` as shape (n_samples,): a scalar for every point, or one value per point.

        Only a scalar is broadcast: an array of another shape, a length-1 array too, is
        refused (``y[:1]`` for a mixture of many points is a slip, not "every point")."""
        a = _as_float_array(y, name)
        if a.ndim != 0 and a.shape != (self.n_samples,):
            raise ValueError(
                f"{name} must be a scalar or have shape ({self.n_samples},), one value per "
                f"point; got shape {a.shape}. Pass one value per data point."
            )
        # A read-only view either way: the caller's array is never written to.
        return np.broadcast_to(a, (self.n_samples,))

    def logpdf(self, y):
        """Log density of the mixture at ``y``, point by point.

        Parameters
        ----------
        y : float or array-like of shape (n_samples,)
            Where to evaluate the density of each point's mixture.

        Returns
        -------
        ndarray of shape (n_samples,)
            Exact mixture log density; finite far in the tails.
        """
        y = self._points(y, "y")
        k = self._active
        mu, sd = self._means[k], self._stds[k]
        z = (y - mu) / sd
        log_comp = -0.5 * z**2 - np.log(sd) - _LOG_SQRT_2PI
        log_w = np.log(self._weights[k])[:, np.newaxis]
        if k.size == 1:
            return log_comp[0] + log_w[0]
        return logsumexp(log_comp + log_w, axis=0)

    def pdf(self, y):
        """Density of the mixture at ``y``, point by point.

        Parameters
        ----------
        y : float or array-like of shape (n_samples,)
            Where to evaluate the density.

        Returns
        -------
        ndarray of shape (n_samples,)
            Mixture density.
        """
        return np.exp(self.logpdf(y))

    def cdf(self, y):
        """Cumulative distribution function of the mixture at ``y``, point by point.

        Parameters
        ----------
        y : float or array-like of shape (n_samples,)
            Where to evaluate ``P(Y <= y)``.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``sum_i w_i Phi((y - mu_i) / sigma_i)``.
        """
        y = self._points(y, "y")
        return self._weights @ ndtr((y - self._means) / self._stds)

    def _ppf(self, q):
        """Quantiles for ``q`` of shape (n_samples,), already validated."""
        k = self._active
        mu, sd, w = self._means[k], self._stds[k], self._weights[k]
        comp_q = mu + sd * ndtri(q)
        if k.size == 1:
            return comp_q[0]
        # The mixture quantile lies between the smallest and largest component quantile.
        lo, hi = comp_q.min(axis=0), comp_q.max(axis=0)
        x = np.clip(w @ comp_q, lo, hi)
        out = x.copy()
        # Solve g(x) = 0 with g increasing: F(x) - q in the lower half, (1 - q) - S(x) in
        # the upper half, so both tails keep full relative precision.
        upper = q > 0.5
        target = np.where(upper, 1.0 - q, q)
        # The tolerance follows x (not the first guess, which a very wide component can
        # throw far out): a few ulps of the answer, or of the narrowest component's std.
        floor = sd.min(axis=0)
        idx = np.flatnonzero(hi > lo)
        # Per-point state; point j lives in column j (last axis) of every array.
        mu, sd, x, lo, hi, upper, target, floor = (
            a[..., idx] for a in (mu, sd, x, lo, hi, upper, target, floor)
        )
        step = hi - lo
        step_old = step.copy()
        for _ in range(_PPF_MAX_ITER):
            if idx.size == 0:
                break
            z = (x - mu) / sd
            mass = w @ ndtr(np.where(upper, -z, z))
            g = np.where(upper, target - mass, mass - target)
            dens = w @ (np.exp(-0.5 * z**2) / sd) / np.sqrt(2.0 * np.pi)
            lo = np.where(g < 0, x, lo)
            hi = np.where(g > 0, x, hi)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                newton = x - g / dens
            # Safeguarded Newton (rtsafe): bisect when Newton leaves the bracket, the
            # density vanishes, or the step does not shrink fast enough.
            bisect = (
                ~np.isfinite(newton)
                | (newton <= lo)
                | (newton >= hi)
                | (np.abs(2.0 * g) > np.abs(step_old * dens))
            )
            x_new = np.where(bisect, 0.5 * (lo + hi), newton)
            step_old, step = step, x_new - x
            x = x_new
            tol = _PPF_RTOL * (np.abs(x) + floor)
            done = (np.abs(step) <= tol) | (g == 0) | (hi - lo <= tol)
            if np.any(done):
                out[idx[done]] = x[done]
                keep = ~done
                mu, sd, x, lo, hi, upper, target, floor, step, step_old, idx = (
                    a[..., keep]
                    for a in (mu, sd, x, lo, hi, upper, target, floor, step, step_old, idx)
                )
        out[idx] = x
        return out

    def _check_q(self, q, name):
        q = self._points(q, name)
        if not np.all((q > 0) & (q < 1)):
            raise ValueError(
                f"{name} must lie in the open interval (0, 1); got {_describe(q)}. Pass "
                f"probabilities strictly between 0 and 1."
            )
        return q

    def ppf(self, q):
        """Quantile function (inverse CDF) of the mixture, point by point.

        Parameters
        ----------
        q : float or array-like of shape (n_samples,)
            Probabilities in the open interval (0, 1).

        Returns
        -------
        ndarray of shape (n_samples,)
            ``x`` with ``cdf(x) == q``. Exact for one component; otherwise found by
            safeguarded Newton iteration to near machine precision.
        """
        return self._ppf(self._check_q(q, "q"))

    def interval(self, level=0.9):
        """Central prediction interval.

        Parameters
        ----------
        level : float, default=0.9
            Probability mass inside the interval, in (0, 1).

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,)
            The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.
        """
        level = _check_level(level)
        return self._ppf(np.full(self.n_samples, 0.5 - level / 2)), self._ppf(
            np.full(self.n_samples, 0.5 + level / 2)
        )

    def moment_matched(self):
        """Single Gaussian with the same mean and total variance.

        Returns
        -------
        NormalMixture
            One-component mixture ``N(mean, var)``.
        """
        return type(self)(self.mean, self.std)

    def affine(self, shift=0.0, scale=1.0):
        """Distribution of ``shift + scale * Y``.

        Use it to map predictions made in standardised target units back to original units.

        Parameters
        ----------
        shift : float or array-like of shape (n_samples,), default=0.0
            Finite offset.
        scale : float or array-like of shape (n_samples,), default=1.0
            Finite, strictly positive factor.

        Returns
        -------
        NormalMixture
            Mixture with means ``shift + scale * means`` and stds ``scale * stds``.
        """
        shift = self._points(shift, "shift")
        scale = self._points(scale, "scale")
        _check_finite(shift, "shift")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(
                f"scale must be finite and > 0; got {_describe(scale)}. Pass the positive "
                f"standard deviation used to standardise the target."
            )
        return type(self)(shift + scale * self._means, scale * self._stds, self._weights)

    def sample(self, n_draws, random_state=None):
        """Draw from each point's mixture.

        Parameters
        ----------
        n_draws : int
            Number of draws per point, >= 1.
        random_state : int, RandomState instance or None, default=None
            Seed or generator, as in scikit-learn.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Independent draws; column ``j`` follows the mixture of point ``j``.
        """
        if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise ValueError(
                f"n_draws must be an int >= 1; got {n_draws!r}. Pass a positive integer."
            )
        rng = check_random_state(random_state)
        shape = (int(n_draws), self.n_samples)
        comp = rng.choice(self.n_components, size=shape, p=self._weights)
        cols = np.arange(self.n_samples)
        noise = rng.standard_normal(shape)
        return self._means[comp, cols] + self._stds[comp, cols] * noise


def _check_level(level, name="level"):
    """Validate a central-interval probability in (0, 1) and return it as a float."""
    value = float(level) if isinstance(level, numbers.Real) else np.nan
    if not 0 < value < 1:
        raise ValueError(
            f"{name} must be a float in the open interval (0, 1); got {level!r}. Pass e.g. "
            f"0.9 for a 90% central interval."
        )
    return value
