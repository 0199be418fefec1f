"""The context manager that installs a tracer (ember/compiler/capture.py) in the dispatch slot."""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend import dispatch

__all__ = ["tracing"]


class tracing:
    """Context manager installing a tracer. Grad mode stays the caller's (traced tensors carry
    requires_grad as eager ones would); `grad=False` turns it off (tracing a backward graph)."""

    def __init__(self, tracer, grad: bool | None = None):
        self.tracer = tracer
        self.grad = grad

    def __enter__(self):
        self._prev = dispatch.tracer
        self._grad = ag._mode.enabled
        dispatch.tracer = self.tracer
        if self.grad is not None:
            ag._mode.enabled = self.grad
        return self.tracer

    def __exit__(self, *exc):
        dispatch.tracer = self._prev
        ag._mode.enabled = self._grad
        return False
