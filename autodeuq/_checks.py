"""Argument checks that every layer of the package shares (it imports nothing from it).

An estimator checks its parameters before ``fit`` starts any work, an evaluator, a search or a
display checks its own when used alone; all call these, so each rule and its message are
written once. Every error names the argument, the rule, the value received and the fix.
"""

import numbers

__all__ = ["check_int", "check_trials_per_device"]


def check_int(name, value, fix="", *, low=1, allow_none=False):
    """``value`` as an int >= ``low``, or a ValueError naming ``name``, the rule, the value
    and ``fix``.

    Parameters
    ----------
    name : str
        The argument's name, as the user wrote it.
    value : object
        What was passed. ``bool`` is refused although it is an ``int``.
    fix : str, default=""
        What to pass instead, appended to the message.
    low : int, default=1
        The smallest value allowed.
    allow_none : bool, default=False
        Whether None is accepted (and returned), meaning "no limit" or "the default".

    Returns
    -------
    int or None
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{' or None' if allow_none else ''}; "
                         f"got {value!r}.{f' {fix}' if fix else ''}")
    return int(value)


def check_trials_per_device(value):
    """``trials_per_device`` (trials sharing one GPU at once) as an int >= 1."""
    return check_int("trials_per_device", value, "Use 1 for one trial per GPU at a time, or "
                     "more, up to the CPU cores per GPU, to train several small candidates on "
                     "each GPU at once.")
