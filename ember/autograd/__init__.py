"""ember.autograd: backward, grad, Function and the grad-mode switches (see frontend/autograd.py)."""
from ..frontend.autograd import (  # noqa: F401
    backward, grad, Function, FunctionCtx, once_differentiable, no_grad, enable_grad, inference_mode,
    set_grad_enabled, is_grad_enabled, is_inference_mode_enabled)
from .anomaly_mode import (  # noqa: F401
    set_detect_anomaly, detect_anomaly, is_anomaly_enabled, is_anomaly_check_nan_enabled)
from ..frontend.tensor import Tensor as Variable  # noqa: F401
from . import function, functional, grad_mode, profiler  # noqa: F401,E402
