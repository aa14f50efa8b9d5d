"""Checks of arguments that the evaluation layer and the estimators above it share.

An estimator checks its parameters before ``fit`` starts any work, and an evaluator checks
the same values again when it is used on its own; both call these, so the rule and its message
are written once. Every error names the argument, the rule, the value received and the fix.
"""

import numbers

__all__ = ["check_positive_int", "check_trials_per_device"]


def check_positive_int(name, value, fix, *, allow_none=False):
    """``value`` as an int >= 1, or a ValueError naming ``name``, the rule, the value and ``fix``.

    Parameters
    ----------
    name : str
        The argument's name, as the user wrote it.
    value : object
        What was passed. ``bool`` is refused although it is an ``int``.
    fix : str
        What to pass instead, appended to the message.
    allow_none : bool, default=False
        Whether None is accepted (and returned), meaning "no limit" or "the default".

    Returns
    -------
    int or None
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}; got "
                         f"{value!r}. {fix}")
    return int(value)


def check_trials_per_device(value):
    """``trials_per_device`` (trials sharing one GPU at once) as an int >= 1."""
    return check_positive_int("trials_per_device", value, "Use 1 for one trial per GPU at a "
                              "time, or 2 to 4 to train several small candidates on each GPU "
                              "at once.")
