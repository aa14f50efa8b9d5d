"""Resolve the ``device`` parameter to a torch device string, with a clear error."""

import torch

__all__ = ["resolve_device"]


def resolve_device(device="cpu"):
    """Return the torch device string ``device`` stands for, checking it exists.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, or ``"auto"`` (the first CUDA GPU when
        there is one, else the CPU).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the string is not a device, or names a device this machine does not have.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'cpu', 'cuda', 'cuda:1' or 'auto'; "
                         f"got {device!r}. Pass one of those.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'; got "
                         f"{device!r}. Fix the spelling.") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if parsed.index is None else parsed.index
        if index >= count:
            raise ValueError(
                f"device={device!r} names CUDA device {index}, but this machine has {count} "
                "CUDA device(s). Use device='cpu', device='auto', or an index below the count."
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' needs Apple's Metal backend, which is not available "
                         "here. Use device='cpu' or device='auto'.")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'; got "
                         f"{device!r}.")
    return str(parsed)
