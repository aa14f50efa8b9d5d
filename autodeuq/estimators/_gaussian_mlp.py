"""GaussianMLPRegressor: one Gaussian network, the baseline every ensemble is built from."""

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.preprocessing import StandardScaler

from ..nn import GaussianMLP, layers_from_params, normalize_config, resolve_device, train_network
from ..uncertainty import NormalMixture
from ._base import (
    UncertaintyRegressorMixin,
    check_fitted,
    check_target,
    holdout_split,
    seed_sequence,
    target_scaling,
    validate_data,
)

__all__ = ["GaussianMLPRegressor"]

_PREDICT_CHUNK = 65536


def validation_rows(n, fraction):
    """Rows held out for early stopping out of ``n`` (``validation_fraction``), checked to
    leave at least one to train on."""
    n_valid = math.ceil(fraction * n) if fraction else 0
    if n - n_valid < 1:
        raise ValueError(
            f"X has {n} sample(s) but validation_fraction={fraction} holds out {n_valid}, "
            f"leaving none to train on; got n_samples = {n}. Pass more samples or "
            "validation_fraction=0."
        )
    return n_valid


class GaussianMLPRegressor(UncertaintyRegressorMixin, RegressorMixin, BaseEstimator):
    """A neural network that predicts a Gaussian: a mean and a variance for every input.

    The network is an MLP whose head outputs a mean and a variance (``softplus`` of a raw
    output plus a small floor), trained by minimising the Gaussian negative log-likelihood
    with the weights of the best validation epoch restored at the end. Inputs and target are
    standardized inside the estimator; every prediction is in the units of y. Its predictive
    uncertainty is purely aleatoric (epistemic is zero); an ensemble of such networks
    (:class:`DeepEnsembleRegressor`) adds the epistemic part.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(128, 128)
        Width of each hidden layer; ``()`` gives a linear Gaussian model.
    activation : str or sequence of str, default="relu"
        One of ``autodeuq.nn.ACTIVATIONS``, for every layer or one per layer.
    dropout : float or sequence of float, default=0.0
        Dropout rate after each hidden layer, one for all or one per layer.
    skip_connections : None, "all" or sequence of sequences of int, default=None
        Extra inputs of each layer: earlier outputs (0 is the input features) projected to the
        layer's width and added. ``"all"`` connects every earlier output.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}, default="adam"
    learning_rate : float, default=3e-3
    batch_size : int, default=32
    max_epochs : int, default=1000
    weight_decay : float, default=0.0
        L2 penalty (decoupled for ``"adamw"``).
    early_stopping : bool, default=True
        Stop when the validation NLL has not improved for ``patience`` epochs. The best
        epoch's weights are restored either way when there is validation data.
    patience : int, default=100
    validation_fraction : float, default=0.1
        Fraction of the training data held out for early stopping and weight restoring, in
        [0, 1). With 0, training runs ``max_epochs`` and keeps the last weights.
    lr_schedule : {None, "cosine", "plateau"}, default=None
    gradient_clip : float or None, default=None
        Clip the gradient norm to this value.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the validation split, weight initialisation, dropout and shuffling.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. Training runs there; the fitted
        network is kept on the CPU, so the fitted estimator pickles and predicts anywhere.
    verbose : int, default=0
        Print the epoch table while training when > 0.

    Attributes
    ----------
    config_ : dict
        The network's full configuration (architecture and training), JSON-able.
    module_ : autodeuq.nn.GaussianMLP
        The trained torch module (CPU, evaluation mode; trained in float32, kept in float64 so
        that predictions do not depend on how rows are batched).
    x_scaler_ : sklearn.preprocessing.StandardScaler
    y_mean_, y_scale_ : float
        Target standardization: the network models ``(y - y_mean_) / y_scale_``.
    history_ : list of dict
        One row per epoch: ``train_loss``, ``valid_loss`` (NLL of standardized y), ``dur``...
    n_epochs_ : int
    best_epoch_ : int
    validation_nll_ : float or None
        Validation NLL of the restored weights, in the units of y.
    std_scale_ : float
        Factor on the predicted standard deviation: 1 when fitted here; a search
        (:class:`NASRegressor`) sets it when it recalibrates the network it keeps.
    interval_pits_ : ndarray of shape (n_held_out,) or None
        Sorted predictive CDF values of held-out targets that calibrate
        :meth:`predict_interval`: None when fitted here, set by :meth:`calibrate_intervals`
        (and by :class:`NASRegressor` on its validation part).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X has feature names.

    Examples
    --------
    >>> from autodeuq import GaussianMLPRegressor
    >>> from autodeuq.datasets import make_tutorial_regression
    >>> X, y, X_test, y_test = make_tutorial_regression(random_state=0)
    >>> est = GaussianMLPRegressor(max_epochs=50, random_state=0).fit(X, y)
    >>> mean, std = est.predict(X_test, return_std=True)
    """

    def __init__(self, hidden_layer_sizes=(128, 128), activation="relu", dropout=0.0,
                 skip_connections=None, optimizer="adam", learning_rate=3e-3, batch_size=32,
                 max_epochs=1000, weight_decay=0.0, early_stopping=True, patience=100,
                 validation_fraction=0.1, lr_schedule=None, gradient_clip=None,
                 random_state=None, device="cpu", verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.skip_connections = skip_connections
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.lr_schedule = lr_schedule
        self.gradient_clip = gradient_clip
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- configuration ---------------------------------------------------------------------

    def get_config(self):
        """Return the network configuration these parameters describe (validated, JSON-able).

        Raises
        ------
        autodeuq.exceptions.ConfigError
            If a parameter breaks its rule; the message names it, the rule, the value and
            the fix.
        """
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping must be True or False; got "
                             f"{self.early_stopping!r}. Pass early_stopping=False to train "
                             "max_epochs epochs.")
        return normalize_config({
            "layers": layers_from_params(self.hidden_layer_sizes, self.activation,
                                         self.dropout, self.skip_connections),
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "weight_decay": self.weight_decay,
            "patience": self.patience if self.early_stopping else None,
            "lr_schedule": self.lr_schedule,
            "gradient_clip": self.gradient_clip,
        })

    @classmethod
    def params_from_config(cls, config):
        """Map a configuration to the estimator parameters that reproduce it.

        Parameters
        ----------
        config : dict
            A candidate configuration (see :func:`autodeuq.nn.normalize_config`).

        Returns
        -------
        dict
            Keyword arguments for :class:`GaussianMLPRegressor` or its ``set_params``.
        """
        config = normalize_config(config)
        layers = config["layers"]
        return {
            "hidden_layer_sizes": tuple(layer["units"] for layer in layers),
            "activation": [layer["activation"] for layer in layers],
            "dropout": [layer["dropout"] for layer in layers],
            "skip_connections": ([list(layer["skip"]) for layer in layers]
                                 if any(layer["skip"] for layer in layers) else None),
            "optimizer": config["optimizer"],
            "learning_rate": config["learning_rate"],
            "batch_size": config["batch_size"],
            "max_epochs": config["max_epochs"],
            "weight_decay": config["weight_decay"],
            "early_stopping": config["patience"] is not None,
            "patience": config["patience"] if config["patience"] is not None else cls().patience,
            "lr_schedule": config["lr_schedule"],
            "gradient_clip": config["gradient_clip"],
        }

    @classmethod
    def from_config(cls, config, **params):
        """Make an unfitted estimator from a configuration, plus other parameters."""
        return cls(**{**cls.params_from_config(config), **params})

    def _check_params(self):
        fraction = self.validation_fraction
        if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
                or not 0.0 <= fraction < 1.0):
            raise ValueError(f"validation_fraction must be a float in [0, 1); got {fraction!r}. "
                             "Use 0.1 to hold out 10% of the data, or 0 for none.")
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an int >= 0; got {self.verbose!r}. Use 0 "
                             "(silent) or 1 (the epoch table).")
        config = self.get_config()
        return config, resolve_device(self.device)

    # -- fit / predict -----------------------------------------------------------------------

    def fit(self, X, y):
        """Fit the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        config, device = self._check_params()
        check_target(y)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        n = len(X)
        n_valid = validation_rows(n, self.validation_fraction)
        split_seq, train_seq = seed_sequence(self.random_state).spawn(2)
        train, valid = holdout_split(n, n_valid, split_seq)

        x_scaler = StandardScaler().fit(X)
        Xs = x_scaler.transform(X)
        y_mean, y_scale = target_scaling(y[train])
        ys = (y - y_mean) / y_scale

        result = train_network(
            config, Xs[train], ys[train],
            Xs[valid] if n_valid else None, ys[valid] if n_valid else None,
            seed=train_seq, device=device, verbose=self.verbose,
        )
        return self._set_fitted(config, x_scaler, y_mean, y_scale, result)

    def _set_fitted(self, config, x_scaler, y_mean, y_scale, result):
        """Set the fitted attributes from a trained network (:class:`autodeuq.nn.TrainedNetwork`
        on inputs scaled by ``x_scaler`` and y standardized by ``y_mean`` and ``y_scale``);
        :meth:`fit` and the batched training of an ensemble's members share it."""
        self.config_ = config
        self.x_scaler_ = x_scaler
        self.y_mean_ = y_mean
        self.y_scale_ = y_scale
        self.history_ = result.history
        self.n_epochs_ = result.n_epochs
        self.best_epoch_ = result.best_epoch
        valid_loss = result.best_valid_loss
        self.validation_nll_ = None if valid_loss is None else valid_loss + math.log(y_scale)
        self.std_scale_ = 1.0
        self.interval_pits_ = None
        # Trained in float32; kept in float64 so that a row's prediction does not depend on
        # the other rows of the batch (float32 matrix products round differently by shape).
        self.module_ = result.module.double()
        return self

    @classmethod
    def _from_trained(cls, config, state, *, n_features, y_mean, y_scale, history=None,
                      n_epochs=0, best_epoch=0, validation_nll=None, **params):
        """A fitted estimator from weights trained elsewhere (a search trial), on inputs that
        are already scaled (its own input scaler is the identity)."""
        config = normalize_config(config)
        est = cls.from_config(config, **params)
        # No initialization drawn from torch's global stream, the user's (from_state_dict).
        module = GaussianMLP.from_state_dict(
            n_features, config["layers"],
            {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in state.items()})
        est.config_ = config
        est.module_ = module.eval()
        est.x_scaler_ = StandardScaler(with_mean=False, with_std=False).fit(
            np.zeros((1, n_features)))
        est.n_features_in_ = n_features
        est.y_mean_, est.y_scale_ = float(y_mean), float(y_scale)
        est.history_ = history or []
        est.n_epochs_, est.best_epoch_ = n_epochs, best_epoch
        est.validation_nll_ = validation_nll
        est.std_scale_ = 1.0
        est.interval_pits_ = None
        return est

    def _predict_standardized(self, X):
        """Mean and variance of the standardized target, as float64 arrays."""
        check_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Xs = torch.as_tensor(self.x_scaler_.transform(X), dtype=torch.float64)
        means, variances = [], []
        self.module_.eval()
        with torch.inference_mode():
            for start in range(0, len(Xs), _PREDICT_CHUNK):
                mean, var = self.module_(Xs[start:start + _PREDICT_CHUNK])
                means.append(mean)
                variances.append(var)
        return (torch.cat(means).double().numpy(), torch.cat(variances).double().numpy())

    def predict_distribution(self, X):
        """Predict the Gaussian of y for every row of X.

        Returns
        -------
        autodeuq.uncertainty.NormalMixture
            One component per sample, in the units of y.
        """
        mean, var = self._predict_standardized(X)
        std = np.sqrt(var) * getattr(self, "std_scale_", 1.0)  # older pickles: no factor
        return NormalMixture(mean, std).affine(self.y_mean_, self.y_scale_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
