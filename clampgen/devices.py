"""Device names and their resolution: the one place that knows which devices clampgen accepts.

from clampgen.devices import resolve_device
device = resolve_device("auto")       # torch.device('cuda') when a GPU is present, else cpu
"""

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # what --device accepts


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; a device that is absent is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device '{name}' (choose from: {', '.join(DEVICES)})")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)
