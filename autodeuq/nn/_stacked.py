"""K Gaussian networks of one architecture held as one module, with stacked weights.

:class:`StackedGaussianMLP` computes what K :class:`~autodeuq.nn.GaussianMLP` of the same
``layers`` compute, for K batches at once: every ``nn.Linear`` becomes one batched matrix
product (``torch.baddbmm``) on weights of shape ``(K, in, out)``. Its parameters have the
names of a ``GaussianMLP``'s (``hidden.0.linear.weight``, ``head.bias``...), with the members
stacked along a first dimension, so moving members in and out is a transpose per tensor.
"""

import torch
from torch import nn

from ._module import GaussianMLP, make_activation

__all__ = ["StackedGaussianMLP"]


class _StackedLinear(nn.Module):
    """K linear maps: ``x (K, n, in) -> x @ weight + bias``, weight ``(K, in, out)``."""

    def __init__(self, n_members, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class _StackedLayer(nn.Module):
    """One hidden layer of K members (see ``GaussianMLP``'s ``_Layer``)."""

    def __init__(self, n_members, in_features, units, activation, dropout, skip_sources):
        super().__init__()
        self.linear = _StackedLinear(n_members, in_features, units)
        self.skip_sources = tuple(j for j, _ in skip_sources)
        self.projections = nn.ModuleList(
            _StackedLinear(n_members, width, units, bias=False) for _, width in skip_sources
        )
        # Elementwise, so it acts on (K, n, units) as on (n, units): every activation in
        # ACTIVATIONS is; dropout draws an independent mask entry for every member and row.
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h, outputs):
        z = self.linear(h)
        for j, projection in zip(self.skip_sources, self.projections, strict=True):
            z = z + projection(outputs[j])
        return self.dropout(self.activation(z))


def _to_stacked(name, tensors):
    """Stack the members' values of one ``GaussianMLP`` parameter into its stacked shape."""
    if name.endswith("bias"):
        return torch.stack(list(tensors)).unsqueeze(1)  # (out,) -> (K, 1, out)
    return torch.stack([t.T for t in tensors])  # (out, in) -> (K, in, out)


def _to_member(name, tensor):
    """One member's value of a parameter, from its slice of the stacked tensor."""
    if name.endswith("bias"):
        return tensor[0].clone()
    return tensor.T.contiguous()


class StackedGaussianMLP(nn.Module):
    """K Gaussian MLPs of one architecture, evaluated together by batched matrix products.

    Parameters
    ----------
    n_members : int
        Number of networks K.
    n_features : int
        Number of input features.
    layers : list of dict
        Hidden layers, as for :class:`~autodeuq.nn.GaussianMLP` (validated).
    var_floor : float, default=1e-6
        Smallest predicted variance, as for ``GaussianMLP``.

    Notes
    -----
    The parameters are left uninitialised (no random numbers are drawn): fill them with
    :meth:`from_modules`, which stacks K initialised ``GaussianMLP``, so that member k starts
    exactly where a ``GaussianMLP`` built from its own seed starts. ``forward`` takes ``x`` of
    shape ``(K, n, n_features)``, member k's rows in ``x[k]``, and returns ``(mean, var)`` of
    shape ``(K, n)``. :meth:`to_modules` unstacks the weights into K ordinary ``GaussianMLP``.
    """

    def __init__(self, n_members, n_features, layers, var_floor=1e-6):
        super().__init__()
        self.n_members = int(n_members)
        self.n_features = int(n_features)
        self.layers = [dict(layer) for layer in layers]
        self.var_floor = float(var_floor)
        widths = [self.n_features]
        hidden = []
        for layer in self.layers:
            sources = [(j, widths[j]) for j in layer.get("skip", [])]
            hidden.append(_StackedLayer(self.n_members, widths[-1], layer["units"],
                                        layer.get("activation", "relu"),
                                        layer.get("dropout", 0.0), sources))
            widths.append(layer["units"])
        self.hidden = nn.ModuleList(hidden)
        self._keep_outputs = any(layer.skip_sources for layer in hidden)
        self.head = _StackedLinear(self.n_members, widths[-1], 2)

    @classmethod
    def from_modules(cls, modules, n_features, layers):
        """Stack the weights of K ``GaussianMLP`` built from the same ``layers``.

        Parameters
        ----------
        modules : sequence of GaussianMLP
            The members, all of ``n_features`` inputs and the same ``layers``.
        n_features : int
        layers : list of dict

        Returns
        -------
        StackedGaussianMLP
            On the device and with the dtype of the members' weights.

        Raises
        ------
        ValueError
            If ``modules`` is empty, or a member's weights do not have the shapes ``layers``
            describes, or the members' variance floors differ.
        """
        modules = list(modules)
        if not modules:
            raise ValueError("modules must hold at least one GaussianMLP; got an empty "
                             "sequence. Pass the K networks to stack.")
        floors = {float(m.var_floor) for m in modules}
        if len(floors) != 1:
            raise ValueError(f"modules must share one var_floor; got {sorted(floors)}. Build "
                             "every member with the same var_floor.")
        states = [m.state_dict() for m in modules]
        with torch.device("meta"):
            stacked = cls(len(modules), n_features, layers, var_floor=floors.pop())
        expected = {name: tuple(p.shape[1:]) for name, p in stacked.named_parameters()}
        for i, state in enumerate(states):
            shapes = {name: tuple(_to_stacked(name, [t]).shape[1:])
                      for name, t in state.items()}
            if shapes != expected:
                raise ValueError(f"modules[{i}] does not have the weights of the network "
                                 f"layers describes: got shapes {shapes}, expected "
                                 f"{expected}. Build every member from the same layers.")
        stacked_state = {name: _to_stacked(name, [s[name] for s in states]) for name in expected}
        stacked.load_state_dict(stacked_state, assign=True)
        return stacked

    def member_state_dict(self, k, state=None):
        """The state dict of a ``GaussianMLP`` holding member ``k``'s weights (copies).

        Parameters
        ----------
        k : int
            Position of the member in the stack.
        state : dict or None, default=None
            A state dict of this module (e.g. a copy taken at an earlier epoch); None uses
            the current weights.
        """
        state = self.state_dict() if state is None else state
        return {name: _to_member(name, value[k].detach()) for name, value in state.items()}

    def to_modules(self, state=None, device="cpu"):
        """Unstack into K ordinary ``GaussianMLP`` holding copies of the weights.

        Parameters
        ----------
        state : dict or None, default=None
            As for :meth:`member_state_dict`.
        device : str, default="cpu"
            Where the returned modules live.

        Returns
        -------
        list of GaussianMLP
            In evaluation mode, one per member, in the order of the stack.
        """
        state = self.state_dict() if state is None else state
        modules = []
        for k in range(len(next(iter(state.values())))):
            member = {name: value.to(device)
                      for name, value in self.member_state_dict(k, state).items()}
            modules.append(GaussianMLP.from_state_dict(self.n_features, self.layers, member,
                                                       var_floor=self.var_floor).eval())
        return modules

    def forward(self, x):
        outputs = [x] if self._keep_outputs else None
        h = x
        for layer in self.hidden:
            h = layer(h, outputs)
            if outputs is not None:
                outputs.append(h)
        raw = self.head(h)
        mean = raw[..., 0]
        var = nn.functional.softplus(raw[..., 1]) + self.var_floor
        return mean, var
