"""AutoDEUQRegressor: search, keep a catalogue of every candidate, select a deep ensemble."""

import logging
import math
import numbers
import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.pipeline import Pipeline

from ..ensemble import Catalogue, make_selector
from ..evaluation import refit_tasks, train_candidate
from ..evaluation._train import Resplit, held_out_targets, network_config
from ..space._space import config_key
from ..uncertainty import NormalMixture, nll, transfer_pits
from ._deep_ensemble import DeepEnsembleRegressor
from ._search_base import (
    REFIT_HOLDOUT,
    STOP_FRACTION,
    SearchFailedError,
    SearchRegressorBase,
    batch_seconds,
    makespan,
    recalibration_factor,
    recalibration_mode,
    refit_round,
    refits_seconds,
    rounds_seconds,
    trial_seconds,
    unlucky_refit,
)

__all__ = ["AutoDEUQRegressor"]

logger = logging.getLogger(__name__)


class _Pool(NamedTuple):
    """What the rescoring gives the second selection."""

    rows: np.ndarray  # catalogue index of each candidate (a seeds' group: its first seed's)
    y: np.ndarray  # the targets selection scores on
    means: np.ndarray  # (candidates, n) or (candidates, networks, n)
    variances: np.ndarray
    objectives: np.ndarray  # each candidate's NLL there
    groups: dict  # candidate position -> catalogue indices of a configuration's seeds


class AutoDEUQRegressor(SearchRegressorBase):
    """Automated deep ensemble with uncertainty quantification (AutoDEUQ).

    A joint search over MLP architectures and training hyperparameters (as
    :class:`NASRegressor`) trains candidates on Dask workers; every successful candidate
    joins a catalogue with its predictions on the held-out validation part; then
    ``ensemble_size`` members are selected by the validation NLL of the mixture they form
    (greedy selection with replacement, Caruana et al. 2004, as in Egele et al. 2022). Then
    each selected configuration is trained again on all the data (``refit``), so the part
    held out for selection is not lost to the final ensemble.

    The prediction is the members' weighted Gaussian mixture; its variance splits exactly into
    aleatoric (``sum w sigma^2``) and epistemic (``sum w (mu - mean)^2``) parts.

    Parameters
    ----------
    search_space, algorithm, max_evals, time_budget, n_jobs, backend, scheduler, devices, \
trials_per_device, trial_timeout, validation_fraction, checkpoint_dir, random_state, \
verbose, early_discard, security
        As for :class:`NASRegressor`.
    initial_configs : None, "default" or list of dict, default="default"
        As for :class:`NASRegressor`, but ``"default"`` evaluates the default network as
        ``ensemble_size`` trials (at most a tenth of ``max_evals``), each from its own seed:
        the deep ensemble ``DeepEnsembleRegressor()`` builds, trained and scored like the
        other candidates, so that selection sees what averaging seeds of it gains (one trial
        cannot show that) and keeps it, or part of it, unless the validation NLL finds
        better.
    ensemble_size : int, default=5
        Most distinct members (K). A search that yields fewer successful candidates gives an
        ensemble of those, with a ``UserWarning``.
    selection : {"greedy", "bagged", "topk"} or Selector, default="greedy"
        ``"greedy"``: forward selection with replacement on the mixture's validation NLL
        (weights = counts / total), stopping when the NLL stops improving or K distinct
        members are reached. ``"bagged"``: greedy selection on bootstrap resamples of the
        validation points, each candidate's weight averaged over them, the K largest kept
        (:class:`autodeuq.ensemble.BaggedSelector`): weights less fitted to the noise of a
        few hundred validation points (on seven pools of UCI concrete, energy and yacht, no
        reliable difference from ``"greedy"``: ``benchmarks/RESULTS.md``). ``"topk"``: the
        K candidates with the best individual validation NLL, equal weights. Or any
        :class:`autodeuq.ensemble.Selector`.
    rescore_top : int, default=10
        Before selecting, the ``rescore_top`` candidates with the best validation NLL, and
        those a selection on the search's validation part picks, train once more from fresh
        seeds on a second split of all the data, shared by all of them; the ensemble is then
        selected from those candidates on both validation parts together. With a few hundred
        candidates, the best single score on one validation part is partly luck (the
        winner's curse): a configuration must do well twice to be chosen. 0 selects on the
        search's validation part alone. It costs ``ceil(rescore_top / n_jobs)`` rounds of
        training, kept out of ``time_budget`` like the refit's; with a budget, a round
        starts only if it and the refit still fit (``rescored_`` shows what was rescored).
        The configuration with several successful trials from their own seeds (the
        default network's, from ``initial_configs="default"``) is rescored too, first, as
        that many networks trained together, and is one more candidate
        of the selection: the equal mixture of its seeds on both parts, refitted as
        networks of its configuration where selected. Its networks gain more from their
        averaging than a single trial of each candidate can show: on UCI concrete, 20
        default networks instead of 5 lowered the test NLL from 2.854 to 2.785 (three
        splits, two seeds; ``benchmarks/RESULTS.md``).
    rescore_networks : int, default=1
        Networks each rescored candidate trains on the second split, from independent seeds,
        together in one batched pass (:func:`autodeuq.nn.train_networks`). With 1, the
        ensemble is selected on both validation parts together. With more, each candidate
        is scored as its networks' equal mixture (what the refit makes of a configuration
        it selects with a large weight) and the ensemble is selected on the second split
        alone, the search's part having chosen the pool. On UCI energy split 0 the
        search's validation NLL of its twelve best candidates did not rank the test NLL of
        five refitted networks of each (Spearman 0.04), their NLL as four networks on a
        second split did (0.71); but in a 300-s budget, where each rescoring then costs up
        to that many trainings, three networks gave no better test NLL on energy and
        concrete (``benchmarks/RESULTS.md``), so 1 is the default.
    max_in_memory : int, default=50
        Candidates whose weights stay in memory (the best ones); the others keep only their
        validation predictions, so memory stays bounded in a long search. A selected member
        whose weights were dropped is read back from ``checkpoint_dir`` when set, else
        trained again from its seed (the same weights on the CPU).
    refit : bool, default=True
        Train each selected configuration again on all the data, in parallel on the search's
        workers, each member early-stopping on its own random tenth of it (as the members of
        :class:`DeepEnsembleRegressor` do). ``ensemble_size`` networks are trained: a
        configuration selected with a large weight gets several, from independent seeds,
        trained together in one batched pass (as few such tasks as keep every worker busy).
        On the UCI benchmarks this lowers the test NLL clearly: the validation part is a
        fifth of the data. False keeps the searched networks as trained (the AutoDEUQ
        paper's way) and needs no extra training time.
    max_networks : int or None, default=20
        With ``refit``, when ``time_budget`` stopped the search (before ``max_evals``): the
        time the refit leaves before the budget's end trains more networks of the selected
        configurations, from fresh seeds, in rounds of as many networks as are expected to
        fit before it (a configuration's networks trained together in one batched pass, in
        a fraction of their time one after another), up to ``max_networks`` in all; each
        next network goes to the
        configuration with the largest weight per network, and a configuration's weight is
        shared among its networks. More networks average out more of each seed's error: a
        :class:`DeepEnsembleRegressor` of 10 networks instead of 5 lowered the test NLL on
        UCI concrete by 0.05 (splits 0-2, two seeds), 20 on energy by 0.06. The search's
        reserve and the rescoring keep time for ``min(max_networks, 2 * ensemble_size)``
        networks (see ``benchmarks/RESULTS.md``: 10 networks of the selected
        configurations instead of 5 gained most of what 20 did). A search that ran its
        ``max_evals`` ends there, with the refit's ``ensemble_size`` networks, as without a
        time budget; so does None (or ``ensemble_size`` or less).
    recalibrate : {"widen", "fit"} or bool, default="widen"
        Scale every member's std by one factor fitted on the validation part (the NLL of the
        searched ensemble there; see :func:`autodeuq.uncertainty.fit_std_scale`); the means,
        so the epistemic part, are unchanged. ``"widen"`` applies the factor only when it is
        above 1 (overconfident members); ``"fit"`` (or True) also narrows; False leaves the
        stds as trained. Narrowing is not the default: the factor is fitted on the points
        that selected the members, which look better there than they are, and a narrower
        std costs without bound at a test point far from every mean. Over twelve searches on
        UCI energy and concrete (50 candidates each, greedy selection, searched members), the
        summed test NLL was 18.35 without recalibration, 18.77 with ``"fit"`` and 18.00 with
        ``"widen"``.
    interval_calibration : bool, default=True
        Calibrate :meth:`predict_interval` on the same validation predictions (quantile
        recalibration, see :meth:`calibrate_intervals`): the interval of a given coverage
        then takes the predictive quantiles whose interval held that coverage of the
        validation points. The predictive distribution is not changed. The validation
        predictions are the searched members'; with ``refit``, the refitted ensemble (more
        networks, so more spread: a mixture of more networks is wider for its errors)
        predicts, and the levels are moved by its spread on the validation rows
        (:func:`autodeuq.uncertainty.transfer_pits`). On UCI energy and concrete (splits
        0-2, 120-s searches) the 90% intervals of the mixture held 0.965 and 0.912 of the
        test points on average, the calibrated ones 0.909 and 0.874, about 7-21% narrower.
        False: the mixture's own quantiles.

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        Input scaling, then a fitted :class:`DeepEnsembleRegressor` holding the members.
    members_ : list of dict
        Per member network of ``pipeline_``: ``trial_id`` (the searched candidate whose
        configuration it has), ``weight``, ``valid_nll`` (that candidate's alone, units of y)
        and ``config`` (the network configuration, readable). With ``refit``, a configuration
        selected with a large weight appears several times (networks from independent seeds
        sharing its weight) and there are ``ensemble_size`` networks in all, or up to
        ``max_networks`` where a time budget left the time for more.
    validation_nll_ : float
        The selected (searched, not refitted) ensemble's mixture NLL on the validation part
        it was selected on, in the units of y, after recalibration: with rescoring, the
        second split's (each candidate as its ``rescore_networks`` networks), or both parts'
        with ``rescore_networks=1``.
    rescored_ : list of dict
        Per rescored candidate: ``trial_id``, ``valid_nll`` (the search's) and
        ``rescore_nll`` (on the second split, the mixture of its ``rescore_networks``
        networks; None when its training failed), units of y; empty without rescoring.
        The seeds of one configuration rescored as their ensemble (see ``rescore_top``)
        have ``trial_id`` None, ``trial_ids`` (its trials) and ``networks`` (those that
        trained on the second split), their mixtures' NLLs on both parts.
    std_scale_ : float
        The recalibration factor on the members' stds (1 without ``recalibrate``).
    search_results_ : pandas.DataFrame
        One row per trial, as :attr:`NASRegressor.search_results_`, with a ``selected``
        column (the member's weight, 0 if not selected) and a ``rescore_nll`` column (NaN
        for a candidate not rescored).
    n_candidates_ : int
        Successful candidates in the catalogue.
    search_time_ : float
        Wall time of the search, in seconds.
    refit_time_ : float
        Wall time of the refit, in seconds (0 without one).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    """

    def __init__(self, search_space=None, algorithm="agebo", max_evals=100, time_budget=None,
                 n_jobs=None, backend="dask", scheduler=None, devices=None, trials_per_device=1,
                 trial_timeout=None, validation_fraction=0.2, ensemble_size=5, selection="greedy",
                 rescore_top=10, rescore_networks=1, max_in_memory=50, refit=True,
                 max_networks=20, recalibrate="widen", interval_calibration=True,
                 initial_configs="default", checkpoint_dir=None, random_state=None, verbose=0,
                 early_discard=None, security=None):
        self.search_space = search_space
        self.algorithm = algorithm
        self.max_evals = max_evals
        self.time_budget = time_budget
        self.n_jobs = n_jobs
        self.backend = backend
        self.scheduler = scheduler
        self.devices = devices
        self.trials_per_device = trials_per_device
        self.trial_timeout = trial_timeout
        self.validation_fraction = validation_fraction
        self.ensemble_size = ensemble_size
        self.selection = selection
        self.rescore_top = rescore_top
        self.rescore_networks = rescore_networks
        self.max_in_memory = max_in_memory
        self.refit = refit
        self.max_networks = max_networks
        self.recalibrate = recalibrate
        self.interval_calibration = interval_calibration
        self.initial_configs = initial_configs
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose
        self.early_discard = early_discard
        self.security = security

    def _after_search_seconds(self, durations, slots, refit_rows):
        # As the rescoring gate estimates it once the search is over, with the best
        # candidates standing for the first selection's picks: the rescoring of the best
        # rescore_top, a round of `slots` at a time on a split as large as the search's, then
        # the planned networks (_planned_networks) of the best ensemble_size configurations.
        # Greedy selection starts from the best candidate and often gives it several of
        # the networks, so each counts as long as the best one's at least.
        # A rescoring of several networks trained together is counted as that many trainings
        # (batched, small networks take less: three took 2.9 times one network's time over
        # eight random configurations of the default space on energy, 1.3 for small ones).
        networks = self.rescore_networks
        rescoring = (rounds_seconds([networks * d for d in durations[:self.rescore_top]], slots)
                     if self.rescore_top else 0.0)
        if not self.refit:
            return rescoring
        # The networks of one configuration train together (refits_seconds); time is kept
        # for the planned networks, ensemble_size configurations at most.
        distinct = min(len(durations), self.ensemble_size)
        keys = [i % distinct for i in range(self._planned_networks())]
        refits = [refit_round(max(durations[0], durations[k]), refit_rows) for k in keys]
        return rescoring + refits_seconds(refits, keys, slots)

    def fit(self, X, y):
        """Search, then select the ensemble from the catalogue of candidates.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        for name, least, example in (("ensemble_size", 1, 5), ("max_in_memory", 1, 50),
                                     ("rescore_top", 0, 10), ("rescore_networks", 1, 3)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an int >= {least}; got {value!r}. Pass e.g. "
                                 f"{name}={example}.")
        self._check_bools("refit", "interval_calibration")
        if self.max_networks is not None and (
                not isinstance(self.max_networks, numbers.Integral)
                or isinstance(self.max_networks, bool) or self.max_networks < 1):
            raise ValueError(f"max_networks must be None or an int >= 1; got "
                             f"{self.max_networks!r}. Pass e.g. max_networks=20, or None for "
                             "ensemble_size networks.")
        recalibration = recalibration_mode(self.recalibrate)
        selector = make_selector(self.selection, self.ensemble_size)
        self._check_checkpoint_dir()
        catalogue = Catalogue(max_in_memory=self.max_in_memory)

        def finish(outcome, evaluator):
            # Dropped weights are read back from the search's journal, if any.
            catalogue.directory = outcome.journal_weights
            y_valid = outcome.data["y_valid"].astype(np.float64)
            means, variances = catalogue.valid_means(), catalogue.valid_vars()
            objectives = catalogue.objectives
            indices, weights = selector.select(y_valid, means, variances, objectives)
            pool = self._rescore(outcome, evaluator, catalogue, indices, weights, means,
                                 variances)
            groups = {}  # position among the selected -> catalogue indices of its seeds
            if pool is not None:  # select again, among the rescored, on both parts
                y_valid = pool.y
                chosen, weights = selector.select(y_valid, pool.means, pool.variances,
                                                  pool.objectives)
                indices = pool.rows[chosen]
                means, variances = pool.means[chosen], pool.variances[chosen]
                groups = {k: pool.groups[int(c)] for k, c in enumerate(chosen)
                          if int(c) in pool.groups}
            else:
                means, variances = means[indices], variances[indices]
            selected = _entries(catalogue, indices)
            # The searched members' mixture on the validation part(s): what selection scored
            # (a rescored candidate of several networks as their equal mixture).
            mixture = _mixture(means, variances, weights)
            std_scale = recalibration_factor(recalibration, y_valid, mixture)
            if groups and not self.refit:  # a configuration's seeds: each of its networks
                selected, weights = _expand(catalogue, selected, weights, groups)
            if not self.refit:
                members = [self._member(outcome, entry, _weights(catalogue, entry, outcome.data))
                           for entry in selected]
                return outcome, selected, weights, members, (y_valid, mixture), std_scale
            # A configuration selected with a large weight (greedy selection adds it again
            # and again) is refitted as several networks from independent seeds and holdouts,
            # sharing its weight: ensemble_size networks in all, a real ensemble even when one
            # configuration dominates the validation NLL.
            owners = self._refit_owners(weights)
            entries, tasks = [selected[i] for i in owners], []
            members = self._refit_members(outcome, evaluator, entries, tasks)
            members = [member if member is not None else
                       self._member(outcome, entry, _weights(catalogue, entry, outcome.data))
                       for member, entry in zip(members, entries, strict=True)]
            more, more_members = self._more_networks(outcome, evaluator, selected, weights,
                                                     owners, tasks)
            owners, members = owners + more, members + more_members
            # Each configuration's weight shared among its networks.
            counts = np.bincount(owners, minlength=len(selected))
            entries = [selected[i] for i in owners]
            weights = np.array([weights[i] / counts[i] for i in owners])
            return outcome, entries, weights, members, (y_valid, mixture), std_scale

        def add(result):
            catalogue.add(result)
            # The catalogue keeps what it needs (weights of the best only); the result, kept
            # in the search's trial list, must not hold every candidate's arrays.
            result.drop_arrays()

        self.rescored_ = []
        outcome, entries, weights, members, (y_valid, mixture), std_scale = self._search(
            X, y, add, finish)
        log_scale = math.log(outcome.y_scale)
        described = [{"trial_id": int(entry.trial_id), "weight": float(weight),
                      "valid_nll": entry.objective + log_scale,
                      "config": network_config(entry.config)}
                     for entry, weight in zip(entries, weights, strict=True)]
        scaled = NormalMixture(mixture.means, mixture.stds * std_scale, mixture.weights)
        ensemble = DeepEnsembleRegressor._from_fitted(members, weights, outcome.n_features,
                                                      std_scale=std_scale)
        if self.interval_calibration:
            # The intervals' levels from the same held-out predictions, those of the searched
            # members; the refitted ensemble (the same configurations, more networks, so
            # more spread) predicts, so they are moved by its spread on the validation rows
            # (transfer_pits). It trained on those rows, where its networks agree more than
            # on new ones: never moved outwards.
            pits = scaled.cdf(y_valid)
            if self.refit:
                pits = transfer_pits(pits, y_valid, scaled,
                                     ensemble.predict_distribution(outcome.data["X_valid"]),
                                     narrow_only=True)
            ensemble.interval_pits_ = np.sort(pits)
        self.pipeline_ = Pipeline([("scale", outcome.x_scaler), ("ensemble", ensemble)])
        self.members_ = described
        self.validation_nll_ = nll(y_valid, scaled) + log_scale
        self.std_scale_ = std_scale
        table = self._results_frame(outcome)
        selected = {}
        for m in described:
            selected[m["trial_id"]] = selected.get(m["trial_id"], 0.0) + m["weight"]
        table["selected"] = table["job_id"].map(selected).fillna(0.0)
        table["rescore_nll"] = table["job_id"].map(
            {r["trial_id"]: r["rescore_nll"] for r in self.rescored_}).astype(float)
        self.search_results_ = table
        self.n_candidates_ = len(catalogue)
        self.search_time_ = outcome.wall_time
        if self.n_candidates_ < self.ensemble_size:  # documented: ensemble_size is a maximum
            warnings.warn(
                f"ensemble_size={self.ensemble_size} but the search produced "
                f"{self.n_candidates_} successful candidate(s), so the ensemble has at most "
                f"{self.n_candidates_} distinct configuration(s)"
                f"{' (refit trains ensemble_size networks of them)' if self.refit else ''}. "
                "Raise max_evals or time_budget, or lower ensemble_size.",
                UserWarning, stacklevel=2)
        return self

    def _default_networks(self):
        # The deep ensemble DeepEnsembleRegressor() would build, as distinct candidates of
        # their own seeds: selection sees what averaging seeds of the default network gains
        # (one trial of it cannot show that), and keeps that ensemble, or part of it, unless
        # the validation NLL finds better. At most a tenth of max_evals.
        if self.max_evals is None:
            return self.ensemble_size
        return max(1, min(self.ensemble_size, self.max_evals // 10))

    def _refit_owners(self, weights, n=None):
        """The refit's networks as indices of the selected configurations (of ``weights``):
        each as many times as :func:`_allocate` gives it, ``n`` (``ensemble_size``) in all."""
        return _owners(_allocate(weights, max(n or self.ensemble_size, len(weights))))

    def _planned_networks(self, outcome=None):
        """Networks the time after the search is kept for: with a time budget and
        ``max_networks``, twice ``ensemble_size`` (at most ``max_networks``), trained as
        the refit and then the first rounds of :meth:`_more_networks`; else, or once the
        search's ``outcome`` shows it ran its ``max_evals`` (no more networks then),
        ``ensemble_size``. Measured with the searched configurations and weights of 300-s
        fits on UCI concrete and energy (``benchmarks/RESULTS.md``, four splits, two
        seeds): their 10 networks instead of 5 lowered the test NLL by 0.039 on average
        (from +0.02 to -0.09 by split), 20 instead of 10 by 0.011 more; a configuration's
        networks train together, so the second five cost less than the first."""
        if (self.refit and self.time_budget is not None and self.max_networks is not None
                and (outcome is None or not self._searched_all(outcome))):
            return max(self.ensemble_size, min(self.max_networks, 2 * self.ensemble_size))
        return self.ensemble_size

    def _searched_all(self, outcome):
        """Whether the search ended on ``max_evals`` (not on the time budget)."""
        return self.max_evals is not None and len(outcome.results) >= self.max_evals

    def _more_networks(self, outcome, evaluator, selected, weights, owners, tasks):
        """More networks of the ``selected`` configurations, in the time the refit left.

        When the time budget stopped the search (not ``max_evals``) and ``max_networks`` is
        above the refit's count, the next networks go each to the configuration with the
        largest weight per network (as ``_allocate`` does) and train from fresh seeds, those
        of one configuration together in one batched pass (:func:`run_refits`), in rounds:
        each round the most networks whose expected time fits before the deadline, up to
        ``max_networks`` in all. A task of ``b`` networks of a configuration is expected to
        take as long as its slowest task so far (``tasks``: ``(positions in owners,
        seconds)`` of the refit's, then of each round's) scaled to ``b`` networks
        (:func:`batch_seconds`: down by the batch's cost where fewer, so that one network
        more still fits where a whole task would not; up in proportion where more), with the
        refit's margin of half; a configuration never timed counts as the slowest one. A
        network that fails, diverges or lands far worse than its searched one is left out.

        Returns
        -------
        more : list of int
            The new networks' configurations, as indices into ``selected``.
        members : list of GaussianMLPRegressor
        """
        more, members = [], []
        took = {}  # configuration -> [(networks, seconds)] of its tasks

        def timed(ran, configuration):  # ran: (positions, seconds) of tasks
            for positions, seconds in ran:
                if np.isfinite(seconds):
                    took.setdefault(configuration[positions[0]], []).append(
                        (len(positions), seconds))

        timed(tasks, owners)
        if (self.max_networks is None or outcome.deadline is None
                or self._searched_all(outcome) or not took):  # not took: no refit ran
            return more, members
        slowest = max(took.values(), key=lambda runs: max(s for _, s in runs))

        def expected(i, b):
            return batch_seconds(took.get(i, slowest), b)

        counts = np.bincount(owners, minlength=len(selected))
        slots = max(1, evaluator.n_workers)
        start = time.monotonic()
        while counts.sum() < self.max_networks:
            for size in range(self.max_networks - int(counts.sum()), 0, -1):
                added = np.array(_allocate(weights, int(counts.sum()) + size, counts))
                batch = _owners(added - counts)  # a configuration's networks side by side
                need = 1.5 * makespan([expected(batch[t[0]], len(t)) for t in refit_tasks(
                    [selected[i].config for i in batch], slots)], slots)
                if not self._out_of_time(outcome, keep=need):
                    break
            else:
                break  # not one more network fits
            counts = added
            entries, ran = [selected[i] for i in batch], []
            results = self._retrain(outcome, evaluator, entries, REFIT_HOLDOUT, tasks=ran)
            timed(ran, batch)
            for i, entry, result in zip(batch, entries, results, strict=True):
                if unlucky_refit(entry, result) or not result.ok:
                    logger.info("an extra network of trial %d is left out (%s)",
                                entry.trial_id, result.status)
                    continue
                result.config = entry.config
                more.append(i)
                members.append(self._member(outcome, result, result.state))
        if more:
            logger.info("trained %d more network(s) in the time the refit left", len(more))
        self.refit_time_ += time.monotonic() - start
        return more, members

    def _rescore(self, outcome, evaluator, catalogue, indices, weights, means, variances):
        """Score the best candidates a second time, on a second split of all the data.

        The ``rescore_top`` candidates with the best validation NLL and those the first
        selection picked (``indices`` into the catalogue, with their ``weights``; the
        catalogue's validation ``means`` and ``variances`` are given) train again from
        fresh seeds (``rescore_networks`` networks each), all on one :class:`Resplit` of the
        data (the search's validation fraction), so their second validation predictions are
        on common points. Candidates whose second training failed leave the pool.

        Returns
        -------
        _Pool or None
            Catalogue indices of the rescored candidates, and for them the targets,
            predictions and NLLs to select on: with ``rescore_networks > 1`` on the second
            split alone, predictions of shape ``(n, rescore_networks, n_valid)``; with 1, on
            both validation parts together (the search's, then the second) and the mean of
            the two NLLs, the configuration of several seeds last as their equal mixture
            (``groups``; every candidate then repeated to a common network count); None
            when nothing was rescored (``rescore_top=0``, fewer than two candidates, or no
            time left for two: with ``time_budget``, only as many as the time left before
            the refit's share allows are rescored, the first selection's picks first).
        """
        if not self.rescore_top:
            return None
        order = np.argsort(catalogue.objectives, kind="stable")
        pool = list(dict.fromkeys([*(int(i) for i in indices),
                                   *(int(i) for i in order[:self.rescore_top])]))
        split = Resplit(self.validation_fraction, STOP_FRACTION,
                        int(outcome.refit_seeds.spawn(1)[0].generate_state(1)[0]),
                        networks=self.rescore_networks)
        entries = _entries(catalogue, pool)
        # The pool starts with the first selection's picks, in the order of their weights;
        # room is kept for the networks planned of them.
        planned = self._planned_networks(outcome)
        refit = ([entries[i] for i in self._refit_owners(weights, planned)]
                 if self.refit else [])
        # The configuration trained from several seeds (the default network's, from
        # initial_configs="default") is rescored first, as that many networks together.
        group = _seed_group(catalogue) if self.rescore_networks == 1 else []
        group_entries = _entries(catalogue, group)
        group_again = self._rescore_seeds(outcome, evaluator, group_entries, split, refit)
        again = self._rescore_rounds(outcome, evaluator, entries, split, refit)
        pool, entries = pool[:len(again)], entries[:len(again)]
        if len(again) + bool(group_again) < 2:
            return None
        log_scale = math.log(outcome.y_scale)
        kept = []
        for position, (entry, result) in enumerate(zip(entries, again, strict=True)):
            self.rescored_.append({"trial_id": int(entry.trial_id),
                                   "valid_nll": entry.objective + log_scale,
                                   "rescore_nll": (result.objective + log_scale if result.ok
                                                   else None)})
            if result.ok:
                kept.append(position)
        seeds = [r for r in group_again if r.ok]
        y_second = held_out_targets(outcome.data, split).astype(np.float64)
        if seeds:
            seed_means = np.stack([r.valid_mean for r in seeds]).astype(np.float64)
            seed_vars = np.stack([r.valid_var for r in seeds]).astype(np.float64)
            group_nlls = (nll(outcome.data["y_valid"], _mixture(means[group], variances[group],
                                                                np.ones(len(group)))),
                          nll(y_second, _mixture(seed_means, seed_vars, np.ones(len(seeds)))))
            self.rescored_.append({
                "trial_id": None, "trial_ids": [int(e.trial_id) for e in group_entries],
                "networks": len(seeds), "valid_nll": group_nlls[0] + log_scale,
                "rescore_nll": group_nlls[1] + log_scale})
        if len(kept) + bool(seeds) < 2:
            logger.info("rescoring kept %d candidate(s): selecting on the search's validation "
                        "part alone", len(kept) + bool(seeds))
            return None
        rows = np.array([pool[k] for k in kept], dtype=np.intp)
        second_means = np.stack([again[k].valid_mean for k in kept]).astype(np.float64)
        second_vars = np.stack([again[k].valid_var for k in kept]).astype(np.float64)
        if split.networks > 1:
            # Each candidate as the networks the refit would make of it, on points none of
            # them trained on; the search's part, where the pool was chosen, would bring
            # back the winner's curse and the one-network score.
            objectives = np.array([again[k].objective for k in kept])
            return _Pool(rows, y_second, second_means, second_vars, objectives, {})
        y = np.concatenate([outcome.data["y_valid"].astype(np.float64), y_second])
        means_both = np.concatenate([means[rows], second_means], axis=1)
        variances_both = np.concatenate([variances[rows], second_vars], axis=1)
        objectives = np.array([(entries[k].objective + again[k].objective) / 2 for k in kept])
        if not seeds:
            return _Pool(rows, y, means_both, variances_both, objectives, {})
        # The seeds as one more candidate, their equal mixture on each part: every
        # candidate as m networks (a single one repeated), m a multiple of both counts.
        m = math.lcm(len(group), len(seeds))
        group_means = np.concatenate([np.repeat(means[group], m // len(group), axis=0),
                                      np.repeat(seed_means, m // len(seeds), axis=0)], axis=1)
        group_vars = np.concatenate([np.repeat(variances[group], m // len(group), axis=0),
                                     np.repeat(seed_vars, m // len(seeds), axis=0)], axis=1)
        means_both = np.concatenate([np.repeat(means_both[:, None], m, axis=1),
                                     group_means[None]])
        variances_both = np.concatenate([np.repeat(variances_both[:, None], m, axis=1),
                                         group_vars[None]])
        return _Pool(np.append(rows, group[0]), y, means_both, variances_both,
                     np.append(objectives, sum(group_nlls) / 2), {len(rows): list(group)})

    def _rescore_seeds(self, outcome, evaluator, seeds, split, refit):
        """Train the configuration of ``seeds`` (catalogue entries of its trials) again as
        that many networks on ``split``, together, if they and the refit of ``refit`` still
        fit before the deadline (one configuration's networks as :func:`refits_seconds`
        expects them, each the longest seed's search time); the results, or [] (no seeds,
        or no room)."""
        if not seeds:
            return []
        slots = max(1, evaluator.n_workers)
        copies = [seeds[0]] * len(seeds)
        deadline = None
        if outcome.deadline is not None:
            seconds = max(trial_seconds(e, untimed=self._untimed_seconds()) for e in seeds)
            deadline = _before_refit(outcome, refit, lambda e: trial_seconds(
                e, untimed=seconds), slots)
            # One configuration's networks, trained together as the refit trains them.
            need = refits_seconds([seconds] * len(copies), [0] * len(copies), slots)
            if deadline - time.time() < need:
                return []
        return self._retrain(outcome, evaluator, copies, split, deadline=deadline)

    def _rescore_rounds(self, outcome, evaluator, entries, split, refit):
        """Train ``entries`` again on ``split``, a round of ``n_workers`` at a time, while the
        time budget leaves room for the round and, after it, for the refit of ``refit`` (the
        first selection's networks: what the refit trains if that selection stands). Before
        the first round, room for as many rounds as two candidates need: one rescored alone
        is compared with nothing.

        A rescoring is expected to last as long as the candidate's search trial (a split as
        large as the search's) times ``split.networks``, the refit of a configuration
        :func:`refit_round` of it, the refit's networks running as :func:`refits_seconds`
        expects (a configuration's together, ``n_workers`` tasks at a time); every estimate
        is scaled by the rescorings' time so far over what was expected of them, summed (at
        least 1: on kin8nm a refit round once took 65 s where the search predicted 40;
        summed, as one network's time varies with its seed: on concrete single rescorings
        took from 0.3 to 1.1 times their search trial's). Returns the results, in order, for
        a prefix of ``entries``.
        """
        slots = max(1, evaluator.n_workers)
        timed = [e.duration for e in [*entries, *refit] if np.isfinite(e.duration)]
        # An entry not timed (a result without its clock) counts as the typical one.
        typical = float(np.median(timed)) if timed else self._untimed_seconds()

        def seconds(entry):
            return trial_seconds(entry, untimed=typical)

        def rescoring(entry):  # its networks counted as that many trainings
            return split.networks * seconds(entry)

        took = expected = 0.0  # the rescorings' time so far, and what was expected of them
        results = []
        for start in range(0, len(entries), slots):
            chunk = entries[start:start + slots]
            slower = max(1.0, took / expected) if expected > 0 else 1.0
            deadline = None
            if outcome.deadline is not None:
                deadline = _before_refit(outcome, refit, seconds, slots, slower)
                ahead = chunk if results else entries[:max(2, slots)]
                need = slower * rounds_seconds([rescoring(e) for e in ahead], slots)
                if deadline - time.time() < need:
                    break  # no room: the rest keep their search score only
            chunk_results = self._retrain(outcome, evaluator, chunk, split, deadline=deadline)
            results.extend(chunk_results)
            for entry, result in zip(chunk, chunk_results, strict=True):
                if result.ok and np.isfinite(result.duration):
                    took, expected = took + result.duration, expected + rescoring(entry)
        return results


def _mixture(means, variances, weights):
    """The mixture of candidates with ``weights``, each one network (2-D ``means``) or the
    equal mixture of several (3-D, networks along axis 1)."""
    if means.ndim == 3:
        n_networks = means.shape[1]
        weights = np.repeat(np.asarray(weights) / n_networks, n_networks)
        means = means.reshape(-1, means.shape[-1])
        variances = variances.reshape(-1, variances.shape[-1])
    return NormalMixture(means, np.sqrt(variances), weights)


def _before_refit(outcome, refit, seconds, slots, slower=1.0):
    """When a rescoring must end for the refit of ``refit`` (entries, each expected to train
    ``slower`` times ``seconds(entry)``, its search time, scaled by :func:`refit_round`) to
    fit before the time budget's deadline, as :func:`refits_seconds` expects it to run."""
    return outcome.deadline - refits_seconds(
        [refit_round(slower * seconds(e), outcome.refit_rows) for e in refit],
        [e.trial_id for e in refit], slots)


def _entries(catalogue, indices):
    """The catalogue's entries at positions ``indices`` (in :attr:`Catalogue.trial_ids`
    order)."""
    trial_ids = catalogue.trial_ids
    return [catalogue.get(trial_ids[i]) for i in indices]


def _seed_group(catalogue):
    """Catalogue indices of the configuration with the most successful trials, each from
    its own seed (at least two; the first to appear where several have as many), in trial
    order; [] where every configuration was trained once."""
    groups = {}
    for i, trial_id in enumerate(catalogue.trial_ids):
        groups.setdefault(config_key(catalogue.get(trial_id).config), []).append(i)
    best = max(groups.values(), key=len, default=[])
    return best if len(best) >= 2 else []


def _expand(catalogue, selected, weights, groups):
    """The selected entries with each group of seeds (``groups``: position -> catalogue
    indices) replaced by its trials, its weight shared equally among them."""
    entries, shares = [], []
    for k, (entry, weight) in enumerate(zip(selected, weights, strict=True)):
        trials = _entries(catalogue, groups[k]) if k in groups else [entry]
        entries += trials
        shares += [weight / len(trials)] * len(trials)
    return entries, np.array(shares)


def _owners(counts):
    """Per network, the index of its configuration: ``[0, 0, 1]`` for counts ``[2, 1]``."""
    return [i for i, c in enumerate(counts) for _ in range(c)]


def _allocate(weights, n, counts=None):
    """Networks per selected configuration: at least one each (or ``counts`` to go on
    from), ``n`` in all, in proportion to the weights (each next network goes to the largest
    weight per network, as in the D'Hondt apportionment)."""
    counts = np.ones(len(weights), dtype=int) if counts is None else np.array(counts)
    weights = np.asarray(weights)
    for _ in range(n - int(counts.sum())):
        counts[np.argmax(weights / counts)] += 1
    return counts.tolist()


def _weights(catalogue, entry, data):
    """A member's weights: from memory or the journal, else trained again from its seed.

    Weights beyond ``max_in_memory`` are dropped when there is no ``checkpoint_dir``; the
    trial is then repeated in this process, which on the CPU gives the same weights.
    """
    try:
        return catalogue.state(entry.trial_id)
    except RuntimeError:
        logger.info("retraining trial %d: its weights were not kept in memory",
                    entry.trial_id)
    result = train_candidate(entry.config, data, entry.seed, trial_id=entry.trial_id)
    if not result.ok:
        raise SearchFailedError(f"trial {entry.trial_id} could not be trained again for the "
                                f"ensemble ({result.status}: {result.error}). Set "
                                "checkpoint_dir to keep every candidate's weights on disk.")
    return result.state
