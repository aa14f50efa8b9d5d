"""AgEBO: aging evolution over the architecture, Bayesian optimisation over the training."""

import collections

from ..space import split_names
from ._base import Search, _copy
from ._bo import _check_bo_params, _ConstantLiarLCB, _project
from ._evolution import _check_population, _offspring, _tournament

__all__ = ["AgEBO"]


class AgEBO(Search):
    """Aging evolution for the architecture joined with BO for the training hyperparameters.

    The search of the AutoDEUQ paper (Egele et al., 2022; AgEBO from Egele et al., 2021). The
    names of the space are split by :func:`autodeuq.space.split_names`: the training names
    (optimizer, learning_rate, batch_size, ...) and every other, architecture, name. Each ask
    builds its configuration from two independent proposals:

    - **architecture** (aging evolution over ``space.subspace(architecture_names)``, as
      :class:`AgingEvolution`): while the population holds fewer than ``n_initial``
      successful trials, a random sample of the architecture subspace; then the architecture
      dimensions of the best of ``sample_size`` random members, changed by one ``mutate`` of
      that subspace (one architecture dimension changed; dimensions it switches on are
      sampled). The parent's training hyperparameters are not inherited. Evolution starts
      before the population is full so that a search of tens of candidates evolves at all;
      ``n_initial=population_size`` fills it at random first, as in the paper.
    - **training hyperparameters** (Bayesian optimisation over
      ``space.subspace(training_names)``): at random until ``n_initial`` trials were told and
      one succeeded; then the candidate of lowest ``mean - kappa * std`` of a forest fitted on
      the training dimensions of every told trial (a failure counts as the worst observed
      objective) and every pending one (the ``liar`` value), exactly as in
      :class:`BayesianOptimization`. The surrogate sees the training dimensions only: it
      models the objective averaged over the architectures tried, which is how AgEBO keeps
      the two searches independent.

    The two parts are merged into one configuration (keys in the space's order) and checked
    against the full space, whose constraints may read both parts; a merged configuration that
    breaks one, or that was asked before, is proposed again (10 tries, then random samples of
    the full space).

    A told success joins the population, pushing out its oldest member when it is full, and
    becomes an observation of the surrogate; a failure (any status but "success") never joins
    the population and enters the surrogate at the worst observed objective. When the space
    has no training names, AgEBO is aging evolution; with no architecture names, it is BO.

    Parameters
    ----------
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    population_size : int, default=100
        Members kept by the aging evolution (the aging window).
    sample_size : int, default=10
        Members drawn for each tournament, ``1 <= sample_size <= population_size``.
    n_initial : int, default=10
        Told trials sampled at random (training part) before the surrogate is used, and
        successful trials whose architecture was sampled at random before evolution starts.
    kappa : float, default=1.0
        Weight of the trees' spread in the lower confidence bound (see
        :class:`BayesianOptimization` for the choice of the default).
    n_candidates : int, default=512
        Random candidates (training configurations) in the pool scored at each ask.
    surrogate : {"extra_trees", "random_forest"} or forest, default="extra_trees"
        As in :class:`BayesianOptimization`.
    liar : {"max", "mean", "min"} or None, default="max"
        The objective assumed for pending trials by the surrogate.
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds the draws and the surrogate.

    Attributes
    ----------
    architecture_names, training_names : list of str
        The split of :attr:`space.names <SearchSpace.names>`.
    population : list of Result
        The current members, oldest first.

    References
    ----------
    R. Egele, R. Maulik, K. Raghavan, B. Lusch, I. Guyon and P. Balaprakash, "AutoDEUQ:
    Automated deep ensemble with uncertainty quantification", ICPR 2022.
    R. Egele, P. Balaprakash, I. Guyon, V. Vishwanath, F. Xia, R. Stevens and Z. Liu, "AgEBO-
    Tabular: joint neural architecture and hyperparameter search with autotuned data-parallel
    training for tabular data", SC 2021.
    """

    def __init__(self, space=None, *, population_size=100, sample_size=10, n_initial=10,
                 kappa=1.0, n_candidates=512, surrogate="extra_trees", liar="max",
                 random_state=None):
        super().__init__(space, random_state=random_state)
        self.population_size, self.sample_size = _check_population(population_size,
                                                                   sample_size)
        (self.n_initial, self.kappa, self.n_candidates, self.surrogate,
         self.liar) = _check_bo_params(n_initial, kappa, n_candidates, surrogate, liar)
        self.architecture_names, self.training_names = split_names(self.space)
        self._population = collections.deque(maxlen=self.population_size)
        seed = int(self._rng.integers(2**31 - 1))
        self._architecture_space = self._training_space = self._lcb = None
        if self.architecture_names:
            self._architecture_space = self.space.subspace(self.architecture_names)
        if self.training_names:
            self._training_space = self.space.subspace(self.training_names)
            self._lcb = _ConstantLiarLCB(self._training_space, kappa=self.kappa,
                                         n_candidates=self.n_candidates,
                                         surrogate=self.surrogate, liar=self.liar, seed=seed)

    @property
    def population(self):
        """The current members, oldest first (a list of :class:`Result`)."""
        return [_copy(r) for r in self._population]

    def _propose_architecture(self):
        if self._architecture_space is None:
            return {}
        if len(self._population) < min(self.n_initial, self.population_size):
            return self._architecture_space.sample(self._rng)
        parent = _tournament(self._population, self.sample_size, self._rng)
        return _offspring(self._architecture_space,
                          _project(parent.config, self.architecture_names), self._rng)

    def _propose_training(self):
        if self._training_space is None:
            return {}
        config = None
        if self.n_told >= self.n_initial:
            config = self._lcb.propose(self._rng)
        return self._training_space.sample(self._rng) if config is None else config

    def _propose(self):
        merged = {**self._propose_architecture(), **self._propose_training()}
        return {name: merged[name] for name in self.space.names if name in merged}

    def _on_ask(self, trial_id, config):
        if self._lcb is not None:
            self._lcb.add_pending(trial_id, config)

    def _on_tell(self, result):
        if result.ok:
            self._population.append(result)  # a full deque drops its oldest member
        if self._lcb is not None:
            self._lcb.observe(result.trial_id, result.config, result.objective)
