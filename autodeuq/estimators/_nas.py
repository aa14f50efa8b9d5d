"""NASRegressor: search architectures and hyperparameters, keep the best Gaussian network."""

import math
import numbers

import numpy as np
from sklearn.pipeline import Pipeline

from ..evaluation import train_candidate
from ..evaluation._train import held_out_targets, network_config
from ..uncertainty import NormalMixture
from ._search_base import (
    SearchRegressorBase,
    makespan,
    recalibration_factor,
    recalibration_mode,
    refit_round,
    trial_seconds,
)

__all__ = ["NASRegressor"]


class NASRegressor(SearchRegressorBase):
    """Joint architecture and hyperparameter search for one Gaussian network.

    Candidates (MLP architectures joined with training hyperparameters) are trained on an
    inner training part and ranked by their NLL on a held-out validation part; they train in
    parallel on Dask workers, a new one starting the moment a worker frees. The best one is
    kept.

    Parameters
    ----------
    search_space : SearchSpace, dict or None, default=None
        The space to search; None is :func:`autodeuq.space.default_space`. A dict maps names
        to dimensions (``Int``, ``Float``, ``Categorical``), lists (choices) or constants.
    algorithm : str, Search or Search subclass, default="agebo"
        ``"random"``, ``"evolution"`` (aging evolution), ``"bo"`` (Bayesian optimization) or
        ``"agebo"`` (evolution for the architecture, BO for the training hyperparameters).
        A search object is copied at each fit, which leaves it as it was; it searches its own
        space (``search_space`` must then be None or that space).
    max_evals : int or None, default=50
        Candidates to train. The search stops at ``max_evals`` or ``time_budget``, whichever
        comes first.
    time_budget : float or None, default=None
        Seconds for the whole fit, from the search's start (the cluster is up) to the fitted
        model. The search stops starting candidates early enough to leave the refit the time
        it should take (as long as the best candidates took to train, scaled to all the data;
        never more than half the budget), and running candidates and refits stop at their
        deadline with their best weights so far. Not counted: checking the data and starting
        the cluster before, selection and recalibration after (seconds).
    n_jobs : int or None, default=None
        Worker processes of the embedded Dask cluster; None or -1 for every core.
    backend : {"dask", "serial"}, default="dask"
        ``"serial"`` trains candidates one at a time in this process: no cluster, and the
        same ``random_state`` gives the same result.
    scheduler : distributed.Client, str or None, default=None
        An existing Dask cluster: a ``Client``, a scheduler address or a scheduler-file path.
        None uses the active ``Client`` if there is one, else starts an embedded cluster on
        127.0.0.1 that ``fit`` closes.
    devices : None, "cpu" or list, default=None
        GPUs of the embedded cluster, one worker each (ints, ``"cuda:N"`` or MIG UUIDs). None
        uses every visible GPU, or the CPU when there is none.
    trials_per_device : int, default=1
        Candidates that train on one GPU at once, for networks too small to fill a GPU alone
        (each step of a small network is mostly Python overhead, so the GPU idles between
        steps). The embedded cluster starts that many worker processes per GPU (processes,
        not threads, so they do not share one GIL), each with ``1 / trials_per_device`` of
        the GPU as a Dask ``GPU`` resource; on an existing cluster whose workers offer a
        ``GPU`` resource, each candidate asks for ``1 / trials_per_device`` of one, so start
        the workers with ``--nthreads 2 --resources GPU=1`` for ``trials_per_device=2``.
        Each candidate hands the GPU memory it cached back when it ends. Up to the CPU cores
        per GPU pays for small networks (on an H200 with 16 cores, 8 trained 7.9 times as
        many candidates an hour as 1; each process holds a core and ~820 MiB of the GPU).
        On the CPU (no worker offers a ``GPU`` resource) it changes nothing.
    trial_timeout : float or None, default=None
        Seconds of training per candidate before it is recorded as ``"timeout"``.
    validation_fraction : float, default=0.2
        Part of the training data held out to rank candidates.
    refit : bool, default=True
        Train the best configuration again on all the data (on the search's workers, early
        stopping on a random tenth of it, as :class:`GaussianMLPRegressor` does), so the part
        held out to rank candidates is not lost to the final model. False keeps the searched
        network as trained.
    rescore_top : int, default=3
        With ``refit``, the best ``rescore_top`` candidates train once more on the data split
        anew before the winner is chosen, by the mean of its two validation NLLs: the single
        lowest score of many is partly luck (the winner's curse). 0 or 1 keeps the lowest.
    recalibrate : {"widen", "fit"} or bool, default="widen"
        Scale the kept network's std by one factor (``std_scale_``) that minimizes the NLL of
        its held-out predictions: the winner's on the validation part and, after rescoring,
        those of its second training on rows it did not train on (see
        :func:`autodeuq.uncertainty.fit_std_scale`). A single network trained on a small
        sample is often over- or under-confident about the noise; the mean is unchanged.
        ``"widen"`` applies the factor only when it is above 1, ``"fit"`` (or True) also
        narrows, False keeps the std as trained. Narrowing is not the default, for the reason
        given at :class:`AutoDEUQRegressor`: the points that picked the winner flatter it.
    interval_calibration : bool, default=True
        Calibrate :meth:`predict_interval` on the same held-out predictions (quantile
        recalibration, as :class:`AutoDEUQRegressor` does; see :meth:`calibrate_intervals`).
        The predictive distribution is not changed. False: the network's own quantiles.
    initial_configs : None, "default" or list of dict, default="default"
        Configurations the search evaluates first. ``"default"`` starts from
        :class:`GaussianMLPRegressor`'s defaults brought into the search space (a strong first
        guess); a list gives flat configurations of the space; None starts from scratch.
    checkpoint_dir : str, path or None, default=None
        Journal every finished trial there (a JSON line and its weights), in a subdirectory
        of its own per search (``search-`` and a fingerprint of the data and settings);
        fitting again with the same directory, data and settings resumes without repeating
        finished trials, so the folds of a cross-validation or grid search share one
        directory. One fit uses a search's journal at a time (an OS lock on its ``lock``
        file): another fit of the same search meanwhile is refused at once with a
        ``ValueError``.
    random_state : int, RandomState, Generator or None, default=None
    verbose : int, default=0
        Progress of the search. 0: silent. 1: a progress bar on stderr when it is a terminal
        (trials finished, running and failed, the best validation NLL so far, in the units of
        y), plain log lines instead when it is not (a batch job's log), the Dask dashboard's
        link, and a summary at the end. 2: also one line per trial. The lines go through
        :mod:`logging` (logger ``autodeuq.evaluation._progress``, INFO level); with no logging
        configured they are written to stderr.
    early_discard : None, "successive_halving", "one_epoch" or EarlyDiscard, default=None
        Stop training poor candidates early. ``"successive_halving"``: asynchronous
        successive halving over epochs (rungs at epochs 9, 27, 81, ...; a candidate goes on
        past a rung only if its best validation NLL so far is in the best third of those
        recorded there, once nine were). ``"one_epoch"``: the one-epoch pre-filter of Egele
        et al. (2023): a candidate trains on after its first epoch only if its validation NLL
        then is in the best fifth seen so far. :class:`autodeuq.evaluation.SuccessiveHalving` and
        :class:`autodeuq.evaluation.OneEpoch` set the rungs and fractions. A discarded
        candidate is recorded with status ``"discarded"`` and its partial validation NLL, and
        is never kept; the search algorithm is told that partial NLL. None trains every
        candidate to the end. Measured on UCI energy and concrete (``benchmarks/RESULTS.md``),
        discarding reached a full search's validation NLL in half its time against random
        search, but not reliably against AgEBO: the learning curves of Gaussian networks
        cross, so a slow start is not always a poor finish. Over five seeds each,
        ``"successive_halving"`` ended a fixed time with a lower best validation NLL on
        average than the full search; ``"one_epoch"`` with a higher one.
    security : distributed.security.Security or None, default=None
        TLS settings for the Dask connections: with ``scheduler`` an address or a scheduler
        file, the client connects with them (``Security(tls_ca_file=..., tls_client_cert=...,
        tls_client_key=..., require_encryption=True)``); with the embedded cluster, its
        scheduler and workers use them too (``Security.temporary()`` makes throw-away
        credentials, so no other user of the machine can connect to it). Ignored with a
        ``Client``, which has its own. Not written by :meth:`save` (it may hold keys); a
        pickle of the estimator holds it. See docs/security.md.

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        Input scaling, then the best network (a fitted :class:`GaussianMLPRegressor`).
    best_params_ : dict
        The best candidate's configuration (search-space keys).
    best_config_ : dict
        The same as a network configuration (layers and training hyperparameters).
    best_score_ : float
        Minus the best validation NLL, in the units of y (higher is better, like sklearn
        scores and DeepHyper objectives).
    search_results_ : pandas.DataFrame
        One row per trial: ``job_id``, ``p:``-prefixed configuration columns, ``objective``
        (minus validation NLL), ``valid_nll``, ``status``, ``start_time``, ``end_time``
        (seconds since the first trial started), ``duration``, ``worker``, ``n_epochs``,
        ``best_epoch``, ``discarded`` (stopped early, see ``early_discard``; its
        ``valid_nll`` is then the partial one), ``rung`` (rungs of early discarding it
        reached), ``attempts``, ``error``.
    search_time_ : float
        Wall time of the search, in seconds.
    refit_time_ : float
        Wall time of the refit, in seconds (0 without one).
    std_scale_ : float
        The recalibration factor on the kept network's std (1 without ``recalibrate``); the
        network in ``pipeline_`` applies it.
    rescored_ : list of dict
        Per rescored candidate: ``trial_id``, ``valid_nll`` (the search's), ``rescore_nll``
        (the second score) and ``mean_nll``; empty without rescoring.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    """

    def __init__(self, search_space=None, algorithm="agebo", max_evals=50, time_budget=None,
                 n_jobs=None, backend="dask", scheduler=None, devices=None, trials_per_device=1,
                 trial_timeout=None, validation_fraction=0.2, refit=True, rescore_top=3,
                 recalibrate="widen", interval_calibration=True, initial_configs="default",
                 checkpoint_dir=None, random_state=None, verbose=0, early_discard=None,
                 security=None):
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
        self.refit = refit
        self.rescore_top = rescore_top
        self.recalibrate = recalibrate
        self.interval_calibration = interval_calibration
        self.initial_configs = initial_configs
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose
        self.early_discard = early_discard
        self.security = security

    def _after_search_seconds(self, durations, slots, refit_rows):
        # The rescoring of the best rescore_top, then the refit of the winner (one of them,
        # taken as the slowest), each on all the data but a held-out part.
        if not self.refit:
            return 0.0
        if self.rescore_top <= 1:
            return refit_round(durations[0], refit_rows)
        best = durations[:self.rescore_top]
        return (makespan([refit_round(d, refit_rows) for d in best], slots)
                + refit_round(max(best), refit_rows))

    def fit(self, X, y):
        """Search, then keep the best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._check_bools("refit", "interval_calibration")
        if (not isinstance(self.rescore_top, numbers.Integral) or isinstance(self.rescore_top, bool)
                or self.rescore_top < 0):
            raise ValueError(f"rescore_top must be an int >= 0; got {self.rescore_top!r}. Use 0 "
                             "to keep the candidate with the best validation NLL as it is.")
        recalibration = recalibration_mode(self.recalibrate)
        best = {}

        def keep_best(result):
            # Only the best candidate's weights stay in memory.
            if result.ok and ("result" not in best or
                              result.objective < best["result"].objective):
                if "result" in best:
                    best["result"].drop_arrays()
                best["result"] = result
            else:
                result.drop_arrays()

        def finish(outcome, evaluator):
            winner = best["result"]
            self.rescored_ = []
            # The winner's predictions on rows it did not train on: (y, mean, var), in
            # standardized units, to recalibrate the network kept.
            held_out = [(outcome.data["y_valid"], winner.valid_mean, winner.valid_var)]
            if self.refit and self.rescore_top > 1:
                winner, again = self._rescore(outcome, evaluator)
                if winner.trial_id != best["result"].trial_id:  # its search arrays were dropped
                    held_out = []
                if again is not None and again.ok:
                    y_again = held_out_targets(outcome.data, self.validation_fraction,
                                               again.seed)
                    held_out.append((y_again, again.valid_mean, again.valid_var))
            std_scale, pits = 1.0, None
            if held_out:
                y_held, means, variances = (np.concatenate(part)
                                            for part in zip(*held_out, strict=True))
                y_held = y_held.astype(np.float64)
                predicted = NormalMixture(means[None], np.sqrt(variances)[None], np.ones(1))
                std_scale = recalibration_factor(recalibration, y_held, predicted)
                if self.interval_calibration:
                    pits = NormalMixture(predicted.means, predicted.stds * std_scale,
                                         predicted.weights).cdf(y_held)
            model = None
            if self.refit:
                [model] = self._refit_members(outcome, evaluator, [winner])
            if model is None:
                state = winner.state
                if state is None:  # a rescored winner other than the best: weights dropped
                    state = train_candidate(winner.config, outcome.data, winner.seed,
                                            trial_id=winner.trial_id).state
                model = self._member(outcome, winner, state)
            model.std_scale_ = std_scale
            model.interval_pits_ = None if pits is None else np.sort(pits)
            return outcome, winner, model

        outcome, winner, model = self._search(X, y, keep_best, finish)
        self.pipeline_ = Pipeline([("scale", outcome.x_scaler), ("model", model)])
        self.best_params_ = dict(winner.config)
        self.best_config_ = network_config(winner.config)
        self.best_score_ = -(winner.objective + math.log(outcome.y_scale))
        self.std_scale_ = model.std_scale_
        self.search_results_ = self._results_frame(outcome)
        self.search_time_ = outcome.wall_time
        return self

    def _rescore(self, outcome, evaluator):
        """The best of the ``rescore_top`` best candidates after a second, independent score.

        With many candidates, the one with the lowest validation NLL is partly the luckiest
        (the winner's curse). Each of the top ones trains again from a fresh seed on all the
        data split anew (the same validation fraction); the winner has the lowest mean of its
        two validation NLLs. A retraining that fails counts as infinitely bad.

        Returns the winner and the result of its second training (None when nothing was
        rescored).
        """
        ranked = sorted((r for r in outcome.results if r.ok), key=lambda r: r.objective)
        ranked = ranked[:self.rescore_top]
        # The rescoring ends early enough to leave the winner's refit (any of them: the
        # slowest) a round of its own.
        keep = refit_round(max(trial_seconds(r, untimed=self._untimed_seconds())
                               for r in ranked), outcome.refit_rows)
        if len(ranked) < 2 or self._out_of_time(outcome, keep=keep):
            return ranked[0], None  # nothing to rescore, or no time for it
        keep_until = None if outcome.deadline is None else outcome.deadline - keep
        again = self._retrain(outcome, evaluator, ranked, self.validation_fraction,
                              deadline=keep_until)
        log_scale = math.log(outcome.y_scale)
        scores = []
        for trial, result in zip(ranked, again, strict=True):
            second = result.objective if result.ok else math.inf
            scores.append((trial.objective + second) / 2)
            self.rescored_.append({"trial_id": int(trial.trial_id),
                                   "valid_nll": trial.objective + log_scale,
                                   "rescore_nll": second + log_scale,
                                   "mean_nll": scores[-1] + log_scale})
        best = int(np.argmin(scores))
        return ranked[best], again[best]
