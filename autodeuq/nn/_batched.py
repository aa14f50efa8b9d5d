"""Train the K members of an ensemble of one configuration in one batched pass.

For small tabular networks a training step costs framework overhead (Python, operator
dispatch, one optimizer call per tensor) far more than arithmetic, so K networks stacked into
one :class:`~autodeuq.nn.StackedGaussianMLP` (batched matrix products on weights of shape
``(K, in, out)``) train in little more time than one. ``torch.func.functional_call`` with
``vmap`` over stacked parameters does the same job but took about twice as long per step here
(2 hidden layers of 64 units, batch 32, K=5, one CPU thread: 0.32 ms against 0.67 ms), so the
batched products are what this module uses.

Member k is trained as :func:`~autodeuq.nn.train_network` would train it from ``seeds[k]``:

* the same seed gives the same initial weights (each member is built as a ``GaussianMLP``
  after seeding torch with its own initialisation seed, then stacked) and the same shuffling
  (its own generator draws its own permutation of its own training rows every epoch);
* its own training and validation rows (``train_index[k]``, ``valid_index[k]``) and its own
  targets (``y[k]``: each member may scale the target its own way);
* the loss is the sum over members of each member's mean Gaussian NLL over its batch, so the
  gradient of a member's weights is that of its own loss alone; every optimizer of
  ``OPTIMIZERS`` updates each weight from its own gradient and state only (with the same
  learning rate, weight decay and fused kernels as the single-network trainer), so stacking
  changes nothing in the update;
* ``gradient_clip`` clips each member's own gradient norm; ``lr_schedule="cosine"`` anneals
  every member alike (all are at the same epoch); ``"plateau"`` keeps one
  ``ReduceLROnPlateau`` per member, on its own validation loss, and applies each member's
  learning rate by scaling its step (every optimizer's step is proportional to the learning
  rate given its state, so this is the update at that rate);
* early stopping and best weights are per member: a member stops when its validation NLL has
  not improved for ``patience`` epochs, keeps the weights of its own best epoch, and is then
  dropped from the stack (with its optimizer state), so the others go on at the cost of fewer
  members.

What is not the same: dropout masks come from one random stream for the whole stack (seeded
from the members' seeds), not from each member's own stream, and batched products round
differently from single ones; so results equal sequential training in distribution, and,
without dropout, nearly exactly for a few epochs. Epoch losses are logged (``verbose``)
rather than printed as skorch's table.
"""

import logging
import math
import time

import numpy as np
import torch

from ..exceptions import TrainingDivergedError
from ._callbacks import time_limit_exceeded
from ._config import normalize_config
from ._device import resolve_device
from ._loss import _HALF_LOG_2PI
from ._module import GaussianMLP
from ._stacked import StackedGaussianMLP
from ._trainer import _OPTIMIZERS, _VALID_BATCH_SIZE, TrainedNetwork

__all__ = ["member_nll", "train_networks"]

logger = logging.getLogger(__name__)


def member_nll(mean, var, target):
    """Mean Gaussian NLL of each member: :func:`gaussian_nll_loss` along the last dimension.

    Parameters
    ----------
    mean, var, target : Tensor of shape (K, n)

    Returns
    -------
    Tensor of shape (K,)
    """
    return _HALF_LOG_2PI + 0.5 * (torch.log(var) + (target - mean) ** 2 / var).mean(dim=-1)


def _fail(name, rule, value, fix):
    raise ValueError(f"{name} must be {rule}; got {value}. {fix}")


def _index(value, name, n_members, n_rows, allow_none):
    if value is None:
        if not allow_none:
            _fail(name, f"an int array of shape ({n_members}, n_rows)", None,
                  "Give each member's training rows.")
        return None
    index = np.asarray(value)
    if index.ndim != 2 or len(index) != n_members:
        _fail(name, f"an int array of shape ({n_members}, n_rows): one row of indices per "
              "member (every member the same number)", f"shape {index.shape}",
              "Stack the members' index arrays with numpy.stack.")
    if index.shape[1] == 0:
        if allow_none:
            return None
        _fail(name, "at least one row per member", f"shape {index.shape}",
              "Give each member some rows to train on.")
    if index.dtype.kind not in "iu":
        _fail(name, "an array of integer row indices", f"dtype {index.dtype}",
              "Index rows of X with ints.")
    if index.min() < 0 or index.max() >= n_rows:
        _fail(name, f"row indices in [0, {n_rows})", f"values in [{index.min()}, "
              f"{index.max()}]", "Index rows of X.")
    return torch.as_tensor(index, dtype=torch.long)


def _member_seeds(seeds):
    """``(init_seed, shuffle_seed)`` of each member, as :func:`train_network` derives them."""
    pairs = []
    for seed in seeds:
        sequence = (seed if isinstance(seed, np.random.SeedSequence)
                    else np.random.SeedSequence(seed))
        pairs.append(tuple(int(s) for s in sequence.generate_state(2)))
    return pairs


def _make_optimizer(config, params, device):
    cls, extra, fusable = _OPTIMIZERS[config["optimizer"]]
    kwargs = dict(extra, lr=config["learning_rate"], weight_decay=config["weight_decay"])
    if fusable and device.split(":")[0] in ("cpu", "cuda"):
        kwargs["fused"] = True
    return cls(params, **kwargs)


class _Run:
    """The state of one batched training run; ``members`` lists the positions still training."""

    def __init__(self, config, X, Y, train_index, valid_index, seeds, device, verbose,
                 time_limit=None, stop_after=None):
        self.config = config
        self.time_limit, self.stop_after = time_limit, stop_after
        self.device = device
        self.verbose = verbose
        self.X, self.Y = X, Y
        self.train_index, self.valid_index = train_index, valid_index
        self.has_valid = valid_index is not None
        n_members = len(seeds)
        self.members = torch.arange(n_members)
        pairs = _member_seeds(seeds)
        modules = []
        for init_seed, _ in pairs:
            torch.manual_seed(init_seed)
            modules.append(GaussianMLP(X.shape[1], config["layers"]))
        self.net = StackedGaussianMLP.from_modules(modules, X.shape[1],
                                                   config["layers"]).to(device)
        self.params = list(self.net.parameters())
        self.generators = [torch.Generator().manual_seed(s) for _, s in pairs]
        # Dropout draws from torch's global stream (inside the caller's fork_rng).
        torch.manual_seed(int(np.random.SeedSequence([s for s, _ in pairs]).generate_state(1)[0]))
        self.optimizer = _make_optimizer(config, self.params, device)
        self.cosine = self.plateaus = None
        if config["lr_schedule"] == "cosine":
            self.cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config["max_epochs"])
        elif config["lr_schedule"] == "plateau":
            # One scheduler per member, each on a stand-in optimizer holding that member's lr.
            self.plateaus = [torch.optim.lr_scheduler.ReduceLROnPlateau(
                torch.optim.SGD([torch.zeros(0, requires_grad=True)],
                                lr=config["learning_rate"]),
                factor=0.5, patience=max(2, (config["patience"] or 20) // 4))
                for _ in range(n_members)]
        self.lr_ratio = None  # (K, 1, 1) factors on the step while plateau lrs differ
        self.histories = [[] for _ in range(n_members)]
        self.best_score = [math.inf] * n_members
        self.best_epoch = [0] * n_members
        self.misses = [0] * n_members
        self.fit_time = [0.0] * n_members
        self.best_state = ({name: torch.empty_like(p) for name, p in self.net.named_parameters()}
                           if self.has_valid else None)

    # -- one epoch ---------------------------------------------------------------------------

    def _step(self, xb, yb):
        self.optimizer.zero_grad(set_to_none=True)
        mean, var = self.net(xb)
        losses = member_nll(mean, var, yb)
        losses.sum().backward()
        clip = self.config["gradient_clip"]
        if clip is not None:
            grads = [p.grad for p in self.params]
            norms = torch.stack([torch.linalg.vector_norm(g, dim=(1, 2)) for g in grads])
            # As torch.nn.utils.clip_grad_norm_, per member.
            coef = (clip / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)
            for grad in grads:
                grad.mul_(coef.view(-1, 1, 1))
        if self.lr_ratio is None:
            self.optimizer.step()
        else:
            with torch.no_grad():
                before = [p.detach().clone() for p in self.params]
                self.optimizer.step()
                for p, old in zip(self.params, before, strict=True):
                    p.sub_(old).mul_(self.lr_ratio).add_(old)
        return losses.detach()

    def _train_epoch(self):
        self.net.train()
        n_train = self.train_index.shape[1]
        if n_train > 1:
            perms = torch.stack([torch.randperm(n_train, generator=self.generators[k])
                                 for k in self.members.tolist()])
            rows = self.train_index.gather(1, perms).to(self.device)
        else:
            rows = self.train_index.to(self.device)
        size = self.config["batch_size"]
        losses, sizes = [], []
        for start in range(0, n_train, size):
            batch = rows[:, start:start + size]
            losses.append(self._step(self.X[batch], self.Y.gather(1, batch)))
            sizes.append(batch.shape[1])
        weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
        return (torch.stack(losses) * weights[:, None]).sum(0) / weights.sum(), len(losses)

    def _valid_epoch(self):
        self.net.eval()
        rows = self.valid_index.to(self.device)
        losses, sizes = [], []
        with torch.no_grad():
            for start in range(0, rows.shape[1], _VALID_BATCH_SIZE):
                batch = rows[:, start:start + _VALID_BATCH_SIZE]
                mean, var = self.net(self.X[batch])
                losses.append(member_nll(mean, var, self.Y.gather(1, batch)))
                sizes.append(batch.shape[1])
        weights = torch.tensor(sizes, dtype=losses[0].dtype, device=losses[0].device)
        return (torch.stack(losses) * weights[:, None]).sum(0) / weights.sum(), len(losses)

    # -- end of an epoch: history, divergence, schedules, best weights, stopping --------------

    def _check_finite(self, epoch, rows):
        for k, row in rows:
            for key in ("train_loss", "valid_loss"):
                value = row.get(key)
                if value is not None and not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"{key} of member {k} became {value} at epoch {epoch}: the network "
                        "diverged. Lower the learning rate, set gradient_clip, or standardize "
                        "the inputs.", epoch=epoch, loss_name=key)

    def _schedule(self, rows):
        if self.cosine is not None:
            lr = self.cosine.get_last_lr()[0]
            for _, row in rows:
                row["event_lr"] = lr
            self.cosine.step()
        if self.plateaus is not None:
            monitor = "valid_loss" if self.has_valid else "train_loss"
            for k, row in rows:
                row["event_lr"] = self.plateaus[k].get_last_lr()[0]
                self.plateaus[k].step(row[monitor])
            lrs = [self.plateaus[k].get_last_lr()[0] for k, _ in rows]
            base = self.config["learning_rate"]
            self.lr_ratio = (None if all(lr == base for lr in lrs) else torch.tensor(
                [lr / base for lr in lrs], device=self.device).view(-1, 1, 1))

    def _keep_best(self, epoch, rows):
        """Best weights and early stopping; returns the positions in the stack that go on."""
        improved, going_on = [], []
        for position, (k, row) in enumerate(rows):
            better = row["valid_loss"] < self.best_score[k]
            row["valid_loss_best"] = bool(better)
            if better:
                self.best_score[k], self.best_epoch[k], self.misses[k] = row["valid_loss"], epoch, 0
                improved.append(position)
            else:
                self.misses[k] += 1
            patience = self.config["patience"]
            if patience is not None and self.misses[k] >= patience:
                logger.debug("member %d stops at epoch %d: valid_loss has not improved for %d "
                             "epochs (best %.4f at epoch %d)", k, epoch, self.misses[k],
                             self.best_score[k], self.best_epoch[k])
            else:
                going_on.append(position)
        if improved:
            where = torch.tensor(improved, device=self.device)
            members = self.members.to(self.device)[where]
            with torch.no_grad():
                for name, p in self.net.named_parameters():
                    self.best_state[name].index_copy_(0, members, p.index_select(0, where))
        return going_on

    def _drop(self, keep):
        """Go on with the members at positions ``keep`` of the stack, and their state only."""
        where = torch.tensor(keep, device=self.device)
        with torch.no_grad():
            for p in self.params:
                state = self.optimizer.state.get(p, {})
                for key, value in state.items():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        state[key] = value.index_select(0, where)
                # The same Parameter objects keep their optimizer state and schedulers.
                p.data = p.data.index_select(0, where)
        self.net.n_members = len(keep)
        self.members = self.members[torch.tensor(keep)]
        self.Y = self.Y.index_select(0, where)
        self.train_index = self.train_index[torch.tensor(keep)]
        if self.has_valid:
            self.valid_index = self.valid_index[torch.tensor(keep)]
        if self.lr_ratio is not None:
            self.lr_ratio = self.lr_ratio.index_select(0, where)

    def run(self):
        start = time.perf_counter()
        for epoch in range(1, self.config["max_epochs"] + 1):
            epoch_start = time.perf_counter()
            train_loss, train_batches = self._train_epoch()
            columns = [train_loss]
            if self.has_valid:
                valid_loss, valid_batches = self._valid_epoch()
                columns.append(valid_loss)
            values = torch.stack(columns).cpu().tolist()  # one synchronisation per epoch
            now = time.perf_counter()
            rows = []
            for position, k in enumerate(self.members.tolist()):
                row = {"epoch": epoch, "train_loss": values[0][position],
                       "train_batch_count": train_batches}
                if self.has_valid:
                    row["valid_loss"] = values[1][position]
                    row["valid_batch_count"] = valid_batches
                row["dur"] = now - epoch_start
                rows.append((k, row))
                self.histories[k].append(row)
            self._check_finite(epoch, rows)
            if self.verbose:
                logger.info("epoch %d, %d members training: train_loss %s%s", epoch, len(rows),
                            [round(r["train_loss"], 4) for _, r in rows],
                            f", valid_loss {[round(r['valid_loss'], 4) for _, r in rows]}"
                            if self.has_valid else "")
            self._schedule(rows)
            for k, _ in rows:
                self.fit_time[k] = now - start
            elapsed = now - start
            if self.time_limit is not None and elapsed > self.time_limit:
                raise time_limit_exceeded(elapsed, self.time_limit, epoch)
            if self.has_valid:
                keep = self._keep_best(epoch, rows)
                if not keep:
                    break
                if len(keep) < len(rows):
                    self._drop(keep)
            if self.stop_after is not None and elapsed > self.stop_after:
                break  # as early stopping: every member keeps its best weights so far
        if self.has_valid:
            modules = self.net.to_modules(self.best_state)
            best_epochs = self.best_epoch
        else:
            modules = self.net.to_modules()
            best_epochs = [len(h) for h in self.histories]
        return [TrainedNetwork(module=module, history=history, best_epoch=best, fit_time=seconds)
                for module, history, best, seconds in zip(
                    modules, self.histories, best_epochs, self.fit_time, strict=True)]


def train_networks(config, X, y, train_index, valid_index=None, *, seeds, device="cpu",
                   time_limit=None, stop_after=None, verbose=0):
    """Train K Gaussian networks of one configuration together, each on its own rows.

    The result is what K calls of :func:`~autodeuq.nn.train_network`, member k on
    ``X[train_index[k]]`` validated on ``X[valid_index[k]]`` from ``seeds[k]``, give, in
    distribution (see the module docstring for what is exactly the same and what is not),
    in a fraction of their time for small networks.

    Parameters
    ----------
    config : dict
        Candidate configuration shared by every member (see
        :func:`~autodeuq.nn.normalize_config`).
    X : array-like of shape (n, d)
        Features of every row, already scaled.
    y : array-like of shape (n,) or (K, n)
        Targets, already scaled: one vector for every member, or one per member.
    train_index : int array-like of shape (K, n_train)
        Rows of ``X`` each member trains on (every member the same number of rows).
    valid_index : int array-like of shape (K, n_valid) or None, default=None
        Rows each member is validated on, for early stopping and best-epoch weights; None (or
        zero columns) trains every member ``max_epochs`` and keeps its last weights.
    seeds : sequence of int, numpy SeedSequence or None
        One per member, used as :func:`~autodeuq.nn.train_network` uses its ``seed``. Torch's
        global random state is saved and restored around training.
    device : str, default="cpu"
        Where to train (see :func:`~autodeuq.nn.resolve_device`).
    time_limit : float or None, default=None
        Seconds after which training stops with ``TimeLimitExceeded`` (checked every epoch),
        as :func:`~autodeuq.nn.train_network`'s.
    stop_after : float or None, default=None
        Seconds after which training ends normally, every member with its best weights so
        far (the last ones without validation rows).
    verbose : int, default=0
        Log every epoch's losses at INFO level (on this module's logger) when > 0.

    Returns
    -------
    list of TrainedNetwork
        One per member, in the order of ``seeds``: its own ``GaussianMLP`` (CPU, evaluation
        mode, its best epoch's weights), history, best epoch, and the seconds from the start
        until it stopped (training alongside the others).

    Raises
    ------
    ValueError
        If the shapes of ``X``, ``y``, the indices or ``seeds`` do not fit together.
    TrainingDivergedError
        If a member's training or validation epoch loss is NaN or infinite.
    TimeLimitExceeded
        If training runs past ``time_limit``.
    """
    config = normalize_config(config)
    device = resolve_device(device)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or len(seeds) == 0:
        _fail("seeds", "a non-empty sequence, one seed per member", repr(seeds),
              "Pass e.g. numpy.random.SeedSequence(0).spawn(5) for five members.")
    n_members = len(seeds)
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=torch.float32)
    if X.ndim != 2 or len(X) == 0:
        _fail("X", "a 2-D array (n_rows, n_features) with rows", f"shape {tuple(X.shape)}",
              "Reshape it, e.g. X.reshape(-1, 1).")
    Y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.float32)
    if Y.ndim == 1:
        Y = Y.expand(n_members, -1)
    if Y.shape != (n_members, len(X)):
        _fail("y", f"of shape ({len(X)},) or ({n_members}, {len(X)}): one target per row of X,"
              " shared or one vector per member", f"shape {tuple(Y.shape)}",
              "Pass one target per row of X.")
    train_index = _index(train_index, "train_index", n_members, len(X), allow_none=False)
    valid_index = _index(valid_index, "valid_index", n_members, len(X), allow_none=True)

    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        run = _Run(config, X.to(device), Y.contiguous().to(device), train_index, valid_index,
                   seeds, device, verbose, time_limit=time_limit, stop_after=stop_after)
        results = run.run()
    logger.debug("trained %d members in one batch: %s epochs", n_members,
                 [r.n_epochs for r in results])
    return results
