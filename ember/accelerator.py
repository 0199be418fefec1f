"""ember.accelerator: PyTorch 2.6's device-generic API (torch.accelerator), which training scripts
call first thing:

    device = ember.accelerator.current_accelerator() if ember.accelerator.is_available() else "cpu"

ember's one accelerator is CUDA (through CuPy). Without a GPU it answers as PyTorch does on a
CPU-only machine: is_available() False, current_accelerator() None, device_count() 0, and the
calls that need a device raise "Cannot access accelerator device when none is available."
"""
from __future__ import annotations

import contextlib

from . import cuda as _cuda
from .frontend.device import device as _device

__all__ = ["current_accelerator", "current_device_idx", "current_device_index", "device_count", "device_index",
           "empty_cache", "is_available", "max_memory_allocated", "memory_allocated", "set_device_idx",
           "set_device_index", "synchronize"]


def _need() -> None:
    if not _cuda.is_available():
        raise RuntimeError("Cannot access accelerator device when none is available.")


def _index(device) -> int:
    """An index from an int, "cuda:1", or an ember.device (None means the current device)."""
    if device is None:
        return current_device_index()
    if isinstance(device, int):
        return device
    d = _device(device)
    if d.type != "cuda":
        raise ValueError(f"{d.type} doesn't match the current accelerator cuda.")
    return d.index if d.index is not None else current_device_index()


def is_available() -> bool:
    """True when an accelerator (a CUDA GPU with CuPy) is present."""
    return _cuda.is_available()


def current_accelerator(check_available: bool = False) -> _device | None:
    """ember.device("cuda") when a GPU is present, else None (check_available is accepted, as in PyTorch)."""
    return _device("cuda") if _cuda.is_available() else None


def device_count() -> int:
    """Number of accelerator devices (0 without one)."""
    return _cuda.device_count() if _cuda.is_available() else 0


def current_device_index() -> int:
    _need()
    return _cuda.current_device()


def set_device_index(device, /) -> None:
    _need()
    _cuda.set_device(_index(device))


def synchronize(device=None, /) -> None:
    """Wait for all queued work on the device to finish."""
    _need()
    _cuda.synchronize(device)


@contextlib.contextmanager
def device_index(device, /):
    """Make `device` current inside a `with` block (None changes nothing)."""
    if device is None:
        yield
        return
    _need()
    old = current_device_index()
    set_device_index(device)
    try:
        yield
    finally:
        set_device_index(old)


def empty_cache() -> None:
    if _cuda.is_available():
        _cuda.empty_cache()


def memory_allocated(device=None, /) -> int:
    _need()
    return _cuda.memory_allocated(device)


def max_memory_allocated(device=None, /) -> int:
    _need()
    return _cuda.max_memory_allocated(device)


current_device_idx = current_device_index
set_device_idx = set_device_index
