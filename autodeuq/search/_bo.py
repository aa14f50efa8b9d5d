"""Bayesian optimisation with a tree-ensemble surrogate and a constant liar.

The surrogate is a scikit-learn forest (extremely randomized trees by default) fitted on
``space.encode(configs) -> objective``; its mean and spread are the mean and the standard
deviation of the individual trees' predictions. The acquisition is the lower confidence bound
``mean - kappa * std`` (the objective is minimised), taken over a pool of candidates.

Every piece is sized so that an ask stays cheap with a thousand observations (see
``benchmarks/bench_ask.py``): a small forest fitted on one thread, and only when its training
data changed; a persistent pool of random candidates, of which a sixteenth is redrawn at each
ask (sampling and encoding a configuration of the default space costs ~0.2 ms, fitting the
forest ~1 ms per tree at 1,000 observations).
"""

import math

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from .._checks import check_int
from ..exceptions import ConfigError
from ._base import Search, _check_real

__all__ = ["BayesianOptimization"]

SURROGATES = ("extra_trees", "random_forest")
LIARS = ("max", "mean", "min", None)

#: Trees of the default surrogates; fitting is ~1 ms per tree at 1,000 observations.
_N_ESTIMATORS = 16
#: Fully grown trees: leaves of 3 (as in scikit-optimize) converged markedly slower on the
#: synthetic benchmarks of the tests.
_MIN_SAMPLES_LEAF = 1
#: Features tried at each split: all of them up to this many, else sqrt(d) but at least this
#: (8 of the default space's 63). The fit time grows with the features tried.
_MAX_FEATURES = 8
#: Fraction of the random pool redrawn at each ask (1/16).
_REFRESH = 16
#: Local candidates: this many mutations of each of this many best configurations.
_N_PARENTS = 4
_N_MUTATIONS = 4


def _check_surrogate(surrogate):
    if isinstance(surrogate, (ExtraTreesRegressor, RandomForestRegressor)):
        return surrogate
    if isinstance(surrogate, str) and surrogate in SURROGATES:
        return surrogate
    raise ValueError(f"surrogate must be one of {', '.join(map(repr, SURROGATES))} or an "
                     f"unfitted ExtraTreesRegressor or RandomForestRegressor; got "
                     f"{surrogate!r}. Use 'extra_trees' (the default) unless comparing.")


def _check_liar(liar):
    if liar not in LIARS or (liar is not None and not isinstance(liar, str)):
        raise ValueError(f"liar must be one of {', '.join(map(repr, LIARS))}; got {liar!r}. "
                         "Use 'max' (the default) to spread concurrent asks apart.")
    return liar


def _make_forest(surrogate, n_features, seed):
    if not isinstance(surrogate, str):
        forest = clone(surrogate)
        if forest.random_state is None:
            forest.set_params(random_state=seed)
        return forest
    cls = ExtraTreesRegressor if surrogate == "extra_trees" else RandomForestRegressor
    max_features = min(n_features, max(_MAX_FEATURES, math.isqrt(n_features)))
    return cls(n_estimators=_N_ESTIMATORS, min_samples_leaf=_MIN_SAMPLES_LEAF,
               max_features=max(1, max_features), n_jobs=1, random_state=seed)


def _project(config, names):
    return {name: config[name] for name in names if name in config}


class _ConstantLiarLCB:
    """Surrogate, constant liar and LCB proposals over one space (the search's or a subspace).

    Observations and pending trials are kept encoded (each configuration is encoded once).
    Configurations given to :meth:`observe` and :meth:`add_pending` may hold keys of other
    spaces; only this space's names are used.

    Targets of the forest: a success's objective; a failure's is the worst (largest) observed
    objective; a pending trial's is the lie (``liar`` of the observed objectives).
    """

    def __init__(self, space, *, kappa, n_candidates, surrogate, liar, seed):
        self.space = space
        self.kappa = kappa
        self.n_candidates = n_candidates
        self.liar = liar
        self._names = space.names
        self._column = {name: j for j, name in enumerate(self._names)}
        self._dims = [space[name] for name in self._names]
        self._forest = _make_forest(surrogate, len(self._names), seed)
        self._X = np.empty((64, len(self._names)), dtype=np.float32)
        self._y = np.empty(64)               # NaN for a failed trial
        self._n = 0
        self._configs = []                   # observed configurations (projected)
        self._pending = {}                   # trial_id -> encoded row
        self._version = 0                    # bumped whenever the training data change
        self._fitted_version = -1
        self._pool = []                      # random candidates (projected configurations)
        self._pool_X = None
        self._stale = set()                  # pool slots to redraw (their candidate was asked)
        self._cursor = 0                     # next slot of the cyclic redraw

    def _encode(self, configs):
        """``space.encode(configs)`` as float32, without validating the configurations.

        The configurations come from the space's ``sample`` and ``mutate`` or were asked (and
        so validated) before; skipping ``space.validate`` makes encoding ~4x faster on the
        default space. Keys of other spaces are ignored; -1.0 marks an inactive dimension.
        """
        out = np.full((len(configs), len(self._names)), -1.0, dtype=np.float32)
        column, dims = self._column, self._dims
        for i, config in enumerate(configs):
            for name, value in config.items():
                j = column.get(name)
                if j is not None:
                    out[i, j] = dims[j].encode(value)
        return out

    def add_pending(self, trial_id, config):
        self._pending[trial_id] = self._encode([config])[0]
        if self.liar is not None:
            self._version += 1

    def observe(self, trial_id, config, objective):
        """Record a told trial (``objective`` None for a failure)."""
        row = self._pending.pop(trial_id, None)
        if row is None:
            row = self._encode([config])[0]
        if self._n == len(self._y):
            self._X = np.concatenate([self._X, np.empty_like(self._X)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._X[self._n] = row
        self._y[self._n] = np.nan if objective is None else objective
        self._n += 1
        self._configs.append(_project(config, self._names))
        self._version += 1

    def _fit(self):
        """The forest fitted on the current data (refitted only when they changed)."""
        if self._fitted_version == self._version:
            return self._forest
        y = self._y[:self._n]
        ok = ~np.isnan(y)
        if not ok.any():
            return None
        observed = y[ok]
        targets = np.where(ok, y, observed.max())
        X = self._X[:self._n]
        if self._pending and self.liar is not None:
            lie = {"max": observed.max, "mean": observed.mean, "min": observed.min}[self.liar]()
            X = np.concatenate([X, np.stack(list(self._pending.values()))])
            targets = np.concatenate([targets, np.full(len(self._pending), lie)])
        self._forest.fit(X, targets)
        self._fitted_version = self._version
        return self._forest

    def predict(self, X):
        """Mean and standard deviation of the trees' predictions at encoded rows ``X``."""
        forest = self._fit()
        X = np.ascontiguousarray(X, dtype=np.float32)
        per_tree = np.stack([tree.predict(X, check_input=False)
                             for tree in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)

    def _refresh_pool(self, rng):
        if self._pool_X is None:
            slots = range(self.n_candidates)
            self._pool = [None] * self.n_candidates
            self._pool_X = np.empty((self.n_candidates, len(self._names)), np.float32)
        else:
            n_fresh = max(1, self.n_candidates // _REFRESH)
            cyclic = {(self._cursor + i) % self.n_candidates for i in range(n_fresh)}
            self._cursor = (self._cursor + n_fresh) % self.n_candidates
            slots = sorted(self._stale | cyclic)
        self._stale.clear()
        fresh = [self.space.sample(rng) for _ in slots]
        for slot, config in zip(slots, fresh, strict=True):
            self._pool[slot] = config
        self._pool_X[list(slots)] = self._encode(fresh)

    def _local_candidates(self, rng):
        """Mutations of the best observed configurations."""
        y = np.where(np.isnan(self._y[:self._n]), np.inf, self._y[:self._n])
        parents = [self._configs[i] for i in np.argsort(y, kind="stable")[:_N_PARENTS]
                   if np.isfinite(y[i])]
        local = []
        try:
            for parent in parents:
                local.extend(self.space.mutate(parent, rng) for _ in range(_N_MUTATIONS))
        except ConfigError:  # nothing to mutate, or constraints no mutation satisfies
            pass
        return local

    def propose(self, rng, accept=None):
        """The candidate of lowest LCB that ``accept`` takes (a new dict), or None.

        None when there is no successful observation yet or no candidate is accepted.
        """
        if self._fit() is None:
            return None
        self._refresh_pool(rng)
        local = self._local_candidates(rng)
        configs = self._pool + local
        X = self._pool_X if not local else np.concatenate([self._pool_X, self._encode(local)])
        mean, std = self.predict(X)
        lcb = mean - self.kappa * std
        for i in np.argsort(lcb, kind="stable"):
            if accept is None or accept(configs[i]):
                if i < len(self._pool):
                    self._stale.add(int(i))
                return dict(configs[i])
        return None


def _check_bo_params(n_initial, kappa, n_candidates, surrogate, liar):
    return (
        check_int("n_initial", n_initial, "A typical value is 10."),
        _check_real("kappa", kappa, "a finite float >= 0", lambda v: v >= 0,
                    "1.96 balances exploration and exploitation; 0 is greedy."),
        check_int("n_candidates", n_candidates, "A typical value is 512."),
        _check_surrogate(surrogate),
        _check_liar(liar),
    )


class BayesianOptimization(Search):
    """Bayesian optimisation: a tree-ensemble surrogate, LCB acquisition, constant liar.

    The first asks sample the space at random, until ``n_initial`` trials have been told and
    one of them succeeded. From then on each ask:

    1. fits the surrogate (a forest of ``surrogate`` trees) on the encoded configurations of
       every told trial and every pending one, with targets: the objective of a success; the
       worst (largest) observed objective for a failure, so that the region around a candidate
       that failed, diverged or timed out looks bad and is avoided; and the lie (``liar``:
       the max, mean or min of the observed objectives) for a pending trial, the "constant
       liar" that spreads concurrent asks apart. The forest is refitted only when these data
       changed since the last fit;
    2. scores a pool of candidates by the lower confidence bound ``mean - kappa * std``,
       where mean and std are over the trees' predictions: ``n_candidates`` random samples
       of the space (kept between asks, a sixteenth redrawn each time) plus 4 mutations of
       each of the 4 best configurations;
    3. returns the candidate of lowest bound that was never asked.

    Parameters
    ----------
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    n_initial : int, default=10
        Told trials (failures included) sampled at random before the surrogate is used.
    kappa : float, default=1.0
        Weight of the trees' spread in the bound; larger explores more, 0 is greedy. The
        spread of a forest does not shrink the way a Gaussian process's posterior does, and
        the Gaussian-process convention 1.96 over-explores: on the synthetic benchmarks of
        ``tests/test_search.py`` (150 evaluations) it found objectives 2-4x worse than 1.0,
        while 0 stalls on mutations of the best configuration that change nothing.
    n_candidates : int, default=512
        Random candidates in the pool scored at each ask.
    surrogate : {"extra_trees", "random_forest"} or forest, default="extra_trees"
        Extremely randomized trees or a random forest (16 trees, single-threaded), or an
        unfitted :class:`~sklearn.ensemble.ExtraTreesRegressor` or
        :class:`~sklearn.ensemble.RandomForestRegressor` to use instead (cloned; seeded from
        ``random_state`` when its own is None).
    liar : {"max", "mean", "min"} or None, default="max"
        The objective assumed for pending trials. "max" (pessimistic) spreads concurrent asks
        the most; None ignores pending trials (concurrent asks then crowd the same region:
        for comparisons only).
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds the draws and the surrogate.

    Notes
    -----
    Trees cannot extrapolate and a configuration's encoding puts inactive dimensions at -1,
    so the surrogate handles conditional spaces and categorical choices without a kernel.

    Examples
    --------
    >>> search = BayesianOptimization(random_state=0)
    >>> trials = [search.ask() for _ in range(4)]      # four workers busy at once
    >>> len({t.trial_id for t in trials}), search.n_pending
    (4, 4)
    """

    def __init__(self, space=None, *, n_initial=10, kappa=1.0, n_candidates=512,
                 surrogate="extra_trees", liar="max", random_state=None):
        super().__init__(space, random_state=random_state)
        (self.n_initial, self.kappa, self.n_candidates, self.surrogate,
         self.liar) = _check_bo_params(n_initial, kappa, n_candidates, surrogate, liar)
        self._lcb = _ConstantLiarLCB(self.space, kappa=self.kappa,
                                     n_candidates=self.n_candidates, surrogate=self.surrogate,
                                     liar=self.liar, seed=int(self._rng.integers(2**31 - 1)))

    def _propose(self):
        config = None
        if self.n_told >= self.n_initial:
            config = self._lcb.propose(self._rng, accept=self._is_new)
        return self.space.sample(self._rng) if config is None else config

    def _on_ask(self, trial_id, config):
        self._lcb.add_pending(trial_id, config)

    def _on_tell(self, result):
        self._lcb.observe(result.trial_id, result.config, result.objective)
