"""Matplotlib displays of predictive uncertainty and of searches, in scikit-learn's style.

Each display is a plain object holding the numbers it draws, built with ``from_estimator``
(or ``from_predictions`` / ``from_results``), which computes them and calls ``plot``;
``plot(ax=None, ...)`` draws onto the given Axes or a new figure, sets ``ax_``, ``figure_``
and the artists, and returns the display.

- :class:`PredictiveBandsDisplay`: predictive mean with its aleatoric and epistemic bands;
- :class:`CalibrationDisplay`: observed against expected coverage of central intervals;
- :class:`SearchTrajectoryDisplay`: best objective so far, against time and evaluations;
- :class:`WorkerTimelineDisplay`: one bar per trial on its worker's row, to see idle time;
- :class:`ParallelCoordinatesDisplay`: the best configurations' hyperparameters.

matplotlib is imported only when a display is built or drawn (``pip install
'autodeuq[plot]'``); importing this module does not import it.
"""

from ._bands import PredictiveBandsDisplay
from ._calibration import CalibrationDisplay
from ._parallel import ParallelCoordinatesDisplay
from ._timeline import WorkerTimelineDisplay
from ._trajectory import SearchTrajectoryDisplay

__all__ = [
    "CalibrationDisplay",
    "ParallelCoordinatesDisplay",
    "PredictiveBandsDisplay",
    "SearchTrajectoryDisplay",
    "WorkerTimelineDisplay",
]
