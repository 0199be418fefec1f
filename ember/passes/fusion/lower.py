"""Lowering for fusion: graph nodes -> kernel-IR expressions, and a decided group -> a Kernel.

In: the decisions of ember/passes/fusion/decide.py (which group stores which node at which index,
which nodes are buffers).  Out:
  * `IndexMaps.input_requests(n, idx)`: the index each input of n is read at when n is requested
    at idx (movement ops through ember.ir.index.map_*; reductions over the inner variables).
    Deciding uses it to propagate requests; lowering to build expressions.
  * `LOWERINGS`: op -> function building the kernel-IR expression of a node at an index from its
    inputs' expressions (Inductor's register_lowering).  A new kernel-IR op is one decorator here.
  * `build_kernel(plan, group, ...)`: the Kernel a group runs (loads of its buffers, every
    inlined node at every index it is requested at, its stores).
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Callable, Protocol

from ember.ir import dtypes as dt
from ember.ir.symbolic import SymInt
from ember.ir.sizes import as_size
from ember.ir import index as ix
from ember.ir.graph import Node
from ember.ir import rng
from ember.ir.kernel import (BINARY_OPS, REDUCE_OPS, UNARY_OPS, Binary, Buf, Cast, Const, Expr, IConst, IGather,
                             IndexValue, Kernel, Load, Random, Reduce, Store, Unary, Var, Where)

from .classify import NodeClass, reduce_dims

if TYPE_CHECKING:
    from .decide import Fuser, Group

__all__ = ["IndexMaps", "Lowering", "LOWERINGS", "lowering", "lower", "group_requests", "build_kernel"]


# ====================================================================== index maps of ops
class IndexMaps:
    """Where each op reads its inputs.  cls: the NodeClass of every node; is_output: graph outputs
    (never looked through: their buffer is what consumers read)."""

    # gathers read an integer index buffer and a source buffer; both may be free views of one
    INDEX_VIEWS = ("reshape", "permute", "expand", "slice", "flip")

    def __init__(self, cls: dict, is_output: set):
        self.cls = cls
        self.is_output = is_output

    def input_requests(self, n: Node, idx, ranges: dict, is_leaf=None) -> list:
        """[(input node, index)] that computing n at idx reads (pad / cat inputs that are buffer
        leaves are loaded directly with a fill, so they are not requested: is_leaf says which)."""
        op = n.op
        k = self.cls[n]
        ins = n.inputs
        S = lambda e: ix.simplify_all(e, ranges)  # noqa: E731
        if k is NodeClass.POINTWISE:
            return [(i, S(ix.map_broadcast(i.shape, n.shape, idx))) for i in ins]
        if k is NodeClass.REDUCE:
            return [(ins[0], S(self.reduce_input_index(n, idx)))]
        if k is NodeClass.GATHER or k is NodeClass.CONST:
            return []
        if k is NodeClass.RANDOM:               # the key (seed, offset): two scalars
            return [(ins[0], KEY_SEED), (ins[0], KEY_OFFSET)]
        x = ins[0] if ins else None
        a = n.attrs
        if op == "reshape":
            return [(x, S(ix.map_reshape(x.shape, n.shape, idx)))]
        if op == "expand":
            return [(x, S(ix.map_broadcast(x.shape, n.shape, idx)))]
        if op == "permute":
            return [(x, S(ix.map_permute(a["dims"], idx)))]
        if op == "slice":
            return [(x, S(ix.map_slice(a["starts"], a["steps"], idx)))]
        if op == "flip":
            return [(x, S(ix.map_flip(x.shape, a["dims"], idx)))]
        if op == "windows":
            return [(x, S(ix.map_windows(x.shape, a["kernel"], a["stride"], a["dilation"], idx)))]
        if op == "pad":
            if is_leaf is not None and is_leaf(x):
                return []
            raw = S(ix.map_pad(a["pads"], idx))
            return [(x, S([e if not may_leave(e, m, ranges) else e % m for e, m in zip(raw, x.shape)]))]
        if op == "cat":
            d = a["dim"] % len(n.shape)
            res, off = [], 0
            for i in ins:
                m = i.shape[d]
                if not (is_leaf is not None and is_leaf(i)) and m > 0:
                    e = ix.simplify(ix.as_index(idx[d]) - off, ranges)
                    if may_leave(e, m, ranges):
                        e = e % m
                    j = list(idx)
                    j[d] = e
                    res.append((i, S(j)))
                off += m
            return res
        raise AssertionError(f"no index map for {op}")

    def reduce_input_index(self, n: Node, idx) -> list:
        """The input index of reduction n at output index idx: reduced dims run over r0, r1, ..."""
        x = n.inputs[0]
        dims = reduce_dims(n)
        keep = n.attrs["keepdim"]
        res, j, r = [], 0, 0
        for d in range(len(x.shape)):
            if d in dims:
                res.append(Var("r", r))
                r += 1
                if keep:
                    j += 1
            else:
                res.append(ix.as_index(idx[j]))
                j += 1
        return res

    def gather_bases(self, n: Node) -> list:
        """The buffers a gather loads: its source and its index tensor, each past free views."""
        x, i = n.inputs
        return [self.source_view(x, None)[0], self.index_view(i, None, None)[0]]

    def index_view(self, i: Node, idx, ranges):
        """(base node, index into it) for reading i at idx through movement ops (values only:
        no bounds semantics attach to how the index tensor is laid out)."""
        while i.op in self.INDEX_VIEWS and self.cls[i] is NodeClass.MOVEMENT and i not in self.is_output:
            if idx is not None:
                (_, idx), = self.input_requests(i, idx, ranges)
            i = i.inputs[0]
        return i, idx

    def source_view(self, x: Node, idx):
        """Permutes between a gather and its source buffer are index swaps (the gathered dim
        keeps its size, so the bounds check stays exact)."""
        while x.op == "permute" and x not in self.is_output:
            if idx is not None:
                idx = ix.map_permute(x.attrs["dims"], idx)
            x = x.inputs[0]
        return x, idx


KEY_SEED, KEY_OFFSET = (IConst(0),), (IConst(1),)    # where a random node reads its key


def may_leave(e, m: int, ranges: dict) -> bool:
    """Index e may fall outside [0, m) somewhere in the domain."""
    lo, hi = ix.index_range(e, ranges)
    return not (lo >= 0 and hi < m)


# ============================================================================ lowerings
class Lowering(Protocol):
    """What a lowering function sees of the kernel being built: the domain's variable ranges, the
    index maps, expressions of nodes already lowered (`at`), and the kernel's input buffers."""

    ranges: dict
    maps: IndexMaps

    def at(self, n: Node, idx) -> Expr:
        """The expression of n at idx (n was lowered before: inputs come first in graph order)."""

    def buf(self, n: Node) -> Buf:
        """The kernel input holding n's buffer."""

    def load(self, n: Node, idx, fill=None, masked=None) -> Load:
        """Load(buf(n), idx, ...)."""

    def is_leaf(self, n: Node) -> bool:
        """n is read from a buffer in this kernel, not computed in it."""


LowerFn = Callable[[Node, tuple, Lowering], Expr]
LOWERINGS: dict[str, LowerFn] = {}


def lowering(*ops: str):
    """Register fn(node, idx, ctx) -> Expr as the lowering of ops."""
    def deco(fn: LowerFn) -> LowerFn:
        LOWERINGS.update(dict.fromkeys(ops, fn))
        return fn
    return deco


def lower(n: Node, idx, ctx: Lowering) -> Expr:
    """The expression of n at idx in the kernel being built: a load when n is a buffer there."""
    if ctx.is_leaf(n):
        return ctx.load(n, idx)
    return LOWERINGS[n.op](n, idx, ctx)


def _args(n: Node, idx, ctx: Lowering) -> list:
    """The inputs of an elementwise node at idx (numpy broadcasting)."""
    return [ctx.at(i, ix.simplify_all(ix.map_broadcast(i.shape, n.shape, idx), ctx.ranges)) for i in n.inputs]


@lowering("full")
def _full(n, idx, ctx):
    v = n.attrs["value"]
    if isinstance(v, SymInt):       # a size that varies between calls, read at run time
        return Cast(IndexValue(IConst(v), dt.int64), n.dtype)
    return Const(v, n.dtype)


@lowering("arange")
def _arange(n, idx, ctx):
    a = n.attrs
    i = ix.as_index(idx[0]) if idx else IConst(0)
    start, step = a["start"], a["step"]
    if not n.dtype.is_floating_point and all(isinstance(v, SymInt) or float(v).is_integer() for v in (start, step)):
        v = IndexValue(i * as_size(step) + as_size(start), dt.int64)
        return v if n.dtype is dt.int64 else Cast(v, n.dtype)
    v = Binary("add", Binary("mul", IndexValue(i, dt.float64), Const(float(step), dt.float64)),
               Const(float(start), dt.float64))
    return v if n.dtype is dt.float64 else Cast(v, n.dtype)


@lowering("stop_gradient")
def _identity(n, idx, ctx):
    return _args(n, idx, ctx)[0]


@lowering("cast")
def _cast(n, idx, ctx):
    x, = _args(n, idx, ctx)
    return x if x.dtype is n.dtype else Cast(x, n.dtype)


@lowering("where")
def _where(n, idx, ctx):
    return Where(*_args(n, idx, ctx))


@lowering(*UNARY_OPS)
def _unary(n, idx, ctx):
    x, = _args(n, idx, ctx)
    if not x.dtype.is_floating_point and n.op in ("floor", "ceil", "round", "trunc"):
        return x                                # integers are already whole
    if x.dtype is dt.bool_ and n.op in ("sign", "abs"):
        return x
    return Unary(n.op, x)


_BOOL_ARITH = {"add": "logical_or", "mul": "logical_and"}   # torch: True + True is True


@lowering(*BINARY_OPS)
def _binary(n, idx, ctx):
    a, b = _args(n, idx, ctx)
    op = _BOOL_ARITH.get(n.op, n.op) if a.dtype is dt.bool_ else n.op
    return Binary(op, a, b)


@lowering(*REDUCE_OPS)
def _reduce(n, idx, ctx):
    x = n.inputs[0]
    v = ctx.at(x, ix.simplify_all(ctx.maps.reduce_input_index(n, idx), ctx.ranges))
    if n.op == "sum" and x.dtype is dt.float16:
        return Cast(Reduce("sum", Cast(v, dt.float32)), dt.float16)   # accumulate in float32
    return Reduce(n.op, v)


@lowering("take", "gather")
def _gather(n, idx, ctx):
    x, i = n.inputs
    d = n.attrs["dim"] % len(x.shape)
    if n.op == "take":                          # the index's dims replace dim d of x
        m = len(i.shape)
        ib, iidx = ctx.maps.index_view(i, list(idx[d:d + m]), ctx.ranges)
    else:                                       # gather: the index has x's rank
        m = 1
        ib, iidx = ctx.maps.index_view(i, list(idx), ctx.ranges)
    full = list(idx[:d]) + [IGather(ctx.buf(ib), iidx)] + list(idx[d + m:])
    xb, xidx = ctx.maps.source_view(x, full)
    return ctx.load(xb, xidx)


@lowering("pad")
def _pad(n, idx, ctx):
    x = n.inputs[0]
    pads, value = n.attrs["pads"], n.attrs["value"]
    raw = ix.simplify_all(ix.map_pad(pads, idx), ctx.ranges)
    masked = [d for d, (e, m) in enumerate(zip(raw, x.shape)) if may_leave(e, m, ctx.ranges)]
    if ctx.is_leaf(x):                          # a buffer: a masked load reads the fill
        return ctx.load(x, raw, fill=value, masked=masked) if masked else ctx.load(x, raw)
    inner = [e % m if d in masked else e for d, (e, m) in enumerate(zip(raw, x.shape))]
    v = ctx.at(x, ix.simplify_all(inner, ctx.ranges))
    if not masked:
        return v
    cond = None
    for d in masked:
        c = _in_bounds(raw[d], x.shape[d])
        cond = c if cond is None else Binary("logical_and", cond, c)
    return Where(cond, v, Const(value, n.dtype))


def _in_bounds(e, size: int) -> Expr:
    v = IndexValue(e, dt.int64)
    return Binary("logical_and", Binary("ge", v, Const(0, dt.int64)), Binary("lt", v, Const(size, dt.int64)))


@lowering("cat")
def _cat(n, idx, ctx):
    d = n.attrs["dim"] % len(n.shape)
    ranges = ctx.ranges
    parts, off = [], 0
    for x in n.inputs:
        m = x.shape[d]
        if m == 0:
            continue
        e = ix.simplify(ix.as_index(idx[d]) - off, ranges)
        j = list(idx)
        if ctx.is_leaf(x):
            j[d] = e
            lo, hi = ix.index_range(e, ranges)
            v = ctx.load(x, j) if lo >= 0 and hi < m else ctx.load(x, j, fill=0, masked=[d])
        else:
            j[d] = e % m if may_leave(e, m, ranges) else e
            v = ctx.at(x, ix.simplify_all(j, ranges))
        parts.append((off, m, v))
        off += m
    # the parts this kernel's index can reach, chosen by comparing the index with their ends
    lo_i, hi_i = ix.index_range(ix.as_index(idx[d]), ranges)
    live = [p for p in parts if p[0] <= hi_i and p[0] + p[1] > lo_i]
    v = live[-1][2]
    for off, m, pv in reversed(live[:-1]):
        end = IndexValue(IConst(off + m), dt.int64) if isinstance(off + m, SymInt) else Const(off + m, dt.int64)
        v = Where(Binary("lt", IndexValue(idx[d], dt.int64), end), pv, v)
    return v


@lowering("random")
def _random(n, idx, ctx):
    """Element idx of a draw is the word of counter offset + (idx's row-major position): eager's
    numbering (ember/ir/rng.py), whatever the kernel's domain."""
    key = n.inputs[0]
    flat = ix.simplify(ix.flat_index(n.shape, idx), ctx.ranges)
    counter = Binary("add", ctx.at(key, KEY_OFFSET), IndexValue(flat, dt.int64))
    vd = dt.by_name(rng.value_dtype(n.attrs["dist"], n.dtype.np).name)
    if n.dtype is dt.bfloat16 and n.attrs["dist"] == "uniform":
        # eager's bfloat16 uniform is the word's top 8 bits (k / 256): the float32 draw's top 24 bits
        # floored to a multiple of 1/256, exact in float32 and bfloat16 (a rounding cast could give 1.0)
        v = Random("uniform", ctx.at(key, KEY_SEED), counter, dt.float32)
        v = Binary("mul", Unary("floor", Binary("mul", v, Const(256.0, dt.float32))), Const(1 / 256, dt.float32))
        return Cast(v, dt.bfloat16)
    v = Random(n.attrs["dist"], ctx.at(key, KEY_SEED), counter, vd)
    return v if vd is n.dtype else Cast(v, n.dtype)


@lowering("reshape", "permute", "expand", "slice", "flip", "windows")
def _view(n, idx, ctx):
    return ctx.at(*ctx.maps.input_requests(n, idx, ctx.ranges)[0])


# ======================================================================= group -> Kernel
def is_leaf(plan: Fuser, n: Node, grp: Group) -> bool:
    """n is read from a buffer in grp (not computed there)."""
    cls = plan.cls[n]
    if cls is NodeClass.CONST:
        return False
    if cls is NodeClass.PLACEHOLDER or n in plan.views:
        return True
    return n in plan.home and plan.home[n] is not grp and n not in grp.stores


def group_requests(plan: Fuser, grp: Group) -> tuple[dict, list]:
    """({node: {index key: index}} of every node grp computes or loads, [buffer nodes it loads]).
    Walks from the stores towards the inputs, in reverse graph order."""
    ranges = grp.ranges
    req: dict = defaultdict(dict)
    for n, idx in grp.stores.items():
        req[n][ix.key_of(idx)] = tuple(idx)
    leaves = {}
    leaf = lambda v: is_leaf(plan, v, grp)  # noqa: E731
    for n in reversed(plan.order):
        if n not in req:
            continue
        if leaf(n):
            leaves[n] = True
            continue
        if plan.cls[n] is NodeClass.GATHER:
            for x in plan.maps.gather_bases(n):
                leaves[x] = True
            continue
        if n.op in ("pad", "cat"):
            for x in n.inputs:
                if leaf(x):
                    leaves[x] = True
        for idx in list(req[n].values()):
            for x, xi in plan.maps.input_requests(n, idx, ranges, leaf):
                req[x][ix.key_of(xi)] = xi
    return req, list(leaves)


class _KernelBuilder:
    """The Lowering context of one group: buffers become kernel inputs on first load."""

    def __init__(self, plan: Fuser, grp: Group, names: dict):
        self.plan, self.grp, self.names = plan, grp, names
        self.ranges = grp.ranges
        self.maps = plan.maps
        self.bufs: dict = {}          # node -> Buf, in first-load order (the kernel's inputs)
        self.exprs: dict = {}         # (node, index key) -> Expr

    def buf(self, n: Node, b: Buf | None = None) -> Buf:
        if n not in self.bufs:
            self.bufs[n] = b if b is not None else Buf(self.names[n], n.shape, n.dtype)
        return self.bufs[n]

    def load(self, n, idx, fill=None, masked=None):
        return Load(self.buf(n), idx, fill=fill, masked=masked)

    def at(self, n, idx):
        return self.exprs[(n, ix.key_of(idx))]

    def is_leaf(self, n):
        return is_leaf(self.plan, n, self.grp)


def build_kernel(plan: Fuser, grp: Group, kid: int, names: dict, first_input: Node | None = None,
                 first_buf: Buf | None = None) -> tuple[Kernel, list, list]:
    """(Kernel, argument value names, graph nodes computed) for group grp.  An epilogue passes the
    extern's result as first_input (and the extern's own output Buf object as first_buf)."""
    req, _ = group_requests(plan, grp)
    kb = _KernelBuilder(plan, grp, names)
    if first_input is not None:
        kb.buf(first_input, first_buf)
    for n in plan.order:                        # inputs before users
        if n not in req:
            continue
        for key, idx in req[n].items():
            kb.exprs[(n, key)] = lower(n, idx, kb)
    outs, stores = [], []
    for n, idx in grp.stores.items():
        b = Buf(names[n], n.shape, n.dtype)
        outs.append(b)
        stores.append(Store(b, idx, kb.exprs[(n, ix.key_of(idx))]))
    computed = [n for n in plan.order if n in req and not kb.is_leaf(n) and plan.cls[n] is not NodeClass.CONST]
    kernel = Kernel(list(kb.bufs.values()), outs, grp.outer, grp.inner, stores, id=kid)
    return kernel, [names[n] for n in kb.bufs] + [names[n] for n in grp.stores], computed
