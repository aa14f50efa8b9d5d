"""Post-hoc recalibration: one factor on every component's standard deviation."""

import numpy as np
from scipy.optimize import minimize_scalar

from ._metrics import nll
from ._mixture import NormalMixture

__all__ = ["fit_std_scale"]

# The factor is searched in [e^-3, e^3]: far beyond any honest miscalibration.
_LOG_BOUND = 3.0


def fit_std_scale(y_true, y_pred, widen_only=False):
    """The factor on every component's std that minimizes the NLL of held-out data.

    Scaling the components' standard deviations by ``s`` keeps the means (so the epistemic
    part) and multiplies the aleatoric variance by ``s**2``: it corrects networks that are
    over- or under-confident about the noise, the usual failure of a Gaussian network trained
    on a small sample. Fit it on data the members were not trained on.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : NormalMixture
        Predictions for the same samples.
    widen_only : bool, default=False
        Return ``max(1, s)``: correct overconfidence only. A factor below 1 gains at most
        ``-log s`` per well-predicted point but multiplies the squared error term of a point
        far from every mean by ``1 / s**2``; fitted on a few hundred points that also chose
        the members (which then look better there than they are), it is biased low.

    Returns
    -------
    float
        ``s > 0``; 1 means the predictions were already calibrated in NLL.
    """
    if not isinstance(y_pred, NormalMixture):
        raise TypeError(f"y_pred must be a NormalMixture; got {type(y_pred).__name__}.")
    if not isinstance(widen_only, bool | np.bool_):
        raise TypeError(f"widen_only must be a bool; got {widen_only!r}. Pass True or False.")

    def loss(log_scale):
        return nll(y_true, NormalMixture(y_pred.means, y_pred.stds * np.exp(log_scale),
                                         y_pred.weights))

    result = minimize_scalar(loss, bounds=(-_LOG_BOUND, _LOG_BOUND), method="bounded",
                             options={"xatol": 1e-4})
    # Keep 1 unless scaling really helps (a flat loss must not drift the factor).
    scale = float(np.exp(result.x)) if result.fun < loss(0.0) else 1.0
    return max(1.0, scale) if widen_only else scale
