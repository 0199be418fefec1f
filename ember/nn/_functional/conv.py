"""Convolutions, im2col (unfold/fold) and padding, built on the `pad`, `windows` and `fold` primitives.

conv: the input moved batch-last, [C, *sp, N] (pad), windows (a strided view [N, C, *out, *kernel]),
columns laid out with the batch innermost, [C*K, *out, N] (im2col), one GEMM per group giving
[O, *out, N], bias, returned as an [N, O, *out] permuted view.  Why batch-last: every kernel that
touches a window -- im2col, the pooling that follows, the fold of the input gradient -- then loops
over the batch innermost, so each window offset is a contiguous run of N values: vectorised in
compiled code (where a permute is only an index map, and no window needs a bounds mask per
element: ember/passes/decompose.py, pooling.py), long numpy inner loops in eager mode.
Groups add a group dimension to the same GEMM.
conv_transpose is the adjoint: one GEMM to [N, O, *in, *kernel] patches, then `fold` sums them.
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend.autocast import autocast_op
from ...frontend.conv_gathered import gathered_conv
from ...frontend.dispatch import apply as P
from ._util import Tensor, const, is_tracing, ntuple, static_sizes


def _check_conv_input(input, weight, groups, nd, op, transposed=False):
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {op}, but got "
                           f"input of size: {list(input.shape)}")
    if weight.ndim != nd + 2:
        raise RuntimeError(f"weight should have {nd + 2} dimensions for {op}, got {list(weight.shape)}")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"Input type ({input.dtype.name}) and weight type ({weight.dtype.name}) should be the same")
    c = input.shape[-nd - 1]
    if transposed:
        if c != weight.shape[0]:
            raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                               f"{list(input.shape)} to have {weight.shape[0]} channels, but got {c} channels instead")
    elif c != weight.shape[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                           f"{list(input.shape)} to have {weight.shape[1] * groups} channels, but got {c} "
                           "channels instead")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if not transposed and weight.shape[0] % groups:
        raise RuntimeError("Given groups=%d, expected weight to be divisible by %d at dimension 0, but got "
                           "weight of size %s instead" % (groups, groups, list(weight.shape)))


def _same_padding(kernel, dilation, stride):
    if any(s != 1 for s in stride):
        raise ValueError("padding='same' is not supported for strided convolutions")
    pads = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def convnd(input: Tensor, weight: Tensor, bias, stride, padding, dilation, groups, nd: int, op: str) -> Tensor:
    _check_conv_input(input, weight, groups, nd, op)
    unbatched = input.ndim == nd + 1
    x = P("reshape", input, shape=(1,) + tuple(input.shape)) if unbatched else input
    kernel = tuple(weight.shape[2:])
    stride, dilation = ntuple(stride, nd), ntuple(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            pads = _same_padding(kernel, dilation, stride)
        else:
            raise ValueError(f"Invalid padding string '{padding}', should be one of {{'valid', 'same'}}")
    else:
        pads = [(p, p) for p in ntuple(padding, nd)]
    spatial = static_sizes(x.shape[2:])
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads))
    for n, k, d in zip(padded, kernel, dilation):
        if n < d * (k - 1) + 1:
            raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
                               f"Kernel size: ({' x '.join(map(str, kernel))}). Kernel size can't be greater "
                               "than actual input size")
    if not is_tracing() and groups == 1:
        # eager: the products gather the columns from the padded input (ember/frontend/conv_gathered.py)
        y = gathered_conv(x, weight, bias, stride, pads, dilation,
                          lambda x_, w_, b_: _conv_composite(x_, w_, b_, pads, stride, dilation, groups, nd))
        if y is not None:
            return P("reshape", y, shape=tuple(y.shape[1:])) if unbatched else y
    y = _conv_composite(x, weight, bias, pads, stride, dilation, groups, nd)
    return P("reshape", y, shape=tuple(y.shape[1:])) if unbatched else y


def _conv_composite(x, weight, bias, pads, stride, dilation, groups, nd):
    """The convolution from primitives: batch-last input, padding, windows, one GEMM (see the docstring)."""
    C = x.shape[1]
    kernel = tuple(weight.shape[2:])
    # batch-last input [C, *sp, N]: a free permute when traced; in eager one copy (none when the
    # input already is laid out so, e.g. the output of a convolution + pooling), after which every
    # window offset below reads runs of N contiguous values
    xt = P("permute", x, dims=tuple(range(1, nd + 2)) + (0,))
    if not is_tracing():
        xt = P("reshape", P("reshape", xt, shape=(C, math.prod(xt.shape[1:]))), shape=tuple(xt.shape))
    if any(lo or hi for lo, hi in pads):
        xt = P("pad", xt, pads=((0, 0),) + tuple(pads) + ((0, 0),), value=0.0)
    x = P("permute", xt, dims=(nd + 1, 0) + tuple(range(1, nd + 1)))
    w = P("windows", x, kernel=kernel, stride=stride, dilation=dilation)      # [N, C, *out, *k]
    return _conv_batch_last(w, weight, bias, groups, nd)


def _conv_batch_last(w: Tensor, weight: Tensor, bias, groups: int, nd: int) -> Tensor:
    """Convolution from its windows w [N, C, *out, *k]: columns [G, Cg*K, L*N] (batch innermost),
    one GEMM with the weight [G, O/G, Cg*K], bias, and the [O, *out, N] result handed back as an
    [N, O, *out] permuted view (see the module docstring)."""
    N, C = w.shape[0], w.shape[1]
    out_sp, kernel = tuple(w.shape[2:2 + nd]), tuple(w.shape[2 + nd:])
    L, K = math.prod(out_sp), math.prod(kernel)
    O, G = weight.shape[0], groups
    Cg = C // G
    k_dims = tuple(range(2 + nd, 2 + 2 * nd))
    o_dims = tuple(range(2, 2 + nd))
    cols = P("permute", w, dims=(1,) + k_dims + o_dims + (0,))                  # [C, *k, *out, N]
    if G == 1 and bias is not None and is_tracing():
        # the bias as one more column of the weight against a row of ones under the columns: the
        # GEMM adds it, and its gradient comes out of the weight-gradient GEMM as that column
        # (no reduction over the batch and positions, which a kernel would do with only O-way
        # parallelism); the im2col kernel writes the extra row for free
        # (the ones are joined before the positions and the batch are merged: the kernel that
        # writes the columns keeps its [rows, *out, N] loops, the batch innermost)
        cols = P("reshape", cols, shape=(C * K,) + out_sp + (N,))
        ones = P("full", shape=(1,) + out_sp + (N,), value=1.0, dtype=cols.dtype, device=cols.device)
        cols = P("reshape", P("cat", cols, ones, dim=0), shape=(C * K + 1, L * N))
        wb = P("cat", P("reshape", weight, shape=(O, C * K)), P("reshape", bias, shape=(O, 1)), dim=1)
        y = P("matmul", wb, cols)                                                 # [O, L*N]
        y = P("reshape", y, shape=(O,) + out_sp + (N,))
        return P("permute", y, dims=(nd + 1, 0) + tuple(range(1, nd + 1)))
    if G == 1:
        cols = P("reshape", cols, shape=(C * K, L * N))
        y = P("matmul", P("reshape", weight, shape=(O, C * K)), cols)            # [O, L*N]
    else:
        cols = P("reshape", cols, shape=(G, Cg * K, L * N))
        y = P("matmul", P("reshape", weight, shape=(G, O // G, Cg * K)), cols)   # [G, O/G, L*N]
    y = P("reshape", y, shape=(O,) + out_sp + (N,))
    if bias is not None:
        y = P("add", y, P("reshape", bias, shape=(O,) + (1,) * (nd + 1)))
    return P("permute", y, dims=(nd + 1, 0) + tuple(range(1, nd + 1)))       # [N, O, *out]


@autocast_op("conv1d")
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return convnd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


@autocast_op("conv2d")
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return convnd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


@autocast_op("conv3d")
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return convnd(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, nd, op):
    _check_conv_input(input, weight, groups, nd, op, transposed=True)
    unbatched = input.ndim == nd + 1
    x = P("reshape", input, shape=(1,) + tuple(input.shape)) if unbatched else input
    stride, padding = ntuple(stride, nd), ntuple(padding, nd)
    output_padding, dilation = ntuple(output_padding, nd), ntuple(dilation, nd)
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ >= s and op_ >= d:
            raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                               f"output_padding: {list(output_padding)}, stride: {list(stride)}, "
                               f"dilation: {list(dilation)}")
    N, C = x.shape[0], x.shape[1]
    spatial = static_sizes(x.shape[2:])
    kernel = tuple(weight.shape[2:])
    G = groups
    Cg, Og = C // G, weight.shape[1]
    O = Og * G
    K = math.prod(kernel)
    L = math.prod(spatial)
    # patches[n, o, *in, *k] = sum_c x[n, c, *in] * weight[c, o, *k]
    xg = P("reshape", x, shape=(N, G, Cg, L))
    xg = P("permute", xg, dims=(1, 0, 3, 2))                                  # [G, N, L, Cg]
    xg = P("reshape", xg, shape=(G, N * L, Cg))
    wg = P("reshape", weight, shape=(G, Cg, Og * K))
    patches = P("matmul", xg, wg)                                             # [G, N*L, Og*K]
    patches = P("reshape", patches, shape=(G, N) + spatial + (Og,) + kernel)
    perm = (1, 0, 2 + nd) + tuple(range(2, 2 + nd)) + tuple(range(3 + nd, 3 + 2 * nd))
    patches = P("permute", patches, dims=perm)                                 # [N, G, Og, *in, *k]
    patches = P("reshape", patches, shape=(N, O) + spatial + kernel)
    full_size = tuple((n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(spatial, stride, dilation, kernel))
    y = P("fold", patches, size=full_size, kernel=kernel, stride=stride, dilation=dilation)
    crop = tuple((-p, op_ - p) for p, op_ in zip(padding, output_padding))
    if any(lo or hi for lo, hi in crop):
        y = P("pad", y, pads=((0, 0), (0, 0)) + crop, value=0.0)
    if bias is not None:
        y = P("add", y, P("reshape", bias, shape=(O,) + (1,) * nd))
    if unbatched:
        y = P("reshape", y, shape=tuple(y.shape[1:]))
    return y


@autocast_op("conv_transpose1d")
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                            "conv_transpose1d")


@autocast_op("conv_transpose2d")
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                            "conv_transpose2d")


@autocast_op("conv_transpose3d")
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transposend(input, weight, bias, stride, padding, output_padding, groups, dilation, 3,
                            "conv_transpose3d")


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: [N, C, H, W] -> [N, C*kh*kw, L]."""
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"Input Error: Only 3D or 4D input Tensors are supported (got {input.ndim}D)")
    unbatched = input.ndim == 3
    x = P("reshape", input, shape=(1,) + tuple(input.shape)) if unbatched else input
    k, d, p, s = ntuple(kernel_size, 2), ntuple(dilation, 2), ntuple(padding, 2), ntuple(stride, 2)
    if any(p):
        x = P("pad", x, pads=((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), value=0.0)
    w = P("windows", x, kernel=k, stride=s, dilation=d)
    N, C, oh, ow = w.shape[:4]
    cols = P("reshape", P("permute", w, dims=(0, 1, 4, 5, 2, 3)), shape=(N, C * k[0] * k[1], oh * ow))
    return P("reshape", cols, shape=tuple(cols.shape[1:])) if unbatched else cols


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im: [N, C*kh*kw, L] -> [N, C, H, W], summing overlaps (the adjoint of unfold)."""
    if input.ndim not in (2, 3):
        raise NotImplementedError(f"Input Error: Only unbatched (2D) or batched (3D) input Tensors are supported "
                                  f"(got {input.ndim}D)")
    unbatched = input.ndim == 2
    x = P("reshape", input, shape=(1,) + tuple(input.shape)) if unbatched else input
    size, k = ntuple(output_size, 2), ntuple(kernel_size, 2)
    d, p, s = ntuple(dilation, 2), ntuple(padding, 2), ntuple(stride, 2)
    N, CK, L = x.shape
    if CK % (k[0] * k[1]):
        raise RuntimeError("Expected size of input's dimension 1 to be divisible by the product of kernel_size, "
                           f"but got input.size(1)={CK} and kernel_size={k}")
    C = CK // (k[0] * k[1])
    padded = (size[0] + 2 * p[0], size[1] + 2 * p[1])
    oh = (padded[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (padded[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if oh * ow != L:
        raise RuntimeError(f"Given output_size={size}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, "
                           f"expected size of input's dimension 2 to match the calculated number of sliding "
                           f"blocks {oh} * {ow} = {oh * ow}, but got input.size(2)={L}.")
    patches = P("permute", P("reshape", x, shape=(N, C, k[0], k[1], oh, ow)), dims=(0, 1, 4, 5, 2, 3))
    y = P("fold", patches, size=padded, kernel=k, stride=s, dilation=d)
    if any(p):
        y = P("pad", y, pads=((0, 0), (0, 0), (-p[0], -p[0]), (-p[1], -p[1])), value=0.0)
    return P("reshape", y, shape=tuple(y.shape[1:])) if unbatched else y


# -------------------------------------------------------------------------------------- padding
def pad(input: Tensor, pad, mode: str = "constant", value=None) -> Tensor:
    """F.pad: `pad` lists (left, right) amounts from the LAST dimension backwards, as PyTorch."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    npairs = len(pad) // 2
    if npairs > input.ndim:
        raise ValueError("Padding length should be less than or equal to two times the input dimension but got "
                         f"padding length {len(pad)} and input of dimension {input.ndim}")
    pads = [(0, 0)] * input.ndim
    for i in range(npairs):
        pads[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode == "constant":
        v = 0 if value is None else value
        if not input.dtype.is_floating_point:
            v = int(v)
        else:
            v = float(v)
        if all(lo == 0 and hi == 0 for lo, hi in pads):
            return input.clone()
        return P("pad", input, pads=tuple(pads), value=v)
    if value not in (None, 0):
        raise NotImplementedError(f"Padding mode \"{mode}\" doesn't take in value argument.")
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    if np_mode is None:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if input.ndim not in (npairs + 1, npairs + 2) or npairs > 3:
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor "
                                  f"(mode '{mode}' pads the last 1-3 dims of a batched or unbatched input)")
    x = input
    for d in range(input.ndim - npairs, input.ndim):
        lo, hi = pads[d]
        if lo == 0 and hi == 0:
            continue
        n = x.shape[d]
        if mode == "reflect" and (lo >= n or hi >= n):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({lo}, {hi}) at dimension {d} of input {list(input.shape)}")
        idx = np.arange(n)
        if lo < 0 or hi < 0:     # negative padding crops first; circular then wraps the cropped range
            idx = idx[max(0, -lo): max(0, n - max(0, -hi))]
        if mode == "circular" and (lo > len(idx) or hi > len(idx)):
            raise RuntimeError("Padding value causes wrapping around more than once.")
        idx = np.pad(idx, (max(0, lo), max(0, hi)), mode=np_mode) if (lo > 0 or hi > 0) else idx
        x = P("take", x, const(idx.astype(np.int64), x), dim=d)
    return x

