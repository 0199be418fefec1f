"""Activation functions as composites of ember primitives (the compiler fuses each into its neighbours).

`inplace=True` writes the result into the input when nothing needs the old value for backward;
when the input is part of an autograd graph the result is returned out of place instead (same
values, and the saved input stays valid).
"""
from __future__ import annotations

import math

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P
from ._util import Tensor


def _maybe_inplace(x: Tensor, r: Tensor, inplace: bool) -> Tensor:
    if inplace and not (ag.is_grad_enabled() and (x.requires_grad or r.requires_grad)):
        return x._set_(r)
    return r


def _f(x: Tensor, op: str) -> Tensor:
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"\"{op}\" not implemented for '{x.dtype.name}'")
    return x


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("where", P("gt", input, _zero(input)), input, _zero(input)), inplace)


def _zero(x):
    return 0.0 if x.dtype.is_floating_point else 0


def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    _f(input, "leaky_relu")
    r = P("where", P("gt", input, 0.0), input, P("mul", input, float(negative_slope)))
    return _maybe_inplace(input, r, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _maybe_inplace(input, M.clamp(input, min_val, max_val), inplace)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, M.where(M.gt(input, threshold), input, value), inplace)


@M.in_float32
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    _f(input, "GeluKernelImpl")
    if approximate == "none":
        cdf = P("add", P("mul", P("erf", P("mul", input, 1.0 / math.sqrt(2.0))), 0.5), 0.5)
        return P("mul", input, cdf)
    if approximate == "tanh":
        inner = P("mul", P("add", input, P("mul", P("mul", P("mul", input, input), input), 0.044715)),
                  math.sqrt(2.0 / math.pi))
        return P("mul", P("mul", input, 0.5), P("add", P("tanh", inner), 1.0))
    raise RuntimeError(f"approximate argument must be either none or tanh.")


@M.in_float32
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", input, P("sigmoid", _f(input, "silu"))), inplace)


def sigmoid(input: Tensor) -> Tensor:
    return M.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return M.tanh(input)


@M.in_float32
def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", M.clamp(P("add", input, 3.0), 0.0, 6.0), 1.0 / 6.0), inplace)


@M.in_float32
def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", input, P("mul", M.clamp(P("add", input, 3.0), 0.0, 6.0), 1.0 / 6.0)),
                          inplace)


@autocast_op("softplus")
@M.in_float32
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    _f(input, "softplus")
    bx = P("mul", input, float(beta)) if beta != 1 else input
    # exp sees min(bx, threshold): the unselected branch must stay finite or its gradient is nan
    safe = P("minimum", bx, P("full", shape=(), value=float(threshold), dtype=input.dtype, device=input.device))
    soft = P("log1p", P("exp", safe))
    if beta != 1:
        soft = P("mul", soft, 1.0 / beta)
    return P("where", P("gt", bx, float(threshold)), input, soft)


@M.in_float32
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", input, P("tanh", softplus(input))), inplace)


@M.in_float32
def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    _f(input, "elu")
    neg = P("mul", P("expm1", P("minimum", input, P("full", shape=(), value=0.0, dtype=input.dtype,
                                                     device=input.device))), float(alpha))
    return _maybe_inplace(input, P("where", P("gt", input, 0.0), input, neg), inplace)


@M.in_float32
def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    _f(input, "celu")
    neg = P("mul", P("expm1", P("div", P("minimum", input, P("full", shape=(), value=0.0, dtype=input.dtype,
                                                              device=input.device)), float(alpha))), float(alpha))
    return _maybe_inplace(input, P("where", P("gt", input, 0.0), input, neg), inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@M.in_float32
def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", elu(input, _SELU_ALPHA), _SELU_SCALE), inplace)


@M.in_float32
def logsigmoid(input: Tensor) -> Tensor:
    # log(sigmoid(x)) = -softplus(-x), written stably
    return P("neg", softplus(P("neg", _f(input, "log_sigmoid"))))


def softsign(input: Tensor) -> Tensor:
    return P("div", input, P("add", P("abs", input), 1.0))


def tanhshrink(input: Tensor) -> Tensor:
    return P("sub", input, P("tanh", input))


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return M.where(M.gt(input, lambd), M.sub(input, lambd), M.where(M.lt(input, -lambd), M.add(input, lambd), 0.0))


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return M.where(M.gt(M.abs(input), lambd), input, 0.0)


@autocast_op("prelu")
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    w = weight
    if weight.numel() != 1 and input.ndim >= 2:
        w = weight.reshape((weight.numel(),) + (1,) * (input.ndim - 2))
    return P("where", P("gt", input, 0.0), input, M.mul(input, w))


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False) -> Tensor:
    if training:
        from ...frontend.creation import rand
        a = M.add(M.mul(rand(*input.shape, dtype=input.dtype, device=input.device), upper - lower), lower)
        return _maybe_inplace(input, P("where", P("gt", input, 0.0), input, P("mul", input, a)), inplace)
    return leaky_relu(input, (lower + upper) / 2, inplace)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} is size {n}")
    a, b = input.chunk(2, dim)
    return P("mul", a, P("sigmoid", b))


def _softmax_dim(ndim):
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return M.softmax(input, dim, dtype=dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return M.softmax(M.neg(input if dtype is None else M.cast(input, dtype)), dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return M.log_softmax(input, dim, dtype=dtype)


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, eps: float = 1e-10, dim: int = -1):
    from ...frontend.creation import rand
    u = rand(*logits.shape, dtype=logits.dtype, device=logits.device)
    g = M.neg(M.log(M.neg(M.log(M.add(u, eps)))))
    y = M.softmax(M.div(M.add(logits, g), tau), dim)
    if hard:
        idx = M.argmax(y, dim, keepdim=True)
        from ...frontend.creation import zeros_like
        y_hard = zeros_like(y).scatter(dim, idx, 1.0)
        return M.add(M.sub(y_hard, y.detach()), y)
    return y

