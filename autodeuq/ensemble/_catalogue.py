"""Catalogue: every finished candidate of a search, with bounded memory for weights.

Every successful trial keeps its validation predictions, which ensemble selection needs for
all candidates (``O(n_candidates * n_valid)`` floats). Weights are kept in memory only for the
``max_in_memory`` candidates with the best objective; the others are reloaded on demand from
the journal's weights directory, where :class:`autodeuq.evaluation.Journal` writes one
``trial-<id>.npz`` per successful trial.
"""

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Catalogue", "CatalogueEntry"]

_STATE = "state."


@dataclass
class CatalogueEntry:
    """One successful candidate as the catalogue keeps it.

    Attributes
    ----------
    trial_id : int
    config : dict
        The candidate configuration.
    objective : float
        Validation NLL in standardized units (lower is better).
    valid_mean, valid_var : ndarray of shape (n_valid,)
        Validation predictions in standardized units (read-only), in the precision the
        network computed them: float32 as trained, float64 when given so (any other type is
        converted to float64). :meth:`Catalogue.valid_means` and
        :meth:`Catalogue.valid_vars` return them as float64, an exact widening.
    state : dict of str to ndarray, or None
        The weights, or None when they were dropped from memory (see
        :meth:`Catalogue.state` to get them back from disk).
    seed, n_epochs, best_epoch : int
    duration : float
        Seconds its training took (NaN when the result has no start and end times).
    """

    trial_id: int
    config: dict
    objective: float
    valid_mean: np.ndarray = field(repr=False)
    valid_var: np.ndarray = field(repr=False)
    state: dict | None = field(default=None, repr=False)
    seed: int = 0
    n_epochs: int = 0
    best_epoch: int = 0
    duration: float = float("nan")


def _prediction(values, name, trial_id, n_valid):
    """A read-only copy of one validation prediction, checked: float32 stays float32 (half
    the memory of float64, which would add no information), anything else becomes float64."""
    if values is None:
        raise ValueError(
            f"result.{name} of successful trial {trial_id} is None; a successful TrialResult "
            f"must carry its validation predictions. Return them from the trainer."
        )
    try:
        dtype = np.float32 if np.asarray(values).dtype == np.float32 else np.float64
        a = np.array(values, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"result.{name} of trial {trial_id} must be an array of real numbers; got "
            f"{type(values).__name__}. Pass a numpy array of shape (n_valid,)."
        ) from None
    if a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"result.{name} of trial {trial_id} must have shape (n_valid,) with n_valid >= 1; "
            f"got shape {a.shape}. Pass the predictions on the validation rows, flattened."
        )
    if n_valid is not None and a.shape[0] != n_valid:
        raise ValueError(
            f"result.{name} of trial {trial_id} must have the catalogue's {n_valid} validation "
            f"points; got {a.shape[0]}. Every candidate must be validated on the same rows."
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"result.{name} of trial {trial_id} must be finite; got "
            f"{np.count_nonzero(~np.isfinite(a))} NaN or infinite value(s). Report such a "
            f"candidate with status 'diverged' instead of 'success'."
        )
    a.flags.writeable = False
    return a


class Catalogue:
    """The successful candidates of a search, for ensemble selection.

    Parameters
    ----------
    max_in_memory : int or None, default=50
        How many candidates keep their weights in memory: those with the best (lowest)
        objectives. When a better candidate arrives and the bound would be exceeded, the
        worst in-memory candidate's weights are dropped. ``0`` keeps none, None keeps all.
        Validation predictions are never dropped.
    directory : str or path-like, default=None
        The search journal's weights directory (``<checkpoint_dir>/search-.../weights``), holding
        ``trial-<id>.npz`` files; dropped weights are reloaded from it by :meth:`state`.
        None means dropped weights are gone.

    Attributes
    ----------
    n_failed : int
        How many results without ``status == "success"`` were added (and not stored).

    Notes
    -----
    Memory is ``O(n_candidates * n_valid)`` floats for the validation predictions (kept as
    the networks computed them, float32 for the package's trainers: 8 bytes a validation point
    a candidate) plus the weights of at most ``max_in_memory`` candidates.

    Examples
    --------
    >>> from autodeuq.ensemble import Catalogue, GreedySelector
    >>> catalogue = Catalogue(max_in_memory=10)                   # doctest: +SKIP
    >>> for result in results:                                    # doctest: +SKIP
    ...     catalogue.add(result)
    >>> idx, w = GreedySelector(k=5).select(                      # doctest: +SKIP
    ...     y_valid, catalogue.valid_means(), catalogue.valid_vars())
    >>> members = [catalogue.trial_ids[i] for i in idx]           # doctest: +SKIP
    """

    def __init__(self, max_in_memory=50, directory=None):
        if max_in_memory is not None and (
            isinstance(max_in_memory, bool)
            or not isinstance(max_in_memory, numbers.Integral)
            or max_in_memory < 0
        ):
            raise ValueError(
                f"max_in_memory must be an int >= 0 or None; got {max_in_memory!r}. Pass e.g. "
                f"50 to keep the weights of the 50 best candidates, or None to keep all."
            )
        if directory is not None and not isinstance(directory, str | os.PathLike):
            raise TypeError(
                f"directory must be a path (str or path-like) or None; got "
                f"{type(directory).__name__}. Pass the journal's weights directory."
            )
        self.max_in_memory = None if max_in_memory is None else int(max_in_memory)
        self.directory = None if directory is None else Path(directory)
        self.n_failed = 0
        self._entries = {}  # trial_id -> CatalogueEntry, in insertion order
        self._in_memory = set()  # trial ids whose entry holds its state
        self._n_valid = None

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_candidates={len(self)}, n_in_memory={self.n_in_memory}, "
            f"n_failed={self.n_failed})"
        )

    def __len__(self):
        return len(self._entries)

    def __contains__(self, trial_id):
        return trial_id in self._entries

    def add(self, result):
        """Record one finished trial.

        Parameters
        ----------
        result : TrialResult
            A successful result is stored (its weights only if among the ``max_in_memory``
            best); any other status is counted in :attr:`n_failed`.

        Returns
        -------
        CatalogueEntry or None
            The stored entry, or None for an unsuccessful trial.
        """
        if not result.ok:
            self.n_failed += 1
            return None
        trial_id = int(result.trial_id)
        if trial_id in self._entries:
            raise ValueError(
                f"result.trial_id={trial_id} is already in the catalogue; each trial is added "
                f"once. Do not add a replayed trial twice."
            )
        objective = result.objective
        if (
            isinstance(objective, bool)
            or not isinstance(objective, numbers.Real)
            or not np.isfinite(objective)
        ):
            raise ValueError(
                f"result.objective of successful trial {trial_id} must be a finite number; got "
                f"{objective!r}. Report such a candidate with status 'diverged' or 'failed'."
            )
        mean = _prediction(result.valid_mean, "valid_mean", trial_id, self._n_valid)
        var = _prediction(result.valid_var, "valid_var", trial_id, mean.shape[0])
        if not np.all(var > 0):
            raise ValueError(
                f"result.valid_var of trial {trial_id} must be > 0 everywhere; got min "
                f"{var.min():g}. Pass variances (not log-variances), floored at a small "
                f"positive value."
            )
        entry = CatalogueEntry(
            trial_id=trial_id,
            config=result.config,
            objective=float(objective),
            valid_mean=mean,
            valid_var=var,
            state=None,
            seed=int(result.seed),
            n_epochs=int(result.n_epochs),
            best_epoch=int(result.best_epoch),
            duration=float(result.duration),
        )
        self._n_valid = mean.shape[0]
        self._entries[trial_id] = entry
        if result.state is not None:
            self._keep_state(entry, dict(result.state))
        return entry

    def _keep_state(self, entry, state):
        """Keep ``state`` if ``entry`` is among the ``max_in_memory`` best."""
        if self.max_in_memory is not None and len(self._in_memory) >= self.max_in_memory:
            if not self._in_memory:
                return  # max_in_memory=0
            worst = max(self._in_memory, key=lambda i: self._entries[i].objective)
            if not entry.objective < self._entries[worst].objective:
                return
            self._entries[worst].state = None
            self._in_memory.discard(worst)
        entry.state = state
        self._in_memory.add(entry.trial_id)

    @property
    def trial_ids(self):
        """list of int: the candidates' trial ids, in the order they were added."""
        return list(self._entries)

    @property
    def objectives(self):
        """ndarray of shape (n_candidates,): the objectives, in :attr:`trial_ids` order."""
        return np.array([e.objective for e in self._entries.values()], dtype=np.float64)

    @property
    def n_in_memory(self):
        """int: how many candidates hold their weights in memory."""
        return len(self._in_memory)

    def _stack(self, name):
        if not self._entries:
            return np.empty((0, 0))
        return np.stack([getattr(e, name) for e in self._entries.values()], dtype=np.float64)

    def valid_means(self):
        """Validation means of every candidate.

        Returns
        -------
        ndarray of shape (n_candidates, n_valid)
            Rows in :attr:`trial_ids` order, standardized units; shape (0, 0) when empty.
        """
        return self._stack("valid_mean")

    def valid_vars(self):
        """Validation variances of every candidate.

        Returns
        -------
        ndarray of shape (n_candidates, n_valid)
            Rows in :attr:`trial_ids` order, standardized units; shape (0, 0) when empty.
        """
        return self._stack("valid_var")

    def get(self, trial_id):
        """The stored entry of a trial.

        Parameters
        ----------
        trial_id : int

        Returns
        -------
        CatalogueEntry
            Its ``state`` is None if the weights were dropped from memory; use :meth:`state`.
        """
        try:
            return self._entries[trial_id]
        except (KeyError, TypeError):
            raise KeyError(
                f"trial_id={trial_id!r} is not in the catalogue, which holds "
                f"{len(self)} successful candidate(s); failed trials are not stored. Pick one "
                f"of catalogue.trial_ids."
            ) from None

    def state(self, trial_id):
        """The weights of a trial, from memory or reloaded from :attr:`directory`.

        Reloaded weights are returned, not cached, so memory stays bounded.

        Parameters
        ----------
        trial_id : int

        Returns
        -------
        dict of str to ndarray
        """
        entry = self.get(trial_id)
        if entry.state is not None:
            return entry.state
        if self.directory is None:
            raise RuntimeError(
                f"The weights of trial {trial_id} are not in memory (only the "
                f"max_in_memory={self.max_in_memory} best candidates keep theirs) and there is "
                f"no directory to reload them from. Pass checkpoint_dir so every candidate's "
                f"weights are kept on disk, or raise max_in_memory."
            )
        path = self.directory / f"trial-{trial_id}.npz"
        if not path.exists():
            raise FileNotFoundError(
                f"The weights of trial {trial_id} are not in memory and {str(path)!r} does not "
                f"exist. Pass the checkpoint_dir's weights directory that the search wrote."
            )
        with np.load(path, allow_pickle=False) as arrays:
            return {k[len(_STATE):]: arrays[k] for k in arrays.files if k.startswith(_STATE)}
