"""The Gaussian MLP: a torch module built from the ``"layers"`` of a configuration."""

import math

import torch
from torch import nn

__all__ = ["GaussianMLP", "make_activation"]

_ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "mish": nn.Mish,
    "identity": nn.Identity,
}

# softplus(_VAR_BIAS) == 1: a fresh network predicts unit variance on standardized targets.
_VAR_BIAS = math.log(math.e - 1.0)


def make_activation(name):
    """Return a new activation module for ``name`` (see ``ACTIVATIONS``)."""
    return _ACTIVATION_MODULES[name]()


class _Layer(nn.Module):
    """One hidden layer: linear map of the previous output, plus projected skip inputs."""

    def __init__(self, in_features, units, activation, dropout, skip_sources):
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        # One bias-free projection per earlier output that is added to this layer.
        self.skip_sources = tuple(j for j, _ in skip_sources)
        self.projections = nn.ModuleList(
            nn.Linear(width, units, bias=False) for _, width in skip_sources
        )
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h, outputs):
        z = self.linear(h)
        for j, projection in zip(self.skip_sources, self.projections, strict=True):
            z = z + projection(outputs[j])
        return self.dropout(self.activation(z))


class GaussianMLP(nn.Module):
    """A multilayer perceptron with a Gaussian head.

    Parameters
    ----------
    n_features : int
        Number of input features.
    layers : list of dict
        Hidden layers as in a configuration (``units``, ``activation``, ``dropout``,
        ``skip``), already validated by :func:`~autodeuq.nn.normalize_config`.
    var_floor : float, default=1e-6
        Smallest predicted variance (in the units the network is trained on).

    Notes
    -----
    ``forward`` returns ``(mean, var)``, two tensors of shape ``(n,)``, with
    ``var = softplus(raw) + var_floor``, so the variance is positive and smooth in the raw
    output.
    """

    def __init__(self, n_features, layers, var_floor=1e-6):
        super().__init__()
        self.var_floor = float(var_floor)
        widths = [int(n_features)]
        hidden = []
        for layer in layers:
            sources = [(j, widths[j]) for j in layer.get("skip", [])]
            hidden.append(_Layer(widths[-1], layer["units"], layer.get("activation", "relu"),
                                 layer.get("dropout", 0.0), sources))
            widths.append(layer["units"])
        self.hidden = nn.ModuleList(hidden)
        self._keep_outputs = any(layer.skip_sources for layer in hidden)
        self.head = nn.Linear(widths[-1], 2)
        with torch.no_grad():
            self.head.bias[1] = _VAR_BIAS

    def forward(self, x):
        outputs = [x] if self._keep_outputs else None
        h = x
        for layer in self.hidden:
            h = layer(h, outputs)
            if outputs is not None:
                outputs.append(h)
        raw = self.head(h)
        mean = raw[:, 0]
        var = nn.functional.softplus(raw[:, 1]) + self.var_floor
        return mean, var

    @classmethod
    def empty(cls, n_features, layers, var_floor=1e-6):
        """The network's structure on the meta device: no memory, no random numbers drawn.

        For a network whose weights come from elsewhere (:meth:`from_state_dict`), or to read
        the shapes its state dict must have: building it on the CPU would draw an
        initialization from torch's global random stream, the user's, only to throw it away.
        """
        with torch.device("meta"):
            return cls(n_features, layers, var_floor=var_floor)

    @classmethod
    def from_state_dict(cls, n_features, layers, state, var_floor=1e-6):
        """A network holding ``state``'s tensors (not copies), built without random numbers.

        Parameters
        ----------
        n_features, layers, var_floor
            As for the constructor.
        state : dict of str to torch.Tensor
            Every parameter and buffer of the network, of the shapes it has; the network
            takes their dtype and device.

        Raises
        ------
        RuntimeError
            From ``load_state_dict``, naming the missing, unexpected or misshapen entries.
        """
        module = cls.empty(n_features, layers, var_floor=var_floor)
        module.load_state_dict(state, assign=True)
        return module
