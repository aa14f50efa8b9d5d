"""The matplotlib displays: the numbers they hold, the Axes they draw on, lazy matplotlib."""

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.linear_model import BayesianRidge, LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from autodeuq import (
    AutoDEUQRegressor,
    DeepEnsembleRegressor,
    GaussianMLPRegressor,
    NASRegressor,
)
from autodeuq.datasets import make_tutorial_regression
from autodeuq.plotting import (
    CalibrationDisplay,
    ParallelCoordinatesDisplay,
    PredictiveBandsDisplay,
    SearchTrajectoryDisplay,
    WorkerTimelineDisplay,
)
from autodeuq.space import Categorical, Float, Int
from autodeuq.uncertainty import calibration_curve

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

NET = {"hidden_layer_sizes": (8,), "max_epochs": 5, "patience": 5}
SPACE = {"num_layers": 1, "units_1": Int(4, 16), "activation_1": Categorical(["relu", "tanh"]),
         "learning_rate": Float(1e-3, 3e-2, log=True), "max_epochs": 5, "patience": 5}
SEARCH = {"search_space": SPACE, "algorithm": "random", "max_evals": 3, "backend": "serial",
          "random_state": 0}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def toy():
    """The tutorial's two islands, small."""
    return make_tutorial_regression(n_samples_per_region=40, n_test=60, random_state=0)


@pytest.fixture(scope="module")
def models(toy):
    """Each of the four estimators, fitted tiny on the toy problem."""
    X, y, _, _ = toy
    return {
        "mlp": GaussianMLPRegressor(**NET, random_state=0).fit(X, y),
        "ensemble": DeepEnsembleRegressor(GaussianMLPRegressor(**NET), n_members=2,
                                          random_state=0).fit(X, y),
        "nas": NASRegressor(**SEARCH, refit=False).fit(X, y),
        "autodeuq": AutoDEUQRegressor(**SEARCH, ensemble_size=2, refit=False).fit(X, y),
    }


@pytest.fixture(scope="module")
def frame_data():
    """Two named features, for a Pipeline and picking a feature by name."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.uniform(-2, 2, 60), "b": rng.uniform(-1, 1, 60)})
    y = np.sin(X["a"].to_numpy()) + X["b"].to_numpy() + 0.1 * rng.normal(size=60)
    return X, y


@pytest.fixture(scope="module")
def pipeline(frame_data):
    X, y = frame_data
    return make_pipeline(StandardScaler(), GaussianMLPRegressor(**NET, random_state=0)).fit(X, y)


def results(n=6):
    """A results table by hand: two workers, job 2 failed, times known exactly."""
    return pd.DataFrame({
        "job_id": range(n),
        "p:units": [8, 64, 16, 32, 128, 8][:n],
        "p:activation": ["relu", "tanh", "relu", "gelu", "tanh", "relu"][:n],
        "p:learning_rate": [1e-3, 1e-2, 1e-4, 3e-3, 1e-1, 1e-3][:n],
        "p:max_epochs": [5] * n,
        "valid_nll": [1.5, 1.2, np.nan, 1.3, 0.9, 2.0][:n],
        "status": ["success", "success", "failed", "success", "success", "success"][:n],
        "start_time": [0.0, 0.0, 1.0, 2.0, 2.5, 4.0][:n],
        "end_time": [1.0, 2.0, 2.5, 4.0, 6.0, 5.0][:n],
        "worker": ["tcp://w:1", "tcp://w:2", "tcp://w:1", "tcp://w:2", "tcp://w:1",
                   "tcp://w:2"][:n],
    })


# -- matplotlib only when drawing ------------------------------------------------------------


def test_importing_autodeuq_and_its_plotting_does_not_import_matplotlib():
    code = ("import sys, autodeuq, autodeuq.plotting\n"
            "assert autodeuq.plotting.CalibrationDisplay\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_without_matplotlib_the_error_names_the_extra(monkeypatch, toy):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'autodeuq\[plot\]'"):
        CalibrationDisplay.from_predictions(toy[1], toy[1], np.ones(len(toy[1])))


# -- predictive bands ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "ensemble", "nas", "autodeuq"])
def test_bands_hold_what_predict_uncertainty_returned_on_a_grid_beyond_the_data(models, toy,
                                                                               name):
    X, y, X_test, _ = toy
    est = models[name]
    display = PredictiveBandsDisplay.from_estimator(est, X_test, X_train=X, y_train=y,
                                                    margin=0.5)
    lo, hi = X_test.min(), X_test.max()
    assert display.x[0] == pytest.approx(lo - 0.5 * (hi - lo))
    assert display.x[-1] == pytest.approx(hi + 0.5 * (hi - lo))
    expected = est.predict_uncertainty(display.x[:, None])
    for field in ("mean", "total_std", "aleatoric_std", "epistemic_std"):
        np.testing.assert_allclose(getattr(display, field), getattr(expected, field))
    np.testing.assert_allclose(display.total_std**2,
                               display.aleatoric_std**2 + display.epistemic_std**2)
    if name in ("mlp", "nas"):  # one network: no epistemic part
        assert (display.epistemic_std == 0).all()
    if name == "ensemble":
        assert (display.epistemic_std > 0).all()
    # A new figure with the standard deviations below; the training points drawn.
    assert display.ax_std_ is not None
    assert display.figure_ is display.ax_.figure
    assert display.train_points_.get_offsets().shape == (len(X), 2)
    # The middle of the test range, between the islands, is shaded as having no data.
    assert any(a < -15 and b > 15 for a, b in PredictiveBandsDisplay._gaps(display.x, X[:, 0]))
    assert len(display.gap_spans_) >= 2


def test_bands_of_a_pipeline_against_a_named_feature_on_a_given_axes(pipeline, frame_data):
    X, y = frame_data
    fig, ax = plt.subplots()
    display = PredictiveBandsDisplay.from_estimator(pipeline, X, y, feature="b", ax=ax,
                                                    target_name="y")
    assert display.ax_ is ax
    assert display.ax_std_ is None
    assert display.figure_ is fig
    np.testing.assert_array_equal(display.x, X["b"].to_numpy())
    np.testing.assert_allclose(display.mean, pipeline.predict(X))
    assert display.x_label == "b"
    assert ax.get_xlabel() == "b"
    assert ax.get_ylabel() == "y"
    # Several features: an error bar at each row, not a band filled across rows.
    assert not display.connected
    assert display.data_points_.get_offsets().shape == (len(X), 2)


def test_bands_with_several_features_default_to_rows_sorted_by_mean(pipeline, frame_data):
    X, _ = frame_data
    _fig, (top, bottom) = plt.subplots(2, 1)
    display = PredictiveBandsDisplay.from_estimator(pipeline, X, ax=[top, bottom])
    assert display.positions == "sorted"
    assert display.connected
    assert display.ax_ is top
    assert display.ax_std_ is bottom
    # x is each row's rank by predicted mean, the arrays stay in row order.
    np.testing.assert_array_equal(np.argsort(display.x), np.argsort(display.mean,
                                                                    kind="stable"))
    np.testing.assert_allclose(display.mean, pipeline.predict(X))
    np.testing.assert_allclose(display.mean_line_.get_ydata(), np.sort(display.mean))


def test_bands_from_predictions_unpack_predict_uncertainty(models, toy):
    _, _, X_test, y_test = toy
    unc = models["ensemble"].predict_uncertainty(X_test)
    display = PredictiveBandsDisplay.from_predictions(X_test[:, 0], *unc, y=y_test,
                                                      std_panel=False, coverage=0.9)
    np.testing.assert_array_equal(display.aleatoric_std, unc.aleatoric_std)
    np.testing.assert_array_equal(display.epistemic_std, unc.epistemic_std)
    assert display.ax_std_ is None
    assert display.aleatoric_band_.get_label() == "90% band, aleatoric only (noise)"
    # The aleatoric band reaches mean +- z * aleatoric std, z of the 90% central interval.
    top = display.aleatoric_band_.get_paths()[0].vertices[:, 1].max()
    z = norm.ppf(0.95)
    assert top == pytest.approx((unc.mean + z * unc.aleatoric_std).max())


def test_bands_of_several_models_on_one_axes_are_told_apart(models, toy):
    """aleatoric_kwargs and epistemic_kwargs restyle the bands; a single network's epistemic
    band (of zero width) has no legend entry, an ensemble's has one."""
    X, y, X_test, _ = toy
    _fig, ax = plt.subplots()
    one = PredictiveBandsDisplay.from_estimator(
        models["mlp"], X_test, X_train=X, y_train=y, ax=ax, margin=0,
        aleatoric_kwargs={"color": "tab:green", "label": "one network"},
        mean_kwargs={"color": "tab:green"})
    ensemble = PredictiveBandsDisplay.from_estimator(
        models["ensemble"], X_test, ax=ax, margin=0, shade_gaps=False,
        epistemic_kwargs={"color": "tab:purple", "alpha": 0.2})
    to_rgba = mpl.colors.to_rgba
    np.testing.assert_allclose(one.aleatoric_band_.get_facecolor()[0],
                               to_rgba("tab:green", 0.35))  # the other defaults stay
    np.testing.assert_allclose(ensemble.aleatoric_band_.get_facecolor()[0],
                               to_rgba("tab:blue", 0.35))
    for band in ensemble.epistemic_bands_:
        np.testing.assert_allclose(band.get_facecolor()[0], to_rgba("tab:purple", 0.2))
    labels = ax.get_legend_handles_labels()[1]
    assert labels.count("one network") == 1
    assert labels.count("widened by epistemic (lack of data)") == 1  # the ensemble's alone
    assert len(one.gap_spans_) >= 2
    assert ensemble.gap_spans_ == []


def test_bands_as_error_bars_take_their_own_keyword_arguments(pipeline, frame_data):
    X, _ = frame_data
    display = PredictiveBandsDisplay.from_estimator(
        pipeline, X, feature="a", std_panel=False, epistemic_kwargs={"ecolor": "tab:purple"},
        aleatoric_kwargs={"label": "the noise"})
    assert display.epistemic_bands_[0].lines[2][0].get_colors()[0] == pytest.approx(
        mpl.colors.to_rgba("tab:purple", 0.5))
    labels = display.ax_.get_legend_handles_labels()[1]
    assert "the noise" in labels
    assert not any("band, total" in label for label in labels)  # one network: no epistemic


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"feature": "c"}, r"feature='c' is not a column of X \(X has the columns \['a', 'b'\]\)"),
    ({"feature": 2}, r"feature must be a column name, an int in \[0, 2\)"),
    ({"grid": True, "feature": "a"}, "grid=True needs a model of one feature"),
    ({"feature": "sorted", "X_train": np.zeros((2, 2)), "y_train": [0, 1]},
     "X_train needs a feature on the horizontal axis"),
    ({"margin": -1}, "margin must be a number >= 0"),
    ({"feature": "a", "grid_resolution": 1}, r"grid_resolution must be an int >= 2; got 1"),
])
def test_bands_bad_arguments_fail_before_predicting(pipeline, frame_data, kwargs, match):
    X, _ = frame_data
    with pytest.raises(ValueError, match=match):
        PredictiveBandsDisplay.from_estimator(pipeline, X, **kwargs)


def test_bands_of_a_one_feature_model_in_row_order_need_no_grid(models, toy):
    # grid="auto" meant a grid for any one-feature model, then refused it with 'sorted'.
    X, _, _, _ = toy
    display = PredictiveBandsDisplay.from_estimator(models["ensemble"], X, feature="sorted")
    assert display.positions == "sorted"
    assert len(display.x) == len(X)


def test_bands_at_one_point_are_drawn_as_an_error_bar(models, toy):
    # A filled band at one position drew nothing, with the legend still listing the bands.
    X, y, _, _ = toy
    for display in (PredictiveBandsDisplay.from_predictions([0.3], [1.0], [0.5], [0.4], [0.3]),
                    PredictiveBandsDisplay.from_estimator(models["ensemble"], X[:1], y[:1],
                                                          grid=False)):
        assert display.ax_.containers  # the error bars
    display = PredictiveBandsDisplay.from_estimator(models["ensemble"], X, y)
    display.plot(shade_gaps=np.True_)  # a numpy bool, as std_panel takes one


def test_bands_need_an_estimator_that_predicts_uncertainty(frame_data):
    X, y = frame_data
    with pytest.raises(TypeError, match="must have a predict_uncertainty method"):
        PredictiveBandsDisplay.from_estimator(BayesianRidge().fit(X, y), X)


# -- calibration -----------------------------------------------------------------------------


def test_calibration_of_an_ensemble_uses_its_mixture_and_runs_from_0_to_1(models, toy):
    X, y, _, _ = toy
    est = models["ensemble"]
    display = CalibrationDisplay.from_estimator(est, X, y, n_levels=9)
    expected, observed = calibration_curve(y, est.predict_distribution(X), 9)
    np.testing.assert_allclose(display.expected, [0.0, *expected, 1.0])
    np.testing.assert_allclose(display.observed, [0.0, *observed, 1.0])
    assert display.line_.get_xydata().shape == (11, 2)
    assert "EnsembleRegressor (calibration error" in display.line_.get_label()


def test_calibration_from_predictions_tells_calibrated_from_over_confident():
    rng = np.random.default_rng(0)
    y = rng.normal(size=4000)
    mean = np.zeros_like(y)
    fig, ax = plt.subplots()
    good = CalibrationDisplay.from_predictions(y, mean, np.ones_like(y), name="right", ax=ax)
    narrow = CalibrationDisplay.from_predictions(y, mean, np.full_like(y, 0.5), ax=ax,
                                                 name="too narrow")
    assert good.ax_ is ax
    assert narrow.ax_ is ax
    assert good.figure_ is fig
    np.testing.assert_allclose(good.observed, good.expected, atol=0.03)
    assert (narrow.observed[1:-1] < narrow.expected[1:-1]).all()
    # One diagonal however many curves share the Axes.
    assert [line.get_label() for line in ax.get_lines()].count("perfectly calibrated") == 1
    assert narrow.diagonal_ is good.diagonal_


def test_calibration_from_a_mixture_and_from_any_return_std_regressor(models, toy, frame_data):
    X, y, _, _ = toy
    dist = models["autodeuq"].predict_distribution(X)
    display = CalibrationDisplay.from_predictions(y, dist, levels=[0.5, 0.9])
    np.testing.assert_allclose(display.observed[1:-1], calibration_curve(
        y, dist, levels=[0.5, 0.9])[1])
    Xf, yf = frame_data
    ridge = CalibrationDisplay.from_estimator(BayesianRidge().fit(Xf, yf), Xf, yf)
    assert ridge.estimator_name == "BayesianRidge"
    assert len(ridge.expected) == 21
    with pytest.raises(ValueError, match="y_std is required when y_pred holds means"):
        CalibrationDisplay.from_predictions(y, y)
    # A Pipeline is checked at its last step (it passed, then predict failed on return_std).
    with pytest.raises(TypeError, match="estimator must predict a distribution"):
        CalibrationDisplay.from_estimator(
            make_pipeline(StandardScaler(), LinearRegression()).fit(Xf, yf), Xf, yf)
    CalibrationDisplay.from_estimator(make_pipeline(StandardScaler(), BayesianRidge()).fit(
        Xf, yf), Xf, yf)


# -- search trajectory -----------------------------------------------------------------------


def test_trajectory_of_a_search_is_its_running_best_in_finishing_order(models):
    est = models["autodeuq"]
    display = SearchTrajectoryDisplay.from_estimator(est)
    table = est.search_results_.sort_values("end_time", kind="stable")
    np.testing.assert_allclose(display.objective, table["valid_nll"])
    np.testing.assert_allclose(display.best_so_far, np.minimum.accumulate(table["valid_nll"]))
    assert (np.diff(display.best_so_far) <= 0).all()
    np.testing.assert_array_equal(display.n_evaluations, np.arange(1, len(table) + 1))
    assert set(display.axes_) == {"time", "evaluations"}
    np.testing.assert_allclose(display.best_lines_["time"].get_xdata(), table["end_time"])


def test_trajectory_counts_failures_and_draws_on_a_given_axes():
    _fig, ax = plt.subplots()
    display = SearchTrajectoryDisplay.from_results(results(), x="evaluations", ax=ax)
    assert display.ax_ is ax
    assert display.axes_ == {"evaluations": ax}
    # Finishing order: jobs 0, 1, 2 (failed), 3, 5, 4.
    np.testing.assert_allclose(display.objective, [1.5, 1.2, np.nan, 1.3, 2.0, 0.9])
    np.testing.assert_allclose(display.best_so_far, [1.5, 1.2, 1.2, 1.2, 1.2, 0.9])
    assert display.failure_marks_["evaluations"].get_offsets()[:, 0].tolist() == [3.0]
    with pytest.raises(ValueError, match="x='both' draws 2 Axes; got 1"):
        display.plot(ax=ax, x="both")


def test_trajectory_of_a_deephyper_results_csv_maximizes_its_objective(tmp_path):
    path = tmp_path / "results.csv"
    pd.DataFrame({"p:x": [1, 2, 3, 4], "objective": ["-3.0", "F_failed", "-1.0", "-2.0"],
                  "job_id": [0, 1, 2, 3], "m:timestamp_submit": [10.0, 10.0, 11.0, 12.0],
                  "m:timestamp_gather": [11.0, 11.5, 12.0, 13.0]}).to_csv(path, index=False)
    display = SearchTrajectoryDisplay.from_results(path)
    assert not display.lower_is_better
    assert display.objective_name == "objective"
    np.testing.assert_allclose(display.times, [1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(display.best_so_far, [-3.0, -3.0, -1.0, -1.0])
    assert "higher is better" in display.ax_.get_ylabel()


# -- worker timeline -------------------------------------------------------------------------


def test_timeline_puts_one_bar_per_trial_on_its_workers_row():
    _fig, ax = plt.subplots()
    display = WorkerTimelineDisplay.from_results(results(), ax=ax)
    assert display.ax_ is ax
    assert display.worker_names == ["tcp://w:1", "tcp://w:2"]
    np.testing.assert_array_equal(display.rows, [0, 1, 0, 1, 0, 1])
    bars = display.bars_.patches
    assert len(bars) == 6
    for bar, row, start, end in zip(bars, display.rows, results()["start_time"],
                                    results()["end_time"], strict=True):
        assert bar.get_y() + bar.get_height() / 2 == pytest.approx(row)
        assert (bar.get_x(), bar.get_x() + bar.get_width()) == pytest.approx((start, end))
    # Worker 1 ran 0-1, 1-2.5 and 2.5-6, never idle; worker 2 ran 0-2 and 2-5 of the 6 s.
    np.testing.assert_allclose(display.busy_fraction, [1.0, 5 / 6])
    assert mpl.colors.to_hex(bars[2].get_facecolor()) == mpl.colors.to_hex("tab:red")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["w:1  (100% busy)",
                                                            "w:2  (83% busy)"]


def test_timeline_without_workers_uses_as_few_rows_as_trials_ran_at_once(models):
    table = results().drop(columns="worker")
    display = WorkerTimelineDisplay.from_results(table)
    assert len(display.worker_names) == 2
    for row in range(2):  # trials on one row never overlap
        on_row = np.flatnonzero(display.rows == row)
        spans = sorted(zip(display.start[on_row], display.end[on_row], strict=True))
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))
    serial = WorkerTimelineDisplay.from_estimator(models["nas"])
    assert len(serial.worker_names) == 1
    assert len(serial.bars_.patches) == 3


# -- parallel coordinates --------------------------------------------------------------------


def test_parallel_coordinates_of_a_search_use_its_space(models):
    est = models["autodeuq"]
    display = ParallelCoordinatesDisplay.from_estimator(est, n_best=2)
    table = est.search_results_.sort_values("valid_nll").head(2)
    np.testing.assert_allclose(display.objective, table["valid_nll"])
    assert len(display.lines_) == 2
    assert display.scales["learning_rate"] == ("log", 1e-3, 3e-2)
    lr = table["p:learning_rate"].to_numpy()
    column = list(display.params.columns).index("learning_rate")
    np.testing.assert_allclose(display.positions[:, column],
                               np.log(lr / 1e-3) / np.log(3e-2 / 1e-3))
    assert "max_epochs" not in display.params.columns  # the same in every configuration
    assert display.colorbar_ is not None


def test_parallel_coordinates_from_results_without_a_space():
    _fig, ax = plt.subplots()
    display = ParallelCoordinatesDisplay.from_results(results(), n_best=3, ax=ax)
    assert display.ax_ is ax
    # The best three successes, best first: jobs 4, 1, 3.
    np.testing.assert_array_equal(display.job_id, [4, 1, 3])
    assert display.scales["activation"] == ("categorical", ["gelu", "tanh"])
    assert display.scales["units"] == ("linear", 32.0, 128.0)
    assert list(display.params.columns) == ["units", "activation", "learning_rate"]
    np.testing.assert_allclose(display.positions, [[1.0, 1.0, 1.0],
                                                   [1 / 3, 1.0, 0.007 / 0.097],
                                                   [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(display.lines_[0].get_ydata(), display.positions[0])
    with pytest.raises(ValueError, match=r"params names \['depth'\], not in the results"):
        ParallelCoordinatesDisplay.from_results(results(), params=["depth"])
