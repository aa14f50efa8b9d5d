"""Datasets: the tutorial's synthetic problem and a loader of local UCI benchmark files."""

from ._tutorial import make_tutorial_regression
from ._uci import UCI_DATASETS, load_uci

__all__ = ["UCI_DATASETS", "load_uci", "make_tutorial_regression"]
