"""Tests for autodeuq.datasets: the tutorial's synthetic problem and the UCI loader."""

from pathlib import Path

import numpy as np
import pytest

from autodeuq.datasets import UCI_DATASETS, load_uci, make_tutorial_regression

UCI_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"

# =========================================================================== tutorial problem


def test_tutorial_default_shapes():
    X_train, y_train, X_test, y_test = make_tutorial_regression(random_state=0)
    assert X_train.shape == (400, 1)
    assert y_train.shape == (400,)
    assert X_test.shape == (400, 1)
    assert y_test.shape == (400,)
    for a in (X_train, y_train, X_test, y_test):
        assert a.dtype == np.float64
        assert np.isfinite(a).all()


def test_tutorial_custom_sizes():
    X_train, y_train, X_test, y_test = make_tutorial_regression(
        n_samples_per_region=np.int64(7), n_test=13, random_state=0)
    assert X_train.shape == (14, 1)
    assert y_train.shape == (14,)
    assert X_test.shape == (13, 1)
    assert y_test.shape == (13,)


def test_tutorial_training_inputs_lie_in_two_islands():
    X_train, _, _, _ = make_tutorial_regression(random_state=1)
    x = X_train[:, 0]
    left = (x >= -30) & (x <= -20)
    right = (x >= 20) & (x <= 30)
    assert left.sum() == 200
    assert right.sum() == 200
    assert np.all(left[:200])  # the first half is the left island
    assert np.all(right[200:])
    # Uniform over each island: both ends of each interval are approached.
    assert x[:200].min() < -29
    assert x[:200].max() > -21
    assert x[200:].min() < 21
    assert x[200:].max() > 29


def test_tutorial_test_set_is_the_noise_free_sine_on_a_grid():
    _, _, X_test, y_test = make_tutorial_regression(n_test=401, random_state=0)
    x = X_test[:, 0]
    assert x[0] == -40
    assert x[-1] == 40
    np.testing.assert_allclose(np.diff(x), 0.2, rtol=1e-9)
    assert np.array_equal(y_test, 2.0 * np.sin(x))
    # The gap (-20, 20) and the outer edges are covered: out-of-distribution inputs.
    assert np.sum(np.abs(x) < 20) > 150
    assert np.sum(np.abs(x) > 30) > 40


def test_tutorial_noise_levels_per_region():
    X_train, y_train, _, _ = make_tutorial_regression(random_state=0)
    residual = y_train - 2.0 * np.sin(X_train[:, 0])
    # std of a 200-sample standard deviation is about 5% of it.
    assert residual[:200].std() == pytest.approx(0.5, rel=0.15)
    assert residual[200:].std() == pytest.approx(1.0, rel=0.15)
    assert abs(residual[:200].mean()) < 0.15
    assert abs(residual[200:].mean()) < 0.3


def test_tutorial_custom_noise():
    X_train, y_train, _, _ = make_tutorial_regression(n_samples_per_region=300,
                                                      noise=(0.0, 3.0), random_state=2)
    residual = y_train - 2.0 * np.sin(X_train[:, 0])
    assert np.array_equal(residual[:300], np.zeros(300))
    assert residual[300:].std() == pytest.approx(3.0, rel=0.15)


def test_tutorial_random_state():
    a = make_tutorial_regression(random_state=3)
    b = make_tutorial_regression(random_state=3)
    c = make_tutorial_regression(random_state=4)
    d = make_tutorial_regression(random_state=np.random.RandomState(3))
    for x, y, z in zip(a, b, d, strict=True):
        assert np.array_equal(x, y)
        assert np.array_equal(x, z)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])
    assert np.array_equal(a[2], c[2])  # the test grid does not depend on the seed


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_samples_per_region": 0}, "n_samples_per_region"),
        ({"n_samples_per_region": -5}, "n_samples_per_region"),
        ({"n_samples_per_region": 2.5}, "n_samples_per_region"),
        ({"n_samples_per_region": 200.0}, "n_samples_per_region"),
        ({"n_samples_per_region": True}, "n_samples_per_region"),
        ({"n_samples_per_region": "200"}, "n_samples_per_region"),
        ({"n_test": 0}, "n_test"),
        ({"n_test": 10.0}, "n_test"),
        ({"noise": (0.5,)}, "noise"),
        ({"noise": (0.5, 1.0, 2.0)}, "noise"),
        ({"noise": (-0.1, 1.0)}, "noise"),
        ({"noise": (0.5, -1.0)}, "noise"),
        pytest.param({"noise": 0.5}, "noise", id="noise-scalar"),
        pytest.param({"noise": None}, "noise", id="noise-none"),
        pytest.param({"noise": (float("nan"), 1.0)}, "noise", id="noise-nan"),
        pytest.param({"noise": ("a", "b")}, "noise", id="noise-text"),
        pytest.param({"random_state": -1}, "random_state", id="negative-seed"),
    ],
)
def test_tutorial_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        make_tutorial_regression(**kwargs)


# =========================================================================== UCI loader


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture
def tiny_dir(tmp_path):
    X = np.arange(30, dtype=np.float64).reshape(10, 3)
    y = np.arange(10, dtype=np.float64) * 10
    mask = np.zeros((2, 10), dtype=bool)
    mask[0, [1, 4]] = True
    mask[1, [0, 5, 9]] = True
    _write(tmp_path / "tiny.npz", X=X, y=y, test_mask=mask)
    return tmp_path


@pytest.mark.parametrize(
    ("split", "test_rows"),
    [(0, [1, 4]), (1, [0, 5, 9]), (np.int64(1), [0, 5, 9])],
)
def test_load_uci_split_rows(tiny_dir, split, test_rows):
    X_train, y_train, X_test, y_test = load_uci("tiny", split=split, data_dir=tiny_dir)
    train_rows = [i for i in range(10) if i not in test_rows]
    X = np.arange(30, dtype=np.float64).reshape(10, 3)
    np.testing.assert_array_equal(X_train, X[train_rows])
    np.testing.assert_array_equal(X_test, X[test_rows])
    np.testing.assert_array_equal(y_train, np.array(train_rows) * 10.0)
    np.testing.assert_array_equal(y_test, np.array(test_rows) * 10.0)


def test_load_uci_accepts_str_dir_and_integer_mask(tmp_path):
    mask = np.zeros((1, 4), dtype=np.int64)
    mask[0, 2] = 1
    _write(tmp_path / "ints.npz", X=np.eye(4), y=np.arange(4.0), test_mask=mask)
    X_train, y_train, X_test, y_test = load_uci("ints", data_dir=str(tmp_path))
    np.testing.assert_array_equal(X_train, np.eye(4)[[0, 1, 3]])
    np.testing.assert_array_equal(y_train, [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(y_test, [2.0])
    np.testing.assert_array_equal(X_test, np.eye(4)[[2]])


def test_load_uci_missing_file_lists_available(tiny_dir):
    _write(tiny_dir / "another.npz", X=np.zeros((1, 1)), y=np.zeros(1),
           test_mask=np.zeros((1, 1), dtype=bool))
    with pytest.raises(FileNotFoundError, match=r"name='yacht'.*\['another', 'tiny'\]"):
        load_uci("yacht", data_dir=tiny_dir)


def test_load_uci_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"name='yacht'.*none \(is data_dir right\?\)"):
        load_uci("yacht", data_dir=tmp_path / "does-not-exist")


@pytest.mark.parametrize("split", [2, -1, 1.0, True, "0"])
def test_load_uci_split_out_of_range(tiny_dir, split):
    with pytest.raises(ValueError, match=r"^split must be an int in \[0, 1\] for tiny"):
        load_uci("tiny", split=split, data_dir=tiny_dir)


def test_load_uci_missing_arrays(tmp_path):
    _write(tmp_path / "broken.npz", X=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"must hold arrays X, y and test_mask.*\['test_mask'\]"):
        load_uci("broken", data_dir=tmp_path)


def test_tutorial_noise_written_as_text_is_numbers():
    # It passed the check as numbers, then failed multiplying text.
    as_text = make_tutorial_regression(noise=("0.5", "1"), random_state=0)
    as_numbers = make_tutorial_regression(noise=(0.5, 1.0), random_state=0)
    for a, b in zip(as_text, as_numbers, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("content", "message"), [
    ("not a zip", r"must be a numpy \.npz archive of arrays X, y and test_mask; it cannot be "
                  r"read as one"),  # numpy called it a pickle, and offered allow_pickle
    ({"X": np.array([[1, "a"]], dtype=object), "y": np.zeros(1),
      "test_mask": np.zeros((1, 1), bool)}, "holds Python objects"),
    ({"X": np.zeros((3, 1)), "y": np.zeros(3), "test_mask": np.zeros((0, 3), bool)},
     r"test_mask \(n_splits, n\); got shapes \(3, 1\), \(3,\) and \(0, 3\)"),
    ({"X": np.zeros((3, 1)), "y": np.zeros(3), "test_mask": np.ones((1, 3), bool)},
     r"test_mask\[0\] must hold both training and test rows; it marks 3 of 3"),
])
def test_load_uci_a_file_it_cannot_use(tmp_path, content, message):
    path = tmp_path / "odd.npz"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.savez(path, **content)
    with pytest.raises(ValueError, match=message):
        load_uci("odd", data_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": None}, "name must be a dataset's file stem, a non-empty str; got None"),
    ({"name": "yacht", "data_dir": 5}, r"data_dir must be a folder's path .* got 5"),
])
def test_load_uci_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_uci(**kwargs)


def test_load_uci_needs_a_directory(monkeypatch):
    monkeypatch.delenv("AUTODEUQ_UCI_DIR", raising=False)
    with pytest.raises(ValueError, match=r"^data_dir must be given.*AUTODEUQ_UCI_DIR"):
        load_uci("yacht")


def test_load_uci_uses_the_environment_variable(tiny_dir, monkeypatch):
    monkeypatch.setenv("AUTODEUQ_UCI_DIR", str(tiny_dir))
    _, _, _, y_test = load_uci("tiny")
    np.testing.assert_array_equal(y_test, [10.0, 40.0])
    # An explicit data_dir wins over the environment variable.
    monkeypatch.setenv("AUTODEUQ_UCI_DIR", str(tiny_dir / "elsewhere"))
    _, _, _, y_test = load_uci("tiny", split=1, data_dir=tiny_dir)
    np.testing.assert_array_equal(y_test, [0.0, 50.0, 90.0])


@pytest.mark.skipif(not UCI_DIR.is_dir(), reason=f"no UCI data at {UCI_DIR}")
@pytest.mark.parametrize("name", UCI_DATASETS)
def test_load_real_uci_datasets(name):
    with np.load(UCI_DIR / f"{name}.npz") as data:
        n, d = data["X"].shape
        n_splits = len(data["test_mask"])
    X_train, y_train, X_test, y_test = load_uci(name, split=0, data_dir=UCI_DIR)
    assert len(X_train) + len(X_test) == n
    assert len(y_train) == len(X_train)
    assert len(y_test) == len(X_test)
    assert X_train.shape[1] == X_test.shape[1] == d
    assert len(X_test) / n == pytest.approx(0.1, abs=0.01)
    for a in (X_train, y_train, X_test, y_test):
        assert np.isfinite(a).all()
    # The last split loads too, and differs from the first.
    _, _, _, y_test_last = load_uci(name, split=n_splits - 1, data_dir=UCI_DIR)
    assert len(y_test_last) == pytest.approx(len(y_test), abs=1)
    assert not np.array_equal(y_test_last, y_test)
