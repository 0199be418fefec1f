"""Devices: "cpu" runs on numpy, "cuda" on CuPy (when installed and a GPU is present)."""
from __future__ import annotations

import numpy as np

from ..kernels.gpu import cupy_or_none

__all__ = ["device", "array_module", "cupy_or_none", "cuda_available"]


def cuda_available() -> bool:
    return cupy_or_none() is not None


class device:
    """ember.device("cpu"), ember.device("cuda:0"), ember.device("cuda", 1)."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device() expected a string or device, got {type!r}")
        if ":" in type:
            type, _, idx = type.partition(":")
            if index is not None or not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{type}:{idx}'")
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        self.type = type
        self.index = index

    @property
    def xp(self):
        """The array module holding this device's data."""
        return np if self.type == "cpu" else cupy_or_none()

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"


CPU = device("cpu")


def canonical(dev) -> device:
    """Normalise a device argument; "cuda" needs CuPy and a GPU."""
    if dev is None:
        return CPU
    if isinstance(dev, device):
        d = dev
    elif isinstance(dev, int):
        d = device("cuda", dev)
    else:
        if dev == "cpu":
            return CPU
        d = device(dev)
    if d.type == "cpu":
        return CPU
    if not cuda_available():
        raise RuntimeError("CUDA is not available: ember needs CuPy (pip install 'ember[cuda]') and an NVIDIA "
                           "GPU for device 'cuda'. Use device='cpu', or check ember.cuda.is_available().")
    if d.index is None:
        d = device("cuda", cupy_or_none().cuda.runtime.getDevice())
    if d.index >= cupy_or_none().cuda.runtime.getDeviceCount():
        raise RuntimeError(f"CUDA error: invalid device ordinal {d.index}")
    return d


def array_module(dev: device):
    """The array module (numpy or cupy) that holds data on `dev`."""
    return np if dev.type == "cpu" else cupy_or_none()
