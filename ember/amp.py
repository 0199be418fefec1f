"""ember.amp: autocast and GradScaler, PyTorch's mixed-precision API.

autocast(device_type, dtype=None, enabled=True): on "cuda", matrix products (matmul, linear, conv)
run in float16 inside the context (cuBLAS through CuPy). On "cpu", numpy has no fast float16 or
bfloat16 product, so products stay float32 (results are the more accurate ones) and one warning
says so. GradScaler implements dynamic loss scaling: scale the loss, unscale the gradients, skip
the step when any gradient is inf/nan, and adjust the scale.
"""
from __future__ import annotations

import functools
import threading
import warnings

from .frontend import dispatch
from .ir import dtypes as dt

__all__ = ["autocast", "GradScaler", "is_autocast_enabled"]


class _State(threading.local):
    dtype = None          # the dtype matrix products run in, or None (autocast off)


_state = _State()
_warned_cpu = False


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    return _state.dtype is not None


def autocast_dtype():
    """The dtype for matrix products under autocast, or None (read by dispatch for matmul)."""
    return _state.dtype


class autocast:
    def __init__(self, device_type: str = "cuda", dtype=None, enabled: bool = True, cache_enabled=None):
        if device_type not in ("cuda", "cpu"):
            raise RuntimeError(f"autocast: unsupported device_type {device_type!r} (expected 'cuda' or 'cpu')")
        self.device_type = device_type
        self.enabled = enabled
        self.dtype = dtype if dtype is not None else (dt.float16 if device_type == "cuda" else None)

    def _target(self):
        global _warned_cpu
        if not self.enabled:
            return None
        if self.device_type == "cpu":
            if not _warned_cpu:
                _warned_cpu = True
                warnings.warn("ember.autocast on the CPU keeps matrix products in float32 (numpy has no fast "
                              "float16/bfloat16 product)", RuntimeWarning, stacklevel=3)
            return None
        if self.dtype is not dt.float16:
            raise RuntimeError(f"autocast: ember supports dtype=ember.float16 on cuda, got {self.dtype!r}")
        return self.dtype

    def __enter__(self):
        self._prev = _state.dtype
        _state.dtype = self._target()
        dispatch.set_autocast(_state.dtype)
        return self

    def __exit__(self, *exc):
        _state.dtype = self._prev
        dispatch.set_autocast(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*a, **k)
        return wrapper


def _any_rank(found: bool) -> bool:
    """With a process group, one rank's inf/nan skips the step on every rank (so replicas stay equal)."""
    import sys
    dist = sys.modules.get("ember.distributed")    # loaded by whoever initialised a process group
    if dist is None or not dist.is_initialized():
        return found
    return dist.any_across_ranks(found)


class GradScaler:
    """Dynamic loss scaling (torch.amp.GradScaler): scale(loss), step(optimizer), update()."""

    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        self._enabled = enabled
        self._scale = float(init_scale)
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._found_inf = {}            # id(optimizer) -> bool, for the current iteration
        self._unscaled = set()

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        return outputs * self._scale

    def unscale_(self, optimizer):
        if not self._enabled or id(optimizer) in self._unscaled:
            return
        from . import no_grad
        from .frontend import math_ops as M
        inv = 1.0 / self._scale
        found = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    p.grad.mul_(inv)
                    if not found and not bool(M.all(M.isfinite(p.grad))):
                        found = True
        self._found_inf[id(optimizer)] = _any_rank(found)
        self._unscaled.add(id(optimizer))

    def step(self, optimizer, *args, **kwargs):
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        self.unscale_(optimizer)
        if self._found_inf.get(id(optimizer)):
            return None                       # inf/nan gradients: skip this step
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale)
        elif any(self._found_inf.values()):
            self._scale *= self._backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self._growth_interval:
                self._scale *= self._growth_factor
                self._growth_tracker = 0
        self._found_inf.clear()
        self._unscaled.clear()

    def state_dict(self):
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker} if self._enabled else {}

    def load_state_dict(self, state):
        if state:
            self._scale = float(state["scale"])
            self._growth_tracker = int(state.get("_growth_tracker", 0))
