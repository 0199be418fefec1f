"""decompose: composites that reached the graph become primitives; identities left by autodiff go.

In: a captured Graph.  Out: the same Graph (in place) without
  - stop_gradient   (an identity once the backward graph exists: autodiff already cut the gradient)
  - cast to the dtype the value already has
  - cat of a single input, flip over no dims
  - scatter_add into zeros along a short index dim (the VJP of gather, e.g. in cross_entropy):
    a one-hot sum, out[.., j, ..] = sum_k where(idx[.., k, ..] == j, src[.., k, ..], 0), which fuses
    (scatter_add itself needs an eager fallback: kernel IR has no atomic stores)
  - fold with non-overlapping windows (stride == kernel, dilation 1: the VJP of a 2x2/2 max-pool):
    a permute + reshape (+ pad for leftover rows), i.e. pure index maps that fuse
  - any other fold with at most FOLD_TAPS_MAX window offsets (the conv input gradient, an
    overlapping pool's gradient): the adjoint written as a gather, one term per offset a,
      out[.., h, ..] = sum_a where(valid_a(h), x[.., ((h - a*d) // s) % o, .., a, ..], 0),
    with valid_a(h) = (h - a*d is a multiple of s in [0, s*(o-1)]).  The wrapped index is
    always in bounds, so the load needs no per-element bounds check, and the masks depend only
    on the position: in a kernel whose innermost loop is a batch dimension (convolutions lay
    their columns out batch-last when traced) every term is a contiguous, vectorised run, and
    the whole fold reads its input once.  Larger windows: a sum over the taps of a padded,
    flipped and windowed view (movement ops + one reduction)
  - a large sum over leading dims (a bias or layer-norm weight gradient): a product with a row of
    ones, so BLAS reads the summand once, contiguously; a kernel would reduce with a stride of a
    whole row in its innermost loop (the LN weight gradients of the GPT step: 2.5 GB/s), while
    writing a fused summand once and reading it back costs two contiguous passes
  - any other sum over leading dims of at most LEADING_ADDS_MAX rows (a positional embedding's
    gradient, summed over a batch of 16): the rows added one by one (a balanced tree), so the
    kernel loops over the contiguous trailing axis innermost, vectorised, instead of reducing with
    a stride of a whole row
Scan ops (cumsum) and the other primitives are left as they are: the graph vocabulary is the
primitive set of ember/ir/ops.py, so most composites (softmax, layer_norm, ...) arrive decomposed.
"""
from __future__ import annotations

import itertools
import math

from ember.ir import dtypes as dt
from ember.ir.sizes import hint, is_static
from ember.ir.graph import Graph

from .dce import dce
from .registry import register_pass
from .rewrite import replace_node


@register_pass("decompose")
def decompose(g: Graph) -> bool:
    """Remove stop_gradient, same-dtype casts, 1-input cats and empty flips."""
    changed = False
    for n in g.nodes():
        if n.is_placeholder:
            continue
        x = n.inputs[0] if n.inputs else None
        identity = (n.op == "stop_gradient"
                    or (n.op == "cast" and x.dtype is n.dtype)
                    or (n.op == "cat" and len(n.inputs) == 1)
                    or (n.op == "flip" and not n.attrs["dims"]))
        if identity and replace_node(g, n, x):
            changed = True
        elif n.op == "scatter_add" and _scatter_to_onehot(g, n):
            changed = True
        elif n.op == "fold" and (_fold_to_movement(g, n) or _fold_to_taps(g, n) or _fold_to_window_sum(g, n)):
            changed = True
        elif n.op == "sum" and (_leading_sum_to_matmul(g, n) or _leading_sum_to_adds(g, n)):
            changed = True
    if changed:
        dce(g)
    return changed


ONEHOT_MAX = 16   # longest index dim for which the one-hot sum beats an eager scatter


def _scatter_to_onehot(g: Graph, n) -> bool:
    x, idx, src = n.inputs
    d = n.attrs["dim"] % len(x.shape)
    I, X = idx.shape, x.shape
    if (x.op != "full" or x.attrs["value"] != 0 or src.shape != I or len(I) != len(X)
            or any(I[i] != X[i] for i in range(len(X)) if i != d) or I[d] > ONEHOT_MAX):
        return False
    R = len(X)
    meta = dict(n.meta)
    add = lambda op, ins, **a: g.add(op, ins, a, device=n.device, meta=meta)  # noqa: E731
    e = add("reshape", [idx], shape=I + (1,))
    ar = add("arange", [], n=X[d], start=0, step=1, dtype=idx.dtype)
    m = add("eq", [e, ar])
    v = add("where", [m, add("reshape", [src], shape=I + (1,)), add("full", [], shape=(), value=0, dtype=n.dtype)])
    s = add("sum", [v], dims=(d,), keepdim=False)
    perm = tuple(range(d)) + (R - 1,) + tuple(range(d, R - 1))
    out = add("permute", [s], dims=perm)
    return replace_node(g, n, out)


def _fold_to_movement(g: Graph, n) -> bool:
    """fold [..., o1, o2, k1, k2] -> [..., H, W] when windows do not overlap: out[.., i*k1 + a, ..]
    = x[.., i, .., a, ..]; rows past o*k (the input's leftover border) are zero."""
    a = n.attrs
    kernel, stride, dil, size = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["dilation"]), tuple(a["size"])
    if stride != kernel or any(d != 1 for d in dil):
        return False
    x = n.inputs[0]
    nk = len(kernel)
    shape = tuple(x.shape)
    batch, outs = shape[:-2 * nk], shape[-2 * nk:-nk]
    nb = len(batch)
    meta = dict(n.meta)
    add = lambda op, ins, **kw: g.add(op, ins, kw, device=n.device, meta=meta)  # noqa: E731
    # [..., o1, o2, k1, k2] -> [..., o1, k1, o2, k2] -> [..., o1*k1, o2*k2]
    perm = tuple(range(nb))
    for i in range(nk):
        perm += (nb + i, nb + nk + i)
    y = add("permute", [x], dims=perm)
    y = add("reshape", [y], shape=batch + tuple(o * k for o, k in zip(outs, kernel)))
    pads = ((0, 0),) * nb + tuple((0, s_ - o * k) for s_, o, k in zip(size, outs, kernel))
    if any(hi for _, hi in pads):
        y = add("pad", [y], pads=pads, value=0.0)
    return replace_node(g, n, y)


FOLD_TAPS_MAX = 64   # window offsets up to which a fold becomes one term per offset


def _fold_to_taps(g: Graph, n) -> bool:
    """fold x [..., o..., k...] -> [..., size...] as a sum of one gather term per window offset (see
    the module docstring).  The wrapped index comes from movement ops alone: y = x repeated R times
    and each position held s times along every position dim (a reshape of an expand: y[j] =
    x[(j // s) % o]), and the term for offset a is y sliced from S0 - a*d (S0 a multiple of s*o,
    so the floor division and the modulo see h - a*d)."""
    a = n.attrs
    kernel, stride, dil, size = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["dilation"]), tuple(a["size"])
    if math.prod(kernel) > FOLD_TAPS_MAX:
        return False
    x = n.inputs[0]
    nk = len(kernel)
    shape = tuple(x.shape)
    nb = len(shape) - 2 * nk
    batch, outs = shape[:nb], shape[nb:nb + nk]
    meta = dict(n.meta)
    add = lambda op, ins, **kw: g.add(op, ins, kw, device=n.device, meta=meta)  # noqa: E731
    # 16-bit folds sum in float32 and round once, as eager's fold does (a float32 kernel on upcast copies):
    # bf16 adds would round every term (the casts fuse into the kernel's loads and store)
    acc = dt.float32 if n.dtype in (dt.bfloat16, dt.float16) else n.dtype
    if acc is not n.dtype:
        x = add("cast", [x], dtype=acc)
    starts0, reps = [], []
    for o, k, s_, d_, H in zip(outs, kernel, stride, dil, size):
        period = o * s_
        s0 = -(-(k - 1) * d_ // period) * period        # >= the largest offset, a multiple of s*o
        starts0.append(s0)
        reps.append(-(-(s0 + H) // period))
    y = add("reshape", [x], shape=batch + sum(((1, o, 1) for o in outs), ()) + kernel)
    y = add("expand", [y], shape=batch + sum(((r, o, s_) for r, o, s_ in zip(reps, outs, stride)), ()) + kernel)
    y = add("reshape", [y], shape=batch + tuple(r * o * s_ for r, o, s_ in zip(reps, outs, stride)) + kernel)
    zero_i = add("full", [], shape=(), value=0, dtype=dt.int64)
    zero = add("full", [], shape=(), value=0.0, dtype=acc)
    # masks[i][a]: along position dim i, where offset a contributes (broadcast over the other dims)
    masks = []
    for i, (k, d_, s_, o, H) in enumerate(zip(kernel, dil, stride, outs, size)):
        last = add("full", [], shape=(), value=s_ * (o - 1), dtype=dt.int64)
        step = add("full", [], shape=(), value=s_, dtype=dt.int64) if s_ > 1 else None
        row = []
        for off in range(k):
            pos = add("arange", [], n=H, start=-off * d_, step=1, dtype=dt.int64)          # h - a*d
            m = add("logical_and", [add("ge", [pos, zero_i]), add("le", [pos, last])])
            if step is not None:
                m = add("logical_and", [m, add("eq", [add("remainder", [pos, step]), zero_i])])
            row.append(add("reshape", [m], shape=(1,) * (nb + i) + (H,) + (1,) * (nk - 1 - i)))
        masks.append(row)
    total = None
    for off in itertools.product(*(range(k) for k in kernel)):
        starts = (0,) * nb + tuple(s0 - o_ * d_ for s0, o_, d_ in zip(starts0, off, dil)) + off
        stops = batch + tuple(st + H for st, H in zip(starts[nb:nb + nk], size)) + tuple(o_ + 1 for o_ in off)
        t = add("slice", [y], starts=starts, stops=stops, steps=(1,) * len(stops))
        t = add("reshape", [t], shape=batch + size)
        mask = masks[0][off[0]]
        for i in range(1, nk):
            mask = add("logical_and", [mask, masks[i][off[i]]])
        t = add("where", [mask, t, zero])
        total = t if total is None else add("add", [total, t])
    if acc is not n.dtype:
        total = add("cast", [total], dtype=n.dtype)
    return replace_node(g, n, total)


def _fold_to_window_sum(g: Graph, n) -> bool:
    """out[.., h, ..] = sum_a x[.., (h - a*d)/s, .., a, ..] (terms whose position is not a multiple
    of s, or out of range, are 0). Built from movement ops only:
      1. dilate the window-position dims by the stride (interleave s-1 zeros): x' at stride 1;
      2. pad them by d*(k-1) on both sides and flip the tap dims: z[j, a'] = x'[j - d*(k-1) + d*a', k-1-a'];
      3. windows over the position dims with the tap's dilation: w[h, a', ka] = z[h + d*ka, a'];
      4. keep the diagonal a' == ka (merge the two dims, slice with step k+1) and sum over the taps;
      5. pad the far border the windows never reached."""
    a = n.attrs
    kernel, stride, dil, size = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["dilation"]), tuple(a["size"])
    x = n.inputs[0]
    nk = len(kernel)
    shape = tuple(x.shape)
    batch, outs = shape[:-2 * nk], shape[-2 * nk:-nk]
    nb = len(batch)
    if any(k > 16 for k in kernel):
        return False
    meta = dict(n.meta)
    add = lambda op, ins, **kw: g.add(op, ins, kw, device=n.device, meta=meta)  # noqa: E731
    y = x
    # 1. interleave zeros along each position dim with stride > 1: [.., o, ..] -> [.., o*s - (s-1), ..]
    for i, (o, s_) in enumerate(zip(outs, stride)):
        if s_ == 1:
            continue
        d = nb + i
        cur = tuple(y.shape)
        y = add("reshape", [y], shape=cur[:d + 1] + (1,) + cur[d + 1:])
        pads = [(0, 0)] * (len(cur) + 1)
        pads[d + 1] = (0, s_ - 1)
        y = add("pad", [y], pads=tuple(pads), value=0.0)
        y = add("reshape", [y], shape=cur[:d] + (o * s_,) + cur[d + 1:])
        starts = [0] * len(cur)
        stops = list(cur[:d]) + [o * s_ - (s_ - 1)] + list(cur[d + 1:])
        y = add("slice", [y], starts=tuple(starts), stops=tuple(stops), steps=(1,) * len(cur))
    # 2. pad positions by d*(k-1) both sides, flip the taps
    span = tuple(d_ * (k - 1) for k, d_ in zip(kernel, dil))
    pads = ((0, 0),) * nb + tuple((p, p) for p in span) + ((0, 0),) * nk
    y = add("pad", [y], pads=pads, value=0.0)
    y = add("flip", [y], dims=tuple(range(nb + nk, nb + 2 * nk)))
    # positions last, so windows slides over them: [B, taps, positions]
    perm = tuple(range(nb)) + tuple(range(nb + nk, nb + 2 * nk)) + tuple(range(nb, nb + nk))
    y = add("permute", [y], dims=perm)
    # 3. windows: [B, taps, out positions, window taps]
    y = add("windows", [y], kernel=kernel, stride=(1,) * nk, dilation=dil)
    pos = tuple(y.shape[nb + nk:nb + 2 * nk])
    # 4. diagonal: [B, pos, (tap, window tap) pairs] -> step k+1 picks tap == window tap
    perm = tuple(range(nb)) + tuple(range(nb + nk, nb + 2 * nk))
    for i in range(nk):
        perm += (nb + i, nb + 2 * nk + i)
    y = add("permute", [y], dims=perm)
    y = add("reshape", [y], shape=batch + pos + tuple(k * k for k in kernel))
    full = tuple(y.shape)
    y = add("slice", [y], starts=(0,) * len(full), stops=full, steps=(1,) * (nb + nk) + tuple(k + 1 for k in kernel))
    y = add("sum", [y], dims=tuple(range(nb + nk, nb + 2 * nk)), keepdim=False)
    # 5. the far border
    far = tuple(s_ - p for s_, p in zip(size, pos))
    if any(f < 0 for f in far):
        return False
    if any(far):
        y = add("pad", [y], pads=((0, 0),) * nb + tuple((0, f) for f in far), value=0.0)
    return replace_node(g, n, y)


LEADING_SUM_MIN_ROWS = 64
LEADING_SUM_MIN_ELEMENTS = 1 << 16   # below this the kernel is cheap either way
# A bf16 column sum (a bias gradient under autocast) as the product from this many columns: 1024 rows, us,
# strided kernel / product (AVX2 EPYC): 128 103/174, 256 394/263, 384 274/351, 512 743/206, 768 1143/248,
# 1024 3518/361, 2048 7994/926 (the kernel walks each column down the rows).
BF16_LEADING_SUM_MIN_COLS = 512


def _leading_sum_to_matmul(g: Graph, n) -> bool:
    """sum(x, dims=(0..k-1)) over x[R..., C...] -> ones[1, R] @ x.reshape(R, C) (x realised if it
    was not already a buffer).  bfloat16 too, from BF16_LEADING_SUM_MIN_COLS columns: its product sums in
    float32 and rounds once, as its sum does."""
    x = n.inputs[0]
    nd = len(x.shape)
    dims = n.attrs["dims"]
    if dims is None or x.dtype not in (dt.float32, dt.float64, dt.bfloat16):
        return False
    dims = tuple(sorted(d % nd for d in dims))
    k = len(dims)
    if k == 0 or k >= nd or dims != tuple(range(k)):
        return False
    rows = math.prod(x.shape[:k])
    cols = math.prod(x.shape[k:])
    if not is_static(cols):
        return False
    # a speed choice: decided at the trace's sizes without a guard when the rows are symbolic
    if hint(rows) < LEADING_SUM_MIN_ROWS or cols < 8 or hint(rows) * cols < LEADING_SUM_MIN_ELEMENTS:
        return False
    if x.dtype is dt.bfloat16 and cols < BF16_LEADING_SUM_MIN_COLS:
        return False
    meta = dict(n.meta)
    add = lambda op, ins, **kw: g.add(op, ins, kw, device=n.device, meta=meta)  # noqa: E731
    ones = add("full", [], shape=(1, rows), value=1.0, dtype=x.dtype)
    prod = add("matmul", [ones, add("reshape", [x], shape=(rows, cols))])
    return replace_node(g, n, add("reshape", [prod], shape=tuple(n.shape)))


LEADING_ADDS_MAX = 16     # leading rows up to which a sum becomes explicit adds
LEADING_ADDS_MIN_ELEMENTS = 1 << 12


def _leading_sum_to_adds(g: Graph, n) -> bool:
    """sum(x, dims=(0..k-1)) over x[R..., C...] with R <= LEADING_ADDS_MAX -> x[0] + ... + x[R-1]."""
    x = n.inputs[0]
    nd = len(x.shape)
    dims = n.attrs["dims"]
    if dims is None or not x.dtype.is_floating_point:
        return False
    dims = tuple(sorted(d % nd for d in dims))
    k = len(dims)
    if k == 0 or k >= nd or dims != tuple(range(k)):
        return False
    rows = math.prod(x.shape[:k])
    cols = tuple(x.shape[k:])
    if not is_static(rows) or not all(map(is_static, cols)):   # one add per row: a fixed count
        return False
    if not 2 <= rows <= LEADING_ADDS_MAX or math.prod(cols) * rows < LEADING_ADDS_MIN_ELEMENTS:
        return False
    meta = dict(n.meta)
    add = lambda op, ins, **kw: g.add(op, ins, kw, device=n.device, meta=meta)  # noqa: E731
    flat = x if k == 1 else add("reshape", [x], shape=(rows,) + cols)
    narrow = x.dtype in (dt.bfloat16, dt.float16)
    if narrow:          # summed in float32 and rounded once, as the sum itself would be (and eager's is)
        flat = add("cast", [flat], dtype=dt.float32)
    terms = [add("reshape", [add("slice", [flat], starts=(r,) + (0,) * len(cols), stops=(r + 1,) + cols,
                                  steps=(1,) * (len(cols) + 1))], shape=cols) for r in range(rows)]
    while len(terms) > 1:             # a balanced tree: independent adds, no long dependency chain
        terms = [add("add", terms[i:i + 2]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    out = add("cast", [terms[0]], dtype=x.dtype) if narrow else terms[0]
    if tuple(n.shape) != cols:        # keepdim
        out = add("reshape", [out], shape=tuple(n.shape))
    return replace_node(g, n, out)
