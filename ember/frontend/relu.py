"""relu, the one implementation behind ember.relu, Tensor.relu and nn.functional.relu.

PyTorch's semantics: x < 0 ? 0 : x -- so -0.0 and NaN pass -- and a gradient masked where the result is
<= 0 (ReluBackward0: threshold_backward on the result), so both zeros get none and NaN gets g.

Eager, on CPU float32/float64/bfloat16 arrays: one generated pass forward and one for the gradient
(kernels/generated.py; numpy's where branches per element), the gradient differentiable again through ember
ops.  bf16 moves values without arithmetic there, so the pass over the bf16 values gives the bits of the
float32 route without its two casts (MNIST's bf16 eager step cast ~0.3 ms for relu and its gradient).
Traced, or any other dtype or device: the composite below, which the fusion passes turn into one kernel.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..kernels import generated
from . import autograd as ag
from . import dispatch
from .dispatch import OUT, apply as P, attach_node
from .prims import _where
from .tensor import Tensor, _wrap

__all__ = ["relu"]

_FAST = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(ml_dtypes.bfloat16))


def relu(x: Tensor) -> Tensor:
    if dispatch.tracer is None and x._xp is np and x.dtype.np in _FAST:
        return _relu_eager(x)
    if not x.dtype.is_floating_point:
        return P("where", P("le", x, 0), 0, x)
    # the zeros of either sign kept (x when not below 0), with no gradient (stop_gradient)
    return P("where", P("le", x, 0.0), P("where", P("lt", x, 0.0), 0.0, P("stop_gradient", x)), x)


def _relu_eager(x: Tensor) -> Tensor:
    a = x._data
    zero = a.dtype.type(0)
    y = generated.elementwise("relu", _relu_ir, [a])
    if y is None:
        y = _where(np, a < zero, zero, a)
    out = _wrap(y, x.device)
    if ag.is_grad_enabled() and x.requires_grad:
        attach_node(out, "relu", _relu_vjp, {}, (x,), OUT)
    return out


def _relu_ir(x):
    from ..ir import kernel as K       # kernel IR: loaded when the kernel is first built
    return K.where(K.binary("lt", x, 0.0), 0.0, x)


def _relu_grad_ir(g, y):
    from ..ir import kernel as K
    return K.where(K.binary("le", y, 0.0), 0.0, g)


def _relu_vjp(g, o, x):
    if g._xp is np and not ag.is_grad_enabled() and g.dtype is o.dtype:
        ga, ya = g._data, o._data
        r = generated.elementwise("relu_grad", _relu_grad_ir, [ga, ya])
        if r is None:
            r = _where(np, ya <= ya.dtype.type(0), ga.dtype.type(0), ga)
        return (_wrap(r, g.device),)
    return (P("where", P("le", o, 0.0), 0.0, g),)
