"""Search spaces: named dimensions, conditions that switch dimensions on and off, constraints.

A configuration of a space is a flat dict holding a value for every *active* dimension and for
nothing else. A dimension is active when all of its :class:`Condition` objects hold on the
values of the dimensions resolved before it (conditions are resolved in dependency order, and a
condition whose parent is inactive does not hold).
"""

import json
import math
import operator
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from ..exceptions import ConfigError
from ._dimensions import (
    Categorical,
    Dimension,
    Float,
    Int,
    _as_rng,
    _fail,
    _is_json_scalar,
    _is_real,
    _plain,
    _same,
)

__all__ = ["Condition", "SearchSpace"]

_ORDER_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_OPS = (*_ORDER_OPS, "==", "!=", "in")


def config_key(config):
    """A hashable key equal for equal configurations (order of the keys ignored)."""
    try:
        key = tuple(sorted(config.items()))
        hash(key)
    except TypeError:  # an unhashable value (a list): fall back to canonical JSON
        return json.dumps(config, sort_keys=True, default=repr)
    return key


class Condition:
    """A rule on one parent dimension that makes another dimension active.

    Parameters
    ----------
    parent : str
        Name of the dimension the rule reads.
    op : {">", ">=", "<", "<=", "==", "!=", "in"}
        The comparison. Order comparisons need a real-number ``value``; ``"in"`` needs a
        non-empty list of JSON scalars.
    value : str, int, float, bool, None or list
        What the parent's value is compared with.

    Examples
    --------
    >>> cond = Condition("num_layers", ">=", 2)
    >>> cond.holds({"num_layers": 3}), cond.holds({"num_layers": 1}), cond.holds({})
    (True, False, False)
    """

    __slots__ = ("op", "parent", "value")

    def __init__(self, parent, op, value):
        if not isinstance(parent, str) or not parent:
            _fail("Condition(parent=...)", "a non-empty str naming a dimension", parent,
                  "Pass the name of the dimension the condition reads, e.g. 'num_layers'.")
        if op not in _OPS:
            _fail("Condition(op=...)", "one of " + ", ".join(map(repr, _OPS)), op,
                  "Use e.g. '>=' for 'at least' or 'in' for a set of values.")
        if op in _ORDER_OPS:
            if not _is_real(value) or not math.isfinite(value):
                _fail(f"Condition(value=...) with op {op!r}", "a finite real number", value,
                      "Compare numeric dimensions only, or use '==' / 'in' for choices.")
            value = _plain(value)
        elif op == "in":
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) \
                    or not value or not all(_is_json_scalar(v) for v in value):
                _fail("Condition(value=...) with op 'in'", "a non-empty list of JSON scalars",
                      value, "Pass e.g. ['adam', 'adamw'].")
            value = tuple(_plain(v) for v in value)
        elif not _is_json_scalar(value):
            _fail(f"Condition(value=...) with op {op!r}", "a JSON scalar (str, int, float, "
                  "bool or None)", value, "Compare with one of the parent's values.")
        else:
            value = _plain(value)
        for name, item in (("parent", parent), ("op", op), ("value", value)):
            object.__setattr__(self, name, item)

    def __setattr__(self, name, value):
        raise AttributeError(f"Condition is immutable; make a new one instead of setting "
                             f"{name!r}.")

    def holds(self, config):
        """Whether the condition holds on ``config``.

        Parameters
        ----------
        config : dict
            A (partial) flat configuration holding only active dimensions.

        Returns
        -------
        bool
            False when the parent is missing (inactive) or its value cannot be compared.
        """
        if not isinstance(config, Mapping) or self.parent not in config:
            return False
        actual = config[self.parent]
        if self.op in _ORDER_OPS:
            return _is_real(actual) and bool(_ORDER_OPS[self.op](actual, self.value))
        if self.op == "==":
            return _same(actual, self.value)
        if self.op == "!=":
            return not _same(actual, self.value)
        return any(_same(actual, v) for v in self.value)

    def _key(self):
        value = self.value
        if self.op == "in":
            value = tuple((type(v) is bool, v) for v in value)
        else:
            value = (type(value) is bool, value)
        return (self.parent, self.op, value)

    def __eq__(self, other):
        if not isinstance(other, Condition):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return (Condition, (self.parent, self.op, self._json_value()))

    def _json_value(self):
        return list(self.value) if self.op == "in" else self.value

    def __repr__(self):
        return f"Condition({self.parent!r}, {self.op!r}, {self._json_value()!r})"

    def __str__(self):
        return f"{self.parent} {self.op} {self._json_value()!r}"

    def to_dict(self):
        """Return ``{"parent": ..., "op": ..., "value": ...}`` (JSON-able)."""
        return {"parent": self.parent, "op": self.op, "value": self._json_value()}

    @classmethod
    def from_dict(cls, d):
        """Make a condition from the output of :meth:`to_dict`."""
        if not isinstance(d, Mapping) or set(d) != {"parent", "op", "value"}:
            _fail("a condition dict", "a dict with keys 'parent', 'op' and 'value'", d,
                  "Use the output of Condition.to_dict().")
        return cls(d["parent"], d["op"], d["value"])


def _as_dimension(name, value):
    if isinstance(value, Dimension):
        return value
    if isinstance(value, (list, tuple)):
        return Categorical(value)
    if _is_json_scalar(value):
        return Categorical([value])
    raise TypeError(
        f"dimensions[{name!r}] must be a Dimension (Int, Float, Categorical), a list of "
        f"choices or a constant JSON scalar; got {value!r}. Wrap it, e.g. Int(1, 5) or "
        "['relu', 'tanh']."
    )


def _dependency_order(names, conditions):
    """Order ``names`` so that every parent comes before its children (stable otherwise).

    Raises ConfigError naming the cycle when there is one.
    """
    parents = {name: [c.parent for c in conditions.get(name, ())] for name in names}
    order, state = [], {}  # state: 1 while on the DFS stack, 2 when placed

    def visit(name, path):
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name):], name]
            _fail("conditions", "free of cycles (a dimension cannot depend on itself)",
                  " -> ".join(cycle), "Remove one of the conditions along the cycle.")
        state[name] = 1
        for parent in parents[name]:
            visit(parent, [*path, name])
        state[name] = 2
        order.append(name)

    for name in names:
        visit(name, [])
    return tuple(order)


def _constraint_name(constraint):
    """A function's name, or the repr of a callable object (its class name when the repr is
    the default one with a memory address)."""
    name = getattr(constraint, "__name__", None)
    if name:
        return name
    if type(constraint).__repr__ is object.__repr__:
        return type(constraint).__name__
    return repr(constraint)


class SearchSpace:
    """A space of flat configurations: dimensions, conditions and constraints.

    Parameters
    ----------
    dimensions : dict
        Maps each name (str) to a :class:`Dimension`, a list or tuple of choices (shorthand
        for :class:`Categorical`) or a plain JSON scalar (a constant that appears in every
        configuration where it is active). The order of the dict is the order of
        :attr:`names`, of the keys of sampled configurations and of encoded columns.
    conditions : dict, optional
        Maps a dimension name to a :class:`Condition` or a list of them; the dimension is
        active only when all of them hold. Parents must be dimensions of the space and the
        conditions must not form a cycle.
    constraints : sequence of callable, optional
        Functions ``f(config) -> bool`` that every valid configuration satisfies; they receive
        the flat configuration (active dimensions only, so read optional keys with
        ``config.get``). Sampling and mutation reject configurations that break one and try
        again, at most :attr:`max_tries` times. Constraints must be picklable (module-level
        functions or instances of module-level classes, not lambdas) for the space to pickle,
        and they are not part of :meth:`to_dict`.

    Examples
    --------
    >>> import numpy as np
    >>> space = SearchSpace(
    ...     {"num_layers": Int(1, 3), "units_2": Int(8, 64), "activation": ["relu", "tanh"],
    ...      "batch_size": 32},
    ...     conditions={"units_2": Condition("num_layers", ">=", 2)},
    ... )
    >>> config = space.sample(np.random.default_rng(0))
    >>> space.is_valid(config), ("units_2" in config) == (config["num_layers"] >= 2)
    (True, True)
    """

    #: How many configurations sampling and mutation draw before deciding that the
    #: constraints cannot be met.
    max_tries = 1000

    def __init__(self, dimensions, conditions=None, constraints=None):
        if not isinstance(dimensions, Mapping):
            raise TypeError(f"dimensions must be a dict mapping names to dimensions; got "
                            f"{type(dimensions).__name__}. Pass e.g. {{'units': Int(8, 64)}}.")
        dims = {}
        for name, value in dimensions.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"dimension names must be non-empty str; got {name!r}. "
                                "Use string keys such as 'units_1'.")
            dims[name] = _as_dimension(name, value)

        conditions = {} if conditions is None else conditions
        if not isinstance(conditions, Mapping):
            raise TypeError(f"conditions must be a dict mapping names to Conditions; got "
                            f"{type(conditions).__name__}. Pass e.g. "
                            "{'units_2': Condition('num_layers', '>=', 2)}.")
        conds = {}
        for name, value in conditions.items():
            if name not in dims:
                _fail(f"conditions key {name!r}", "a dimension of the space", name,
                      "Add the dimension or remove its conditions.")
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            for cond in items:
                if not isinstance(cond, Condition):
                    raise TypeError(f"conditions[{name!r}] must be a Condition or a list of "
                                    f"them; got {cond!r}. Use e.g. "
                                    "Condition('num_layers', '>=', 2).")
                if cond.parent not in dims:
                    _fail(f"the parent of conditions[{name!r}]", "a dimension of the space",
                          cond.parent, "Add the parent dimension or fix its name.")
            if items:
                conds[name] = tuple(items)

        constraints = () if constraints is None else constraints
        if callable(constraints) or not isinstance(constraints, (list, tuple)):
            raise TypeError(f"constraints must be a list of callables f(config) -> bool; got "
                            f"{constraints!r}. Wrap a single one in a list.")
        for constraint in constraints:
            if not callable(constraint):
                raise TypeError(f"each constraint must be callable f(config) -> bool; got "
                                f"{constraint!r}. Pass a function or a callable object.")

        self._dimensions = dims
        self._conditions = conds
        self._constraints = tuple(constraints)
        self._names = tuple(dims)
        self._order = _dependency_order(self._names, conds)

    # -- description -----------------------------------------------------------------------

    @property
    def names(self):
        """tuple of str: the dimension names, in order."""
        return self._names

    @property
    def dimensions(self):
        """Read-only mapping of name to :class:`Dimension`."""
        return MappingProxyType(self._dimensions)

    @property
    def conditions(self):
        """Read-only mapping of name to the tuple of its :class:`Condition` objects."""
        return MappingProxyType(self._conditions)

    @property
    def constraints(self):
        """tuple of callable: the user constraints."""
        return self._constraints

    def __len__(self):
        return len(self._names)

    def __iter__(self):
        return iter(self._names)

    def __getitem__(self, name):
        return self._dimensions[name]

    def __contains__(self, item):
        """``name in space`` for a dimension name; ``config in space`` for a valid config."""
        if isinstance(item, str):
            return item in self._dimensions
        if isinstance(item, Mapping):
            return self.is_valid(item)
        return False

    def __eq__(self, other):
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return (list(self._dimensions.items()) == list(other._dimensions.items())
                and {k: set(v) for k, v in self._conditions.items()}
                == {k: set(v) for k, v in other._conditions.items()}
                and self._constraints == other._constraints)

    __hash__ = None

    def __repr__(self):
        lines = []
        for name in self._names:
            line = f"    {name}: {self._dimensions[name]!r}"
            if name in self._conditions:
                line += "  if " + " and ".join(map(str, self._conditions[name]))
            lines.append(line)
        if self._constraints:
            lines.append("    constraints: "
                         + ", ".join(_constraint_name(c) for c in self._constraints))
        return "SearchSpace(\n" + "\n".join(lines) + "\n)" if lines else "SearchSpace({})"

    # -- activity and validity -------------------------------------------------------------

    def _holds(self, name, config):
        return all(cond.holds(config) for cond in self._conditions.get(name, ()))

    def _resolve(self, values, rng=None):
        """Walk the names in dependency order and keep the active ones.

        Active names take their value from ``values`` or, when missing there and ``rng`` is
        given, a fresh draw; inactive names are dropped. Returns a dict in :attr:`names` order.
        """
        out = {}
        for name in self._order:
            if not self._holds(name, out):
                continue
            if name in values:
                out[name] = values[name]
            elif rng is not None:
                out[name] = self._dimensions[name].sample(rng)
        return {name: out[name] for name in self._names if name in out}

    def active(self, config):
        """Names of the dimensions that are active given the values in ``config``.

        Parameters
        ----------
        config : dict
            A (possibly partial) flat configuration; values of inactive dimensions in it are
            ignored.

        Returns
        -------
        list of str
            In :attr:`names` order. A dimension whose parent is missing from ``config`` is
            not active.
        """
        active, view = set(), {}
        for name in self._order:
            if self._holds(name, view):
                active.add(name)
                if name in config:
                    view[name] = config[name]
        return [name for name in self._names if name in active]

    def _violated(self, config):
        """Index of the first constraint that ``config`` breaks, or None."""
        for i, constraint in enumerate(self._constraints):
            if not constraint(config):
                return i
        return None

    def validate(self, config, check_constraints=True):
        """Raise if ``config`` is not a valid configuration of this space.

        A valid configuration holds a contained value for every active dimension, no other
        key, and satisfies every constraint.

        Parameters
        ----------
        config : dict
            A flat configuration.
        check_constraints : bool, default=True
            Whether to call the user constraints too.

        Raises
        ------
        ConfigError
            Naming the offending key, the rule, the value and the fix.
        """
        if not isinstance(config, Mapping):
            _fail("config", "a dict", type(config).__name__,
                  "Pass a flat configuration such as space.sample(rng).")
        unknown = [key for key in config if key not in self._dimensions]
        if unknown:
            _fail("config keys", "dimensions of the space", unknown,
                  "Remove the unknown keys (or add dimensions for them).")
        for name in self._order:
            conds = self._conditions.get(name, ())
            if self._holds(name, config):
                dim = self._dimensions[name]
                if name not in config:
                    why = f" (active because {' and '.join(map(str, conds))})" if conds else ""
                    _fail(f"config[{name!r}]", f"present{why}", None,
                          f"Add a value: {dim.describe()}.")
                if not dim.contains(config[name]):
                    _fail(f"config[{name!r}]", dim.describe(), config[name],
                          f"Pick a value of {dim!r}.")
            elif name in config:
                failed = next(c for c in conds if not c.holds(config))
                _fail(f"config[{name!r}]", f"absent because it is inactive ({failed} does not "
                      "hold)", config[name], "Remove the key.")
        if check_constraints:
            i = self._violated(config)
            if i is not None:
                name = _constraint_name(self._constraints[i])
                _fail("config", f"accepted by the constraint {name}",
                      dict(config), "Change the values the constraint checks.")

    def is_valid(self, config):
        """Whether :meth:`validate` accepts ``config``.

        Returns
        -------
        bool
        """
        try:
            self.validate(config)
        except ConfigError:
            return False
        return True

    # -- sampling and mutation -------------------------------------------------------------

    def _unsatisfiable(self, what, rejected):
        counts = ", ".join(f"{_constraint_name(self._constraints[i])} rejected {n}"
                           for i, n in sorted(rejected.items()))
        raise ConfigError(
            f"the constraints must accept some configurations; none of {self.max_tries} "
            f"{what} was accepted ({counts}). The constraints look unsatisfiable: loosen them, "
            "narrow the dimensions so that they hold more often, or check that each returns "
            "True for valid configurations."
        )

    def sample(self, rng):
        """Draw a configuration: a value for every active dimension, satisfying constraints.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (an int seed or None is also accepted).

        Returns
        -------
        dict
            Flat and JSON-able, keys in :attr:`names` order.

        Raises
        ------
        ConfigError
            If no draw out of :attr:`max_tries` satisfies the constraints.
        """
        rng = _as_rng(rng)
        rejected = Counter()
        for _ in range(self.max_tries):
            config = self._resolve({}, rng)
            i = self._violated(config)
            if i is None:
                return config
            rejected[i] += 1
        self._unsatisfiable("draws", rejected)

    def is_mutable(self, config):
        """Whether :meth:`mutate` can change ``config``: one of its active dimensions has
        more than one value (a fixed architecture, say, has none)."""
        return bool(self._mutable(config))

    def _mutable(self, config):
        """The active dimensions of ``config`` that have more than one value."""
        return [n for n in self.active(config) if not self._dimensions[n].is_constant]

    def mutate(self, config, rng):
        """Change one active, non-constant dimension of ``config`` to a neighbouring value.

        Dimensions that the change activates get freshly sampled values; dimensions that it
        deactivates are dropped. Mutations that break a constraint are drawn again.

        Parameters
        ----------
        config : dict
            A configuration of this space (constraints aside: a seed that breaks them may
            still be mutated into one that satisfies them).
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        dict
            A new configuration; ``config`` is not modified.

        Raises
        ------
        ConfigError
            If ``config`` is not a configuration of the space, has nothing to mutate, or no
            mutation out of :attr:`max_tries` satisfies the constraints.
        """
        rng = _as_rng(rng)
        self.validate(config, check_constraints=False)
        candidates = self._mutable(config)
        if not candidates:
            _fail("config", "a configuration with an active, non-constant dimension", config,
                  "Add a dimension with more than one value to the space, or check "
                  "is_mutable(config) first.")
        rejected = Counter()
        for _ in range(self.max_tries):
            name = candidates[int(rng.integers(len(candidates)))]
            values = dict(config)
            values[name] = self._dimensions[name].neighbor(config[name], rng)
            new = self._resolve(values, rng)
            i = self._violated(new)
            if i is None:
                return new
            rejected[i] += 1
        self._unsatisfiable("mutations", rejected)

    def project(self, config, rng=None):
        """Bring a configuration from elsewhere (e.g. an estimator's) into the space.

        Numbers outside a range are clipped to it (ints rounded), a dimension the space fixes
        to one value takes it, values of active dimensions that are missing are sampled, and
        unknown or inactive keys are dropped. Useful to seed
        a search with :func:`autodeuq.space.to_flat_config` of an estimator's configuration.

        Parameters
        ----------
        config : dict
            A flat configuration, possibly outside the space.
        rng : numpy.random.Generator, optional
            Source of randomness for missing values.

        Returns
        -------
        dict
            A valid configuration.

        Raises
        ------
        ConfigError
            If a categorical value is not one of the choices, or the result breaks a
            constraint.
        """
        if not isinstance(config, Mapping):
            _fail("config", "a dict", type(config).__name__, "Pass a flat configuration.")
        values = {}
        for name, value in config.items():
            dim = self._dimensions.get(name)
            if dim is None:
                continue
            value = _plain(value)
            if isinstance(dim, (Int, Float)) and not dim.contains(value) and _is_real(value) \
                    and math.isfinite(value):
                value = min(dim.high, max(dim.low, value))
                value = round(float(value)) if isinstance(dim, Int) else float(value)
            elif dim.is_constant and not dim.contains(value):
                value = dim.sample(None)  # the space fixes this dimension: take its value
            values[name] = value
        projected = self._resolve(values, _as_rng(rng))
        self.validate(projected)
        return projected

    # -- encoding and subspaces ------------------------------------------------------------

    def encode(self, configs):
        """Encode configurations as a float matrix for surrogate models.

        Parameters
        ----------
        configs : dict or sequence of dict
            Configurations of this space (constraints are not checked).

        Returns
        -------
        ndarray of shape (n_configs, len(names))
            Column ``j`` encodes dimension ``names[j]`` in ``[0, 1]`` (log scaled where the
            dimension is; categorical choices as ``index / max(1, k - 1)``), and -1.0 where
            it is inactive.
        """
        if isinstance(configs, Mapping):
            configs = [configs]
        out = np.full((len(configs), len(self._names)), -1.0)
        for i, config in enumerate(configs):
            self.validate(config, check_constraints=False)
            for j, name in enumerate(self._names):
                if name in config:
                    out[i, j] = self._dimensions[name].encode(config[name])
        return out

    def subspace(self, names, constraints=None):
        """The space over some of the dimensions.

        Parameters
        ----------
        names : iterable of str
            Dimensions to keep; the subspace keeps this space's order.
        constraints : sequence of callable, optional
            Constraints of the subspace. None (the default) keeps none: this space's
            constraints read full configurations, so check them on the merged configuration
            (``space.is_valid``), or pass those that apply to the subspace's configurations.

        Returns
        -------
        SearchSpace
            With the conditions whose parents are kept; a dimension whose conditions all
            read dropped dimensions becomes unconditionally active.
        """
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._dimensions]
        if unknown:
            _fail("subspace names", "dimensions of the space", unknown,
                  "Pick names from space.names.")
        keep = set(names)
        dims = {n: d for n, d in self._dimensions.items() if n in keep}
        conds = {}
        for name, items in self._conditions.items():
            kept = [c for c in items if name in keep and c.parent in keep]
            if kept:
                conds[name] = kept
        return SearchSpace(dims, conds, constraints)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self):
        """Return a JSON-able description of the dimensions and conditions.

        Constraints are code, not data, and are not included: pass them again to
        :meth:`from_dict`.

        Returns
        -------
        dict
            ``{"dimensions": {name: dimension dict}, "conditions": {name: [condition
            dict, ...]}}``
        """
        return {
            "dimensions": {name: dim.to_dict() for name, dim in self._dimensions.items()},
            "conditions": {name: [c.to_dict() for c in items]
                           for name, items in self._conditions.items()},
        }

    @classmethod
    def from_dict(cls, d, constraints=None):
        """Make a space from the output of :meth:`to_dict`.

        Parameters
        ----------
        d : dict
            ``{"dimensions": ..., "conditions": ...}``.
        constraints : sequence of callable, optional
            Constraints to attach (they are not serialised).

        Returns
        -------
        SearchSpace
        """
        if not isinstance(d, Mapping) or "dimensions" not in d \
                or not set(d) <= {"dimensions", "conditions"}:
            _fail("a search space dict", "a dict with keys 'dimensions' and 'conditions'", d,
                  "Use the output of SearchSpace.to_dict().")
        conditions = d.get("conditions") or {}
        if not isinstance(d["dimensions"], Mapping) or not isinstance(conditions, Mapping) or any(
                not isinstance(items, (list, tuple)) for items in conditions.values()):
            _fail("a search space dict", "'dimensions' a dict of dimension dicts and "
                  "'conditions' a dict of lists of condition dicts", d,
                  "Use the output of SearchSpace.to_dict().")
        dims = {name: Dimension.from_dict(dim) for name, dim in d["dimensions"].items()}
        conds = {name: [Condition.from_dict(c) for c in items]
                 for name, items in conditions.items()}
        return cls(dims, conds, constraints)

    @classmethod
    def coerce(cls, obj):
        """Turn what a user passes as a search space into a :class:`SearchSpace`.

        Parameters
        ----------
        obj : None, SearchSpace or dict
            None for :func:`autodeuq.space.default_space`; a space (returned as is); a dict of
            dimensions.

        Returns
        -------
        SearchSpace

        Raises
        ------
        TypeError
            For anything else.
        """
        if obj is None:
            from ._default import default_space

            return default_space()
        if isinstance(obj, SearchSpace):
            return obj
        if isinstance(obj, Mapping):
            return cls(obj)
        raise TypeError(
            f"search space must be None (the default AutoDEUQ space), a SearchSpace or a dict "
            f"of dimensions; got {type(obj).__name__}. Pass e.g. {{'num_layers': Int(1, 5), "
            "'units_1': Int(16, 512, log=True)}."
        )
