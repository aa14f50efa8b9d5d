"""Make a search from a name, a class or an instance."""

from ._agebo import AgEBO
from ._base import Search
from ._bo import BayesianOptimization
from ._evolution import AgingEvolution
from ._random import RandomSearch

__all__ = ["ALGORITHMS", "make_search"]

#: Names accepted by :func:`make_search` (case-insensitive) and the classes they make.
ALGORITHMS = {
    "random": RandomSearch,
    "evolution": AgingEvolution,
    "bo": BayesianOptimization,
    "agebo": AgEBO,
}


def make_search(algorithm="agebo", space=None, random_state=None):
    """Return a search algorithm.

    Parameters
    ----------
    algorithm : str, Search subclass or Search instance, default="agebo"
        A name among ``"random"``, ``"evolution"``, ``"bo"`` and ``"agebo"``
        (case-insensitive), made with its default parameters; a :class:`Search` subclass,
        called as ``algorithm(space, random_state=random_state)``; or a :class:`Search`
        instance, returned as is (``space`` and ``random_state`` are then ignored).
    space : SearchSpace, dict or None, default=None
        Anything :meth:`SearchSpace.coerce` accepts; None is the default space.
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator, default=None
        Seeds the search.

    Returns
    -------
    Search

    Raises
    ------
    ValueError
        If ``algorithm`` is an unknown name or neither a name nor a search.

    Examples
    --------
    >>> make_search("BO", random_state=0)
    BayesianOptimization(n_told=0, n_pending=0, n_dims=63)
    """
    if isinstance(algorithm, Search):
        return algorithm
    if isinstance(algorithm, type) and issubclass(algorithm, Search):
        return algorithm(space, random_state=random_state)
    if isinstance(algorithm, str) and algorithm.lower() in ALGORITHMS:
        return ALGORITHMS[algorithm.lower()](space, random_state=random_state)
    raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))} (any "
                     f"case), a Search subclass or a Search instance; got {algorithm!r}. "
                     "Pass e.g. algorithm='agebo'.")
