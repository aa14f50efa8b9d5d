"""Search algorithms: an ask/tell interface over a search space.

Every algorithm proposes flat configurations of an :class:`autodeuq.space.SearchSpace` with
:meth:`Search.ask` and learns from their validation NLL (lower is better) with
:meth:`Search.tell`. Several asks may be pending at once (asynchronous workers); a trial that
failed, diverged, timed out or was lost is told with its status and counts in the history.

- :class:`RandomSearch`: independent samples.
- :class:`AgingEvolution`: regularized evolution (Real et al., 2019).
- :class:`BayesianOptimization`: tree-ensemble surrogate, lower confidence bound, constant
  liar for pending trials.
- :class:`AgEBO`: aging evolution over the architecture and Bayesian optimisation over the
  training hyperparameters (the AutoDEUQ search).

Examples
--------
>>> from autodeuq.search import make_search
>>> search = make_search("agebo", random_state=0)
>>> trial = search.ask()
>>> search.tell(trial.trial_id, objective=0.83)
>>> failed = search.ask()
>>> search.tell(failed.trial_id, status="diverged")
>>> search.n_told, search.best.trial_id
(2, 0)
"""

from ._agebo import AgEBO
from ._base import STATUSES, Result, Search, Trial
from ._bo import BayesianOptimization
from ._evolution import AgingEvolution
from ._factory import ALGORITHMS, make_search
from ._random import RandomSearch

__all__ = [
    "ALGORITHMS",
    "STATUSES",
    "AgEBO",
    "AgingEvolution",
    "BayesianOptimization",
    "RandomSearch",
    "Result",
    "Search",
    "Trial",
    "make_search",
]
