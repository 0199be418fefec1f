"""torch.autograd's anomaly detection: set_detect_anomaly / detect_anomaly / is_anomaly_enabled.

While it is on (with check_nan, the default), the backward engine (ember/frontend/autograd.py) checks
every gradient a backward function returns and raises naming the function that produced a NaN, as
PyTorch's does.  PyTorch also records each op's forward stack trace to print with the error; ember
names the function only (its grad_fn names say which op it was).
"""
from __future__ import annotations

import contextlib
import warnings

from ..frontend.autograd import ANOMALY

__all__ = ["set_detect_anomaly", "detect_anomaly", "is_anomaly_enabled", "is_anomaly_check_nan_enabled"]


def is_anomaly_enabled() -> bool:
    return ANOMALY[0]


def is_anomaly_check_nan_enabled() -> bool:
    return ANOMALY[1]


class set_detect_anomaly:
    """Turns anomaly detection on or off: as a call (it stays so) or as a context manager (restored on exit)."""

    def __init__(self, mode: bool, check_nan: bool = True):
        self._prev = tuple(ANOMALY)
        ANOMALY[:] = [bool(mode), bool(check_nan)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        ANOMALY[:] = self._prev
        return False


class detect_anomaly(contextlib.ContextDecorator):
    """Context manager and decorator: anomaly detection on inside."""

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime and should "
                      "only be enabled for debugging.", stacklevel=2)

    def __enter__(self):
        self._prev = tuple(ANOMALY)
        ANOMALY[:] = [True, self.check_nan]
        return self

    def __exit__(self, *exc):
        ANOMALY[:] = self._prev
        return False
