"""linear and bilinear: one GEMM (inputs with extra leading dims are flattened to 2-D first, so
the weight gradient is one GEMM too).

Eagerly (float32/float64 numpy arrays) linear is one autograd node, as PyTorch's AddmmBackward0: the
product with the bias added in place, and a backward of two GEMMs and a column sum -- instead of the
permute, matmul and add the tracer records (three nodes, their dispatch and the bias's sum_to)."""
from __future__ import annotations

import math

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P, attach_node
from ...frontend.tensor import _wrap
from ...kernels import blas_threads
from ._util import Tensor, is_tracing


@autocast_op("linear")
def linear(input: Tensor, weight: Tensor, bias=None) -> Tensor:
    if weight.ndim == 1:
        y = M.sum(M.mul(input, weight), -1)
        return y if bias is None else M.add(y, bias)
    if input.ndim == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    if input.shape[-1] != weight.shape[1]:
        lead = math.prod(input.shape[:-1]) if input.ndim > 1 else 1
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({lead}x{input.shape[-1]} and "
                           f"{weight.shape[1]}x{weight.shape[0]})")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {input.dtype.name} and "
                           f"{weight.dtype.name}")
    if (input._xp is np and input.dtype.np in _FAST and (bias is None or bias.dtype is input.dtype)
            and weight._xp is np and not is_tracing()):
        return _linear_eager(input, weight, bias)
    shape = tuple(input.shape)
    x = input
    if input.ndim != 2:
        x = P("reshape", input, shape=(math.prod(shape[:-1]), shape[-1]))
    wt = P("permute", weight, dims=(1, 0))
    if (bias is not None and x.dtype.is_reduced_float and bias.dtype is x.dtype and bias.ndim == 1
            and x.device.type == "cpu" and bias.device.type == "cpu"):
        # 16-bit: the bias added before the one rounding, as PyTorch's addmm (bf16: in the GEMM's epilogue),
        # eager and compiled alike; matmul + add would round twice
        y = P("addmm", x, wt, bias)
    else:
        y = P("matmul", x, wt)
        if bias is not None:
            y = P("add", y, bias if bias.dtype is y.dtype else M.cast(bias, y.dtype))
    if input.ndim != 2:
        y = P("reshape", y, shape=shape[:-1] + (weight.shape[0],))
    return y


_FAST = (np.dtype(np.float32), np.dtype(np.float64))


def _linear_eager(input: Tensor, weight: Tensor, bias) -> Tensor:
    x = input._data
    x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])     # not -1: in_features may be 0
    y = blas_threads.matmul(x2, weight._data.T)
    if bias is not None:
        y += bias._data
    out = _wrap(y.reshape(x.shape[:-1] + (weight.shape[0],)), input.device)
    if ag.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                 or (bias is not None and bias.requires_grad)):
        ins = (input, weight) if bias is None else (input, weight, bias)
        attach_node(out, "addmm" if bias is not None else "mm", _linear_vjp, {}, ins, lambda ins, out: ins[:2])
    return out


def _linear_vjp(g, o, x, w, b=None):
    if g._xp is np and not ag.is_grad_enabled():
        g2 = g._data.reshape(math.prod(g.shape[:-1]), g.shape[-1])
        gx = _wrap(blas_threads.matmul(g2, w._data).reshape(x.shape), g.device) if x.requires_grad else None
        gw = None
        if w.requires_grad:
            gw = _wrap(blas_threads.matmul(g2.T, x._data.reshape(g2.shape[0], x.shape[-1])), g.device)
        gb = _wrap(g2.sum(axis=0), g.device) if b is not None and b.requires_grad else None
    else:                       # differentiated again: the same products in ember ops
        g2 = P("reshape", g, shape=(math.prod(g.shape[:-1]), g.shape[-1]))
        gx = P("reshape", P("matmul", g2, w), shape=tuple(x.shape)) if x.requires_grad else None
        x2 = P("reshape", x, shape=(math.prod(x.shape[:-1]), x.shape[-1]))
        gw = P("matmul", P("permute", g2, dims=(1, 0)), x2) if w.requires_grad else None
        gb = P("sum", g2, dims=(0,), keepdim=False) if b is not None and b.requires_grad else None
    return (gx, gw) if b is None else (gx, gw, gb)


@autocast_op("bilinear")
def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias=None) -> Tensor:
    # y_k = x1^T W_k x2 + b_k
    O, I1, I2 = weight.shape
    lead = tuple(input1.shape[:-1])
    x1 = P("reshape", input1, shape=(math.prod(lead), I1))
    x2 = P("reshape", input2, shape=(math.prod(lead), I2))
    t = P("matmul", x1, P("reshape", P("permute", weight, dims=(1, 0, 2)), shape=(I1, O * I2)))  # [B, O*I2]
    t = P("reshape", t, shape=(x1.shape[0], O, I2))
    y = P("sum", P("mul", t, P("reshape", x2, shape=(x2.shape[0], 1, I2))), dims=(2,), keepdim=False)
    if bias is not None:
        y = P("add", y, bias)
    return P("reshape", y, shape=lead + (O,))
