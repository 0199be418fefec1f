"""Indexing, counting and bucketing ops as PyTorch spells them: index_put, index_copy, scatter_reduce,
Tensor.unfold, searchsorted / bucketize, histc, bincount, unique, unique_consecutive.

In: tensors and PyTorch's arguments. Out: tensors (or PyTorch's tuples) with PyTorch's values,
dtypes, errors and gradients.

Ops whose result shape is fixed by the input shapes are composites of the primitives (index_put and
index_copy are a scatter / index_add on a flattened view, unfold is the `windows` primitive, histc an
index_add of bin positions, scatter_reduce its own primitive), so they differentiate and trace.
bincount, unique and unique_consecutive return a shape that depends on the values: they run on the
arrays eagerly, and inside ember.compile they are a graph break (B006). searchsorted runs numpy's
binary search eagerly and, while tracing, counts the boundaries below each value (same result, more
memory: only the traced path builds the [..., M, N] comparison).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import dtypes as dt
from ..ir.ops import norm_dim
from . import math_ops as M
from . import shape_ops as S
from . import tracing_hooks
from .dispatch import apply as P
from .tensor import Tensor

__all__ = ["index_put", "index_copy", "scatter_reduce", "unfold", "searchsorted", "bucketize", "histc",
           "bincount", "unique", "unique_consecutive"]


def _host(t: Tensor) -> np.ndarray:
    return t._data if t.device.type == "cpu" else t._data.get()


def _tensor(a, device, dtype=None):
    from .creation import tensor
    return tensor(np.asarray(a), dtype=dtype, device=device)


def _check_int_index(op, idx):
    if not isinstance(idx, Tensor) or not idx.dtype.is_integer:
        got = idx.dtype.name if isinstance(idx, Tensor) else type(idx).__name__
        raise IndexError(f"{op}(): tensors used as indices must be long, int or bool tensors, got {got}")


# ------------------------------------------------------------------------------- index_put
def _index_bounds(op, idx, size, dim):
    """Eager mode checks the index values (a traced index cannot be read; the scatter kernel still
    checks the flattened position)."""
    if tracing_hooks.tracing(idx) or idx.numel() == 0:
        return
    a = _host(idx)
    lo, hi = int(a.min()), int(a.max())
    if lo < -size or hi >= size:
        bad = lo if lo < -size else hi
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension {dim} with size {size}")


def index_put(x: Tensor, indices, values, accumulate: bool = False) -> Tensor:
    """torch.index_put: x[indices] = values (accumulate=True adds, duplicates included) on a copy."""
    if not isinstance(indices, (tuple, list)):
        raise TypeError(f"index_put(): argument 'indices' must be tuple of Tensors, not {type(indices).__name__}")
    idx = []
    for k in indices:
        k = k if isinstance(k, Tensor) else _tensor(k, x.device)
        if k.dtype is dt.bool_:     # a mask over k.ndim dims: one index per dim
            idx.extend(S.nonzero(k, as_tuple=True))
        else:
            _check_int_index("index_put", k)
            idx.append(k)
    if len(idx) > x.ndim:
        raise IndexError(f"index_put(): too many indices for tensor of dimension {x.ndim} (got {len(idx)})")
    if not idx:
        raise IndexError("index_put(): expected at least one index tensor")
    lead, rest = tuple(x.shape[:len(idx)]), tuple(x.shape[len(idx):])
    for d, (i, n) in enumerate(zip(idx, lead)):
        _index_bounds("index_put", i, n, d)
    idx = [M.cast(S._normalize_neg(i, n), dt.int64) for i, n in zip(idx, lead)]
    bshape = tuple(S.broadcast_shapes_(*(tuple(i.shape) for i in idx)))
    lin = S.expand(idx[0], bshape)
    for i, n in zip(idx[1:], lead[1:]):
        lin = M.add(M.mul(lin, n), i)
    m = math.prod(bshape)
    lin = S.reshape(lin, (m,))
    flat = S.reshape(x, (math.prod(lead),) + rest)
    if not isinstance(values, Tensor):
        values = P("full", shape=(), value=values, dtype=x.dtype, device=x.device)
    values = M.cast(values, x.dtype)
    try:
        v = S.reshape(S.expand(values, bshape + rest), (m,) + rest)
    except Exception:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(values.shape)} cannot be broadcast to "
                           f"indexing result of shape {list(bshape + rest)}") from None
    if accumulate:
        out = P("index_add", flat, lin, v, dim=0)
    else:
        pos = S.expand(S.reshape(lin, (m,) + (1,) * len(rest)), (m,) + rest)
        out = P("scatter", flat, pos, v, dim=0)
    return S.reshape(out, tuple(x.shape))


def index_copy(x: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """torch.index_copy: a copy of x with x.select(dim, index[i]) = source.select(dim, i)."""
    d = norm_dim(dim, x.ndim, "index_copy")
    if index.dtype is not dt.int64:
        raise RuntimeError(f"index_copy_(): Expected a long tensor for index, but got {index.dtype.name}")
    if index.ndim > 1:
        raise IndexError(f"index_copy_(): Index should have dimension 1 or 0 (got {index.ndim})")
    n = index.numel()
    src = source if source.ndim else S.reshape(source, (1,))
    xs = tuple(x.shape) if x.ndim else (1,)
    if (src.shape[d] if src.ndim > d else 1) != n:
        raise IndexError(f"index_copy_(): Number of indices ({n}) should be equal to source.size(dim) "
                         f"({src.shape[d] if src.ndim > d else 1})")
    if src.ndim != len(xs) or any(a != b for i, (a, b) in enumerate(zip(src.shape, xs)) if i != d):
        raise IndexError(f"index_copy_(): Source/destination tensor must have same slice shapes. Destination "
                         f"slice shape: {list(xs[:d] + xs[d + 1:])} at dimension {d} and source slice shape: "
                         f"{list(src.shape[:d] + src.shape[d + 1:])} at dimension 0.")
    if src.dtype is not x.dtype:
        raise RuntimeError(f"index_copy_(): self and source expected to have the same dtype, but got (self) "
                           f"{x.dtype.name} and (source) {src.dtype.name}")
    _index_bounds("index_copy", index, xs[d], d)
    shape = [1] * len(xs)
    shape[d] = n
    pos = S.expand(S.reshape(index, tuple(shape)), tuple(src.shape))
    out = P("scatter", x if x.ndim else S.reshape(x, (1,)), pos, src, dim=d)
    return out if x.ndim else S.reshape(out, ())


# -------------------------------------------------------------------------- scatter_reduce
_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def scatter_reduce(x: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    """torch.scatter_reduce: reduce src into x at index along dim with sum, prod, mean, amax or amin
    (include_self=False leaves x's own values out of the positions that receive any)."""
    if reduce not in _REDUCTIONS:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
    d = norm_dim(dim, x.ndim, "scatter_reduce")
    if index.dtype is not dt.int64:
        raise RuntimeError(f"scatter_reduce(): Expected dtype int64 for index, got {index.dtype.name}")
    if src.dtype is not x.dtype:
        raise RuntimeError(f"scatter_reduce(): Expected self.dtype to be equal to src.dtype "
                           f"({x.dtype.name} vs {src.dtype.name})")
    return P("scatter_reduce", x, index, src, dim=d, reduce=reduce, include_self=bool(include_self))


# ---------------------------------------------------------------------------------- unfold
def unfold(x: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Tensor.unfold: every `size`-long slice along `dimension`, `step` apart, as a new last dim (a view)."""
    if x.ndim == 0:
        if size != 1 and size != 0:
            raise RuntimeError(f"maximum size for tensor at dimension 0 is 1 but size is {size}")
        return S.reshape(x, (1,))
    d = norm_dim(dimension, x.ndim, "unfold")
    n = x.shape[d]
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if size < 0:
        raise RuntimeError(f"size is {size} but must be >= 0")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    if size == 0:
        shape = tuple(x.shape[:d]) + ((n - size) // step + 1,) + tuple(x.shape[d + 1:]) + (0,)
        return P("full", shape=shape, value=0, dtype=x.dtype, device=x.device)
    moved = S.movedim(x, d, -1)
    w = P("windows", moved, kernel=(size,), stride=(step,), dilation=(1,))
    out = S._as_view(x, S.movedim(w, -2, d))
    a = out._data
    if step >= size and out._base is not None and a.__class__ is np.ndarray and not a.flags.writeable \
            and a.__array_interface__["data"][0] == x._data.__array_interface__["data"][0]:
        # windows that do not overlap are a writable view, as PyTorch's (x.unfold(1, 2, 2).fill_(0) writes
        # x); numpy's window view is read-only, and overlapping ones stay so (a write's result would
        # depend on the order it visits the shared elements)
        out._data = np.lib.stride_tricks.as_strided(x._data, a.shape, a.strides)
    return out


# ------------------------------------------------------------------ searchsorted, bucketize
def searchsorted(sorted_sequence: Tensor, input, *, out_int32: bool = False, right: bool = False,
                 side: str | None = None, sorter: Tensor | None = None) -> Tensor:
    """torch.searchsorted: for each value, the index where it would be inserted into the sorted last
    dim of sorted_sequence (left: the first such index, right / side='right': the last)."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, got side of left "
                               "while right was True")
        right = side == "right"
    seq = sorted_sequence
    scalar = not isinstance(input, Tensor)
    vals = _tensor(input, seq.device) if scalar else input
    if seq.ndim == 0:
        raise RuntimeError("torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
                           "dimensions of boundaries tensor and input value tensor must match, but we got "
                           f"boundaries tensor {list(seq.shape)} and input value tensor {list(vals.shape)}")
    if seq.ndim > 1 and (vals.ndim != seq.ndim or tuple(vals.shape[:-1]) != tuple(seq.shape[:-1])):
        raise RuntimeError("torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
                           "dimensions of boundaries tensor and input value tensor must match, but we got "
                           f"boundaries tensor {list(seq.shape)} and input value tensor {list(vals.shape)}")
    if sorter is not None:
        if tuple(sorter.shape) != tuple(seq.shape):
            raise RuntimeError(f"torch.searchsorted(): boundary and sorter must have the same size, but got "
                               f"boundary tensor {list(seq.shape)} and got sorter tensor {list(sorter.shape)}")
        seq = S.take_along_dim(seq, sorter, -1)
    seq, vals, _ = M.promote(seq, vals)
    out_dtype = dt.int32 if out_int32 else dt.int64
    if tracing_hooks.tracing(seq, vals):
        below = M.le(S.unsqueeze(seq, -2), S.unsqueeze(vals, -1)) if right else \
            M.lt(S.unsqueeze(seq, -2), S.unsqueeze(vals, -1))
        if seq.ndim == 1 and vals.ndim == 0:
            below = S.reshape(below, (seq.shape[0],))
        return M.sum(below, -1, dtype=out_dtype)
    s, v = _host(seq), _host(vals)
    how = "right" if right else "left"
    if s.ndim == 1:
        r = np.searchsorted(s, v, side=how)
    else:
        s2, v2 = s.reshape(-1, s.shape[-1]), v.reshape(-1, v.shape[-1])
        r = np.stack([np.searchsorted(a, b, side=how) for a, b in zip(s2, v2)]).reshape(v.shape)
    return _tensor(np.asarray(r, dtype=out_dtype.np), vals.device)


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False, right: bool = False) -> Tensor:
    """torch.bucketize: the bucket index of each value given 1-D boundaries (right=True: closed on the left)."""
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


# ------------------------------------------------------------------------- histc, bincount
def histc(input: Tensor, bins: int = 100, min: float = 0, max: float = 0) -> Tensor:
    """torch.histc: counts of input in `bins` equal bins over [min, max] (the data's range when
    min == max); values outside are ignored, max itself falls in the last bin."""
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"histogram_cpu\" not implemented for '{M._tname(input.dtype)}'")
    if bins <= 0:
        raise RuntimeError(f"torch.histc: bins must be > 0, but got {bins} for bins")
    if min > max:
        raise RuntimeError(f"torch.histc: min must be less than or equal to max, but got min {min} and max {max}")
    if not (math.isfinite(min) and math.isfinite(max)):
        raise RuntimeError(f"torch.histc: range of [{min}, {max}] is not finite")
    x = S.reshape(input.detach(), (-1,))
    if min == max:
        if x.numel():
            lo, hi = M.amin(x), M.amax(x)
        else:
            lo = hi = P("full", shape=(), value=float(min), dtype=x.dtype, device=x.device)
        same = M.eq(lo, hi)
        lo, hi = M.where(same, M.sub(lo, 1.0), lo), M.where(same, M.add(hi, 1.0), hi)
    else:
        lo = P("full", shape=(), value=float(min), dtype=x.dtype, device=x.device)
        hi = P("full", shape=(), value=float(max), dtype=x.dtype, device=x.device)
    inside = M.logical_and(M.ge(x, lo), M.le(x, hi))
    # PyTorch's linear interpolation: (x - lo) / (hi - lo) * bins, truncated; x == hi joins the last bin
    pos = M.cast(M.mul(M.div(M.sub(M.where(inside, x, lo), lo), M.sub(hi, lo)), float(bins)), dt.int64)
    pos = M.minimum(pos, bins - 1)
    zeros = P("full", shape=(bins,), value=0, dtype=x.dtype, device=x.device)
    return P("index_add", zeros, pos, M.cast(inside, x.dtype), dim=0)


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """torch.bincount: occurrences of each value of a 1-D non-negative integer tensor (weights summed
    instead when given); length max(input) + 1, at least minlength. Not differentiable (as PyTorch)."""
    tracing_hooks.value_needed(input, "bincount")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    a = _host(input)
    if input.ndim != 1 or not input.dtype.is_integer or (a.size and a.min() < 0):
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is not None:
        tracing_hooks.value_needed(weights, "bincount")
        if weights.ndim != 1 or weights.shape[0] != a.shape[0]:
            raise RuntimeError("weights should be 1-d and have the same length as input")
        out = dt.float32 if weights.dtype is dt.float32 else dt.float64
        r = np.bincount(a, weights=_host(weights).astype(np.float64), minlength=minlength).astype(out.np)
    else:
        r = np.bincount(a, minlength=minlength).astype(np.int64)
    return _tensor(r, input.device)


# ---------------------------------------------------------------------------------- unique
def _unique_result(vals, inverse, counts, return_inverse, return_counts, device):
    out = [_tensor(vals, device)]
    if return_inverse:
        out.append(_tensor(inverse.astype(np.int64), device))
    if return_counts:
        out.append(_tensor(counts.astype(np.int64), device))
    return out[0] if len(out) == 1 else tuple(out)


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False,
           dim: int | None = None):
    """torch.unique: the distinct values (or slices along dim), sorted, with the inverse indices and
    counts on request. (PyTorch's CPU kernel sorts even when sorted=False; so does this one.)"""
    tracing_hooks.value_needed(input, "unique")
    a = _host(input)
    if dim is None:
        vals, inv, cnt = np.unique(a.reshape(-1), return_inverse=True, return_counts=True, equal_nan=False)
        inv = inv.reshape(a.shape)
    else:
        d = norm_dim(dim, input.ndim, "unique")
        if a.shape[d] == 0:
            return _unique_result(a, np.zeros(0, np.int64), np.zeros(0, np.int64), return_inverse,
                                  return_counts, input.device)
        vals, inv, cnt = np.unique(a, return_inverse=True, return_counts=True, axis=d, equal_nan=False)
        inv = inv.reshape(-1)
    return _unique_result(vals, inv, cnt, return_inverse, return_counts, input.device)


def unique_consecutive(input: Tensor, return_inverse: bool = False, return_counts: bool = False,
                       dim: int | None = None):
    """torch.unique_consecutive: collapse each run of equal consecutive values (or slices along dim)."""
    tracing_hooks.value_needed(input, "unique")
    a = _host(input)
    if dim is None:
        flat = a.reshape(-1)
        change = np.concatenate([[True], flat[1:] != flat[:-1]]) if flat.size else np.zeros(0, bool)
        vals = flat[change]
        inv = (np.cumsum(change) - 1).reshape(a.shape)
    else:
        d = norm_dim(dim, input.ndim, "unique_consecutive")
        m = np.moveaxis(a, d, 0).reshape(a.shape[d], -1)
        change = np.concatenate([[True], np.any(m[1:] != m[:-1], axis=1)]) if m.shape[0] else np.zeros(0, bool)
        vals = np.take(a, np.nonzero(change)[0], axis=d)
        inv = np.cumsum(change) - 1
    starts = np.nonzero(change)[0]
    counts = np.diff(np.append(starts, change.size))
    return _unique_result(vals, inv, counts, return_inverse, return_counts, input.device)
