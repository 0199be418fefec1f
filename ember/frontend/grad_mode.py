"""The grad-mode switches: no_grad, enable_grad, inference_mode, set_grad_enabled (context managers
and decorators), the thread-local mode they set, and the anomaly-detection flags the backward engine
(ember/frontend/autograd.py) reads.
"""
from __future__ import annotations

import functools
import threading

__all__ = ["no_grad", "enable_grad", "inference_mode", "set_grad_enabled", "is_grad_enabled",
           "is_inference_mode_enabled", "ANOMALY"]


class _GradMode(threading.local):
    enabled = True
    inference = False


_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _mode.enabled


class _GradContext:
    """Base of no_grad / enable_grad / set_grad_enabled: a context manager and a decorator."""
    _target = True

    def __enter__(self):
        self._prev = _mode.enabled
        _mode.enabled = self._target

    def __exit__(self, *exc):
        _mode.enabled = self._prev
        return False

    def __call__(self, fn):
        target = self._target

        @functools.wraps(fn)
        def wrapper(*a, **k):
            prev = _mode.enabled
            _mode.enabled = target
            try:
                return fn(*a, **k)
            finally:
                _mode.enabled = prev
        return wrapper


class no_grad(_GradContext):
    _target = False

    def __new__(cls, fn=None):  # also usable bare: @no_grad
        self = super().__new__(cls)
        return self(fn) if callable(fn) else self

    def __init__(self, fn=None):
        pass


class enable_grad(no_grad):
    _target = True


class inference_mode(_GradContext):
    """no_grad that also says so: is_inference_mode_enabled() is True inside, and tensors made there
    answer is_inference() (ember keeps no separate inference tensors: they are plain tensors)."""

    def __new__(cls, mode=True):  # also usable bare: @inference_mode
        self = super().__new__(cls)
        if callable(mode):
            self.__init__(True)
            return self(mode)
        return self

    def __init__(self, mode: bool = True):
        self._target = not mode
        self._inference = bool(mode)

    def __enter__(self):
        super().__enter__()
        self._prev_inference = _mode.inference
        _mode.inference = self._inference

    def __exit__(self, *exc):
        _mode.inference = self._prev_inference
        return super().__exit__(*exc)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with inference_mode(self._inference):
                return fn(*a, **k)
        return wrapper


def is_inference_mode_enabled() -> bool:
    return _mode.inference


# anomaly detection (torch.autograd.detect_anomaly): [enabled, check_nan]; the engine checks each
# computed gradient for NaN while it is on
ANOMALY = [False, True]


class set_grad_enabled(_GradContext):
    def __init__(self, mode: bool):
        self._target = bool(mode)
        self._prev = _mode.enabled
        _mode.enabled = self._target  # like PyTorch, it also acts as a plain function call

    def __enter__(self):
        _mode.enabled = self._target

    def __exit__(self, *exc):
        _mode.enabled = self._prev
        return False

    def __call__(self, fn):
        _mode.enabled = self._prev   # as a decorator it must not switch the mode at definition time
        return super().__call__(fn)
