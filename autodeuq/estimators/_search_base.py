"""What the searching estimators share: parameters, checks, and one search run on Dask."""

import contextlib
import copy
import heapq
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.preprocessing import StandardScaler

from .._checks import check_int, check_trials_per_device
from ..evaluation import (
    SerialEvaluator,
    fingerprint_parts,
    open_search,
    run_refits,
    run_search,
)
from ..evaluation._discard import RungTable, make_early_discard, search_outcome
from ..evaluation._loop import batch_tasks
from ..evaluation._progress import SearchProgress
from ..evaluation._train import network_config
from ..exceptions import AutoDEUQError, WorkersLostError
from ..search import Search, make_search
from ..space import Categorical, Int, SearchSpace, check_space, to_flat_config
from ..uncertainty import fit_std_scale
from ._base import (
    UncertaintyRegressorMixin,
    check_fitted,
    check_target,
    holdout_split,
    seed_sequence,
    target_scaling,
    validate_data,
)
from ._gaussian_mlp import GaussianMLPRegressor

__all__ = ["SearchFailedError", "SearchOutcome", "SearchRegressorBase"]

logger = logging.getLogger(__name__)

BACKENDS = ("dask", "serial")

#: Part of all the data a refit member holds out for early stopping (as GaussianMLPRegressor).
REFIT_HOLDOUT = 0.1
#: A refit whose held-out NLL is more than this (nats per point) above its searched network's
#: validation NLL is a failed refit: the searched network is kept.
REFIT_TOLERANCE = 1.0
#: Part of the training rows (those not held out for validation) that search candidates
#: early-stop on, so that the validation part only ranks them (see ``train_candidate``).
STOP_FRACTION = 0.1


class SearchFailedError(AutoDEUQError, RuntimeError):
    """No trial of a search succeeded, so there is no model to keep."""


@dataclass
class SearchOutcome:
    """One search: its trials and how the data were scaled for them."""

    results: list
    x_scaler: StandardScaler
    y_mean: float
    y_scale: float
    data: dict
    n_features: int
    wall_time: float
    refit_seeds: np.random.SeedSequence
    deadline: float | None = None  # Unix time the time budget ends: refits end there too
    refit_rows: float = 1.0  # rows a refit trains on over a search trial's
    journal_weights: Path | None = None  # Journal.weights_directory of this search


def refit_round(trial_seconds, refit_rows):
    """Expected seconds of a round of refits whose configurations took ``trial_seconds`` to
    train on a search trial's rows: scaled to the refit's rows, with a margin of half (a refit
    runs as long as its early stopping lets it)."""
    return 1.5 * trial_seconds * refit_rows


def rounds_seconds(seconds, slots):
    """Wall time of trainings lasting ``seconds``, ``slots`` at a time in the order given,
    each round waiting for its slowest before the next starts (as the rescoring runs)."""
    return float(sum(max(seconds[i:i + slots]) for i in range(0, len(seconds), max(1, slots))))


def makespan(seconds, slots):
    """Wall time of trainings lasting ``seconds`` on ``slots`` workers, each started on the
    first worker free, longest first (as the refit submits them): the longest-processing-
    time rule, within 4/3 of the best schedule."""
    ends = [0.0] * max(1, slots)
    for duration in sorted(seconds, reverse=True):
        heapq.heapreplace(ends, ends[0] + duration)
    return max(ends)


#: A task of ``b`` networks of one configuration trained together is expected to last
#: ``1 + BATCH_COST * (b - 1)`` times one network's time. Measured on UCI concrete's training
#: rows, one CPU thread, four configurations of the default space: 5 networks took 2.1-2.8
#: times one network's time, 10 networks 2.5-5.4 times.
BATCH_COST = 0.45


def batch_cost(b):
    """A task of ``b`` networks trained together, in networks trained alone
    (:data:`BATCH_COST`)."""
    return 1 + BATCH_COST * (b - 1)


def batch_seconds(tasks, b):
    """Expected seconds of a task of ``b`` networks of a configuration whose earlier tasks
    were ``tasks``, ``(networks, seconds)`` pairs: the longest of them, each scaled to ``b``
    networks. A smaller batch takes less by :data:`BATCH_COST` (a task of 5 networks as
    2.8 networks alone, 1 network as 1/2.8 of it); a larger one is scaled up linearly, as
    if no network shared the pass (a longer task risks the deadline, a shorter estimate
    only a network more)."""
    def scaled(n, seconds):
        if b > n:
            return seconds * b / n
        return seconds * batch_cost(b) / batch_cost(n)

    return max(scaled(n, seconds) for n, seconds in tasks)


def refits_seconds(seconds, keys, slots):
    """Expected wall time of refits each lasting ``seconds`` alone, of the configurations
    ``keys`` (one per network), trained as :func:`run_refits` trains them: a configuration's
    networks together (grouped as :func:`refit_tasks` groups them, each task as its slowest
    network times the batch's :data:`BATCH_COST`), on ``slots`` workers, longest first
    (:func:`makespan`)."""
    return makespan([max(seconds[i] for i in task) * batch_cost(len(task))
                     for task in batch_tasks(keys, slots)], slots)


def _positive_real(name, value, fix):
    if value is None:
        return
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a number of seconds > 0 or None; got {value!r}. {fix}")


class SearchRegressorBase(UncertaintyRegressorMixin, RegressorMixin, BaseEstimator):
    """Base of NASRegressor and AutoDEUQRegressor: see their docstrings for the parameters."""

    # -- checks ------------------------------------------------------------------------------

    def _check_search_params(self):
        check_int("max_evals", self.max_evals, "Give the number of candidates to train.",
                  allow_none=True)
        _positive_real("time_budget", self.time_budget, "Give the fit's wall time.")
        if self.max_evals is None and self.time_budget is None:
            raise ValueError("max_evals and time_budget must not both be None: the search would "
                             "never end. Set max_evals=50, time_budget=300, or both.")
        every_core = (isinstance(self.n_jobs, numbers.Integral)
                      and not isinstance(self.n_jobs, bool) and self.n_jobs == -1)
        if not every_core:  # -1.0 or True are no core counts
            check_int("n_jobs", self.n_jobs, "Use None or -1 for every core.", allow_none=True)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {self.backend!r}. Use "
                             "'dask' (parallel) or 'serial' (in process, reproducible).")
        if self.backend == "serial" and (self.scheduler is not None or self.devices not in (
                None, "cpu")):
            raise ValueError("backend='serial' runs in this process, so scheduler and devices "
                             f"must be None; got scheduler={self.scheduler!r}, devices="
                             f"{self.devices!r}. Use backend='dask'.")
        self._check_scheduler()
        self._check_devices()
        check_trials_per_device(self.trials_per_device)
        _positive_real("trial_timeout", self.trial_timeout, "Use None for no limit.")
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an int >= 0; got {self.verbose!r}. Use 0 (silent), "
                             "1 (a progress bar, or log lines in a batch job) or 2 (also a line "
                             "per trial).")
        fraction = self.validation_fraction
        if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
                or not 0.0 < fraction < 1.0):
            raise ValueError(f"validation_fraction must be in (0, 1): candidates are ranked on "
                             f"held-out data; got {fraction!r}. A typical value is 0.2.")
        self._check_checkpoint_dir()
        # Every value the space allows must make a network: refused now, not trial by trial.
        if not isinstance(self.algorithm, Search):
            return check_space(self.search_space)
        # A search object searches its own space: that is the one to check, and a different
        # search_space would be ignored.
        if self.search_space is not None and SearchSpace.coerce(
                self.search_space) != self.algorithm.space:
            raise ValueError(
                f"search_space must be None or the space of the search object given as "
                f"algorithm ({type(self.algorithm).__name__} searches its own space); got "
                "another space. Pass search_space=None, or build the search object on this "
                "space, e.g. algorithm=AgEBO(search_space).")
        return check_space(self.algorithm.space)

    def _check_checkpoint_dir(self):
        directory = self.checkpoint_dir
        if directory is None:
            return
        if not isinstance(directory, (str, os.PathLike)) or os.fspath(directory) == "":
            raise ValueError(f"checkpoint_dir must be a path or None; got {directory!r}. Pass "
                             "a directory path, e.g. 'search-checkpoints'.")
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"checkpoint_dir must be a directory (created when missing) or "
                             f"None; got {str(directory)!r}, which is a file. Pass the path "
                             "of a directory.")

    def _check_scheduler(self):
        """Refuse a ``scheduler`` that cannot name a cluster, before connecting to it."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        from distributed import Client
        from distributed.comm import parse_address
        from distributed.comm.addressing import parse_host_port

        from ..evaluation._dask import check_open_client, check_scheduler_file

        if isinstance(scheduler, Client):
            check_open_client(scheduler)
            return
        if not isinstance(scheduler, (str, os.PathLike)):
            raise TypeError(f"scheduler must be None, a distributed.Client, a scheduler address "
                            f"or a scheduler file's path; got {scheduler!r}. Pass e.g. "
                            "'tcp://10.0.0.5:8786', or None for an embedded cluster.")
        if os.path.isfile(scheduler):
            check_scheduler_file(scheduler)
            return
        try:
            protocol, location = parse_address(str(scheduler))
            if protocol != "inproc":
                parse_host_port(location)
        except ValueError as exc:
            raise ValueError(f"scheduler must be an existing scheduler file or a Dask scheduler "
                             f"address with its port; got {str(scheduler)!r} ({exc}). Pass e.g. "
                             "'tcp://10.0.0.5:8786', the file written by `dask scheduler "
                             "--scheduler-file`, or None for an embedded cluster.") from None

    def _check_security(self):
        if self.security is None:
            return
        from distributed.security import Security

        if not isinstance(self.security, Security):
            raise TypeError(f"security must be a distributed.security.Security or None; got "
                            f"{self.security!r}. Build one with Security(tls_ca_file=..., "
                            "tls_client_cert=..., tls_client_key=..., require_encryption=True), "
                            "or use Security.temporary() for an embedded cluster.")
        if self.backend == "serial":
            raise ValueError(f"backend='serial' runs in this process, so security must be None; "
                             f"got security={self.security!r}. Use backend='dask'.")

    def _check_bools(self, *names):
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {value!r}. Pass "
                                 f"{name}=True or {name}=False.")

    def _default_networks(self):
        """Trials of the default configuration ``initial_configs="default"`` starts with."""
        return 1

    def _initial_configs(self, space, seed):
        """The configurations the search starts from (validated in the space)."""
        if isinstance(self.initial_configs, str) and self.initial_configs == "default":
            # GaussianMLPRegressor's defaults, brought into the space: a strong first guess.
            rng = np.random.default_rng(seed)
            try:
                default = space.project(to_flat_config(GaussianMLPRegressor().get_config()),
                                        rng)
            except ValueError:
                return []
            return [default] * self._default_networks()
        if isinstance(self.initial_configs, (str, dict)) or not hasattr(self.initial_configs,
                                                                          "__iter__"):
            raise ValueError(f"initial_configs must be None, 'default' or a list of "
                             f"configurations; got {self.initial_configs!r}. Pass e.g. "
                             "[est.best_params_] or 'default'.")
        configs = list(self.initial_configs)
        for i, config in enumerate(configs):
            if not isinstance(config, Mapping):
                raise ValueError(f"initial_configs[{i}] must be a dict (a flat configuration of "
                                 f"the search space); got {config!r}. Pass e.g. "
                                 "[{'num_layers': 1, 'units_1': 64, ...}].")
            configs[i] = config = dict(config)
            try:
                space.validate(config)
            except ValueError as exc:
                raise ValueError(f"initial_configs[{i}] is not a configuration of the search "
                                 f"space: {exc}") from None
        return configs

    def _check_devices(self):
        devices = self.devices
        if devices is None or (isinstance(devices, str) and devices == "cpu"):
            return
        if isinstance(devices, (str, numbers.Integral)) or not hasattr(devices, "__iter__"):
            raise ValueError(f"devices must be None, 'cpu' or a list of GPUs (ints, 'cuda:N' or "
                             f"MIG/GPU UUIDs); got {devices!r}. Wrap one GPU in a list: [0].")
        devices = list(devices)
        if not devices:
            raise ValueError("devices must hold at least one GPU; got []. Use devices=None to "
                             "detect them or 'cpu' to use none.")
        indices = []
        for i, device in enumerate(devices):
            digits = device.removeprefix("cuda:") if isinstance(device, str) else None
            if isinstance(device, numbers.Integral) and not isinstance(device, bool) \
                    and device >= 0:
                indices.append(int(device))
            elif digits is not None and digits.isascii() and digits.isdigit():
                indices.append(int(digits))
            elif not (isinstance(device, str) and device.startswith(("GPU-", "MIG-"))):
                raise ValueError(f"devices[{i}] must be a GPU index >= 0, 'cuda:N' or a GPU or "
                                 f"MIG UUID ('GPU-...', 'MIG-...' as nvidia-smi -L lists them); "
                                 f"got {device!r}. Pass e.g. devices=[0, 1] or ['cuda:0'].")
        if self.scheduler is None:
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            for index in indices:
                if index >= count:
                    raise ValueError(f"devices={self.devices!r} names GPU {index}, but this "
                                     f"machine has {count} CUDA device(s). Use devices=None or "
                                     "'cpu', or indices below the count.")
            if count == 0:
                raise ValueError(f"devices={self.devices!r} names GPUs, but this machine has no "
                                 "CUDA device. Use devices=None or 'cpu'.")

    # -- the search --------------------------------------------------------------------------

    def _make_evaluator(self):
        if self.backend == "serial":
            return SerialEvaluator(trial_timeout=self.trial_timeout)
        from ..evaluation import DaskEvaluator

        return DaskEvaluator(n_workers=None if self.n_jobs in (None, -1) else self.n_jobs,
                             scheduler=self.scheduler, devices=self.devices,
                             trials_per_device=self.trials_per_device,
                             trial_timeout=self.trial_timeout, security=self.security)

    def _search(self, X, y, on_result, finish):
        """Validate, scale, split, then run the search; ``on_result`` sees every trial.

        ``finish(outcome, evaluator)`` builds the fitted model while the workers are still up
        (to refit members on them) and its value is returned.
        """
        space = self._check_search_params()
        self._check_security()
        discard = make_early_discard(self.early_discard)
        self._warn_unreachable_rungs(discard, space)
        check_target(y)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        n = len(X)
        n_valid = math.ceil(self.validation_fraction * n)
        if n_valid < 2 or n - n_valid < 2:
            raise ValueError(f"X has {n} sample(s); validation_fraction="
                             f"{self.validation_fraction} must leave at least 2 to train on "
                             f"and 2 to rank candidates on; got n_samples = {n}. Pass more "
                             "samples.")
        split_seq, search_seq, trial_seq, refit_seq = seed_sequence(self.random_state).spawn(4)
        train, valid = holdout_split(n, n_valid, split_seq)
        # Fitted on the column names too, so that pipeline_ alone checks them as fit does.
        x_scaler = StandardScaler()
        Xs = x_scaler.fit_transform(self._named(X)).astype(np.float32)
        y_mean, y_scale = target_scaling(y[train])
        ys = ((y - y_mean) / y_scale).astype(np.float32)
        data = {"X_train": Xs[train], "y_train": ys[train], "X_valid": Xs[valid],
                "y_valid": ys[valid]}
        # Candidates early-stop on a tenth of their training rows, not on the validation
        # part: a score read at the epoch chosen on the same points is optimistic, the more
        # so the noisier the candidate's curve, and selection would favour luck. (Too few
        # rows to spare: they early-stop on the validation part.)
        n_stop = math.ceil(STOP_FRACTION * len(train))
        if len(train) - n_stop >= 2:
            fit, stop = holdout_split(len(train), n_stop, split_seq.spawn(1)[0])
            data.update(X_train=Xs[train[fit]], y_train=ys[train[fit]],
                        X_stop=Xs[train[stop]], y_stop=ys[train[stop]])
        # A search object given is copied: fit leaves its parameters as they were (each fit
        # starts from the object as given, not from where the last fit left it).
        algorithm = (copy.deepcopy(self.algorithm) if isinstance(self.algorithm, Search)
                     else self.algorithm)
        search = make_search(algorithm, space, int(search_seq.generate_state(1)[0]))
        if self.initial_configs is not None:
            for config in self._initial_configs(space, search_seq):
                search.enqueue(config)

        journal, done, finished = None, [], []
        rung_table = None if discard is None else RungTable(discard)
        with contextlib.ExitStack() as held:
            if self.checkpoint_dir is not None:
                settings = {"space": space.to_dict(), "algorithm": _algorithm_key(self.algorithm),
                            "seed": [int(s) for s in trial_seq.generate_state(4)],
                            "scaling": [x_scaler.mean_.tolist(), x_scaler.scale_.tolist(),
                                        y_mean, y_scale]}
                if discard is not None:  # its rung values are only comparable under one policy
                    settings["early_discard"] = discard.to_dict()
                # The journal of this search (of these data and settings) in its own
                # subdirectory, locked until this fit ends: a second fit of the same search is
                # refused at once rather than interleaving its trials into this journal.
                journal = held.enter_context(
                    open_search(self.checkpoint_dir, *fingerprint_parts(data, settings)))
                done = journal.load(with_arrays=False)
                for result in done:  # arrays one trial at a time: on_result may drop them
                    search.add(result.trial_id, result.config, *search_outcome(result))
                    if rung_table is not None:
                        rung_table.record(result)
                    on_result(journal.read_arrays(result))

            # (objective, duration) of every successful trial: what the time budget keeps
            # for the refit is sized by the training time of the best of them.
            timed = [(r.objective, r.duration) for r in done if r.ok]

            def record(result):
                if journal is not None:
                    journal.append(result)
                finished.append(result.trial_id)
                if result.ok:
                    timed.append((result.objective, result.duration))
                on_result(result)

            refit_rows = (1 - REFIT_HOLDOUT) * n / len(data["X_train"])

            def reserve(slots):
                return self._time_reserve(timed, slots, refit_rows)

            # Checks verbose before a cluster starts; run_search starts and closes it.
            progress = SearchProgress(self.verbose, offset=math.log(y_scale), previous=done)
            start = time.monotonic()
            with self._make_evaluator() as evaluator:
                try:
                    evaluator.start(data)
                    deadline = (None if self.time_budget is None
                                else time.time() + self.time_budget)
                    results = run_search(search, evaluator, trial_seq, max_evals=self.max_evals,
                                         time_budget=self.time_budget, on_result=record,
                                         n_done=len(done), progress=progress,
                                         rung_table=rung_table, reserve=reserve)
                except WorkersLostError as exc:  # say what is kept and how to go on
                    exc.args = (f"{exc} {self._resume_hint(len(done) + len(finished))}",)
                    raise
                outcome = SearchOutcome(results=done + results, x_scaler=x_scaler,
                                        y_mean=y_mean, y_scale=y_scale, data=data,
                                        n_features=X.shape[1],
                                        wall_time=time.monotonic() - start,
                                        refit_seeds=refit_seq, deadline=deadline,
                                        refit_rows=refit_rows,
                                        journal_weights=None if journal is None
                                        else journal.weights_directory)
                self._check_some_succeeded(outcome)
                self.refit_time_ = 0.0  # _refit_members sets it when there is a refit
                return finish(outcome, evaluator)

    def _after_search_seconds(self, durations, slots, refit_rows):
        """Seconds of training after the search (rescoring, refit) on ``slots`` workers,
        given the successful trials' search times, best candidate first (never empty); a
        refit trains on ``refit_rows`` times a search trial's rows. Subclasses that train
        after the search say: none here."""
        return 0.0

    def _warn_unreachable_rungs(self, discard, space):
        """Warn when no candidate of ``space`` trains long enough to meet the first rung of
        the early-discarding policy ``discard``: it would discard nothing."""
        dimension = None if discard is None else space.dimensions.get("max_epochs")
        if isinstance(dimension, Int):
            most = dimension.high
        elif isinstance(dimension, Categorical):
            most = max((c for c in dimension.choices if isinstance(c, numbers.Real)),
                       default=None)
        else:  # no discarding, or max_epochs not searched (the network's default)
            return
        first = discard.rung_epochs()[0]
        if most is not None and most < first:
            warnings.warn(
                f"early_discard={self.early_discard!r} has its first rung at epoch {first}, but "
                f"the search space trains at most {most} epoch(s) (max_epochs): no candidate "
                f"will be discarded. Pass early_discard=SuccessiveHalving(min_epochs=1) "
                f"(autodeuq.evaluation) for rungs within {most} epoch(s), or None.",
                UserWarning, stacklevel=3)

    def _time_reserve(self, timed, slots, refit_rows):
        """Seconds of the time budget the search keeps free for what follows it:
        :meth:`_after_search_seconds` of the candidates so far, each as long as it took to
        train in the search, never more than half the budget (the search always has the
        other half). Before any trial has succeeded, a trial counts as
        :meth:`_untimed_seconds`."""
        if self.time_budget is None:
            return 0.0
        ranked = [duration for _, duration in sorted(timed, key=lambda pair: pair[0])
                  if np.isfinite(duration)] or [self._untimed_seconds()]
        return min(self._after_search_seconds(ranked, max(1, slots), refit_rows),
                   self.time_budget / 2)

    def _untimed_seconds(self):
        """The search time a trial without one is taken to have had: a thirtieth of the
        time budget (0 without one)."""
        return 0.0 if self.time_budget is None else self.time_budget / 30

    def _resume_hint(self, n_finished):
        """How to recover from a search cut short, with or without ``checkpoint_dir``."""
        if self.checkpoint_dir is not None:
            return (f"The {n_finished} trial(s) finished so far are kept in checkpoint_dir="
                    f"{str(self.checkpoint_dir)!r}: fit again with the same checkpoint_dir and "
                    "data to resume without repeating them.")
        return (f"The {n_finished} trial(s) finished so far are lost with this fit: set "
                "checkpoint_dir to keep finished trials on disk and resume after such a "
                "failure.")

    @staticmethod
    def _results_frame(outcome):
        """One row per trial, in the layout of DeepHyper's results.csv."""
        import pandas as pd

        results = sorted(outcome.results, key=lambda r: r.trial_id)
        origin = min((r.start for r in results if np.isfinite(r.start)), default=0.0)
        rows = []
        for r in results:
            nll = None if r.objective is None else r.objective + math.log(outcome.y_scale)
            rows.append({
                "job_id": r.trial_id,
                **{f"p:{k}": v for k, v in r.config.items()},
                "objective": None if nll is None else -nll,
                "valid_nll": nll,
                "status": r.status,
                "start_time": r.start - origin,
                "end_time": r.end - origin,
                "duration": r.duration,
                "worker": r.worker,
                "n_epochs": r.n_epochs,
                "best_epoch": r.best_epoch,
                "discarded": r.status == "discarded",
                "rung": len(r.rung_nlls),
                "attempts": r.attempts,
                "error": r.error,
            })
        return pd.DataFrame(rows)

    @staticmethod
    def _member(outcome, trial, state):
        """A fitted GaussianMLPRegressor from a trial (``TrialResult`` or catalogue entry).

        It predicts in y units from inputs scaled by ``outcome.x_scaler``; nothing is
        retrained.
        """
        return GaussianMLPRegressor._from_trained(
            network_config(trial.config), state, n_features=outcome.n_features,
            y_mean=outcome.y_mean, y_scale=outcome.y_scale, n_epochs=trial.n_epochs,
            best_epoch=trial.best_epoch,
            validation_nll=trial.objective + math.log(outcome.y_scale))

    @staticmethod
    def _retrain(outcome, evaluator, trials, holdout, deadline=None, longest_first=False,
                 together=True, tasks=None):
        """Train each trial's configuration again on all the data split anew (``holdout`` of
        it to early-stop on), from fresh seeds, ending at ``deadline`` (default: the time
        budget's) at the latest; the results, in order. ``longest_first`` submits the
        trainings in the order of the trials' search times, longest first (see
        :func:`makespan`); the seeds go by position in ``trials`` all the same, so that a fit
        is reproduced however long its candidates took. ``together`` trains the refits of
        one configuration in one batched pass (see :func:`run_refits`); ``tasks``, a list,
        gets ``(positions in trials, seconds)`` for each task that ran."""
        seeds = [int(s.generate_state(1)[0]) for s in outcome.refit_seeds.spawn(len(trials))]
        order = list(range(len(trials)))
        if longest_first:
            order.sort(key=lambda i: -trial_seconds(trials[i]))
        formed = []
        results = [None] * len(trials)
        for i, result in zip(order, run_refits(
                evaluator, [trials[i].config for i in order], [seeds[i] for i in order],
                holdout, deadline=outcome.deadline if deadline is None else deadline,
                together=together, tasks=formed), strict=True):
            results[i] = result
        if tasks is not None:
            tasks.extend(([order[k] for k in task], results[order[task[0]]].duration)
                         for task in formed)
        return results

    def _refit_members(self, outcome, evaluator, trials, tasks=None):
        """Each trial's configuration trained again on all the data, as fitted members.

        They train in parallel on the search's workers, each early-stopping on its own
        random tenth of the data (like the members of :class:`DeepEnsembleRegressor`), so the
        part held out to rank candidates is not lost to the final model. A new seed can
        diverge, or land far worse than the searched network (``REFIT_TOLERANCE``): such a
        refit trains once more from another seed when the time budget leaves room for the
        round it took; one that fails again (or fails otherwise, or never starts) keeps the
        searched network instead, with a warning. Refits of one configuration train together
        in one batched pass (:func:`run_refits`); those trained again, each alone.

        ``tasks``, a list, gets ``(positions in trials, seconds)`` for each training task
        that ran (see :meth:`_retrain`).

        Returns
        -------
        list of GaussianMLPRegressor or None
            None where the refit failed.
        """
        if self._out_of_time(outcome):
            warnings.warn(f"time_budget={self.time_budget!r} s ran out before the refit, so the "
                          "searched networks are kept (trained without the validation part). "
                          "Raise time_budget to leave the refit time.", RuntimeWarning,
                          stacklevel=3)
            return [None] * len(trials)
        start = time.monotonic()
        ran = []
        refits = self._retrain(outcome, evaluator, trials, REFIT_HOLDOUT, longest_first=True,
                               tasks=ran)
        unlucky = [i for i, (trial, refit) in enumerate(zip(trials, refits, strict=True))
                   if unlucky_refit(trial, refit)]
        took = max((r.duration for r in refits if np.isfinite(r.duration)), default=0.0)
        if unlucky and not self._out_of_time(outcome, keep=took):
            logger.info("refitting %d network(s) again from other seeds: %s", len(unlucky),
                        "; ".join(f"trial {trials[i].trial_id} ({refits[i].status})"
                                  for i in unlucky))
            again = self._retrain(outcome, evaluator, [trials[i] for i in unlucky],
                                  REFIT_HOLDOUT, together=False)
            for i, refit in zip(unlucky, again, strict=True):
                refit.attempts = refits[i].attempts + 1
                refits[i] = refit
                unlucky_refit(trials[i], refit)
        self.refit_time_ = time.monotonic() - start
        if tasks is not None:
            tasks.extend(ran)
        members, failed = [], []
        for trial, refit in zip(trials, refits, strict=True):
            if refit.ok:  # described by the searched configuration
                refit.config = trial.config
                members.append(self._member(outcome, refit, refit.state))
            else:
                reason = (refit.error or "").strip().splitlines()[-1:]
                seeds = f"{refit.attempts} seeds; " if refit.attempts > 1 else ""
                failed.append(f"trial {trial.trial_id} ({seeds}{refit.status}: "
                              f"{''.join(reason)})")
                members.append(None)
        if failed:
            warnings.warn(f"refitting {len(failed)} of {len(trials)} network(s) on all the data "
                          f"failed, so their searched networks are kept: {'; '.join(failed)}."
                          " A time budget that ran out before a refit started is raised "
                          "with time_budget.", RuntimeWarning, stacklevel=3)
        return members

    @staticmethod
    def _out_of_time(outcome, keep=0.0):
        """Whether the fit's time budget has run out, or has less than ``keep`` seconds left
        (no time for a refit or a rescoring)."""
        return outcome.deadline is not None and time.time() >= outcome.deadline - keep

    def _check_some_succeeded(self, outcome):
        if not outcome.results and self.time_budget is not None:
            raise SearchFailedError(
                f"time_budget={self.time_budget!r} seconds ran out before any trial finished, "
                "so there is no model. Raise time_budget: a trial takes from a fraction of a "
                "second to minutes, and an embedded cluster takes seconds to start.")
        if not any(r.ok for r in outcome.results):
            errors = [f"trial {r.trial_id}: {r.status}: {(r.error or '').splitlines()[-1:]}"
                      for r in outcome.results[:3]]
            raise SearchFailedError(
                f"none of the {len(outcome.results)} trials succeeded, so there is no model. "
                f"First errors: {errors}. Check the search space and the data, or raise "
                "trial_timeout.")

    # -- prediction --------------------------------------------------------------------------

    def predict_distribution(self, X):
        """Predict the distribution of y for every row of X (see ``pipeline_``).

        Returns
        -------
        autodeuq.uncertainty.NormalMixture
        """
        X = self._final_input(X)  # checks that it is fitted before pipeline_ is read
        return self.pipeline_[-1].predict_distribution(X)

    def predict_interval(self, X, coverage=0.9):
        X = self._final_input(X)
        return self.pipeline_[-1].predict_interval(X, coverage)

    predict_interval.__doc__ = UncertaintyRegressorMixin.predict_interval.__doc__

    def calibrate_intervals(self, X, y):
        # The levels live in pipeline_[-1].interval_pits_: the pipeline alone predicts the
        # same intervals.
        check_fitted(self, "pipeline_")
        check_target(y)
        X, y = validate_data(self, X, y, reset=False, y_numeric=True, dtype=np.float64)
        self.pipeline_[-1].calibrate_intervals(self.pipeline_[:-1].transform(self._named(X)), y)
        return self

    calibrate_intervals.__doc__ = UncertaintyRegressorMixin.calibrate_intervals.__doc__

    def _final_input(self, X):
        """``X`` checked, then transformed by the pipeline's steps before its last."""
        check_fitted(self, "pipeline_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.pipeline_[:-1].transform(self._named(X))

    def _named(self, X):
        """``X``, checked, as a DataFrame of the column names fit saw (as is, without them):
        what ``pipeline_``'s scaler was fitted on."""
        names = getattr(self, "feature_names_in_", None)
        return X if names is None else pd.DataFrame(X, columns=names, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.backend != "serial"
        return tags


def _algorithm_key(algorithm):
    """What the journal's fingerprint knows of ``algorithm``: a name or class as its repr, a
    search object by its class (its repr counts the trials told, which a fit changes)."""
    if isinstance(algorithm, Search):
        return repr(type(algorithm))
    return repr(algorithm)


def trial_seconds(trial, untimed=0.0):
    """A trial's (or catalogue entry's) training time; ``untimed`` when it was not timed."""
    return trial.duration if np.isfinite(trial.duration) else untimed


def unlucky_refit(trial, refit):
    """Whether a refit failed in a way another seed may well avoid: it diverged, or it
    landed far worse than the searched network (then marked failed, so that it is not
    used). A network stuck near the mean has not diverged, but far worse on its held-out
    tenth than the searched network was on the validation part, it would spoil the
    mixture."""
    if refit.ok and refit.objective > trial.objective + REFIT_TOLERANCE:
        refit.status, refit.error = "failed", (
            f"held-out NLL {refit.objective:.3f} against the searched network's "
            f"{trial.objective:.3f} (standardized units)")
        return True
    return refit.status == "diverged"


def recalibration_factor(mode, y, predictions):
    """The factor on the stds that ``recalibrate`` (as :func:`recalibration_mode` reads it)
    asks for, from held-out ``y`` and ``predictions`` (a NormalMixture): 1 when off."""
    if mode is None:
        return 1.0
    return fit_std_scale(y, predictions, widen_only=mode == "widen")


def recalibration_mode(value):
    """``recalibrate`` as "widen", "fit" or None (off); True is "fit"."""
    if isinstance(value, bool | np.bool_):
        return "fit" if value else None
    if isinstance(value, str) and value in ("widen", "fit"):
        return value
    raise ValueError(f"recalibrate must be 'widen', 'fit', True or False; got {value!r}. Use "
                     "'widen' (the default) to correct overconfidence only, or False to keep "
                     "the stds as trained.")
