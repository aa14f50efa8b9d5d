"""What every autodeuq regressor shares: the uncertainty API, seeds and input checks."""

import numbers

import numpy as np
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted as _sk_check_is_fitted

from ..exceptions import NotFittedError

__all__ = [
    "UncertaintyRegressorMixin",
    "check_fitted",
    "check_target",
    "holdout_split",
    "seed_sequence",
    "target_scaling",
]


def seed_sequence(random_state):
    """Turn a ``random_state`` parameter into a :class:`numpy.random.SeedSequence`.

    None gives fresh entropy; an int or a SeedSequence is used as is; a
    :class:`numpy.random.RandomState` or :class:`numpy.random.Generator` is drawn from once (as
    scikit-learn estimators do), so it advances.
    """
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.SeedSequence(random_state)
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(np.iinfo(np.int32).max)))
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator; got "
                     f"{random_state!r}. Pass an int for reproducible results.")


def holdout_split(n, n_valid, sequence):
    """Sorted indices ``(train, valid)`` of ``n`` rows, ``n_valid`` held out, drawn from a seed."""
    order = np.random.default_rng(sequence).permutation(n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def target_scaling(y_train):
    """``(mean, scale)`` standardizing the target; scale 1 for a constant target."""
    mean = float(np.mean(y_train))
    scale = float(np.std(y_train))
    if not np.isfinite(scale) or scale <= 1e-12 * max(1.0, abs(mean)):
        scale = 1.0
    return mean, scale


def check_fitted(estimator, attribute):
    """Raise autodeuq's NotFittedError (a scikit-learn NotFittedError) if not fitted."""
    try:
        _sk_check_is_fitted(estimator, attribute)
    except SklearnNotFittedError:
        raise NotFittedError(
            f"This {type(estimator).__name__} is not fitted yet. Call fit(X, y) before "
            "predicting."
        ) from None


def check_target(y):
    """Refuse a target with several columns before scikit-learn turns it into a warning.

    A column vector of shape (n, 1) is accepted (scikit-learn ravels it with a
    DataConversionWarning).
    """
    shape = getattr(y, "shape", None)
    if shape is None:
        shape = np.asarray(y).shape
    if (len(shape) == 2 and shape[1] != 1) or len(shape) > 2:
        raise ValueError(
            f"y must be one target, of shape (n_samples,); got shape {shape}. Fit one "
            "estimator per target, e.g. with sklearn.multioutput.MultiOutputRegressor."
        )


class UncertaintyRegressorMixin:
    """``predict``, ``predict_uncertainty`` and ``predict_interval`` from ``predict_distribution``.

    A subclass implements ``predict_distribution(X)``, returning a
    :class:`~autodeuq.uncertainty.NormalMixture` in the units of y.
    """

    def save(self, path):
        """Save the fitted estimator to ``path``, in a format that loads without running code.

        The file is a zip archive of ``model.json`` (format version, parameters, fitted
        attributes, network configurations) and ``.npy`` arrays (the weights); no pickle.
        :func:`autodeuq.load` reads it back, and the loaded estimator predicts exactly what
        this one does, on any machine and without a cluster. Parameters that JSON cannot hold
        (a dask ``Client``, a custom ``Selector`` or search object, a ``RandomState``) are
        saved as null, with a note in the file, and load as their defaults.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write (replaced whole if it exists); ``.autodeuq`` is the usual suffix.

        Raises
        ------
        autodeuq.exceptions.NotFittedError
            If the estimator is not fitted.

        Examples
        --------
        >>> est.save("model.autodeuq")  # doctest: +SKIP
        >>> autodeuq.load("model.autodeuq").predict(X_test)  # doctest: +SKIP
        """
        from ..persistence import save  # the persistence module sits above the estimators

        save(self, path)

    def predict(self, X, return_std=False):
        """Predict the mean, and optionally the total standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the total predictive standard deviation (aleatoric and epistemic), as
            :meth:`sklearn.gaussian_process.GaussianProcessRegressor.predict` does, so that
            ``Pipeline.predict(X, return_std=True)`` works.

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        std : ndarray of shape (n_samples,)
            Only when ``return_std`` is True.
        """
        dist = self.predict_distribution(X)
        if return_std:
            return dist.mean, dist.std
        return dist.mean

    def predict_uncertainty(self, X):
        """Predict the mean and the total, aleatoric and epistemic standard deviations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        PredictiveUncertainty
            Named tuple ``(mean, total_std, aleatoric_std, epistemic_std)`` of arrays in the
            units of y, with ``total_std**2 == aleatoric_std**2 + epistemic_std**2``.
        """
        return self.predict_distribution(X).uncertainty()

    def predict_interval(self, X, coverage=0.9):
        """Predict the central interval holding ``coverage`` of the predictive mass.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        coverage : float, default=0.9
            Probability mass inside the interval, in (0, 1).

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,)
        """
        if not isinstance(coverage, numbers.Real) or not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be a float in (0, 1); got {coverage!r}. Use e.g. "
                             "0.9 for a 90% interval.")
        return self.predict_distribution(X).interval(coverage)
