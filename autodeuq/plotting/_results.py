"""Reading a search's results table: ``search_results_``, a DataFrame or a CSV file.

autodeuq's ``search_results_`` has one row per trial with ``job_id``, the configuration in
``p:`` columns, ``objective`` (minus the validation NLL, so higher is better, as DeepHyper
writes it), ``valid_nll``, ``status``, ``start_time``, ``end_time`` (seconds from the search's
first start) and ``worker``. DeepHyper's ``results.csv`` has ``job_id``, ``p:`` columns,
``objective`` (higher is better; a failure is a string starting with ``"F"``) and
``m:timestamp_*`` columns. :func:`read_results` brings either to one layout.
"""

import os

import numpy as np

__all__ = ["read_results", "results_of", "space_of"]

#: Where each normalized column comes from, first match wins.
START_COLUMNS = ("start_time", "m:timestamp_start", "m:timestamp_submit")
END_COLUMNS = ("end_time", "m:timestamp_end", "m:timestamp_gather")
WORKER_COLUMNS = ("worker", "m:worker")


def _first(frame, names):
    return next((c for c in names if c in frame.columns), None)


def results_of(estimator, caller):
    """The ``search_results_`` of a fitted searching estimator (or the last step of a
    Pipeline), with a clear error otherwise."""
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    results = getattr(final, "search_results_", None)
    if results is None:
        raise ValueError(f"{caller} needs a fitted NASRegressor or AutoDEUQRegressor (its "
                         f"search_results_); got {type(final).__name__} without one. Fit it "
                         "first, or pass a results table to from_results.")
    return results


def space_of(estimator):
    """The search space of a searching estimator, or None."""
    from ..space import SearchSpace

    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    if not hasattr(final, "search_space"):
        return None
    try:
        return SearchSpace.coerce(final.search_space)
    except (TypeError, ValueError):
        return None


def read_results(results, caller):
    """A search's results in one layout, rows in their table's order.

    Parameters
    ----------
    results : DataFrame, str or path-like
        A results table, or the path of its CSV file.
    caller : str
        Named in error messages.

    Returns
    -------
    table : DataFrame
        Columns ``job_id``, ``value`` (the objective, NaN where the trial failed), ``status``
        (``"success"`` or how it failed), ``start`` and ``end`` (seconds from the first start,
        NaN where the table has no times), ``worker`` (None where it has none) and the ``p:``
        columns.
    objective_name : str
        ``"validation NLL"`` or ``"objective"``.
    lower_is_better : bool
    """
    import pandas as pd

    if isinstance(results, (str, os.PathLike)):
        if not os.path.isfile(results):
            raise FileNotFoundError(f"{caller}: results={str(results)!r} is not a file. Pass "
                                    "a results CSV (search_results.csv of `autodeuq fit`, or "
                                    "DeepHyper's results.csv), or a DataFrame.")
        results = pd.read_csv(results)
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"{caller}: results must be a DataFrame or the path of a CSV file; "
                        f"got {type(results).__name__}.")
    if len(results) == 0:
        raise ValueError(f"{caller}: results has no rows; a search must have finished at least "
                         "one trial.")
    if "valid_nll" in results.columns:
        value = pd.to_numeric(results["valid_nll"], errors="coerce")
        objective_name, lower_is_better = "validation NLL", True
    elif "objective" in results.columns:
        value = pd.to_numeric(results["objective"], errors="coerce")
        objective_name, lower_is_better = "objective", False
    else:
        raise ValueError(f"{caller}: results needs a 'valid_nll' or an 'objective' column; its "
                         f"columns are {list(results.columns)}. Pass autodeuq's "
                         "search_results_ or DeepHyper's results.csv.")
    value = np.array(value, dtype=np.float64)
    value[~np.isfinite(value)] = np.nan
    if "status" in results.columns:
        status = results["status"].astype(str).to_numpy()
        value[status != "success"] = np.nan
    else:
        status = np.where(np.isfinite(value), "success", "failed")
    times = {}
    for key, names in (("start", START_COLUMNS), ("end", END_COLUMNS)):
        column = _first(results, names)
        times[key] = (np.full(len(results), np.nan) if column is None else
                      pd.to_numeric(results[column], errors="coerce").to_numpy(np.float64))
    origin = np.nanmin(times["start"]) if np.isfinite(times["start"]).any() else 0.0
    worker = _first(results, WORKER_COLUMNS)
    job_id = (results["job_id"].to_numpy() if "job_id" in results.columns
              else np.arange(len(results)))
    table = pd.DataFrame({
        "job_id": job_id, "value": value, "status": status,
        "start": times["start"] - origin, "end": times["end"] - origin,
        "worker": None if worker is None else results[worker].astype(str).to_numpy(),
    })
    params = results[[c for c in results.columns if str(c).startswith("p:")]]
    table = pd.concat([table, params.reset_index(drop=True)], axis=1)
    return table, objective_name, lower_is_better
