"""train_candidate: the only code that runs on workers."""

import os
import time
import traceback
from dataclasses import dataclass

import numpy as np

from ..exceptions import TimeLimitExceeded, TrainingDivergedError
from ..nn import gaussian_nll_loss, predict_in_batches, train_network, train_networks
from ..uncertainty import NormalMixture, nll
from ._result import TrialResult

__all__ = ["Refit", "Resplit", "held_out_targets", "refit_data", "resplit_data", "train_candidate",
           "worker_name"]


def worker_name():
    """The Dask worker address this runs on, or ``local:<pid>`` outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def network_config(config):
    """A network config from a flat search config (or the network config itself)."""
    if "layers" in config:
        return config
    from ..space import to_network_config

    return to_network_config(config)


_PARTS = ("train", "stop", "valid")


def _all_rows(data, arrays=("X", "y")):
    """Every part of ``data`` (training, early-stopping, validation) joined, for each of
    ``arrays`` (``"X"``, ``"y"``)."""
    parts = [part for part in _PARTS if f"y_{part}" in data]
    return tuple(np.concatenate([data[f"{a}_{part}"] for part in parts]) for a in arrays)


def _n_rows(data):
    return sum(len(data[f"y_{part}"]) for part in _PARTS if f"y_{part}" in data)


def _refit_rows(n, holdout, seed):
    """Row indices (into all ``n`` rows) of a refit's parts: ``{"train", "valid"}``."""
    n_valid = min(n - 1, max(1, int(np.ceil(holdout * n))))
    order = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(order[n_valid:]), "valid": np.sort(order[:n_valid])}


def _resplit_rows(n, resplit):
    """Row indices (into all ``n`` rows) of a rescoring's parts: ``{"valid", "stop",
    "train"}``, no ``"stop"`` when too few rows are left for one."""
    n_valid = min(n - 2, max(1, int(np.ceil(resplit.valid_fraction * n))))
    order = np.random.default_rng(resplit.seed).permutation(n)
    valid, rest = np.sort(order[:n_valid]), order[n_valid:]
    n_stop = int(np.ceil(resplit.stop_fraction * len(rest)))
    if len(rest) - n_stop >= 2 and n_stop >= 1:
        return {"valid": valid, "stop": np.sort(rest[:n_stop]), "train": np.sort(rest[n_stop:])}
    return {"valid": valid, "train": np.sort(rest)}


def _rows(data, holdout, seed):
    """The parts of a refit (``holdout`` a fraction) or a rescoring (a :class:`Resplit`)."""
    n = _n_rows(data)
    return _resplit_rows(n, holdout) if isinstance(holdout, Resplit) else _refit_rows(
        n, holdout, seed)


def _take(data, rows):
    X, y = _all_rows(data)
    return {f"{a}_{part}": arr[index] for part, index in rows.items()
            for a, arr in (("X", X), ("y", y))}


def refit_data(data, holdout, seed):
    """All of ``data`` (training and validation parts) split anew for a refit.

    ``holdout`` of the rows, drawn from ``seed``, become the early-stopping part; the rest are
    trained on. Each refit member draws its own holdout, so together they see every row.
    """
    return _take(data, _refit_rows(_n_rows(data), holdout, seed))


@dataclass(frozen=True)
class Resplit:
    """A second split of all the data, shared by every trial given it: the ``holdout`` of a
    rescoring (see :func:`resplit_data`).

    Attributes
    ----------
    valid_fraction : float
        Part of all the rows that is the new validation part.
    stop_fraction : float
        Part of the other rows that candidates early-stop on.
    seed : int
        Draws the split (not the networks' initialisation, which is each trial's seed).
    networks : int, default=1
        Networks each trial trains on the split, from seeds spawned from its own, together
        (:func:`autodeuq.nn.train_networks`); the trial is scored as their equal mixture,
        which is what a configuration refitted as several networks becomes.
    """

    valid_fraction: float
    stop_fraction: float
    seed: int
    networks: int = 1


@dataclass(frozen=True)
class Refit:
    """Several networks of one configuration trained again on all the data, together: the
    ``holdout`` of a batched refit (see :func:`train_candidate`).

    Network ``k`` early-stops on its own ``holdout`` fraction of the rows drawn from
    ``seeds[k]`` and is initialised from it, as a refit of that seed alone would be (see
    :func:`refit_data`); the networks train in one batched pass
    (:func:`autodeuq.nn.train_networks`), in a fraction of their time one after another for
    small networks.

    Attributes
    ----------
    holdout : float
        Part of all the rows each network early-stops on.
    seeds : tuple of int
        One per network.
    """

    holdout: float
    seeds: tuple


def resplit_data(data, resplit):
    """All of ``data`` split anew as the search split it: a validation part to score on,
    an early-stopping part and a training part, drawn from ``resplit.seed``.

    Every trial given the same :class:`Resplit` has the same parts, so their validation
    predictions are on the same points and can be compared and mixed, as the search's are.
    """
    return _take(data, _resplit_rows(_n_rows(data), resplit))


def held_out_targets(data, holdout, seed=None):
    """The targets a refit (``holdout`` a fraction, ``seed`` its trial's) or a rescoring (a
    :class:`Resplit`) is scored on: ``y_valid`` of :func:`refit_data` or
    :func:`resplit_data`, without copying the inputs (the main process reads them to score
    what a worker trained)."""
    (y,) = _all_rows(data, ("y",))
    return y[_rows(data, holdout, seed)["valid"]]


def train_candidate(config, data, seed, device="cpu", time_limit=None, trial_id=-1,
                    deadline=None, holdout=None, rungs=None):
    """Train one candidate and return a :class:`TrialResult`; never raises for a bad candidate.

    Parameters
    ----------
    config : dict
        Flat search configuration, or a network configuration (with ``"layers"``).
    data : dict
        ``X_train``, ``y_train``, ``X_valid``, ``y_valid``: standardized float32 arrays (on
        Dask, scattered once to every worker). With ``X_stop`` and ``y_stop`` too, the
        network early-stops on that part and its objective is its NLL on the validation
        part, which then serves only to rank candidates: the score is not biased by the
        choice of the stopping epoch. Without them it early-stops on the validation part and
        the objective is the best validation NLL seen.
    seed : int
        Seeds initialisation, dropout and shuffling.
    device : str, default="cpu"
        Where to train. On a CUDA device, the memory torch keeps cached is handed back to
        the GPU when the trial ends (for the other trials sharing it).
    time_limit : float or None, default=None
        Seconds of training after which the trial is recorded as ``"timeout"``.
    trial_id : int, default=-1
    deadline : float or None, default=None
        Unix time at which training ends normally with the best weights so far (the end of
        the search's time budget). A trial that starts after it is not trained and is
        recorded as ``"timeout"``.
    holdout : float, Refit, Resplit or None, default=None
        Refit: train on the training and validation parts together, early-stopping on a
        fresh ``holdout`` fraction of them drawn from ``seed`` (see :func:`refit_data`). The
        result's objective and validation predictions are then on that holdout.
        A ``Refit`` (``autodeuq.evaluation._train``): ``len(holdout.seeds)`` such refits
        trained together (``seed`` is not used); the result holds one result per network in
        ``networks``, each with its own objective, predictions on its own holdout and
        weights, and the whole task's start and end. A ``Resplit``
        (``autodeuq.evaluation._train``): a rescoring, trained and scored as a search trial
        on a second split of all the data, the same for every trial given it; with
        ``networks > 1``, that many networks from seeds spawned from ``seed``, scored as
        their equal mixture: the result's ``valid_mean`` and
        ``valid_var`` then have shape ``(networks, n_valid)`` and it holds no weights
        (``state`` None).
    rungs : sequence of (int, float) or None, default=None
        Early discarding: ``(epoch, threshold)`` pairs, the thresholds frozen when the trial
        was submitted (see :mod:`autodeuq.evaluation._discard`). A trial whose best
        validation NLL at a rung epoch is above its threshold stops there.

    Returns
    -------
    TrialResult
        ``"success"`` with objective, validation predictions and weights; ``"discarded"``
        with the objective it had reached and no arrays; or ``"diverged"``, ``"timeout"`` or
        ``"failed"`` with the error text. Only ``KeyboardInterrupt`` and
        ``SystemExit`` propagate.
    """
    try:
        return _run_trial(config, data, seed, device, time_limit, trial_id, deadline, holdout,
                          rungs)
    finally:
        # The trial's frame has returned and its result holds numpy arrays, so nothing it put
        # on the device is referenced any more: hand the blocks torch's allocator keeps cached
        # back to the GPU, for the other processes sharing it (trials_per_device). A run on
        # the CPU makes no CUDA call.
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _held_out(module, X, y):
    """A network's predictive means and variances on held-out rows (in batches of
    ``PREDICT_BATCH_SIZE`` rows, however many) and its mean NLL there."""
    import torch

    mean, var = predict_in_batches(module, X)
    with torch.inference_mode():
        objective = float(gaussian_nll_loss(mean, var, torch.as_tensor(y, dtype=torch.float32)))
    return mean, var, objective


def _state(module):
    """A network's weights as numpy arrays of their own (a result outlives the module)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _run_trial(config, data, seed, device, time_limit, trial_id, deadline, holdout, rungs):
    """The work of :func:`train_candidate`, in a frame of its own that is gone (with every
    tensor it held) before the cache is emptied."""
    start = time.time()
    common = {"trial_id": trial_id, "config": config, "seed": int(seed), "start": start,
              "worker": worker_name()}
    stop_after = None if deadline is None else deadline - start
    if stop_after is not None and stop_after <= 0:
        return TrialResult(status="timeout", end=start, error="the search's time budget ran "
                           "out before this trial started", **common)
    try:
        if isinstance(holdout, Refit):
            return _refit_together(config, data, holdout, device, time_limit, stop_after,
                                   common)
        if isinstance(holdout, Resplit):
            data = resplit_data(data, holdout)
            if holdout.networks > 1:
                return _train_together(config, data, seed, holdout.networks, device,
                                       time_limit, stop_after, common)
        elif holdout is not None:
            data = refit_data(data, holdout, seed)
        stop = "X_stop" in data
        trained = train_network(network_config(config), data["X_train"], data["y_train"],
                                data["X_stop" if stop else "X_valid"],
                                data["y_stop" if stop else "y_valid"], seed=int(seed),
                                device=device, time_limit=time_limit, stop_after=stop_after,
                                rungs=rungs)
        # Every trial's objective, a discarded one's too, is its NLL on the validation part
        # (its rung values are on the early-stopping rows), so all are ranked on the same
        # points.
        mean, var, objective = _held_out(trained.module, data["X_valid"], data["y_valid"])
        if not stop:
            objective = trained.best_valid_loss
        if trained.discarded:  # unfinished: its record only, never an ensemble member
            if objective is None or not np.isfinite(objective):
                objective = trained.best_valid_loss
            return TrialResult(status="discarded", objective=float(objective),
                               n_epochs=trained.n_epochs, best_epoch=trained.best_epoch,
                               rung_nlls=trained.rung_nlls, end=time.time(), **common)
        if objective is None or not np.isfinite(objective):
            raise TrainingDivergedError(f"validation NLL is {objective}")
        return TrialResult(
            status="success", objective=float(objective),
            valid_mean=mean.numpy().copy(), valid_var=var.numpy().copy(),
            state=_state(trained.module), n_epochs=trained.n_epochs,
            best_epoch=trained.best_epoch, end=time.time(), rung_nlls=trained.rung_nlls, **common)
    except TrainingDivergedError as exc:
        status, error = "diverged", f"{type(exc).__name__}: {exc}"
    except TimeLimitExceeded as exc:
        status, error = "timeout", f"{type(exc).__name__}: {exc}"
    except Exception:  # a bad candidate is a result, never a crash of the search
        status, error = "failed", traceback.format_exc(limit=20)
    return TrialResult(status=status, error=error, end=time.time(), **common)


def _train_together(config, data, seed, networks, device, time_limit, stop_after, common):
    """A rescoring of ``networks`` networks of ``config`` on one split (``data`` with a
    training, an early-stopping and a validation part), trained together from seeds spawned
    from ``seed``; scored as their equal mixture on the validation part. Raises as
    :func:`train_network` does (the caller makes a result of it)."""
    n_train, n_stop = len(data["y_train"]), len(data.get("y_stop", ()))
    X = np.concatenate([data["X_train"], data["X_stop"]]) if n_stop else data["X_train"]
    y = np.concatenate([data["y_train"], data["y_stop"]]) if n_stop else data["y_train"]
    train = np.tile(np.arange(n_train), (networks, 1))
    stop = np.tile(np.arange(n_train, n_train + n_stop), (networks, 1)) if n_stop else None
    trained = train_networks(network_config(config), X, y, train, stop,
                             seeds=np.random.SeedSequence(int(seed)).spawn(networks),
                             device=device, time_limit=time_limit, stop_after=stop_after)
    predictions = [predict_in_batches(t.module, data["X_valid"]) for t in trained]
    mean = np.stack([m.numpy() for m, _ in predictions]).astype(np.float64)
    var = np.stack([v.numpy() for _, v in predictions]).astype(np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var > 0)):
        raise TrainingDivergedError("validation predictions are not finite")
    objective = nll(np.asarray(data["y_valid"], dtype=np.float64),
                    NormalMixture(mean, np.sqrt(var)))
    if not np.isfinite(objective):
        raise TrainingDivergedError(f"validation NLL is {objective}")
    return TrialResult(status="success", objective=objective, valid_mean=mean, valid_var=var,
                       n_epochs=max(t.n_epochs for t in trained),
                       best_epoch=max(t.best_epoch for t in trained), end=time.time(),
                       **common)


def _refit_together(config, data, refit, device, time_limit, stop_after, common):
    """Refits of ``config`` from each of ``refit.seeds``, trained together on all the rows of
    ``data``, each early-stopping on its own holdout (as :func:`refit_data` draws it); one
    result holding each network's in ``networks``. Raises as :func:`train_network` does (the
    caller makes a result of it): one network that diverges fails them all."""
    X, y = _all_rows(data)
    rows = [_refit_rows(len(y), refit.holdout, seed) for seed in refit.seeds]
    trained = train_networks(network_config(config), X, y,
                             np.stack([r["train"] for r in rows]),
                             np.stack([r["valid"] for r in rows]),
                             seeds=[int(s) for s in refit.seeds], device=device,
                             time_limit=time_limit, stop_after=stop_after)
    end, networks = time.time(), []
    for seed, part, net in zip(refit.seeds, rows, trained, strict=True):
        mean, var, objective = _held_out(net.module, X[part["valid"]], y[part["valid"]])
        if not np.isfinite(objective):
            raise TrainingDivergedError(f"validation NLL is {objective}")
        networks.append(TrialResult(
            status="success", objective=objective, valid_mean=mean.numpy().copy(),
            valid_var=var.numpy().copy(), state=_state(net.module), n_epochs=net.n_epochs,
            best_epoch=net.best_epoch, end=end,
            **{**common, "seed": int(seed)}))
    return TrialResult(status="success", objective=max(n.objective for n in networks),
                       n_epochs=max(n.n_epochs for n in networks),
                       best_epoch=max(n.best_epoch for n in networks), end=end,
                       networks=networks, **common)
