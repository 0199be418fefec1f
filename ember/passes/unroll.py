"""unroll: compute once what several points of a short outer axis share.

In: a Program after fusion and loop ordering.  Out: the same Program, where a pointwise kernel (no
inner axes) with short outer axes (extent 2..MAX_EXTENT, not the first axis, which the runtime
splits across threads, nor the last, the vector loop) whose values mostly do not depend on them
loses those axes: its body is written once per point of them (the axis variable a constant), with
the nodes that do not depend on them shared, so each is computed once instead of once per point.

Why: the gradient of a max-pool over a convolution's output comes out of fusion as one kernel over
the pre-pool domain [C, H/2, 2, W/2, 2, N], but everything except the final "is this the max"
selection -- the pooled gradient (in MNIST a 25-tap fold of the next convolution's input
gradient), the pool's max and the ReLU mask -- is a function of the pooled position alone: it was
computed 4 times per pooled point (MNIST's conv1 backward epilogue: ~1.3 ms, ~25% of copy
bandwidth).  Stores of the unrolled kernel write each buffer at constant offsets along the removed
axes; the innermost loop is untouched, so every store stays contiguous and vectorised.

The innermost axis is first split where the kernel's index tests cut it (`o2 - 256 >= 0`, `o2 < 128`:
the pieces of a concatenation, or the zero padding of each piece's gradient), when the cuts fall on
a multiple S of at least MIN_PIECE and the axis has at most MAX_EXTENT pieces: o2 = S*a + c with
the piece a an outer axis, which is then unrolled like the short axes above, its tests folded to
constants (`fold`) so each piece loads only its own input.  Why: the gradient of GPT's qkv
projection is the three head gradients padded into one [B, T, 3*D] value, a sum of three selects
whose loads all ran for every element (~0.6 ms, ~20% of copy bandwidth).
"""
from __future__ import annotations

import itertools
import math

from ember.ir import dtypes as dt
from ember.ir import index as fi
from ember.ir.index import IConst, Var, index_vars
from ember.ir.kernel import (Binary, Const, IndexValue, Kernel, Load, Store, Unary, Where, node_index_exprs,
                             topo_order)

from .layout import _kernels, rebuild_node

__all__ = ["unroll_program", "unroll_kernel", "split_divisors", "fold", "MAX_EXTENT", "MAX_COPIES", "MIN_PIECE"]

MAX_EXTENT = 4      # an axis this short or shorter may be unrolled ...
MAX_COPIES = 16     # ... while the body is written at most this many times
MIN_PIECE = 16      # an innermost-axis piece at least this long (a vector loop of its own)


def unroll_kernel(k: Kernel) -> Kernel:
    """k with its short shared outer axes unrolled, or its innermost axis split into pieces that
    are unrolled (k itself when neither pays)."""
    if k.inner:
        return k
    u = _unroll_shared(k) if len(k.outer) >= 3 else k
    if u is not k:
        return u
    split = _split_innermost(k)
    if split is None:
        return k
    ks, a = split
    u = _unrolled(ks, [a])
    copies = ks.outer[a]
    # the pieces must load and compute less than the whole axis did (dead selects are gone)
    return split_divisors(u) if _cost(u) < 0.8 * copies * _cost(k) else k


def _cost(k: Kernel) -> int:
    return sum(_weight(n) for n in k.nodes)


def _unroll_shared(k: Kernel) -> Kernel:
    short = [a for a in range(1, len(k.outer) - 1) if isinstance(k.outer[a], int) and 2 <= k.outer[a] <= MAX_EXTENT]
    # the axes that pay alone, best first, as many as MAX_COPIES allows; then the set must pay too
    gains = {a: _gain(k, {a})[0] for a in short}
    axes: list[int] = []
    for a in sorted((a for a in short if gains[a] > 0), key=lambda a: (-gains[a], a)):
        if math.prod(k.outer[b] for b in axes + [a]) <= MAX_COPIES:
            axes.append(a)
    axes.sort()
    if not axes:
        return k
    gain, depends = _gain(k, set(axes))
    if gain <= 0:
        return k
    return _unrolled(k, axes, depends)


def _unrolled(k: Kernel, axes: list, depends: dict | None = None) -> Kernel:
    """k with the outer `axes` unrolled: the body written once per point of them, nodes that do not
    depend on them (`depends`: id -> bool; computed when None) shared, index tests folded."""
    if depends is None:
        depends = _gain(k, set(axes))[1]
    keep = [a for a in range(len(k.outer)) if a not in axes]
    rename = {f"o{old}": Var("o", new) for new, old in enumerate(keep)}
    ranges = fi.domain_ranges([k.outer[a] for a in keep], ())
    shared_memo: dict[int, object] = {}
    for n in k.nodes:
        if not depends[id(n)]:
            shared_memo[id(n)] = fold(rebuild_node(n, shared_memo, lambda e: fi.simplify(fi.subst(e, rename), ranges)),
                                      ranges)
    stores = []
    for point in itertools.product(*(range(k.outer[a]) for a in axes)):
        mapping = dict(rename)
        mapping.update({f"o{a}": IConst(c) for a, c in zip(axes, point)})

        def sub(e, mapping=mapping):
            return fi.simplify(fi.subst(e, mapping), ranges)
        memo = dict(shared_memo)
        for n in topo_order([s.value for s in k.stores]):
            if id(n) not in memo:
                memo[id(n)] = fold(rebuild_node(n, memo, sub), ranges)
        stores += [Store(s.buf, [sub(e) for e in s.index], memo[id(s.value)]) for s in k.stores]
    return Kernel(k.inputs, k.outputs, [k.outer[a] for a in keep], (), stores, name=k.name, id=k.id)


_CMP = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def fold(n, ranges: dict):
    """n with index tests decided by the loop ranges made constants, and selects, logical ops and
    comparisons of constants folded (n itself when nothing folds)."""
    if isinstance(n, Binary) and n.op in _CMP:
        a, b, op = n.a, n.b, n.op
        if isinstance(a, Const) and isinstance(b, IndexValue):
            a, b, op = b, a, _FLIP[op]
        if isinstance(a, IndexValue) and isinstance(b, Const) and isinstance(b.value, int):
            lo, hi = fi.index_range(a.index, ranges)
            if all(isinstance(v, (int, float)) for v in (lo, hi)):
                lo_t, hi_t = _CMP[op](lo, b.value), _CMP[op](hi, b.value)
                if op in ("lt", "le", "gt", "ge") and lo_t == hi_t:
                    return Const(lo_t, dt.bool_)
                if op in ("eq", "ne") and lo == hi:
                    return Const(lo_t, dt.bool_)
                if op in ("eq", "ne") and not lo <= b.value <= hi:
                    return Const(op == "ne", dt.bool_)
    if isinstance(n, Binary) and n.op in ("logical_and", "logical_or"):
        for x, y in ((n.a, n.b), (n.b, n.a)):
            if isinstance(x, Const) and x.dtype is dt.bool_ and y.dtype is dt.bool_:
                if n.op == "logical_and":
                    return y if x.value else Const(False, dt.bool_)
                return Const(True, dt.bool_) if x.value else y
    if isinstance(n, Unary) and n.op == "logical_not" and isinstance(n.x, Const) and n.x.dtype is dt.bool_:
        return Const(not n.x.value, dt.bool_)
    if isinstance(n, Where) and isinstance(n.cond, Const):
        return n.a if n.cond.value else n.b
    return n


def _split_innermost(k: Kernel):
    """(k with its innermost axis o = S*a + c split into outer axes a and c, position of a) when the
    index tests of k cut that axis only at multiples of a piece length S (see the module
    docstring), else None."""
    last = len(k.outer) - 1
    n = k.outer[last]
    if not isinstance(n, int):
        return None
    var = Var("o", last)
    cuts = []
    for node in k.nodes:
        if not (isinstance(node, Binary) and node.op in _CMP):
            continue
        for x, y in ((node.a, node.b), (node.b, node.a)):
            if isinstance(x, IndexValue) and isinstance(y, Const) and isinstance(y.value, int):
                if {v.name for v in index_vars(x.index)} != {var.name} or fi.linear_coeff(x.index, var) != 1:
                    continue
                off = fi.simplify(fi.subst(x.index, {var.name: IConst(0)}), {})
                if not isinstance(off, IConst) or not isinstance(off.value, int):
                    continue
                # x < c and x >= c change at x = c; x <= c and x > c at c + 1; == and != at both
                at = y.value - off.value
                op = node.op if x is node.a else _FLIP[node.op]
                cuts += [at] if op in ("lt", "ge") else [at + 1] if op in ("le", "gt") else [at, at + 1]
    cuts = [c for c in cuts if 0 < c < n]
    if not cuts:
        return None
    piece = math.gcd(n, *cuts)
    if piece < MIN_PIECE or n // piece > MAX_EXTENT or n // piece < 2:
        return None
    return _split_last(k, piece), last


def _split_last(k: Kernel, piece: int) -> Kernel:
    """k with its innermost axis o (extent a multiple of piece) written as o = piece*a + c, a and c
    outer axes (c innermost)."""
    last = len(k.outer) - 1
    var, n = Var("o", last), k.outer[last]
    outer = list(k.outer[:last]) + [n // piece, piece]
    ranges = fi.domain_ranges(outer, ())
    sub = {var.name: Var("o", last) * piece + Var("o", last + 1)}

    def index_fn(e):
        return fi.simplify(fi.subst(e, sub), ranges)
    memo: dict[int, object] = {}
    for node in k.nodes:
        memo[id(node)] = rebuild_node(node, memo, index_fn)
    stores = [Store(s.buf, [index_fn(e) for e in s.index], memo[id(s.value)]) for s in k.stores]
    return Kernel(k.inputs, k.outputs, outer, (), stores, name=k.name, id=k.id)


def split_divisors(k: Kernel) -> Kernel:
    """k with its innermost axis o split as o = m*a + c when its indices take o % m or o // m (the
    heads of an attention layout, o % 128 // 32): the loads of the c loop are then affine, so they
    vectorise as contiguous runs instead of gathers.  m: the largest such divisor of the axis'
    extent that is at least MIN_PIECE (k itself when there is none)."""
    last = len(k.outer) - 1
    n = k.outer[last]
    if k.inner or not isinstance(n, int):
        return k
    exprs = [e for node in k.nodes for e in node_index_exprs(node)] + [e for s in k.stores for e in s.index]
    found = set()
    for e in exprs:
        for x in fi.index_postorder(fi.as_index(e)):
            if (isinstance(x, fi.IBin) and x.op in ("%", "//") and isinstance(x.b, IConst)
                    and isinstance(x.b.value, int) and f"o{last}" in {v.name for v in index_vars(x.a)}):
                found.add(x.b.value)
    pieces = [m for m in found if MIN_PIECE <= m < n and n % m == 0]
    return _split_last(k, max(pieces)) if pieces else k


def _gain(k: Kernel, axes: set) -> tuple[int, dict]:
    """(gain, depends): the weight of the work shared across the points of `axes` minus that of the work that still
    varies along them (loads weigh 2: they are what a memory-bound kernel waits on; index tests
    that become constants once the axes are, nothing); depends: id(node) -> whether it varies
    along `axes`."""
    names = {f"o{a}" for a in axes}
    depends: dict[int, bool] = {}
    folds: dict[int, bool] = {}
    for n in k.nodes:
        used = {v.name for e in node_index_exprs(n) for v in index_vars(e)}
        depends[id(n)] = bool(used & names) or any(depends[id(c)] for c in n.operands())
        if isinstance(n, Load):
            folds[id(n)] = False
        elif isinstance(n, (IndexValue, Const)):
            folds[id(n)] = used <= names
        else:
            folds[id(n)] = all(folds[id(c)] for c in n.operands())
    varying = sum(_weight(n) for n in k.nodes if depends[id(n)] and not folds[id(n)])
    shared = sum(_weight(n) for n in k.nodes if not depends[id(n)])
    return shared - varying, depends


def _weight(n) -> int:
    return 2 if isinstance(n, Load) else 0 if isinstance(n, (IndexValue, Const)) else 1


def unroll_program(program) -> None:
    """Unroll the short shared axes of every kernel and extern epilogue of `program` (or split its
    innermost axis at the divisors its indices use), in place."""
    for step in program.steps:
        for k, _, put in list(_kernels(step)):
            nk = unroll_kernel(k)
            nk = split_divisors(nk) if nk is k else nk
            if nk is not k:
                put(nk)
