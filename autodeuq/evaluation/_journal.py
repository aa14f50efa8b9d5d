"""Journal: every finished trial on disk, so an interrupted search resumes where it stopped.

A directory holds ``meta.json`` (format version and a fingerprint of the data and search
settings), ``journal.jsonl`` (one JSON line per finished trial) and ``weights/`` (one ``.npz``
per successful trial: weights and validation predictions). Loading runs no code: JSON and
``numpy.load(allow_pickle=False)`` only.

Each trial's weights are written to a temporary file and renamed before its journal line is
appended and flushed, so a crash at any point leaves either a complete trial or none (a
half-written last line is cut off when the journal is opened again).

One search at a time: :func:`checkpoint_lock` holds an OS lock on ``lock`` in the directory
for the whole fit (released when the fit ends, however it ends, or its process dies), so two
fits given the same directory never interleave their lines.
"""

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ._result import TrialResult

__all__ = ["JOURNAL_FORMAT", "Journal", "checkpoint_lock", "fingerprint", "fingerprint_parts"]

JOURNAL_FORMAT = 1
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


# What differs, in a fit's words, when a part of the fingerprint does (see _search_base).
_PART_NAMES = {
    "data": "X, y or their validation split (random_state, validation_fraction)",
    "scaling": "X, y or their validation split (random_state, validation_fraction)",
    "space": "search_space",
    "algorithm": "algorithm",
    "seed": "random_state",
    "early_discard": "early_discard",
}


@contextlib.contextmanager
def checkpoint_lock(directory):
    """Hold ``directory``'s lock (creating both if missing) while the ``with`` block runs.

    Raises
    ------
    ValueError
        At once, if another fit (in this process or any other) holds it.
    OSError
        If the directory cannot be created or written (the message names it).
    """
    from filelock import FileLock, Timeout

    directory = Path(directory)
    lock = FileLock(directory / "lock", timeout=0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise ValueError(f"checkpoint_dir={str(directory)!r} is in use by another fit running "
                         "now (its lock file 'lock' is held), and two searches in one journal "
                         "would corrupt it. Give each concurrent fit its own checkpoint_dir, "
                         "or wait for the other fit to end.") from None
    except OSError as exc:  # a file on the way, no permission, a read-only file system
        raise type(exc)(f"checkpoint_dir={str(directory)!r} cannot be used: "
                        f"{exc.strerror or exc} ({str(exc.filename or directory)!r}). Pass a "
                        "directory this process can create and write to, or "
                        "checkpoint_dir=None.") from exc
    try:
        yield directory
    finally:
        lock.release()


def _differing(journaled, given):
    """``: they differ in ...``, naming the parts of two :func:`fingerprint_parts` that
    differ; empty when either is unknown (a journal written before the parts were kept)."""
    if not isinstance(journaled, dict) or not isinstance(given, dict):
        return ""
    keys = [key for key in given if journaled.get(key) != given[key]]
    keys += [key for key in journaled if key not in given]  # a setting only the journal has
    names = list(dict.fromkeys(_PART_NAMES.get(key, key) for key in keys))
    return f": they differ in {'; '.join(names)}" if names else ""


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
    """

    def __init__(self, directory, fingerprint, parts=None):
        self._where = f"checkpoint_dir={str(directory)!r}"
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self._weights = self.directory / "weights"
        self._lines = self.directory / "journal.jsonl"
        meta_path = self.directory / "meta.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError as exc:
                raise ValueError(f"checkpoint_dir={str(directory)!r}: meta.json is corrupted "
                                 f"({exc}). Use an empty directory.") from None
            if meta.get("format") != JOURNAL_FORMAT:
                raise ValueError(f"checkpoint_dir={str(directory)!r} was written in journal "
                                 f"format {meta.get('format')!r}; this version reads format "
                                 f"{JOURNAL_FORMAT}. Use an empty directory.")
            if meta.get("fingerprint") != fingerprint:
                raise ValueError(f"checkpoint_dir={str(directory)!r} holds a search of other "
                                 "data or settings, so it cannot be resumed with these"
                                 f"{_differing(meta.get('parts'), parts)}. Use an empty "
                                 "directory (one per search: each fit of a cross-validation or "
                                 "a grid search is a search of its own), or the data and "
                                 "settings of the journaled search.")
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = meta_path.with_suffix(".tmp")
            written = {"format": JOURNAL_FORMAT, "fingerprint": fingerprint}
            if parts is not None:
                written["parts"] = parts
            tmp.write_text(json.dumps(written))
            os.replace(tmp, meta_path)
        self._weights.mkdir(parents=True, exist_ok=True)
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
        path = self._weights / f"trial-{result.trial_id}.npz"
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
            path = self._weights / f"trial-{result.trial_id}.npz"
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, valid_mean=result.valid_mean, valid_var=result.valid_var,
                     **{_STATE + k: v for k, v in result.state.items()})
            os.replace(tmp, path)
        with open(self._lines, "a") as handle:
            handle.write(json.dumps(result.record()) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
