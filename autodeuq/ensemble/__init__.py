"""Ensemble selection: the catalogue of a search's candidates and the selectors over it.

:class:`Catalogue` keeps every successful candidate's validation predictions (and the weights
of the best few); a :class:`Selector` picks members and mixture weights from those
predictions by the validation NLL of the mixture they form.
"""

from ._catalogue import Catalogue, CatalogueEntry
from ._selection import BaggedSelector, GreedySelector, Selector, TopKSelector, make_selector

__all__ = [
    "BaggedSelector",
    "Catalogue",
    "CatalogueEntry",
    "GreedySelector",
    "Selector",
    "TopKSelector",
    "make_selector",
]
