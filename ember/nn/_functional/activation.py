"""Activation functions as composites of ember primitives (the compiler fuses each into its neighbours).

Eager relu (float32/float64 on the CPU) is one op of its own, as PyTorch's: a generated pass forward and one
backward (ReluBackward0), instead of the composite's comparison, select and their gradients.

`inplace=True` writes the result into the input when nothing needs the old value for backward;
when the input is part of an autograd graph the result is returned out of place instead (same
values, and the saved input stays valid).
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P, attach_node
from ...frontend.tensor import _wrap
from ...kernels import generated
from ._util import Tensor, is_tracing


def _maybe_inplace(x: Tensor, r: Tensor, inplace: bool) -> Tensor:
    """inplace=True writes the result into x, autograd included (x takes r's history, as PyTorch's relu_):
    code that keeps using x sees the activation."""
    return x._set_(r) if inplace else r


def _f(x: Tensor, op: str) -> Tensor:
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"\"{op}\" not implemented for '{x.dtype.name}'")
    return x


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, M.relu(input), inplace)     # (ember/frontend/relu.py)


_FAST = (np.dtype(np.float32), np.dtype(np.float64))


def _flat_outside(x: Tensor, inside: Tensor, outside: Tensor) -> Tensor:
    """`inside` where the condition holds, else the value `outside` carries no gradient (PyTorch's
    piecewise activations: the gradient is masked to the open interval, and NaN takes whichever
    branch PyTorch's comparison sends it to)."""
    return P("where", inside, x, P("stop_gradient", outside))


def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def _inplace_form(fn):
    """F.elu_ and the like: fn(input, ..., inplace=True)."""
    def f(input: Tensor, *args, **kwargs) -> Tensor:
        return fn(input, *args, inplace=True, **kwargs)
    f.__name__ = f.__qualname__ = fn.__name__ + "_"
    f.__doc__ = f"F.{fn.__name__}_: {fn.__name__}(..., inplace=True)."
    return f


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    _f(input, "leaky_relu")
    r = P("where", P("gt", input, 0.0), input, P("mul", input, float(negative_slope)))
    return _maybe_inplace(input, r, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    if not input.dtype.is_floating_point:
        return _maybe_inplace(input, M.clamp(input, min_val, max_val), inplace)
    # PyTorch: the gradient is zero where x <= min or x >= max (the bounds included), and NaN
    # passes through with its gradient
    lo, hi = float(min_val), float(max_val)
    value = P("where", P("lt", input, lo), lo, P("where", P("gt", input, hi), hi, input))   # clamp(-0.0, 0) = -0.0
    inside = P("logical_not", P("logical_or", P("le", input, lo), P("ge", input, hi)))
    return _maybe_inplace(input, _flat_outside(input, inside, value), inplace)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, M.where(M.le(input, threshold), value, input), inplace)   # NaN stays NaN


@M.in_float32
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    _f(input, "GeluKernelImpl")
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    if input._xp is np and input.dtype.np in _FAST and not is_tracing():
        out = _gelu_eager(input, approximate)
        if out is not None:
            return out
    return _gelu_math(input, _prim_unary, approximate)


_SQRT1_2, _SQRT_2_PI = 1.0 / math.sqrt(2.0), math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI, _KAPPA = 1.0 / math.sqrt(2.0 * math.pi), 0.044715


def _gelu_eager(input: Tensor, approximate: str):
    """Eager GELU as PyTorch's (GeluBackward0): one generated pass forward and one for the gradient
    (kernels/generated.py) where the composite ran ~5 passes and an erf forward, ~10 backward -- ~2 ms a
    layer of the eager GPT step.  None (small arrays, no code generator): the composite."""
    a = input._data
    y = generated.elementwise(f"gelu_{approximate}", lambda x: _gelu_math(x, _kernel_unary, approximate), [a])
    if y is None:
        return None
    out = _wrap(y, input.device)
    if ag.is_grad_enabled() and input.requires_grad:
        attach_node(out, "gelu", _gelu_vjp, {"approximate": approximate}, (input,), "0")
    return out


def _gelu_math(x, unary, approximate):
    """GELU written once, for kernel IR values (eager's generated pass) and for tensors (traced, or the
    composite): the operators work on both; unary(name, v) applies erf / tanh / exp in either world."""
    if approximate == "none":
        return x * (unary("erf", x * _SQRT1_2) * 0.5 + 0.5)
    return x * 0.5 * (unary("tanh", (x + x * x * x * _KAPPA) * _SQRT_2_PI) + 1.0)


def _gelu_grad_math(g, x, unary, approximate):
    """none: d/dx x Phi(x) = Phi(x) + x phi(x).  tanh: PyTorch's, with t = tanh(b (x + k x^3)),
    0.5 (1 + t) + 0.5 x (1 - t^2) b (1 + 3 k x^2)."""
    if approximate == "none":
        cdf = unary("erf", x * _SQRT1_2) * 0.5 + 0.5
        pdf = unary("exp", x * x * -0.5) * _INV_SQRT_2PI
        return g * (cdf + x * pdf)
    x2 = x * x
    t = unary("tanh", (x + x2 * x * _KAPPA) * _SQRT_2_PI)
    return g * ((t + 1.0) * 0.5 + x * 0.5 * (1.0 - t * t) * _SQRT_2_PI * (x2 * (3.0 * _KAPPA) + 1.0))


def _prim_unary(name, v):
    return P(name, v)


def _kernel_unary(name, v):
    from ...ir import kernel as K
    return K.unary(name, v)


def _gelu_vjp(g, o, x, approximate):
    if g._xp is np and not ag.is_grad_enabled() and g.dtype is x.dtype and g._data.shape == x._data.shape:
        r = generated.elementwise(f"gelu_grad_{approximate}",
                                  lambda g, x: _gelu_grad_math(g, x, _kernel_unary, approximate),
                                  [g._data, x._data])
        if r is not None:
            return (_wrap(r, g.device),)
    # differentiated again (or no generated code): the derivative in ember ops
    return (_gelu_grad_math(g, x, _prim_unary, approximate),)


@M.in_float32
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", input, P("sigmoid", _f(input, "silu"))), inplace)


def sigmoid(input: Tensor) -> Tensor:
    return M.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return M.tanh(input)


@M.in_float32
def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    # PyTorch: gradient 1/6 on the open interval (-3, 3) only, zero at NaN
    value = P("mul", M.clamp(P("add", input, 3.0), 0.0, 6.0), 1.0 / 6.0)
    inside = P("logical_and", P("gt", input, -3.0), P("lt", input, 3.0))
    return _maybe_inplace(input, _flat_outside(P("add", P("mul", input, 1.0 / 6.0), 0.5), inside, value), inplace)


@M.in_float32
def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    # PyTorch: 0 up to -3 (gradient 0 at -3 too), x (x + 3) / 6 below 3, x from 3 on and at NaN (with its
    # gradient)
    below = P("le", input, -3.0)
    mid_sel = P("logical_and", P("gt", input, -3.0), P("lt", input, 3.0))
    xs = P("where", mid_sel, input, 0.0)        # the middle branch never sees +-inf (its gradient would be NaN)
    mid = P("mul", xs, P("mul", P("add", xs, 3.0), 1.0 / 6.0))
    r = P("where", below, P("stop_gradient", P("mul", input, 0.0)), P("where", mid_sel, mid, input))
    return _maybe_inplace(input, r, inplace)


@autocast_op("softplus")
@M.in_float32
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    _f(input, "softplus")
    bx = P("mul", input, float(beta)) if beta != 1 else input
    # exp sees min(bx, threshold): the unselected branch must stay finite or its gradient is nan
    # (a where, not minimum: at bx == threshold the soft branch is taken with its whole gradient, as in
    # PyTorch -- minimum's gradient splits a tie in half)
    over = P("gt", bx, float(threshold))
    safe = P("where", over, P("full", shape=(), value=float(threshold), dtype=input.dtype, device=input.device), bx)
    soft = P("log1p", P("exp", safe))
    if beta != 1:
        soft = P("mul", soft, 1.0 / beta)
    return P("where", over, input, soft)


@M.in_float32
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", input, P("tanh", softplus(input))), inplace)


@M.in_float32
def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    _f(input, "elu")
    # exp sees x only where x <= 0 (a large unselected x would give inf * 0 = NaN gradients);
    # expm1(-0.0) = -0.0 keeps the sign of zero, as PyTorch
    # (NaN takes the identity branch, with its gradient, as in PyTorch's x <= 0 test)
    neg_side = P("le", input, 0.0)
    neg = P("mul", P("expm1", P("where", neg_side, input, 0.0)), float(alpha))
    return _maybe_inplace(input, P("where", neg_side, neg, input), inplace)


@M.in_float32
def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    _f(input, "celu")
    neg_side = P("le", input, 0.0)
    neg = P("mul", P("expm1", P("div", P("where", neg_side, input, 0.0), float(alpha))), float(alpha))
    return _maybe_inplace(input, P("where", neg_side, neg, input), inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@M.in_float32
def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, P("mul", elu(input, _SELU_ALPHA), _SELU_SCALE), inplace)


@M.in_float32
def logsigmoid(input: Tensor) -> Tensor:
    # PyTorch's stable form: min(x, 0) - log1p(exp(-|x|))
    _f(input, "log_sigmoid")
    return P("sub", P("minimum", input, 0.0), P("log1p", P("exp", P("neg", P("abs", input)))))


def softsign(input: Tensor) -> Tensor:
    return P("div", input, P("add", P("abs", input), 1.0))


def tanhshrink(input: Tensor) -> Tensor:
    return P("sub", input, P("tanh", input))


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    # PyTorch: x -+ lambda outside [-lambda, lambda], x * 0 inside (keeps -0.0) with zero gradient;
    # NaN stays NaN with its gradient
    inside = M.logical_and(M.ge(input, -lambd), M.le(input, lambd))
    out = M.where(M.gt(input, lambd), M.sub(input, lambd), M.add(input, lambd))
    return M.where(inside, P("stop_gradient", M.mul(input, 0.0)), out)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return M.where(M.logical_and(M.ge(input, -lambd), M.le(input, lambd)), 0.0, input)   # NaN stays NaN


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


elu_, leaky_relu_, hardtanh_, threshold_, selu_, celu_, rrelu_ = (
    _inplace_form(f) for f in (elu, leaky_relu, hardtanh, threshold, selu, celu, rrelu))
