"""Search algorithms: one suite every algorithm passes, then what each one adds."""

import copy
import dataclasses
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from autodeuq.search import (
    ALGORITHMS,
    STATUSES,
    AgEBO,
    AgingEvolution,
    BayesianOptimization,
    RandomSearch,
    Result,
    Search,
    Trial,
    make_search,
)
from autodeuq.search._bo import _ConstantLiarLCB
from autodeuq.space import Categorical, Condition, Float, Int, SearchSpace, default_space
from autodeuq.space._space import config_key as _config_key

CLASSES = [RandomSearch, AgingEvolution, BayesianOptimization, AgEBO]

#: Small settings so that every phase of each algorithm (random start, evolution, surrogate)
#: is reached within a few dozen tells.
SMALL = {
    AgingEvolution: {"population_size": 10, "sample_size": 3},
    BayesianOptimization: {"n_initial": 5, "n_candidates": 128},
    AgEBO: {"population_size": 10, "sample_size": 3, "n_initial": 5, "n_candidates": 128},
}


def tiny_space(constraints=None):
    """Architecture and training dimensions, a condition, and irrelevant dimensions."""
    return SearchSpace(
        {
            "num_layers": Int(1, 3),
            "units_1": Int(8, 256, log=True),
            "units_2": Int(8, 256, log=True),
            "activation_1": Categorical(["relu", "tanh", "gelu"]),
            "dropout_1": Float(0.0, 0.5),
            "optimizer": Categorical(["adam", "sgd", "rmsprop"]),
            "learning_rate": Float(1e-4, 1e-1, log=True),
            "weight_decay": Float(1e-8, 1e-2, log=True),
            "batch_size": Categorical([16, 32, 64, 128, 256]),
        },
        conditions={"units_2": Condition("num_layers", ">=", 2)},
        constraints=constraints,
    )


def funnel(config):
    """Architecture-only constraint: the second layer is no wider than the first."""
    return config.get("units_2", 0) <= config["units_1"]


def big_batch_for_deep(config):
    """A constraint that reads architecture and training dimensions together."""
    return config["num_layers"] < 3 or config["batch_size"] >= 64


TARGETS = {"units_1": 0.3, "dropout_1": 0.6, "learning_rate": 0.4, "weight_decay": 0.7}


def quadratic(space, config):
    """A cheap stand-in for a validation NLL: quadratic in two architecture and two training
    dimensions (encoded in [0, 1]); the other five dimensions do not matter."""
    x = space.encode([config])[0]
    return float(sum((x[space.names.index(n)] - t) ** 2 for n, t in TARGETS.items()))


def run(search, n, objective=None):
    """Ask and tell ``n`` trials one at a time; return the trials."""
    objective = objective or (lambda config: quadratic(search.space, config))
    trials = []
    for _ in range(n):
        trial = search.ask()
        search.tell(trial.trial_id, objective(trial.config))
        trials.append(trial)
    return trials


@pytest.fixture(params=CLASSES, ids=lambda cls: cls.__name__)
def make(request):
    """A factory of searches of one algorithm, with settings small enough for tests."""
    cls = request.param

    def factory(space=None, random_state=0, **kwargs):
        space = tiny_space() if space is None else space
        return cls(space, random_state=random_state, **{**SMALL.get(cls, {}), **kwargs})

    factory.cls = cls
    return factory


# ------------------------------------------------------------------------ the shared suite
def test_configs_are_valid(make):
    search = make()
    trials = run(search, 40)
    for trial in trials + [search.ask() for _ in range(5)]:
        search.space.validate(trial.config)
        assert isinstance(trial, Trial)


def test_ids_are_sequential_and_counts_add_up(make):
    search = make()
    ids = []
    for round_ in range(5):
        trials = [search.ask() for _ in range(round_ + 1)]
        ids += [t.trial_id for t in trials]
        assert search.n_pending == len(trials)
        for t in reversed(trials):  # tell in another order than asked
            search.tell(t.trial_id, 1.0 + t.trial_id)
    assert ids == list(range(15))
    assert (search.n_told, search.n_pending) == (15, 0)
    assert [r.trial_id for r in search.history] == [0, 2, 1, 5, 4, 3, 9, 8, 7, 6,
                                                   14, 13, 12, 11, 10]


@pytest.mark.parametrize("n_told", [0, 30])
def test_many_asks_without_tells_are_distinct(make, n_told):
    search = make()
    run(search, n_told)  # 30: past every algorithm's random start
    trials = [search.ask() for _ in range(40)]
    assert search.n_pending == 40
    assert len({_config_key(t.config) for t in trials}) == 40
    for trial in trials:
        search.space.validate(trial.config)
    # they are told later, in any order, and the search goes on
    for trial in trials[::-1]:
        search.tell(trial.trial_id, quadratic(search.space, trial.config))
    search.space.validate(search.ask().config)


def test_failures_are_recorded_and_do_not_crash(make):
    search = make()
    statuses = [s for s in STATUSES if s != "success"]
    for i in range(60):
        trial = search.ask()
        if i % 3 == 0:
            search.tell(trial.trial_id, status=statuses[(i // 3) % len(statuses)])
        elif i % 7 == 0:
            search.tell(trial.trial_id, float("nan"))  # non-finite: recorded as failed
        else:
            search.tell(trial.trial_id, quadratic(search.space, trial.config))
    history = search.history
    assert len(history) == search.n_told == 60
    assert {r.status for r in history} == set(STATUSES)
    for r in history:
        assert (r.objective is None) == (r.status != "success")
    assert (history[7].status, history[7].objective) == ("failed", None)
    search.space.validate(search.ask().config)
    assert search.best.objective == min(r.objective for r in history if r.ok)


@pytest.mark.parametrize("space", [
    {"num_layers": 1, "units_1": 8, "learning_rate": Float(1e-3, 1e-2, log=True)},
    {"num_layers": 1, "units_1": 8},
], ids=["fixed architecture", "constant"])
def test_a_fixed_architecture_or_a_constant_space_goes_on(make, space):
    # Evolution mutated a tournament winner with nothing to change: AgEBO, the default
    # search, failed mid-fit once n_initial trials were in, when only training was searched.
    search = make(SearchSpace.coerce(space))
    trials = run(search, 30, lambda config: abs(np.log(config.get("learning_rate", 3e-3) / 3e-3)))
    assert len(trials) == 30
    assert {(t.config["num_layers"], t.config["units_1"]) for t in trials} == {(1, 8)}
    if "learning_rate" in space:
        assert len({t.config["learning_rate"] for t in trials}) > 1


def test_only_failures(make):
    search = make()
    for _ in range(30):
        search.tell(search.ask().trial_id, status="failed")
    trials = [search.ask() for _ in range(5)]
    assert len({_config_key(t.config) for t in trials}) == 5
    assert search.best is None


def test_tell_errors_name_the_argument_and_change_nothing(make):
    search = make()
    trial = search.ask()
    with pytest.raises(ValueError, match=r"trial_id.*never asked"):
        search.tell(trial.trial_id + 1, 1.0)
    with pytest.raises(ValueError, match="trial_id"):
        search.tell("0", 1.0)
    with pytest.raises(ValueError, match="status must be one of"):
        search.tell(trial.trial_id, 1.0, status="crashed")
    with pytest.raises(ValueError, match="objective must be a real number"):
        search.tell(trial.trial_id)
    with pytest.raises(ValueError, match="objective must be a real number"):
        search.tell(trial.trial_id, "1.0")
    with pytest.raises(ValueError, match="objective must be None"):
        search.tell(trial.trial_id, 1.0, status="timeout")
    assert (search.n_pending, search.n_told) == (1, 0)
    search.tell(np.int64(trial.trial_id), np.float32(1.5))
    with pytest.raises(ValueError, match=r"trial_id.*already told"):
        search.tell(trial.trial_id, 1.0)
    assert search.history == [Result(0, trial.config, 1.5, "success")]


def test_deterministic_from_random_state(make):
    def scenario(seed):
        search = make(random_state=seed)
        configs = []
        for i in range(20):
            trials = [search.ask() for _ in range(1 + i % 3)]  # some concurrency
            configs += [t.config for t in trials]
            for t in trials:
                if t.trial_id % 5 == 4:
                    search.tell(t.trial_id, status="diverged")
                else:
                    search.tell(t.trial_id, quadratic(search.space, t.config))
        return configs

    first = scenario(np.random.SeedSequence(3))
    assert scenario(3) == first  # a seed and its SeedSequence give the same stream
    assert scenario(4) != first


def test_constraints_are_respected(make):
    space = tiny_space(constraints=[funnel, big_batch_for_deep])
    search = make(space)
    trials = run(search, 40) + [search.ask() for _ in range(20)]
    for trial in trials:
        assert funnel(trial.config)
        assert big_batch_for_deep(trial.config)
        space.validate(trial.config)


def test_best_is_the_lowest_told_objective(make):
    search = make()
    assert search.best is None
    values = [3.0, 1.0, 2.0, 1.0, 5.0]
    trials = [search.ask() for _ in values]
    search.tell(trials[0].trial_id, status="failed")
    for trial, value in zip(trials[1:], values[1:], strict=True):
        search.tell(trial.trial_id, value)
    best = search.best
    assert (best.trial_id, best.config, best.objective) == (1, trials[1].config, 1.0)
    best.config["units_1"] = -1  # copies: the caller cannot corrupt the search
    trials[2].config.clear()
    assert search.best.config == trials[1].config != best.config
    assert search.history[2].config != {}


def mean_best(cls, n_trials=150, seeds=(0, 1, 2), **kwargs):
    """The best objective of ``n_trials`` sequential evaluations, averaged over seeds."""
    bests = []
    for seed in seeds:
        search = cls(tiny_space(), random_state=seed, **kwargs)
        run(search, n_trials)
        bests.append(search.best.objective)
    return float(np.mean(bests))


def test_add_resumes_a_search(make):
    earlier = make(random_state=1)
    run(earlier, 25)
    trials = [earlier.ask() for _ in range(3)]
    earlier.tell(trials[1].trial_id, status="lost")  # 0 and 2 were running: not journaled
    resumed = make(random_state=2)
    for r in earlier.history:
        resumed.add(r.trial_id, r.config, r.objective, r.status)
    assert resumed.history == earlier.history
    assert resumed.best == earlier.best
    assert (resumed.n_told, resumed.n_pending) == (26, 0)
    trials = [resumed.ask() for _ in range(20)]
    assert [t.trial_id for t in trials] == list(range(27, 47))  # after the largest added
    keys = {_config_key(r.config) for r in earlier.history}
    assert not keys & {_config_key(t.config) for t in trials}
    with pytest.raises(ValueError, match="trial_id must not be used"):
        resumed.add(27, trials[0].config, 1.0)
    with pytest.raises(ValueError, match="trial_id must be an int >= 0"):
        resumed.add(-1, trials[0].config, 1.0)
    with pytest.raises(ValueError, match="trial_id must be an int >= 0; got 'x'"):  # not None
        resumed.add("x", trials[0].config, 1.0)
    with pytest.raises(ValueError, match="units_1"):
        resumed.add(100, {**trials[0].config, "units_1": 10_000}, 1.0)
    with pytest.raises(ValueError, match="objective must be None"):
        resumed.add(100, trials[0].config, 1.0, "failed")
    assert resumed.n_told == 26


def test_a_configuration_queued_n_times_is_proposed_n_times_counting_those_asked(make):
    search = make(random_state=0)
    first = search.space.sample(np.random.default_rng(1))
    other = search.space.sample(np.random.default_rng(2))
    for config in (first, first, other, first):
        search.enqueue(config)
    keys = [_config_key(search.ask().config) for _ in range(6)]
    assert keys[:4] == [_config_key(c) for c in (first, first, other, first)]
    assert not {_config_key(first), _config_key(other)} & set(keys[4:])  # its own: new ones
    # Resumed after two copies of `first` and none of `other` were evaluated: the third
    # copy and `other` remain.
    resumed = make(random_state=0)
    resumed.add(0, first, 1.0)
    resumed.add(1, first, 2.0)
    for config in (first, first, other, first):
        resumed.enqueue(config)
    keys = [_config_key(resumed.ask().config) for _ in range(2)]
    assert keys == [_config_key(other), _config_key(first)]
    assert _config_key(resumed.ask().config) not in {_config_key(first), _config_key(other)}


@pytest.fixture(scope="module")
def random_best():
    return mean_best(RandomSearch)


@pytest.fixture(params=CLASSES[1:], ids=lambda cls: cls.__name__)
def optimizer(request):
    return request.param


def test_finds_better_objectives_than_random(optimizer, random_best):
    """Random search reaches 0.013 on average; evolution 0.006, BO and AgEBO 0.003."""
    # A population of 100 would leave only 50 evolved trials out of 150: scale it down.
    params = {} if optimizer is BayesianOptimization else {"population_size": 20,
                                                           "sample_size": 5}
    assert mean_best(optimizer, **params) < 0.7 * random_best


# ------------------------------------------------------------------------ aging evolution
def test_aging_evolution_keeps_the_last_successes():
    search = AgingEvolution(tiny_space(), population_size=5, sample_size=2, random_state=0)
    told = []
    for i in range(12):
        trial = search.ask()
        if i % 4 == 1:
            search.tell(trial.trial_id, status="lost")  # never joins the population
        else:
            search.tell(trial.trial_id, float(-i))  # the newest is always the best
            told.append(trial.trial_id)
        assert len(search.population) <= 5
    assert [r.trial_id for r in search.population] == told[-5:]  # oldest first, evicted first


def test_aging_evolution_mutates_a_tournament_winner():
    space = SearchSpace({"a": Int(0, 100), "b": Float(0.0, 1.0), "c": ["x", "y", "z"]})
    search = AgingEvolution(space, population_size=8, sample_size=3, random_state=0)
    run(search, 8, objective=lambda c: float(c["a"]))  # full population
    members = [r.config for r in search.population]
    for trial in [search.ask() for _ in range(20)]:
        changed = [sum(m[k] != trial.config[k] for k in space.names) for m in members]
        assert min(changed) == 1  # one dimension away from a member


@pytest.mark.parametrize("cls", [AgingEvolution, AgEBO])
def test_evolution_starts_after_n_initial_successes_not_a_full_population(cls):
    """With a population of 100 filled at random first, a search of a few dozen candidates
    would never evolve: mutation starts once n_initial random members succeeded."""
    space = SearchSpace({"a": Int(0, 10_000), "b": Float(0.0, 1.0),
                         "learning_rate": Float(1e-4, 1e-1, log=True)})  # AgEBO: BO's part
    search = cls(space, population_size=100, sample_size=10, n_initial=4, random_state=0)
    run(search, 4, objective=lambda c: float(c["a"]))
    mutated = ("a", "b") if cls is AgEBO else space.names  # AgEBO evolves the architecture
    for _ in range(10):  # each next ask is one mutation away from a member
        members = [r.config for r in search.population]
        trial = search.ask()
        assert min(sum(m[k] != trial.config[k] for k in mutated) for m in members) == 1
        search.tell(trial.trial_id, float(trial.config["a"]))
    # n_initial=population_size is the original algorithm: random until the population is full
    search = cls(space, population_size=6, sample_size=2, n_initial=6, random_state=0)
    run(search, 5, objective=lambda c: float(c["a"]))
    assert len(search.population) == 5


def test_aging_evolution_checks_its_parameters():
    with pytest.raises(ValueError, match="sample_size must be <= population_size"):
        AgingEvolution(tiny_space(), population_size=5, sample_size=6)
    with pytest.raises(ValueError, match="population_size must be an int >= 1"):
        AgingEvolution(tiny_space(), population_size=0)
    with pytest.raises(ValueError, match="n_initial must be an int >= 1"):
        AgingEvolution(tiny_space(), n_initial=0)


# ------------------------------------------------------------------------ Bayesian optimisation
def test_constant_liar_moves_concurrent_asks_away_from_pending():
    """The second of two concurrent asks: with the liar it leaves the first one's
    neighbourhood; without it (liar=None, what BO gives with no pending), it stays there."""
    space = SearchSpace({"x": Float(0.0, 1.0), "y": Float(0.0, 1.0)})

    def second_ask(liar, seed):
        search = BayesianOptimization(space, n_initial=20, liar=liar, random_state=seed)
        run(search, 20, objective=lambda c: (c["x"] - 0.3) ** 2 + (c["y"] - 0.6) ** 2)
        first, second = search.ask(), search.ask()
        return first.config, second.config

    far = 0
    for seed in range(3):
        first, with_liar = second_ask("max", seed)
        first_alone, without = second_ask(None, seed)
        assert first == first_alone  # no pending yet: the same proposal
        assert with_liar != without
        distance = [np.hypot(c["x"] - first["x"], c["y"] - first["y"])
                    for c in (with_liar, without)]
        far += distance[0] > distance[1]
    assert far >= 2


def test_surrogate_targets_failures_and_lies():
    """Failures enter the surrogate at the worst objective; pending trials at the lie."""
    space = SearchSpace({"x": Float(0.0, 1.0)})
    search = BayesianOptimization(space, n_initial=3, liar="mean", random_state=0)
    for objective, status in [(1.0, "success"), (3.0, "success"), (None, "timeout")]:
        search.tell(search.ask().trial_id, objective, status=status)
    search.ask()  # pending, lied about with the mean 2.0
    lcb = search._lcb
    forest = lcb._fit()
    assert forest.n_features_in_ == 1
    X = np.concatenate([lcb._X[:lcb._n], np.stack(list(lcb._pending.values()))])
    # full trees, one per distinct x: the forest reproduces its training targets
    assert np.allclose(forest.predict(X), [1.0, 3.0, 3.0, 2.0])


def test_bayesian_optimization_asks_with_1000_observations():
    space = default_space()
    search = BayesianOptimization(space, n_initial=1001, random_state=0)
    run(search, 1000, objective=lambda c: float(c["learning_rate"]))  # random asks: fast
    search.n_initial = 10
    trials = [search.ask() for _ in range(3)]
    search.tell(trials[0].trial_id, 0.5)
    trials.append(search.ask())
    assert len({_config_key(t.config) for t in trials}) == 4
    for trial in trials:
        space.validate(trial.config)


def test_fast_encoding_matches_space_encode():
    space = default_space(max_layers=4)
    lcb = _ConstantLiarLCB(space, kappa=1.0, n_candidates=4, surrogate="extra_trees",
                           liar="max", seed=0)
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(30)]
    assert np.array_equal(lcb._encode(configs), space.encode(configs).astype(np.float32))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kappa": -1.0}, "kappa must be a finite float >= 0"),
    ({"liar": "median"}, "liar must be one of 'max', 'mean', 'min', None"),
    ({"surrogate": "gp"}, "surrogate must be one of 'extra_trees', 'random_forest'"),
    ({"n_candidates": 0}, "n_candidates must be an int >= 1"),
    ({"n_initial": 2.5}, "n_initial must be an int >= 1"),
    ({"random_state": "seed"}, "random_state must be None, an int"),
    ({"random_state": True}, "random_state must be None, an int .* got True"),  # was seed 1
])
def test_bayesian_optimization_checks_its_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianOptimization(tiny_space(), **kwargs)


def test_random_forest_surrogate():
    from sklearn.ensemble import ExtraTreesRegressor

    for surrogate in ["random_forest", ExtraTreesRegressor(n_estimators=5)]:
        search = BayesianOptimization(tiny_space(), n_initial=5, surrogate=surrogate,
                                      random_state=0)
        for trial in run(search, 12):
            search.space.validate(trial.config)


# ------------------------------------------------------------------------ AgEBO
def test_agebo_evolves_the_architecture_and_optimizes_the_training():
    space = tiny_space()
    search = AgEBO(space, population_size=10, sample_size=3, n_initial=10, random_state=0)
    assert search.architecture_names == ["num_layers", "units_1", "units_2", "activation_1",
                                         "dropout_1"]
    assert search.training_names == ["optimizer", "learning_rate", "weight_decay",
                                     "batch_size"]

    def training_only(config):  # the objective reads the training dimensions only
        x = space.encode([config])[0]
        return float((x[6] - 0.4) ** 2 + (x[7] - 0.7) ** 2)

    run(search, 10, objective=training_only)
    arch = search.architecture_names
    for _ in range(50):
        parents = [r.config for r in search.population]
        trial = search.ask()
        # evolution: one architecture dimension changed from a member (switching the second
        # layer on or off also adds or drops units_2: two keys). Architectures may repeat
        # (with other training hyperparameters), so another member may be 0 changes away.
        changes = [sum(p.get(k) != trial.config.get(k) for k in arch) for p in parents]
        assert any(c in (1, 2) for c in changes)
        search.tell(trial.trial_id, training_only(trial.config))
    # BO: the training dimensions converge while random draws would not (mean ~0.33)
    last = [training_only(r.config) for r in search.history[-20:]]
    assert np.mean(last) < 0.05


def test_agebo_population_and_failures():
    search = AgEBO(tiny_space(), population_size=4, sample_size=2, n_initial=3,
                   random_state=0)
    for i in range(10):
        trial = search.ask()
        search.tell(trial.trial_id, None if i % 2 else float(i),
                    status="failed" if i % 2 else "success")
    assert [r.trial_id for r in search.population] == [2, 4, 6, 8]
    assert search._lcb._n == 10  # failures inform the surrogate


def test_agebo_degenerates_to_one_search():
    arch_only = SearchSpace({"units_1": Int(8, 64), "dropout_1": Float(0.0, 0.5)})
    train_only = SearchSpace({"learning_rate": Float(1e-4, 1e-1, log=True)})
    for space in (arch_only, train_only):
        search = AgEBO(space, population_size=5, sample_size=2, n_initial=5, random_state=0)
        for trial in run(search, 15, objective=lambda c: float(sum(c.values()))):
            space.validate(trial.config)


# ------------------------------------------------------------------------ the interface
def test_make_search():
    space = tiny_space()
    assert type(make_search("BO", space, 0)) is BayesianOptimization
    for name, cls in ALGORITHMS.items():
        search = make_search(name.upper(), space, random_state=1)
        assert type(search) is cls
        assert search.space is space
    assert type(make_search(AgingEvolution, space)) is AgingEvolution
    search = RandomSearch(space)
    assert make_search(search) is search
    with pytest.raises(ValueError, match="'random', 'evolution', 'bo', 'agebo'"):
        make_search("hyperband", space)
    with pytest.raises(ValueError, match="algorithm must be"):
        make_search(42, space)


def test_default_space_and_search_base():
    search = RandomSearch(random_state=0)
    assert search.space == default_space()
    assert isinstance(search, Search)
    trial = search.ask()
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.trial_id = 5
    assert search.pending == [trial]
    assert "RandomSearch(n_told=0, n_pending=1" in repr(search)
    with pytest.raises(TypeError):
        Search(tiny_space())  # abstract


def test_exhausted_space_repeats_instead_of_failing():
    space = SearchSpace({"a": [0, 1]})
    search = AgingEvolution(space, population_size=1, sample_size=1, random_state=0)
    configs = [search.ask().config for _ in range(4)]
    assert {c["a"] for c in configs} == {0, 1}


def test_a_copied_search_continues_identically():
    search = BayesianOptimization(tiny_space(), n_initial=5, random_state=0)
    run(search, 10)
    twin = copy.deepcopy(search)
    assert run(search, 5) == run(twin, 5)


def test_asks_are_cheap_while_workers_start():
    """100 workers starting at once: asks before any tell are random, so fast."""
    search = AgEBO(default_space(), random_state=0)
    start = time.perf_counter()
    trials = [search.ask() for _ in range(100)]
    assert len({_config_key(t.config) for t in trials}) == 100
    assert time.perf_counter() - start < 5.0  # loose: ~0.1 s on 2 cores


def test_ask_benchmark_runs(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ask.py"
    spec = importlib.util.spec_from_file_location("bench_ask", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--observations", "15", "--repeats", "2", "--max-layers", "2"])
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [row.split()[:2] for row in rows] == [["bo", "15"], ["agebo", "15"]]
    assert all(float(v) > 0 for row in rows for v in row.split()[2:])
