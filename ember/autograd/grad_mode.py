"""ember.autograd.grad_mode: the grad-mode switches under torch.autograd.grad_mode's path."""
from ..frontend.autograd import (  # noqa: F401
    no_grad, enable_grad, inference_mode, set_grad_enabled, is_grad_enabled)

__all__ = ["no_grad", "enable_grad", "inference_mode", "set_grad_enabled", "is_grad_enabled"]
