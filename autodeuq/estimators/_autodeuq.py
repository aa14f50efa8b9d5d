"""AutoDEUQRegressor: search, keep a catalogue of every candidate, select a deep ensemble."""

import logging
import math
import numbers
from pathlib import Path

import numpy as np
from sklearn.pipeline import Pipeline

from ..ensemble import Catalogue, make_selector
from ..evaluation import train_candidate
from ..evaluation._train import network_config
from ..uncertainty import NormalMixture, nll
from ._deep_ensemble import DeepEnsembleRegressor
from ._search_base import SearchFailedError, SearchRegressorBase

__all__ = ["AutoDEUQRegressor"]

logger = logging.getLogger(__name__)


class AutoDEUQRegressor(SearchRegressorBase):
    """Automated deep ensemble with uncertainty quantification (AutoDEUQ).

    A joint search over MLP architectures and training hyperparameters (as
    :class:`NASRegressor`) trains candidates on Dask workers; every successful candidate
    joins a catalogue with its predictions on the held-out validation part; then
    ``ensemble_size`` members are selected by the validation NLL of the mixture they form
    (greedy selection with replacement, Caruana et al. 2004, as in Egele et al. 2022). The
    members are used as trained: nothing is retrained.

    The prediction is the members' weighted Gaussian mixture; its variance splits exactly into
    aleatoric (``sum w sigma^2``) and epistemic (``sum w (mu - mean)^2``) parts.

    Parameters
    ----------
    search_space, algorithm, max_evals, time_budget, n_jobs, backend, scheduler, devices, \
trial_timeout, validation_fraction, initial_configs, checkpoint_dir, random_state, verbose
        As for :class:`NASRegressor`.
    ensemble_size : int, default=5
        Most distinct members (K).
    selection : {"greedy", "topk"} or Selector, default="greedy"
        ``"greedy"``: forward selection with replacement on the mixture's validation NLL
        (weights = counts / total), stopping when the NLL stops improving or K distinct
        members are reached. ``"topk"``: the K candidates with the best individual validation
        NLL, equal weights. Or any :class:`autodeuq.ensemble.Selector`.
    max_in_memory : int, default=50
        Candidates whose weights stay in memory (the best ones); the others keep only their
        validation predictions, so memory stays bounded in a long search. A selected member
        whose weights were dropped is read back from ``checkpoint_dir`` when set, else
        trained again from its seed (the same weights on the CPU).

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        Input scaling, then a fitted :class:`DeepEnsembleRegressor` holding the members.
    members_ : list of dict
        Per member: ``trial_id``, ``weight``, ``valid_nll`` (alone, units of y) and ``config``
        (the network configuration, readable).
    validation_nll_ : float
        The selected ensemble's mixture NLL on the validation part, in the units of y.
    search_results_ : pandas.DataFrame
        One row per trial, as :attr:`NASRegressor.search_results_`, with a ``selected``
        column (the member's weight, 0 if not selected).
    n_candidates_ : int
        Successful candidates in the catalogue.
    search_time_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    """

    def __init__(self, search_space=None, algorithm="agebo", max_evals=100, time_budget=None,
                 n_jobs=None, backend="dask", scheduler=None, devices=None, trial_timeout=None,
                 validation_fraction=0.2, ensemble_size=5, selection="greedy",
                 max_in_memory=50, initial_configs="default", checkpoint_dir=None,
                 random_state=None, verbose=0):
        self.search_space = search_space
        self.algorithm = algorithm
        self.max_evals = max_evals
        self.time_budget = time_budget
        self.n_jobs = n_jobs
        self.backend = backend
        self.scheduler = scheduler
        self.devices = devices
        self.trial_timeout = trial_timeout
        self.validation_fraction = validation_fraction
        self.ensemble_size = ensemble_size
        self.selection = selection
        self.max_in_memory = max_in_memory
        self.initial_configs = initial_configs
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

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
        for name in ("ensemble_size", "max_in_memory"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        selector = make_selector(self.selection, self.ensemble_size)
        directory = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "weights"
        catalogue = Catalogue(max_in_memory=self.max_in_memory, directory=directory)

        outcome = self._search(X, y, catalogue.add)
        self._check_some_succeeded(outcome)
        y_valid = outcome.data["y_valid"].astype(np.float64)
        indices, weights = selector.select(y_valid, catalogue.valid_means(),
                                           catalogue.valid_vars(), catalogue.objectives)
        log_scale = math.log(outcome.y_scale)
        members, described = [], []
        for index, weight in zip(indices, weights, strict=True):
            trial_id = catalogue.trial_ids[index]
            entry = catalogue.get(trial_id)
            config = network_config(entry.config)
            members.append(self._member(outcome, entry, _weights(catalogue, entry,
                                                                 outcome.data)))
            described.append({"trial_id": int(trial_id), "weight": float(weight),
                              "valid_nll": entry.objective + log_scale, "config": config})
        ensemble = DeepEnsembleRegressor._from_fitted(members, weights, outcome.n_features)
        mixture = NormalMixture(catalogue.valid_means()[indices],
                                np.sqrt(catalogue.valid_vars()[indices]), weights)

        self.pipeline_ = Pipeline([("scale", outcome.x_scaler), ("ensemble", ensemble)])
        self.members_ = described
        self.validation_nll_ = nll(y_valid, mixture) + log_scale
        table = self._results_frame(outcome)
        selected = {m["trial_id"]: m["weight"] for m in described}
        table["selected"] = table["job_id"].map(selected).fillna(0.0)
        self.search_results_ = table
        self.n_candidates_ = len(catalogue)
        self.search_time_ = outcome.wall_time
        return self


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
