"""skorch callbacks of the trainer: best-epoch weights with early stopping, divergence guard,
time limits and the rungs of early discarding."""

import logging
import math
import time

from skorch.callbacks import Callback

from ..exceptions import TimeLimitExceeded, TrainingDivergedError

__all__ = ["BestWeights", "DivergenceGuard", "RungStop", "TimeLimit"]

logger = logging.getLogger(__name__)


class BestWeights(Callback):
    """Keep a copy of the weights of the best epoch; optionally stop when it stops improving.

    To stop, it sets ``net.stop_training_``; the trainer ends training once every callback has
    seen the epoch. (skorch's own ``EarlyStopping`` raises ``KeyboardInterrupt`` instead, which
    skips the callbacks after it and makes a user's Ctrl-C indistinguishable from a stop.)

    Parameters
    ----------
    monitor : str, default="valid_loss"
        History key to minimise.
    patience : int or None, default=None
        Stop after this many epochs without improvement; None never stops early.
    min_delta : float, default=0.0
        Smallest decrease that counts as an improvement.

    Attributes
    ----------
    best_score_ : float
    best_epoch_ : int
        1-based epoch whose weights are restored at the end of training.
    """

    def __init__(self, monitor="valid_loss", patience=None, min_delta=0.0):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta

    def initialize(self):
        self.best_score_ = math.inf
        self.best_epoch_ = 0
        self.best_state_ = None
        self.misses_ = 0
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()

    def on_epoch_end(self, net, **kwargs):
        score = net.history[-1][self.monitor]
        improved = score < self.best_score_ - self.min_delta
        net.history.record(f"{self.monitor}_best", bool(improved))
        if improved:
            self.best_score_ = score
            self.best_epoch_ = len(net.history)
            # A real copy: the live parameters keep changing after this epoch.
            self.best_state_ = {k: v.detach().clone() for k, v in
                                net.module_.state_dict().items()}
            self.misses_ = 0
            return
        self.misses_ += 1
        if self.patience is not None and self.misses_ >= self.patience:
            logger.debug("stopping at epoch %d: %s has not improved for %d epochs (best %.4f "
                         "at epoch %d)", len(net.history), self.monitor, self.misses_,
                         self.best_score_, self.best_epoch_)
            net.stop_training_ = True

    def on_train_end(self, net, **kwargs):
        if self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)


class DivergenceGuard(Callback):
    """Raise :class:`~autodeuq.exceptions.TrainingDivergedError` on a non-finite epoch loss.

    The epoch loss is the mean of the batch losses, so one NaN or infinite batch shows here
    without a check (and a device synchronisation) on every batch.
    """

    def __init__(self, keys=("train_loss", "valid_loss")):
        self.keys = keys

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        for key in self.keys:
            value = row.get(key)
            if value is not None and not math.isfinite(value):
                epoch = len(net.history)
                raise TrainingDivergedError(
                    f"{key} became {value} at epoch {epoch}: the network diverged. Lower the "
                    "learning rate, set gradient_clip, or standardize the inputs.",
                    epoch=epoch, loss_name=key,
                )


def time_limit_exceeded(elapsed, seconds, epochs):
    """The error of a training that ran ``elapsed`` seconds, past its limit of ``seconds``,
    after ``epochs`` epochs (single or batched training alike)."""
    return TimeLimitExceeded(
        f"training ran {elapsed:.1f}s, past its time limit of {seconds}s, after {epochs} "
        f"epochs. Raise the limit or lower max_epochs."
    )


class TimeLimit(Callback):
    """End training once it has run ``seconds``, checked at the end of every epoch.

    Parameters
    ----------
    seconds : float
    graceful : bool, default=False
        False raises :class:`~autodeuq.exceptions.TimeLimitExceeded` (a trial past its
        timeout); True stops training as early stopping does, keeping the best weights so far
        (a search whose time budget runs out).
    """

    def __init__(self, seconds, graceful=False):
        self.seconds = seconds
        self.graceful = graceful

    def on_train_begin(self, net, **kwargs):
        self.start_ = time.monotonic()

    def on_epoch_end(self, net, **kwargs):
        elapsed = time.monotonic() - self.start_
        if elapsed > self.seconds and self.graceful:
            net.stop_training_ = True
        elif elapsed > self.seconds:
            raise time_limit_exceeded(elapsed, self.seconds, len(net.history))


class RungStop(Callback):
    """Stop training at a rung epoch when the best validation NLL so far is above its threshold.

    The rungs of early discarding (see :mod:`autodeuq.evaluation._discard`): at each rung epoch
    the best ``monitor`` value so far is recorded, and training stops (as early stopping does,
    through ``net.stop_training_``) if it is above the rung's threshold. Other epochs cost one
    integer comparison.

    Parameters
    ----------
    rungs : sequence of (int, float)
        ``(epoch, threshold)`` pairs in increasing epoch order (1-based epochs); a threshold of
        ``inf`` records the value without ever stopping.
    monitor : str, default="valid_loss"

    Attributes
    ----------
    rung_values_ : list of [int, float]
        ``[epoch, best value so far]`` at each rung reached.
    stopped_ : bool
        Whether a rung stopped training.
    """

    def __init__(self, rungs, monitor="valid_loss"):
        self.rungs = rungs
        self.monitor = monitor

    def initialize(self):
        self.rung_values_ = []
        self.stopped_ = False
        self._rung = 0
        self._next_epoch = self.rungs[0][0] if len(self.rungs) else 0
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) != self._next_epoch:
            return
        epoch, threshold = self.rungs[self._rung]
        best = float(min(net.history[:, self.monitor]))
        self.rung_values_.append([int(epoch), best])
        self._rung += 1
        self._next_epoch = self.rungs[self._rung][0] if self._rung < len(self.rungs) else 0
        if best > threshold:
            logger.debug("discarding at epoch %d: best %s %.4f is above the rung's threshold "
                         "%.4f", epoch, self.monitor, best, threshold)
            self.stopped_ = True
            net.stop_training_ = True
