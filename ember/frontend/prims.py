"""VJPs of the primitives, and the eager kernels that differ from an op's reference semantics.

An op's eager kernel is its `ref` (ember/ir/ops.py) unless a row here registers one of its own:
an error PyTorch raises (integer division by zero, negative integer powers, bool negation), a
faster path (bit-select where, small-window reductions, x**2 as x*x), or a library call (BLAS).
A kernel takes the array module `xp` (numpy or cupy) and the inputs' arrays (or Python scalars for
binary ops) and returns an array. A VJP takes (g, out, *inputs, **attrs) and returns one gradient
per input (None where there is none), written with ember ops so backward can be traced and
differentiated again. Schemas (shape/dtype rules) are in ember/ir/ops.py.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..ir.ops import OPS
from ..ir import dtypes as dt
from ..kernels import blas_threads, casts, generated, window_ops
from .dispatch import INPUTS, INPUTS_AND_OUT, OUT, apply as P, defvjp, input_at, register, register_reduced
from .tensor import Tensor


def _shape(t):
    return tuple(t.shape) if hasattr(t, "shape") else ()


def sum_to(g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    shape = tuple(shape)
    gs = tuple(g.shape)
    if len(gs) == len(shape) and gs == shape:     # (lengths first: a symbolic size compared is a guard)
        return g
    lead = len(gs) - len(shape)
    dims = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and gs[i + lead] != 1)
    r = P("sum", g, dims=dims, keepdim=True) if dims else g
    rs = tuple(r.shape)
    return P("reshape", r, shape=shape) if len(rs) != len(shape) or rs != shape else r


def _is_t(x):
    return hasattr(x, "_data")


def _grads(g, x, y, gx, gy):
    return (sum_to(gx(), _shape(x)) if _is_t(x) and x.requires_grad else None,
            sum_to(gy(), _shape(y)) if _is_t(y) and y.requires_grad else None)


# -------------------------------------------------------------------------------- unary
def _bool_neg():
    raise TypeError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
                    "invert a mask, use the `~` or `logical_not()` operator instead.")


def _zero_vjp(g, o, x):
    """Piecewise-constant ops (sign, floor ...): PyTorch gives them a grad_fn whose gradient is 0."""
    return (P("full", shape=tuple(x.shape), value=0, dtype=g.dtype, device=g.device),)


register("neg", lambda xp, x: xp.negative(x) if x.dtype != np.bool_ else _bool_neg(),
         lambda g, o, x: (P("neg", g),))
defvjp("exp", lambda g, o, x: (P("mul", g, o),), OUT)
defvjp("log", lambda g, o, x: (P("div", g, x),), INPUTS)
defvjp("sqrt", lambda g, o, x: (P("div", g, P("mul", o, 2.0)),), OUT)
defvjp("rsqrt", lambda g, o, x: (P("mul", g, P("mul", P("mul", o, P("mul", o, o)), -0.5)),), OUT)
defvjp("sin", lambda g, o, x: (P("mul", g, P("cos", x)),), INPUTS)
defvjp("cos", lambda g, o, x: (P("neg", P("mul", g, P("sin", x))),), INPUTS)
defvjp("tanh", lambda g, o, x: (P("mul", g, P("sub", 1.0, P("mul", o, o))),), OUT)
defvjp("sigmoid", lambda g, o, x: (P("mul", g, P("mul", o, P("sub", 1.0, o))),), OUT)
defvjp("erf", lambda g, o, x: (P("mul", g, P("mul", P("exp", P("neg", P("mul", x, x))), 2.0 / math.sqrt(math.pi))),),
       INPUTS)
defvjp("log1p", lambda g, o, x: (P("div", g, P("add", x, 1.0)),), INPUTS)
defvjp("expm1", lambda g, o, x: (P("mul", g, P("add", o, 1.0)),), OUT)
defvjp("reciprocal", lambda g, o, x: (P("neg", P("mul", g, P("mul", o, o))),), OUT)
defvjp("abs", lambda g, o, x: (P("mul", g, P("sign", x)),), INPUTS)
for _op in ("sign", "floor", "ceil", "round", "trunc"):
    defvjp(_op, _zero_vjp)


# ------------------------------------------------------------------------------- binary
def _pow_kernel(xp, x, y):
    # a negative Python int exponent of an integer tensor is refused by math_ops.pow (PyTorch's
    # error); a negative exponent *tensor* gives 1 // x**|y| (0 unless |x| == 1), as PyTorch does --
    # also under a Python int base (2 ** t)
    if (isinstance(x, int) or getattr(x, "dtype", np.dtype("f")).kind in "iu") and \
            getattr(y, "dtype", np.dtype("f")).kind in "iu":
        return OPS["pow"].ref(xp, x, y)
    if isinstance(y, (int, float)) and getattr(x, "dtype", np.dtype("i")).kind == "f":
        # small integer exponents as products: np.power(x, 3.0) is ~200x slower than x*x*x
        if y == 2:
            return x * x
        if y == 3:
            return x * x * x
        if y == 1:
            return x.copy()
        if y == 0.5:
            with np.errstate(invalid="ignore"):
                return xp.sqrt(x)
    with np.errstate(all="ignore"):
        return xp.power(x, y)


def _pow_vjp(g, o, x, y):
    def gx():
        if not _is_t(y):
            return P("mul", g, P("mul", P("pow", x, y - 1), y)) if y != 0 else P("mul", g, 0.0)
        d = P("mul", g, P("mul", y, P("pow", x, P("sub", y, 1.0))))
        return P("where", P("eq", y, 0.0), P("mul", g, 0.0), d)      # x**0 has gradient 0 (also at x = 0)

    def gy():
        logx = P("log", x) if _is_t(x) else math.log(x) if x > 0 else float("nan")
        r = P("mul", g, P("mul", o, logx))
        if _is_t(x):  # d/dy 0**y is 0 where y >= 0 (PyTorch's convention; log(0) * 0 would be NaN)
            r = P("where", P("logical_and", P("eq", x, 0.0), P("ge", y, 0.0) if _is_t(y) else y >= 0),
                  P("mul", g, 0.0), r)
        return r
    return _grads(g, x, y, gx, gy)


def _minmax_vjp(op):
    # PyTorch: a tie splits the gradient in half; the loser gets none; with a NaN operand (no
    # winner, no tie) both get the full gradient
    def vjp(g, o, x, y):
        half = P("where", P("eq", x, y), P("mul", g, 0.5), g)
        x_loses, y_loses = (P("lt", x, y), P("gt", x, y)) if op == "maximum" else (P("gt", x, y), P("lt", x, y))
        zero = P("mul", g, 0.0)
        return _grads(g, x, y, lambda: P("where", x_loses, zero, half), lambda: P("where", y_loses, zero, half))
    return vjp


def _mul_saves(ins, out):
    """x*y reads y for x's gradient and x for y's: a scalar factor saves nothing (x *= 2 works)."""
    x, y = ins
    return ((x,) if isinstance(y, Tensor) and y.requires_grad else ()) + \
        ((y,) if isinstance(x, Tensor) and x.requires_grad else ())


def _div_saves(ins, out):
    x, y = ins
    return ((y,) if isinstance(y, Tensor) else ()) + ((out,) if isinstance(y, Tensor) and y.requires_grad else ())


defvjp("add", lambda g, o, x, y: _grads(g, x, y, lambda: g, lambda: g))
defvjp("sub", lambda g, o, x, y: _grads(g, x, y, lambda: g, lambda: P("neg", g)))
defvjp("mul", lambda g, o, x, y: _grads(g, x, y, lambda: P("mul", g, y), lambda: P("mul", g, x)), _mul_saves)
defvjp("div", lambda g, o, x, y: _grads(g, x, y, lambda: P("div", g, y), lambda: P("neg", P("div", P("mul", g, o), y))),
       _div_saves)
register("pow", _pow_kernel, _pow_vjp, INPUTS_AND_OUT)
defvjp("maximum", _minmax_vjp("maximum"), INPUTS)
defvjp("minimum", _minmax_vjp("minimum"), INPUTS)


def _int_div_check(op, y):
    if getattr(y, "dtype", None) is not None and y.dtype.kind in "iu" and not y.all():
        raise RuntimeError(f"ZeroDivisionError: integer {op} by zero")
    if isinstance(y, int) and not isinstance(y, bool) and y == 0:
        raise RuntimeError(f"ZeroDivisionError: integer {op} by zero")


def _int_div_checked(op):
    """PyTorch raises on integer division by zero (the reference semantics give 0)."""
    ref = OPS[op].ref

    def kernel(xp, x, y):
        if getattr(x, "dtype", np.dtype("f")).kind in "iu":
            _int_div_check(op, y)
        return ref(xp, x, y)
    return kernel


register("remainder", _int_div_checked("remainder"),
         lambda g, o, x, y: _grads(g, x, y, lambda: g, lambda: P("mul", P("neg", g), P("floor_divide", x, y))), INPUTS)
register("floor_divide", _int_div_checked("floor_divide"))


def _where_vjp(g, o, c, x, y):
    return (None,
            sum_to(P("where", c, g, 0.0), _shape(x)) if _is_t(x) and x.requires_grad else None,
            sum_to(P("where", c, 0.0, g), _shape(y)) if _is_t(y) and y.requires_grad else None)


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _where(xp, c, x, y):
    """numpy's where branches per element (~3.5 ns each on a random mask here); selecting bits with
    an all-ones/all-zeros mask is branch-free and 8x faster, and exact for every dtype (NaN, inf,
    -0.0 and integer bits are copied, never computed with)."""
    if xp is not np:
        return xp.where(c, x, y)
    xa, ya = isinstance(x, np.ndarray), isinstance(y, np.ndarray)
    dt_ = x.dtype if xa else y.dtype if ya else np.result_type(x, y)
    x = x if xa else np.asarray(x, dtype=dt_)
    y = y if ya else np.asarray(y, dtype=dt_)
    if x.dtype != y.dtype or dt_.itemsize not in _UINT:
        return np.where(c, x, y)
    it = _UINT[dt_.itemsize]
    m = np.negative(c.astype(it))
    return ((x.view(it) & m) | (y.view(it) & ~m)).view(dt_)


register("where", _where, _where_vjp, input_at(0))


def _cast(xp, x, dtype):
    t = dtype.np
    if x.dtype == t:
        return x.copy()
    with np.errstate(over="ignore", invalid="ignore"):   # 1e10 -> float16 is inf, silently (as PyTorch)
        if dtype.is_reduced_float and x.dtype == np.float64:
            x = x.astype(np.float32)    # PyTorch rounds double -> 16-bit through float (c10::Half(float))
        elif x.dtype in _NP16 and t != np.float32:
            x = casts.astype(x, np.float32)    # bfloat16 -> int/bool/half through float, as PyTorch's casts
        return casts.astype(x, t) if xp is np else x.astype(t)


_NP16 = frozenset(d.np for d in dt.ALL if d.is_reduced_float)
register("cast", _cast, lambda g, o, x, dtype: (P("cast", g, dtype=x.dtype),))
register_reduced("cast", _cast)


# ----------------------------------------------------------------------------- reductions
def _trailing_reduce(xp, ufunc, x, dims, keepdim, acc=None):
    """Reduce the last few small axes (pooling windows, [N, C, oh, ow, kh, kw]) as an elementwise
    fold over their slices: numpy's reduce over tiny trailing axes of a strided view is ~40x slower.
    Returns None where the fast path does not apply."""
    if dims is None or not dims or x.ndim < 2:
        return None
    nd = len(dims)
    if tuple(dims) != tuple(range(x.ndim - nd, x.ndim)) or nd == x.ndim:
        return None
    tail = x.shape[x.ndim - nd:]
    k = 1
    for n in tail:
        k *= n
    if not 1 < k <= 64 or x.size < 16 * k:
        return None
    idx = list(itertools.product(*(range(n) for n in tail)))
    out = x[(Ellipsis,) + idx[0]].astype(acc or x.dtype, copy=True)
    for i in idx[1:]:
        ufunc(out, x[(Ellipsis,) + i], out=out)
    if keepdim:
        out = out.reshape(out.shape + (1,) * nd)
    return out


def _sum(xp, x, dims, keepdim):
    if x.dtype.kind == "f":
        acc = np.float32 if x.dtype == np.float16 else x.dtype
        r = _trailing_reduce(xp, xp.add, x, dims, keepdim, acc)
        if r is not None:
            return xp.asarray(r).astype(x.dtype, copy=False)
    return _SUM(xp, x, dims, keepdim)


def _extreme(which):
    ref = OPS[which].ref

    def k(xp, x, dims, keepdim):
        r = _trailing_reduce(xp, xp.maximum if which == "max" else xp.minimum, x, dims, keepdim)
        return ref(xp, x, dims, keepdim) if r is None else xp.asarray(r)
    return k


def _keep(g, x, dims, keepdim):
    """A reduced gradient reshaped so it broadcasts against the input."""
    if keepdim:
        return g
    dims = range(len(x.shape)) if dims is None else dims
    shape = tuple(1 if i in dims else n for i, n in enumerate(x.shape))
    return P("reshape", g, shape=shape)


def _sum_vjp(g, o, x, dims, keepdim):
    return (P("expand", _keep(g, x, dims, keepdim), shape=tuple(x.shape)),)


def _extreme_vjp(g, o, x, dims, keepdim):
    ok = _keep(o, x, dims, keepdim)
    hit = P("eq", x, ok)
    if dims is None:     # max()/min() of everything: a NaN result came from the NaN elements
        hit = P("logical_or", hit, P("logical_and", P("isnan", x), P("isnan", ok)))
    mask = P("cast", hit, dtype=g.dtype)
    count = P("sum", mask, dims=dims, keepdim=True)
    return (P("div", P("mul", mask, _keep(g, x, dims, keepdim)), count),)


def _prod_vjp(g, o, x, dims, keepdim):
    # out / x is exact where x != 0; where x == 0, recompute the product of the others
    gk, ok = _keep(g, x, dims, keepdim), _keep(o, x, dims, keepdim)
    zero = P("eq", x, 0.0)
    safe_x = P("where", zero, P("add", P("mul", x, 0.0), 1.0), x)
    others = P("prod", safe_x, dims=dims, keepdim=True)
    nzeros = P("sum", P("cast", zero, dtype=x.dtype), dims=dims, keepdim=True)
    at_zero = P("where", P("eq", nzeros, 1.0), others, P("mul", others, 0.0))
    return (P("mul", gk, P("where", zero, at_zero, P("div", ok, safe_x))),)


_SUM = OPS["sum"].ref
register("sum", _sum, _sum_vjp)
register("max", _extreme("max"), _extreme_vjp, INPUTS_AND_OUT)
register("min", _extreme("min"), _extreme_vjp, INPUTS_AND_OUT)
defvjp("prod", _prod_vjp, INPUTS_AND_OUT)
register("cumsum", lambda xp, x, dim: xp.cumsum(x, axis=dim, dtype=x.dtype),
         lambda g, o, x, dim: (P("flip", P("cumsum", P("flip", g, dims=(dim,)), dim=dim), dims=(dim,)),))


# -------------------------------------------------------------------------------- movement
def _pad_kernel(xp, x, pads, value):
    crop = tuple(slice(max(0, -lo), x.shape[i] - max(0, -hi)) for i, (lo, hi) in enumerate(pads))
    x = x[crop]
    width = [(max(0, lo), max(0, hi)) for lo, hi in pads]
    if not any(lo or hi for lo, hi in width):
        return x.copy()
    # zeros (or the value) and one copy into the middle: np.pad took 2.3x as long (the slice gradients of a
    # qkv split, three pads of [16,64,128] -> [16,64,384] a layer: 120 -> 53 us each)
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, width))
    zero = value == 0 and not (isinstance(value, float) and math.copysign(1.0, value) < 0)
    if x.dtype.itemsize == 2 and x.dtype.kind in "fV":
        value = float(np.float32(value))     # as the float32 path rounds it: to float32, then to 16 bits
    out = xp.zeros(shape, x.dtype) if zero else xp.full(shape, value, x.dtype)
    out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, width))] = x
    return out


def _unslice(g, shape, starts, stops, steps):
    """The adjoint of slice: put g back into zeros of `shape` (pads; strided slices interleave zeros)."""
    for d, (n, s0, s1, st) in enumerate(zip(shape, starts, stops, steps)):
        m = g.shape[d]
        if st > 1 and m > 0:
            # interleave st-1 zeros after every element along d: [..., m, ...] -> [..., m*st, ...]
            gs = tuple(g.shape)
            g = P("reshape", g, shape=gs[:d + 1] + (1,) + gs[d + 1:])
            pads = [(0, 0)] * len(g.shape)
            pads[d + 1] = (0, st - 1)
            g = P("pad", g, pads=tuple(pads), value=0.0)
            g = P("reshape", g, shape=gs[:d] + (m * st,) + gs[d + 1:])
            m = m * st
        pads = [(0, 0)] * len(g.shape)
        pads[d] = (s0, n - s0 - m)
        if pads[d] != (0, 0):
            g = P("pad", g, pads=tuple(pads), value=0.0)
    return g


def _cat_vjp(g, o, *xs, dim):
    res, off = [], 0
    for x in xs:
        n = x.shape[dim]
        if x.requires_grad:
            starts = [0] * len(g.shape)
            stops = list(g.shape)
            starts[dim], stops[dim] = off, off + n
            res.append(P("slice", g, starts=tuple(starts), stops=tuple(stops), steps=(1,) * len(g.shape)))
        else:
            res.append(None)
        off += n
    return tuple(res)


def _windows_kernel(xp, x, kernel, stride, dilation):
    nk = len(kernel)
    ext = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    axes = tuple(range(x.ndim - nk, x.ndim))
    if xp is np:
        v = np.lib.stride_tricks.sliding_window_view(x, ext, axis=axes)
    else:
        v = xp.lib.stride_tricks.sliding_window_view(x, ext, axis=axes)
    idx = (Ellipsis,) + tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, d) for d in dilation)
    return v[idx]


def _fold_kernel(xp, x, size, kernel, stride, dilation):
    """The adjoint of windows: out[..., p*s + a*d] += x[..., p, a] for every window offset a, one
    strided add per offset.  The output is laid out like x's batch and position dims (a batch-last
    x from a convolution's GEMM gives a batch-last output), so each add walks both arrays in memory
    order: runs of N contiguous values instead of rows of a few positions."""
    nk = len(kernel)
    nd = x.ndim
    batch = x.shape[:-2 * nk]
    outs = x.shape[-2 * nk:-nk]
    acc = np.float32 if x.dtype == np.float16 else x.dtype
    keep = range(nd - nk)                                  # batch and position dims of x
    if min(abs(x.strides[d]) for d in range(nd - nk, nd)) < min((abs(x.strides[d]) for d in keep), default=0):
        # the window offsets are x's innermost dims: one copy with them first makes each offset's
        # read a dense block (2-3x faster than strided reads)
        x = xp.ascontiguousarray(x.transpose(tuple(range(nd - nk, nd)) + tuple(keep)))
        x = x.transpose(tuple(range(nk, nd)) + tuple(range(nk)))
    order = sorted(keep, key=lambda d: -abs(x.strides[d]))        # memory order of x, outermost first
    shape = batch + tuple(size)
    out = xp.zeros(tuple(shape[d] for d in order), dtype=acc).transpose(_inverse(order))
    for kidx in itertools.product(*(range(k) for k in kernel)):
        sl = tuple(slice(ki * di, ki * di + si * (oi - 1) + 1, si)
                   for ki, di, si, oi in zip(kidx, dilation, stride, outs))
        out[(Ellipsis,) + sl] += x[(Ellipsis,) + kidx]
    return out.astype(x.dtype, copy=False)


def _inverse(dims):
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return tuple(inv)


register("reshape", lambda xp, x, shape: x.reshape(shape),
         lambda g, o, x, shape: (P("reshape", g, shape=tuple(x.shape)),))
register("permute", lambda xp, x, dims: x.transpose(dims),
         lambda g, o, x, dims: (P("permute", g, dims=_inverse(dims)),))
register("expand", lambda xp, x, shape: xp.broadcast_to(x, shape),
         lambda g, o, x, shape: (sum_to(g, tuple(x.shape)),))
register("slice", lambda xp, x, starts, stops, steps: x[tuple(map(slice, starts, stops, steps))],
         lambda g, o, x, starts, stops, steps: (_unslice(g, tuple(x.shape), starts, stops, steps),))
register("flip", lambda xp, x, dims: xp.flip(x, dims) if dims else x,
         lambda g, o, x, dims: (P("flip", g, dims=dims),))
register("pad", _pad_kernel,
         lambda g, o, x, pads, value: (P("pad", g, pads=tuple((-lo, -hi) for lo, hi in pads), value=0.0),))
register("cat", lambda xp, *xs, dim: xp.concatenate(xs, axis=dim), _cat_vjp)
register("windows", _windows_kernel,
         lambda g, o, x, kernel, stride, dilation: (
             P("fold", g, size=tuple(x.shape[-len(kernel):]), kernel=kernel, stride=stride, dilation=dilation),))
def _fold(xp, x, size, kernel, stride, dilation):
    """fold's eager kernel: the generated gather (ember/kernels/window_ops.py) for float32/float64 arrays it
    takes, the strided adds of _fold_kernel otherwise."""
    r = window_ops.fold(x, size, kernel, stride, dilation) if xp is np else None
    return r if r is not None else _fold_kernel(xp, x, size, kernel, stride, dilation)


register("fold", _fold,
         lambda g, o, x, size, kernel, stride, dilation: (
             P("windows", g, kernel=kernel, stride=stride, dilation=dilation),))


# -------------------------------------------------------------------------------- indexing
def _check_index(op, xp, idx, n):
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise IndexError(f"index {bad} is out of bounds for dimension with size {n}")


def _take(xp, x, idx, dim):
    _check_index("take", xp, idx, x.shape[dim])
    return xp.take(x, idx, axis=dim)


def _index_add(xp, x, idx, src, dim):
    _check_index("index_add", xp, idx, x.shape[dim])
    out = x.copy()
    flat_idx = idx.reshape(-1)
    src = src.reshape(x.shape[:dim] + (flat_idx.size,) + x.shape[dim + 1:])
    if dim == 0 and xp is np:
        if flat_idx.size >= 64 and src.ndim > 1:
            # np.add.at adds one row at a time (1.2 ms for an embedding gradient of 1024 rows of
            # 128 here); sorting the rows by index and summing each run with reduceat: ~0.1 ms.
            # Stable sort: rows of one index are summed in their original order.
            order = np.argsort(flat_idx, kind="stable")
            keys = flat_idx[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            out[keys[starts]] += np.add.reduceat(src[order], starts, axis=0)
        else:
            np.add.at(out, flat_idx, src)
    else:
        _add_at(xp, out, (slice(None),) * dim + (flat_idx,), src)
    return out


def _add_at(xp, out, index, src):
    """Unbuffered out[index] += src (repeated indices accumulate): np.add.at, or cupyx.scatter_add
    (CuPy's ufunc.at is missing or partial in some releases)."""
    if xp is np:
        np.add.at(out, index, src)
    else:
        import cupyx
        cupyx.scatter_add(out, index, src)


def _grid(xp, idx, dim):
    """Index arrays addressing every element of idx's shape, with idx itself along dim (aranges shaped to
    broadcast: what np.ogrid makes, without its ~8 us of Python per call)."""
    nd = idx.ndim
    grids = []
    for i, n in enumerate(idx.shape):
        grids.append(idx if i == dim else xp.arange(n).reshape((1,) * i + (n,) + (1,) * (nd - i - 1)))
    return tuple(grids)


def _gather(xp, x, idx, dim):
    _check_index("gather", xp, idx, x.shape[dim])
    return x[_grid(xp, idx, dim)]


def _scatter_add(xp, x, idx, src, dim):
    _check_index("scatter_add", xp, idx, x.shape[dim])
    out = x.copy()
    src = src[tuple(slice(0, n) for n in idx.shape)]
    _add_at(xp, out, _grid(xp, idx, dim), src)
    return out


def _scatter(xp, x, idx, src, dim):
    _check_index("scatter", xp, idx, x.shape[dim])
    out = x.copy()
    src = src[tuple(slice(0, n) for n in idx.shape)]
    out[_grid(xp, idx, dim)] = src
    return out


def _src_grad(g, idx, src, dim):
    r = P("gather", g, idx, dim=dim)
    if tuple(r.shape) != tuple(src.shape):
        r = P("pad", r, pads=tuple((0, s - n) for s, n in zip(src.shape, r.shape)), value=0.0)
    return r


def _zeros_like(x):
    return P("full", shape=tuple(x.shape), value=0, dtype=x.dtype, device=x.device)


register("take", _take, lambda g, o, x, idx, dim: (P("index_add", _zeros_like(x), idx, g, dim=dim), None),
         input_at(1))
register("index_add", _index_add, lambda g, o, x, idx, src, dim: (g, None, P("take", g, idx, dim=dim)), input_at(1))
register("gather", _gather, lambda g, o, x, idx, dim: (P("scatter_add", _zeros_like(x), idx, g, dim=dim), None),
         input_at(1))
register("scatter_add", _scatter_add, lambda g, o, x, idx, src, dim: (g, None, _src_grad(g, idx, src, dim)),
         input_at(1))
register("scatter", _scatter, lambda g, o, x, idx, src, dim: (
    P("scatter", g, idx, _zeros_like(src), dim=dim), None, _src_grad(g, idx, src, dim)), input_at(1))


_SCATTER_UFUNC = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}


def _scatter_reduce(xp, x, idx, src, dim, reduce, include_self):
    """PyTorch's scatter_reduce (ufunc.at on the host; CuPy has no multiply/maximum .at for every dtype)."""
    _check_index("scatter_reduce", xp, idx, x.shape[dim])
    host = (lambda a: a) if xp is np else (lambda a: a.get())
    out, idx_h = host(x).copy(), host(idx)
    src = host(src)[tuple(slice(0, n) for n in idx.shape)]
    grid = _grid(np, idx_h, dim)
    if not include_self:   # positions that receive values start from the reduction's identity
        f = x.dtype.kind == "f"
        out[grid] = {"sum": 0, "mean": 0, "prod": 1,
                     "amax": -np.inf if f else np.iinfo(x.dtype).min,
                     "amin": np.inf if f else np.iinfo(x.dtype).max}[reduce]
    _SCATTER_UFUNC[reduce].at(out, grid, src)
    if reduce == "mean":
        n = np.full(x.shape, 1 if include_self else 0, dtype=np.int64)
        np.add.at(n, grid, 1)
        n = np.maximum(n, 1)   # positions that receive nothing keep x (n is 1 there, or 0 without self)
        out = (out / n).astype(x.dtype) if x.dtype.kind == "f" else out // n
    return xp.asarray(out)


def _scatter_reduce_vjp(g, o, x, idx, src, dim, reduce, include_self):
    """PyTorch's scatter_reduce_backward, written with primitives (so it traces and double-differentiates)."""
    ones = P("full", shape=tuple(src.shape), value=1.0, dtype=g.dtype, device=g.device)
    hit = P("gt", P("scatter_add", _zeros_like(g), idx, ones, dim=dim), 0.0)   # positions receiving src

    def gathered(v):
        return _src_grad(v, idx, src, dim)
    if reduce == "sum":
        gx, gs = g, gathered(g)
    elif reduce == "mean":
        n = P("scatter_add", P("full", shape=tuple(g.shape), value=1.0 if include_self else 0.0, dtype=g.dtype,
                               device=g.device), idx, ones, dim=dim)
        n = P("maximum", n, 1.0)
        gx = P("div", g, n)
        gs = gathered(gx)
    elif reduce in ("amax", "amin"):
        x_is = P("cast", P("eq", x, o), dtype=g.dtype)
        src_is = P("cast", P("eq", src, _src_grad(o, idx, src, dim)), dtype=g.dtype)
        share = P("div", g, P("scatter_add", x_is, idx, src_is, dim=dim))
        gx = P("mul", x_is, share)
        gs = P("mul", src_is, gathered(share))
    else:   # prod: the product of the others, exact where the input holds zeros
        x_zero = P("eq", x, 0.0)
        x_safe = P("where", x_zero, 1.0, x)
        others_x = P("scatter_reduce", x_safe, idx, src, dim=dim, reduce="prod", include_self=include_self)
        gx = P("div", P("mul", g, others_x), x_safe)
        src_zero = P("eq", src, 0.0)
        zeros_per = _src_grad(P("scatter_add", _zeros_like(g), idx, P("cast", src_zero, dtype=g.dtype), dim=dim),
                              idx, src, dim)
        single = P("logical_and", src_zero, P("eq", zeros_per, 1.0))
        others_src = P("scatter_reduce", x, idx, P("where", single, 1.0, src), dim=dim, reduce="prod",
                       include_self=include_self)
        gs = P("where", single, gathered(P("mul", g, others_src)),
               P("div", gathered(P("mul", g, o)), P("where", src_zero, 1.0, src)))
    if not include_self:
        gx = P("where", hit, 0.0, gx)
    return gx, None, gs


register("scatter_reduce", _scatter_reduce, _scatter_reduce_vjp, INPUTS_AND_OUT)

def _argsort(xp, x, dim, descending):
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if descending:
        key = -x.astype(np.float64) if x.dtype.kind in "biu" else -x
        if x.dtype.kind == "f":       # NaN is the largest value (PyTorch): first when descending
            key = xp.where(xp.isnan(x), -xp.inf, key)
            # NaN before -inf: sort NaN rows' keys below everything by a second pass
            order = xp.argsort(key, axis=dim, kind="stable")
            nan_first = xp.argsort(~xp.isnan(xp.take_along_axis(x, order, axis=dim)), axis=dim, kind="stable")
            return xp.take_along_axis(order, nan_first, axis=dim)
        return xp.argsort(key, axis=dim, kind="stable")
    return xp.argsort(x, axis=dim, kind="stable")      # numpy already puts NaN last


def _topk(xp, x, k, dim, largest):
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    order = _argsort(xp, x, dim, largest)
    return xp.take(order, xp.arange(k), axis=dim)


register("argsort", _argsort, None)
register("topk", _topk, None)


# ---------------------------------------------------------------------------------- matmul
def _mT(t):
    n = len(t.shape)
    return P("permute", t, dims=tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_grad_y(g, x, y):
    """dL/dy = x^T g. For a batched x and a 2-D y (a Linear layer) fold the batch into the
    contraction: one GEMM instead of a batched product and a sum."""
    if len(y.shape) == 2 and len(x.shape) > 2:
        k, n = y.shape
        x2 = P("reshape", x, shape=(_numel(x.shape) // k, k))
        g2 = P("reshape", g, shape=(_numel(g.shape) // n, n))
        return P("matmul", _mT(x2), g2)
    return P("matmul", _mT(x), g)


def _matmul_grad_x(g, x, y):
    """dL/dx = g y^T. For a 2-D x and a batched y (a convolution's weight times im2col columns)
    fold the batch into the contraction: one GEMM over [M, B*N] x [B*N, K] instead of B small
    products and a sum."""
    if len(x.shape) == 2 and len(y.shape) == 3 and len(g.shape) == 3:
        b, k, n = y.shape
        m = x.shape[0]
        g2 = P("reshape", P("permute", g, dims=(1, 0, 2)), shape=(m, b * n))
        y2 = P("reshape", P("permute", y, dims=(0, 2, 1)), shape=(b * n, k))
        return P("matmul", g2, y2)
    return P("matmul", g, _mT(y))


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


register("matmul", lambda xp, x, y: blas_threads.matmul(x, y) if xp is np else xp.matmul(x, y),
         lambda g, o, x, y: _grads(g, x, y, lambda: _matmul_grad_x(g, x, y), lambda: _matmul_grad_y(g, x, y)), INPUTS)
# 16-bit inputs: blas_threads runs them with float32 accumulation itself (bf16: the generated GEMM)
register_reduced("matmul", lambda xp, x, y: blas_threads.matmul(x, y))


def _addmm_16bit(xp, x, y, bias):
    """bf16: the generated GEMM with the bias in its epilogue, one rounding; else float32 on upcast copies."""
    if blas_threads.BF16_MATMUL is not None and x.dtype == y.dtype == bias.dtype and x.dtype.kind == "V":
        return blas_threads.BF16_MATMUL(x, y, bias)
    up = [casts.astype(a, np.float32) for a in (x, y, bias)]
    return casts.astype(blas_threads.matmul(up[0], up[1]) + up[2], x.dtype)


register("addmm", lambda xp, x, y, bias: (blas_threads.matmul(x, y) if xp is np else xp.matmul(x, y)) + bias,
         lambda g, o, x, y, bias: (P("matmul", g, _mT(y)) if x.requires_grad else None,
                                   P("matmul", _mT(x), g) if y.requires_grad else None,
                                   P("sum", g, dims=(0,), keepdim=False) if bias.requires_grad else None), INPUTS)
register_reduced("addmm", _addmm_16bit)


# ------------------------------------------------------------------------------- attention
def _attention_vjp(g, o, q, k, v, masked, key, **attrs):
    """One attention_grad node computes (dq, dk, dv) joined; each gradient is a slice of it."""
    joined = P("attention_grad", q, k, v, masked, key, g, **attrs)
    out, at = [], 0
    for t in (q, k, v):
        n = _numel(t.shape)
        part = P("slice", joined, starts=(at,), stops=(at + n,), steps=(1,))
        out.append(P("reshape", part, shape=tuple(t.shape)) if t.requires_grad else None)
        at += n
    return (*out, None, None)


defvjp("attention", _attention_vjp, INPUTS)


# ---------------------------------------------------------------------------- random, consts
_RANDOM_REF = OPS["random"].ref


def _random_kernel(xp, key, shape, dtype, dist):
    """The reference semantics of ember/ir/ops.py (ember/ir/rng.py's generator), as the generated kernel the
    compiled path makes of it (a Random node: the same values, bit for bit) for float32/float64 on the CPU:
    numpy spends ~40 us of passes on even a dropout mask of a thousand values."""
    n = math.prod(shape)
    if xp is np and dtype in (dt.float32, dt.float64) and n:
        k = generated.sized(("random", dist, dtype.short), lambda: _random_ir(dist, dtype), n)
        if k is not None:
            out = np.empty(n, dtype.np)
            k.launch([np.ascontiguousarray(key, dtype=np.int64), out])
            return out.reshape(tuple(shape))
    return _RANDOM_REF(xp, key, shape, dtype, dist)


def _random_ir(dist, dtype):
    from ..ir.kernel import Buf, IndexValue, Kernel, Load, Random, Store, cast, o
    n = generated.size_symbol()
    key, out = Buf("key", (2,), dt.int64), Buf("out", (n,), dtype)
    value = Random(dist, Load(key, [0]), Load(key, [1]) + IndexValue(o(0)), dtype if dist == "uniform" else dt.float64)
    return Kernel([key], [out], [n], stores=[Store(out, [o(0)], cast(value, dtype))], name=f"eager_random_{dist}")


register("random", _random_kernel)
register("full", lambda xp, shape, value, dtype: xp.full(tuple(shape), value, dtype=dtype.np), None)
register("arange", lambda xp, n, start, step, dtype: (
    (start + step * xp.arange(n, dtype=np.float64)).astype(dtype.np) if dtype.is_floating_point or
    not (float(start).is_integer() and float(step).is_integer())
    else xp.arange(int(start), int(start) + int(step) * n, int(step), dtype=dtype.np)[:n]), None)

