"""Ensemble selection: pick members and weights from the candidates' validation predictions.

A selector sees every candidate's validation means and variances (standardized units) and
returns the indices of the chosen candidates with their mixture weights. The score is the
negative log-likelihood of the exact Gaussian mixture the members form, the same quantity as
:func:`autodeuq.uncertainty.nll`.
"""

import abc
import numbers

import numpy as np
from scipy.special import logsumexp

from ..uncertainty import mixture_moments

__all__ = ["BaggedSelector", "GreedySelector", "Selector", "TopKSelector", "make_selector"]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
# Elements of one (candidates x points) block in the greedy step: about 1 MiB of float64,
# so temporaries stay in cache and memory does not grow with the number of candidates.
_BLOCK_ELEMENTS = 1 << 17
# A greedy step must lower the NLL by more than this (relative) to count as an improvement,
# so rounding never adds a copy of an identical candidate.
_MIN_GAIN = 1e-12


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(
            f"k must be an int >= 1, the number of ensemble members; got {k!r}. Pass e.g. k=5."
        )
    return int(k)


def _as_float(x, name):
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be array-like of real numbers; got {type(x).__name__}. Pass a numpy "
            f"array."
        ) from None


def _check_inputs(y_valid, means, variances, objectives):
    """Validate and convert the arguments of :meth:`Selector.select`."""
    mu = _as_float(means, "means")
    if mu.ndim not in (2, 3):
        raise ValueError(
            f"means must have shape (n_candidates, n_valid), or (n_candidates, n_networks, "
            f"n_valid) for candidates that are each an equal mixture of networks; got shape "
            f"{mu.shape}. Stack the candidates' validation predictions along the first axis."
        )
    if mu.shape[0] == 0 or mu.shape[1] == 0:
        raise ValueError(
            f"means must hold at least one candidate (and network); got shape {mu.shape}. "
            f"Selection needs at least one successful candidate."
        )
    var = _as_float(variances, "variances")
    if var.shape != mu.shape:
        raise ValueError(
            f"variances must have the same shape as means {mu.shape}; got {var.shape}. Pass "
            f"one variance per mean."
        )
    y = _as_float(y_valid, "y_valid")
    if y.ndim != 1 or y.shape[0] != mu.shape[-1] or y.shape[0] == 0:
        raise ValueError(
            f"y_valid must have shape (n_valid,) = ({mu.shape[-1]},), with n_valid >= 1, one "
            f"target per column of means; got shape {y.shape}. Pass the validation targets "
            f"the predictions were made on."
        )
    for name, a in (("y_valid", y), ("means", mu), ("variances", var)):
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"{name} must be finite; got {np.count_nonzero(~np.isfinite(a))} NaN or "
                f"infinite value(s). Leave candidates with non-finite predictions out."
            )
    if not np.all(var > 0):
        raise ValueError(
            f"variances must be > 0 everywhere; got min {var.min():g}. Pass variances (not "
            f"log-variances), floored at a small positive value."
        )
    if objectives is not None:
        obj = _as_float(objectives, "objectives")
        if obj.shape != (mu.shape[0],):
            raise ValueError(
                f"objectives must have shape (n_candidates,) = ({mu.shape[0]},), one per row "
                f"of means; got shape {obj.shape}. Pass None to score candidates on y_valid."
            )
        if np.any(np.isnan(obj)):
            raise ValueError(
                "objectives must not contain NaN. Leave candidates without an objective out, "
                "or pass None to score candidates on y_valid."
            )
        objectives = obj
    return y, mu, var, objectives


def _log_densities(y, means, variances):
    """Log density of each candidate at each point, shape (n_candidates, n_valid); a
    candidate given as several networks (3-D ``means``) is their equal mixture."""
    out = np.subtract(y, means)
    np.square(out, out=out)
    out /= variances
    out += np.log(variances)
    out *= -0.5
    out -= _LOG_SQRT_2PI
    if out.ndim == 3:
        out = logsumexp(out, axis=1) - np.log(out.shape[1])
    return out


def _moments(means, variances):
    """Each candidate of several networks as one Gaussian of its mixture's mean and variance
    (the law of total variance), for selectors that take one Gaussian per candidate."""
    moments = [mixture_moments(m, v) for m, v in zip(means, variances, strict=True)]
    return (np.stack([mean for mean, _, _ in moments]),
            np.stack([aleatoric + epistemic for _, aleatoric, epistemic in moments]))


class Selector(abc.ABC):
    """Chooses ensemble members and their weights from validation predictions.

    Subclasses implement :meth:`_select`; :meth:`select` validates its inputs and the
    subclass's answer. A candidate may be several networks (AutoDEUQRegressor's rescoring
    trains each candidate as ``rescore_networks`` networks): a subclass whose
    ``takes_networks`` is True gets such candidates as 3-D arrays
    ``(n_candidates, n_networks, n_valid)``; any other gets each as one Gaussian with its
    mixture's mean and variance.
    """

    #: Whether :meth:`_select` takes candidates of several networks as 3-D arrays.
    takes_networks = False

    def select(self, y_valid, means, variances, objectives=None):
        """Choose members and mixture weights.

        Parameters
        ----------
        y_valid : array-like of shape (n_valid,)
            Validation targets (standardized units, like the predictions).
        means, variances : array-like of shape (n_candidates, n_valid)
            Each candidate's predictive means and variances on the validation points;
            finite, variances > 0. Or of shape (n_candidates, n_networks, n_valid): each
            candidate the equal mixture of ``n_networks`` Gaussians.
        objectives : array-like of shape (n_candidates,), default=None
            Each candidate's own score (lower is better), e.g. the search objective. Used
            by selectors that rank candidates individually; None means the individual
            validation NLL computed from ``means`` and ``variances``.

        Returns
        -------
        indices : ndarray of int of shape (n_members,)
            Distinct row indices into ``means``; ``n_members`` may be below ``k`` when
            there are fewer candidates or more members do not help.
        weights : ndarray of float of shape (n_members,)
            Positive mixture weights summing to 1.

        Raises
        ------
        ValueError
            If there is no candidate or the shapes disagree.
        """
        y, mu, var, obj = _check_inputs(y_valid, means, variances, objectives)
        if mu.ndim == 3 and not self.takes_networks:
            mu, var = _moments(mu, var)
        returned = self._select(y, mu, var, obj)
        n = mu.shape[0]
        rule = (f"{type(self).__name__}._select must return (indices, weights): distinct int "
                f"indices in [0, {n}) and positive real weights summing to 1, of the same "
                "length")
        try:
            indices, weights = returned
            # Ints and reals as given: a float index or a text weight is no silent cast.
            indices, weights = np.asarray(indices), np.asarray(weights)
            if indices.dtype.kind not in "iu" or weights.dtype.kind not in "iuf":
                raise TypeError
            indices = indices.astype(np.intp, casting="safe")
            weights = weights.astype(np.float64)
        except (TypeError, ValueError):
            raise RuntimeError(f"{rule}; got {returned!r}. Fix the selector.") from None
        if (
            indices.ndim != 1
            or indices.shape != weights.shape
            or indices.size == 0
            or np.unique(indices).size != indices.size
            or indices.min() < 0
            or indices.max() >= n
            or not np.all(weights > 0)
            # float32 weights sum to 1 within their own precision
            or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6)
        ):
            raise RuntimeError(
                f"{rule}; got indices {indices!r} and weights {weights!r} (sum "
                f"{weights.sum()!r}). Fix the selector."
            )
        return indices, weights / weights.sum()

    @abc.abstractmethod
    def _select(self, y, means, variances, objectives):
        """Select from validated float64 arrays; return ``(indices, weights)``."""


class GreedySelector(Selector):
    """Greedy forward selection of a weighted mixture (Caruana et al., 2004).

    Starts from the candidate with the lowest validation NLL, then repeatedly adds the
    candidate that most lowers the validation NLL of the equally weighted mixture of the
    members chosen so far (a multiset: with replacement a candidate may be added again,
    which raises its weight). Weights are the counts divided by the number of additions.

    Parameters
    ----------
    k : int, default=5
        At most ``k`` distinct members. Once ``k`` are chosen, only repeats of them are
        considered, so the weights can still be tuned.
    with_replacement : bool, default=True
        Whether a candidate may be added more than once. Without replacement the members
        have equal weights.
    max_iter : int or None, default=None
        At most this many additions, the first member included, so weights are multiples
        of ``1 / max_iter`` at the finest. None means ``10 * k``.

    Attributes
    ----------
    nll_path_ : ndarray of shape (n_additions,)
        Set by :meth:`select`: the validation NLL of the mixture after each addition, the
        first being the best single candidate's; decreasing, and its last value is the NLL
        of the selected mixture.

    Notes
    -----
    Selection stops at the first step where no addition lowers the NLL (by more than a
    relative 1e-12, so rounding never adds a copy of an identical candidate), after
    ``max_iter`` additions, or when no candidate is left to add. The score is the exact
    mixture NLL: the log density of the mixture at each point is kept as a running
    log-sum-exp, so a step costs ``O(n_candidates * n_valid)`` vectorised operations, and
    only ``O(k * n_valid)`` once ``k`` members are chosen. ``objectives`` is ignored: every
    score is computed from the validation predictions. Members are returned in the order
    they were first chosen.

    References
    ----------
    R. Caruana, A. Niculescu-Mizil, G. Crew and A. Ksikes. Ensemble selection from
    libraries of models. ICML 2004.
    R. Egele, R. Maulik, K. Raghavan, B. Lusch, I. Guyon and P. Balaprakash. AutoDEUQ:
    Automated deep ensemble with uncertainty quantification. ICPR 2022.
    """

    takes_networks = True

    def __init__(self, k=5, with_replacement=True, max_iter=None):
        self.k = _check_k(k)
        if not isinstance(with_replacement, bool | np.bool_):
            raise TypeError(
                f"with_replacement must be a bool; got {type(with_replacement).__name__}. "
                f"Pass True or False."
            )
        self.with_replacement = bool(with_replacement)
        if max_iter is not None and (
            isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral)
            or max_iter < 1
        ):
            raise ValueError(
                f"max_iter must be an int >= 1 or None; got {max_iter!r}. Pass None for "
                f"10 * k additions."
            )
        self.max_iter = None if max_iter is None else int(max_iter)

    def __repr__(self):
        return (
            f"{type(self).__name__}(k={self.k}, with_replacement={self.with_replacement}, "
            f"max_iter={self.max_iter})"
        )

    def _select(self, y, means, variances, objectives):
        indices, weights, path = self._greedy(_log_densities(y, means, variances))
        self.nll_path_ = np.array(path)
        return indices, weights

    def _greedy(self, log_p):
        """Greedy selection on the log densities ``log_p`` (candidates x points): the
        members in the order first chosen, their weights (counts / total) and the NLL
        after each addition."""
        max_iter = 10 * self.k if self.max_iter is None else self.max_iter
        n_candidates, n_valid = log_p.shape
        single = -log_p.mean(axis=1)
        first = int(np.argmin(single))
        counts = {first: 1}  # insertion order = order of first selection
        log_sum = log_p[first].copy()  # log sum_i counts_i p_i(y_j), per point
        best = single[first]
        path = [best]
        block = max(1, _BLOCK_ELEMENTS // n_valid)
        buffer = np.empty((min(block, n_candidates), n_valid))
        for total in range(1, max_iter):
            if len(counts) >= self.k:
                if not self.with_replacement:
                    break
                rows = np.fromiter(counts, dtype=np.intp)
            elif self.with_replacement or len(counts) < n_candidates:
                rows = None  # every candidate; already chosen ones masked below if needed
            else:
                break
            # mean over points of log(sum_i counts_i p_i + p_c), for each candidate c
            scores = self._mean_logaddexp(log_p, rows, log_sum, block, buffer)
            if rows is None and not self.with_replacement:
                scores[list(counts)] = -np.inf
            pick = int(np.argmax(scores))
            nll = np.log(total + 1) - scores[pick]
            if not nll < best - _MIN_GAIN * (1.0 + abs(best)):
                break
            best = nll
            path.append(nll)
            chosen = pick if rows is None else int(rows[pick])
            counts[chosen] = counts.get(chosen, 0) + 1
            np.logaddexp(log_sum, log_p[chosen], out=log_sum)
        indices = np.fromiter(counts, dtype=np.intp)
        weights = np.fromiter(counts.values(), dtype=np.float64)
        return indices, weights / weights.sum(), path

    @staticmethod
    def _mean_logaddexp(log_p, rows, log_sum, block, buffer):
        """``mean_j logaddexp(log_sum_j, log_p[r, j])`` for each row r, block by block."""
        if rows is not None:
            return np.logaddexp(log_p[rows], log_sum).mean(axis=1)
        n = log_p.shape[0]
        out = np.empty(n)
        for start in range(0, n, block):
            stop = min(start + block, n)
            buf = buffer[: stop - start]
            np.logaddexp(log_p[start:stop], log_sum, out=buf)
            out[start:stop] = buf.mean(axis=1)
        return out


class BaggedSelector(Selector):
    """Greedy selection on bootstrap resamples of the validation points, weights averaged.

    Greedy selection fits the weights to the validation points it is given; where they are
    few (a few hundred), part of what it finds is their noise: a candidate that happens to
    predict a handful of points well gets weight. This selector runs :class:`GreedySelector`
    on ``n_bags`` bootstrap resamples of the points and averages the weights it gives each
    candidate over the resamples (a candidate not chosen in a resample counts 0 there), so
    a member's weight is how it does across the resamples, not on the one draw of points
    (the bagged ensemble selection of Caruana et al., 2006, bagging the points). The members
    are the ``k`` candidates with the largest averaged weight, renormalized.

    Parameters
    ----------
    k : int, default=5
        At most ``k`` distinct members, in each resample and in the result.
    n_bags : int, default=32
        Bootstrap resamples.
    random_state : int, default=0
        Seed of the resamples: the same inputs give the same selection.
    max_iter : int or None, default=None
        As for :class:`GreedySelector`, per resample.

    Attributes
    ----------
    bag_weights_ : ndarray of shape (n_candidates,)
        Set by :meth:`select`: each candidate's weight averaged over the resamples (summing
        to 1), before the ``k`` largest are kept.

    Notes
    -----
    The log densities are computed once; a resample costs one greedy selection on its
    columns, so ``n_bags`` times :class:`GreedySelector`'s time. Members are returned by
    decreasing weight (ties in candidate order).

    References
    ----------
    R. Caruana, A. Munson and A. Niculescu-Mizil. Getting the most out of ensemble
    selection. ICDM 2006.
    """

    takes_networks = True

    def __init__(self, k=5, n_bags=32, random_state=0, max_iter=None):
        self.k = _check_k(k)
        if isinstance(n_bags, bool) or not isinstance(n_bags, numbers.Integral) or n_bags < 1:
            raise ValueError(
                f"n_bags must be an int >= 1, the number of bootstrap resamples; got "
                f"{n_bags!r}. Pass e.g. n_bags=32."
            )
        self.n_bags = int(n_bags)
        if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
            raise TypeError(
                f"random_state must be an int, the seed of the resamples; got "
                f"{type(random_state).__name__}. Pass e.g. random_state=0."
            )
        self.random_state = int(random_state)
        self._each = GreedySelector(k, with_replacement=True, max_iter=max_iter)
        self.max_iter = self._each.max_iter

    def __repr__(self):
        return (
            f"{type(self).__name__}(k={self.k}, n_bags={self.n_bags}, "
            f"random_state={self.random_state}, max_iter={self.max_iter})"
        )

    def _select(self, y, means, variances, objectives):
        log_p = _log_densities(y, means, variances)
        n_candidates, n_valid = log_p.shape
        rng = np.random.default_rng(self.random_state)
        totals = np.zeros(n_candidates)
        for _ in range(self.n_bags):
            chosen, weights, _ = self._each._greedy(log_p[:, rng.integers(0, n_valid, n_valid)])
            totals[chosen] += weights
        self.bag_weights_ = totals / self.n_bags
        order = np.argsort(-self.bag_weights_, kind="stable")[: self.k]
        indices = order[self.bag_weights_[order] > 0]
        weights = self.bag_weights_[indices]
        return indices, weights / weights.sum()


class TopKSelector(Selector):
    """The ``k`` individually best candidates, equally weighted.

    Parameters
    ----------
    k : int, default=5
        How many members; all candidates when there are fewer.

    Notes
    -----
    Candidates are ranked by ``objectives`` when given (ties keep the candidates' order),
    otherwise by their individual NLL on the validation points.
    """

    takes_networks = True

    def __init__(self, k=5):
        self.k = _check_k(k)

    def __repr__(self):
        return f"{type(self).__name__}(k={self.k})"

    def _select(self, y, means, variances, objectives):
        if objectives is None:
            objectives = -_log_densities(y, means, variances).mean(axis=1)
        indices = np.argsort(objectives, kind="stable")[: self.k]
        return indices, np.full(indices.size, 1.0 / indices.size)


_SELECTORS = {"bagged": BaggedSelector, "greedy": GreedySelector, "topk": TopKSelector}


def make_selector(selection, k=5):
    """A selector from its name, or the given selector itself.

    Parameters
    ----------
    selection : {"bagged", "greedy", "topk"} or Selector
        A name (case-insensitive), or a :class:`Selector` instance, returned as is (its own
        ``k`` is kept).
    k : int, default=5
        Number of members for a named selector.

    Returns
    -------
    Selector
    """
    if isinstance(selection, Selector):
        return selection
    if isinstance(selection, str):
        cls = _SELECTORS.get(selection.lower())
        if cls is None:
            raise ValueError(
                f"selection must be one of {sorted(_SELECTORS)} or a Selector instance; got "
                f"{selection!r}. Pass 'greedy' for greedy mixture selection, 'bagged' for it "
                f"averaged over bootstrap resamples of the validation points, or 'topk' for "
                f"the k individually best candidates."
            )
        return cls(k=k)
    if isinstance(selection, type) and issubclass(selection, Selector):
        raise TypeError(
            f"selection must be a Selector instance, not the class {selection.__name__}. "
            f"Pass an instance, e.g. selection={selection.__name__}(...)."
        )
    raise TypeError(
        f"selection must be a str ({sorted(_SELECTORS)}) or a Selector instance; got "
        f"{type(selection).__name__}. Pass e.g. selection='greedy'."
    )
