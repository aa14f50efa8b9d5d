"""The predictive mean and its aleatoric and epistemic bands, against one feature."""

import numbers

import numpy as np

from .._checks import check_int
from ._base import (
    as_1d,
    axes_list,
    check_bool,
    check_choice,
    check_kwargs,
    check_matplotlib,
    check_probability,
    check_uncertainty_estimator,
    estimator_name,
    new_axes,
    predict_uncertainty,
)

__all__ = ["PredictiveBandsDisplay"]

#: Horizontal positions that are not a feature: the rows in their order, or sorted by mean.
ORDERS = ("index", "sorted")
#: A gap between observed feature values wider than this fraction of their range is shaded.
GAP_FRACTION = 0.05


def _feature_names(X, estimator=None):
    columns = getattr(X, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _resolve_feature(feature, n_features, names):
    """A column index, or one of :data:`ORDERS`."""
    if feature is None:
        return 0 if n_features == 1 else "sorted"
    if isinstance(feature, str):
        if names is not None and feature in names:
            return names.index(feature)
        if feature in ORDERS:
            return feature
        known = f"the columns {names}" if names is not None else "no column names"
        raise ValueError(f"feature={feature!r} is not a column of X (X has {known}). Pass a "
                         f"column name, an index in [0, {n_features}), 'sorted' (rows sorted "
                         "by predicted mean) or 'index' (rows in order).")
    if (isinstance(feature, numbers.Integral) and not isinstance(feature, bool)
            and 0 <= feature < n_features):
        return int(feature)
    raise ValueError(f"feature must be a column name, an int in [0, {n_features}), 'sorted' "
                     f"or 'index'; got {feature!r}.")


def _as_2d(name, X):
    """The values of ``X`` as float64 of shape (n_samples, n_features); 1-D is one feature."""
    try:
        values = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric array-like of shape (n_samples, n_features); "
                         f"got {type(X).__name__}. Encode text columns as numbers first.") from exc
    if values.ndim == 1:
        values = values[:, np.newaxis]
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n_samples, n_features) with at least one "
                         f"row; got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite; got NaN or infinite values. Remove or impute "
                         "them first.")
    return values


def _ranks(values):
    """Position of each value in the stable ascending order of ``values``."""
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


class PredictiveBandsDisplay:
    """Predictive mean with its aleatoric and epistemic bands, against one feature.

    The band drawn around the mean holds ``coverage`` of the predictive mass: its inner part
    (blue) is the aleatoric part alone (the noise the model sees in the data), and the outer
    parts (orange) show how far the epistemic part (the members' disagreement, large where
    data were lacking) widens it to the total. A panel below draws the three standard
    deviations. Build one with :meth:`from_estimator` or :meth:`from_predictions`; the
    constructor only stores the arrays.

    Parameters
    ----------
    x : array-like of shape (n_points,)
        Horizontal position of each prediction.
    mean, total_std, aleatoric_std, epistemic_std : array-like of shape (n_points,)
        Predictive mean and standard deviations, in the units of y.
    x_label : str, default="x"
        Label of the horizontal axis.
    positions : {"feature", "sorted", "index"}, default="feature"
        What ``x`` is: a feature's values, the rank of the predicted mean, or the row number.
    connected : bool, default=True
        Whether neighbouring positions are neighbouring inputs, so that a band can be filled
        between them: True for a one-feature model or the ``"sorted"`` and ``"index"``
        orders, False for one feature of a model of several (the others vary between rows).
    x_data, y_data : array-like of shape (n_data,), default=None
        Observed points drawn over the bands (``y_data`` None draws none); ``x_data`` also
        tells where data were seen, to shade the rest.
    x_train, y_train : array-like of shape (n_train,), default=None
        Training points drawn over the bands.
    target_name : str, default=None
        Name of the target, for the vertical axis.
    estimator_name : str, default=None
        Name of the model.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the bands.
    ax_std_ : matplotlib Axes or None
        Axes with the standard deviations, None without that panel.
    figure_ : matplotlib Figure
        Figure holding the axes.
    mean_line_ : matplotlib Artist
        The predicted mean (a line, or points for ``style="errorbar"``).
    aleatoric_band_ : matplotlib Artist
        The band of the aleatoric part alone.
    epistemic_bands_ : tuple of matplotlib Artist
        What the epistemic part adds below and above it (one artist for ``"errorbar"``).
    data_points_, train_points_ : matplotlib Artist or None
        The observed and training points, None where not drawn.
    std_lines_ : dict of str to matplotlib Artist
        ``"aleatoric"``, ``"epistemic"`` and ``"total"`` on ``ax_std_`` (empty without it).
    gap_spans_ : list of matplotlib Artist
        The shaded regions without data.

    See Also
    --------
    CalibrationDisplay : Whether the bands hold the probability they claim.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from autodeuq import GaussianMLPRegressor
    >>> from autodeuq.datasets import make_tutorial_regression
    >>> from autodeuq.plotting import PredictiveBandsDisplay
    >>> X, y, X_test, y_test = make_tutorial_regression(random_state=0)
    >>> est = GaussianMLPRegressor(max_epochs=20, random_state=0).fit(X, y)
    >>> display = PredictiveBandsDisplay.from_estimator(est, X_test, X_train=X, y_train=y)
    >>> plt.show()  # doctest: +SKIP
    """

    def __init__(self, *, x, mean, total_std, aleatoric_std, epistemic_std, x_label="x",
                 positions="feature", connected=True, x_data=None, y_data=None, x_train=None,
                 y_train=None, target_name=None, estimator_name=None):
        self.x = as_1d("x", x)
        n = len(self.x)
        self.mean = as_1d("mean", mean, n)
        self.total_std = as_1d("total_std", total_std, n, nonnegative=True)
        self.aleatoric_std = as_1d("aleatoric_std", aleatoric_std, n, nonnegative=True)
        self.epistemic_std = as_1d("epistemic_std", epistemic_std, n, nonnegative=True)
        self.x_label = str(x_label)
        self.positions = check_choice("positions", positions, ("feature", *ORDERS))
        self.connected = check_bool("connected", connected)
        self.x_data = as_1d("x_data", x_data, allow_none=True)
        self.y_data = as_1d("y_data", y_data, None if self.x_data is None else len(self.x_data),
                            allow_none=True)
        if self.y_data is not None and self.x_data is None:
            raise ValueError("y_data needs x_data, the positions of its points; got None.")
        self.x_train = as_1d("x_train", x_train, allow_none=True)
        self.y_train = as_1d("y_train", y_train,
                             None if self.x_train is None else len(self.x_train),
                             allow_none=True)
        if (self.x_train is None) != (self.y_train is None):
            raise ValueError("x_train and y_train go together; pass both or neither.")
        self.target_name = target_name
        self.estimator_name = estimator_name

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def from_estimator(cls, estimator, X, y=None, *, feature=None, grid="auto",
                       grid_resolution=400, margin=0.25, X_train=None, y_train=None,
                       target_name=None, name=None, ax=None, **kwargs):
        """Predict with a fitted estimator and draw its bands.

        Parameters
        ----------
        estimator : estimator with ``predict_uncertainty``
            A fitted autodeuq estimator, or a fitted Pipeline ending in one.
        X : array-like or DataFrame of shape (n_samples, n_features)
            Rows to predict (with ``grid``, the rows whose range the grid spans).
        y : array-like of shape (n_samples,), default=None
            Observed targets of ``X``, drawn as points.
        feature : int, str or None, default=None
            The horizontal axis: a column index or name of ``X``, ``"sorted"`` (the rows
            sorted by predicted mean) or ``"index"`` (the rows in order). None: the only
            feature of a one-feature model, else ``"sorted"``.
        grid : "auto" or bool, default="auto"
            Predict on an even grid over the feature's range instead of at the rows, to see
            the model between and beyond them; only for a one-feature model (``"auto"``:
            exactly then).
        grid_resolution : int, default=400
            Points of the grid.
        margin : float, default=0.25
            How far the grid reaches beyond the range of ``X`` on each side, as a fraction of
            that range (where the epistemic part shows).
        X_train, y_train : array-like, default=None
            Training data to draw as points: ``X_train`` with the columns of ``X`` (or the
            feature's values alone).
        target_name : str, default=None
            Name of the target for the vertical axis.
        name : str, default=None
            Name of the model; its class name by default.
        ax : matplotlib Axes or pair of Axes, default=None
            Where to draw, see :meth:`plot`.
        **kwargs
            Passed to :meth:`plot` (``coverage``, ``std_panel``, ...).

        Returns
        -------
        PredictiveBandsDisplay
        """
        check_matplotlib(f"{cls.__name__}.from_estimator")
        check_uncertainty_estimator(estimator)
        values = _as_2d("X", X)
        n, n_features = values.shape
        names = _feature_names(X, estimator)
        column = _resolve_feature(feature, n_features, names)
        if not (isinstance(grid, bool) or (isinstance(grid, str) and grid == "auto")):
            raise ValueError(f"grid must be 'auto', True or False; got {grid!r}.")
        if grid == "auto":  # a grid where the model is drawn against its one feature
            grid = n_features == 1 and column not in ORDERS
        if grid and (n_features != 1 or column in ORDERS):
            raise ValueError(f"grid=True needs a model of one feature drawn against it; got "
                             f"{n_features} features and feature={feature!r}. Pass grid=False "
                             "to predict at the rows of X.")
        grid_resolution = check_int("grid_resolution", grid_resolution,
                                    "Use e.g. 400 points.", low=2)
        if (isinstance(margin, bool) or not isinstance(margin, numbers.Real)
                or not 0.0 <= margin < np.inf):
            raise ValueError(f"margin must be a number >= 0 (a fraction of the data's range); "
                             f"got {margin!r}. Use e.g. 0.25.")
        y = as_1d("y", y, n, allow_none=True)
        x_train, y_train = cls._training_points(X_train, y_train, n_features, column)

        x_data = None if column in ORDERS else values[:, column]
        if grid:
            lo, hi = float(x_data.min()), float(x_data.max())
            pad = margin * ((hi - lo) or 1.0)
            x = np.linspace(lo - pad, hi + pad, grid_resolution)
            inputs = x[:, np.newaxis]
            if getattr(X, "columns", None) is not None:
                import pandas as pd

                inputs = pd.DataFrame({X.columns[0]: x})
        else:
            inputs = X
        unc = predict_uncertainty(estimator, inputs)
        if not grid:
            x, positions, x_label = cls._positions(column, values, unc.mean, names)
            x_data = x
        else:
            positions, x_label = "feature", names[0] if names else "x0"
        return cls(
            x=x, mean=unc.mean, total_std=unc.total_std, aleatoric_std=unc.aleatoric_std,
            epistemic_std=unc.epistemic_std, x_label=x_label, positions=positions,
            connected=n_features == 1 or positions in ORDERS, x_data=x_data, y_data=y,
            x_train=x_train, y_train=y_train, target_name=target_name,
            estimator_name=name or estimator_name(estimator),
        ).plot(ax=ax, **kwargs)

    @classmethod
    def from_predictions(cls, X, mean, total_std, aleatoric_std, epistemic_std, *, y=None,
                         feature=None, X_train=None, y_train=None, target_name=None, name=None,
                         ax=None, **kwargs):
        """Draw the bands of predictions already made.

        ``PredictiveBandsDisplay.from_predictions(x, *est.predict_uncertainty(X))`` unpacks
        a :class:`~autodeuq.uncertainty.PredictiveUncertainty` into the four arrays.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_samples, n_features)
            The feature values the predictions were made at (1-D: the feature drawn), or the
            rows (then ``feature`` picks the horizontal axis).
        mean, total_std, aleatoric_std, epistemic_std : array-like of shape (n_samples,)
            Predictive mean and standard deviations.
        y : array-like of shape (n_samples,), default=None
            Observed targets, drawn as points.
        feature : int, str or None, default=None
            As in :meth:`from_estimator`.
        X_train, y_train : array-like, default=None
            Training data to draw as points.
        target_name, name : str, default=None
            Names of the target and of the model.
        ax : matplotlib Axes or pair of Axes, default=None
            Where to draw, see :meth:`plot`.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        PredictiveBandsDisplay
        """
        check_matplotlib(f"{cls.__name__}.from_predictions")
        values = _as_2d("X", X)
        n, n_features = values.shape
        names = _feature_names(X)
        column = _resolve_feature(feature, n_features, names)
        mean = as_1d("mean", mean, n)
        y = as_1d("y", y, n, allow_none=True)
        x_train, y_train = cls._training_points(X_train, y_train, n_features, column)
        x, positions, x_label = cls._positions(column, values, mean, names)
        return cls(
            x=x, mean=mean, total_std=total_std, aleatoric_std=aleatoric_std,
            epistemic_std=epistemic_std, x_label=x_label, positions=positions,
            connected=n_features == 1 or positions in ORDERS, x_data=x, y_data=y,
            x_train=x_train, y_train=y_train, target_name=target_name, estimator_name=name,
        ).plot(ax=ax, **kwargs)

    @staticmethod
    def _positions(column, values, mean, names):
        """(x, positions, x_label) for the rows: a feature's values, or an order."""
        if column == "sorted":
            return _ranks(mean), "sorted", "rows, sorted by predicted mean"
        if column == "index":
            return np.arange(len(values), dtype=np.float64), "index", "row"
        return values[:, column], "feature", names[column] if names else f"x{column}"

    @staticmethod
    def _training_points(X_train, y_train, n_features, column):
        if X_train is None and y_train is None:
            return None, None
        if X_train is None or y_train is None:
            raise ValueError("X_train and y_train go together; pass both or neither.")
        if column in ORDERS:
            raise ValueError(f"X_train needs a feature on the horizontal axis; got feature="
                             f"{column!r}. Pick a feature, or leave the training data out.")
        values = _as_2d("X_train", X_train)
        if values.shape[1] not in (1, n_features):
            raise ValueError(f"X_train must have the {n_features} columns of X (or the "
                             f"feature's values alone); got {values.shape[1]} columns.")
        x_train = values[:, column if values.shape[1] == n_features else 0]
        return x_train, as_1d("y_train", y_train, len(x_train))

    # -- drawing -----------------------------------------------------------------------------

    def plot(self, ax=None, *, coverage=0.95, std_panel=None, style="auto", shade_gaps="auto",
             legend=True, mean_kwargs=None, data_kwargs=None, train_kwargs=None,
             gap_kwargs=None, aleatoric_kwargs=None, epistemic_kwargs=None):
        """Draw the bands, and the standard deviations in a panel below.

        Parameters
        ----------
        ax : matplotlib Axes or pair of Axes, default=None
            One Axes for the bands alone, or two (bands, standard deviations). None: a new
            figure with both, the panel below the bands.
        coverage : float, default=0.95
            Probability inside the bands (of a Gaussian with the predicted std: 1.96 std at
            0.95).
        std_panel : bool, default=None
            Whether to draw the standard deviations below; None: when ``ax`` is None or two.
        style : {"auto", "fill", "errorbar"}, default="auto"
            Filled bands along the horizontal axis, or an error bar at each point (for one
            feature of a model of several); ``"auto"`` picks by ``connected``.
        shade_gaps : "auto" or bool, default="auto"
            Shade where no data were seen: beyond the range of the training (else observed)
            points and gaps wider than 5% of it. ``"auto"``: for a filled band against a
            feature.
        legend : bool, default=True
            Whether to draw legends.
        mean_kwargs, data_kwargs, train_kwargs, gap_kwargs : dict, default=None
            Keyword arguments for the mean's line, the observed points, the training points
            and the shaded gaps (e.g. ``{"label": "no rows of data.csv"}``).
        aleatoric_kwargs, epistemic_kwargs : dict, default=None
            Keyword arguments for the aleatoric band and for what the epistemic part adds to
            it, passed to ``fill_between`` (``errorbar`` for ``style="errorbar"``), e.g.
            ``{"color": "tab:green", "label": None}`` to tell several models apart on one
            Axes. The epistemic band has a legend entry only where the model has an epistemic
            part (a single network has none).

        Returns
        -------
        PredictiveBandsDisplay
            ``self``, with the artists set.
        """
        check_matplotlib(f"{type(self).__name__}.plot")
        coverage = check_probability("coverage", coverage)
        axes = axes_list(ax, "ax", (1, 2))
        if std_panel is None:
            std_panel = axes is None or len(axes) == 2
        std_panel = check_bool("std_panel", std_panel)
        if axes is not None and std_panel and len(axes) != 2:
            raise ValueError("std_panel=True needs two Axes (bands, standard deviations); got "
                             "one. Pass ax=(ax_bands, ax_std), or std_panel=False.")
        style = check_choice("style", style, ("auto", "fill", "errorbar"))
        if style == "auto":  # a band needs two positions to be seen
            style = "fill" if self.connected and np.size(self.x) > 1 else "errorbar"
        if isinstance(shade_gaps, np.bool_):
            shade_gaps = bool(shade_gaps)
        if not (isinstance(shade_gaps, bool) or shade_gaps == "auto"):
            raise ValueError(f"shade_gaps must be 'auto', True or False; got {shade_gaps!r}.")
        seen = self.x_train if self.x_train is not None else self.x_data
        if shade_gaps == "auto":
            shade_gaps = style == "fill" and self.positions == "feature" and seen is not None
        mean_kwargs = check_kwargs("mean_kwargs", mean_kwargs)
        data_kwargs = check_kwargs("data_kwargs", data_kwargs)
        train_kwargs = check_kwargs("train_kwargs", train_kwargs)
        gap_kwargs = check_kwargs("gap_kwargs", gap_kwargs)
        aleatoric_kwargs = check_kwargs("aleatoric_kwargs", aleatoric_kwargs)
        epistemic_kwargs = check_kwargs("epistemic_kwargs", epistemic_kwargs)
        if axes is None:
            axes = new_axes(f"{type(self).__name__}.plot", 2 if std_panel else 1, 1,
                            sharex=True, figsize=(9, 6.5 if std_panel else 4.5),
                            **({"height_ratios": [2, 1]} if std_panel else {}))
        ax, ax_std = axes[0], axes[1] if std_panel else None

        from scipy.stats import norm

        z = float(norm.ppf(0.5 + coverage / 2))
        level = f"{100 * coverage:.4g}%"
        order = np.argsort(self.x, kind="stable")
        x, mean = self.x[order], self.mean[order]
        alea, total, epi = (self.aleatoric_std[order], self.total_std[order],
                            self.epistemic_std[order])
        self.gap_spans_ = []
        self.std_lines_ = {}
        has_epistemic = bool(np.any(epi > 0))
        if style == "fill":
            alea_lo, alea_hi = mean - z * alea, mean + z * alea
            self.aleatoric_band_ = ax.fill_between(
                x, alea_lo, alea_hi, **{"color": "tab:blue", "alpha": 0.35, "linewidth": 0,
                                        "label": f"{level} band, aleatoric only (noise)",
                                        **aleatoric_kwargs})
            epistemic_kwargs = {"color": "tab:orange", "alpha": 0.35, "linewidth": 0,
                                "label": "widened by epistemic (lack of data)"
                                if has_epistemic else None, **epistemic_kwargs}
            self.epistemic_bands_ = (
                ax.fill_between(x, mean - z * total, alea_lo, **epistemic_kwargs),
                ax.fill_between(x, alea_hi, mean + z * total,
                                **{**epistemic_kwargs, "label": None}),
            )
            self.mean_line_ = ax.plot(x, mean, **{"color": "tab:red", "lw": 1.5,
                                                  "label": "predicted mean", **mean_kwargs})[0]
            if ax_std is not None:
                self.std_lines_ = {
                    "aleatoric": ax_std.plot(x, alea, color="tab:blue",
                                             label="aleatoric std")[0],
                    "epistemic": ax_std.plot(x, epi, color="tab:orange",
                                             label="epistemic std")[0],
                    "total": ax_std.plot(x, total, color="k", lw=0.8, ls="--",
                                         label="total std")[0],
                }
        else:
            self.epistemic_bands_ = (ax.errorbar(
                x, mean, yerr=z * total, **{"fmt": "none", "ecolor": "tab:orange", "alpha": 0.5,
                                            "lw": 1, "label": f"{level} band, total"
                                            if has_epistemic else None, **epistemic_kwargs}),)
            self.aleatoric_band_ = ax.errorbar(
                x, mean, yerr=z * alea, **{"fmt": "none", "ecolor": "tab:blue", "alpha": 0.6,
                                           "lw": 2, "label": f"{level} band, aleatoric only",
                                           **aleatoric_kwargs})
            self.mean_line_ = ax.scatter(x, mean, **{"s": 6, "color": "tab:red", "zorder": 3,
                                                     "label": "predicted mean", **mean_kwargs})
            if ax_std is not None:
                self.std_lines_ = {
                    "aleatoric": ax_std.scatter(x, alea, s=5, color="tab:blue",
                                                label="aleatoric std"),
                    "epistemic": ax_std.scatter(x, epi, s=5, color="tab:orange",
                                                label="epistemic std"),
                }
        if shade_gaps and seen is not None:
            for a in (ax, ax_std) if ax_std is not None else (ax,):
                for k, (start, end) in enumerate(self._gaps(x, seen)):
                    label = gap_kwargs.get("label", "no data") if a is ax and k == 0 else None
                    self.gap_spans_.append(a.axvspan(
                        start, end, **{"color": "0.93", "zorder": 0, **gap_kwargs,
                                       "label": label}))
        self.train_points_ = self.data_points_ = None
        if self.x_train is not None:
            self.train_points_ = ax.scatter(
                self.x_train, self.y_train, **{"s": 4, "color": "k", "alpha": 0.4, "zorder": 2,
                                               "label": "training data", **train_kwargs})
        if self.y_data is not None:
            label = f"data ({self.target_name})" if self.target_name else "data"
            self.data_points_ = ax.scatter(
                self.x_data, self.y_data, **{"s": 5, "color": "k", "alpha": 0.45, "zorder": 2,
                                             "label": label, **data_kwargs})
        ax.set_ylabel(self.target_name or "prediction")
        (ax_std if ax_std is not None else ax).set_xlabel(self.x_label)
        if ax_std is not None:
            ax_std.set_ylabel("std" + (f" of {self.target_name}" if self.target_name else ""))
        if legend:
            ax.legend(fontsize=8, loc="best", markerscale=2)
            if ax_std is not None:
                ax_std.legend(fontsize=8, loc="best", markerscale=2)
        self.ax_, self.ax_std_, self.figure_ = ax, ax_std, ax.figure
        return self

    @staticmethod
    def _gaps(x, seen):
        """(start, end) of each stretch of ``x`` with no value of ``seen``: beyond its range,
        and gaps between its values wider than :data:`GAP_FRACTION` of that range."""
        values = np.unique(seen)
        lo, hi = float(values[0]), float(values[-1])
        wide = np.nonzero(np.diff(values) > GAP_FRACTION * (hi - lo))[0]
        spans = [(float(x[0]), lo), *((values[i], values[i + 1]) for i in wide),
                 (hi, float(x[-1]))]
        return [(float(a), float(b)) for a, b in spans if b > a]
