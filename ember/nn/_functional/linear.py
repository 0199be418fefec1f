"""linear and bilinear: one GEMM (inputs with extra leading dims are flattened to 2-D first, so
the weight gradient is one GEMM too)."""
from __future__ import annotations

import math

from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P
from ...frontend.linalg import bias_mm_16bit
from ._util import Tensor


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
    shape = tuple(input.shape)
    x = input
    if input.ndim != 2:
        x = P("reshape", input, shape=(math.prod(shape[:-1]), shape[-1]))
    wt = P("permute", weight, dims=(1, 0))
    y = bias_mm_16bit(x, wt, bias) if bias is not None else None    # bf16: bias in the GEMM's epilogue
    if y is None:
        y = P("matmul", x, wt)
        if bias is not None:
            y = P("add", y, bias if bias.dtype is y.dtype else M.cast(bias, y.dtype))
    if input.ndim != 2:
        y = P("reshape", y, shape=shape[:-1] + (weight.shape[0],))
    return y


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
