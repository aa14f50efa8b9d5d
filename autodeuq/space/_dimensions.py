"""Dimensions of a search space: integer and float ranges and categorical choices.

A dimension is an immutable, validated value object. It samples Python values (never numpy
scalars) from a :class:`numpy.random.Generator`, proposes a different value for mutation, tests
membership and encodes values into ``[0, 1]`` for surrogate models. Dimensions pickle by their
constructor arguments and round-trip through :meth:`Dimension.to_dict` and
:meth:`Dimension.from_dict`, so spaces can be sent to Dask workers and saved as JSON.
"""

import math
import numbers

import numpy as np

from ..exceptions import ConfigError

__all__ = ["Categorical", "Dimension", "Float", "Int"]

#: Draws tried by ``neighbor`` before falling back to an exact choice among the other values.
_NEIGHBOR_TRIES = 100


def _fail(name, rule, value, fix):
    raise ConfigError(f"{name} must be {rule}; got {value!r}. {fix}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _as_rng(rng):
    """A :class:`numpy.random.Generator` from a Generator (returned as is), a seed or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# The largest |bound| of an Int: numpy's draws, and high + 1, stay within 64 bits.
_INT_BOUND = 2**62


def _plain(value):
    """Turn a numpy scalar into the Python scalar it holds; leave anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _scalar_key(value):
    """A hashable key that tells JSON scalars apart as JSON does (``True`` is not ``1``).

    Returns None when ``value`` is not a JSON scalar (str, int, float, bool or None).
    """
    value = _plain(value)
    if value is None:
        return ("none", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, (int, float)):
        return ("num", value)
    return None


def _is_json_scalar(value):
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return _scalar_key(value) is not None


def _same(a, b):
    """Whether two JSON scalars are equal as JSON values (``True != 1``)."""
    key = _scalar_key(a)
    return key is not None and key == _scalar_key(b)


class Dimension:
    """Base class of the search-space dimensions.

    Subclasses are immutable: they validate their arguments when made, compare and hash by
    value, and pickle by their constructor arguments.
    """

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one instead of "
                             f"setting {name!r}.")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable; cannot delete {name!r}.")

    def _set(self, **attributes):
        for name, value in attributes.items():
            object.__setattr__(self, name, value)

    def _args(self):
        """Constructor arguments, in order (used for pickling, equality and hashing)."""
        raise NotImplementedError

    def _key(self):
        return self._args()

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def __reduce__(self):
        return (type(self), self._args())

    @property
    def size(self):
        """Number of distinct values (``math.inf`` for a float range)."""
        raise NotImplementedError

    @property
    def is_constant(self):
        """Whether the dimension holds a single value (and so can never be mutated)."""
        return self.size == 1

    def describe(self):
        """The rule a value must follow, worded for error messages (e.g. "an int in [1, 5]")."""
        raise NotImplementedError

    def to_dict(self):
        """Return a JSON-able dict that :meth:`Dimension.from_dict` turns back into this."""
        raise NotImplementedError

    @staticmethod
    def from_dict(d):
        """Make a dimension from the output of :meth:`to_dict`.

        Parameters
        ----------
        d : dict
            ``{"type": "int" | "float" | "categorical", ...}`` with the constructor arguments.

        Returns
        -------
        Dimension
        """
        kinds = {"int": Int, "float": Float, "categorical": Categorical}
        if not isinstance(d, dict) or d.get("type") not in kinds:
            _fail("a dimension dict", "a dict whose 'type' is one of " + ", ".join(kinds), d,
                  "Use the output of Dimension.to_dict(), e.g. {'type': 'int', 'low': 1, "
                  "'high': 5, 'log': False}.")
        kwargs = {k: v for k, v in d.items() if k != "type"}
        try:
            return kinds[d["type"]](**kwargs)
        except TypeError as exc:
            raise ConfigError(f"dimension dict {d!r} does not match {kinds[d['type']].__name__}"
                              f"'s arguments ({exc}). Use the output of Dimension.to_dict().") \
                from None

    def _check_contained(self, value):
        if not self.contains(value):
            _fail("value", self.describe(), value, f"Encode only values of {self!r}.")


class _Range(Dimension):
    """Shared logic of :class:`Int` and :class:`Float`: bounds, log scaling, encoding."""

    __slots__ = ("high", "log", "low")

    def _args(self):
        return (self.low, self.high, self.log)

    def __repr__(self):
        log = ", log=True" if self.log else ""
        return f"{type(self).__name__}({self.low!r}, {self.high!r}{log})"

    def to_dict(self):
        return {"type": type(self).__name__.lower(), "low": self.low, "high": self.high,
                "log": self.log}

    def encode(self, value):
        """Map a value of the dimension to ``[0, 1]`` (linearly in log space when ``log``).

        Parameters
        ----------
        value : int or float
            A value the dimension contains.

        Returns
        -------
        float
            0.0 for a constant dimension.

        Raises
        ------
        ConfigError
            If the dimension does not contain ``value``.
        """
        self._check_contained(value)
        if self.low == self.high:
            return 0.0
        if self.log:
            lo, hi, v = math.log(self.low), math.log(self.high), math.log(value)
        else:
            lo, hi, v = self.low, self.high, value
        return float(min(1.0, max(0.0, (v - lo) / (hi - lo))))


def _check_log(cls, log):
    if not isinstance(log, (bool, np.bool_)):
        _fail(f"{cls}(log=...)", "True or False", log,
              "Pass log=True to sample uniformly in log space.")
    return bool(log)


class Int(_Range):
    """An inclusive range of integers.

    Parameters
    ----------
    low, high : int
        Smallest and largest value (both included); ``low <= high`` (equal for a constant).
    log : bool, default=False
        Sample uniformly in log space (each integer ``i`` gets the log-uniform mass of
        ``[i, i + 1)``); requires ``low >= 1``.

    Examples
    --------
    >>> import numpy as np
    >>> units = Int(16, 512, log=True)
    >>> units.contains(64), units.contains(8)
    (True, False)
    >>> 16 <= units.sample(np.random.default_rng(0)) <= 512
    True
    """

    __slots__ = ()

    def __init__(self, low, high, log=False):
        for arg, value in (("low", low), ("high", high)):
            if not _is_int(value):
                _fail(f"Int({arg}=...)", "an int", value,
                      "Use Float for a real-valued range, or pass a whole number such as 16.")
        low, high = int(low), int(high)
        for arg, value in (("low", low), ("high", high)):
            if abs(value) > _INT_BOUND:  # numpy draws 64-bit integers
                _fail(f"Int({arg}=...)", "an int in [-2**62, 2**62]", value,
                      "Narrow the range (or use Float with log=True for a huge one).")
        log = _check_log("Int", log)
        if low > high:
            _fail("Int(low=..., high=...)", "low <= high", (low, high),
                  "Swap the bounds (or make them equal for a constant).")
        if log and low < 1:
            _fail("Int(low=...) with log=True", "an int >= 1", low,
                  "Raise low to 1 or more, or pass log=False.")
        self._set(low=low, high=high, log=log)

    @property
    def size(self):
        """Number of integers in the range."""
        return self.high - self.low + 1

    def describe(self):
        return f"an int in [{self.low}, {self.high}]"

    def contains(self, value):
        """Whether ``value`` is an int (not a bool) within the bounds."""
        return _is_int(value) and self.low <= value <= self.high

    def sample(self, rng):
        """Draw a value.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (an int seed or None is also accepted).

        Returns
        -------
        int
        """
        rng = _as_rng(rng)
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        u = rng.uniform(math.log(self.low), math.log(self.high + 1))
        return int(min(self.high, max(self.low, math.floor(math.exp(u)))))

    def neighbor(self, value, rng):
        """Draw a value different from ``value`` (the same draw as :meth:`sample`).

        Parameters
        ----------
        value : int
            The current value.
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        int
            A value other than ``value``; ``value`` itself for a constant dimension.
        """
        rng = _as_rng(rng)
        if self.is_constant:
            return self.low
        if self.log:
            for _ in range(_NEIGHBOR_TRIES):
                draw = self.sample(rng)
                if draw != value:
                    return draw
        if not self.contains(value):
            return self.sample(rng)
        draw = int(rng.integers(self.low, self.high))  # one of size - 1 other values
        return draw + 1 if draw >= value else draw


class Float(_Range):
    """A closed range of floats.

    Parameters
    ----------
    low, high : float
        Bounds, both finite, ``low <= high`` (equal for a constant).
    log : bool, default=False
        Sample uniformly in log space; requires ``low > 0``.

    Examples
    --------
    >>> lr = Float(1e-4, 1e-1, log=True)
    >>> lr.contains(1e-3), lr.contains(1.0)
    (True, False)
    >>> lr.encode(1e-4), lr.encode(1e-1)
    (0.0, 1.0)
    """

    __slots__ = ()

    def __init__(self, low, high, log=False):
        for arg, value in (("low", low), ("high", high)):
            if not _is_real(value) or not math.isfinite(value):
                _fail(f"Float({arg}=...)", "a finite real number", value,
                      "Pass bounds such as 0.0 and 0.5.")
        low, high = float(low), float(high)
        log = _check_log("Float", log)
        if low > high:
            _fail("Float(low=..., high=...)", "low <= high", (low, high),
                  "Swap the bounds (or make them equal for a constant).")
        if not math.isfinite(high - low):  # a uniform draw needs the width
            _fail("Float(low=..., high=...)", "a range whose width high - low is finite in "
                  "float64", (low, high), "Narrow the range, or pass log=True with low > 0.")
        if log and low <= 0:
            _fail("Float(low=...) with log=True", "a float > 0", low,
                  "Raise low above 0 (e.g. 1e-8), or pass log=False.")
        self._set(low=low, high=high, log=log)

    @property
    def size(self):
        """``math.inf``, or 1 when ``low == high``."""
        return 1 if self.low == self.high else math.inf

    def describe(self):
        return f"a float in [{self.low!r}, {self.high!r}]"

    def contains(self, value):
        """Whether ``value`` is a finite real number (not a bool) within the bounds."""
        return _is_real(value) and math.isfinite(value) and self.low <= value <= self.high

    def sample(self, rng):
        """Draw a value (uniformly, or log-uniformly when ``log``).

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (an int seed or None is also accepted).

        Returns
        -------
        float
        """
        rng = _as_rng(rng)
        if self.low == self.high:
            return self.low
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = float(rng.uniform(self.low, self.high))
        return float(min(self.high, max(self.low, value)))

    def neighbor(self, value, rng):
        """Draw a value different from ``value`` (the same draw as :meth:`sample`).

        Parameters
        ----------
        value : float
            The current value.
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        float
            A value other than ``value``; ``value`` itself for a constant dimension.
        """
        rng = _as_rng(rng)
        draw = self.sample(rng)
        for _ in range(_NEIGHBOR_TRIES):
            if self.is_constant or draw != value:
                break
            draw = self.sample(rng)
        return draw


class Categorical(Dimension):
    """A finite set of choices.

    Parameters
    ----------
    choices : list or tuple
        Distinct JSON scalars (str, int, float, bool or None), in the order used to encode
        them; numpy scalars are converted to Python ones. A single choice makes a constant.

    Examples
    --------
    >>> schedule = Categorical([None, "cosine", "plateau"])
    >>> schedule.contains(None), schedule.encode("plateau")
    (True, 1.0)
    """

    __slots__ = ("_index", "choices")

    def __init__(self, choices):
        if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)):
            _fail("Categorical(choices=...)", "a list or tuple of choices", choices,
                  "Wrap the values in a list, e.g. Categorical(['relu', 'tanh']); a set has "
                  "no order, so convert it with sorted().")
        if len(choices) == 0:
            _fail("Categorical(choices=...)", "non-empty", choices,
                  "Give at least one choice (one choice makes a constant).")
        bad = [c for c in choices if not _is_json_scalar(c)]
        if bad:
            _fail("Categorical(choices=...)", "JSON scalars (str, int, float, bool or None; "
                  "floats finite)", bad, "Use plain values; encode other objects as strings.")
        plain = tuple(_plain(c) for c in choices)
        index = {}
        for i, c in enumerate(plain):
            key = _scalar_key(c)
            if key in index:
                _fail("Categorical(choices=...)", "distinct", list(plain),
                      f"Remove the repeated choice {c!r}.")
            index[key] = i
        self._set(choices=plain, _index=index)

    def _args(self):
        return (list(self.choices),)

    def _key(self):
        return tuple(_scalar_key(c) for c in self.choices)

    def __repr__(self):
        return f"Categorical({list(self.choices)!r})"

    @property
    def size(self):
        """Number of choices."""
        return len(self.choices)

    def describe(self):
        return f"one of {list(self.choices)!r}"

    def to_dict(self):
        return {"type": "categorical", "choices": list(self.choices)}

    def index(self, value):
        """Position of ``value`` among the choices, or None when it is not one of them."""
        key = _scalar_key(value)
        return None if key is None else self._index.get(key)

    def contains(self, value):
        """Whether ``value`` is one of the choices (``True`` is not ``1``)."""
        return self.index(value) is not None

    def sample(self, rng):
        """Draw a choice uniformly.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (an int seed or None is also accepted).

        Returns
        -------
        str, int, float, bool or None
        """
        return self.choices[int(_as_rng(rng).integers(len(self.choices)))]

    def neighbor(self, value, rng):
        """Draw another choice uniformly.

        Parameters
        ----------
        value : str, int, float, bool or None
            The current choice.
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        str, int, float, bool or None
            A choice other than ``value``; the only choice for a constant dimension.
        """
        rng = _as_rng(rng)
        current = self.index(value)
        if current is None or self.is_constant:
            return self.sample(rng)
        draw = int(rng.integers(len(self.choices) - 1))
        return self.choices[draw + 1 if draw >= current else draw]

    def encode(self, value):
        """Map a choice to ``index / max(1, k - 1)`` in ``[0, 1]``.

        Raises
        ------
        ConfigError
            If ``value`` is not one of the choices.
        """
        self._check_contained(value)
        return self.index(value) / max(1, len(self.choices) - 1)
