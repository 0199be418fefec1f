"""ember.cpu: the CPU device's module, as torch.cpu (device queries and the `amp` spellings)."""
from __future__ import annotations

import functools

__all__ = ["is_available", "device_count", "current_device", "synchronize", "amp"]


def is_available() -> bool:
    return True


def device_count() -> int:
    return 1


def current_device() -> str:
    return "cpu"


def synchronize(device=None) -> None:
    """Nothing to wait for: CPU kernels return when they are done."""


class _AmpNamespace:
    """ember.cpu.amp.autocast(enabled=True, dtype=ember.bfloat16, cache_enabled=True) and GradScaler
    (the older spellings of ember.amp.autocast("cpu", ...) and ember.amp.GradScaler("cpu", ...))."""

    def __getattr__(self, name):
        from . import amp
        if name == "autocast":
            return amp._cpu_autocast
        if name == "GradScaler":
            return functools.partial(amp.GradScaler, "cpu")
        return getattr(amp, name)


amp = _AmpNamespace()
