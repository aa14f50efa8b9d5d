"""Observed against expected coverage of central prediction intervals."""

import numpy as np

from .._checks import check_int
from ..uncertainty import NormalMixture, calibration_curve, calibration_error
from ._base import (
    as_1d,
    axes_list,
    call_final,
    check_bool,
    check_kwargs,
    check_matplotlib,
    estimator_name,
    has_method,
    new_axes,
)

__all__ = ["CalibrationDisplay"]

_DIAGONAL = "autodeuq-calibration-diagonal"


def _predictive_distribution(estimator, X):
    """The estimator's predictive distribution on ``X``: its exact mixture where it has
    ``predict_distribution``, else a Gaussian of its ``predict_uncertainty`` or of
    ``predict(X, return_std=True)``."""
    if has_method(estimator, "predict_distribution"):
        return call_final(estimator, "predict_distribution", X)
    if has_method(estimator, "predict_uncertainty"):
        unc = call_final(estimator, "predict_uncertainty", X)
        return NormalMixture(unc.mean, unc.total_std)
    mean, std = estimator.predict(X, return_std=True)
    return NormalMixture(np.ravel(mean), np.ravel(std))


def _check_estimator(estimator):
    if has_method(estimator, "predict_distribution") or has_method(
            estimator, "predict_uncertainty"):
        return
    import inspect

    final = estimator  # a Pipeline hands return_std to its last step's predict
    while hasattr(final, "steps") and final.steps:
        final = final.steps[-1][1]
    predict = getattr(final, "predict", None)
    try:
        accepts = predict is not None and "return_std" in inspect.signature(predict).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts:
        raise TypeError(f"estimator must predict a distribution: predict_distribution, "
                        f"predict_uncertainty or predict(X, return_std=True); got "
                        f"{estimator_name(estimator)}. Use an autodeuq estimator, or pass the "
                        "predicted mean and std to CalibrationDisplay.from_predictions.")


class CalibrationDisplay:
    """Calibration curve of a probabilistic regressor.

    For each nominal level ``p``, the fraction of targets inside the central interval that
    holds ``p`` of the predictive mass. A calibrated model follows the diagonal; below it the
    intervals are too narrow (over-confident), above it too wide. Build one with
    :meth:`from_estimator` or :meth:`from_predictions`.

    Parameters
    ----------
    expected : array-like of shape (n_levels,)
        Nominal levels, increasing in [0, 1].
    observed : array-like of shape (n_levels,)
        Observed coverage at each level.
    calibration_error : float, default=None
        Mean absolute gap between the two (see
        :func:`autodeuq.uncertainty.calibration_error`), shown in the legend.
    estimator_name : str, default=None
        Name of the model, for the legend.

    Attributes
    ----------
    line_ : matplotlib Artist
        The calibration curve.
    diagonal_ : matplotlib Artist
        The diagonal of perfect calibration.
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    autodeuq.uncertainty.calibration_curve : The numbers drawn here (without the end points).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from autodeuq import GaussianMLPRegressor
    >>> from autodeuq.datasets import make_tutorial_regression
    >>> from autodeuq.plotting import CalibrationDisplay
    >>> X, y, X_test, y_test = make_tutorial_regression(random_state=0)
    >>> est = GaussianMLPRegressor(max_epochs=20, random_state=0).fit(X, y)
    >>> display = CalibrationDisplay.from_estimator(est, X, y)
    >>> plt.show()  # doctest: +SKIP
    """

    def __init__(self, *, expected, observed, calibration_error=None, estimator_name=None):
        self.expected = as_1d("expected", expected)
        self.observed = as_1d("observed", observed, len(self.expected))
        for name, a in (("expected", self.expected), ("observed", self.observed)):
            if a.min() < 0 or a.max() > 1:
                raise ValueError(f"{name} must lie in [0, 1] (probabilities); got values in "
                                 f"[{a.min():g}, {a.max():g}].")
        self.calibration_error = calibration_error
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, X, y, *, n_levels=19, levels=None, name=None, ax=None,
                       **kwargs):
        """Predict with a fitted estimator and draw its calibration curve.

        Parameters
        ----------
        estimator : fitted estimator
            An autodeuq estimator (its exact predictive mixture is used), a Pipeline ending in
            one, or any regressor whose ``predict`` takes ``return_std=True`` (a Gaussian of
            that mean and std is used).
        X : array-like of shape (n_samples, n_features)
            Rows to predict, preferably held out from fitting.
        y : array-like of shape (n_samples,)
            Their observed targets.
        n_levels : int, default=19
            Levels evenly spaced in [0.05, 0.95]; the curve also goes through (0, 0) and
            (1, 1), which every model reaches.
        levels : array-like of shape (n_levels,), default=None
            Levels in (0, 1) to use instead.
        name : str, default=None
            Name of the model in the legend; its class name by default.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        CalibrationDisplay
        """
        check_matplotlib(f"{cls.__name__}.from_estimator")
        _check_estimator(estimator)
        y = as_1d("y", y)
        if levels is None:
            check_int("n_levels", n_levels, "Use e.g. 19 levels.")
        distribution = _predictive_distribution(estimator, X)
        return cls._from_distribution(y, distribution, n_levels, levels,
                                      name or estimator_name(estimator), ax, kwargs)

    @classmethod
    def from_predictions(cls, y_true, y_pred, y_std=None, *, n_levels=19, levels=None,
                         name=None, ax=None, **kwargs):
        """Draw the calibration curve of predictions already made.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Observed targets.
        y_pred : NormalMixture or array-like of shape (n_samples,)
            The predictive distribution (e.g. ``est.predict_distribution(X)``, whose exact
            mixture CDF is used), or the predicted means, with ``y_std``.
        y_std : array-like of shape (n_samples,), default=None
            Predicted standard deviations (a Gaussian each), when ``y_pred`` holds means.
        n_levels, levels : see :meth:`from_estimator`
        name : str, default=None
            Name of the model in the legend.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        CalibrationDisplay
        """
        check_matplotlib(f"{cls.__name__}.from_predictions")
        y = as_1d("y_true", y_true)
        if isinstance(y_pred, NormalMixture):
            if y_std is not None:
                raise ValueError("y_std must be None when y_pred is a NormalMixture (it "
                                 "carries its own spread); got an array. Drop y_std.")
            distribution = y_pred
        else:
            if y_std is None:
                raise ValueError("y_std is required when y_pred holds means; got None. Pass "
                                 "the predicted standard deviations, or a NormalMixture as "
                                 "y_pred.")
            mean = as_1d("y_pred", y_pred, len(y))
            std = as_1d("y_std", y_std, len(y), nonnegative=True)
            if not (std > 0).all():
                raise ValueError(f"y_std must be > 0 everywhere; got min {std.min():g}. A "
                                 "zero std puts no mass in any interval.")
            distribution = NormalMixture(mean, std)
        if levels is None:
            check_int("n_levels", n_levels, "Use e.g. 19 levels.")
        return cls._from_distribution(y, distribution, n_levels, levels, name, ax, kwargs)

    @classmethod
    def _from_distribution(cls, y, distribution, n_levels, levels, name, ax, kwargs):
        expected, observed = calibration_curve(y, distribution, n_levels, levels=levels)
        error = calibration_error(y, distribution, n_levels, levels=levels)
        order = np.argsort(expected)
        # Every model's 0-interval holds no target and its 1-interval holds them all.
        expected = np.concatenate([[0.0], expected[order], [1.0]])
        observed = np.concatenate([[0.0], observed[order], [1.0]])
        return cls(expected=expected, observed=observed, calibration_error=error,
                   estimator_name=name).plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, name=None, annotate=True, line_kwargs=None):
        """Draw the curve and the diagonal.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure. Several displays can share one Axes.
        name : str, default=None
            Name in the legend; ``estimator_name`` by default.
        annotate : bool, default=True
            Write which side of the diagonal is over- and under-confident.
        line_kwargs : dict, default=None
            Keyword arguments for the curve's ``plot``.

        Returns
        -------
        CalibrationDisplay
            ``self``, with the artists set.
        """
        check_matplotlib(f"{type(self).__name__}.plot")
        axes = axes_list(ax, "ax", (1,))
        annotate = check_bool("annotate", annotate)
        line_kwargs = check_kwargs("line_kwargs", line_kwargs)
        ax = new_axes(f"{type(self).__name__}.plot", figsize=(5.5, 5.5))[0] if axes is None \
            else axes[0]
        name = name if name is not None else self.estimator_name
        label = name or "model"
        if self.calibration_error is not None:
            label += f" (calibration error {self.calibration_error:.3f})"
        # Several displays may share one Axes: the diagonal, labels and notes are drawn once.
        self.diagonal_ = next((line for line in ax.get_lines() if line.get_gid() == _DIAGONAL),
                              None)
        first = self.diagonal_ is None
        if first:
            self.diagonal_ = ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, gid=_DIAGONAL,
                                     label="perfectly calibrated")[0]
        self.line_ = ax.plot(self.expected, self.observed,
                             **{"marker": "o", "markersize": 3, "label": label,
                                **line_kwargs})[0]
        if first:
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal",
                   xlabel="expected coverage (probability of the central interval)",
                   ylabel="observed coverage (fraction of targets inside)")
            ax.grid(True, alpha=0.3)
            if annotate:
                style = {"transform": ax.transAxes, "fontsize": 8, "color": "0.4"}
                ax.text(0.04, 0.96, "under-confident\n(intervals too wide)", va="top",
                        ha="left", **style)
                ax.text(0.96, 0.04, "over-confident\n(intervals too narrow)", va="bottom",
                        ha="right", **style)
        ax.legend(fontsize=8, loc="center right")
        self.ax_, self.figure_ = ax, ax.figure
        return self
