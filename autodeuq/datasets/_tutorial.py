"""The toy problem of the AutoDEUQ tutorial: two noisy islands of a sine, and a gap."""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_tutorial_regression"]


def make_tutorial_regression(n_samples_per_region=200, n_test=400, noise=(0.5, 1.0),
                             random_state=None):
    """Make the tutorial's one-dimensional regression problem, ``y = 2 sin(x) + noise``.

    Training inputs are drawn uniformly from two regions, ``[-30, -20]`` with noise standard
    deviation ``noise[0]`` and ``[20, 30]`` with ``noise[1]``, so the aleatoric uncertainty
    differs between them. Test inputs are evenly spaced over ``[-40, 40]`` with noise-free
    targets: the middle ``(-20, 20)`` and the outer edges are out of the training
    distribution, where a good model shows large epistemic uncertainty.

    Parameters
    ----------
    n_samples_per_region : int, default=200
        Training samples in each of the two regions.
    n_test : int, default=400
        Test samples over ``[-40, 40]``.
    noise : tuple of two floats, default=(0.5, 1.0)
        Noise standard deviation in the left and the right region.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    X_train : ndarray of shape (2 * n_samples_per_region, 1)
    y_train : ndarray of shape (2 * n_samples_per_region,)
    X_test : ndarray of shape (n_test, 1)
    y_test : ndarray of shape (n_test,)
        The noise-free function ``2 sin(x)``.
    """
    for name, value in (("n_samples_per_region", n_samples_per_region), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
    try:
        noise_arr = np.asarray(noise, dtype=float) if np.ndim(noise) == 1 else None
    except (TypeError, ValueError):  # text that is no number
        noise_arr = None
    if noise_arr is None or noise_arr.shape != (2,) or not np.all(np.isfinite(noise_arr)) \
            or np.any(noise_arr < 0):
        raise ValueError(f"noise must be two finite standard deviations >= 0 (left, right "
                         f"region); got {noise!r}. Pass e.g. noise=(0.5, 1.0).")
    noise = noise_arr  # the numbers ("0.5" as 0.5)
    try:
        rng = check_random_state(random_state)
    except ValueError as exc:  # numpy's words name no argument
        raise ValueError(f"random_state must be None, an int in [0, 2**32) or a numpy "
                         f"RandomState; got {random_state!r} ({exc}). Pass e.g. "
                         "random_state=0.") from None
    left = rng.uniform(-30, -20, n_samples_per_region)
    right = rng.uniform(20, 30, n_samples_per_region)
    x = np.concatenate([left, right])
    sd = np.concatenate([np.full(n_samples_per_region, noise[0]),
                         np.full(n_samples_per_region, noise[1])])
    y = 2.0 * np.sin(x) + rng.normal(0.0, 1.0, x.shape) * sd
    x_test = np.linspace(-40, 40, n_test)
    return x[:, None], y, x_test[:, None], 2.0 * np.sin(x_test)
