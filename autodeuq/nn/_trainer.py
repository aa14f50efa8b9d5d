"""The trainer: a skorch ``NeuralNet`` tuned for small Gaussian networks on tabular data.

What it changes from skorch as it comes, and why:

* data live as tensors on the training device and batches are slices of them
  (:class:`TensorBatchIterator`), with no per-sample ``DataLoader`` and no child processes;
* one epoch is a tight loop: the module's train/eval mode is set once per epoch, not per
  batch; callbacks are notified only of the batch events they implement; the epoch loss is
  the size-weighted mean of the batch losses, reduced once per epoch (no per-batch history);
* a callback ends training by setting ``net.stop_training_``, checked once every callback has
  seen the epoch, and a user's Ctrl-C (``KeyboardInterrupt``) propagates instead of being
  swallowed as skorch does;
* the weights of the best validation epoch are restored from a real copy
  (:class:`BestWeights`), and a non-finite epoch loss raises ``TrainingDivergedError``.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, GradientNormClipping, LRScheduler, PrintLog
from skorch.helper import predefined_split
from torch.utils.data import Dataset

from ._callbacks import BestWeights, DivergenceGuard, RungStop, TimeLimit
from ._config import normalize_config
from ._data import TensorBatchIterator, TensorDataset
from ._device import resolve_device
from ._loss import GaussianNLLLoss
from ._module import GaussianMLP

__all__ = ["GaussianNet", "TrainedNetwork", "train_network"]

logger = logging.getLogger(__name__)

_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_grad_computed")
_VALID_BATCH_SIZE = 8192

_OPTIMIZERS = {
    # name: (class, extra keyword arguments, supports fused kernels)
    "adam": (torch.optim.Adam, {}, True),
    "adamw": (torch.optim.AdamW, {}, True),
    "sgd": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, True),
    "rmsprop": (torch.optim.RMSprop, {}, False),
}


class GaussianNet(NeuralNet):
    """skorch ``NeuralNet`` for networks returning ``(mean, var)``; see the module docstring.

    It takes every ``NeuralNet`` parameter; the defaults differ only where this module says.
    """

    def __init__(self, module, *args, criterion=GaussianNLLLoss,
                 iterator_train=TensorBatchIterator, iterator_valid=TensorBatchIterator,
                 train_split=None, verbose=0, **kwargs):
        super().__init__(module, *args, criterion=criterion, iterator_train=iterator_train,
                         iterator_valid=iterator_valid, train_split=train_split,
                         verbose=verbose, **kwargs)

    class _Stop(Exception):
        """Signal from ``notify`` to ``partial_fit`` that a callback asked to stop."""

    @property
    def _default_callbacks(self):
        callbacks = [("epoch_timer", EpochTimer())]
        if self.verbose:
            callbacks.append(("print_log", PrintLog()))
        return callbacks

    def initialize_callbacks(self):
        super().initialize_callbacks()
        # The epoch table goes last, so it shows what every other callback recorded.
        self.callbacks_.sort(key=lambda item: item[0] == "print_log")
        # Only callbacks that override a batch hook are called per batch.
        self.batch_hooks_ = {
            name: [cb for _, cb in self.callbacks_
                   if getattr(type(cb), name) is not getattr(Callback, name)]
            for name in _BATCH_HOOKS
        }
        return self

    def get_dataset(self, X, y=None):
        if isinstance(X, Dataset):
            return X
        return TensorDataset(X, y, device=self.device)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.stop_training_ = False

    def notify(self, method_name, **cb_kwargs):
        super().notify(method_name, **cb_kwargs)
        if method_name == "on_epoch_end" and self.stop_training_:
            raise self._Stop

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        # As skorch's, except that only a requested stop ends training quietly: skorch catches
        # every KeyboardInterrupt, so Ctrl-C would return a half-trained net as if it were done.
        if not self.initialized_:
            self.initialize()
        self.notify("on_train_begin", X=X, y=y)
        try:
            self.fit_loop(X, y, **fit_params)
        except self._Stop:
            pass
        self.notify("on_train_end", X=X, y=y)
        return self

    def train_step(self, batch, **fit_params):
        Xi, yi = batch
        self.optimizer_.zero_grad(set_to_none=True)
        y_pred = self.module_(Xi, **fit_params)
        loss = self.criterion_(y_pred, yi)
        loss.backward()
        for cb in self.batch_hooks_["on_grad_computed"]:
            cb.on_grad_computed(self, named_parameters=list(self.module_.named_parameters()),
                                batch=batch, training=True)
        self.optimizer_.step()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        Xi, yi = batch
        with torch.no_grad():
            y_pred = self.module_(Xi, **fit_params)
            loss = self.criterion_(y_pred, yi)
        return {"loss": loss, "y_pred": y_pred}

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        self._set_training(training)
        begin = self.batch_hooks_["on_batch_begin"]
        end = self.batch_hooks_["on_batch_end"]
        losses, sizes = [], []
        for batch in iterator:
            for cb in begin:
                cb.on_batch_begin(self, batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            sizes.append(len(batch[0]))
            for cb in end:
                cb.on_batch_end(self, batch=batch, training=training, **step)
        if losses:
            weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
            epoch_loss = (torch.stack(losses) * weights).sum() / weights.sum()
            self.history.record(prefix + "_loss", float(epoch_loss))
        self.history.record(prefix + "_batch_count", len(losses))


@dataclass
class TrainedNetwork:
    """What training one network produces.

    Attributes
    ----------
    module : GaussianMLP
        The trained module, on the CPU, in evaluation mode, holding the best epoch's weights.
    history : list of dict
        One row per epoch (``epoch``, ``train_loss``, ``valid_loss``, ``dur``, ...).
    best_epoch : int
        1-based epoch whose weights ``module`` holds (the last epoch without validation data).
    fit_time : float
        Seconds spent training.
    rung_nlls : list of [int, float]
        ``[epoch, best validation NLL so far]`` at each rung reached (``rungs`` of
        :func:`train_network`).
    discarded : bool
        Whether a rung stopped training (the network is unfinished).
    """

    module: GaussianMLP
    history: list = field(repr=False)
    best_epoch: int
    fit_time: float
    rung_nlls: list = field(default_factory=list)
    discarded: bool = False

    @property
    def n_epochs(self):
        """Number of epochs run."""
        return len(self.history)

    @property
    def best_valid_loss(self):
        """Validation NLL (training units) of the restored epoch, or None without validation."""
        if not self.history or "valid_loss" not in self.history[0]:
            return None
        return self.history[self.best_epoch - 1]["valid_loss"]


def _optimizer_params(config, device):
    cls, extra, fusable = _OPTIMIZERS[config["optimizer"]]
    params = {f"optimizer__{k}": v for k, v in extra.items()}
    params["optimizer__weight_decay"] = config["weight_decay"]
    if fusable and device.split(":")[0] in ("cpu", "cuda"):
        params["optimizer__fused"] = True
    return cls, params


def _callbacks(config, has_valid, time_limit, stop_after, rungs):
    callbacks = [("divergence_guard", DivergenceGuard())]
    if time_limit is not None:
        callbacks.append(("time_limit", TimeLimit(time_limit)))
    if stop_after is not None:
        callbacks.append(("stop_after", TimeLimit(stop_after, graceful=True)))
    if config["lr_schedule"] == "cosine":
        callbacks.append(("lr_scheduler", LRScheduler(
            policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=config["max_epochs"])))
    elif config["lr_schedule"] == "plateau":
        callbacks.append(("lr_scheduler", LRScheduler(
            policy=torch.optim.lr_scheduler.ReduceLROnPlateau,
            monitor="valid_loss" if has_valid else "train_loss",
            factor=0.5, patience=max(2, (config["patience"] or 20) // 4))))
    if config["gradient_clip"] is not None:
        callbacks.append(("gradient_clip", GradientNormClipping(config["gradient_clip"])))
    if has_valid:
        callbacks.append(("best_weights", BestWeights("valid_loss", patience=config["patience"])))
    # A rung at max_epochs or later would discard a finished network.
    rungs = [r for r in rungs or () if r[0] < config["max_epochs"]]
    if has_valid and rungs:
        callbacks.append(("rung_stop", RungStop(rungs)))
    return callbacks


def train_network(config, X_train, y_train, X_valid=None, y_valid=None, *, seed=None,
                  device="cpu", time_limit=None, stop_after=None, rungs=None, verbose=0):
    """Train one Gaussian network described by a configuration.

    Parameters
    ----------
    config : dict
        Candidate configuration (see :func:`~autodeuq.nn.normalize_config`).
    X_train, y_train : array-like of shape (n, d) and (n,)
        Training data, already scaled.
    X_valid, y_valid : array-like or None
        Validation data for early stopping and best-epoch restoring; None trains for
        ``max_epochs`` and keeps the last weights.
    seed : int, numpy SeedSequence or None
        Seeds weight initialisation, dropout and shuffling. Torch's global random state is
        saved and restored around training, so it is not disturbed.
    device : str, default="cpu"
        Where to train (see :func:`~autodeuq.nn.resolve_device`).
    time_limit : float or None, default=None
        Seconds after which training stops with ``TimeLimitExceeded`` (checked every epoch).
    stop_after : float or None, default=None
        Seconds after which training ends normally, with the best weights so far.
    rungs : sequence of (int, float) or None, default=None
        Early discarding (needs validation data): ``(epoch, threshold)`` pairs; at each
        epoch, training stops if the best validation NLL so far is above the threshold, and
        the result is marked ``discarded`` (see :class:`~autodeuq.nn.RungStop`). Rungs at or
        after ``max_epochs`` are ignored.
    verbose : int, default=0
        Print skorch's epoch table when > 0.

    Returns
    -------
    TrainedNetwork

    Raises
    ------
    TrainingDivergedError
        If a training or validation epoch loss is NaN or infinite.
    TimeLimitExceeded
        If ``time_limit`` is set and training runs past it.
    """
    config = normalize_config(config)
    device = resolve_device(device)
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    init_seed, shuffle_seed = (int(s) for s in sequence.generate_state(2))
    has_valid = X_valid is not None and len(X_valid) > 0
    optimizer, optimizer_params = _optimizer_params(config, device)
    train_split = (predefined_split(TensorDataset(X_valid, y_valid, device=device))
                   if has_valid else None)
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(init_seed)
        net = GaussianNet(
            GaussianMLP,
            module__n_features=int(np.shape(X_train)[1]),
            module__layers=config["layers"],
            optimizer=optimizer,
            lr=config["learning_rate"],
            batch_size=config["batch_size"],
            max_epochs=config["max_epochs"],
            iterator_train__shuffle=True,
            iterator_train__seed=shuffle_seed,
            iterator_valid__batch_size=_VALID_BATCH_SIZE,
            train_split=train_split,
            callbacks=_callbacks(config, has_valid, time_limit, stop_after, rungs),
            device=device,
            verbose=verbose,
            **optimizer_params,
        )
        net.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    history = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
    best_epoch = (dict(net.callbacks_)["best_weights"].best_epoch_ if has_valid
                  else len(history))
    module = net.module_.to("cpu").eval()
    logger.debug("trained %d epochs in %.2fs (best epoch %d)", len(history), fit_time,
                 best_epoch)
    rung_stop = dict(net.callbacks_).get("rung_stop")
    return TrainedNetwork(module=module, history=history, best_epoch=best_epoch,
                          fit_time=fit_time,
                          rung_nlls=[] if rung_stop is None else rung_stop.rung_values_,
                          discarded=rung_stop is not None and rung_stop.stopped_)
