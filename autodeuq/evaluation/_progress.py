"""SearchProgress: what a search shows while it runs (a tqdm bar, or plain log lines).

:func:`run_search` drives it from its collect loop: :meth:`SearchProgress.start` once, then
:meth:`SearchProgress.submitted` for every trial it submits and :meth:`SearchProgress.result`
for every result it collects, then :meth:`SearchProgress.close`, which logs a summary.

Everything it says goes through :mod:`logging` (the logger ``autodeuq.evaluation._progress``)
except the bar itself, which tqdm draws on the stream (stderr by default).
"""

import logging
import math
import numbers
import sys
import time
from collections import Counter

__all__ = ["SearchProgress", "dashboard_link"]

logger = logging.getLogger(__name__)

#: Seconds between two plain progress lines (when the stream is not a terminal).
LOG_INTERVAL = 30.0


def dashboard_link(evaluator):
    """The Dask dashboard's address of an evaluator, or None (a serial one has none).

    Reads the evaluator's ``dashboard_link`` attribute when it has one, never failing: a
    progress display must not break a search.
    """
    try:
        link = getattr(evaluator, "dashboard_link", None)
    except Exception:  # a closed client, a scheduler that went away
        return None
    return link if isinstance(link, str) and link else None


def _clock(seconds):
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:02d}:{rest % 60:02d}"


class _BarStream:
    """A stream that writes through ``tqdm.write``, so a log line never breaks the bar."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self):
        self.stream.flush()


class _LineHandler(logging.Handler):
    """Writes progress lines to the stream while no handler of the user's would show them."""

    def __init__(self, stream):
        super().__init__(logging.INFO)
        self.stream = stream
        self.setFormatter(logging.Formatter("[autodeuq] %(message)s"))

    def emit(self, record):
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)


class SearchProgress:
    """Progress of a search: trials finished, running and failed, and the best so far.

    Parameters
    ----------
    verbose : int, default=1
        0: silent (a summary at DEBUG level only). 1: a progress bar on a terminal; on any
        other stream (a batch job's log, a pipe) plain INFO lines instead, every
        ``log_every`` results or every ``log_interval`` seconds, and a summary line at the
        end. 2: also one INFO line per trial. At 1 and 2 the lines are shown even when
        logging is not configured (on the stream, prefixed ``[autodeuq]``), and the Dask
        dashboard's link is logged once at INFO.
    offset : float, default=0.0
        Added to every objective shown: ``log(y_scale)`` turns the NLL of the standardized
        target that the trials report into the NLL in the units of y.
    previous : iterable of TrialResult, default=()
        Trials finished before (a resumed search): counted as finished, failed or best.
    stream : file-like or None, default=None
        Where the bar (and, without a logging handler, the lines) go; None is ``sys.stderr``
        at :meth:`start`.
    tty : bool or None, default=None
        Whether ``stream`` is a terminal (a bar) or not (plain lines); None asks the stream.
    log_every : int or None, default=None
        Results between two plain lines; None is a tenth of ``max_evals`` (none without it).
    log_interval : float, default=30.0
        Most seconds between two plain lines while results arrive.

    Notes
    -----
    Use it as a context manager, or let :func:`run_search` start and close it. While the bar
    is shown, log handlers writing to the same stream write through ``tqdm.write``, so their
    lines appear above the bar instead of breaking it.
    """

    def __init__(self, verbose=1, *, offset=0.0, previous=(), stream=None, tty=None,
                 log_every=None, log_interval=LOG_INTERVAL):
        if not isinstance(verbose, numbers.Integral) or verbose < 0:
            raise ValueError(f"verbose must be an int >= 0; got {verbose!r}. Use 0 (silent), 1 "
                             "(a progress bar, or log lines in a batch job) or 2 (also a line "
                             "per trial).")
        self.verbose = int(verbose)
        self.offset = float(offset)
        self.stream = stream
        self.tty = tty
        self.log_every = log_every
        self.log_interval = log_interval
        self.n_finished = self.n_in_flight = 0
        self.statuses = Counter()
        self.best = None  # (objective + offset, trial_id)
        for result in previous:
            self._count(result)
        self.max_evals = self.time_budget = None
        self._evaluator = None
        self._bar = None
        self._start = self._last_line = None
        self._lines_at = self._next_line = 0  # finished at the last line; due at the next
        self._changed = self._closed = False
        self._restore = []

    # -- counts ------------------------------------------------------------------------------

    @property
    def n_failed(self):
        """Trials that ended with any status but ``"success"``."""
        return sum(n for status, n in self.statuses.items() if status != "success")

    @property
    def best_nll(self):
        """The best validation NLL so far (units of y with ``offset``), or None."""
        return None if self.best is None else self.best[0]

    @property
    def n_running(self):
        """Trials submitted and not finished, at most one per worker (the rest are queued)."""
        workers = getattr(self._evaluator, "n_workers", None)
        if isinstance(workers, numbers.Integral) and workers > 0:
            return min(self.n_in_flight, int(workers))
        return self.n_in_flight

    def _count(self, result):
        self.n_finished += 1
        self.statuses[result.status] += 1
        if result.ok and result.objective is not None and math.isfinite(result.objective):
            nll = result.objective + self.offset
            if self.best is None or nll < self.best[0]:
                self.best = (nll, result.trial_id)

    # -- what run_search calls ---------------------------------------------------------------

    def start(self, evaluator=None, *, max_evals=None, time_budget=None, n_done=0):
        """The search starts: show the dashboard link, then the bar (or the first line)."""
        if self._start is not None:
            return self
        self._evaluator = evaluator
        self.max_evals, self.time_budget = max_evals, time_budget
        self.n_finished = max(self.n_finished, n_done)
        self._start = self._last_line = time.monotonic()
        if self.verbose == 0:
            return self
        if self.stream is None:
            self.stream = sys.stderr
        if self.tty is None:
            try:
                self.tty = bool(self.stream.isatty())
            except (AttributeError, ValueError):  # no isatty, or a closed stream
                self.tty = False
        if self.log_every is None and max_evals is not None:
            self.log_every = max(1, math.ceil(max_evals / 10))
        self._lines_at = self.n_finished
        if self.log_every is not None:
            self._next_line = (self.n_finished // self.log_every + 1) * self.log_every
        self._show_lines()
        link = dashboard_link(evaluator)
        if link is not None:
            logger.info("Dask dashboard: %s", link)
        advice = getattr(evaluator, "advice", None)
        if isinstance(advice, str) and advice:
            logger.info("%s", advice)
        if self.tty:
            self._open_bar()
        else:
            logger.info("search started: %s", self._limits())
        return self

    def submitted(self, trial_id=None):
        """A trial was submitted."""
        self.n_in_flight += 1
        self._changed = True

    def result(self, result):
        """A trial finished (any status)."""
        self.n_in_flight = max(0, self.n_in_flight - 1)
        self._count(result)
        self._changed = True
        if self.verbose >= 2:
            logger.info("%s", self._trial_line(result))

    def refresh(self):
        """Show what changed: :func:`run_search` calls it before it waits for results.

        The bar is redrawn (or, off a terminal, a line is logged when one is due) once per
        batch of results and the submissions that replace them, so the running count shown
        while the search waits is the true one.
        """
        if not self._changed or self.verbose == 0 or self._start is None:
            return
        self._changed = False
        if self._bar is not None:
            self._bar.n = self.n_finished
            self._bar.set_postfix_str(self._postfix(), refresh=True)
            return
        now = time.monotonic()
        due = (self.log_every is not None and self.n_finished >= self._next_line)
        if self.n_finished > self._lines_at and (due or now - self._last_line
                                                 >= self.log_interval):
            self._last_line, self._lines_at = now, self.n_finished
            if self.log_every is not None:
                self._next_line = (self.n_finished // self.log_every + 1) * self.log_every
            logger.info("%s", self._progress_line())

    def close(self, error=None):
        """The search ended (``error``: the exception that ended it): log the summary."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._bar is not None:
                self._bar.n = self.n_finished
                self._bar.set_postfix_str(self._postfix(), refresh=False)
                self._bar.close()
                self._bar = None
            if self._start is not None:
                logger.log(logging.INFO if self.verbose else logging.DEBUG, "%s",
                           self._summary(error))
        finally:
            for undo in reversed(self._restore):
                undo()
            self._restore.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(exc)

    # -- display -----------------------------------------------------------------------------

    def _show_lines(self):
        """Make INFO lines of this logger visible for the search, however logging is set."""
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
            self._restore.append(lambda: logger.setLevel(logging.NOTSET))
        if not logger.hasHandlers():
            handler = _LineHandler(_BarStream(self.stream) if self.tty else self.stream)
            logger.addHandler(handler)
            self._restore.append(lambda: logger.removeHandler(handler))

    def _open_bar(self):
        from tqdm import tqdm

        budget = "" if self.time_budget is None else f" of {_clock(self.time_budget)}"
        if self.max_evals is not None:
            bar_format = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                          "[{elapsed}" + (budget or "<{remaining}") + "{postfix}]")
        else:
            bar_format = "{desc}: {n_fmt} finished [{elapsed}" + budget + "{postfix}]"
        self._bar = tqdm(total=self.max_evals, initial=self.n_finished, desc="search",
                         unit="trial", file=self.stream, bar_format=bar_format, leave=True,
                         dynamic_ncols=True, smoothing=0, postfix=self._postfix(),
                         disable=False)
        # The user's handlers that write to this stream write above the bar, not through it.
        wrapped = _BarStream(self.stream)
        for name in (None, "autodeuq"):
            for handler in logging.getLogger(name).handlers:
                if (isinstance(handler, logging.StreamHandler)
                        and getattr(handler, "stream", None) is self.stream):
                    handler.setStream(wrapped)
                    self._restore.append(lambda h=handler: h.setStream(self.stream))

    def _nll(self):
        return "-" if self.best is None else f"{self.best[0]:.4g}"

    def _postfix(self):
        return f"running={self.n_running}, failed={self.n_failed}, best NLL={self._nll()}"

    def _limits(self):
        parts = []
        if self.max_evals is not None:
            parts.append(f"{self.max_evals} trials")
        if self.time_budget is not None:
            parts.append(f"{_clock(self.time_budget)} budget")
        done = f", {self.n_finished} done before" if self.n_finished else ""
        return " or ".join(parts) + done

    def _elapsed(self):
        elapsed = _clock(time.monotonic() - self._start)
        if self.time_budget is not None:
            return f"{elapsed} of {_clock(self.time_budget)}"
        return elapsed

    def _progress_line(self):
        total = "" if self.max_evals is None else f"/{self.max_evals}"
        return (f"search: {self.n_finished}{total} finished, {self.n_running} running, "
                f"{self.n_failed} failed, best validation NLL {self._nll()} "
                f"[{self._elapsed()}]")

    def _trial_line(self, result):
        if result.ok:
            what = f"validation NLL {result.objective + self.offset:.4g}"
        else:
            error = (result.error or "").strip().splitlines()
            what = result.status + (f" ({error[-1]})" if error else "")
        where = f" on {result.worker}" if result.worker else ""
        seconds = result.duration
        took = f" in {seconds:.1f}s" if math.isfinite(seconds) else ""
        return f"trial {result.trial_id}: {what}{took}{where}"

    def _summary(self, error=None):
        failed = ""
        if self.n_failed:
            kinds = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())
                              if status != "success")
            failed = f" ({kinds})"
        best = ("no trial succeeded" if self.best is None else
                f"best validation NLL {self.best[0]:.4g} (trial {self.best[1]})")
        ended = "" if error is None else f" (stopped by {type(error).__name__})"
        return (f"search done{ended}: {self.n_finished} trials finished, {self.n_failed} "
                f"failed{failed}, in {_clock(time.monotonic() - self._start)}; {best}")
