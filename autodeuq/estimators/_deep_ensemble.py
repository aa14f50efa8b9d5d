"""DeepEnsembleRegressor: several Gaussian networks combined as a weighted Gaussian mixture."""

import copy
import numbers

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.preprocessing import StandardScaler

from ..nn import train_networks
from ..uncertainty import NormalMixture, fit_std_scale
from ._base import (
    UncertaintyRegressorMixin,
    check_fitted,
    check_target,
    holdout_split,
    seed_sequence,
    target_scaling,
    validate_data,
)
from ._gaussian_mlp import GaussianMLPRegressor, validation_rows

__all__ = ["DeepEnsembleRegressor"]

_DEFAULT_N_MEMBERS = 5


def _fit_member(member, X, y):
    return member.fit(X, y)


def _fit_batched(members, config, device, X, y):
    """Fit ``members`` (one configuration, validated X and y) as ``member.fit(X, y)`` would,
    training their networks in one batched pass (:func:`autodeuq.nn.train_networks`)."""
    n = len(X)
    n_valid = validation_rows(n, members[0].validation_fraction)
    # The seeds, splits and scalings GaussianMLPRegressor.fit derives from each member's seed.
    seeds = [seed_sequence(member.random_state).spawn(2) for member in members]
    splits = [holdout_split(n, n_valid, split_seq) for split_seq, _ in seeds]
    x_scaler = StandardScaler().fit(X)
    Xs = x_scaler.transform(X)
    scalings = [target_scaling(y[train]) for train, _ in splits]
    results = train_networks(
        config, Xs, np.stack([(y - mean) / scale for mean, scale in scalings]),
        np.stack([train for train, _ in splits]),
        np.stack([valid for _, valid in splits]) if n_valid else None,
        seeds=[train_seq for _, train_seq in seeds], device=device,
        verbose=members[0].verbose,
    )
    for member, result, (y_mean, y_scale) in zip(members, results, scalings, strict=True):
        validate_data(member, X, y, skip_check_array=True)  # n_features_in_, as fit sets it
        member._set_fitted(copy.deepcopy(config), copy.deepcopy(x_scaler), y_mean, y_scale,
                           result)
    return members


class DeepEnsembleRegressor(UncertaintyRegressorMixin, RegressorMixin, BaseEstimator):
    """A deep ensemble: Gaussian networks whose predictions form a weighted Gaussian mixture.

    By default it trains ``n_members`` copies of one network from different random
    initializations (and different validation splits), as in Lakshminarayanan et al. (2017).
    Given ``members`` (estimators or configurations, e.g. the ones AutoDEUQ selected) and
    ``weights``, it trains those instead.

    The predictive distribution for ``x`` is the mixture ``sum_i w_i N(mu_i(x), sigma_i(x)^2)``.
    Its variance splits exactly into an aleatoric part ``sum_i w_i sigma_i^2`` (noise the
    members agree is in the data) and an epistemic part ``sum_i w_i (mu_i - mu)^2`` (their
    disagreement, large where the data say little).

    Parameters
    ----------
    estimator : GaussianMLPRegressor or None, default=None
        Template of every member; None means ``GaussianMLPRegressor()``. Members given as
        configurations take the template's other parameters (validation fraction, device...).
    n_members : int or None, default=None
        Number of members: 5 when ``members`` is None, else ``len(members)`` (giving another
        value is an error).
    members : sequence of GaussianMLPRegressor or dict, or None, default=None
        Explicit members, as unfitted estimators or configurations.
    weights : sequence of float or None, default=None
        Mixture weight of each member (non-negative, normalised to sum to 1); None for equal
        weights.
    random_state : int, RandomState, Generator or None, default=None
        Seeds every member (each gets its own seed spawned from this one; a member's own
        ``random_state`` is replaced).
    n_jobs : int or None, default=None
        Members trained in parallel with joblib; None trains them one after another.
    verbose : int, default=0
    batched : {"auto", True, False}, default="auto"
        Train the members together, as one network with stacked weights
        (:func:`autodeuq.nn.train_networks`): several times faster than one after another
        for small networks, and the same in distribution (same initial weights, shuffling,
        validation splits, per-member early stopping and best weights; only dropout masks
        come from another random stream). It needs every member to have the same
        configuration, ``validation_fraction`` and ``device`` (they differ only in their
        seeds) and one process (``n_jobs`` None or 1). ``"auto"`` batches when that holds,
        there are at least two members and no member is ``verbose`` (batched training logs
        its epochs instead of printing skorch's table); True always batches and raises a
        ``ValueError`` before training when it cannot; False trains the members one by
        one (or in parallel with ``n_jobs``).

    Attributes
    ----------
    estimators_ : list of GaussianMLPRegressor
        The fitted members.
    weights_ : ndarray of shape (n_members,)
        Normalised mixture weights.
    std_scale_ : float
        Factor on every member's standard deviation: 1 after ``fit``, set by
        :meth:`recalibrate`.
    interval_pits_ : ndarray of shape (n_held_out,) or None
        Sorted predictive CDF values of held-out targets that calibrate
        :meth:`predict_interval`: None after ``fit``, set by :meth:`calibrate_intervals` (and
        by :class:`AutoDEUQRegressor` on its validation part).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X has feature names.

    Examples
    --------
    >>> from autodeuq import DeepEnsembleRegressor
    >>> from autodeuq.datasets import make_tutorial_regression
    >>> X, y, X_test, y_test = make_tutorial_regression(random_state=0)
    >>> est = DeepEnsembleRegressor(random_state=0).fit(X, y)
    >>> mean, total, aleatoric, epistemic = est.predict_uncertainty(X_test)
    """

    def __init__(self, estimator=None, n_members=None, members=None, weights=None,
                 random_state=None, n_jobs=None, verbose=0, batched="auto"):
        self.estimator = estimator
        self.n_members = n_members
        self.members = members
        self.weights = weights
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.batched = batched

    def _use_batched(self, members, checked):
        """Whether to train ``members`` (with their ``(config, device)``) in one batch."""
        batched = self.batched
        auto = isinstance(batched, str) and batched == "auto"
        if not (auto or isinstance(batched, (bool, np.bool_))):
            raise ValueError(f"batched must be 'auto', True or False; got {batched!r}. Use "
                             "'auto' to batch whenever the members allow it.")
        if not auto and not batched:
            return False
        config, device = checked[0]
        fraction = members[0].validation_fraction
        reason = None
        if self.n_jobs not in (None, 1):
            reason = (f"n_jobs={self.n_jobs!r} asks for several processes, and batched "
                      "training runs in one; pass n_jobs=None")
        for i, (member, (other, other_device)) in enumerate(zip(members, checked,
                                                                strict=True)):
            if reason is not None:
                break
            differ = sorted(key for key in config if config[key] != other[key])
            if differ:
                reason = (f"members[{i}] differs from members[0] in {differ}, and a batch "
                          "shares one configuration")
            elif other_device != device or member.validation_fraction != fraction:
                reason = (f"members[{i}] differs from members[0] in device or "
                          "validation_fraction, and a batch shares them")
        if auto:
            return (reason is None and len(members) > 1
                    and not any(member.verbose for member in members))
        if reason is not None:
            raise ValueError(f"batched=True needs members that can train as one batch; got "
                             f"{reason}, or batched='auto' to batch only when possible.")
        return True

    def _make_members(self):
        template = GaussianMLPRegressor() if self.estimator is None else self.estimator
        if not isinstance(template, GaussianMLPRegressor):
            raise TypeError(f"estimator must be a GaussianMLPRegressor instance or None; got "
                            f"{template!r}. Pass e.g. GaussianMLPRegressor(max_epochs=200), or "
                            "None for the default network.")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, numbers.Integral)
                                        or isinstance(self.n_jobs, bool) or self.n_jobs == 0):
            raise ValueError(f"n_jobs must be None or a nonzero int (-1 for every core); got "
                             f"{self.n_jobs!r}. Use None to train the members one by one.")
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an int >= 0; got {self.verbose!r}. Use 0 "
                             "(silent) or 1 (joblib's progress).")
        n = self.n_members
        if n is not None and (not isinstance(n, numbers.Integral) or isinstance(n, bool)
                              or n < 1):
            raise ValueError(f"n_members must be an int >= 1 or None; got {n!r}. "
                             f"None means {_DEFAULT_N_MEMBERS}.")
        if self.members is None:
            return [clone(template) for _ in range(n or _DEFAULT_N_MEMBERS)]
        if isinstance(self.members, (str, dict)) or not hasattr(self.members, "__len__"):
            raise TypeError(f"members must be a list of GaussianMLPRegressor or config dicts; "
                            f"got {type(self.members).__name__}. Wrap a single one in a list.")
        if len(self.members) == 0:
            raise ValueError("members must hold at least one member; got an empty list. Pass "
                             "members=None to train n_members copies of estimator.")
        if n is not None and n != len(self.members):
            raise ValueError(f"n_members must equal len(members) ({len(self.members)}) when "
                             f"members is given; got n_members={n}. Leave n_members=None.")
        members = []
        for i, member in enumerate(self.members):
            if isinstance(member, dict):
                members.append(clone(template).set_params(
                    **GaussianMLPRegressor.params_from_config(member)))
            elif isinstance(member, GaussianMLPRegressor):
                members.append(clone(member))
            else:
                raise TypeError(f"members[{i}] must be a GaussianMLPRegressor or a config dict; "
                                f"got {member!r}. Pass estimators or configurations such as "
                                "est.best_config_.")
        return members

    def _check_weights(self, n_members):
        if self.weights is None:
            return np.full(n_members, 1.0 / n_members)
        try:
            weights = np.asarray(self.weights, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"weights must be a list of numbers, one per member ({n_members}); "
                             f"got {self.weights!r}. Pass e.g. [0.5, 0.5], or None for equal "
                             "weights.") from None
        if weights.shape != (n_members,):
            raise ValueError(f"weights must have one value per member ({n_members}); got shape "
                             f"{weights.shape}. Pass weights=None for equal weights.")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0; got "
                             f"{weights.tolist()}. Pass weights=None for equal weights.")
        return weights / weights.sum()

    def fit(self, X, y):
        """Fit every member on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        members = self._make_members()
        weights = self._check_weights(len(members))
        checked = [member._check_params() for member in members]
        batched = self._use_batched(members, checked)
        check_target(y)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        seeds = seed_sequence(self.random_state).spawn(len(members))
        for member, seed in zip(members, seeds, strict=True):
            member.set_params(random_state=int(seed.generate_state(1)[0]))
        if batched:
            fitted = _fit_batched(members, *checked[0], X, y)
        else:
            fitted = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
                delayed(_fit_member)(member, X, y) for member in members
            )
        self.estimators_ = list(fitted)
        self.weights_ = weights
        self.std_scale_ = 1.0
        self.interval_pits_ = None
        return self

    def recalibrate(self, X, y):
        """Scale every member's std to minimize the NLL of held-out ``(X, y)``.

        A post-hoc correction for members over- or under-confident about the noise: the
        means, so the epistemic part, are unchanged; the aleatoric variance is multiplied by
        ``std_scale_**2``. Use data the members were not trained on. An interval
        calibration (``interval_pits_``) was measured with the old stds, so it is dropped:
        call :meth:`calibrate_intervals` after this, not before.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        check_fitted(self, "estimators_")
        check_target(y)
        X, y = validate_data(self, X, y, reset=False, y_numeric=True, dtype=np.float64)
        self.std_scale_ = 1.0
        self.std_scale_ = fit_std_scale(y, self.predict_distribution(X))
        self.interval_pits_ = None
        return self

    @classmethod
    def _from_fitted(cls, members, weights, n_features, random_state=None, std_scale=1.0):
        """An ensemble of members already trained elsewhere (a search's catalogue).

        Its parameters describe the same members as unfitted estimators, so ``clone`` gives
        an ensemble that trains those configurations afresh. Its intervals are not
        calibrated (``interval_pits_`` None) until the caller sets them.
        """
        weights = np.asarray(weights, dtype=float)
        est = cls(members=[clone(m) for m in members], weights=weights.tolist(),
                  random_state=random_state)
        est.estimators_ = list(members)
        est.weights_ = weights / weights.sum()
        est.n_features_in_ = n_features
        est.std_scale_ = float(std_scale)
        est.interval_pits_ = None
        return est

    def predict_distribution(self, X):
        """Predict the mixture of the members' Gaussians for every row of X.

        Returns
        -------
        autodeuq.uncertainty.NormalMixture
            ``n_members`` components per sample, with ``weights_``, in the units of y.
        """
        check_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        parts = [member.predict_distribution(X) for member in self.estimators_]
        stds = np.stack([p.std for p in parts]) * getattr(self, "std_scale_", 1.0)
        return NormalMixture(np.stack([p.mean for p in parts]), stds, self.weights_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
