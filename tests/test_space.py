"""Tests for autodeuq.space: dimensions, conditions, search spaces and flat configurations."""

import copy
import json
import math
import pickle

import numpy as np
import pytest
import torch

import autodeuq
from autodeuq.exceptions import AutoDEUQError, ConfigError
from autodeuq.nn import ACTIVATIONS, TRAINING_DEFAULTS, GaussianMLP, normalize_config
from autodeuq.space import (
    ARCHITECTURE,
    TRAINING,
    Categorical,
    Condition,
    Dimension,
    Float,
    Int,
    SearchSpace,
    default_space,
    split_names,
    to_flat_config,
    to_network_config,
)

_PLAIN_TYPES = (str, int, float, bool, type(None))


def _rng(seed=0):
    return np.random.default_rng(seed)


def _assert_plain(config):
    assert type(config) is dict
    for key, value in config.items():
        assert type(key) is str
        assert type(value) in _PLAIN_TYPES, (key, type(value))
    json.dumps(config)


# Picklable constraints: a module-level function and an instance of a module-level class.
class MaxTotalUnits:
    """Constraint: the hidden layers have at most ``limit`` units together."""

    def __init__(self, limit):
        self.limit = limit

    def __call__(self, config):
        n = config.get("num_layers", 0)
        return sum(config[f"units_{k}"] for k in range(1, n + 1)) <= self.limit

    def __eq__(self, other):
        return isinstance(other, MaxTotalUnits) and other.limit == self.limit

    __hash__ = None


def never(config):
    return False


@pytest.fixture(scope="module")
def space():
    return default_space(max_layers=5)


@pytest.fixture(scope="module")
def samples(space):
    rng = _rng(1)
    return [space.sample(rng) for _ in range(200)]


# -- dimensions ----------------------------------------------------------------------------

@pytest.mark.parametrize(("make", "match"), [
    (lambda: Int(1.0, 5), r"Int\(low=\.\.\.\) must be an int"),
    (lambda: Int(1, "5"), r"Int\(high=\.\.\.\) must be an int"),
    (lambda: Int(True, 5), r"Int\(low=\.\.\.\) must be an int"),
    (lambda: Int(5, 1), r"low <= high; got \(5, 1\)"),
    (lambda: Int(0, 5, log=True), r"Int\(low=\.\.\.\) with log=True must be an int >= 1; got 0"),
    (lambda: Int(1, 5, log="yes"), r"Int\(log=\.\.\.\) must be True or False"),
    (lambda: Float("0", 1.0), r"Float\(low=\.\.\.\) must be a finite real number"),
    (lambda: Float(0.0, math.inf), r"Float\(high=\.\.\.\) must be a finite real number"),
    (lambda: Float(0.0, math.nan), r"Float\(high=\.\.\.\) must be a finite real number"),
    (lambda: Float(1.0, 0.5), r"low <= high; got \(1\.0, 0\.5\)"),
    (lambda: Float(0.0, 1.0, log=True), r"Float\(low=\.\.\.\) with log=True must be a float > 0"),
    (lambda: Categorical("relu"), r"Categorical\(choices=\.\.\.\) must be a list or tuple"),
    (lambda: Categorical({1, 2}), r"Categorical\(choices=\.\.\.\) must be a list or tuple"),
    (lambda: Categorical([]), r"Categorical\(choices=\.\.\.\) must be non-empty"),
    (lambda: Categorical(["a", "a"]), r"Categorical\(choices=\.\.\.\) must be distinct"),
    (lambda: Categorical([1, 1.0]), r"Categorical\(choices=\.\.\.\) must be distinct"),
    (lambda: Categorical([[1], 2]), r"Categorical\(choices=\.\.\.\) must be JSON scalars"),
    (lambda: Categorical([math.nan]), r"Categorical\(choices=\.\.\.\) must be JSON scalars"),
])
def test_dimension_validation(make, match):
    with pytest.raises(ConfigError, match=match) as info:
        make()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AutoDEUQError)
    assert ". " in str(info.value)  # rule and value, then the fix


def test_dimension_basics():
    assert Int(3, 3).is_constant
    assert Int(3, 3).size == 1
    assert Int(1, 10).size == 10
    assert not Int(1, 10).is_constant
    assert Float(0.5, 0.5).is_constant
    assert Float(0.0, 1.0).size == math.inf
    assert Categorical([None]).is_constant
    assert Categorical([0, 1]).size == 2
    # Numpy scalars become Python values; True and 1 are different choices.
    dim = Categorical([np.int64(1), True, np.str_("a"), None])
    assert [type(c) for c in dim.choices] == [int, bool, str, type(None)]
    assert dim.contains(True)
    assert dim.contains(1)
    assert not Categorical([0, 1]).contains(True)
    assert not Int(0, 5).contains(True)
    assert not Int(0, 5).contains(2.0)
    assert Int(0, 5).contains(np.int64(3))
    assert not Int(0, 5).contains(6)
    assert Float(0.0, 0.5).contains(0)
    assert not Float(0.0, 0.5).contains(math.nan)


@pytest.mark.parametrize("dim", [
    Int(-3, 7), Int(16, 512, log=True), Int(4, 4), Float(-1.0, 2.0), Float(1e-8, 1e-2, log=True),
    Float(0.25, 0.25), Categorical(["relu", "tanh", None, 3, 2.5, False]),
])
def test_dimension_sample_neighbor_encode(dim):
    rng = _rng(0)
    draws = [dim.sample(rng) for _ in range(300)]
    assert all(dim.contains(v) for v in draws)
    assert all(type(v) in _PLAIN_TYPES for v in draws)
    assert [dim.sample(_rng(7)) for _ in range(3)] == [dim.sample(_rng(7)) for _ in range(3)]
    for v in draws[:50]:
        n = dim.neighbor(v, rng)
        assert dim.contains(n)
        assert type(n) in _PLAIN_TYPES
        assert (n == v) if dim.is_constant else (n != v or type(n) is not type(v))
        e = dim.encode(v)
        assert type(e) is float
        assert 0.0 <= e <= 1.0
    # Immutable, equal by value, and round trips through pickle and JSON.
    with pytest.raises(AttributeError, match="immutable"):
        dim.low = 0
    assert pickle.loads(pickle.dumps(dim)) == dim
    again = Dimension.from_dict(json.loads(json.dumps(dim.to_dict())))
    assert again == dim
    assert hash(again) == hash(dim)
    assert repr(again) == repr(dim)
    assert eval(repr(dim)) == dim


def test_dimension_encode_values():
    assert Int(0, 10).encode(5) == 0.5
    assert Int(1, 100, log=True).encode(10) == pytest.approx(0.5)
    assert Float(1e-4, 1e-1, log=True).encode(1e-1) == 1.0
    assert Float(0.5, 0.5).encode(0.5) == 0.0
    assert Categorical(["a", "b", "c"]).encode("b") == 0.5
    assert Categorical(["a"]).encode("a") == 0.0
    with pytest.raises(ConfigError, match="one of"):
        Categorical(["a", "b"]).encode("c")
    with pytest.raises(ConfigError, match=r"an int in \[0, 10\]"):
        Int(0, 10).encode(11)
    assert Int(1, 5) != Float(1.0, 5.0)
    assert Int(1, 5) == Int(1, 5) != Int(1, 5, log=True)
    assert Categorical([0, 1]) != Categorical([False, True])
    assert len({Int(1, 5), Int(1, 5), Categorical(["a"])}) == 2


def test_log_dimensions_sample_uniformly_in_log_space():
    rng = _rng(3)
    x = np.log10([Float(1e-4, 1e-1, log=True).sample(rng) for _ in range(4000)])
    counts, _ = np.histogram(x, bins=3, range=(-4, -1))
    assert np.all(np.abs(counts / len(x) - 1 / 3) < 0.04), counts
    units = np.array([Int(16, 512, log=True).sample(rng) for _ in range(4000)])
    # log2 of [16, 513) spans 5 octaves: each should hold about a fifth of the draws.
    counts, _ = np.histogram(np.log2(units), bins=5, range=(4, math.log2(513)))
    assert np.all(np.abs(counts / len(units) - 0.2) < 0.04), counts
    assert units.min() >= 16
    assert units.max() <= 512


def test_categorical_neighbor_is_uniform_over_the_others():
    dim, rng = Categorical(["a", "b", "c", "d"]), _rng(0)
    draws = [dim.neighbor("b", rng) for _ in range(3000)]
    assert "b" not in draws
    for choice in "acd":
        assert abs(draws.count(choice) / 3000 - 1 / 3) < 0.04


# -- conditions ----------------------------------------------------------------------------

def test_condition_holds():
    assert Condition("n", ">=", 2).holds({"n": 2})
    assert not Condition("n", ">", 2).holds({"n": 2})
    assert Condition("n", "<", 2).holds({"n": 1})
    assert Condition("n", "<=", 2).holds({"n": 2})
    assert not Condition("n", ">=", 2).holds({})  # the parent is inactive
    assert not Condition("n", ">=", 2).holds({"n": None})  # not comparable
    assert Condition("s", "==", None).holds({"s": None})
    assert not Condition("s", "==", 1).holds(
        {"s": True})
    assert Condition("s", "!=", "cosine").holds({"s": None})
    assert not Condition("s", "!=", "cosine").holds({})
    cond = Condition("opt", "in", ["adam", "adamw"])
    assert cond.holds({"opt": "adamw"})
    assert not cond.holds({"opt": "sgd"})
    assert cond == Condition("opt", "in", ("adam", "adamw"))
    assert hash(cond) == hash(
        Condition("opt", "in", ["adam", "adamw"]))
    assert pickle.loads(pickle.dumps(cond)) == cond
    assert Condition.from_dict(json.loads(json.dumps(cond.to_dict()))) == cond
    assert repr(cond) == "Condition('opt', 'in', ['adam', 'adamw'])"
    assert str(Condition("n", ">=", 2)) == "n >= 2"
    with pytest.raises(AttributeError, match="immutable"):
        cond.op = "=="


@pytest.mark.parametrize(("args", "match"), [
    (("", ">=", 1), r"Condition\(parent=\.\.\.\)"),
    (("n", "=>", 1), r"Condition\(op=\.\.\.\) must be one of"),
    (("n", ">=", "2"), r"Condition\(value=\.\.\.\) with op '>=' must be a finite real number"),
    (("n", "in", []), r"Condition\(value=\.\.\.\) with op 'in' must be a non-empty list"),
    (("n", "in", "ab"), r"Condition\(value=\.\.\.\) with op 'in' must be a non-empty list"),
    (("n", "==", [1]), r"Condition\(value=\.\.\.\) with op '==' must be a JSON scalar"),
])
def test_condition_validation(args, match):
    with pytest.raises(ConfigError, match=match):
        Condition(*args)


# -- search spaces -------------------------------------------------------------------------

def test_plain_dict_shorthand():
    space = SearchSpace({"units": Int(8, 64), "activation": ["relu", "tanh"], "batch_size": 32,
                         "schedule": (None, "cosine"), "clip": None})
    assert space.names == ("units", "activation", "batch_size", "schedule", "clip")
    assert space["activation"] == Categorical(["relu", "tanh"])
    assert space["batch_size"].is_constant
    assert space["clip"] == Categorical([None])
    rng = _rng(0)
    for _ in range(20):
        config = space.sample(rng)
        assert config["batch_size"] == 32
        assert config["clip"] is None
        assert list(config) == list(space.names)
        assert space.is_valid(config)
        assert config in space
    assert len(space) == 5
    assert "units" in space
    assert "nope" not in space
    assert list(space) == list(space.names)
    assert "units: Int(8, 64)" in repr(space)


@pytest.mark.parametrize(("dims", "conditions", "error", "match"), [
    ([("units", Int(1, 2))], None, TypeError, "dimensions must be a dict"),
    ({1: Int(1, 2)}, None, TypeError, "dimension names must be non-empty str; got 1"),
    ({"units": {"low": 1}}, None, TypeError, r"dimensions\['units'\] must be a Dimension"),
    ({"a": Int(1, 2)}, {"b": Condition("a", ">=", 2)}, ConfigError,
     "conditions key 'b' must be a dimension of the space"),
    ({"a": Int(1, 2)}, {"a": Condition("zz", ">=", 2)}, ConfigError,
     r"the parent of conditions\['a'\] must be a dimension of the space; got 'zz'"),
    ({"a": Int(1, 2)}, {"a": ("a", ">=", 2)}, TypeError, "must be a Condition"),
    ({"a": Int(1, 2)}, {"a": Condition("a", ">=", 2)}, ConfigError,
     "must be free of cycles.*got 'a -> a'"),
    ({"a": Int(1, 2), "b": Int(1, 2), "c": Int(1, 2)},
     {"a": Condition("c", ">=", 2), "b": Condition("a", ">=", 2),
      "c": [Condition("b", ">=", 2)]}, ConfigError, "free of cycles.*got 'a -> c -> b -> a'"),
])
def test_space_validation(dims, conditions, error, match):
    with pytest.raises(error, match=match):
        SearchSpace(dims, conditions)


@pytest.mark.parametrize(("make", "match"), [
    # Accepted, then numpy's errors at the first draw.
    (lambda: Int(0, 2**70), r"Int\(high=...\) must be an int in \[-2\*\*62, 2\*\*62\]"),
    (lambda: Float(-1e308, 1e308), r"must be a range whose width high - low is finite"),
    # Python's AttributeError or TypeError.
    (lambda: SearchSpace.from_dict({"dimensions": [1, 2]}),
     r"'dimensions' a dict of dimension dicts"),
    (lambda: SearchSpace.from_dict({"dimensions": {}, "conditions": {"a": 5}}),
     r"'conditions' a dict of lists of condition dicts"),
])
def test_ranges_and_dicts_that_cannot_work_are_refused_where_they_are_made(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
    Int(-2**62, 2**62).sample(np.random.default_rng(0))  # the widest allowed draws


def test_space_constraints_validation():
    with pytest.raises(TypeError, match="constraints must be a list"):
        SearchSpace({"a": Int(1, 2)}, constraints=never)
    with pytest.raises(TypeError, match="each constraint must be callable"):
        SearchSpace({"a": Int(1, 2)}, constraints=[1])


def test_conditions_resolve_in_dependency_order():
    # The child is listed before its parent; its parent depends on a third dimension.
    space = SearchSpace(
        {"child": Int(1, 3), "parent": ["x", "y"], "root": Int(0, 1)},
        conditions={"child": Condition("parent", "==", "x"),
                    "parent": Condition("root", "==", 1)},
    )
    rng, seen = _rng(0), set()
    for _ in range(200):
        config = space.sample(rng)
        assert space.is_valid(config)
        assert ("parent" in config) == (config["root"] == 1)
        assert ("child" in config) == (config.get("parent") == "x")
        assert list(config) == [n for n in space.names if n in config]
        seen.add(tuple(config))
    assert len(seen) == 3
    assert space.active({"root": 0, "parent": "x"}) == ["root"]  # stale parent is ignored
    assert space.active({"root": 1, "parent": "x"}) == ["child", "parent", "root"]


def test_default_space_conditional_dimensions(space, samples):
    assert space["num_layers"] == Int(1, 5)
    assert set(space["activation_1"].choices) == set(ACTIVATIONS)
    assert [n for n in space.names if n.startswith("skip_")] == [
        "skip_2_1", "skip_3_1", "skip_3_2", "skip_4_1", "skip_4_2", "skip_4_3",
        "skip_5_1", "skip_5_2", "skip_5_3"]
    layer_counts = set()
    for config in samples:
        _assert_plain(config)
        assert space.is_valid(config)
        n = config["num_layers"]
        layer_counts.add(n)
        for k in range(1, 6):
            for key in ("units", "activation", "dropout"):
                assert (f"{key}_{k}" in config) == (k <= n)
            for d in range(1, 4):
                assert (f"skip_{k}_{d}" in config) == (k <= n and k - 1 - d >= 0)
        assert not any(key.startswith("skip_1_") for key in config)
        assert set(TRAINING) <= set(config)
        assert sorted(space.active(config)) == sorted(config)
    assert layer_counts == {1, 2, 3, 4, 5}


def test_sample_is_reproducible(space):
    assert space.sample(_rng(42)) == space.sample(_rng(42))
    assert space.sample(42) == space.sample(np.random.default_rng(42))
    rng = _rng(0)
    assert space.sample(rng) != space.sample(rng)


def test_default_space_validation():
    with pytest.raises(ConfigError, match="max_layers must be an int >= 1; got 0"):
        default_space(0)
    assert default_space(1).names[:4] == ("num_layers", "units_1", "activation_1", "dropout_1")


@pytest.mark.parametrize(("change", "match"), [
    (lambda c: c.pop("units_1"), r"config\['units_1'\] must be present \(active because "
                                 r"num_layers >= 1\)"),
    (lambda c: c.update(units_1=8), r"config\['units_1'\] must be an int in \[16, 512\]; got 8"),
    (lambda c: c.update(units_1=64.0), r"config\['units_1'\] must be an int"),
    (lambda c: c.update(bogus=1), r"config keys must be dimensions of the space; got \['bogus'\]"),
    (lambda c: c.update(num_layers=1), r"config\['units_2'\] must be absent because it is "
                                       r"inactive \(num_layers >= 2 does not hold\)"),
    (lambda c: c.update(skip_2_1=True), r"config\['skip_2_1'\] must be one of \[0, 1\]"),
])
def test_validate_names_the_key(change, match):
    space = default_space(3)
    config = space.sample(_rng(0))
    config.update(num_layers=2, units_1=32, units_2=32)
    config = space.project(config, _rng(0))
    assert space.is_valid(config)
    change(config)
    assert not space.is_valid(config)
    with pytest.raises(ConfigError, match=match):
        space.validate(config)
    with pytest.raises(ConfigError, match="config must be a dict"):
        space.validate([("num_layers", 1)])


def test_mutate_changes_one_active_dimension(space, samples):
    rng = _rng(5)
    changed_names = set()
    for config in samples:
        before = copy.deepcopy(config)
        new = space.mutate(config, rng)
        assert config == before  # the input is left alone
        _assert_plain(new)
        assert space.is_valid(new)
        common = [n for n in config if n in new]
        changed = [n for n in common if new[n] != config[n] or type(new[n]) is not type(
            config[n])]
        added, dropped = set(new) - set(config), set(config) - set(new)
        if added or dropped:  # only num_layers switches dimensions on and off here
            assert changed == ["num_layers"]
        assert len(changed) == 1
        assert not space[changed[0]].is_constant
        assert added == set(space.active(new)) - set(space.active(config))
        assert dropped == set(space.active(config)) - set(space.active(new))
        changed_names.add(changed[0])
    assert "num_layers" in changed_names
    assert len(changed_names) > 20
    assert "gradient_clip" not in changed_names


def test_mutate_fills_new_layers():
    space = default_space(4)
    config = space.project({"num_layers": 1, "units_1": 32}, _rng(0))
    rng = _rng(1)
    grown = None
    for _ in range(200):
        new = space.mutate(config, rng)
        if new["num_layers"] > 1:
            grown = new
            break
    assert grown is not None
    assert space.is_valid(grown)
    for k in range(2, grown["num_layers"] + 1):
        assert {f"units_{k}", f"activation_{k}", f"dropout_{k}"} <= set(grown)
    with pytest.raises(ConfigError, match="active, non-constant dimension"):
        SearchSpace({"a": 1, "b": ["x"]}).mutate({"a": 1, "b": "x"}, rng)
    with pytest.raises(ConfigError, match="must be an int in"):
        space.mutate({**config, "num_layers": 99}, rng)


def test_constraints_are_respected():
    limit = MaxTotalUnits(256)
    space = SearchSpace(default_space(4).dimensions, default_space(4).conditions, [limit])
    rng = _rng(0)
    configs = [space.sample(rng) for _ in range(100)]
    for config in configs:
        assert limit(config)
        assert space.is_valid(config)
        for _ in range(3):
            config = space.mutate(config, rng)
            assert limit(config)
            assert space.is_valid(config)
    too_big = default_space(4).project({"num_layers": 2, "units_1": 256, "units_2": 256}, rng)
    assert not space.is_valid(too_big)
    with pytest.raises(ConfigError, match="accepted by the constraint MaxTotalUnits"):
        space.validate(too_big)
    space.validate(too_big, check_constraints=False)
    assert limit(space.mutate(too_big, rng))  # a seed that breaks them can still be mutated


def test_unsatisfiable_constraints_raise():
    space = SearchSpace({"a": Int(1, 5)}, constraints=[never])
    with pytest.raises(ConfigError, match=r"none of 1000 draws.*never rejected 1000.*"
                                          r"look unsatisfiable"):
        space.sample(_rng(0))
    with pytest.raises(ConfigError, match=r"none of 1000 mutations.*unsatisfiable"):
        space.mutate({"a": 1}, _rng(0))


def test_encode(space, samples):
    X = space.encode(samples)
    assert X.shape == (200, len(space))
    assert X.dtype == np.float64
    for config, row in zip(samples, X, strict=True):
        for name, value in zip(space.names, row, strict=True):
            if name in config:
                assert 0.0 <= value <= 1.0
            else:
                assert value == -1.0
    assert space.encode(samples[0]).shape == (1, len(space))
    j = space.names.index("num_layers")
    np.testing.assert_allclose(X[:, j], [(c["num_layers"] - 1) / 4 for c in samples])
    with pytest.raises(ConfigError, match="units_1"):
        space.encode([{**samples[0], "units_1": 1}])


def test_pickle_and_dict_round_trips(space):
    assert pickle.loads(pickle.dumps(space)) == space
    d = space.to_dict()
    assert json.loads(json.dumps(d)) == d
    again = SearchSpace.from_dict(json.loads(json.dumps(d)))
    assert again == space
    assert again.names == space.names
    assert again.sample(_rng(3)) == space.sample(_rng(3))
    constrained = SearchSpace(space.dimensions, space.conditions, [MaxTotalUnits(300), never])
    restored = pickle.loads(pickle.dumps(constrained))
    assert restored == constrained
    assert restored.constraints[0].limit == 300
    assert constrained.to_dict() == d  # constraints are not part of the dict ...
    assert SearchSpace.from_dict(d, [MaxTotalUnits(300), never]) == constrained  # ... re-attach
    assert constrained != space
    with pytest.raises(ConfigError, match="'dimensions' and 'conditions'"):
        SearchSpace.from_dict({"dims": {}})
    with pytest.raises(ConfigError, match="'type' is one of int, float, categorical"):
        Dimension.from_dict({"type": "normal"})


def test_subspace_and_split_names(space):
    arch, training = split_names(space)
    assert training == list(TRAINING)
    assert arch[0] == "num_layers"
    assert arch + training == list(space.names)
    assert split_names(None)[1] == list(TRAINING)
    assert ARCHITECTURE[0] == "num_layers"
    arch_space, train_space = space.subspace(arch), space.subspace(training)
    assert arch_space.names == tuple(arch)
    assert arch_space.conditions == space.conditions
    assert not train_space.conditions
    rng = _rng(0)
    a, t = arch_space.sample(rng), train_space.sample(rng)
    assert space.is_valid({**a, **t})
    # A condition whose parent is left out is dropped: the dimension becomes always active.
    only_units = space.subspace(["units_3"])
    assert only_units.sample(rng).keys() == {"units_3"}
    kept = space.subspace(arch, constraints=[MaxTotalUnits(100)])
    assert MaxTotalUnits(100)(kept.sample(rng))
    with pytest.raises(ConfigError, match=r"subspace names must be dimensions of the space; "
                                          r"got \['units_9'\]"):
        space.subspace(["units_9"])


def test_coerce(space):
    assert SearchSpace.coerce(space) is space
    assert SearchSpace.coerce(None) == default_space()
    assert SearchSpace.coerce({"a": [1, 2]}) == SearchSpace({"a": Categorical([1, 2])})
    with pytest.raises(TypeError, match=r"must be None .*a SearchSpace or a dict.*Pass e.g."):
        SearchSpace.coerce([Int(1, 2)])


def test_project():
    space = default_space(3)
    seed = to_flat_config(autodeuq.GaussianMLPRegressor().get_config())
    assert seed["weight_decay"] == 0.0
    assert not space.is_valid(seed)
    config = space.project(seed, _rng(0))
    assert space.is_valid(config)
    assert config["weight_decay"] == 1e-8
    assert {k: v for k, v in config.items() if k != "weight_decay"} == {
        k: v for k, v in seed.items() if k != "weight_decay"}
    assert space.project({"num_layers": 7.6, "units_1": 1000, "junk": 1}, 0)["units_1"] == 512
    with pytest.raises(ConfigError, match=r"config\['activation_1'\] must be one of"):
        space.project({"num_layers": 1, "activation_1": "swish"}, 0)


# -- flat and network configurations ---------------------------------------------------------

def test_to_network_config_builds_working_networks(samples):
    torch.manual_seed(0)
    for config in samples[:40]:
        network = to_network_config(config)
        assert network == normalize_config(network)
        assert len(network["layers"]) == config["num_layers"]
        for k, layer in enumerate(network["layers"], start=1):
            assert layer["units"] == config[f"units_{k}"]
            assert layer["skip"] == sorted(k - 1 - d for d in range(1, 4)
                                           if config.get(f"skip_{k}_{d}") == 1)
        json.dumps(network)
        model = GaussianMLP(n_features=3, layers=network["layers"]).eval()
        with torch.no_grad():
            mean, var = model(torch.zeros(2, 3))
        assert mean.shape == var.shape
        assert mean.shape[0] == 2
        assert torch.all(var > 0)
        assert to_flat_config(network) == config


def test_to_network_config_defaults():
    network = to_network_config({"num_layers": 2, "units_1": 8, "units_2": 4, "skip_2_1": 1})
    assert network["layers"] == [
        {"units": 8, "activation": "relu", "dropout": 0.0, "skip": []},
        {"units": 4, "activation": "relu", "dropout": 0.0, "skip": [0]},
    ]
    assert {k: network[k] for k in TRAINING_DEFAULTS} == TRAINING_DEFAULTS
    assert to_network_config({"units_1": 8})["layers"][0]["units"] == 8  # inferred num_layers
    assert to_network_config({"num_layers": 0, "learning_rate": 0.1}) == normalize_config(
        {"layers": [], "learning_rate": 0.1})


@pytest.mark.parametrize(("flat", "match"), [
    ({"num_layers": 1, "units_1": 8, "width_1": 3}, r"flat config keys must be num_layers.*"
                                                   r"got \['width_1'\]"),
    ({"num_layers": 1, "units_0": 8}, r"got \['units_0'\]"),
    ({"num_layers": 1, "units_1": 8, "units_2": 8}, r"for hidden layers 1..num_layers \(1\); "
                                                    r"got \['units_2'\]"),
    ({"num_layers": 2, "units_1": 8}, r"units_2 must be present"),
    ({"num_layers": -1}, r"num_layers must be an int >= 0; got -1"),
    ({"num_layers": 2, "units_1": 8, "units_2": 8, "skip_2_1": 2}, r"skip_2_1 must be 0 or 1"),
    ({"num_layers": 2, "units_1": 8, "units_2": 8, "skip_2_2": 1},
     r"skip_2_2 must be defined only for d <= k - 1 = 1"),
    ({"num_layers": 1, "units_1": 0}, r"config\['layers'\]\[0\]\['units'\] must be an int >= 1"),
    ({"num_layers": 1, "units_1": 8, "activation_1": "swish"}, r"activation.* must be one of"),
    ({"num_layers": 1, "units_1": 8, "optimizer": "lbfgs"}, r"optimizer must be one of"),
])
def test_to_network_config_errors(flat, match):
    with pytest.raises(ConfigError, match=match):
        to_network_config(flat)


def test_to_flat_config_round_trip():
    est = autodeuq.GaussianMLPRegressor(hidden_layer_sizes=(8, 4), skip_connections="all")
    network = est.get_config()
    flat = to_flat_config(network)
    _assert_plain(flat)
    assert flat["num_layers"] == 2
    assert flat["skip_2_1"] == 1
    assert "skip_1_1" not in flat
    assert to_network_config(flat) == network
    assert autodeuq.GaussianMLPRegressor.from_config(to_network_config(flat)).get_config() \
        == network
    # Six layers with every skip: distances beyond 3 are written only where they are set.
    deep = autodeuq.GaussianMLPRegressor(hidden_layer_sizes=(4,) * 6,
                                         skip_connections="all").get_config()
    flat = to_flat_config(deep)
    assert flat["skip_6_5"] == 1
    assert flat["skip_4_3"] == 1
    assert to_network_config(flat) == deep
    sparse = {"layers": [{"units": 4}] * 5 + [{"units": 4, "skip": [0]}]}
    flat = to_flat_config(sparse)
    assert flat["skip_6_5"] == 1
    assert "skip_6_4" not in flat
    assert flat["skip_6_3"] == 0
    assert to_network_config(flat) == normalize_config(sparse)
    with pytest.raises(ConfigError, match="units"):
        to_flat_config({"layers": [{"units": 0}]})
