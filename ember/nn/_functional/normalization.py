"""batch_norm, layer_norm, group_norm, instance_norm, rms_norm, local_response_norm as composites.

Each normalises with (x - mean) * rsqrt(var + eps) and folds the affine into one scale and one shift,
so the large-tensor work is two reductions and one multiply-add. batch_norm updates the running
statistics in place on the buffers (copy_ under no_grad), which the compiler sees as mutations.
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P, attach_node
from ...frontend.tensor import _wrap
from ._util import Tensor, is_tracing


def _bshape(x, c_dim=1):
    return (1, x.shape[c_dim]) + (1,) * (x.ndim - 2)


def _moments(x, dims):
    n = math.prod(x.shape[d] for d in dims)
    mean = M.times_ratio(P("sum", x, dims=dims, keepdim=True), 1, n)
    xc = P("sub", x, mean)
    var = M.times_ratio(P("sum", P("mul", xc, xc), dims=dims, keepdim=True), 1, n)
    return mean, var, n


@M.in_float32(out_like=0)
def batch_norm(input: Tensor, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    if input.ndim < 2:
        raise ValueError(f"expected 2D or higher input (got {input.ndim}D input)")
    C = input.shape[1]
    bshape = _bshape(input)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.numel() != C:
            raise RuntimeError(f"running_mean should contain {C} elements not {t.numel()}"
                               if name.startswith("running") else
                               f"{name} should contain {C} elements not {t.numel()}")
    dims = (0,) + tuple(range(2, input.ndim))
    if training:
        n = input.numel() // C
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{input.shape}")
        mean, var, n = _moments(input, dims)
        if running_mean is not None and running_var is not None:
            with ag.no_grad():
                m = momentum
                bm = P("reshape", mean.detach(), shape=(C,))
                bv = P("reshape", M.times_ratio(var.detach(), n, n - 1), shape=(C,))
                running_mean.copy_(P("add", P("mul", running_mean, 1.0 - m), P("mul", M.cast(bm, running_mean.dtype), m)))
                running_var.copy_(P("add", P("mul", running_var, 1.0 - m), P("mul", M.cast(bv, running_var.dtype), m)))
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
        mean = P("reshape", M.cast(running_mean, input.dtype), shape=bshape)
        var = P("reshape", M.cast(running_var, input.dtype), shape=bshape)
    scale = P("rsqrt", P("add", var, float(eps)))
    if weight is not None:
        scale = P("mul", scale, P("reshape", weight, shape=bshape))
    shift = P("neg", P("mul", mean, scale))
    if bias is not None:
        shift = P("add", shift, P("reshape", bias, shape=bshape))
    return P("add", P("mul", input, scale), shift)


def _norm_dims(input, normalized_shape, op):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns or len(ns) > input.ndim:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape [*, "
                           f"{', '.join(map(str, ns))}], but got input of size{input.shape}")
    return ns, tuple(range(input.ndim - len(ns), input.ndim))


@autocast_op("layer_norm")
@M.in_float32(out_like=0)
def layer_norm(input: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    ns, dims = _norm_dims(input, normalized_shape, "layer_norm")
    if _eager_ok(input, ns, weight, bias):
        return _layer_norm_eager(input, ns, dims, weight, bias, float(eps))
    mean, var, _ = _moments(input, dims)
    y = P("mul", P("sub", input, mean), P("rsqrt", P("add", var, float(eps))))
    if weight is not None:
        y = P("mul", y, weight)
    if bias is not None:
        y = P("add", y, bias)
    return y


def _eager_ok(input, ns, weight, bias) -> bool:
    """The one-node eager path: numpy float32/float64, not tracing, weight and bias (if any) of the input's
    dtype and exactly the normalized shape (anything else: the composite, with its promotion and errors)."""
    if is_tracing() or input._xp is not np or input.dtype.np not in (np.float32, np.float64) or input.numel() == 0:
        return False
    return all(t is None or (isinstance(t, Tensor) and t._xp is np and t.dtype is input.dtype
                             and tuple(t.shape) == ns) for t in (weight, bias))


def _layer_norm_eager(input, ns, dims, weight, bias, eps):
    """Eager layer_norm as one op (NativeLayerNormBackward0, as PyTorch): the normalised x and 1/std saved,
    the gradients from the closed form -- dx = rstd (dxh - mean(dxh) - xh mean(dxh xh)) with dxh = g w,
    dw = sum(g xh), db = sum(g) over the batch dims.  The composite kept every temporary and ran ~20 passes
    forward and backward; written in ember ops when differentiated again."""
    a = input._data
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        xh = a - a.mean(axis=dims, keepdims=True)
        rstd = 1.0 / np.sqrt(np.mean(xh * xh, axis=dims, keepdims=True) + a.dtype.type(eps))
        xh *= rstd
        y = xh * weight._data if weight is not None else xh.copy()
        if bias is not None:
            y += bias._data
    out = _wrap(y, input.device)
    ins = (input, weight, bias)
    if ag.is_grad_enabled() and any(t is not None and t.requires_grad for t in ins):
        batch = tuple(range(a.ndim - len(ns)))

        def vjp(g, o, *given, **_):
            if g._xp is np and not ag.is_grad_enabled():
                ga = g._data
                with np.errstate(invalid="ignore", over="ignore"):
                    dxh = ga * weight._data if weight is not None else ga
                    dx = dxh - dxh.mean(axis=dims, keepdims=True)
                    dx -= xh * np.mean(dxh * xh, axis=dims, keepdims=True)
                    dx *= rstd
                    grads = [_wrap(dx, g.device)]
                    if weight is not None:
                        grads.append(_wrap((ga * xh).sum(axis=batch), g.device))
                    if bias is not None:
                        grads.append(_wrap(ga.sum(axis=batch), g.device))
                return tuple(grads)
            return _layer_norm_grad_ops(g, input, weight, bias, dims, batch, eps)
        attach_node(out, "native_layer_norm", vjp, {}, tuple(t for t in ins if t is not None), "x")
    return out


def _layer_norm_grad_ops(g, x, weight, bias, dims, batch, eps):
    """The same gradients in ember ops (differentiable: a double backward)."""
    mean, var, _ = _moments(x, dims)
    rstd = P("rsqrt", P("add", var, eps))
    xh = P("mul", P("sub", x, mean), rstd)
    dxh = P("mul", g, weight) if weight is not None else g
    n = math.prod(x.shape[d] for d in dims)

    def avg(t):
        return M.times_ratio(P("sum", t, dims=dims, keepdim=True), 1, n)
    dx = P("mul", P("sub", P("sub", dxh, avg(dxh)), P("mul", xh, avg(P("mul", dxh, xh)))), rstd)
    grads = [dx]
    if weight is not None:
        grads.append(P("sum", P("mul", g, xh), dims=batch, keepdim=False) if batch else P("mul", g, xh))
    if bias is not None:
        grads.append(P("sum", g, dims=batch, keepdim=False) if batch else g)
    return tuple(grads)


@M.in_float32(out_like=0)
def rms_norm(input: Tensor, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    ns, dims = _norm_dims(input, normalized_shape, "rms_norm")
    if eps is None:   # of the computing type: float32's for 16-bit inputs, as PyTorch
        import numpy as np
        eps = float(np.finfo(input.dtype.np).eps)
    n = math.prod(ns)
    ms = M.times_ratio(P("sum", P("mul", input, input), dims=dims, keepdim=True), 1, n)
    y = P("mul", input, P("rsqrt", P("add", ms, float(eps))))
    return P("mul", y, weight) if weight is not None else y


@autocast_op("group_norm")
@M.in_float32(out_like=0)
def group_norm(input: Tensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    N, C = input.shape[0], input.shape[1]
    if C % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input "
                           f"of shape {input.shape} and num_groups={num_groups}")
    x = P("reshape", input, shape=(N, num_groups, input.numel() // (N * num_groups) if N else 0))
    mean, var, _ = _moments(x, (2,))
    y = P("mul", P("sub", x, mean), P("rsqrt", P("add", var, float(eps))))
    y = P("reshape", y, shape=tuple(input.shape))
    bshape = _bshape(input)
    if weight is not None:
        y = P("mul", y, P("reshape", weight, shape=bshape))
    if bias is not None:
        y = P("add", y, P("reshape", bias, shape=bshape))
    return y


@M.in_float32(out_like=0)
def instance_norm(input: Tensor, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    dims = tuple(range(2, input.ndim))
    bshape = _bshape(input)
    if use_input_stats:
        mean, var, n = _moments(input, dims)
        if running_mean is not None and running_var is not None:
            with ag.no_grad():
                C = input.shape[1]
                bm = M.mean(P("reshape", mean.detach(), shape=(input.shape[0], C)), 0)
                bv = M.mean(P("reshape", P("mul", var.detach(), n / max(n - 1, 1)), shape=(input.shape[0], C)), 0)
                running_mean.copy_(M.add(M.mul(running_mean, 1 - momentum), M.mul(bm, momentum)))
                running_var.copy_(M.add(M.mul(running_var, 1 - momentum), M.mul(bv, momentum)))
    else:
        mean = P("reshape", running_mean, shape=bshape)
        var = P("reshape", running_var, shape=bshape)
    y = P("mul", P("sub", input, mean), P("rsqrt", P("add", var, float(eps))))
    if weight is not None:
        y = P("mul", y, P("reshape", weight, shape=bshape))
    if bias is not None:
        y = P("add", y, P("reshape", bias, shape=bshape))
    return y


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    from .pooling import avg_pool2d, avg_pool3d
    from .conv import pad
    dim = input.ndim
    if dim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {dim} dimensions)")
    div = M.mul(input, input).unsqueeze(1)
    if dim == 3:
        div = pad(div, (0, 0, size // 2, (size - 1) // 2))
        div = avg_pool2d(div, (size, 1), stride=1).squeeze(1)
    else:
        sizes = input.shape
        div = div.reshape(sizes[0], 1, sizes[1], sizes[2], -1)
        div = pad(div, (0, 0, 0, 0, size // 2, (size - 1) // 2))
        div = avg_pool3d(div, (size, 1, 1), stride=1).squeeze(1)
        div = div.reshape(tuple(sizes))
    div = M.pow(M.add(M.mul(div, alpha), k), beta)
    return M.div(input, div)
