"""A search's best objective so far, against time and against evaluations."""

import numpy as np

from ._base import (
    as_1d,
    axes_list,
    check_bool,
    check_choice,
    check_matplotlib,
    estimator_name,
    new_axes,
)
from ._results import read_results, results_of

__all__ = ["SearchTrajectoryDisplay"]

X_CHOICES = ("both", "time", "evaluations")
X_LABELS = {"time": "time since the search started (s)",
            "evaluations": "evaluations finished (failed ones included)"}


class SearchTrajectoryDisplay:
    """Best validation objective so far, against time and against evaluations.

    Each finished trial is a point; the step line is the best objective found up to then
    (failed trials count as evaluations and are marked with a red cross at the bottom). A
    line still falling at the end says a longer search would likely pay. Build one with
    :meth:`from_estimator` or :meth:`from_results`.

    Parameters
    ----------
    times : array-like of shape (n_trials,) or None
        When each trial finished, in seconds from the search's start, in the order they
        finished; None when unknown (only ``x="evaluations"`` then).
    objective : array-like of shape (n_trials,)
        Each trial's objective in that order, NaN for a failed trial.
    objective_name : str, default="validation NLL"
        Name of the objective, for the vertical axis.
    lower_is_better : bool, default=True
        Whether the search minimizes the objective.
    estimator_name : str, default=None
        Name of the searching model.

    Attributes
    ----------
    n_evaluations : ndarray of shape (n_trials,)
        1, 2, ..., n_trials.
    best_so_far : ndarray of shape (n_trials,)
        Best objective among the trials finished so far; NaN before the first success.
    axes_ : dict of str to matplotlib Axes
        ``"time"`` and/or ``"evaluations"``: the Axes of each horizontal axis drawn.
    ax_ : matplotlib Axes
        The first of them.
    figure_ : matplotlib Figure
        Figure holding them.
    best_lines_, trial_points_, failure_marks_ : dict of str to matplotlib Artist
        Per drawn axis: the best-so-far step line, the trials' points and the failures'
        marks (None where no trial failed).

    Examples
    --------
    >>> from autodeuq.plotting import SearchTrajectoryDisplay
    >>> display = SearchTrajectoryDisplay.from_results("model/search_results.csv")
    ... # doctest: +SKIP
    """

    def __init__(self, *, times, objective, objective_name="validation NLL",
                 lower_is_better=True, estimator_name=None):
        try:
            value = np.asarray(objective, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"objective must be array-like of numbers (NaN for a failed trial); "
                             f"got {type(objective).__name__}.") from exc
        if value.ndim != 1 or value.size == 0:
            raise ValueError(f"objective must be a non-empty 1-D array, one value per trial; "
                             f"got shape {value.shape}.")
        self.objective = value
        self.times = None if times is None else as_1d("times", times, value.size)
        self.objective_name = str(objective_name)
        self.lower_is_better = check_bool("lower_is_better", lower_is_better)
        self.estimator_name = estimator_name
        self.n_evaluations = np.arange(1, value.size + 1)
        accumulate = np.fmin.accumulate if self.lower_is_better else np.fmax.accumulate
        self.best_so_far = accumulate(value)

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **kwargs):
        """Draw the trajectory of a fitted NASRegressor or AutoDEUQRegressor's search.

        Parameters
        ----------
        estimator : NASRegressor or AutoDEUQRegressor
            Fitted (or a Pipeline ending in one): its ``search_results_`` are drawn.
        ax : matplotlib Axes or pair of Axes, default=None
            Where to draw, see :meth:`plot`.
        **kwargs
            Passed to :meth:`plot` (``x``, ...).

        Returns
        -------
        SearchTrajectoryDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib(caller)
        return cls._from_table(results_of(estimator, caller), caller,
                               estimator_name(estimator), ax, kwargs)

    @classmethod
    def from_results(cls, results, *, name=None, ax=None, **kwargs):
        """Draw the trajectory of a search's results table.

        Parameters
        ----------
        results : DataFrame, str or path-like
            ``search_results_``, the ``search_results.csv`` written by ``autodeuq fit``, or
            DeepHyper's ``results.csv`` (its ``objective`` is maximized).
        name : str, default=None
            Name of the search.
        ax : matplotlib Axes or pair of Axes, default=None
            Where to draw, see :meth:`plot`.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        SearchTrajectoryDisplay
        """
        caller = f"{cls.__name__}.from_results"
        check_matplotlib(caller)
        return cls._from_table(results, caller, name, ax, kwargs)

    @classmethod
    def _from_table(cls, results, caller, name, ax, kwargs):
        table, objective_name, lower_is_better = read_results(results, caller)
        end = table["end"].to_numpy()
        if np.isfinite(end).any():  # in the order trials finished (any without a time last)
            order = np.argsort(end, kind="stable")
        else:
            order = np.arange(len(table))
        return cls(times=end[order] if np.isfinite(end).all() else None,
                   objective=table["value"].to_numpy()[order], objective_name=objective_name,
                   lower_is_better=lower_is_better, estimator_name=name).plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, x=None, show_trials=True):
        """Draw the best objective so far.

        Parameters
        ----------
        ax : matplotlib Axes or pair of Axes, default=None
            One Axes for one horizontal axis, two for both; None for a new figure.
        x : {"both", "time", "evaluations"}, default=None
            The horizontal axis: seconds since the search started, evaluations finished, or
            both side by side. None: both when ``ax`` is None or two Axes (and times are
            known), else evaluations.
        show_trials : bool, default=True
            Draw each trial's objective as a point.

        Returns
        -------
        SearchTrajectoryDisplay
            ``self``, with the artists set.
        """
        check_matplotlib(f"{type(self).__name__}.plot")
        axes = axes_list(ax, "ax", (1, 2))
        if x is None:
            x = "both" if (axes is None or len(axes) == 2) and self.times is not None \
                else "evaluations"
        x = check_choice("x", x, X_CHOICES)
        show_trials = check_bool("show_trials", show_trials)
        kinds = ["time", "evaluations"] if x == "both" else [x]
        if "time" in kinds and self.times is None:
            raise ValueError(f"x={x!r} needs the times trials finished, which these results "
                             "lack (no end_time or m:timestamp_* column); use "
                             "x='evaluations'.")
        if axes is None:
            axes = new_axes(f"{type(self).__name__}.plot", 1, len(kinds), sharey=True,
                            figsize=(5.5 * len(kinds), 4.2))
        elif len(axes) != len(kinds):
            raise ValueError(f"x={x!r} draws {len(kinds)} Axes; got {len(axes)}. Pass "
                             f"{len(kinds)} Axes, or choose x to match.")
        value, best = self.objective, self.best_so_far
        ok = np.isfinite(value)
        low, high = self._limits()
        beyond = int(np.sum(ok & ((value > high) if self.lower_is_better else (value < low))))
        direction = "lower" if self.lower_is_better else "higher"
        self.axes_, self.best_lines_, self.trial_points_, self.failure_marks_ = {}, {}, {}, {}
        for kind, a in zip(kinds, axes, strict=True):
            position = self.times if kind == "time" else self.n_evaluations.astype(float)
            if show_trials and ok.any():
                side = "above" if self.lower_is_better else "below"
                note = f"; {beyond} {side} the axis" if beyond else ""
                self.trial_points_[kind] = a.scatter(
                    position[ok], value[ok], s=14, color="tab:blue", alpha=0.45, zorder=2,
                    label=f"trials ({int(ok.sum())}{note})")
            final = best[np.isfinite(best)]
            label = f"best so far ({final[-1]:.4g})" if final.size else "best so far"
            self.best_lines_[kind] = a.step(position, best, where="post", color="tab:red",
                                            lw=1.8, zorder=3, label=label)[0]
            self.failure_marks_[kind] = None
            if (~ok).any():
                self.failure_marks_[kind] = a.scatter(
                    position[~ok], np.full(int((~ok).sum()), 0.02), marker="x",
                    color="tab:red", s=22, zorder=4, clip_on=False,
                    transform=a.get_xaxis_transform(),
                    label=f"failed ({int((~ok).sum())})")
            a.set_xlabel(X_LABELS[kind])
            a.grid(True, alpha=0.3)
            if kind == "evaluations":
                from matplotlib.ticker import MaxNLocator

                a.xaxis.set_major_locator(MaxNLocator(integer=True))
            self.axes_[kind] = a
        first = axes[0]
        first.set_ylabel(f"{self.objective_name} ({direction} is better)")
        if np.isfinite([low, high]).all():
            pad = 0.05 * ((high - low) or abs(high) or 1.0)
            for a in axes:
                a.set_ylim(low - pad, high + pad)
        first.legend(fontsize=8, loc="best")
        self.ax_, self.figure_ = first, first.figure
        return self

    def _limits(self):
        """Vertical limits: every best-so-far value, and the trials inside Tukey's fences (a
        bad trial's NLL can be far off and would flatten the curve)."""
        value = self.objective[np.isfinite(self.objective)]
        best = self.best_so_far[np.isfinite(self.best_so_far)]
        if value.size == 0:
            return np.nan, np.nan
        q1, q3 = np.percentile(value, [25, 75])
        fence = 1.5 * (q3 - q1)
        if self.lower_is_better:
            return float(value.min()), float(max(best.max(), value[value <= q3 + fence].max()))
        return float(min(best.min(), value[value >= q1 - fence].min())), float(value.max())
