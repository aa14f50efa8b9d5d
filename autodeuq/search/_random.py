"""Random search: independent samples of the space."""

from ._base import Search

__all__ = ["RandomSearch"]


class RandomSearch(Search):
    """Sample every configuration independently from the space.

    The baseline the other algorithms must beat, and a sound choice for small budgets.
    Failed trials are recorded in :attr:`history` and change nothing else.

    Parameters
    ----------
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds the draws.

    Examples
    --------
    >>> search = RandomSearch(random_state=0)
    >>> trial = search.ask()
    >>> search.tell(trial.trial_id, 1.25)
    >>> search.best.objective
    1.25
    """

    def _propose(self):
        return self.space.sample(self._rng)
