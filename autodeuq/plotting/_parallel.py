"""Parallel coordinates of the best configurations of a search, coloured by objective."""

import math

import numpy as np

from .._checks import check_int
from ._base import (
    as_1d,
    axes_list,
    check_bool,
    check_matplotlib,
    estimator_name,
    new_axes,
)
from ._results import read_results, results_of, space_of

__all__ = ["ParallelCoordinatesDisplay"]

#: Height at which a value is drawn on an axis where it has none (e.g. the units of a layer
#: the network does not have).
INACTIVE = -0.12


def _is_missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scale(name, column, space):
    """How a parameter maps to [0, 1]: ("categorical", labels) or ("linear"|"log", lo, hi).

    The space's dimension decides where it is known: its choices in order (those present),
    or its bounds and log scaling; otherwise a text column is categorical (sorted) and a
    numeric one linear over its range.
    """
    from ..space import Categorical

    dim = None if space is None or name not in space else space[name]
    present = [v for v in column if not _is_missing(v)]
    if dim is not None and isinstance(dim, Categorical):
        missing_is_choice = None in dim.choices
        labels = [c for c in dim.choices if (c is None and missing_is_choice
                                             and len(present) < len(column))
                  or any(_same(c, v) for v in present)]
        return ("categorical", labels)
    if dim is not None and hasattr(dim, "low"):
        return ("log" if dim.log else "linear", float(dim.low), float(dim.high))
    numeric = all(isinstance(v, (int, float, np.integer, np.floating))
                  and not isinstance(v, (bool, np.bool_)) for v in present)
    if not numeric:
        return ("categorical", sorted({str(v) for v in present}))
    values = np.asarray(present, dtype=np.float64)
    if values.size == 0:
        return ("linear", 0.0, 1.0)
    return ("linear", float(values.min()), float(values.max()))


def _same(choice, value):
    if choice is None or _is_missing(value):
        return choice is None and _is_missing(value)
    if isinstance(choice, str) or isinstance(value, str):
        return str(choice) == str(value)
    return float(choice) == float(value)


def _position(value, scale):
    """Where ``value`` sits on its axis, in [0, 1]; NaN where it has none."""
    kind = scale[0]
    if kind == "categorical":
        labels = scale[1]
        if _is_missing(value) and None not in labels:
            return np.nan
        index = next((i for i, c in enumerate(labels) if _same(c, value)), None)
        if index is None:
            return np.nan
        return 0.5 if len(labels) == 1 else index / (len(labels) - 1)
    if _is_missing(value):
        return np.nan
    lo, hi, v = scale[1], scale[2], float(value)
    if kind == "log" and lo > 0 and v > 0:
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return 0.5 if hi == lo else (v - lo) / (hi - lo)


def _tick_text(value):
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


class ParallelCoordinatesDisplay:
    """The best configurations of a search as parallel coordinates, coloured by objective.

    Each configuration is a line crossing one vertical axis per hyperparameter, at its
    value; numeric axes run from the searched range's low (bottom) to its high (top), in
    log scale where the space samples in log scale, and categorical axes list the choices.
    A configuration without a value on an axis (e.g. the units of a layer it does not have)
    crosses it at "n/a", below. The best configuration is drawn last and thickest. Build
    one with :meth:`from_estimator` or :meth:`from_results`.

    Parameters
    ----------
    params : DataFrame of shape (n_configs, n_params)
        The configurations (columns named without the ``p:`` prefix).
    objective : array-like of shape (n_configs,)
        Each configuration's objective.
    objective_name : str, default="validation NLL"
        Name of the objective, for the colour bar.
    lower_is_better : bool, default=True
        Whether the search minimizes the objective.
    space : SearchSpace, default=None
        The search space, for the ranges, log scales and choice order of the axes.
    job_id : array-like of shape (n_configs,), default=None
        The trial of each configuration.
    estimator_name : str, default=None
        Name of the searching model.

    Attributes
    ----------
    scales : dict of str to tuple
        Per parameter, ``("categorical", choices)`` or ``("linear" | "log", low, high)``.
    positions : ndarray of shape (n_configs, n_params)
        Each value's height on its axis in [0, 1], NaN where the configuration has none.
    lines_ : list of matplotlib Artist
        One line per configuration, in the order of ``params``.
    colorbar_ : matplotlib Colorbar
        The colour scale of the objective.
    ax_ : matplotlib Axes
        Axes with the lines.
    figure_ : matplotlib Figure
        Figure holding the axes.

    Examples
    --------
    >>> from autodeuq.plotting import ParallelCoordinatesDisplay
    >>> display = ParallelCoordinatesDisplay.from_estimator(est, n_best=10)  # doctest: +SKIP
    """

    def __init__(self, *, params, objective, objective_name="validation NLL",
                 lower_is_better=True, space=None, job_id=None, estimator_name=None):
        import pandas as pd

        if not isinstance(params, pd.DataFrame) or params.shape[1] == 0 or len(params) == 0:
            raise ValueError("params must be a DataFrame with at least one configuration and "
                             f"one column; got {type(params).__name__} of shape "
                             f"{getattr(params, 'shape', None)}.")
        self.params = params.reset_index(drop=True)
        n = len(self.params)
        self.objective = as_1d("objective", objective, n)
        self.objective_name = str(objective_name)
        self.lower_is_better = check_bool("lower_is_better", lower_is_better)
        self.space = space
        self.job_id = np.arange(n) if job_id is None else np.asarray(job_id)
        self.estimator_name = estimator_name
        columns = {c: self.params[c].astype(object).tolist() for c in self.params.columns}
        self.scales = {c: _scale(c, values, space) for c, values in columns.items()}
        self.positions = np.array(
            [[_position(values[i], self.scales[c]) for c, values in columns.items()]
             for i in range(n)], dtype=np.float64).reshape(n, len(columns))

    @classmethod
    def from_estimator(cls, estimator, *, n_best=20, params=None, drop_constant=True, ax=None,
                       **kwargs):
        """Draw the best configurations of a fitted NASRegressor or AutoDEUQRegressor.

        Parameters
        ----------
        estimator : NASRegressor or AutoDEUQRegressor
            Fitted (or a Pipeline ending in one): its ``search_results_`` and its search
            space are used.
        n_best : int, default=20
            How many of the best successful configurations to draw.
        params : list of str, default=None
            The hyperparameters to draw (with or without ``p:``), in order; None: every one.
        drop_constant : bool, default=True
            Leave out hyperparameters with one value among the configurations drawn.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        ParallelCoordinatesDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib(caller)
        return cls._from_table(results_of(estimator, caller), space_of(estimator), n_best,
                               params, drop_constant, caller, estimator_name(estimator), ax,
                               kwargs)

    @classmethod
    def from_results(cls, results, *, space=None, n_best=20, params=None, drop_constant=True,
                     name=None, ax=None, **kwargs):
        """Draw the best configurations of a search's results table.

        Parameters
        ----------
        results : DataFrame, str or path-like
            ``search_results_``, the ``search_results.csv`` written by ``autodeuq fit``, or
            DeepHyper's ``results.csv``.
        space : SearchSpace or dict, default=None
            The search space, for log scales, ranges and choice order; without it, axes span
            the values drawn.
        n_best, params, drop_constant : see :meth:`from_estimator`
        name : str, default=None
            Name of the search.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        ParallelCoordinatesDisplay
        """
        caller = f"{cls.__name__}.from_results"
        check_matplotlib(caller)
        if space is not None:
            from ..space import SearchSpace

            space = SearchSpace.coerce(space)
        return cls._from_table(results, space, n_best, params, drop_constant, caller, name, ax,
                               kwargs)

    @classmethod
    def _from_table(cls, results, space, n_best, params, drop_constant, caller, name, ax,
                    kwargs):
        n_best = check_int("n_best", n_best, "Use e.g. 20 configurations.")
        drop_constant = check_bool("drop_constant", drop_constant)
        table, objective_name, lower_is_better = read_results(results, caller)
        available = [c[2:] for c in table.columns if str(c).startswith("p:")]
        if params is None:
            names = available
        else:
            if isinstance(params, str) or not hasattr(params, "__iter__"):
                raise TypeError(f"params must be a list of hyperparameter names or None; got "
                                f"{params!r}.")
            names = [str(p).removeprefix("p:") for p in params]
            unknown = [p for p in names if p not in available]
            if unknown:
                raise ValueError(f"params names {unknown}, not in the results; they have "
                                 f"{available}.")
        if not names:
            raise ValueError(f"{caller}: the results have no hyperparameter ('p:') columns.")
        ok = table[np.isfinite(table["value"].to_numpy())]
        if len(ok) == 0:
            raise ValueError(f"{caller}: no trial succeeded, so there is no configuration to "
                             "draw.")
        ok = ok.sort_values("value", ascending=lower_is_better, kind="stable").head(n_best)
        frame = ok[[f"p:{p}" for p in names]].rename(columns=lambda c: c[2:])
        if drop_constant and params is None:
            keep = [c for c in frame.columns
                    if frame[c].astype(object).map(repr).nunique() > 1]
            frame = frame[keep] if keep else frame
        return cls(params=frame, objective=ok["value"], objective_name=objective_name,
                   lower_is_better=lower_is_better, space=space, job_id=ok["job_id"].to_numpy(),
                   estimator_name=name).plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, cmap=None, colorbar=True):
        """Draw one line per configuration.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        cmap : str or matplotlib Colormap, default=None
            Colour map of the objective; None: ``"viridis"``, its bright end for the best.
        colorbar : bool, default=True
            Draw a colour bar of the objective.

        Returns
        -------
        ParallelCoordinatesDisplay
            ``self``, with the artists set.
        """
        check_matplotlib(f"{type(self).__name__}.plot")
        axes = axes_list(ax, "ax", (1,))
        colorbar = check_bool("colorbar", colorbar)
        names = list(self.params.columns)
        n_params = len(names)
        if axes is None:
            axes = new_axes(f"{type(self).__name__}.plot",
                            figsize=(min(16.0, max(7.0, 0.75 * n_params + 3.0)), 5.0))
        ax = axes[0]
        import matplotlib as mpl

        if cmap is None:
            cmap = "viridis_r" if self.lower_is_better else "viridis"
        cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
        lo, hi = float(self.objective.min()), float(self.objective.max())
        norm = mpl.colors.Normalize(lo, hi if hi > lo else lo + 1.0)
        heights = np.where(np.isnan(self.positions), INACTIVE, self.positions)
        xs = np.arange(n_params)
        rank = np.argsort(self.objective if self.lower_is_better else -self.objective,
                          kind="stable")
        self.lines_ = [None] * len(self.params)
        for order, i in enumerate(rank[::-1]):  # the best last, on top
            best = order == len(rank) - 1
            self.lines_[i] = ax.plot(xs, heights[i], color=cmap(norm(self.objective[i])),
                                     lw=2.6 if best else 1.2, alpha=1.0 if best else 0.75,
                                     zorder=3 + order, marker="o", markersize=2.5)[0]
        for j, name in enumerate(names):
            ax.axvline(j, ymin=0, ymax=1, color="0.3", lw=0.8, zorder=1)
            scale = self.scales[name]
            style = {"fontsize": 7, "color": "0.25", "zorder": 100,
                     "bbox": {"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none",
                              "alpha": 0.7}}
            if scale[0] == "categorical":
                labels = scale[1]
                for k, label in enumerate(labels):
                    y = 0.5 if len(labels) == 1 else k / (len(labels) - 1)
                    ax.text(j + 0.04, y, _tick_text(label), va="center", ha="left", **style)
            else:
                for y, value in ((0.0, scale[1]), (1.0, scale[2])):
                    ax.text(j, 1.03 if y else -0.03, _tick_text(value),
                            va="bottom" if y else "top", ha="center", **style)
            if np.isnan(self.positions[:, j]).any():
                ax.text(j + 0.04, INACTIVE, "n/a", va="center", ha="left", **style)
        ax.set_xticks(xs, [f"{n} (log)" if self.scales[n][0] == "log" else n for n in names],
                      rotation=35, ha="right", fontsize=8)
        ax.set_yticks([])
        ax.set_xlim(-0.3, n_params - 0.5 if n_params > 1 else 0.7)
        ax.set_ylim(INACTIVE - 0.08, 1.16)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"best {len(self.params)} configurations", fontsize=10)
        self.colorbar_ = None
        if colorbar:
            mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
            direction = "lower" if self.lower_is_better else "higher"
            self.colorbar_ = ax.figure.colorbar(
                mappable, ax=ax, pad=0.02, label=f"{self.objective_name} ({direction} is "
                                                 "better)")
        self.ax_, self.figure_ = ax, ax.figure
        return self
