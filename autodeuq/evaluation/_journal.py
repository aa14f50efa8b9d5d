"""Journal: every finished trial on disk, so an interrupted search resumes where it stopped.

A fit's ``checkpoint_dir`` holds one subdirectory per search, ``search-`` and the first 16
hex digits of the search's fingerprint (of its data and settings, see
:func:`search_directory`): the folds of a cross-validation, or the points of a grid search,
share one ``checkpoint_dir``, and a fit resumes the search of its own data and settings.
A search's directory holds ``meta.json`` (format version and the fingerprint),
``journal.jsonl`` (one JSON line per finished trial) and ``weights/`` (one ``.npz`` per
successful trial: weights and validation predictions). Loading runs no code: JSON and
``numpy.load(allow_pickle=False)`` only.

Each trial's weights are written to a temporary file and renamed before its journal line is
appended and flushed, so a crash at any point leaves either a complete trial or none (a
half-written last line is cut off when the journal is opened again).

One fit per search at a time: :func:`checkpoint_lock` holds an OS lock on ``lock`` in the
search's directory for the whole fit (released when the fit ends, however it ends, or its
process dies), so two fits of the same search never interleave their lines; fits of other
searches (other folds) run beside it.
"""

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from ._result import TrialResult

__all__ = ["JOURNAL_FORMAT", "Journal", "checkpoint_lock", "fingerprint", "fingerprint_parts",
           "open_search", "search_directory"]

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = 1
#: A search's directory in ``checkpoint_dir``: this prefix, then its fingerprint's start.
SEARCH_PREFIX = "search-"
_STATE = "state."


def fingerprint(data, settings):
    """A digest of the training data and the search settings a journal belongs to."""
    return fingerprint_parts(data, settings)[0]


def fingerprint_parts(data, settings):
    """:func:`fingerprint`, and a digest of each of its parts (``"data"``, then each key of
    ``settings``), which a journal keeps to say which part differs; the data are read once."""
    data_digest = _digest_data(hashlib.sha256(), data)
    whole = data_digest.copy()
    whole.update(json.dumps(settings, sort_keys=True, default=str).encode())
    parts = {"data": data_digest.hexdigest()}
    for key, value in settings.items():
        parts[key] = hashlib.sha256(
            json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return whole.hexdigest(), parts


def _digest_data(digest, data):
    for key in sorted(data):
        array = np.ascontiguousarray(data[key])
        digest.update(f"{key}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest


# The parts of a fingerprint that the data make (the rest are settings).
_DATA_PARTS = ("data", "scaling")
# What differs, in a fit's words, when a part of the fingerprint does (see _search_base).
_PART_NAMES = {
    "data": "X, y or their validation split (random_state, validation_fraction)",
    "scaling": "X, y or their validation split (random_state, validation_fraction)",
    "space": "search_space",
    "algorithm": "algorithm",
    "seed": "random_state",
    "early_discard": "early_discard",
}


def search_directory(checkpoint_dir, fingerprint):
    """The directory in ``checkpoint_dir`` of the search of ``fingerprint``
    (:func:`fingerprint`): ``search-`` and its first 16 hex digits."""
    return Path(checkpoint_dir) / f"{SEARCH_PREFIX}{fingerprint[:16]}"


@contextlib.contextmanager
def open_search(checkpoint_dir, fingerprint, parts=None):
    """The :class:`Journal` of the search of ``fingerprint`` in ``checkpoint_dir``, locked
    (:func:`checkpoint_lock`) while the ``with`` block runs.

    Its directory is :func:`search_directory`'s, created when the search is new; then the
    other searches ``checkpoint_dir`` holds are logged, naming what differs from the closest
    (a warning when it had the same data: fitting again with changed settings starts a new
    search rather than resuming that one).

    Raises
    ------
    ValueError
        If ``checkpoint_dir`` is itself a journal (``meta.json`` at its top, as development
        versions before 0.1.0 wrote it), or its search is in use by another fit.
    """
    root = Path(checkpoint_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(exc, f"checkpoint_dir={str(root)!r}", root) from exc
    if (root / "meta.json").exists():
        raise ValueError(f"checkpoint_dir={str(root)!r} holds a journal in the layout of an "
                         "earlier development version (meta.json at its top); each search now "
                         f"has a subdirectory {SEARCH_PREFIX}... of its own. Use an empty "
                         "directory (nothing in this one is changed).")
    directory = search_directory(root, fingerprint)
    label = f"checkpoint_dir={str(root)!r} (search {directory.name})"
    new = not (directory / "meta.json").exists()
    with checkpoint_lock(directory, label):
        if new:
            _log_other_searches(root, directory, parts, label)
        yield Journal(directory, fingerprint, parts, label=label)


def _unusable(exc, label, directory):
    """``exc`` (a file on the way, no permission, a read-only file system) naming ``label``
    and the fix."""
    return type(exc)(f"{label} cannot be used: {exc.strerror or exc} "
                     f"({str(exc.filename or directory)!r}). Pass a directory this process can "
                     "create and write to, or checkpoint_dir=None.")


def _log_other_searches(root, directory, parts, label):
    others = []
    for meta_path in sorted(root.glob(f"{SEARCH_PREFIX}*/meta.json")):
        if meta_path.parent == directory:
            continue
        try:
            others.append(json.loads(meta_path.read_text()).get("parts"))
        except (OSError, ValueError, AttributeError):  # unreadable: counted, not compared
            others.append(None)
    if not others:
        return
    known = [o for o in others if isinstance(o, dict) and isinstance(parts, dict)]
    closest = min(known, key=lambda o: len(_differing_keys(o, parts)), default=None)
    differing = "" if closest is None else _differing(closest, parts)
    if closest is not None and all(closest.get(key) == parts.get(key) for key in _DATA_PARTS):
        logger.warning("%s: a new search, beside %d other(s); one has the same data and "
                       "settings but for what follows, so it is not resumed%s. To resume it, "
                       "fit with its settings.", label, len(others), differing)
    else:
        logger.info("%s: a new search, beside %d other(s) of other data (other folds of a "
                    "cross-validation, say)%s.", label, len(others), differing)


@contextlib.contextmanager
def checkpoint_lock(directory, label=None):
    """Hold ``directory``'s lock (creating both if missing) while the ``with`` block runs;
    ``label`` names it in errors (default: ``checkpoint_dir=<directory>``).

    Raises
    ------
    ValueError
        At once, if another fit (in this process or any other) holds it.
    OSError
        If the directory cannot be created or written (the message names it).
    """
    from filelock import FileLock, Timeout

    directory = Path(directory)
    label = label or f"checkpoint_dir={str(directory)!r}"
    lock = FileLock(directory / "lock", timeout=0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise ValueError(f"{label} is in use by another fit of the same data and settings "
                         "running now (its lock file 'lock' is held), and two fits in one "
                         "journal would corrupt it. Wait for the other fit to end (then this "
                         "one resumes its search), or give this fit its own "
                         "checkpoint_dir.") from None
    except OSError as exc:
        raise _unusable(exc, label, directory) from exc
    try:
        yield directory
    finally:
        lock.release()


def _differing(journaled, given):
    """``: they differ in ...``, naming the parts of two :func:`fingerprint_parts` that
    differ; empty when either is unknown (a journal written before the parts were kept)."""
    if not isinstance(journaled, dict) or not isinstance(given, dict):
        return ""
    names = list(dict.fromkeys(_PART_NAMES.get(key, key)
                               for key in _differing_keys(journaled, given)))
    return f": they differ in {'; '.join(names)}" if names else ""


def _differing_keys(journaled, given):
    keys = [key for key in given if journaled.get(key) != given[key]]
    return keys + [key for key in journaled if key not in given]  # a setting only it has


class Journal:
    """Append-only record of finished trials in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Created if missing.
    fingerprint : str
        Of the data and settings (see :func:`fingerprint`); a directory holding another
        search is refused rather than mixed.
    parts : dict or None
        The parts' digests (:func:`fingerprint_parts`), kept so that a refusal can say what
        differs.
    label : str or None
        Names the directory in errors (default: ``checkpoint_dir=<directory>``).
    """

    def __init__(self, directory, fingerprint, parts=None, label=None):
        self._where = label or f"checkpoint_dir={str(directory)!r}"
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        #: Where each successful trial's ``trial-<id>.npz`` is (a :class:`Catalogue`'s
        #: ``directory`` reads dropped weights back from it).
        self.weights_directory = self.directory / "weights"
        self._lines = self.directory / "journal.jsonl"
        meta_path = self.directory / "meta.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError as exc:
                raise ValueError(f"{self._where}: meta.json is corrupted "
                                 f"({exc}). Use an empty directory.") from None
            if meta.get("format") != JOURNAL_FORMAT:
                raise ValueError(f"{self._where} was written in journal "
                                 f"format {meta.get('format')!r}; this version reads format "
                                 f"{JOURNAL_FORMAT}. Use an empty directory.")
            if meta.get("fingerprint") != fingerprint:
                raise ValueError(f"{self._where} holds a search of other "
                                 "data or settings, so it cannot be resumed with these"
                                 f"{_differing(meta.get('parts'), parts)}. Use an empty "
                                 "directory, or the data and settings of the journaled "
                                 "search.")
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = meta_path.with_suffix(".tmp")
            written = {"format": JOURNAL_FORMAT, "fingerprint": fingerprint}
            if parts is not None:
                written["parts"] = parts
            tmp.write_text(json.dumps(written))
            os.replace(tmp, meta_path)
        self.weights_directory.mkdir(parents=True, exist_ok=True)
        self._cut_partial_line()

    def _cut_partial_line(self):
        """Drop a last line left half-written by a crash, so the next line starts afresh."""
        if not self._lines.exists():
            return
        with open(self._lines, "rb+") as handle:
            text = handle.read()
            if text and not text.endswith(b"\n"):
                handle.truncate(text.rfind(b"\n") + 1)

    def load(self, with_arrays=True):
        """The journaled trials, in the order they finished.

        With ``with_arrays=False`` only the records are read (no weights or predictions):
        :meth:`read_arrays` fills one trial at a time, so a resumed search never holds every
        trial's weights at once.
        """
        if not self._lines.exists():
            return []
        results = []
        text = self._lines.read_text(errors="replace")
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                result = TrialResult(**json.loads(line))
            except (ValueError, TypeError) as exc:
                if number == len(lines) and not text.endswith("\n"):
                    continue  # the last line of a crash mid-write
                raise ValueError(f"{self._where}: line {number} of journal.jsonl is not a trial "
                                 f"record ({exc}): the journal is damaged. Delete that line to "
                                 "resume without it, or use an empty directory.") from None
            if with_arrays:
                self.read_arrays(result)
            results.append(result)
        return results

    def read_arrays(self, result):
        """Fill a successful journaled trial's weights and validation predictions."""
        if not result.ok:
            return result
        path = self.weights_directory / f"trial-{result.trial_id}.npz"
        try:  # data only: an object array (a pickle) is refused, never unpickled
            with np.load(path, allow_pickle=False) as arrays:
                result.valid_mean = arrays["valid_mean"]
                result.valid_var = arrays["valid_var"]
                result.state = {k[len(_STATE):]: arrays[k] for k in arrays.files
                                if k.startswith(_STATE)}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self._where}: weights/{path.name} of trial {result.trial_id} "
                             f"cannot be read ({type(exc).__name__}: {exc}); it is damaged or "
                             "was not written by autodeuq. Delete the trial's line in "
                             "journal.jsonl to train it again, or use an empty "
                             "directory.") from None
        return result

    def append(self, result):
        """Write one finished trial (weights first, then its line)."""
        if result.ok:
            path = self.weights_directory / f"trial-{result.trial_id}.npz"
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, valid_mean=result.valid_mean, valid_var=result.valid_var,
                     **{_STATE + k: v for k, v in result.state.items()})
            os.replace(tmp, path)
        with open(self._lines, "a") as handle:
            handle.write(json.dumps(result.record()) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
