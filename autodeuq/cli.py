"""The ``autodeuq`` command: fit a model on a CSV file, predict with it, plot its uncertainty.

::

    autodeuq fit data.csv --target y --out model        # search, select an ensemble, save
    autodeuq predict model new.csv --out predictions.csv  # mean and the three stds
    autodeuq plot model data.csv --out uncertainty.png    # a figure of the uncertainty
    autodeuq demo                                         # AutoDEUQ on the tutorial's toy problem

``python -m autodeuq`` is the same command. Every subcommand has ``--help``.

A CSV file has a header row naming the columns, then one row per sample. ``fit`` learns the
``--target`` column from all the other columns, which must be numeric (or from
``--features``), and saves into the ``--out`` directory: ``model.autodeuq`` (the safe format
of :func:`autodeuq.load`, no pickle), ``summary.json`` and, after a search,
``search_results.csv``. ``predict`` and ``plot`` read the
feature columns by the names the model was fitted on; other columns (the target) are ignored.

Exit status: 0 done; 1 the fit or the prediction failed; 2 a wrong command line or input (a
missing file or column, non-numeric data, a directory without a model); 130 interrupted.
"""

import argparse
import contextlib
import csv
import difflib
import json
import logging
import math
import os
import re
import shlex
import sys
import textwrap
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from . import __version__

__all__ = ["main"]

PROG = "autodeuq"
MODEL_FILE = "model.autodeuq"
SUMMARY_FILE = "summary.json"
RESULTS_FILE = "search_results.csv"

#: --estimator choices and the classes they make.
ESTIMATORS = {
    "autodeuq": "AutoDEUQRegressor",
    "nas": "NASRegressor",
    "deep-ensemble": "DeepEnsembleRegressor",
    "gaussian-mlp": "GaussianMLPRegressor",
}
SEARCHES = ("autodeuq", "nas")
#: Seconds of search and refit when --time-budget is not given.
DEFAULT_TIME_BUDGET = 300.0
DEMO_TIME_BUDGET = 60.0

# A column pandas names itself when the header cell is empty, e.g. a saved row index.
_UNNAMED = re.compile(r"Unnamed: \d+")
# The exceptions a fit or a prediction raises on purpose (bad data, a failed search, a
# scheduler that cannot be reached): one line on stderr, not a traceback.
_FAILURES = (ValueError, TypeError, OSError, RuntimeError, FloatingPointError, TimeoutError)


class CommandError(Exception):
    """A one-line error for stderr, and the exit status (2: the input; 1: the run failed)."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _quote(names, limit=12):
    names = [repr(str(n)) for n in names]
    if len(names) > limit:
        names = [*names[:limit], f"... ({len(names) - limit} more)"]
    return ", ".join(names)


# -- argument types --------------------------------------------------------------------------


def _argument_type(parse, accept, rule):
    """An argparse type: ``parse`` the text, keep it if ``accept(value)``, else say ``rule``."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}; got {text!r}")
        return value

    return convert


_positive_float = _argument_type(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
_positive_int = _argument_type(int, lambda v: v >= 1, "a whole number >= 1")
_n_jobs = _argument_type(int, lambda v: v >= 1 or v == -1,
                         "a whole number >= 1, or -1 for every core")
_coverage = _argument_type(float, lambda v: 0.0 < v < 1.0, "a probability in (0, 1), e.g. 0.9")
_fraction = _argument_type(float, lambda v: 0.0 <= v <= 10.0, "a number in [0, 10], e.g. 0.25")


# -- reading CSV files -----------------------------------------------------------------------


def _read_csv(path, what, sep=","):
    """The CSV file at ``path`` as a DataFrame; ``what`` names the argument in messages."""
    import pandas as pd

    file = Path(path)
    if not file.exists():
        raise CommandError(f"{what} {str(path)!r}: no such file. Check the path (relative to "
                           f"{os.getcwd()}).")
    if file.is_dir():
        raise CommandError(f"{what} {str(path)!r} is a directory; pass a CSV file.")
    try:
        frame = pd.read_csv(file, sep=sep)
    except pd.errors.EmptyDataError:
        raise CommandError(f"{what} {str(path)!r} is empty; it needs a header row naming the "
                           "columns, then one row per sample.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise CommandError(f"{what} {str(path)!r} could not be read as CSV "
                           f"({_one_line(exc)}). It needs a header row, then one row per "
                           "sample, the same number of comma-separated values in each "
                           "(--sep for another separator).") from exc
    _check_unique_names(file, what, path, sep)
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise CommandError(f"{what} {str(path)!r} has a header row but no data rows; add one "
                           "row per sample.")
    return frame


def _check_unique_names(file, what, path, sep):
    """Refuse a header row that names a column twice: pandas renames the second ('y.1'), and
    a copy of the target would pass for a feature."""
    if len(sep) != 1:
        return  # a regular expression: pandas' own parser reads such a header
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    seen = {}
    for number, name in enumerate(header, start=1):
        seen.setdefault(name, []).append(number)
    twice = {name: numbers for name, numbers in seen.items() if name and len(numbers) > 1}
    if twice:
        name, numbers = next(iter(twice.items()))
        raise CommandError(f"{what} {str(path)!r} names the column {name!r} "
                           f"{len(numbers)} times (columns {', '.join(map(str, numbers))} of "
                           "its header row); every column needs a name of its own. Rename or "
                           "remove the copies.")


def _columns_hint(frame, name):
    """What the file's columns are, and the one the user probably meant."""
    columns = list(frame.columns)
    hint = f"Its columns are: {_quote(columns)}."
    folded = [c for c in columns if c.strip().lower() == name.strip().lower()]
    close = folded or difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    if close:
        hint = f"Did you mean {close[0]!r}? " + hint
    if len(columns) == 1 and any(s in columns[0] for s in (";", "\t", "|")):
        sep = next(s for s in (";", "\t", "|") if s in columns[0])
        hint += (f" The file seems to be separated by {sep!r}, not commas: pass "
                 f"--sep {sep!r}.")
    return hint


def _numeric(frame, columns, path, role):
    """``frame[columns]`` as float64, or an error naming the non-numeric columns."""
    from pandas.api.types import is_numeric_dtype

    bad = [c for c in columns if not is_numeric_dtype(frame[c])]
    if bad:
        examples = []
        for c in bad[:3]:
            values = frame[c].dropna()
            text = values[~values.astype(str).str.fullmatch(r"\s*[-+]?[\d.eE]+\s*")]
            if len(text):
                examples.append(f"{c!r} has {str(text.iloc[0])!r}")
        fix = ("Choose numeric feature columns with --features COL ..., or encode those as "
               "numbers first" if role == "feature" else "Pick a numeric --target column")
        raise CommandError(
            f"{role} column{'s' if len(bad) > 1 else ''} {_quote(bad)} of {str(path)!r} "
            f"{'are' if len(bad) > 1 else 'is'} not numeric"
            f"{' (' + '; '.join(examples) + ')' if examples else ''}; autodeuq needs "
            f"numbers. {fix}.")
    return frame[list(columns)].to_numpy(dtype=np.float64)


def _check_finite(frame, columns, path):
    """An error naming every column of ``columns`` with missing or infinite values."""
    values = frame[list(columns)].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return
    rows, cols = np.nonzero(~finite)
    parts = []
    for j in np.unique(cols)[:5]:
        where = rows[cols == j]
        lines = ", ".join(str(int(r) + 2) for r in where[:5])  # line 1 is the header
        parts.append(f"{columns[j]!r} ({len(where)}, on line{'s' if len(where) > 1 else ''} "
                     f"{lines}{', ...' if len(where) > 5 else ''})")
    raise CommandError(
        f"{str(path)!r} has missing or infinite values in column"
        f"{'s' if len(parts) > 1 else ''} {'; '.join(parts)}. Fill in or remove those rows "
        "first.")


def _training_data(args):
    """X (a DataFrame with the feature names), y, the feature names and the ignored columns."""
    import pandas as pd

    frame = _read_csv(args.data, "DATA", args.sep)
    path = args.data
    if args.target not in frame.columns:
        raise CommandError(f"--target {args.target!r}: no such column in {str(path)!r}. "
                           f"{_columns_hint(frame, args.target)}")
    ignored = []
    if args.features:
        features = list(dict.fromkeys(args.features))
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise CommandError(f"--features: no column {_quote(missing)} in {str(path)!r}. "
                               f"{_columns_hint(frame, missing[0])}")
        if args.target in features:
            raise CommandError(f"--features names the target column {args.target!r}; leave "
                               "it out (a model cannot use what it predicts).")
    else:
        features = [c for c in frame.columns if c != args.target]
        ignored = [c for c in features if _UNNAMED.fullmatch(c)]
        features = [c for c in features if c not in ignored]
        if not features:
            raise CommandError(f"DATA {str(path)!r} has no feature column besides the target "
                               f"{args.target!r}; add the columns to predict it from.")
    if frame[args.target].dtype == bool:
        raise CommandError(f"--target {args.target!r} of {str(path)!r} holds booleans (True and "
                           "False), a classification target; autodeuq's regressors need a "
                           "real-valued target. Write it as the numbers 0 and 1 to model it "
                           "as a number.")
    y = _numeric(frame, [args.target], path, "target")[:, 0]
    X = pd.DataFrame(_numeric(frame, features, path, "feature"), columns=features)
    _check_finite(frame, [*features, args.target], path)
    return X, y, features, ignored


def _model_features(est, frame, path, summary, chosen=None):
    """The columns of ``frame`` the model predicts from, as float64 with the fitted names."""
    import pandas as pd

    names = getattr(est, "feature_names_in_", None)
    if chosen:
        features = list(chosen)
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise CommandError(f"--features: no column {_quote(missing)} in {str(path)!r}. "
                               f"{_columns_hint(frame, missing[0])}")
        if names is not None and features != [str(n) for n in names]:
            raise CommandError(f"--features: the model was fitted on {_quote(names)}, in that "
                               "order; leave --features out to use them.")
    elif names is not None:
        features = [str(n) for n in names]
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise CommandError(
                f"DATA {str(path)!r} lacks the model's feature column"
                f"{'s' if len(missing) > 1 else ''} {_quote(missing)}: the model was fitted on "
                f"{_quote(features)}. {_columns_hint(frame, missing[0])}")
    else:
        target = summary.get("target")
        features = [c for c in frame.columns if c != target and not _UNNAMED.fullmatch(c)]
    n = est.n_features_in_
    if len(features) != n:
        raise CommandError(
            f"the model was fitted without column names, on {n} feature"
            f"{'s' if n > 1 else ''}; DATA {str(path)!r} has {len(features)} columns "
            f"({_quote(features)}). Choose its {n} feature columns, in the order of fitting, "
            "with --features COL ...")
    values = _numeric(frame, features, path, "feature")
    _check_finite(frame, features, path)
    if names is None:
        return values, features
    return pd.DataFrame(values, columns=features), features


# -- the model directory ---------------------------------------------------------------------


def _load_model(model):
    """(estimator, summary dict, model file) from the --out directory of fit or a model file."""
    from . import load
    from .exceptions import PersistenceError

    path = Path(model)
    summary = {}
    if not path.exists():
        raise CommandError(f"MODEL {model!r}: no such file or directory. Pass the --out "
                           f"directory of `autodeuq fit` (or the {MODEL_FILE} file in it).")
    if path.is_dir():
        file = path / MODEL_FILE
        if not file.is_file():
            raise CommandError(f"MODEL {model!r}: the directory holds no {MODEL_FILE}. Pass the "
                               "--out directory of `autodeuq fit`, or a file saved with "
                               "est.save(path).")
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            summary = {}
    else:
        file = path
    try:
        est = load(file)
    except PersistenceError as exc:
        raise CommandError(f"MODEL: {_one_line(exc)}") from exc
    except OSError as exc:
        raise CommandError(f"MODEL {model!r}: cannot read it ({_one_line(exc)}).") from exc
    return est, summary, file


def _prepare_out(out):
    """The model file and the directory (None for a single .autodeuq file) to save into."""
    path = Path(out)
    if path.suffix == ".autodeuq" and not path.is_dir():
        if not path.parent.is_dir():
            raise CommandError(f"--out {out!r}: the directory {str(path.parent)!r} does not "
                               "exist; create it first.")
        return path, None
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out {out!r} is a file; --out names a directory for the model "
                           f"(created if needed), or a file ending in .autodeuq.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out {out!r}: cannot create the directory ({_one_line(exc)}). "
                           "Choose a writable place.") from exc
    if not os.access(path, os.W_OK):
        raise CommandError(f"--out {out!r}: the directory is not writable; choose another.")
    return path / MODEL_FILE, path


def _save(est, model_file, folder, summary):
    """Save the model, and in a directory the summary and the search's results too."""
    try:
        est.save(model_file)
    except OSError as exc:
        raise CommandError(f"--out: cannot write {str(model_file)!r} ({_one_line(exc)}).",
                           status=1) from exc
    written = [model_file.name]
    if folder is None:
        return written
    results = folder / RESULTS_FILE
    if getattr(est, "search_results_", None) is not None:
        _write("--out", results, lambda: est.search_results_.to_csv(results, index=False))
        written.append(RESULTS_FILE)
    elif results.exists():  # left from an earlier fit into the same directory
        _write("--out", results, results.unlink)
    text = json.dumps(summary, indent=2, default=str) + "\n"
    _write("--out", folder / SUMMARY_FILE,
           lambda: (folder / SUMMARY_FILE).write_text(text, encoding="utf-8"))
    written.append(SUMMARY_FILE)
    return written


def _write(what, path, write):
    """Run ``write()``, which writes ``path``; an OS error is a :class:`CommandError` naming
    the argument and the file (the model is already saved where fit writes one)."""
    try:
        write()
    except OSError as exc:
        raise CommandError(f"{what}: cannot write {str(path)!r} ({_one_line(exc)}). Choose a "
                           "place you can write to.", status=1) from exc


# -- fit -------------------------------------------------------------------------------------


def _search_space(max_layers, max_epochs):
    """The default AutoDEUQ space, with at most ``max_layers`` layers and ``max_epochs``."""
    from .space import Int, SearchSpace, default_space

    if max_layers is None and max_epochs is None:
        return None
    space = default_space(max_layers=10 if max_layers is None else max_layers)
    if max_epochs is None:
        return space
    low = space["max_epochs"].low
    epochs = Int(low, max_epochs, log=True) if max_epochs > low else max_epochs
    return SearchSpace({**space.dimensions, "max_epochs": epochs},
                       conditions=dict(space.conditions))


def _progress(args):
    """The search estimators' ``verbose``: a progress bar (or lines off a terminal); with
    --verbose a line per trial too; none with --quiet."""
    return 0 if args.quiet else 2 if args.verbose else 1


def _make_estimator(args):
    from . import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor, NASRegressor

    kind = args.estimator
    search_only = {"--time-budget": args.time_budget, "--max-evals": args.max_evals,
                   "--scheduler": args.scheduler, "--checkpoint-dir": args.checkpoint_dir,
                   "--backend": args.backend, "--max-layers": args.max_layers}
    unused = [] if kind in SEARCHES else [k for k, v in search_only.items() if v is not None]
    if kind in ("nas", "gaussian-mlp") and args.ensemble_size is not None:
        unused.append("--ensemble-size")
    if kind == "gaussian-mlp" and args.n_jobs is not None:
        unused.append("--n-jobs")
    if unused:
        raise CommandError(f"{', '.join(unused)} do{'es' if len(unused) == 1 else ''} not apply "
                           f"to --estimator {kind}; leave {'it' if len(unused) == 1 else 'them'} "
                           "out, or use --estimator autodeuq.")
    seed = args.random_state
    network = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    if kind == "gaussian-mlp":
        return GaussianMLPRegressor(random_state=seed, **network)
    if kind == "deep-ensemble":
        return DeepEnsembleRegressor(GaussianMLPRegressor(**network), n_members=args.ensemble_size,
                                     n_jobs=args.n_jobs, random_state=seed)
    search = {
        "search_space": _search_space(args.max_layers, args.max_epochs),
        "time_budget": DEFAULT_TIME_BUDGET if args.time_budget is None else args.time_budget,
        "max_evals": args.max_evals,
        "n_jobs": args.n_jobs,
        "backend": args.backend or "dask",
        "scheduler": args.scheduler,
        "checkpoint_dir": args.checkpoint_dir,
        "random_state": seed,
        "verbose": _progress(args),
    }
    if kind == "nas":
        return NASRegressor(**search)
    return AutoDEUQRegressor(**search, ensemble_size=args.ensemble_size or 5)


@contextlib.contextmanager
def _torch_threads(n):
    """Train in this process on ``n`` torch threads; torch's own setting is restored after.

    The networks of a search are small: on a busy machine one thread trained a 120-row problem
    20 times faster than two. Dask workers set their own threads.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _where(est):
    if getattr(est, "backend", "dask") == "serial":
        return "in this process"
    if getattr(est, "scheduler", None) is not None:
        return f"on the Dask cluster at {est.scheduler}"
    return "on an embedded Dask cluster"


def _describe(est, seconds):
    """Summary lines and the summary.json fields of a fitted estimator."""
    name = type(est).__name__
    info = {"estimator": name, "fit_seconds": round(seconds, 3)}
    lines = []
    table = getattr(est, "search_results_", None)
    if table is not None:
        n_ok = int((table["status"] == "success").sum())
        info.update(n_candidates=len(table), n_trained=n_ok,
                    search_seconds=round(float(est.search_time_), 3))
        lines.append(f"search: {len(table)} candidates in {est.search_time_:.1f} s "
                     f"({n_ok} trained successfully)")
    if hasattr(est, "members_"):
        configs = len({m["trial_id"] for m in est.members_})
        info["members"] = est.members_
        info["validation_nll"] = float(est.validation_nll_)
        lines.append(f"ensemble: {len(est.members_)} networks from {configs} searched "
                     f"configuration{'s' if configs > 1 else ''}")
        lines.append(f"validation NLL: {est.validation_nll_:.4f} (the selected ensemble, on the "
                     "held-out part; lower is better)")
    elif hasattr(est, "best_score_"):
        info["validation_nll"] = -float(est.best_score_)
        info["best_config"] = est.best_config_
        lines.append(f"validation NLL: {-est.best_score_:.4f} (the best network, on the "
                     "held-out part; lower is better)")
    elif hasattr(est, "estimators_"):
        nlls = [m.validation_nll_ for m in est.estimators_ if m.validation_nll_ is not None]
        info["members"] = len(est.estimators_)
        lines.append(f"ensemble: {len(est.estimators_)} networks from random initializations")
        if nlls:
            info["member_validation_nll"] = [float(v) for v in nlls]
            lines.append(f"validation NLL: {np.mean(nlls):.4f} (mean of the members', each "
                         "alone on its own held-out tenth; lower is better)")
    elif getattr(est, "validation_nll_", None) is not None:
        info["validation_nll"] = float(est.validation_nll_)
        lines.append(f"validation NLL: {est.validation_nll_:.4f} (on the held-out tenth; lower "
                     "is better)")
    return lines, info


def _fit(args):
    X, y, features, ignored = _training_data(args)
    est = _make_estimator(args)
    existed = Path(args.out).exists()
    model_file, folder = _prepare_out(args.out)
    for column in ignored:
        print(f"note: column {column!r} has no name in the header (a saved row index?) and is "
              "not used; name it and pass --features to use it.", file=sys.stderr)
    shown = ", ".join(features) if len(features) <= 8 else f"{', '.join(features[:8])}, ..."
    print(f"data: {len(y)} rows of {args.data}; target {args.target!r}, {len(features)} "
          f"feature{'s' if len(features) > 1 else ''}: {shown}")
    name = type(est).__name__
    if args.estimator in SEARCHES:
        limit = f"up to {est.time_budget:g} s"
        if est.max_evals is not None:
            limit += f" or {est.max_evals} candidate{'s' if est.max_evals > 1 else ''}"
        print(f"fitting {name} {_where(est)}, {limit} in all: a search, then the "
              "selection trained on all the data ...", flush=True)
    else:
        print(f"fitting {name} ...", flush=True)
    start = time.monotonic()
    try:
        with _torch_threads(args.threads):
            est.fit(X, y)
    except _FAILURES as exc:
        if folder is not None and not existed and not any(folder.iterdir()):
            folder.rmdir()  # created for this fit: leave nothing behind
        resume = (f" Fitting again with --checkpoint-dir {args.checkpoint_dir} resumes the "
                  "search." if args.checkpoint_dir else "")
        raise CommandError(f"fitting {name} failed: {_one_line(exc)}{resume}", status=1) from exc
    seconds = time.monotonic() - start
    lines, info = _describe(est, seconds)
    summary = {
        "autodeuq_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([PROG, *args.argv]),
        "data": str(args.data),
        "n_rows": len(y),
        "target": args.target,
        "features": features,
        **info,
    }
    written = _save(est, model_file, folder, summary)
    print(f"fitted {name} in {seconds:.1f} s")
    for line in lines:
        print("  " + line)
    where = model_file.parent if folder is not None else model_file
    print(f"saved to {where}{os.sep if folder is not None else ''}"
          f"{': ' + ', '.join(written) if folder is not None else ''}")
    x = f" --x {shlex.quote(features[0])}" if len(features) > 1 else ""
    model, data = shlex.quote(str(where)), shlex.quote(str(args.data))
    print(f"next: {PROG} predict {model} NEW.csv --out predictions.csv\n"
          f"      {PROG} plot {model} {data}{x} --out uncertainty.png")


# -- predict ---------------------------------------------------------------------------------


def _check_out_file(out, what="--out"):
    if out is None:
        return None
    path = Path(out)
    if path.is_dir():
        raise CommandError(f"{what} {out!r} is a directory; give a file name, e.g. "
                           f"{str(path / 'predictions.csv')!r}.")
    if not path.parent.is_dir():
        raise CommandError(f"{what} {out!r}: the directory {str(path.parent)!r} does not "
                           "exist; create it first.")
    return path


def _level_name(coverage):
    return f"{coverage * 100:g}"


def _predict(args):
    import pandas as pd

    out = _check_out_file(args.out)
    est, summary, _ = _load_model(args.model)
    frame = _read_csv(args.data, "DATA", args.sep)
    X, _ = _model_features(est, frame, args.data, summary, args.features)
    try:
        unc = est.predict_uncertainty(X)
        lower, upper = est.predict_interval(X, coverage=args.coverage)
    except _FAILURES as exc:
        raise CommandError(f"predicting failed: {_one_line(exc)}", status=1) from exc
    level = _level_name(args.coverage)
    table = pd.DataFrame({
        "mean": unc.mean,
        "total_std": unc.total_std,
        "aleatoric_std": unc.aleatoric_std,
        "epistemic_std": unc.epistemic_std,
        f"lower_{level}": lower,
        f"upper_{level}": upper,
    })
    if out is None:
        table.to_csv(sys.stdout, index=False)
        return
    _write("--out", out, lambda: table.to_csv(out, index=False))
    print(f"wrote {len(table)} predictions to {out}: {', '.join(table.columns)} "
          f"(std in the units of the target; total_std**2 = aleatoric_std**2 + "
          f"epistemic_std**2; the {level}% interval)")


# -- plot ------------------------------------------------------------------------------------


def _plot(args):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CommandError("plot needs matplotlib, which is not installed. Install it with: "
                           "pip install 'autodeuq[plot]'") from None
    out = _check_out_file(args.out)
    est, summary, _ = _load_model(args.model)
    frame = _read_csv(args.data, "DATA", args.sep)
    X, features = _model_features(est, frame, args.data, summary, args.features)
    x_name = args.x
    if x_name is None:
        if len(features) > 1:
            raise CommandError(f"--x is needed: the model has {len(features)} features "
                               f"({_quote(features)}); pick the one to plot against.")
        x_name = features[0]
    elif x_name not in features:
        raise CommandError(f"--x {x_name!r} is not one of the model's features "
                           f"({_quote(features)}).")
    column = features.index(x_name)
    target = args.target or summary.get("target")
    y = None
    if target is not None and target in frame.columns:
        y = _numeric(frame, [target], args.data, "target")[:, 0]
        _check_finite(frame, [target], args.data)
    elif args.target is not None:
        raise CommandError(f"--target {args.target!r}: no such column in {str(args.data)!r}. "
                           f"{_columns_hint(frame, args.target)}")

    from .plotting import PredictiveBandsDisplay

    grid = len(features) == 1  # the model's curve beyond the data, where the epistemic part shows
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    try:
        display = PredictiveBandsDisplay.from_estimator(
            est, X, y, feature=column, grid=grid, margin=args.margin, target_name=target,
            ax=axes, coverage=args.coverage,
            gap_kwargs={"label": f"no rows of {Path(args.data).name}"})
    except _FAILURES as exc:
        raise CommandError(f"predicting failed: {_one_line(exc)}", status=1) from exc
    n_members = len(getattr(est, "members_", getattr(est, "estimators_", [None])))
    what = f"{type(est).__name__}" + (f", {n_members} networks" if n_members > 1 else "")
    display.ax_.set_title(f"{what}: predicted {target or 'value'} against {x_name}"
                          + ("" if grid else "\n(each row of the data; other features vary)"))
    display.ax_std_.set_xlabel(x_name)
    path = out or Path("uncertainty.png")
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--out {str(path)!r}: cannot write the figure "
                           f"({_one_line(exc)}). Use a .png, .pdf or .svg name in a writable "
                           "place.") from exc
    print(f"figure saved to {path}")


# -- demo ------------------------------------------------------------------------------------


def _demo(args):
    import pandas as pd

    from . import AutoDEUQRegressor
    from .datasets import make_tutorial_regression
    from .uncertainty import regression_report

    model_file, folder = _prepare_out(args.out) if args.out is not None else (None, None)
    X, y, X_test, y_test = make_tutorial_regression(random_state=args.random_state)
    est = AutoDEUQRegressor(
        search_space=_search_space(3, args.max_epochs), time_budget=args.time_budget,
        max_evals=args.max_evals, n_jobs=args.n_jobs, backend=args.backend,
        scheduler=args.scheduler, ensemble_size=5, random_state=args.random_state,
        verbose=_progress(args))
    print(f"y = 2 sin(x) + noise: {len(y)} training points on two islands, [-30, -20] (noise "
          f"sd 0.5) and [20, 30] (noise sd 1.0); {len(y_test)} test points on [-40, 40].\n"
          f"fitting AutoDEUQRegressor: searching for up to {args.time_budget:g} s "
          f"{_where(est)}, then training the selected ensemble on all the data ...", flush=True)
    start = time.monotonic()
    train = pd.DataFrame({"x": X[:, 0]})
    try:
        with _torch_threads(args.threads):
            est.fit(train, y)
    except _FAILURES as exc:
        raise CommandError(f"fitting AutoDEUQRegressor failed: {_one_line(exc)}",
                           status=1) from exc
    seconds = time.monotonic() - start
    lines, info = _describe(est, seconds)
    print(f"fitted in {seconds:.1f} s")
    for line in lines:
        print("  " + line)
    dist = est.predict_distribution(pd.DataFrame({"x": X_test[:, 0]}))
    report = regression_report(y_test, dist, level=0.9)
    unc = dist.uncertainty()
    x = X_test[:, 0]
    inside = ((x >= -30) & (x <= -20)) | ((x >= 20) & (x <= 30))
    print(f"\ntest set: NLL {report['nll']:.3f}, RMSE {report['rmse']:.3f}, 90% interval "
          f"coverage {report['coverage']:.2f}")
    print(f"\n{'mean std':<24}{'aleatoric':>11}{'epistemic':>11}")
    for label, mask in (("inside the training range", inside),
                        ("outside it", ~inside)):
        print(f"{label:<24}{unc.aleatoric_std[mask].mean():>11.3f}"
              f"{unc.epistemic_std[mask].mean():>11.3f}")
    print("The epistemic part (lack of data) grows away from the data; the aleatoric part "
          "(noise) is the model's estimate of the noise.")
    if folder is None and model_file is None:
        print(f"\n`{PROG} demo --out DIR` saves the model and the data, to try "
              f"`{PROG} predict` and `{PROG} plot` on.")
        return
    summary = {"autodeuq_version": __version__, "command": shlex.join([PROG, *args.argv]),
               "data": "tutorial (autodeuq.datasets.make_tutorial_regression)",
               "n_rows": len(y), "target": "y", "features": ["x"], **info}
    written = _save(est, model_file, folder, summary)
    if folder is None:
        print(f"\nsaved the model to {model_file}")
        return
    pd.DataFrame({"x": X[:, 0], "y": y}).to_csv(folder / "train.csv", index=False)
    written.append("train.csv")
    print(f"\nsaved to {folder}{os.sep}: {', '.join(written)}\n"
          f"next: {PROG} plot {shlex.quote(str(folder))} "
          f"{shlex.quote(str(folder / 'train.csv'))} --out uncertainty.png")


# -- the parser ------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps the description (the epilogs keep their own lines)."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return textwrap.fill(text, min(width, 88), initial_indent=indent,
                             subsequent_indent=indent)


def _data_options(parser):
    parser.add_argument("--sep", default=",", metavar="CHAR",
                        help="the CSV file's separator (default: ',')")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="more messages (a line per searched candidate, Dask's own) and the "
                             "traceback of an error")


FIT_EPILOG = """\
examples:
  autodeuq fit data.csv --target y --out model
  autodeuq fit data.csv --target price --features area rooms --time-budget 600 --out model
  autodeuq fit data.csv --target y --scheduler tcp://head-node:8786 --out model
  autodeuq fit data.csv --target y --estimator deep-ensemble --out model

--out DIR is created if needed and gets model.autodeuq (load it in Python with
autodeuq.load), summary.json (the data, the columns, the validation NLL, the members) and,
after a search, search_results.csv (one row per candidate). A name ending in .autodeuq saves
the model file alone.

The search runs candidates in parallel on Dask: an embedded cluster on this machine (one
worker per core) unless --scheduler names a scheduler address or scheduler file.
"""

PREDICT_EPILOG = """\
examples:
  autodeuq predict model new.csv --out predictions.csv
  autodeuq predict model new.csv --coverage 0.95 > predictions.csv

The output has one row per row of DATA, in the same order: mean, total_std, aleatoric_std,
epistemic_std (in the units of the target; total_std**2 = aleatoric_std**2 +
epistemic_std**2) and the lower and upper ends of the central interval holding --coverage of
the predictive distribution (lower_90, upper_90 by default).
"""

PLOT_EPILOG = """\
examples:
  autodeuq plot model data.csv --out uncertainty.png
  autodeuq plot model data.csv --x area --out area.png

With one feature, the model is drawn on a grid reaching --margin beyond the data's range
(shaded), where the epistemic part shows; with several, at each row of DATA against --x.
The target column, when DATA has it, is drawn as points. Needs matplotlib:
pip install 'autodeuq[plot]'.
"""

DEMO_EPILOG = """\
examples:
  autodeuq demo
  autodeuq demo --time-budget 120 --out demo
  autodeuq plot demo demo/train.csv --out uncertainty.png
"""

MAIN_EPILOG = """\
examples:
  autodeuq fit data.csv --target y --out model
  autodeuq predict model new.csv --out predictions.csv
  autodeuq plot model data.csv --out uncertainty.png
  autodeuq fit --help

exit status: 0 done, 1 the fit or prediction failed, 2 a wrong command line or input,
130 interrupted.
"""


def _search_options(parser, time_budget):
    """The search's options, and the advanced ones; returns the advanced group."""
    group = parser.add_argument_group("search")
    group.add_argument("--time-budget", type=_positive_float, default=time_budget,
                       metavar="S",
                       help=f"seconds for the search and the training of the selected networks "
                            f"on all the data (default: {DEFAULT_TIME_BUDGET:g})")
    group.add_argument("--max-evals", type=_positive_int, metavar="N",
                       help="most candidates to train (default: no limit, the time budget "
                            "ends the search)")
    group.add_argument("--n-jobs", type=_n_jobs, metavar="N",
                       help="worker processes of the embedded cluster (default: every core); "
                            "for deep-ensemble, members trained in parallel")
    group.add_argument("--scheduler", metavar="ADDR_OR_FILE",
                       help="an existing Dask cluster: a scheduler address "
                            "(tcp://host:8786) or a scheduler file (default: an embedded one)")
    group.add_argument("--random-state", type=int, metavar="N", help="seed (default: random)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar (or progress lines, off a terminal) during the "
                            "search")
    advanced = parser.add_argument_group("advanced")
    advanced.add_argument("--max-epochs", type=_positive_int, metavar="N",
                          help="most training epochs of a network (default: the search "
                               "space's, 100 to 1000)")
    advanced.add_argument("--backend", choices=("dask", "serial"),
                          help="serial: train candidates one at a time in this process, no "
                               "cluster; reproducible with --random-state (default: dask)")
    advanced.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                          help="torch threads for networks trained in this process (default: "
                               "1, the fastest for small networks; Dask workers set their "
                               "own)")
    return group, advanced


def build_parser():
    """The argparse parser of the ``autodeuq`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter, epilog=MAIN_EPILOG,
        description="Automated deep ensembles with uncertainty quantification: fit a "
                    "regressor on a CSV file, then predict the mean and how sure it is "
                    "(aleatoric and epistemic std).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                     required=True)

    fit = commands.add_parser(
        "fit", formatter_class=_Formatter, epilog=FIT_EPILOG,
        help="fit a model on a CSV file and save it into a directory",
        description="Fit a regressor on a CSV file (a header row, then one row per sample) and "
                    "save it. The default, AutoDEUQ, searches network architectures and "
                    "training settings, then selects a deep ensemble from the candidates.")
    fit.add_argument("data", metavar="DATA.csv", help="the training data")
    fit.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    fit.add_argument("--out", required=True, metavar="DIR",
                     help="directory to save the model into (created if needed)")
    fit.add_argument("--features", nargs="+", metavar="COL",
                     help="the columns to predict from (default: every other column)")
    fit.add_argument("--estimator", choices=tuple(ESTIMATORS), default="autodeuq",
                     help="autodeuq (default): search, then a deep ensemble; nas: the best "
                          "searched network; deep-ensemble: 5 networks of one default "
                          "architecture; gaussian-mlp: one network (fast baselines)")
    fit.add_argument("--ensemble-size", type=_positive_int, metavar="K",
                     help="networks in the ensemble (default: 5)")
    _data_options(fit)
    group, advanced = _search_options(fit, None)
    group.add_argument("--checkpoint-dir", metavar="DIR",
                       help="journal every finished candidate there; fitting again with the "
                            "same directory and data resumes the search")
    advanced.add_argument("--max-layers", type=_positive_int, metavar="N",
                       help="most hidden layers of a searched network (default: 10)")
    fit.set_defaults(handler=_fit)

    predict = commands.add_parser(
        "predict", formatter_class=_Formatter, epilog=PREDICT_EPILOG,
        help="predict the mean and the aleatoric and epistemic std for each row of a CSV file",
        description="Predict with a saved model: for each row of DATA, the mean and the total, "
                    "aleatoric and epistemic standard deviations, and an interval.")
    predict.add_argument("model", metavar="MODEL",
                         help="the --out directory of `autodeuq fit`, or a .autodeuq file")
    predict.add_argument("data", metavar="DATA.csv",
                         help="rows to predict, with the model's feature columns (others, such "
                              "as the target, are ignored)")
    predict.add_argument("--out", metavar="PRED.csv",
                         help="where to write the predictions (default: standard output)")
    predict.add_argument("--coverage", type=_coverage, default=0.9, metavar="P",
                         help="probability inside the interval (default: 0.9)")
    predict.add_argument("--features", nargs="+", metavar="COL",
                         help="the feature columns, in the order of fitting: only for a model "
                              "fitted in Python on arrays without column names")
    _data_options(predict)
    predict.set_defaults(handler=_predict)

    plot = commands.add_parser(
        "plot", formatter_class=_Formatter, epilog=PLOT_EPILOG,
        help="draw the predictive mean and its aleatoric and epistemic bands",
        description="Draw a saved model's predictive mean with its aleatoric band and how far "
                    "the epistemic part widens it, against one feature, and the two stds "
                    "below.")
    plot.add_argument("model", metavar="MODEL",
                      help="the --out directory of `autodeuq fit`, or a .autodeuq file")
    plot.add_argument("data", metavar="DATA.csv", help="rows with the model's feature columns")
    plot.add_argument("--x", metavar="COL",
                      help="the feature on the horizontal axis (needed with several features)")
    plot.add_argument("--out", metavar="FIG.png",
                      help="where to save the figure: .png, .pdf, .svg (default: "
                           "uncertainty.png)")
    plot.add_argument("--target", metavar="COL",
                      help="the column of observed values to draw as points (default: the "
                           "target the model was fitted on, when DATA has it)")
    plot.add_argument("--coverage", type=_coverage, default=0.95, metavar="P",
                      help="probability inside the bands (default: 0.95)")
    plot.add_argument("--margin", type=_fraction, default=0.25, metavar="F",
                      help="with one feature, how far beyond the data's range to draw, as a "
                           "fraction of it (default: 0.25)")
    plot.add_argument("--features", nargs="+", metavar="COL", help=argparse.SUPPRESS)
    _data_options(plot)
    plot.set_defaults(handler=_plot)

    demo = commands.add_parser(
        "demo", formatter_class=_Formatter, epilog=DEMO_EPILOG,
        help="run AutoDEUQ on the tutorial's toy problem",
        description="Fit AutoDEUQ on y = 2 sin(x) + noise observed on two islands, and print "
                    "its aleatoric and epistemic std inside and outside the training range.")
    demo.add_argument("--out", metavar="DIR",
                      help="also save the model and the training data (train.csv) there")
    _search_options(demo, DEMO_TIME_BUDGET)
    demo.set_defaults(handler=_demo, max_evals=None, backend="dask", random_state=0)
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="more messages (a line per searched candidate, Dask's own) and the "
                             "traceback of an error")
    for action in demo._actions:  # the demo's own defaults in its help
        if action.dest == "time_budget":
            action.help = f"seconds of search (default: {DEMO_TIME_BUDGET:g})"
        elif action.dest == "random_state":
            action.help = "seed (default: 0)"
        elif action.dest == "n_jobs":
            action.help = "worker processes of the embedded cluster (default: every core)"
    return parser


# -- main ------------------------------------------------------------------------------------


class _Short(logging.Formatter):
    """``autodeuq: message`` for the package's records, ``logger: message`` for others."""

    def format(self, record):
        name = PROG if record.name.startswith(PROG) else record.name
        return f"{name}: {record.getMessage()}"


@contextlib.contextmanager
def _console(verbose):
    """Warnings as one line each; autodeuq's progress messages with --verbose.

    Dask's own messages (the embedded cluster starting and closing, a worker killed at
    shutdown) show only with --verbose, or when they are errors.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Short())

    def shown(record):
        if verbose and record.name.startswith(("autodeuq", "distributed")):
            return True
        if record.name == "autodeuq.evaluation._progress":  # only at the estimator's verbose
            return record.levelno >= logging.INFO
        dask = record.name.startswith("distributed")
        return record.levelno >= (logging.ERROR if dask else logging.WARNING)

    handler.addFilter(shown)
    root, package = logging.getLogger(), logging.getLogger("autodeuq")
    level = package.level
    added = not root.handlers
    if added:
        root.addHandler(handler)
    if verbose:
        package.setLevel(logging.INFO)
    formatwarning = warnings.formatwarning
    if not verbose:
        warnings.formatwarning = (
            lambda message, category, *_, **__: f"{PROG}: warning: {message}\n")
    try:
        yield
    finally:
        warnings.formatwarning = formatwarning
        package.setLevel(level)
        if added:
            root.removeHandler(handler)


def main(argv=None):
    """Run the ``autodeuq`` command; ``argv`` defaults to ``sys.argv[1:]``.

    Returns 0 when done; raises ``SystemExit`` with status 2 for a wrong command line or input,
    1 when the fit or the prediction failed and 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with _console(args.verbose):
            args.handler(args)
    except CommandError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.status) from None
    except KeyboardInterrupt:
        resume = (f"; fit again with --checkpoint-dir {args.checkpoint_dir} to resume"
                  if getattr(args, "checkpoint_dir", None) else "")
        print(f"{PROG} {args.command}: interrupted{resume}", file=sys.stderr)
        raise SystemExit(130) from None
    return 0
