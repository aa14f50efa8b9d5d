"""Tests for autodeuq.ensemble: the candidate catalogue and the ensemble selectors."""

import numpy as np
import pytest

from autodeuq.ensemble import (
    BaggedSelector,
    Catalogue,
    CatalogueEntry,
    GreedySelector,
    Selector,
    TopKSelector,
    _selection,
    make_selector,
)
from autodeuq.evaluation import Journal, TrialResult
from autodeuq.uncertainty import NormalMixture, nll

N_VALID = 20


def _result(trial_id, objective, rng, status="success", n_valid=N_VALID):
    if status != "success":
        return TrialResult(trial_id=trial_id, config={"id": trial_id}, status=status,
                           error="boom" if status == "failed" else None)
    return TrialResult(
        trial_id=trial_id, config={"id": trial_id}, status="success", objective=objective,
        valid_mean=rng.normal(size=n_valid).astype(np.float32),
        valid_var=rng.uniform(0.1, 2.0, size=n_valid),
        state={"0.weight": rng.normal(size=(3, 2)), "0.bias": np.full(3, float(trial_id))},
        n_epochs=10, best_epoch=7, seed=100 + trial_id,
    )


def _mixture_nll(y, means, variances, indices, weights):
    return nll(y, NormalMixture(means[indices], np.sqrt(variances[indices]), weights))


def _diverse(seed=0, n_candidates=40, n_valid=300):
    """Overconfident candidates, each biased in its own smooth way: a mixture of several covers
    the truth better than any one of them."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, n_valid)
    f = np.sin(x)
    y = f + 0.3 * rng.normal(size=n_valid)
    amp = rng.uniform(0.2, 1.0, size=(n_candidates, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_candidates, 1))
    means = f + amp * np.sin(2 * x + phase) + 0.05 * rng.normal(size=(n_candidates, n_valid))
    variances = rng.uniform(0.02, 0.1, size=(n_candidates, 1)) * np.ones(n_valid)
    return y, means, variances


def _reference_greedy(y, means, variances, k, with_replacement, max_iter):
    """Greedy selection written plainly with NormalMixture and nll (slow, for small inputs)."""
    n = means.shape[0]
    singles = [_mixture_nll(y, means, variances, [i], None) for i in range(n)]
    members = [int(np.argmin(singles))]
    path = [min(singles)]
    while len(members) < max_iter:
        allowed = [
            i for i in range(n)
            if (with_replacement or i not in members)
            and (i in members or len(set(members)) < k)
        ]
        if not allowed:
            break
        scores = [_mixture_nll(y, means, variances, [*members, i], None) for i in allowed]
        best = int(np.argmin(scores))
        if not scores[best] < path[-1] - 1e-12 * (1 + abs(path[-1])):
            break
        members.append(allowed[best])
        path.append(scores[best])
    indices = list(dict.fromkeys(members))
    weights = np.array([members.count(i) for i in indices]) / len(members)
    return np.array(indices), weights, np.array(path)


# --------------------------------------------------------------------------- Catalogue


def test_catalogue_keeps_weights_of_the_best_only():
    rng = np.random.default_rng(0)
    objectives = rng.normal(size=30)
    results = [_result(i, float(objectives[i]), rng) for i in range(30)]
    catalogue = Catalogue(max_in_memory=5)
    for result in results:
        entry = catalogue.add(result)
        assert isinstance(entry, CatalogueEntry)
        assert catalogue.n_in_memory <= 5

    assert len(catalogue) == 30
    assert catalogue.n_in_memory == 5
    assert catalogue.trial_ids == list(range(30))
    np.testing.assert_array_equal(catalogue.objectives, objectives)
    best = set(np.argsort(objectives)[:5].tolist())
    assert {i for i in range(30) if catalogue.get(i).state is not None} == best
    for i in best:
        np.testing.assert_array_equal(catalogue.state(i)["0.bias"], np.full(3, float(i)))

    means, variances = catalogue.valid_means(), catalogue.valid_vars()
    assert means.shape == variances.shape == (30, N_VALID)
    assert means.dtype == variances.dtype == np.float64
    for i, result in enumerate(results):
        np.testing.assert_array_equal(means[i], result.valid_mean.astype(np.float64))
        np.testing.assert_array_equal(variances[i], result.valid_var)
        entry = catalogue.get(i)
        assert (entry.seed, entry.n_epochs, entry.best_epoch) == (100 + i, 10, 7)
        assert entry.config == {"id": i}
        assert not entry.valid_mean.flags.writeable
        # Kept in the precision given: float32 predictions are not doubled in memory.
        assert entry.valid_mean.dtype == np.float32
        assert entry.valid_var.dtype == np.float64


def test_catalogue_widens_other_types_to_float64_and_copies():
    rng = np.random.default_rng(5)
    result = _result(0, 0.1, rng)
    mean = result.valid_mean
    result.valid_mean = [int(v) for v in np.arange(N_VALID)]
    result.valid_var = rng.uniform(0.1, 2.0, size=N_VALID).astype(np.float16)
    catalogue = Catalogue()
    entry = catalogue.add(result)
    assert entry.valid_mean.dtype == entry.valid_var.dtype == np.float64
    np.testing.assert_array_equal(entry.valid_var, result.valid_var.astype(np.float64))
    result2 = _result(1, 0.2, rng)
    result2.valid_mean = mean
    entry2 = catalogue.add(result2)
    assert entry2.valid_mean.dtype == np.float32
    assert not np.shares_memory(entry2.valid_mean, mean)  # a copy: the result may be reused
    np.testing.assert_array_equal(catalogue.valid_means()[1], mean.astype(np.float64))


def test_catalogue_bound_none_and_zero():
    rng = np.random.default_rng(1)
    results = [_result(i, float(i), rng) for i in range(6)]
    keep_all, keep_none = Catalogue(max_in_memory=None), Catalogue(max_in_memory=0)
    for result in results:
        keep_all.add(result)
        keep_none.add(result)
    assert keep_all.n_in_memory == 6
    assert keep_none.n_in_memory == 0
    assert all(keep_none.get(i).state is None for i in range(6))


def test_catalogue_counts_failures_without_storing_them():
    rng = np.random.default_rng(2)
    catalogue = Catalogue()
    for i, status in enumerate(["failed", "diverged", "success", "timeout", "lost"]):
        catalogue.add(_result(i, 0.5, rng, status=status))
    assert catalogue.n_failed == 4
    assert len(catalogue) == 1
    assert catalogue.trial_ids == [2]
    assert 2 in catalogue
    assert 0 not in catalogue
    with pytest.raises(KeyError, match="trial_id=0 is not in the catalogue"):
        catalogue.get(0)


def test_catalogue_reloads_dropped_weights_from_the_journal(tmp_path):
    rng = np.random.default_rng(3)
    journal = Journal(tmp_path, "fingerprint")
    results = [_result(i, float(i), rng) for i in range(4)]
    catalogue = Catalogue(max_in_memory=1, directory=tmp_path / "weights")
    for result in results:
        journal.append(result)
        catalogue.add(result)
    assert catalogue.n_in_memory == 1
    assert catalogue.get(3).state is None
    for result in results:
        state = catalogue.state(result.trial_id)
        assert state.keys() == result.state.keys()
        for name, value in result.state.items():
            np.testing.assert_array_equal(state[name], value)
    assert catalogue.n_in_memory == 1  # reloaded weights are not cached

    (tmp_path / "weights" / "trial-2.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"trial 2 .*trial-2\.npz"):
        catalogue.state(2)


def test_catalogue_dropped_weights_without_directory_is_a_clear_error():
    rng = np.random.default_rng(4)
    catalogue = Catalogue(max_in_memory=1)
    catalogue.add(_result(0, 1.0, rng))
    catalogue.add(_result(1, 0.5, rng))  # better: drops trial 0's weights
    catalogue.add(_result(2, 2.0, rng))  # worse: never kept
    assert catalogue.get(1).state is not None
    for trial_id in (0, 2):
        with pytest.raises(RuntimeError, match=rf"trial {trial_id} .*checkpoint_dir"):
            catalogue.state(trial_id)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"objective": float("nan")}, "objective of successful trial 9 must be a finite"),
        ({"objective": None}, "objective of successful trial 9 must be a finite"),
        ({"valid_mean": None}, "valid_mean of successful trial 9 is None"),
        ({"valid_mean": np.zeros(N_VALID + 1)}, "must have the catalogue's 20 validation"),
        ({"valid_var": np.zeros(N_VALID)}, r"valid_var of trial 9 must be > 0"),
        ({"valid_var": np.full(N_VALID, np.nan)}, "valid_var of trial 9 must be finite"),
        ({"valid_mean": np.zeros((2, N_VALID))}, r"must have shape \(n_valid,\)"),
        ({"trial_id": 0}, "trial_id=0 is already in the catalogue"),
    ],
)
def test_catalogue_rejects_malformed_results(change, match):
    rng = np.random.default_rng(5)
    catalogue = Catalogue()
    catalogue.add(_result(0, 1.0, rng))
    result = _result(9, 1.0, rng)
    for key, value in change.items():
        setattr(result, key, value)
    with pytest.raises(ValueError, match=match):
        catalogue.add(result)
    assert len(catalogue) == 1


@pytest.mark.parametrize("bad", [-1, 2.5, True, "5"])
def test_catalogue_rejects_bad_max_in_memory(bad):
    with pytest.raises(ValueError, match="max_in_memory must be an int >= 0 or None"):
        Catalogue(max_in_memory=bad)


def test_catalogue_rejects_bad_directory():
    with pytest.raises(TypeError, match="directory must be a path"):
        Catalogue(directory=3)


def test_empty_catalogue_cannot_be_selected_from():
    catalogue = Catalogue()
    assert catalogue.valid_means().shape == (0, 0)
    assert catalogue.objectives.shape == (0,)
    for selector in (GreedySelector(), TopKSelector()):
        with pytest.raises(ValueError, match="at least one candidate"):
            selector.select(np.zeros(0), catalogue.valid_means(), catalogue.valid_vars())


# --------------------------------------------------------------------------- GreedySelector


@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize(("seed", "k"), [(1, 1), (3, 2), (4, 3), (6, 6)])
def test_greedy_matches_a_plain_reference(seed, k, with_replacement):
    y, means, variances = _diverse(seed=seed, n_candidates=12, n_valid=60)
    selector = GreedySelector(k=k, with_replacement=with_replacement, max_iter=20)
    indices, weights = selector.select(y, means, variances)
    ref_indices, ref_weights, ref_path = _reference_greedy(
        y, means, variances, k, with_replacement, 20
    )
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(weights, ref_weights, rtol=0, atol=1e-15)
    np.testing.assert_allclose(selector.nll_path_, ref_path, rtol=0, atol=1e-10)


def test_greedy_keeps_reweighting_once_k_members_are_chosen():
    y, means, variances = _diverse(seed=3, n_candidates=12, n_valid=60)
    selector = GreedySelector(k=2, max_iter=20)
    indices, weights = selector.select(y, means, variances)
    assert len(indices) == 2
    np.testing.assert_allclose(weights, [0.75, 0.25])
    assert len(selector.nll_path_) == 4
    # the two members were chosen first, then the first one was added twice more
    two = GreedySelector(k=2, max_iter=2).select(y, means, variances)
    np.testing.assert_array_equal(two[0], indices)
    np.testing.assert_allclose(two[1], [0.5, 0.5])


def test_greedy_nll_is_the_exact_mixture_nll():
    y, means, variances = _diverse(seed=1)
    selector = GreedySelector(k=5)
    indices, weights = selector.select(y, means, variances)
    exact = _mixture_nll(y, means, variances, indices, weights)
    assert abs(selector.nll_path_[-1] - exact) < 1e-10
    assert np.all(np.diff(selector.nll_path_) < 0)


def test_greedy_beats_the_best_single_and_top_k():
    y, means, variances = _diverse(seed=2)
    indices, weights = GreedySelector(k=5).select(y, means, variances)
    greedy = _mixture_nll(y, means, variances, indices, weights)
    singles = [_mixture_nll(y, means, variances, [i], None) for i in range(len(means))]
    top_indices, top_weights = TopKSelector(k=5).select(y, means, variances)
    top = _mixture_nll(y, means, variances, top_indices, top_weights)
    assert 1 < len(indices) <= 5
    assert greedy < min(singles) - 0.1  # diversity helps a lot on this data
    assert greedy <= top


def test_greedy_weights_are_counts_over_total():
    y, means, variances = _diverse(seed=3)
    selector = GreedySelector(k=3, max_iter=40)
    indices, weights = selector.select(y, means, variances)
    total = len(selector.nll_path_)
    counts = weights * total
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert np.all(np.round(counts) >= 1)
    assert np.round(counts).sum() == total
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert len(np.unique(indices)) == len(indices) <= 3


def test_greedy_without_replacement_gives_equal_weights():
    y, means, variances = _diverse(seed=4)
    indices, weights = GreedySelector(k=5, with_replacement=False).select(y, means, variances)
    assert len(np.unique(indices)) == len(indices) > 1
    np.testing.assert_allclose(weights, 1.0 / len(indices))


def test_greedy_stops_when_nothing_helps():
    y, means, variances = _diverse(seed=5, n_candidates=1)
    means, variances = np.repeat(means, 8, axis=0), np.repeat(variances, 8, axis=0)
    for with_replacement in (True, False):
        selector = GreedySelector(k=5, with_replacement=with_replacement)
        indices, weights = selector.select(y, means, variances)
        np.testing.assert_array_equal(indices, [0])
        np.testing.assert_array_equal(weights, [1.0])
        assert len(selector.nll_path_) == 1


def test_greedy_respects_k_and_max_iter():
    y, means, variances = _diverse(seed=6)
    indices, weights = GreedySelector(k=1).select(y, means, variances)
    singles = [_mixture_nll(y, means, variances, [i], None) for i in range(len(means))]
    np.testing.assert_array_equal(indices, [np.argmin(singles)])
    np.testing.assert_array_equal(weights, [1.0])

    selector = GreedySelector(k=10, max_iter=3)
    indices, weights = selector.select(y, means, variances)
    assert len(selector.nll_path_) <= 3
    assert len(indices) <= 3


def test_greedy_with_fewer_candidates_than_k():
    y, means, variances = _diverse(seed=7, n_candidates=3)
    for with_replacement in (True, False):
        indices, weights = GreedySelector(k=10, with_replacement=with_replacement).select(
            y, means, variances
        )
        assert 1 <= len(indices) <= 3
        assert weights.sum() == pytest.approx(1.0)


def test_greedy_block_size_does_not_change_the_result(monkeypatch):
    y, means, variances = _diverse(seed=8, n_candidates=50, n_valid=100)
    expected = GreedySelector(k=5).select(y, means, variances)
    monkeypatch.setattr(_selection, "_BLOCK_ELEMENTS", 7 * 100 + 3)  # 7 rows, uneven tail
    got = GreedySelector(k=5).select(y, means, variances)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_greedy_is_deterministic_and_accepts_lists():
    y, means, variances = _diverse(seed=9, n_candidates=5, n_valid=10)
    a = GreedySelector(k=3).select(y, means, variances)
    b = GreedySelector(k=3).select(y.tolist(), means.tolist(), variances.tolist())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == np.intp
    assert a[1].dtype == np.float64


# --------------------------------------------------------------------------- TopKSelector


def test_topk_picks_the_lowest_objectives():
    y, means, variances = _diverse(seed=10, n_candidates=10, n_valid=30)
    objectives = np.array([5.0, 1.0, 3.0, 0.5, 9.0, 2.0, 7.0, 1.0, 8.0, 6.0])
    indices, weights = TopKSelector(k=4).select(y, means, variances, objectives)
    np.testing.assert_array_equal(indices, [3, 1, 7, 5])  # ties keep the candidates' order
    np.testing.assert_array_equal(weights, np.full(4, 0.25))


def test_topk_without_objectives_ranks_by_validation_nll():
    y, means, variances = _diverse(seed=11, n_candidates=10, n_valid=30)
    singles = np.array([_mixture_nll(y, means, variances, [i], None) for i in range(10)])
    indices, _ = TopKSelector(k=3).select(y, means, variances)
    np.testing.assert_array_equal(indices, np.argsort(singles)[:3])


def test_topk_with_k_above_the_number_of_candidates():
    y, means, variances = _diverse(seed=12, n_candidates=3, n_valid=30)
    indices, weights = TopKSelector(k=10).select(y, means, variances, [3.0, 1.0, 2.0])
    np.testing.assert_array_equal(indices, [1, 2, 0])
    np.testing.assert_allclose(weights, np.full(3, 1 / 3))


# --------------------------------------------------------------------------- BaggedSelector


@pytest.mark.parametrize(("k", "n_bags", "seed"), [(1, 5, 0), (3, 8, 1), (5, 16, 2)])
def test_bagged_averages_greedy_weights_over_bootstrap_resamples(k, n_bags, seed):
    # The plain version: greedy selection on each resample of the points (the same draws),
    # weights averaged over the resamples with 0 where not chosen, the k largest kept.
    y, means, variances = _diverse(seed=seed, n_candidates=12, n_valid=60)
    rng = np.random.default_rng(seed)
    totals = np.zeros(12)
    for _ in range(n_bags):
        rows = rng.integers(0, 60, 60)
        chosen, weights = GreedySelector(k=k).select(y[rows], means[:, rows],
                                                     variances[:, rows])
        totals[chosen] += weights
    totals /= n_bags
    selector = BaggedSelector(k=k, n_bags=n_bags, random_state=seed)
    indices, weights = selector.select(y, means, variances)
    np.testing.assert_allclose(selector.bag_weights_, totals, rtol=1e-12)
    assert selector.bag_weights_.sum() == pytest.approx(1.0)
    want = np.argsort(-totals, kind="stable")[:k]
    want = want[totals[want] > 0]
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_allclose(weights, totals[want] / totals[want].sum(), rtol=1e-12)
    assert len(indices) <= k
    assert np.all(np.diff(weights) <= 0)  # by decreasing weight


def test_bagged_is_reproducible_and_seeded():
    y, means, variances = _diverse(seed=4, n_candidates=30, n_valid=80)
    first = BaggedSelector(k=5, random_state=7).select(y, means, variances)
    again = BaggedSelector(k=5, random_state=7).select(list(y), means.tolist(), variances)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    other = BaggedSelector(k=5, random_state=8)
    other.select(y, means, variances)
    seeded = BaggedSelector(k=5, random_state=7)
    seeded.select(y, means, variances)
    assert not np.array_equal(other.bag_weights_, seeded.bag_weights_)


def test_bagged_validates_its_options():
    with pytest.raises(ValueError, match=r"n_bags must be an int >= 1.*got 0"):
        BaggedSelector(n_bags=0)
    with pytest.raises(TypeError, match=r"random_state must be an int.*got NoneType"):
        BaggedSelector(random_state=None)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1 or None"):
        BaggedSelector(max_iter=0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(4), np.zeros(4), np.ones(4)), r"means must have shape \(n_candidates"),
        ((np.zeros(4), np.zeros((0, 4)), np.ones((0, 4))), "at least one candidate"),
        ((np.zeros(4), np.zeros((2, 4)), np.ones((2, 3))), "variances must have the same"),
        ((np.zeros(3), np.zeros((2, 4)), np.ones((2, 4))), r"y_valid must have shape \(n_valid"),
        ((np.zeros(4), np.full((2, 4), np.nan), np.ones((2, 4))), "means must be finite"),
        ((np.zeros(4), np.zeros((2, 4)), np.zeros((2, 4))), "variances must be > 0"),
        ((np.zeros(4), np.zeros((2, 4)), np.ones((2, 4)), [1.0]), "objectives must have shape"),
        ((np.zeros(4), np.zeros((2, 4)), np.ones((2, 4)), [1.0, np.nan]), "must not contain NaN"),
    ],
)
@pytest.mark.parametrize("selector", [GreedySelector(), TopKSelector(), BaggedSelector()])
def test_selectors_validate_their_inputs(selector, args, match):
    with pytest.raises(ValueError, match=match):
        selector.select(*args)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, None])
@pytest.mark.parametrize("cls", [GreedySelector, TopKSelector, BaggedSelector])
def test_selectors_validate_k(cls, bad):
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        cls(k=bad)


def test_greedy_validates_its_options():
    with pytest.raises(ValueError, match="max_iter must be an int >= 1 or None"):
        GreedySelector(max_iter=0)
    with pytest.raises(TypeError, match="with_replacement must be a bool"):
        GreedySelector(with_replacement="yes")


def test_candidates_of_several_networks_are_scored_as_their_mixture():
    # A candidate given as networks (3-D arrays) is their equal mixture: the same as the
    # 2-D candidate when its networks are copies of one, and the greedy path's NLL is the
    # exact mixture of every network with its share of the candidate's weight.
    rng = np.random.default_rng(3)
    y = rng.normal(size=40)
    means = rng.normal(size=(6, 3, 40))
    variances = rng.uniform(0.2, 2.0, size=(6, 3, 40))
    copies = np.repeat(means[:, :1], 3, axis=1), np.repeat(variances[:, :1], 3, axis=1)
    for selector in (GreedySelector(k=3), TopKSelector(k=3), BaggedSelector(k=3, n_bags=4)):
        got = selector.select(y, *copies)
        want = selector.select(y, means[:, 0], variances[:, 0])
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
    selector = GreedySelector(k=3)
    indices, weights = selector.select(y, means, variances)
    mixture = NormalMixture(means[indices].reshape(-1, 40),
                            np.sqrt(variances[indices].reshape(-1, 40)),
                            np.repeat(weights / 3, 3))
    assert selector.nll_path_[-1] == pytest.approx(nll(y, mixture), rel=1e-12)
    # Ranked alone, each candidate by its own mixture's NLL.
    alone = [nll(y, NormalMixture(means[i], np.sqrt(variances[i]))) for i in range(6)]
    np.testing.assert_array_equal(TopKSelector(k=2).select(y, means, variances)[0],
                                  np.argsort(alone)[:2])


def test_a_custom_selector_gets_one_gaussian_per_candidate_of_several_networks():
    # A selector that does not take networks sees each candidate as the mean and variance
    # of its mixture (law of total variance), in 2-D arrays.
    seen = []

    class First(Selector):
        def _select(self, y, means, variances, objectives):
            seen.append((means, variances))
            return np.array([0]), np.array([1.0])

    means = np.array([[[0.0, 1.0]], [[2.0, 3.0]]]).repeat(2, axis=1)
    means[:, 1] += 2.0  # networks at m and m + 2
    First().select(np.zeros(2), means, np.ones_like(means))
    got_means, got_vars = seen[0]
    np.testing.assert_allclose(got_means, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(got_vars, np.full((2, 2), 2.0))  # 1 + spread 1


@pytest.mark.parametrize("returned", [
    (np.array([0, 0]), np.array([0.5, 0.5])),  # a repeat
    ([0.7, 1.9], [0.5, 0.5]),  # float indices were cut to [0, 1]
    (np.array([True]), [1.0]),  # a bool was taken for index 1
    ([0], ["1"]),  # text was taken for a weight
    None,  # these failed inside the check, with Python's words
    ([0], [1.0], "x"),
    (["a"], [1.0]),
    ([2**70], [1.0]),
], ids=["repeat", "float indices", "bool index", "text weight", "None", "three", "text index",
        "huge index"])
def test_a_selector_returning_nonsense_is_caught(returned):
    class Broken(Selector):
        def _select(self, y, means, variances, objectives):
            return returned

    with pytest.raises(RuntimeError, match=r"Broken\._select must return \(indices, weights\): "
                                           r"distinct int indices in \[0, 3\).*Fix the "
                                           r"selector\."):
        Broken().select(np.zeros(2), np.zeros((3, 2)), np.ones((3, 2)))


def test_a_selectors_float32_weights_are_taken():
    # They sum to 1 within float32's precision, not float64's: refused before.
    class Float32(Selector):
        def _select(self, y, means, variances, objectives):
            return np.arange(3), np.full(3, 1 / 3, dtype=np.float32)

    _, weights = Float32().select(np.zeros(2), np.zeros((3, 2)), np.ones((3, 2)))
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)


# --------------------------------------------------------------------------- make_selector


def test_make_selector_by_name():
    greedy = make_selector("Greedy", k=7)
    assert isinstance(greedy, GreedySelector)
    assert greedy.k == 7
    topk = make_selector("TOPK", k=2)
    assert isinstance(topk, TopKSelector)
    assert topk.k == 2
    assert repr(topk) == "TopKSelector(k=2)"
    bagged = make_selector("bagged", k=4)
    assert isinstance(bagged, BaggedSelector)
    assert repr(bagged) == "BaggedSelector(k=4, n_bags=32, random_state=0, max_iter=None)"


def test_make_selector_returns_an_instance_as_is():
    selector = GreedySelector(k=3, with_replacement=False)
    assert make_selector(selector, k=10) is selector
    assert selector.k == 3


def test_make_selector_errors():
    with pytest.raises(ValueError, match=r"one of \['bagged', 'greedy', 'topk'\].*got 'caruana'"):
        make_selector("caruana", k=5)
    with pytest.raises(TypeError, match=r"must be a str .* or a Selector instance; got int"):
        make_selector(3, k=5)
    with pytest.raises(TypeError, match="not the class GreedySelector"):
        make_selector(GreedySelector, k=5)  # the class, not an instance
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        make_selector("greedy", k=0)
