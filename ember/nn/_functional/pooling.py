"""Pooling on the `windows` primitive: max = pad(-inf) + windows + amax, avg = pad(0) + windows + sum /
divisor (a constant map that encodes count_include_pad and ceil_mode), adaptive avg = a reshape-mean
when sizes divide and two small averaging matmuls otherwise.

Eager max pooling (_max_pool_eager) is one generated kernel forward and one backward
(ember/kernels/window_ops.py), or numpy's running maximum over the window offsets' strided slices
where generated code does not apply (small or 16-bit inputs).
Traced (ember.compile) pooling with up to TAPS_MAX window offsets is written the same way, on the
input moved batch-last ([C, *spatial, N], a free permute in compiled code; a convolution hands its
result over in that layout): one strided slice per offset, combined by where(gt) (max: the first
maximum wins and gets the gradient, as in PyTorch) or add (avg).  The fused kernel then loops over
the batch innermost -- contiguous, vectorised -- and the backward is a sum of per-offset terms
instead of a fold with a bounds mask per element."""
from __future__ import annotations

import itertools
import math

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P, attach_node
from ...frontend.prims import _where
from ...frontend.tensor import _wrap
from ...ir import dtypes as dt
from ...kernels import window_ops
from ._util import const, is_tracing, ntuple, static_sizes


def _out_size(n, k, s, p, d, ceil_mode):
    num = n + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = -(-num // s) + 1
        if (o - 1) * s >= n + p:   # the last window must start inside the input or left padding
            o -= 1
    else:
        o = num // s + 1
    return o


def _prep(input, kernel_size, stride, padding, dilation, ceil_mode, nd, op):
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: Expected {nd + 1}D or {nd + 2}D input tensor, but got {list(input.shape)}")
    k = ntuple(kernel_size, nd)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else ntuple(stride, nd)
    p, d = ntuple(padding, nd), ntuple(dilation, nd)
    for pi, ki in zip(p, k):
        if pi > ki // 2:       # PyTorch's bound: half the kernel size, whatever the dilation
            raise RuntimeError(f"{op}: pad should be smaller than or equal to half of kernel size, but got "
                               f"pad={pi} and kernel_size={ki}")
    if any(si <= 0 for si in s):
        raise RuntimeError(f"{op}: stride should be greater than zero, but got stride={list(s)}")
    spatial = static_sizes(input.shape[-nd:])
    outs = tuple(_out_size(n, ki, si, pi, di, ceil_mode) for n, ki, si, pi, di in zip(spatial, k, s, p, d))
    if any(o <= 0 for o in outs):
        raise RuntimeError(f"{op}: Given input size: ({'x'.join(map(str, input.shape[-nd - 1:]))}). Calculated "
                           f"output size: ({'x'.join(map(str, (input.shape[-nd - 1],) + outs))}). Output size is "
                           "too small")
    # right padding: the symmetric padding plus what ceil_mode's extra window needs
    pads = tuple((pi, max(pi, (o - 1) * si + di * (ki - 1) + 1 - n - pi))
                 for n, o, ki, si, pi, di in zip(spatial, outs, k, s, p, d))
    return k, s, p, d, outs, pads


def _check_max_dtype(input, nd, return_indices, op):
    """PyTorch max-pools integer tensors too, except in max_pool1d's no-indices kernel; never bool."""
    if input.dtype is dt.bool_ or (nd == 1 and not return_indices and not input.dtype.is_floating_point):
        name = "max_pool1d_impl" if nd == 1 and not return_indices else op.replace("1d", "2d")
        raise NotImplementedError(f"\"{name}\" not implemented for '{_torch_name(input.dtype)}'")


def _torch_name(dtype):
    """The scalar-type name PyTorch's dispatch errors use ('Long', 'Float', ...)."""
    return {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
            "float16": "Half", "bfloat16": "BFloat16", "float32": "Float", "float64": "Double"}.get(
                dtype.name, dtype.name)


def _lowest(dtype):
    """The padding value that never wins a max: -inf, or an integer type's minimum."""
    return float("-inf") if dtype.is_floating_point else int(np.iinfo(dtype.np).min)


def _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd, op):
    _check_max_dtype(input, nd, return_indices, op)
    k, s, p, d, outs, pads = _prep(input, kernel_size, stride, padding, dilation, ceil_mode, nd, op)
    lead = ((0, 0),) * (input.ndim - nd)
    if not is_tracing():
        return _max_pool_eager(input, k, s, d, outs, lead + pads, return_indices)
    if not return_indices and math.prod(k) <= TAPS_MAX:
        return _pool_taps(input, "max", k, s, d, outs, pads, nd)
    x = input
    if any(lo or hi for lo, hi in pads):
        x = P("pad", x, pads=lead + pads, value=_lowest(input.dtype))
    w = P("windows", x, kernel=k, stride=s, dilation=d)
    if tuple(w.shape[-2 * nd:-nd]) != outs:  # the windows past the last output (ceil_mode trimming)
        w = P("slice", w, starts=(0,) * w.ndim, stops=tuple(w.shape[:-2 * nd]) + outs + k, steps=(1,) * w.ndim)
    red = tuple(range(w.ndim - nd, w.ndim))
    if not return_indices:
        return P("max", w, dims=red, keepdim=False)
    # indices: first maximum of each window (PyTorch's choice), as flat positions in the input plane
    flat = P("reshape", w, shape=tuple(w.shape[:-nd]) + (math.prod(k),))
    arg = P("argmax", flat, dims=(flat.ndim - 1,), keepdim=True)
    vals = P("reshape", P("gather", flat, arg, dim=flat.ndim - 1), shape=tuple(w.shape[:-nd]))
    spatial = static_sizes(input.shape[-nd:])
    pos = np.arange(math.prod(spatial), dtype=np.int64).reshape(spatial)
    pos = np.pad(pos, pads, constant_values=-1)
    pw = np.lib.stride_tricks.sliding_window_view(pos, tuple(di * (ki - 1) + 1 for ki, di in zip(k, d)))
    pw = pw[tuple(slice(None, None, si) for si in s) + tuple(slice(None, None, di) for di in d)]
    pw = pw[tuple(slice(0, o) for o in outs)].reshape(outs + (math.prod(k),))
    table = const(np.ascontiguousarray(pw), input)
    argf = P("reshape", arg, shape=tuple(arg.shape[:-1]))
    lead_n = argf.ndim - nd
    table_b = P("expand", P("reshape", table, shape=(1,) * lead_n + tuple(table.shape)),
                shape=tuple(argf.shape) + (math.prod(k),))
    idx = P("reshape", P("gather", table_b, P("reshape", argf, shape=tuple(argf.shape) + (1,)), dim=argf.ndim),
            shape=tuple(argf.shape))
    return vals, idx


TAPS_MAX = 64    # traced pools with more window offsets than this reduce over windows instead


def _pool_taps(input, how, k, s, d, outs, pads, nd):
    """Traced pooling as one slice per window offset (see the module docstring): max keeps the
    first maximum (the last NaN of a window wins, as in PyTorch), avg returns the sum (the caller divides).
    Non-overlapping windows (stride == kernel, dilation 1) are cut by a reshape, [.., o*k, ..] ->
    [.., o, k, ..], and an offset is a plain index into the k dim: in the backward every offset's
    term then reads the incoming gradient at the same index (a strided slice's adjoint would read
    it at a different index per offset, and a fused kernel would recompute its producer each time)."""
    moved = input.ndim == nd + 2
    x = P("permute", input, dims=tuple(range(1, nd + 2)) + (0,)) if moved else input   # [C, *sp, (N)]
    if any(lo or hi for lo, hi in pads):
        full = ((0, 0),) + tuple(pads) + (((0, 0),) if moved else ())
        x = P("pad", x, pads=full, value=_lowest(input.dtype) if how == "max" else 0)
    tail = (x.shape[-1],) if moved else ()
    blocks = s == k and all(di == 1 for di in d)
    if blocks:
        span = tuple(o * ki for o, ki in zip(outs, k))
        if tuple(x.shape[1:1 + nd]) != span:        # rows past the last window take no part
            x = P("slice", x, starts=(0,) * x.ndim, stops=(x.shape[0],) + span + tail, steps=(1,) * x.ndim)
        x = P("reshape", x, shape=(x.shape[0],) + sum(((o, ki) for o, ki in zip(outs, k)), ()) + tail)
    acc = None
    for off in itertools.product(*(range(ki) for ki in k)):
        starts, stops, steps = [0] * x.ndim, list(x.shape), [1] * x.ndim
        for i, (o, si, di, oi) in enumerate(zip(off, s, d, outs)):
            if blocks:                                 # [C, o1, k1, o2, k2, (N)]: index o into k_i
                starts[2 + 2 * i], stops[2 + 2 * i] = o, o + 1
            else:
                starts[1 + i], stops[1 + i], steps[1 + i] = o * di, o * di + si * (oi - 1) + 1, si
        t = P("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
        if blocks:
            t = P("reshape", t, shape=(x.shape[0],) + tuple(outs) + tail)
        if acc is None:
            acc = t
        elif how == "max":          # PyTorch's rule, `val > maxval || isnan(val)`: the last NaN of a window wins
            win = P("gt", t, acc)
            acc = P("where", P("logical_or", win, P("isnan", t)) if input.dtype.is_floating_point else win, t, acc)
        else:
            acc = P("add", acc, t)
    return P("permute", acc, dims=(nd + 1,) + tuple(range(nd + 1))) if moved else acc


def _max_pool_eager(input, k, s, d, outs, pads, return_indices=False):
    """Eager max pooling (the values pad + windows + amax gives, which is what the tracer records): one
    generated kernel (ember/kernels/window_ops.py) or numpy's loop over the window offsets, both keeping
    which offset won each window (PyTorch's rule: a larger value or a NaN takes over, the padding takes no
    part).  The VJP sends g to the winners: a generated gather, numpy strided writes, or -- when the
    backward is itself differentiated -- ember ops (where + fold)."""
    xp = input._xp
    nd = len(k)
    lo = tuple(p[0] for p in pads[-nd:])
    res = window_ops.max_pool(input._data, k, s, d, lo, outs, return_indices) if xp is np else None
    if res is None:
        out, arg = _max_pool_numpy(xp, input._data, k, s, d, outs, pads)
        idx = _flat_indices(xp, arg, tuple(input.shape[-nd:]), k, s, d, lo, outs) if return_indices else None
    else:
        out, arg, idx = res
    y = _wrap(out, input.device)
    if ag.is_grad_enabled() and input.requires_grad:
        attach_node(y, "max_pool", _max_pool_vjp(input, arg, k, s, d, outs, pads), {}, (input,), "")
    if return_indices:
        return y, _wrap(idx, input.device)
    return y


def _max_pool_vjp(input, arg, k, s, d, outs, pads):
    xp, device, dtype = input._xp, input.device, input.dtype.np
    shape = tuple(input.shape)
    nd = len(k)
    lo = tuple(p[0] for p in pads[-nd:])

    def vjp(g, o, x):
        if xp is np and not ag.is_grad_enabled():
            dx = window_ops.max_pool_grad(g._data, arg, shape, k, s, d, lo, outs)
            if dx is None:
                dx = _max_pool_grad_numpy(g._data, arg, shape, dtype, k, s, d, outs, pads)
            return (_wrap(dx, device),)
        return (_max_pool_grad_ops(g, _wrap(arg, device), input, k, s, d, outs, pads),)
    return vjp


def _max_pool_numpy(xp, a, k, s, d, outs, pads):
    """(max of each window, index of the winning offset): a running maximum over the offsets' strided
    slices of the padded input, kept in a's memory order (batch-last after a convolution)."""
    nd = len(k)
    spatial = a.shape[-nd:]
    padded = any(lo or hi for lo, hi in pads)
    if padded:
        a = xp.pad(a, pads, constant_values=-np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).min)
        # which padded positions are padding: they never win (PyTorch skips them)
        inside = xp.zeros(a.shape[-nd:], dtype=bool)
        inside[tuple(slice(lo, lo + n) for (lo, _), n in zip(pads[-nd:], spatial))] = True
    offsets = list(itertools.product(*(range(ki) for ki in k)))
    tdt = np.int8 if len(offsets) <= 127 else np.int16 if len(offsets) <= 32767 else np.int32
    out = arg = have = None
    for kid, off in enumerate(offsets):
        sl = tuple(slice(o * di, o * di + si * (oi - 1) + 1, si) for o, di, si, oi in zip(off, d, s, outs))
        v = a[(Ellipsis,) + sl]
        ok = inside[sl] if padded else None
        if out is None:
            out = v.copy(order="K")     # keep the input's memory order (batch-last after a conv)
            arg = xp.zeros_like(out, dtype=tdt)
            have = ok
            continue
        win = (v > out) | xp.isnan(v)                   # PyTorch: `val > maxval || isnan(val)`
        if padded:
            win = (win | ~have) & ok if have is not None else win & ok
            have = have | ok
        # branch-free updates: masked copies (copyto where=) branch per element and cost ~8x more
        out = _where(xp, win, v, out)
        arg = _where(xp, win, tdt(kid), arg)
    return out, arg


def _flat_indices(xp, arg, spatial, k, s, d, lo, outs):
    """PyTorch's return_indices: the winner's flat position in the input plane, from its offset index."""
    nd = len(k)
    idx = xp.zeros(arg.shape, dtype=np.int64)
    rest = arg.astype(np.int64)
    for i in range(nd - 1, -1, -1):
        off = rest % k[i]
        rest = rest // k[i]
        pos = xp.arange(outs[i], dtype=np.int64).reshape((outs[i],) + (1,) * (nd - 1 - i)) * s[i] - lo[i]
        idx += (pos + off * d[i]) * math.prod(spatial[i + 1:])
    return idx


def _max_pool_grad_numpy(ga, arg, shape, dtype, k, s, d, outs, pads):
    """Plain backward of _max_pool_numpy: g goes to the offset that won each window, one strided write per
    offset (an add where windows overlap), in the memory order of arg; the padding is cut off at the end."""
    nd = len(k)
    padded = tuple(shape[:-nd]) + tuple(n + lo + hi for n, (lo, hi) in zip(shape[-nd:], pads[-nd:]))
    order = sorted(range(arg.ndim), key=lambda i: (-abs(arg.strides[i]), i))
    inv = [0] * len(order)
    for i, p in enumerate(order):
        inv[p] = i
    dx = np.zeros(tuple(padded[p] for p in order), dtype=ga.dtype).transpose(inv)
    disjoint = all(si >= di * (ki - 1) + 1 for si, di, ki in zip(s, d, k))   # windows do not overlap
    zero = np.zeros((), ga.dtype)
    for kid, off in enumerate(itertools.product(*(range(ki) for ki in k))):
        sl = (Ellipsis,) + tuple(slice(o * di, o * di + si * (oi - 1) + 1, si)
                                 for o, di, si, oi in zip(off, d, s, outs))
        part = _where(np, arg == kid, ga, zero)
        if disjoint:
            dx[sl] = part
        else:
            dx[sl] += part
    if any(lo or hi for lo, hi in pads):
        dx = dx[tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, dx.shape))]
    return dx.astype(dtype, copy=False)


def _max_pool_grad_ops(g, argt, input, k, s, d, outs, pads):
    """The max-pool gradient in ember ops (create_graph: it is differentiated again): g where each offset
    won, interleaved back (windows that tile the input) or folded (the general case)."""
    nd = len(k)
    K = math.prod(k)
    kids = const(np.arange(K, dtype=argt.dtype.np).reshape((K,) + (1,) * argt.ndim), input)
    lead = pads[:-nd]
    shape = tuple(g.shape)
    one = (1,) + shape
    gk = P("where", P("eq", P("reshape", argt, shape=one), kids), P("reshape", g, shape=one), 0.0)
    n = len(shape) - nd                                                       # [K, ..., *out]
    if s == k and all(di == 1 for di in d):
        # non-overlapping windows: interleave the offsets back with one permute + reshape
        gk = P("reshape", gk, shape=k + shape)
        perm = tuple(range(nd, nd + n))
        for i in range(nd):
            perm += (nd + n + i, i)
        gk = P("reshape", P("permute", gk, dims=perm), shape=shape[:n] + tuple(oi * ki for oi, ki in zip(outs, k)))
        sp = tuple(input.shape[-nd:])
        cover = tuple((-lo, ni - (oi * ki - lo)) for (lo, _), ni, oi, ki in zip(pads[n:], sp, outs, k))
        if any(a or b for a, b in cover):
            gk = P("pad", gk, pads=lead + cover, value=0.0)
        return gk
    padded = tuple(ni + lo + hi for ni, (lo, hi) in zip(input.shape[-nd:], pads[-nd:]))
    gk = P("reshape", gk, shape=k + shape)
    gk = P("permute", gk, dims=tuple(range(nd, nd + n + nd)) + tuple(range(nd)))   # [..., *out, *k]
    gx = P("fold", gk, size=padded, kernel=k, stride=s, dilation=d)
    if any(lo or hi for lo, hi in pads):
        gx = P("pad", gx, pads=tuple((-lo, -hi) for lo, hi in pads), value=0.0)
    return gx


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    r = _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")
    return r


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


@autocast_op("max_pool3d")
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    """F.max_pool1d_with_indices: (values, indices), as max_pool1d(..., return_indices=True)."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    """F.max_pool2d_with_indices: (values, indices), as max_pool2d(..., return_indices=True)."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def _avg_divisor(spatial, outs, k, s, p, count_include_pad):
    """PyTorch's per-window divisor: windows clipped to input+padding (or to the input alone)."""
    axes = []
    for n, o, ki, si, pi in zip(spatial, outs, k, s, p):
        start = np.arange(o) * si - pi
        end = np.minimum(start + ki, n + pi)
        size = end - start
        cs, ce = np.maximum(start, 0), np.minimum(end, n)
        axes.append(size if count_include_pad else ce - cs)
    div = axes[0].astype(np.float64)
    for a in axes[1:]:
        div = np.multiply.outer(div, a)
    return div


def _window_sum(input, k, s, d, outs, pads, nd):
    """Each window's sum over the zero-padded input (pad + windows + sum)."""
    x = input
    if any(lo or hi for lo, hi in pads):
        x = P("pad", x, pads=pads, value=0.0 if input.dtype.is_floating_point else 0)
    w = P("windows", x, kernel=k, stride=s, dilation=d)
    if tuple(w.shape[-2 * nd:-nd]) != outs:
        w = P("slice", w, starts=(0,) * w.ndim, stops=tuple(w.shape[:-2 * nd]) + outs + k, steps=(1,) * w.ndim)
    return P("sum", w, dims=tuple(range(w.ndim - nd, w.ndim)), keepdim=False)


@M.in_float32   # 16-bit: summed and divided in float32, rounded once (PyTorch's kernel; was two roundings, more traced)
def _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd, op):
    integer = not input.dtype.is_floating_point
    if integer and input.dtype is not dt.int64:      # PyTorch averages int64 alone of the integer types
        name = "avg_pool3d_out_frame" if nd == 3 else "avg_pool2d"
        raise NotImplementedError(f"\"{name}\" not implemented for '{_torch_name(input.dtype)}'")
    k, s, p, d, outs, pads = _prep(input, kernel_size, stride, padding, 1, ceil_mode, nd, op)
    lead = ((0, 0),) * (input.ndim - nd)
    if integer:
        total = _window_sum(input, k, s, d, outs, lead + pads, nd)
        # int64: the integer sum divided with truncation, as PyTorch's integer kernel
        div = divisor_override or _avg_divisor(tuple(input.shape[-nd:]), outs, k, s, p, count_include_pad)
        div = div if isinstance(div, int) else const(div.astype(np.int64), input)
        return M.div(total, div, rounding_mode="trunc")
    if is_tracing() and math.prod(k) <= TAPS_MAX:
        total = _pool_taps(input, "sum", k, s, d, outs, pads, nd)
    else:
        total = _window_sum(input, k, s, d, outs, lead + pads, nd)
    if divisor_override:
        return P("mul", total, 1.0 / divisor_override)
    div = _avg_divisor(tuple(input.shape[-nd:]), outs, k, s, p, count_include_pad)
    if np.all(div == div.flat[0]):
        return P("mul", total, float(1.0 / div.flat[0]))
    return P("mul", total, const((1.0 / div).astype(input.dtype.np), input))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                       "avg_pool2d")


@autocast_op("avg_pool3d")
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                       "avg_pool3d")


def _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, nd):
    """(sum over the window of x^p)^(1/p), as avg_pool(x^p) * window size; p = +-inf: the max (min) of |x|."""
    maxp = (max_pool1d, max_pool2d, max_pool3d)[nd - 1]
    if isinstance(norm_type, (int, float)) and math.isinf(norm_type):
        if norm_type > 0:
            return maxp(M.abs(input), kernel_size, stride, 0, 1, ceil_mode)
        return M.neg(maxp(M.neg(M.abs(input)), kernel_size, stride, 0, 1, ceil_mode))
    avgp = (avg_pool1d, avg_pool2d, avg_pool3d)[nd - 1]
    out = avgp(M.pow(input, norm_type), kernel_size, stride, 0, ceil_mode)
    # sign * relu(abs): a window whose p-th powers sum to zero gets a zero gradient, not NaN
    return M.pow(M.mul(M.mul(M.sign(out), M.relu(M.abs(out))), math.prod(ntuple(kernel_size, nd))), 1.0 / norm_type)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, 1)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, 2)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, 3)


# ------------------------------------------------------------------------------------- adaptive
def _adaptive_bounds(n, o):
    i = np.arange(o)
    return (i * n) // o, -((-(i + 1) * n) // o)


def _adaptive_args(input, output_size, nd, op):
    """(spatial sizes, output sizes) of an adaptive pool, None in output_size keeping the input's size."""
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: Expected {nd + 1}D or {nd + 2}D tensor, but got {list(input.shape)}")
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"{op.replace('1d', '2d')}\" not implemented for '{_torch_name(input.dtype)}'")
    for i in range(input.ndim - nd, input.ndim):
        if input.shape[i] == 0:
            raise RuntimeError(f"{op}(): Expected input to have non-zero size for non-batch dimensions, but input "
                               f"has sizes {list(input.shape)} with dimension {i} being empty")
    spatial = static_sizes(input.shape[-nd:])
    osz = ntuple(output_size if not isinstance(output_size, (list, tuple)) else
                 tuple(n if o is None else o for o, n in zip(output_size, spatial)), nd)
    return spatial, osz


def _empty_pool(input, osz, nd):
    """An output with a zero size: an empty slice of the input (so the input's gradient is zeros)."""
    lead = tuple(input.shape[:-nd])
    e = P("slice", input, starts=(0,) * input.ndim, stops=lead + tuple(min(o, 1) for o in osz),
          steps=(1,) * input.ndim)
    return P("reshape", e, shape=lead + tuple(osz))


def _adaptive_avg(input, output_size, nd, op):
    spatial, osz = _adaptive_args(input, output_size, nd, op)
    lead = tuple(input.shape[:-nd])
    if 0 in osz:
        return _empty_pool(input, osz, nd)
    if all(o == 1 for o in osz):
        return M.mean(input, dim=tuple(range(input.ndim - nd, input.ndim)), keepdim=True)
    if all(n % o == 0 for n, o in zip(spatial, osz)):
        shape = lead
        for n, o in zip(spatial, osz):
            shape += (o, n // o)
        x = P("reshape", input, shape=shape)
        red = tuple(len(lead) + 2 * i + 1 for i in range(nd))
        return M.mean(x, dim=red)
    # averaging matrices, one per spatial dim, applied as matmuls over that dim
    x = input
    for i, (n, o) in enumerate(zip(spatial, osz)):
        start, end = _adaptive_bounds(n, o)
        A = np.zeros((o, n), dtype=input.dtype.np)
        for r, (a, b) in enumerate(zip(start, end)):
            A[r, a:b] = 1.0 / (b - a)
        dim = x.ndim - nd + i
        perm = tuple(j for j in range(x.ndim) if j != dim) + (dim,)
        xt = P("permute", x, dims=perm)
        y = P("matmul", xt, const(np.ascontiguousarray(A.T), input))
        inv = [0] * len(perm)
        for j, pj in enumerate(perm):
            inv[pj] = j
        x = P("permute", y, dims=tuple(inv))
    return x


def adaptive_avg_pool1d(input, output_size):
    return _adaptive_avg(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    return _adaptive_avg(input, output_size, 2, "adaptive_avg_pool2d")


@autocast_op("adaptive_avg_pool3d")
def adaptive_avg_pool3d(input, output_size):
    return _adaptive_avg(input, output_size, 3, "adaptive_avg_pool3d")


def _adaptive_max(input, output_size, return_indices, nd, op):
    spatial, osz = _adaptive_args(input, output_size, nd, op)
    if 0 in osz:
        y = _empty_pool(input, osz, nd)
        return (y, M.cast(y.detach(), dt.int64)) if return_indices else y
    if all(n % o == 0 for n, o in zip(spatial, osz)):
        k = tuple(n // o for n, o in zip(spatial, osz))
        return _max_poolnd(input, k, k, 0, 1, False, return_indices, nd, op)
    # non-divisible: the cells overlap; each cell's first maximum, as PyTorch's kernel picks it (the
    # gradient goes to that element alone -- a max reduction would split it among ties, and a window
    # of zeros after a ReLU is all ties)
    lead = tuple(input.shape[:-nd])
    gstride = [math.prod(spatial[j + 1:]) for j in range(nd)]
    vals, idxs = [], []
    for combo in itertools.product(*[list(zip(*_adaptive_bounds(n, o))) for n, o in zip(spatial, osz)]):
        starts = [int(a) for a, _ in combo]
        csz = [int(b) - int(a) for a, b in combo]
        cell = input[(slice(None),) * len(lead) + tuple(slice(a, a + c) for a, c in zip(starts, csz))]
        flat = P("reshape", cell, shape=lead + (math.prod(csz),))
        arg = P("argmax", flat, dims=(flat.ndim - 1,), keepdim=True)
        vals.append(P("gather", flat, arg, dim=flat.ndim - 1))
        if return_indices:      # the winner's flat position in the input plane
            pos = 0
            for j in range(nd):
                coord = M.add(M.remainder(M.floor_divide(arg, math.prod(csz[j + 1:])), csz[j]), starts[j])
                pos = M.add(pos, M.mul(coord, gstride[j]))
            idxs.append(pos)
    from ...frontend.shape_ops import cat
    y = P("reshape", cat(vals, dim=-1), shape=lead + osz)
    if not return_indices:
        return y
    return y, P("reshape", cat(idxs, dim=-1), shape=lead + osz)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max(input, output_size, return_indices, 1, "adaptive_max_pool1d")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive_max(input, output_size, return_indices, 2, "adaptive_max_pool2d")



def adaptive_max_pool3d(input, output_size, return_indices=False):
    return _adaptive_max(input, output_size, return_indices, 3, "adaptive_max_pool3d")
