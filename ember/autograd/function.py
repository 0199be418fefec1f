"""ember.autograd.function: the names torch.autograd.function exports (Function, FunctionCtx,
once_differentiable)."""
from ..frontend.autograd import Function, FunctionCtx, once_differentiable  # noqa: F401

__all__ = ["Function", "FunctionCtx", "once_differentiable"]
