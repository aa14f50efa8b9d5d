"""What every autodeuq regressor shares: the uncertainty API, seeds and input checks."""

import math
import numbers

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted as _sk_check_is_fitted
from sklearn.utils.validation import validate_data as _sk_validate_data

from ..exceptions import NotFittedError
from ..uncertainty import calibrated_levels
from ..uncertainty._calibration import check_coverage

__all__ = [
    "UncertaintyRegressorMixin",
    "check_fitted",
    "check_target",
    "holdout_split",
    "seed_sequence",
    "target_scaling",
    "validate_data",
]

# The largest |value| in X or y: its square (a variance) stays finite in float64.
_LARGEST = 1e150

# How to fix the input, added to scikit-learn's messages that say only what is wrong.
_DATA_FIXES = (
    ("Input y contains", "Drop the rows whose target is missing or infinite, e.g. "
                         "keep = np.isfinite(y); fit(X[keep], y[keep])."),
    ("Input X contains infinity", "Replace the infinite values (clip them, or set them to NaN "
                                  "and impute them, e.g. with sklearn.impute.SimpleImputer)."),
    ("Found array with dim", "Pass X as a 2-D array of shape (n_samples, n_features), e.g. "
                             "X.reshape(len(X), -1)."),
    ("sample(s) (shape=", "Pass at least one row."),
    ("feature(s) (shape=", "Pass at least one feature column."),
    ("inconsistent numbers of samples", "Pass X and y with one target value per row of X."),
    ("features as input", "Pass X with the columns the model was fitted on, in that order."),
)


def seed_sequence(random_state):
    """Turn a ``random_state`` parameter into a :class:`numpy.random.SeedSequence`.

    None gives fresh entropy; an int or a SeedSequence is used as is; a
    :class:`numpy.random.RandomState` or :class:`numpy.random.Generator` is drawn from once (as
    scikit-learn estimators do), so it advances.
    """
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"random_state must be None, an int >= 0, a numpy RandomState or "
                         f"Generator; got {random_state!r}. Pass a non-negative int, e.g. 0.")
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
    """``(mean, scale)`` standardizing the target; scale 1 for a constant target.

    Constant means no spread beyond the rounding of the values themselves (relative to the
    mean, not to 1): a target in small units, such as metres at the scale of 1e-13, keeps its
    own scale.
    """
    mean = float(np.mean(y_train))
    scale = float(np.std(y_train))
    if not np.isfinite(scale) or scale == 0.0 or scale <= 1e-12 * abs(mean):
        scale = 1.0
    return mean, scale


def check_fitted(estimator, attribute):
    """Raise autodeuq's NotFittedError (a scikit-learn NotFittedError) if not fitted."""
    try:
        _sk_check_is_fitted(estimator, attribute)
    except SklearnNotFittedError:
        raise NotFittedError(
            f"This {type(estimator).__name__} is not fitted yet. Call fit(X, y) before "
            "predicting or saving."
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


def _check_numeric(name, values):
    """Refuse values that are not numbers (text, categories) in ``X`` or ``y``, and a boolean
    ``y``, with a message saying how to encode them; scikit-learn's says only that a string
    could not be converted.

    Returns ``values``, where they are objects or text that all read as numbers or as missing
    (None, ``pd.NA``, NaN), as float64 with NaN for the missing ones (a DataFrame keeps its
    columns and index): scikit-learn's own check then refuses the missing values with its
    message (it misses a None in an object array, and reads ``pd.NA`` as text).
    """
    if values is None and name == "X":
        raise ValueError("X must be an array-like of shape (n_samples, n_features); got None. "
                         "Pass the data as a numpy array or a pandas DataFrame.")
    if values is None or scipy.sparse.issparse(values):
        return values  # validate_data's own message is clear
    framed = hasattr(values, "columns") and hasattr(values, "dtypes")  # a DataFrame
    if framed:
        kinds = {getattr(dtype, "kind", "O") for dtype in values.dtypes}
    else:
        dtype = getattr(values, "dtype", None)
        if dtype is None:
            try:
                dtype = np.asarray(values).dtype
            except (TypeError, ValueError):
                return values  # ragged: validate_data says so
        kinds = {getattr(dtype, "kind", "O")}
    if kinds & set("OUSVMm"):
        try:
            numbers = _as_floats(values)
        except (TypeError, ValueError) as exc:
            fix = ("Encode text and categorical columns as numbers first, e.g. with "
                   "sklearn.preprocessing.OneHotEncoder in a Pipeline." if name == "X" else
                   "A regressor needs a real-valued target: convert it to numbers, or use a "
                   "classifier for categories.")
            # A TypeError (an object that is no number) stays one, as numpy raised it.
            raise type(exc)(f"{name} must hold numbers only; got a value that is not one "
                            f"({exc}). {fix}") from None
        if not kinds & set("Mm"):  # times are refused by scikit-learn, as they were given
            values = (pd.DataFrame(numbers, columns=values.columns, index=values.index)
                      if framed else numbers)
    if name == "y" and kinds == {"b"}:
        raise ValueError("y must be a real-valued target; got booleans (dtype bool), a "
                         "classification target. Use a classifier, or pass y.astype(float) to "
                         "model the 0/1 values as numbers.")
    return values


def _as_floats(values):
    """``values`` as a float64 array, NaN where one is missing (None, ``pd.NA``, ``pd.NaT``)."""
    objects = np.array(values, dtype=object)  # a copy: the missing ones are replaced
    missing = pd.isna(objects)
    if np.any(missing):
        objects[missing] = np.nan
    return objects.astype(np.float64)


def validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
    """:func:`sklearn.utils.validation.validate_data`, with messages that say the fix.

    The same arguments and result. Before it, text or categories in ``X`` or ``y`` and a
    boolean ``y`` are refused with a message naming the argument and the fix; scikit-learn's
    own ``ValueError`` messages that say only what is wrong (infinite values, dimensions,
    empty input, mismatched lengths) get a sentence on how to fix the input.
    """
    checked = not kwargs.get("skip_check_array", False)
    if checked:
        # Numbers written as text ("1.5") or as objects become numbers here, missing ones NaN
        # (scikit-learn hands a numpy string y on as text, which fails later in arithmetic).
        if not (isinstance(X, str) and X == "no_validation"):
            X = _check_numeric("X", X)
        if not (isinstance(y, str) and y == "no_validation"):
            y = _check_numeric("y", y)
    try:
        validated = _sk_validate_data(estimator, X, y, **kwargs)
    except ValueError as exc:
        fix = next((fix for pattern, fix in _DATA_FIXES if pattern in str(exc)), None)
        if fix is None or type(exc) is not ValueError:
            raise
        message = str(exc).rstrip()
        raise ValueError(f"{message}{'' if message.endswith('.') else '.'} {fix}") from None
    if checked and kwargs.get("reset", True):  # fitting: the data the scalings are fitted on
        arrays = validated if isinstance(validated, tuple) else (validated,)
        for name, values in zip(("X", "y"), arrays, strict=False):
            _check_magnitude(name, values)
    return validated


def _check_magnitude(name, values):
    """Refuse values whose square overflows float64 (the scalings' variances, and the
    predicted variances in the units of y squared, would be infinite, and training diverge),
    and a y so small that its variance underflows to zero."""
    if scipy.sparse.issparse(values):
        values = values.data
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.size == 0:
        return
    largest = float(np.max(np.abs(values)))
    if name == "y" and 0.0 < largest < 1.0 / _LARGEST:
        raise ValueError(f"y must have its largest |value| >= {1.0 / _LARGEST:.0e} unless it is "
                         f"all zeros (its variance must not underflow float64); got "
                         f"{largest:.3g}. Rescale y, e.g. multiply it by "
                         f"{10.0 ** -math.floor(math.log10(largest)):.0e} and divide the "
                         "predictions back.")
    if largest > _LARGEST:
        raise ValueError(f"{name} must have every |value| <= {_LARGEST:.0e} (its square must fit "
                         f"in float64); got a value of magnitude {largest:.3g}. Rescale "
                         f"{name}, e.g. divide it by {10.0 ** math.floor(math.log10(largest)):.0e}"
                         + (" and multiply the predictions back." if name == "y" else "."))


class UncertaintyRegressorMixin:
    """``predict``, ``predict_uncertainty``, ``predict_interval`` and ``calibrate_intervals``
    from ``predict_distribution``.

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
        """Predict the central interval that holds ``coverage`` of new points.

        Without interval calibration (``interval_pits_`` None), the ``(1 - coverage) / 2`` and
        ``(1 + coverage) / 2`` quantiles of the predictive distribution. After
        ``calibrate_intervals`` (which the searching estimators do on their validation
        part, see ``interval_calibration``), the quantiles at the levels whose interval held
        ``coverage`` of the held-out points (:func:`autodeuq.uncertainty.calibrated_levels`):
        the interval then holds ``coverage`` of points drawn as the held-out ones were, even
        where the distribution is too wide or too narrow. The distribution itself
        (``predict_distribution``, ``predict_uncertainty``) is the same either way.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        coverage : float, default=0.9
            The fraction of new points the interval should hold, in (0, 1).

        Returns
        -------
        lower, upper : ndarray of shape (n_samples,)
        """
        check_coverage(coverage)
        dist = self.predict_distribution(X)
        pits = getattr(self, "interval_pits_", None)  # absent on estimators pickled before
        if pits is None:
            return dist.interval(coverage)
        lower, upper = calibrated_levels(pits, coverage)
        n = dist.n_samples
        return dist.ppf(np.full(n, lower)), dist.ppf(np.full(n, upper))

    def calibrate_intervals(self, X, y):
        """Calibrate ``predict_interval`` on held-out ``(X, y)`` (quantile recalibration).

        Keeps the predictive CDF's values at the held-out targets (``interval_pits_``, sorted),
        from which ``predict_interval`` takes the levels of every coverage's interval
        (Kuleshov, Fenner and Ermon, ICML 2018). Use data the model was not trained on, a few
        hundred points or more: the interval's coverage is then as good as the held-out
        sample's, whatever the shape of the model's errors. The predictive distribution is
        not changed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            At least 2 points.

        Returns
        -------
        self
        """
        check_target(y)
        _check_numeric("y", y)
        dist = self.predict_distribution(X)  # checks that it is fitted, and X
        y = np.ravel(np.asarray(y, dtype=np.float64))
        if y.shape[0] != dist.n_samples or y.shape[0] < 2:
            raise ValueError(f"y must hold one target per row of X, at least 2; got {y.shape[0]} "
                             f"for {dist.n_samples} rows. Pass the held-out X and y together.")
        if not np.all(np.isfinite(y)):
            raise ValueError("y must be finite; got NaN or infinite values. Drop those rows, "
                             "e.g. keep = np.isfinite(y).")
        self.interval_pits_ = np.sort(dist.cdf(y))
        return self
