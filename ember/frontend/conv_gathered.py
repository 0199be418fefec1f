"""Eager convolutions whose columns are never copied: the products gather them from the padded input.

In: an eager float32 or bfloat16 CPU convolution (groups 1) and the composite it would otherwise run.  Out:
`gathered_conv(...)` -> the [N, O, *out] result as one autograd node, or None (the caller runs the composite).

The composite (ember/nn/_functional/conv.py) copies the im2col columns ([C*K, *out, N]: 4 MB for the MNIST
CNN's conv2) and adds the bias in a pass of its own; its weight gradient reads the columns back.  Here the
input is moved batch-last and padded once ([C, *padded, N], input-sized), the forward product and the
weight gradient read its windows in place (kernels/blas.py `gathered`, ember/runtime/gemm_f32.py
`matmul_gathered`, the kernels compiled code uses for the same job: ember/passes/implicit_gemm.py), and the
bias rides in the product as one more row of ones.  The input gradient is the composite's, W^T @ dY folded, with
the fold one generated gather (ember/kernels/window_ops.py: each input position sums the window offsets that
reach it, batch innermost) instead of a strided add per offset.  (dX as the full correlation of the padded dY,
the same gathered product, was measured slower: the MNIST CNN's conv2 does 2.25x the flops, 1.3 ms against
0.5 + 0.1 ms.)
A backward that must itself be differentiated (create_graph) runs the composite's, so higher-order
gradients are the composite's too.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..ir import dtypes as dt
from ..kernels import blas, blas_threads, casts, window_ops
from .autograd import Function, enable_grad, grad, is_grad_enabled
from .prims import _fold_kernel
from .tensor import _wrap

__all__ = ["gathered_conv", "MIN_RUN"]

MIN_RUN = 16      # contiguous source values per run of columns: below this the copy is cheaper


@functools.lru_cache(maxsize=64)
def _plan(xshape, kernel, stride, pads, dilation):
    """(padded sizes, output sizes, row offsets, run starts, run length) or None when the runs would be short.
    Kept per shape (an eager loop asks for the same few every step; the offsets cost ~10-25 us to list)."""
    N, C = xshape[0], xshape[1]
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(xshape[2:], pads))
    out = tuple((p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(padded, kernel, stride, dilation))
    if min(out) <= 0:
        return None
    st = [N] * len(padded)                               # element strides of [C, *padded, N]
    for i in range(len(padded) - 2, -1, -1):
        st[i] = st[i + 1] * padded[i + 1]
    if stride[-1] == 1:                                  # a run: one row of the last output dim, N innermost
        L, run_dims = out[-1] * N, out[:-1]
    else:
        L, run_dims = N, out
    if L < MIN_RUN:
        return None
    starts = [0]
    for n, s, d_st in zip(run_dims, stride, st):
        starts = [b + i * s * d_st for b in starts for i in range(n)]
    koff = [0]
    for k, d, d_st in zip(kernel, dilation, st):
        koff = [b + i * d * d_st for b in koff for i in range(k)]
    cstride = st[0] * padded[0]
    koff = tuple(c * cstride + o for c in range(C) for o in koff)
    return padded, out, koff, tuple(starts), L


class _GatheredConv(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, pads, dilation, plan, composite):
        padded, out, koff, starts, L = plan
        X = x._data
        N, C = X.shape[0], X.shape[1]
        xb = np.moveaxis(X, 0, -1)           # an unpadded batch-last input (a pooled conv result) is read as it lies
        if any(lo or hi for lo, hi in pads):
            src = xb
            xb = np.zeros((C,) + padded + (N,), X.dtype)
            xb[(slice(None),) + tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, X.shape[2:]))] = src
        elif not xb.flags.c_contiguous:
            xb = np.ascontiguousarray(xb)
        O = weight.shape[0]
        CK = len(koff)
        J = math.prod(out) * N
        W2 = weight._data.reshape(O, CK)
        if bias is not None:
            W2 = np.concatenate([W2, bias._data.reshape(O, 1)], axis=1)
            desc = (CK + 1, J, L, koff + (-1,), starts, ((CK, 1.0),))
        else:
            W2 = np.ascontiguousarray(W2)
            desc = (CK, J, L, koff, starts, ())
        y = np.empty((O, J), X.dtype)
        blas.matmul(W2, xb, y, gather_b=desc)
        ctx.saved = (xb, desc, W2, padded, out, pads)
        ctx.args = (x, weight, bias, composite)
        ctx.versions = (x._vc[0], weight._vc[0])     # xb and W2 may be their memory: see backward
        ctx.stride, ctx.dilation = stride, dilation
        return _wrap(np.moveaxis(y.reshape((O,) + out + (N,)), -1, 0))

    @staticmethod
    def backward(ctx, g):
        x, weight, bias, composite = ctx.args
        for t, v in zip((x, weight), ctx.versions):
            if t._vc[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{t.dtype.name} {list(t.shape)}] is at version {t._vc[0]}; expected version {v} "
                    "instead. Hint: the backtrace further above can point to the operation that failed to compute "
                    "its gradient.")
        if is_grad_enabled():            # create_graph: the composite's backward, differentiable
            ins = [t for t in (x, weight, bias) if t is not None and t.requires_grad]
            with enable_grad():
                gs = grad(composite(x, weight, bias), ins, g, create_graph=True, allow_unused=True)
            it = iter(gs)
            res = [next(it) if t is not None and t.requires_grad else None for t in (x, weight, bias)]
            return (*res, None, None, None, None, None)
        xb, desc, W2, padded, out, pads = ctx.saved
        K, J = desc[0], desc[1]
        O, N, C = W2.shape[0], x.shape[0], x.shape[1]
        dY = np.ascontiguousarray(np.moveaxis(g._data, 0, -1)).reshape(O, J)
        gx = gw = gb = None
        if weight.requires_grad or (bias is not None and bias.requires_grad):
            dWb = np.empty((O, K), dY.dtype)
            blas.matmul(dY, xb, dWb, transpose_b=True, gather_b=desc)
            CK = len(desc[3]) - (1 if bias is not None else 0)
            gw = _wrap(np.ascontiguousarray(dWb[:, :CK]).reshape(weight.shape))
            if bias is not None:
                gb = _wrap(np.ascontiguousarray(dWb[:, CK]))
        if x.requires_grad:
            kernel = tuple(weight.shape[2:])
            CK = C * math.prod(kernel)
            dcols = blas_threads.matmul(np.ascontiguousarray(W2[:, :CK].T), dY)      # [C*K, *out*N]
            narrow = dcols.dtype != np.float32
            if narrow:      # bf16: folded in float32 and rounded once, as eager's fold does
                dcols = casts.astype(dcols, np.float32)
            nd = len(kernel)
            w = dcols.reshape((C,) + kernel + out + (N,))
            # [N, C, *out, *kernel] as fold takes it (a view: the batch stays innermost in memory)
            w = w.transpose((2 * nd + 1, 0) + tuple(range(nd + 1, 2 * nd + 1)) + tuple(range(1, nd + 1)))
            lo = tuple(p for p, _ in pads)
            gxa = window_ops.fold(w, tuple(x.shape[2:]), kernel, ctx.stride, ctx.dilation, lo)
            if gxa is None:
                full = _fold_kernel(np, w, padded, kernel, ctx.stride, ctx.dilation)       # [N, C, *padded]
                gxa = full[(slice(None), slice(None)) + tuple(slice(a, a + n) for a, n in zip(lo, x.shape[2:]))]
            gx = _wrap(casts.astype(gxa, dY.dtype) if narrow else gxa)
        return gx, gw, gb, None, None, None, None, None


def gathered_conv(x, weight, bias, stride, pads, dilation, composite):
    """x [N, C, *sp] (*) weight [O, C, *k] (+ bias) by products that gather the columns, or None when that
    does not apply (dtype, device, runs shorter than MIN_RUN, no compiled GEMM here)."""
    if (x.dtype not in (dt.float32, dt.bfloat16) or weight.dtype is not x.dtype or x.device.type != "cpu"
            or weight.device.type != "cpu" or (bias is not None and (bias.dtype is not x.dtype
                                                                    or bias.device.type != "cpu"))
            or blas_threads.F32_GATHERED is None):
        return None
    kernel = tuple(weight.shape[2:])
    plan = _plan(tuple(x.shape), kernel, tuple(stride), tuple(pads), tuple(dilation))
    if plan is None:
        return None
    return _GatheredConv.apply(x, weight, bias, tuple(stride), tuple(pads), tuple(dilation), plan, composite)
