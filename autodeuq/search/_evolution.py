"""Aging (regularized) evolution (Real et al., 2019)."""

import collections

from .._checks import check_int
from ._base import Search, _copy

__all__ = ["AgingEvolution"]


def _check_population(population_size, sample_size):
    population_size = check_int("population_size", population_size,
                                 "A typical value is 100.")
    sample_size = check_int("sample_size", sample_size, "A typical value is 10.")
    if sample_size > population_size:
        raise ValueError(f"sample_size must be <= population_size ({population_size}); got "
                         f"{sample_size}. Lower sample_size or raise population_size.")
    return population_size, sample_size


def _offspring(space, parent, rng):
    """``parent`` mutated in ``space``; drawn afresh where nothing in it can change (a fixed
    architecture, a constant space), which gives the same configuration there."""
    if not space.is_mutable(parent):
        return space.sample(rng)
    return space.mutate(parent, rng)


def _tournament(population, sample_size, rng):
    """The best (lowest objective) of ``sample_size`` members drawn without replacement."""
    picks = rng.choice(len(population), size=min(sample_size, len(population)), replace=False)
    return min((population[int(i)] for i in picks), key=lambda r: r.objective)


class AgingEvolution(Search):
    """Regularized evolution: tournament selection, one mutation, the oldest member dies.

    The population holds the last ``population_size`` successful trials, in the order they
    were told. Until it holds ``n_initial`` members, every ask samples the space at random.
    From then on an ask draws ``sample_size`` members at random (without replacement; all of
    them while there are fewer), takes the one with the lowest objective and returns
    ``space.mutate`` of its configuration (exactly one active dimension changed). Each told
    success joins the population and, once it is full, pushes out the oldest member, whatever
    its score: good configurations must keep being rediscovered, which regularizes against
    lucky evaluations.

    Evolution starts after ``n_initial`` random members rather than after a full population
    (Real et al. fill the population first): with the budgets of a search on a laptop, tens
    to a few hundred candidates, a population of 100 filled at random would leave the search
    a random search. ``n_initial=population_size`` is the original algorithm.

    Failed trials (any status but ``"success"``, or a non-finite objective) are kept in
    :attr:`history` but never join the population. Pending trials change nothing: concurrent
    asks mutate independent tournament winners (and are distinct configurations).

    Parameters
    ----------
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    population_size : int, default=100
        Members kept (the aging window).
    sample_size : int, default=10
        Members drawn for each tournament, ``1 <= sample_size <= population_size``; larger is
        greedier.
    n_initial : int, default=10
        Successful random samples before evolution starts (at most ``population_size`` are
        needed).
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds the draws.

    Attributes
    ----------
    population : list of Result
        The current members, oldest first.

    References
    ----------
    E. Real, A. Aggarwal, Y. Huang and Q. V. Le, "Regularized evolution for image classifier
    architecture search", AAAI 2019.
    """

    def __init__(self, space=None, *, population_size=100, sample_size=10, n_initial=10,
                 random_state=None):
        super().__init__(space, random_state=random_state)
        self.population_size, self.sample_size = _check_population(population_size,
                                                                   sample_size)
        self.n_initial = check_int("n_initial", n_initial, "A typical value is 10.")
        self._population = collections.deque(maxlen=self.population_size)

    @property
    def population(self):
        """The current members, oldest first (a list of :class:`Result`)."""
        return [_copy(r) for r in self._population]

    def _propose(self):
        if len(self._population) < min(self.n_initial, self.population_size):
            return self.space.sample(self._rng)
        parent = _tournament(self._population, self.sample_size, self._rng)
        return _offspring(self.space, parent.config, self._rng)

    def _on_tell(self, result):
        if result.ok:
            self._population.append(result)  # a full deque drops its oldest member
