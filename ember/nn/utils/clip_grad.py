"""clip_grad_norm_ / clip_grad_value_: in place on .grad, the total norm computed with ember ops
(one norm per gradient, stacked, so there is no per-element Python)."""
from __future__ import annotations

import math

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.shape_ops import stack
from ...frontend.tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        from ...frontend.creation import tensor
        return tensor(0.0)
    with ag.no_grad():
        if norm_type == math.inf:
            norms = [M.amax(M.abs(g.detach())) for g in tensors]
            total = norms[0] if len(norms) == 1 else M.amax(stack(norms))
        else:
            norms = [M.norm(g.detach(), norm_type) for g in tensors]
            total = norms[0] if len(norms) == 1 else M.norm(stack(norms), norm_type)
    if error_if_nonfinite and not bool(M.isfinite(total).item()):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
                           "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm: float, total_norm: Tensor, foreach=None) -> None:
    grads = _grads(parameters)
    if not grads:
        return
    with ag.no_grad():
        coef = M.clamp(M.div(float(max_norm), M.add(total_norm, 1e-6)), max=1.0)
        for g in grads:
            g.mul_(M.cast(coef, g.dtype).to(g.device))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    grads = _grads(parameters)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    import warnings
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of `torch.nn.utils.clip_grad_norm_`.",
                  FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    clip_value = float(clip_value)
    with ag.no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
