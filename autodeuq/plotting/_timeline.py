"""One bar per trial per worker, from its start to its end: where workers sat idle."""

import numpy as np

from ._base import as_1d, axes_list, check_bool, check_matplotlib, estimator_name, new_axes
from ._results import read_results, results_of

__all__ = ["WorkerTimelineDisplay"]

#: Bar colour of each trial status (others are grey).
STATUS_COLORS = {"success": "tab:blue", "failed": "tab:red", "diverged": "tab:orange",
                 "timeout": "tab:purple", "lost": "0.45"}


def _lanes(start, end):
    """A row per trial when the table names no worker: each trial, in order of start, goes to
    the first row free by then (as few rows as trials ever ran at once)."""
    free_at, lanes = [], np.empty(len(start), dtype=int)
    for i in np.argsort(start, kind="stable"):
        lane = next((k for k, t in enumerate(free_at) if t <= start[i]), len(free_at))
        if lane == len(free_at):
            free_at.append(end[i])
        else:
            free_at[lane] = end[i]
        lanes[i] = lane
    return lanes


def _busy(start, end):
    """Length of the union of the intervals [start, end]."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(zip(start, end, strict=True)):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _short(worker):
    """A worker's address without its protocol: ``tcp://10.0.0.1:4321`` -> ``10.0.0.1:4321``."""
    return worker.split("://", 1)[-1]


class WorkerTimelineDisplay:
    """One horizontal bar per trial, on its worker's row, from its start to its end.

    Bars are coloured by the trial's status; white space between bars is time a worker sat
    idle (waiting for the search to propose, or for data). Each row's label says how busy its
    worker was over the whole search. Build one with :meth:`from_estimator` or
    :meth:`from_results`.

    Parameters
    ----------
    workers : sequence of str or None
        The worker of each trial; None when unknown (each trial then takes the first row free
        when it starts).
    start, end : array-like of shape (n_trials,)
        When each trial started and ended, in seconds from the search's start.
    status : sequence of str
        Each trial's status (``"success"``, ``"failed"``, ...).
    job_id : array-like of shape (n_trials,), default=None
        Each trial's id; 0, 1, ... by default.
    estimator_name : str, default=None
        Name of the searching model.

    Attributes
    ----------
    worker_names : list of str
        One per row, in order of their first trial's start.
    rows : ndarray of shape (n_trials,)
        Each trial's row (an index into ``worker_names``).
    busy_fraction : ndarray of shape (n_workers,)
        Part of the search's span (first start to last end) each worker spent on trials.
    bars_ : matplotlib BarContainer
        The bars, one per trial, in the order of ``start``, ``end`` and ``status``.
    ax_ : matplotlib Axes
        Axes with the bars.
    figure_ : matplotlib Figure
        Figure holding the axes.

    Examples
    --------
    >>> from autodeuq.plotting import WorkerTimelineDisplay
    >>> display = WorkerTimelineDisplay.from_results("model/search_results.csv")
    ... # doctest: +SKIP
    """

    def __init__(self, *, workers, start, end, status, job_id=None, estimator_name=None):
        self.start = as_1d("start", start)
        n = len(self.start)
        self.end = as_1d("end", end, n)
        if (self.end < self.start).any():
            raise ValueError(f"end must be >= start for every trial; got "
                             f"{int((self.end < self.start).sum())} trial(s) ending before "
                             "they start. Check the time columns.")
        self.status = np.asarray([str(s) for s in status])
        if self.status.shape != (n,):
            raise ValueError(f"status must hold one value per trial ({n}); got "
                             f"{self.status.size}.")
        self.job_id = np.arange(n) if job_id is None else np.asarray(job_id)
        if self.job_id.shape != (n,):
            raise ValueError(f"job_id must hold one value per trial ({n}); got "
                             f"{self.job_id.size}.")
        self.estimator_name = estimator_name
        if workers is None:
            self.rows = _lanes(self.start, self.end)
            self.worker_names = [f"slot {k}" for k in range(self.rows.max() + 1)]
        else:
            workers = [str(w) for w in workers]
            if len(workers) != n:
                raise ValueError(f"workers must hold one value per trial ({n}); got "
                                 f"{len(workers)}.")
            first = {}
            for i in np.argsort(self.start, kind="stable"):
                first.setdefault(workers[i], len(first))
            self.worker_names = list(first)
            self.rows = np.array([first[w] for w in workers], dtype=int)
        span = float(self.end.max() - self.start.min()) or 1.0
        self.busy_fraction = np.array([
            _busy(self.start[self.rows == k], self.end[self.rows == k]) / span
            for k in range(len(self.worker_names))])

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **kwargs):
        """Draw the timeline of a fitted NASRegressor or AutoDEUQRegressor's search.

        Parameters
        ----------
        estimator : NASRegressor or AutoDEUQRegressor
            Fitted (or a Pipeline ending in one): its ``search_results_`` are drawn.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        WorkerTimelineDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib(caller)
        return cls._from_table(results_of(estimator, caller), caller,
                               estimator_name(estimator), ax, kwargs)

    @classmethod
    def from_results(cls, results, *, name=None, ax=None, **kwargs):
        """Draw the timeline of a search's results table.

        Parameters
        ----------
        results : DataFrame, str or path-like
            ``search_results_``, the ``search_results.csv`` written by ``autodeuq fit``, or
            DeepHyper's ``results.csv`` (which names no worker: rows are then filled as
            trials start).
        name : str, default=None
            Name of the search.
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        WorkerTimelineDisplay
        """
        caller = f"{cls.__name__}.from_results"
        check_matplotlib(caller)
        return cls._from_table(results, caller, name, ax, kwargs)

    @classmethod
    def _from_table(cls, results, caller, name, ax, kwargs):
        table, _, _ = read_results(results, caller)
        timed = np.isfinite(table["start"]) & np.isfinite(table["end"])
        if not timed.any():
            raise ValueError(f"{caller}: the results have no start and end times (columns "
                             "start_time and end_time, or m:timestamp_start/end); a timeline "
                             "needs them.")
        table = table[timed]
        workers = None if table["worker"].isna().all() else table["worker"].tolist()
        return cls(workers=workers, start=table["start"], end=table["end"],
                   status=table["status"], job_id=table["job_id"].to_numpy(),
                   estimator_name=name).plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, legend=True, colors=None):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; None for a new figure.
        legend : bool, default=True
            Draw a legend of the statuses present.
        colors : dict of str to color, default=None
            Bar colour by status, over :data:`STATUS_COLORS`.

        Returns
        -------
        WorkerTimelineDisplay
            ``self``, with the artists set.
        """
        check_matplotlib(f"{type(self).__name__}.plot")
        axes = axes_list(ax, "ax", (1,))
        legend = check_bool("legend", legend)
        if colors is not None and not isinstance(colors, dict):
            raise TypeError(f"colors must be a dict of status to colour, or None; got "
                            f"{type(colors).__name__}.")
        palette = {**STATUS_COLORS, **(colors or {})}
        n_rows = len(self.worker_names)
        if axes is None:
            axes = new_axes(f"{type(self).__name__}.plot",
                            figsize=(9, 1.6 + 0.45 * n_rows))
        ax = axes[0]
        from matplotlib.patches import Patch

        self.bars_ = ax.barh(self.rows, self.end - self.start, left=self.start, height=0.7,
                             color=[palette.get(s, "0.7") for s in self.status],
                             edgecolor="white", linewidth=0.6)
        ax.set_yticks(range(n_rows), [f"{_short(w)}  ({100 * b:.0f}% busy)"
                                      for w, b in zip(self.worker_names, self.busy_fraction,
                                                      strict=True)])
        ax.set_ylim(n_rows - 0.5, -0.5)  # the first worker on top
        ax.set_xlabel("time since the search started (s)")
        ax.set_ylabel("worker")
        ax.grid(True, axis="x", alpha=0.3)
        if legend:
            counts = {s: int((self.status == s).sum()) for s in dict.fromkeys(self.status)}
            handles = [Patch(color=palette.get(s, "0.7"), label=f"{s} ({c})")
                       for s, c in counts.items()]
            ax.legend(handles=handles, fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.0, 1.0), title="trials", title_fontsize=8)
        self.ax_, self.figure_ = ax, ax.figure
        return self
