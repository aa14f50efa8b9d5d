"""Progress of a search: silent at verbose=0, a bar on a terminal, log lines in a batch job."""

import io
import logging
import time
from dataclasses import dataclass

import numpy as np
import pytest

from autodeuq import AutoDEUQRegressor, NASRegressor
from autodeuq.estimators import SearchFailedError
from autodeuq.evaluation import SearchProgress, SerialEvaluator, TrialResult, run_search
from autodeuq.evaluation._progress import dashboard_link
from autodeuq.space import Float, Int

LOGGER = "autodeuq.evaluation._progress"

TINY_SPACE = {"num_layers": 1, "units_1": Int(4, 16), "learning_rate": Float(1e-3, 1e-1, log=True),
              "max_epochs": 15, "patience": 5}


def nas(**params):
    defaults = {"search_space": TINY_SPACE, "algorithm": "random", "max_evals": 3,
                "backend": "serial", "random_state": 0, "refit": False}
    return NASRegressor(**{**defaults, **params})


@dataclass(frozen=True)
class Trial:
    trial_id: int
    config: dict


class ListSearch:
    """Proposes the given configs in turn."""

    def __init__(self, configs):
        self.configs, self.next = list(configs), 0

    def ask(self):
        self.next += 1
        return Trial(self.next - 1, self.configs[(self.next - 1) % len(self.configs)])

    def tell(self, trial_id, objective, status):
        pass


def fake_task(config, data, seed, device="cpu", time_limit=None, trial_id=0, deadline=None,
              **options):
    """No training: the config says the outcome ({"status": ..., "objective": ...})."""
    if config.get("raise"):
        raise RuntimeError("the search broke")
    now = time.time()
    status = config.get("status", "success")
    return TrialResult(trial_id, config, status,
                       objective=config.get("objective") if status == "success" else None,
                       start=now - 0.5, end=now, worker="local:1",
                       error=None if status == "success" else "Traceback\nValueError: nan")


OUTCOMES = [{"objective": 1.0}, {"status": "diverged"}, {"objective": 0.25},
            {"status": "timeout"}, {"objective": 0.5}]


def fake_search(progress=None, configs=OUTCOMES, max_evals=5, **kwargs):
    with SerialEvaluator(task=fake_task) as evaluator:
        evaluator.start({})
        return run_search(ListSearch(configs), evaluator, np.random.SeedSequence(0),
                          max_evals=max_evals, progress=progress, **kwargs)


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def forget_logging_config(monkeypatch):
    """Logging as in a script that never configures it: pytest's handlers taken away (they
    are added just before the test's body runs, so this is called in the body)."""
    monkeypatch.setattr(logging.root, "handlers", [])


# -- run_search and SearchProgress, on a fake evaluator -------------------------------------


def test_run_search_without_progress_still_works():
    results = fake_search()
    assert [r.status for r in results] == ["success", "diverged", "success", "timeout",
                                           "success"]


def test_counts_failed_trials_and_the_best_in_y_units():
    progress = SearchProgress(0, offset=2.0)
    fake_search(progress)
    assert progress.n_finished == 5
    assert progress.n_failed == 2
    assert progress.statuses == {"success": 3, "diverged": 1, "timeout": 1}
    assert progress.best_nll == pytest.approx(2.25)
    assert progress.best == (pytest.approx(2.25), 2)
    assert progress.n_in_flight == 0


def test_non_tty_gives_plain_log_lines(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        fake_search(SearchProgress(1, stream=stream, tty=False, log_every=2))
    lines = messages(caplog)
    assert lines[0] == "search started: 5 trials"
    assert "search: 2/5 finished, 1 running, 1 failed, best validation NLL 1 [00:00]" in lines
    assert "search: 4/5 finished, 1 running, 2 failed, best validation NLL 0.25 [00:00]" in lines
    assert lines[-1].startswith("search done: 5 trials finished, 2 failed (1 diverged, 1 "
                                "timeout), in 00:00; best validation NLL 0.25 (trial 2)")
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)
    assert stream.getvalue() == ""  # no bar, and pytest's handlers took the lines


def test_verbose_2_adds_a_line_per_trial(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        fake_search(SearchProgress(2, stream=io.StringIO(), tty=False, offset=1.0))
    lines = messages(caplog)
    assert "trial 0: validation NLL 2 in 0.5s on local:1" in lines
    assert "trial 1: diverged (ValueError: nan) in 0.5s on local:1" in lines
    assert sum(line.startswith("trial ") for line in lines) == 5


def test_tty_shows_a_bar_with_the_counters(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        fake_search(SearchProgress(1, stream=stream, tty=True))
    screen = stream.getvalue()
    assert "search: 100%|" in screen
    assert "5/5 [" in screen
    assert "running=0, failed=2, best NLL=0.25]" in screen
    assert "running=1, failed=1, best NLL=1]" in screen  # while a trial runs
    lines = messages(caplog)
    assert not any(line.startswith("search: ") for line in lines)  # the bar replaces them
    assert lines[-1].startswith("search done: 5 trials finished, 2 failed")


def test_tty_time_budget_bar_shows_elapsed_of_budget():
    stream = io.StringIO()
    fake_search(SearchProgress(1, stream=stream, tty=True), max_evals=None, time_budget=0.05,
                configs=[{"objective": 0.5}])
    screen = stream.getvalue()
    assert "search: " in screen
    assert " finished [00:00 of 00:00, running=" in screen


def test_without_logging_config_lines_go_to_the_stream(monkeypatch):
    forget_logging_config(monkeypatch)
    stream = io.StringIO()
    fake_search(SearchProgress(1, stream=stream, tty=False, log_every=5))
    text = stream.getvalue()
    assert text.splitlines()[0] == "[autodeuq] search started: 5 trials"
    assert "[autodeuq] search done: 5 trials finished, 2 failed" in text
    # Logging is left as it was.
    assert logging.getLogger(LOGGER).level == logging.NOTSET
    assert logging.getLogger(LOGGER).handlers == []


def test_without_logging_config_tty_lines_go_above_the_bar(monkeypatch):
    forget_logging_config(monkeypatch)
    stream = io.StringIO()
    fake_search(SearchProgress(2, stream=stream, tty=True))
    text = stream.getvalue()
    assert "[autodeuq] trial 1: diverged" in text
    assert "5/5 [" in text
    assert text.rstrip().splitlines()[-1].startswith("[autodeuq] search done: 5 trials")


def test_users_console_handler_writes_above_the_bar(monkeypatch):
    forget_logging_config(monkeypatch)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.root.addHandler(handler)
    fake_search(SearchProgress(2, stream=stream, tty=True))
    assert handler.stream is stream  # given back
    assert "trial 1: diverged" in stream.getvalue()
    assert logging.getLogger(LOGGER).handlers == []  # the user's handler shows the lines


def test_verbose_0_logs_the_summary_at_debug_only(caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        fake_search(SearchProgress(0, stream=io.StringIO()))
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert records[0].getMessage().startswith("search done: 5 trials finished")
    assert capsys.readouterr() == ("", "")


def test_an_error_closes_the_bar_and_says_so(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER), \
            pytest.raises(RuntimeError, match="the search broke"):
        fake_search(SearchProgress(1, stream=stream, tty=True),
                    configs=[{"objective": 1.0}, {"raise": True}])
    assert messages(caplog)[-1].startswith(
        "search done (stopped by RuntimeError): 1 trials finished")


def test_resumed_trials_count(caplog):
    previous = [TrialResult(0, {}, "success", objective=0.1), TrialResult(1, {}, "lost")]
    progress = SearchProgress(1, previous=previous, stream=io.StringIO(), tty=False)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        fake_search(progress, max_evals=7, n_done=2)
    assert progress.n_finished == 7
    assert progress.statuses["lost"] == 1
    assert progress.best == (pytest.approx(0.1), 0)
    assert messages(caplog)[0] == "search started: 7 trials, 2 done before"
    # Told only how many were done before: none of them counts as failed.
    progress = SearchProgress(0)
    fake_search(progress, configs=[{"objective": 1.0}], max_evals=4, n_done=3)
    assert (progress.n_finished, progress.n_failed) == (4, 0)


def test_dashboard_link_is_logged_once(caplog):
    class Evaluator(SerialEvaluator):  # as DaskEvaluator exposes it
        dashboard_link = "http://127.0.0.1:8787/status"

    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER), Evaluator(task=fake_task) as evaluator:
        evaluator.start({})
        run_search(ListSearch(OUTCOMES), evaluator, np.random.SeedSequence(0), max_evals=2,
                   progress=SearchProgress(1, stream=stream, tty=True))
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Dask dashboard: http://127.0.0.1:8787/status") == 1
    assert dashboard_link(SerialEvaluator()) is None


def test_the_evaluator_s_advice_is_shown_once_with_the_progress(caplog):
    class Evaluator(SerialEvaluator):  # as DaskEvaluator sets it on a GPU machine
        advice = "trials_per_device=16 trains more"

    for verbose, expected in ((1, 1), (0, 0)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=LOGGER), Evaluator(task=fake_task) as ev:
            ev.start({})
            run_search(ListSearch(OUTCOMES), ev, np.random.SeedSequence(0), max_evals=2,
                       progress=SearchProgress(verbose, stream=io.StringIO(), tty=True))
        messages = [r.getMessage() for r in caplog.records]
        assert messages.count("trials_per_device=16 trains more") == expected


@pytest.mark.parametrize("verbose", [-1, 1.5, "yes", None])
def test_bad_verbose(verbose):
    with pytest.raises(ValueError, match="verbose must be an int >= 0"):
        SearchProgress(verbose)


# -- through the estimators (serial backend, tiny searches) ---------------------------------


def test_estimator_verbose_0_writes_nothing(regression_data, capfd, caplog):
    X, y, _, _ = regression_data
    with caplog.at_level(logging.INFO, logger="autodeuq"):
        nas(verbose=0).fit(X, y)
    assert capfd.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_estimator_verbose_1_in_a_batch_job(regression_data, caplog):
    X, y, _, _ = regression_data
    est = nas(verbose=1)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        est.fit(X, y)  # pytest's stderr is not a terminal
    lines = messages(caplog)
    assert lines[0] == "search started: 3 trials"
    assert any(line.startswith("search: 1/3 finished, 1 running, 0 failed, best validation "
                               "NLL ") for line in lines)
    table = est.search_results_
    best = table.loc[table["valid_nll"].idxmin()]  # the summary is in the units of y
    assert lines[-1].startswith("search done: 3 trials finished, 0 failed, in ")
    assert lines[-1].endswith(f"best validation NLL {best['valid_nll']:.4g} (trial "
                              f"{best['job_id']})")


def test_estimator_counts_diverged_trials(regression_data, caplog):
    X, y, _, _ = regression_data
    diverging = {**TINY_SPACE, "optimizer": "sgd", "learning_rate": 1e4}
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(SearchFailedError):
        nas(search_space=diverging, max_evals=2, verbose=1).fit(X, y)
    summary = messages(caplog)[-1]
    assert summary.startswith("search done: 2 trials finished, 2 failed (2 diverged)")
    assert summary.endswith("no trial succeeded")


def test_estimator_checks_verbose_before_searching(regression_data):
    X, y, _, _ = regression_data
    with pytest.raises(ValueError, match="verbose must be an int >= 0"):
        AutoDEUQRegressor(search_space=TINY_SPACE, max_evals=2, backend="serial",
                          verbose="loud").fit(X, y)
