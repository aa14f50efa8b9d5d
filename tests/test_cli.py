"""The ``autodeuq`` command line: fit, predict, plot and demo on small CSV files."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import autodeuq
from autodeuq import AutoDEUQRegressor, GaussianMLPRegressor, cli

# One small network, a few epochs: every fit here takes about a second.
SINGLE = ["--estimator", "gaussian-mlp", "--max-epochs", "5", "--random-state", "0"]
# A two-candidate AutoDEUQ search in this process (no cluster), one layer, five epochs.
SEARCH = ["--backend", "serial", "--max-evals", "2", "--max-epochs", "5", "--max-layers", "1",
          "--ensemble-size", "2", "--random-state", "0"]


def read(path):
    """A CSV file of numbers, every float exactly as written (Python's float() round-trips;
    pandas' parser need not)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return pd.DataFrame([[float(v) if v else np.nan for v in row] for row in rows[1:]],
                        columns=rows[0])


def run(capsys, *argv):
    """``autodeuq ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def fails(capsys, *argv, status=2):
    """Run a command that must fail; its one-line error message (without the prefix)."""
    code, _, err = run(capsys, *argv)
    assert code == status, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"autodeuq {argv[0]}: error: "), err
    return last.split(": error: ", 1)[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data(folder):
    """Two features and a heteroscedastic target, and a column of text."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-2, 2, 80), rng.uniform(-1, 1, 80)
    y = np.sin(a) + b + (0.1 + 0.2 * np.abs(b)) * rng.normal(size=80)
    path = folder / "data.csv"
    pd.DataFrame({"a": a, "b": b, "y": y, "city": ["Paris", "Oslo"] * 40}).to_csv(
        path, index=False)
    return path


@pytest.fixture(scope="module")
def numeric(folder, data):
    """The data without its text column."""
    path = folder / "numeric.csv"
    pd.read_csv(data).drop(columns="city").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def single_model(folder, numeric):
    out = folder / "single"
    assert cli.main(["fit", str(numeric), "--target", "y", "--out", str(out), *SINGLE]) == 0
    return out


@pytest.fixture(scope="module")
def search_model(folder, numeric):
    out = folder / "search"
    assert cli.main(["fit", str(numeric), "--target", "y", "--out", str(out), *SEARCH]) == 0
    return out


# -- fit -------------------------------------------------------------------------------------


def test_fit_saves_the_model_its_summary_and_the_search_results(search_model, numeric):
    assert sorted(p.name for p in search_model.iterdir()) == [
        "model.autodeuq", "search_results.csv", "summary.json"]
    est = autodeuq.load(search_model / "model.autodeuq")
    assert isinstance(est, AutoDEUQRegressor)
    assert list(est.feature_names_in_) == ["a", "b"]
    assert est.backend == "serial"
    assert est.max_evals == 2
    assert est.ensemble_size == 2
    results = pd.read_csv(search_model / "search_results.csv")
    assert len(results) == 2
    assert {"valid_nll", "status", "selected"} <= set(results.columns)
    summary = json.loads((search_model / "summary.json").read_text())
    assert summary["target"] == "y"
    assert summary["features"] == ["a", "b"]
    assert summary["n_rows"] == 80
    assert summary["estimator"] == "AutoDEUQRegressor"
    assert summary["validation_nll"] == pytest.approx(est.validation_nll_)
    assert summary["n_candidates"] == 2
    assert len(summary["members"]) == 2
    assert summary["command"].startswith("autodeuq fit ")


def test_fit_prints_a_short_summary(capsys, numeric, tmp_path):
    status, out, err = run(capsys, "fit", numeric, "--target", "y", "--out", tmp_path / "m",
                           *SINGLE)
    assert status == 0, err
    assert "80 rows" in out
    assert "target 'y', 2 features: a, b" in out
    assert "fitted GaussianMLPRegressor in" in out
    assert "validation NLL:" in out
    assert "model.autodeuq, summary.json" in out
    assert "autodeuq predict" in out
    assert "--x a" in out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.autodeuq",
                                                                  "summary.json"]


def test_fit_uses_only_the_chosen_features(capsys, data, tmp_path):
    status, _, err = run(capsys, "fit", data, "--target", "y", "--features", "b",
                           "--out", tmp_path / "m", *SINGLE)
    assert status == 0, err
    assert list(autodeuq.load(tmp_path / "m" / "model.autodeuq").feature_names_in_) == ["b"]


def test_fit_leaves_out_an_unnamed_index_column(capsys, numeric, tmp_path):
    indexed = tmp_path / "indexed.csv"
    pd.read_csv(numeric).to_csv(indexed)  # pandas writes the row index, with no header name
    status, _, err = run(capsys, "fit", indexed, "--target", "y", "--out", tmp_path / "m",
                         *SINGLE)
    assert status == 0, err
    assert "'Unnamed: 0' has no name" in err
    assert list(autodeuq.load(tmp_path / "m" / "model.autodeuq").feature_names_in_) == ["a",
                                                                                         "b"]


def test_fit_into_a_single_file(capsys, numeric, tmp_path):
    status, _, err = run(capsys, "fit", numeric, "--target", "y",
                           "--out", tmp_path / "one.autodeuq", *SINGLE)
    assert status == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["one.autodeuq"]
    assert isinstance(autodeuq.load(tmp_path / "one.autodeuq"), GaussianMLPRegressor)


def test_options_pass_through_to_the_estimator(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["fit", "d.csv", "--target", "y", "--out", "o",
                              "--scheduler", "tcp://head-node:8786", "--time-budget", "60",
                              "--max-evals", "7", "--n-jobs", "3", "--ensemble-size", "4",
                              "--checkpoint-dir", str(tmp_path), "--random-state", "5",
                              "--max-epochs", "300", "--max-layers", "2"])
    est = cli._make_estimator(args)
    assert isinstance(est, AutoDEUQRegressor)
    assert (est.scheduler, est.time_budget, est.max_evals, est.n_jobs, est.ensemble_size,
            est.checkpoint_dir, est.random_state, est.backend) == (
        "tcp://head-node:8786", 60.0, 7, 3, 4, str(tmp_path), 5, "dask")
    assert est.search_space["max_epochs"].high == 300
    assert "units_2" in est.search_space
    assert "units_3" not in est.search_space
    defaults = cli._make_estimator(parser.parse_args(["fit", "d.csv", "--target", "y",
                                                      "--out", "o", "--estimator", "nas"]))
    assert defaults.time_budget == cli.DEFAULT_TIME_BUDGET
    assert defaults.max_evals is None
    assert defaults.search_space is None
    assert defaults.scheduler is None
    assert defaults.verbose == 1  # the search's progress bar, or lines off a terminal
    for flag, verbose in (("-v", 2), ("--quiet", 0)):
        args = parser.parse_args(["fit", "d.csv", "--target", "y", "--out", "o", flag])
        assert cli._make_estimator(args).verbose == verbose


# -- predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["single_model", "search_model"])
def test_predict_writes_exactly_what_the_python_api_predicts(capsys, request, which, data,
                                                             tmp_path):
    model = request.getfixturevalue(which)
    out = tmp_path / "pred.csv"
    status, stdout, err = run(capsys, "predict", model, data, "--out", out)
    assert status == 0, err
    assert "wrote 80 predictions" in stdout
    table = read(out)
    assert list(table.columns) == ["mean", "total_std", "aleatoric_std", "epistemic_std",
                                   "lower_90", "upper_90"]
    est = autodeuq.load(model / "model.autodeuq")
    X = pd.read_csv(data)[["a", "b"]]
    expected = est.predict_uncertainty(X)
    for name in ("mean", "total_std", "aleatoric_std", "epistemic_std"):
        np.testing.assert_array_equal(table[name].to_numpy(), getattr(expected, name))
    lower, upper = est.predict_interval(X, coverage=0.9)
    np.testing.assert_array_equal(table["lower_90"].to_numpy(), lower)
    np.testing.assert_array_equal(table["upper_90"].to_numpy(), upper)


def test_predict_to_standard_output_reads_columns_by_name(capsys, search_model, numeric,
                                                          tmp_path):
    shuffled = tmp_path / "shuffled.csv"
    frame = pd.read_csv(numeric)
    frame[["y", "b", "a"]].assign(note="x").to_csv(shuffled, index=False)
    status, stdout, err = run(capsys, "predict", search_model / "model.autodeuq", shuffled,
                              "--coverage", "0.95")
    assert status == 0, err
    stdout_file = tmp_path / "stdout.csv"
    stdout_file.write_text(stdout)
    table = read(stdout_file)
    assert list(table.columns)[-2:] == ["lower_95", "upper_95"]
    est = autodeuq.load(search_model / "model.autodeuq")
    np.testing.assert_array_equal(table["mean"], est.predict(frame[["a", "b"]]))
    assert (table["epistemic_std"] > 0).all()  # an ensemble of two networks


def test_predict_a_model_fitted_without_column_names(capsys, numeric, tmp_path):
    frame = pd.read_csv(numeric)
    est = GaussianMLPRegressor(max_epochs=5, random_state=0)
    with cli._torch_threads(1):
        est.fit(frame[["a", "b"]].to_numpy(), frame["y"].to_numpy())
    est.save(tmp_path / "arrays.autodeuq")
    message = fails(capsys, "predict", tmp_path / "arrays.autodeuq", numeric)
    assert "fitted without column names, on 2 features" in message
    assert "--features" in message
    status, stdout, err = run(capsys, "predict", tmp_path / "arrays.autodeuq", numeric,
                              "--features", "a", "b")
    assert status == 0, err
    (tmp_path / "p.csv").write_text(stdout)
    np.testing.assert_array_equal(read(tmp_path / "p.csv")["mean"],
                                  est.predict(frame[["a", "b"]].to_numpy()))


# -- plot and demo ---------------------------------------------------------------------------


def test_plot_draws_the_uncertainty_against_a_feature(capsys, search_model, data, tmp_path):
    pytest.importorskip("matplotlib")
    message = fails(capsys, "plot", search_model, data, "--out", tmp_path / "f.png")
    assert message.startswith("--x is needed: the model has 2 features ('a', 'b')")
    status, out, err = run(capsys, "plot", search_model, data, "--x", "a",
                           "--out", tmp_path / "f.png")
    assert status == 0, err
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert f"figure saved to {tmp_path / 'f.png'}" in out


def test_plot_of_a_one_feature_model_reaches_beyond_the_data(capsys, data, tmp_path):
    pytest.importorskip("matplotlib")
    model = tmp_path / "m"
    assert run(capsys, "fit", data, "--target", "y", "--features", "a", "--out", model,
               *SINGLE)[0] == 0
    status, _, err = run(capsys, "plot", model, data, "--out", tmp_path / "f.svg",
                         "--margin", "0.5", "--coverage", "0.9")
    assert status == 0, err
    assert "<svg" in (tmp_path / "f.svg").read_text()


def test_plot_without_matplotlib_says_what_to_install(capsys, monkeypatch, single_model, data,
                                                      tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    message = fails(capsys, "plot", single_model, data, "--x", "a",
                    "--out", tmp_path / "f.png")
    assert "needs matplotlib" in message
    assert "pip install 'autodeuq[plot]'" in message
    assert not (tmp_path / "f.png").exists()


def test_demo_fits_autodeuq_on_the_toy_problem_and_saves_it(capsys, tmp_path):
    status, out, err = run(capsys, "demo", "--backend", "serial", "--max-evals", "2",
                           "--max-epochs", "5", "--out", tmp_path / "demo")
    assert status == 0, err
    assert "fitted in" in out
    assert "test set: NLL" in out
    assert "inside the training range" in out
    assert "outside it" in out
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert names == ["model.autodeuq", "search_results.csv", "summary.json", "train.csv"]
    train = pd.read_csv(tmp_path / "demo" / "train.csv")
    assert list(train.columns) == ["x", "y"]
    assert len(train) == 400
    est = autodeuq.load(tmp_path / "demo" / "model.autodeuq")
    assert list(est.feature_names_in_) == ["x"]
    assert est.time_budget == cli.DEMO_TIME_BUDGET


# -- errors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(folder):
    files = {
        "empty.csv": "",
        "header.csv": "a,b,y\n",
        "semicolons.csv": "a;b;y\n1;2;3\n",
        "holes.csv": "a,b,y\n1,2,3\n,2,3\n1,2,inf\n",
        "one_row.csv": "a,b,y\n1,2,3\n",
        "other.csv": "x,b\n1,2\n",
        "twice.csv": "x,y,y\n1,2,2\n2,3,3\n3,4,4\n",
        "booleans.csv": "a,b,y\n1,2,True\n2,1,False\n3,3,True\n",
        "junk.autodeuq": "not a model",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "empty_dir").mkdir()
    return folder


@pytest.mark.parametrize(("argv", "expected"), [
    (["fit", "{f}/missing.csv", "--target", "y", "--out", "{f}/o"],
     ["DATA '{f}/missing.csv': no such file"]),
    (["fit", "{f}/empty_dir", "--target", "y", "--out", "{f}/o"], ["is a directory"]),
    (["fit", "{f}/empty.csv", "--target", "y", "--out", "{f}/o"],
     ["is empty; it needs a header row"]),
    (["fit", "{f}/header.csv", "--target", "y", "--out", "{f}/o"],
     ["has a header row but no data rows"]),
    (["fit", "{data}", "--target", "Y", "--out", "{f}/o"],
     ["--target 'Y': no such column", "Did you mean 'y'?", "'a', 'b', 'y', 'city'"]),
    (["fit", "{f}/semicolons.csv", "--target", "y", "--out", "{f}/o"],
     ["no such column", "pass --sep ';'"]),
    (["fit", "{data}", "--target", "y", "--out", "{f}/o"],
     ["feature column 'city'", "is not numeric ('city' has 'Paris')", "--features COL"]),
    (["fit", "{data}", "--target", "city", "--features", "a", "--out", "{f}/o"],
     ["target column 'city'", "not numeric", "numeric --target"]),
    (["fit", "{f}/holes.csv", "--target", "y", "--out", "{f}/o"],
     ["missing or infinite values in columns 'a' (1, on line 3); 'y' (1, on line 4)"]),
    (["fit", "{f}/twice.csv", "--target", "y", "--out", "{f}/o"],  # pandas: 'y', 'y.1'
     ["names the column 'y' 2 times (columns 2, 3 of its header row)", "Rename"]),
    (["fit", "{f}/booleans.csv", "--target", "y", "--out", "{f}/o"],  # as the API's fit
     ["--target 'y'", "holds booleans (True and False), a classification target", "0 and 1"]),
    (["fit", "{data}", "--target", "y", "--features", "a", "y", "--out", "{f}/o"],
     ["--features names the target column 'y'"]),
    (["fit", "{data}", "--target", "y", "--features", "a", "B", "--out", "{f}/o"],
     ["--features: no column 'B'", "Did you mean 'b'?"]),
    (["fit", "{data}", "--target", "y", "--features", "a", "--out", "{data}"],
     ["--out '{data}' is a file"]),
    (["fit", "{data}", "--target", "y", "--features", "a", "--out", "{f}/o", "--estimator",
      "gaussian-mlp", "--scheduler", "tcp://h:1", "--ensemble-size", "3"],
     ["--scheduler, --ensemble-size do not apply to --estimator gaussian-mlp"]),
    (["predict", "{f}/nowhere", "{data}"], ["MODEL '{f}/nowhere': no such file or directory"]),
    (["predict", "{f}/empty_dir", "{data}"],
     ["MODEL '{f}/empty_dir': the directory holds no model.autodeuq"]),
    (["predict", "{f}/junk.autodeuq", "{data}"],
     ["MODEL: cannot load", "not an autodeuq model file"]),
    (["predict", "{single}", "{f}/other.csv"],
     ["lacks the model's feature column 'a'", "fitted on 'a', 'b'"]),
    (["predict", "{single}", "{f}/missing.csv"], ["DATA '{f}/missing.csv': no such file"]),
    (["predict", "{single}", "{f}/holes.csv"],
     ["missing or infinite values in column 'a' (1, on line 3)"]),
    (["predict", "{single}", "{data}", "--out", "{f}/empty_dir"],
     ["--out '{f}/empty_dir' is a directory"]),
    (["predict", "{single}", "{data}", "--out", "{f}/no/such/dir.csv"],
     ["the directory '{f}/no/such' does not exist"]),
    (["plot", "{single}", "{data}", "--x", "c"], ["--x 'c' is not one of the model's features"]),
])
def test_errors_are_one_line_naming_the_argument_and_the_fix(capsys, bad_files, data,
                                                             single_model, argv, expected):
    names = {"f": bad_files, "data": data, "single": single_model}
    message = fails(capsys, *(a.format(**names) for a in argv))
    for part in expected:
        assert part.format(**names) in message
    assert not (bad_files / "o").exists()  # nothing created before the input was checked


@pytest.mark.parametrize(("argv", "expected"), [
    (["fit", "d.csv", "--out", "o"], "the following arguments are required: --target"),
    (["fit", "d.csv", "--target", "y", "--out", "o", "--time-budget", "-5"],
     "argument --time-budget: must be a number > 0; got '-5'"),
    (["fit", "d.csv", "--target", "y", "--out", "o", "--estimator", "svm"],
     "argument --estimator: invalid choice: 'svm'"),
    (["predict", "m", "d.csv", "--coverage", "1.5"],
     "argument --coverage: must be a probability in (0, 1)"),
    ([], "the following arguments are required: COMMAND"),
])
def test_command_line_mistakes_exit_with_status_2(capsys, argv, expected):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert expected in err
    assert "usage: autodeuq" in err


def test_a_file_that_cannot_be_written_is_an_error_naming_it(capsys, monkeypatch, data,
                                                             single_model, tmp_path):
    # As a full disk or a read-only place does (running as root, permissions do not).
    import pandas as pd

    def refuse(self, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)
    out = tmp_path / "p.csv"
    message = fails(capsys, "predict", single_model, data, "--out", out, status=1)
    assert message.startswith(f"--out: cannot write {str(out)!r} (")
    assert "Permission denied" in message
    out = tmp_path / "m"
    message = fails(capsys, "fit", data, "--target", "y", "--features", "a", "--out", out,
                    *SEARCH, status=1)
    assert f"cannot write {str(out / 'search_results.csv')!r}" in message
    assert (out / "model.autodeuq").is_file()  # what was trained is kept


def test_a_failed_fit_exits_with_status_1_and_verbose_shows_the_traceback(capsys, bad_files):
    argv = ["fit", bad_files / "one_row.csv", "--target", "y", "--out", bad_files / "o1",
            *SINGLE]
    message = fails(capsys, *argv, status=1)
    assert message.startswith("fitting GaussianMLPRegressor failed: X has 1 sample(s)")
    assert not (bad_files / "o1").exists()  # the directory made for it is removed
    status, _, err = run(capsys, *argv, "-v")
    assert status == 1
    assert "Traceback" in err


def test_an_interrupt_exits_with_status_130(capsys, monkeypatch, numeric, tmp_path):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_fit", interrupted)
    status, _, err = run(capsys, "fit", numeric, "--target", "y", "--out", tmp_path,
                         "--checkpoint-dir", tmp_path / "journal")
    assert status == 130
    assert err.strip() == (f"autodeuq fit: interrupted; fit again with --checkpoint-dir "
                           f"{tmp_path / 'journal'} to resume")


# -- help and the entry points ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "predict", "plot", "demo"])
def test_every_command_has_help_with_examples(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0
    assert out.startswith(f"usage: autodeuq {command}")
    assert f"autodeuq {command} " in out
    assert "examples:" in out


def test_python_m_autodeuq_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "autodeuq", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: autodeuq")
    for command in ("fit", "predict", "plot", "demo"):
        assert f"    {command} " in done.stdout


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "autodeuq"
    if not script.exists():
        pytest.skip("the package is not installed with its console script (pip install -e .)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"autodeuq {autodeuq.__version__}"
