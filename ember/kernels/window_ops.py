"""Window ops of eager mode as generated kernels: max pooling and its gradient, the fold of a window gradient.

In: numpy arrays in any memory order (a convolution's batch-last result is taken as it lies) and the window
(kernel, stride, dilation, low padding, output sizes).  Out: numpy arrays laid out like the input, or None
where generated code does not apply (dtype other than float32/float64, fewer than generated.MIN_SIZE
values, more than MAX_TAPS window offsets, no code generator): the caller then runs its numpy path.

    max_pool(x, k, s, d, lo, outs)           -> (y, tap, index or None)   y = max over each window
    max_pool_grad(g, tap, shape, ...)        -> dx                        g routed back to each window's winner
    fold(cols, size, k, s, d, lo)            -> dx                        dx[p*s + a*d - lo] += cols[p, a]

Each is ONE loop over its output in memory order (batch-last: the batch is the innermost, vectorised loop),
written in kernel IR (ember/ir/kernel.py) and compiled by ember/kernels/generated.py:
  * max_pool: the window offsets unrolled, a running maximum that remembers its offset (`tap`, int8 for up to
    127 offsets) -- PyTorch's rule: a larger value or a NaN takes over (`val > max || isnan(val)`), so ties
    keep the first maximum and the last NaN wins; padding takes no part.  With `indices` it also stores
    PyTorch's flat position in the input plane (return_indices).
  * max_pool_grad and fold: the adjoint of a window as a gather -- each input position sums the window
    offsets that can reach it (one, when windows do not overlap: found by division), reading the gradient
    where they land; no scatter, no mask over whole windows.
"""
from __future__ import annotations

# (kernel IR is imported where kernels are built: `import ember` does not load it)
import itertools
import math

import ml_dtypes
import numpy as np

from ..ir import dtypes as dt
from . import casts, generated

__all__ = ["max_pool", "max_pool_grad", "fold", "MAX_TAPS"]

MAX_TAPS = 64          # window offsets unrolled in one kernel at most (more: numpy's loop over offsets)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_FLOATS = {np.dtype(np.float32): dt.float32, np.dtype(np.float64): dt.float64}


def _tap_dtype(taps: int) -> np.dtype:
    return np.dtype(np.int8 if taps <= 127 else np.int16 if taps <= 32767 else np.int32)


def _ok(a: np.ndarray, taps: int) -> bool:
    return (a.dtype in _FLOATS and a.size >= generated.MIN_SIZE and taps <= MAX_TAPS
            and generated.COMPILE is not None)


def _all(conds):
    from ..ir.kernel import Binary
    c = None
    for x in conds:
        c = x if c is None else Binary("logical_and", c, x)
    return c


def _within(e, first: int, last: int, n: int) -> list:
    """Bool expressions saying 0 <= e < n for an index expression e ranging over [first, last]: only the
    bounds it can cross."""
    from ..ir.kernel import Binary, Const, IndexValue
    v = IndexValue(e)
    return ([Binary("ge", v, Const(0, dt.int64))] if first < 0 else []) + \
        ([Binary("lt", v, Const(n, dt.int64))] if last >= n else [])


def _guarded(buf, index: list, ranges: dict):
    """(load, valid): buf read at index, where ranges {dim: (first, last)} gives the span of the dims that
    can fall outside buf; valid (None: always inside) says where they do not.  Such a dim is read at
    `index % size` -- inside the buffer, and the same place where it is valid -- rather than through a
    bounds-masked load: the mask would make the address a select per element and keep the batch loop
    from vectorising, while the wrapped index depends on the outer loops only (~5x faster here)."""
    from ..ir.kernel import Load
    conds = []
    index = list(index)
    for j, (first, last) in ranges.items():
        n = buf.shape[j]
        if first < 0 or last >= n:
            conds += _within(index[j], first, last, n)
            index[j] = index[j] % n
    return Load(buf, index), _all(conds)


# ------------------------------------------------------------------------------------ max pooling
def max_pool(x: np.ndarray, k, s, d, lo, outs, indices: bool = False):
    """x [*lead, *spatial] -> (y [*lead, *outs], tap, index or None), laid out in x's memory order; or None.
    bfloat16 runs on its float32 values: the maximum is one of them, exact both ways (numpy compares
    ml_dtypes' bf16 one element at a time: the MNIST pool under autocast took ~2.5 ms a step so)."""
    if x.dtype == _BF16:
        r = max_pool(casts.astype(x, np.float32), k, s, d, lo, outs, indices)
        return None if r is None else (casts.astype(r[0], _BF16),) + r[1:]
    nd = len(k)
    taps = math.prod(k)
    if not _ok(x, taps):
        return None
    lead = x.ndim - nd
    spatial = x.shape[lead:]
    perm, buf = generated.memory_order(x)
    tdt = _tap_dtype(taps)
    oshape = tuple(x.shape[:lead]) + tuple(outs)
    mshape = tuple(oshape[p] for p in perm)
    key = ("max_pool", buf.dtype.str, buf.shape, perm, tuple(k), tuple(s), tuple(d), tuple(lo), tuple(outs),
           indices)

    def build():
        from ..ir.kernel import Binary, Buf, Const, IndexValue, Kernel, Store, Unary, Where, o
        fdt = _FLOATS[buf.dtype]
        X = Buf("x", buf.shape, fdt)
        Y, T = Buf("y", mshape, fdt), Buf("tap", mshape, dt.from_numpy(tdt))
        outs_ = [Y, T] + ([Buf("index", mshape, dt.int64)] if indices else [])
        plane = [math.prod(spatial[i + 1:]) for i in range(nd)]
        acc = tap = pos = have = None
        for t, off in enumerate(itertools.product(*(range(ki) for ki in k))):
            index, ranges, flat = [], {}, 0
            for j, p in enumerate(perm):
                if p < lead:
                    index.append(o(j))
                    continue
                i = p - lead
                e = o(j) * s[i] + (off[i] * d[i] - lo[i])
                index.append(e)
                flat = e * plane[i] + flat
                ranges[j] = (off[i] * d[i] - lo[i], (outs[i] - 1) * s[i] + off[i] * d[i] - lo[i])
            v, valid = _guarded(X, index, ranges)         # valid: not in the padding (None: never there)
            tv = Const(t, T.dtype)
            fv = IndexValue(flat) if indices else None
            if acc is None:
                acc, tap, pos, have = v, tv, fv, valid
                continue
            # PyTorch: `if (val > maxval || isnan(val))`, over the offsets inside the input only
            better = Binary("logical_or", Binary("gt", v, acc), Unary("isnan", v))
            if have is not None:                 # no offset inside yet: the first one inside wins
                better = Binary("logical_or", better, Unary("logical_not", have))
            if valid is not None:
                better = Binary("logical_and", valid, better)
            if have is not None:                 # None: an offset inside has been seen, always
                have = None if valid is None else Binary("logical_or", have, valid)
            acc, tap = Where(better, v, acc), Where(better, tv, tap)
            if indices:
                pos = Where(better, fv, pos)
        at = [o(j) for j in range(len(mshape))]
        stores = [Store(Y, at, acc), Store(T, at, tap)] + ([Store(outs_[2], at, pos)] if indices else [])
        return Kernel([X], outs_, mshape, stores=stores, name="eager_max_pool")

    kern = generated.kernel(key, build)
    if kern is None:
        return None
    y, tap = np.empty(mshape, buf.dtype), np.empty(mshape, tdt)
    idx = np.empty(mshape, np.int64) if indices else None
    kern.launch([buf, y, tap] + ([idx] if indices else []))
    inv = generated.inverse(perm)
    return y.transpose(inv), tap.transpose(inv), (idx.transpose(inv) if indices else None)


def max_pool_grad(g: np.ndarray, tap: np.ndarray, shape, k, s, d, lo, outs):
    """The gradient of max_pool: g [*lead, *outs] (any layout) to the offset `tap` names in each window,
    as dx [*lead, *shape[lead:]] laid out in tap's memory order (the forward input's); or None.  bfloat16:
    on float32 values, rounded once (overlapping windows sum in float32, as PyTorch's CPU kernel does)."""
    if g.dtype == _BF16:
        r = max_pool_grad(casts.astype(g, np.float32), tap, shape, k, s, d, lo, outs)
        return None if r is None else casts.astype(r, _BF16)
    nd = len(k)
    taps = math.prod(k)
    if not _ok(g, taps) or tap.dtype != _tap_dtype(taps):
        return None
    lead = len(shape) - nd
    spatial = tuple(shape[lead:])
    perm, tm = generated.memory_order(tap)
    gm = np.ascontiguousarray(g.transpose(perm))
    xshape = tuple(shape[p] for p in perm)
    key = ("max_pool_grad", gm.dtype.str, xshape, gm.shape, perm, tuple(k), tuple(s), tuple(d), tuple(lo),
           tuple(outs))

    def build():
        from ..ir.kernel import Binary, Buf, Const, IndexValue, Kernel, Store, Where, o
        fdt = _FLOATS[gm.dtype]
        G, T = Buf("g", gm.shape, fdt), Buf("tap", tm.shape, dt.from_numpy(tm.dtype))
        DX = Buf("dx", xshape, fdt)
        zero = Const(0.0, fdt)
        if all(si == ki and di == 1 for si, ki, di in zip(s, k, d)):
            # windows tile the input: position q lies in window q // k at offset q % k -- one read of g
            index, tid, ranges = [], 0, {}
            for j, p in enumerate(perm):
                if p < lead:
                    index.append(o(j))
                    continue
                i = p - lead
                q = o(j) + lo[i]
                index.append(q // k[i])
                tid = tid * k[i] + q % k[i]
                ranges[j] = (lo[i] // k[i], (spatial[i] - 1 + lo[i]) // k[i])     # rows past the last window
            gv, valid = _guarded(G, index, ranges)
            tv, _ = _guarded(T, index, ranges)
            hit = _all([Binary("eq", tv, IndexValue(tid, T.dtype))] + ([valid] if valid is not None else []))
            val = Where(hit, gv, zero)
        else:
            val = None
            for t, off in enumerate(itertools.product(*(range(ki) for ki in k))):
                index, conds, ranges = [], [], {}
                for j, p in enumerate(perm):
                    if p < lead:
                        index.append(o(j))
                        continue
                    i = p - lead
                    num = o(j) + (lo[i] - off[i] * d[i])          # = window * s when this offset reaches q
                    first, last = lo[i] - off[i] * d[i], spatial[i] - 1 + lo[i] - off[i] * d[i]
                    if s[i] > 1:
                        conds.append(Binary("eq", IndexValue(num % s[i]), Const(0, dt.int64)))
                        num = num // s[i]
                        first, last = first // s[i], last // s[i]
                    index.append(num)
                    ranges[j] = (first, last)
                gv, valid = _guarded(G, index, ranges)
                tv, _ = _guarded(T, index, ranges)
                hit = _all([Binary("eq", tv, Const(t, T.dtype))] + conds + ([valid] if valid is not None else []))
                term = Where(hit, gv, zero)
                val = term if val is None else Binary("add", val, term)
        return Kernel([G, T], [DX], xshape, stores=[Store(DX, [o(j) for j in range(len(xshape))], val)],
                      name="eager_max_pool_grad")

    kern = generated.kernel(key, build)
    if kern is None:
        return None
    dx = np.empty(xshape, gm.dtype)
    kern.launch([gm, tm, dx])
    return dx.transpose(generated.inverse(perm))


# ------------------------------------------------------------------------------------------ fold
def fold(cols: np.ndarray, size, k, s, d, lo=None):
    """cols [*batch, *outs, *k] -> dx [*batch, *size]: dx[..., p*s + a*d - lo] += cols[..., p, a] over the
    positions inside size (a convolution's input gradient from its column gradient, cropped: lo is the
    low padding the forward added).  dx is laid out like cols' batch and position dims; or None."""
    nd = len(k)
    taps = math.prod(k)
    if not _ok(cols, taps):
        return None
    lo = tuple(lo) if lo is not None else (0,) * nd
    nb = cols.ndim - 2 * nd
    outs = tuple(cols.shape[nb:nb + nd])
    perm, buf = generated.memory_order(cols)
    # dx's memory order: cols' batch and position dims in their order (position i of outs -> spatial i)
    keep = [p for p in perm if p < nb + nd]
    xshape_l = tuple(cols.shape[:nb]) + tuple(size)
    xshape = tuple(xshape_l[p] for p in keep)
    key = ("fold", buf.dtype.str, buf.shape, perm, tuple(size), tuple(k), tuple(s), tuple(d), lo)

    def build():
        from ..ir.kernel import Binary, Buf, Const, IndexValue, Kernel, Store, Where, o
        fdt = _FLOATS[buf.dtype]
        C, DX = Buf("cols", buf.shape, fdt), Buf("dx", xshape, fdt)
        where_of = {p: j for j, p in enumerate(keep)}          # logical dim -> loop variable of dx
        val = None
        for off in itertools.product(*(range(ki) for ki in k)):
            idx_l, conds, ranges_l = {}, [], {}
            for p in range(nb):
                idx_l[p] = o(where_of[p])
            for i in range(nd):
                num = o(where_of[nb + i]) + (lo[i] - off[i] * d[i])
                first, last = lo[i] - off[i] * d[i], size[i] - 1 + lo[i] - off[i] * d[i]
                if s[i] > 1:
                    conds.append(Binary("eq", IndexValue(num % s[i]), Const(0, dt.int64)))
                    num = num // s[i]
                    first, last = first // s[i], last // s[i]
                if last < 0 or first >= outs[i]:
                    break                                       # this offset reaches no position inside
                idx_l[nb + i] = num
                idx_l[nb + nd + i] = off[i]
                ranges_l[nb + i] = (first, last)
            else:
                index = [idx_l[p] for p in perm]
                v, valid = _guarded(C, index, {j: ranges_l[p] for j, p in enumerate(perm) if p in ranges_l})
                conds += [valid] if valid is not None else []
                if conds:
                    v = Where(_all(conds), v, Const(0.0, fdt))
                val = v if val is None else Binary("add", val, v)
        if val is None:
            val = Const(0.0, fdt)
        return Kernel([C], [DX], xshape, stores=[Store(DX, [o(j) for j in range(len(xshape))], val)],
                      name="eager_fold")

    kern = generated.kernel(key, build)
    if kern is None:
        return None
    dx = np.empty(xshape, buf.dtype)
    kern.launch([buf, dx])
    return dx.transpose(generated.inverse(keep))
