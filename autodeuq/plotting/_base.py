"""What every display shares: the lazy matplotlib import, axes, checks and predictions.

Nothing here imports matplotlib at module level: it is imported by :func:`check_matplotlib`
when a display is built or drawn, so ``import autodeuq.plotting`` stays cheap and works
without it.
"""

import numbers

import numpy as np

INSTALL_HINT = "pip install 'autodeuq[plot]'"


def check_matplotlib(caller):
    """Import matplotlib, or raise an ImportError that names ``caller`` and the fix.

    Parameters
    ----------
    caller : str
        What needs matplotlib, e.g. ``"CalibrationDisplay.plot"``.

    Returns
    -------
    module
        The ``matplotlib`` module.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"{caller} needs matplotlib, which is not installed. Install it "
                          f"with: {INSTALL_HINT}") from exc
    return matplotlib


def new_axes(caller, nrows=1, ncols=1, **subplots_kwargs):
    """A list of ``nrows * ncols`` Axes on a new pyplot figure (constrained layout)."""
    check_matplotlib(caller)
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                           **subplots_kwargs)
    return list(axes.ravel())


def is_axes(ax):
    """Whether ``ax`` is one matplotlib Axes (without importing matplotlib if it is absent)."""
    try:
        from matplotlib.axes import Axes
    except ImportError:
        return False
    return isinstance(ax, Axes)


def axes_list(ax, name, counts):
    """``ax`` as a list of Axes: None, one Axes or a sequence of them, of a length in
    ``counts`` (a tuple); anything else is a TypeError naming ``name``."""
    if ax is None:
        return None
    if is_axes(ax):
        items = [ax]
    elif isinstance(ax, (list, tuple, np.ndarray)) and all(is_axes(a) for a in np.ravel(ax)):
        items = list(np.ravel(ax))
    else:
        raise TypeError(f"{name} must be None, a matplotlib Axes or a sequence of Axes; got "
                        f"{type(ax).__name__}. Pass e.g. plt.subplots()[1].")
    if len(items) not in counts:
        expected = " or ".join(str(c) for c in counts)
        raise ValueError(f"{name} must hold {expected} Axes here; got {len(items)}. Pass "
                         f"{expected} Axes, or None for a new figure.")
    return items


def check_probability(name, value, fix="Use e.g. 0.95 for a 95% band."):
    """A float in the open interval (0, 1)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a probability in (0, 1); got {value!r}. {fix}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")
    return value


def check_kwargs(name, value):
    """A dict of matplotlib keyword arguments, or None for an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of matplotlib keyword arguments or None; got "
                        f"{type(value).__name__}.")
    return dict(value)


def as_1d(name, value, n=None, *, nonnegative=False, allow_none=False):
    """``value`` as a finite 1-D float64 array (of length ``n`` if given)."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is required; got None. Pass one value per sample.")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be array-like of real numbers; got "
                         f"{type(value).__name__}. Pass a 1-D numpy array.") from exc
    if a.ndim == 2 and 1 in a.shape:
        a = a.ravel()
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of shape (n_samples,); got "
                         f"shape {a.shape}. Pass one value per sample, e.g. y.ravel().")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have one value per sample ({n}); got length "
                         f"{a.shape[0]}. Pass arrays computed on the same rows.")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {int(bad.sum())} NaN or infinite "
                         f"value(s). Remove those rows first.")
    if nonnegative and (a < 0).any():
        raise ValueError(f"{name} must be >= 0 everywhere (a standard deviation); got min "
                         f"{a.min():g}. Pass standard deviations, not log-variances.")
    return a


def estimator_name(estimator):
    """The class name of ``estimator``, or of the last step of a Pipeline."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return type(steps[-1][1]).__name__
    return type(estimator).__name__


def _final(estimator, method):
    """(inputs transform or None, final estimator) when ``estimator`` or the last step of a
    Pipeline has ``method``; (None, None) when neither does."""
    if hasattr(estimator, method):
        return None, estimator
    steps = getattr(estimator, "steps", None)
    if steps and hasattr(steps[-1][1], method):
        return estimator[:-1], steps[-1][1]
    return None, None


def has_method(estimator, method):
    """Whether ``estimator`` (or the last step of its Pipeline) has ``method``."""
    return _final(estimator, method)[1] is not None


def _missing(estimator, method):
    return TypeError(f"estimator must have a {method} method, or be a Pipeline whose last "
                     f"step has one; got {estimator_name(estimator)}. Use an autodeuq "
                     "estimator (GaussianMLPRegressor, DeepEnsembleRegressor, NASRegressor, "
                     "AutoDEUQRegressor) or a Pipeline ending in one.")


def call_final(estimator, method, X):
    """``method(X)`` of ``estimator``, or of the last step of a Pipeline on transformed X."""
    head, final = _final(estimator, method)
    if final is None:
        raise _missing(estimator, method)
    if head is not None:
        X = head.transform(X)
    return getattr(final, method)(X)


def predict_uncertainty(estimator, X):
    """The :class:`~autodeuq.uncertainty.PredictiveUncertainty` of ``estimator`` on ``X``."""
    return call_final(estimator, "predict_uncertainty", X)


def check_uncertainty_estimator(estimator):
    """A TypeError, before any work, unless ``estimator`` can predict its uncertainty."""
    if not has_method(estimator, "predict_uncertainty"):
        raise _missing(estimator, "predict_uncertainty")
