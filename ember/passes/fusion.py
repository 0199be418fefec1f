"""Fusion: an optimised Graph -> a Program of kernel-IR kernels, extern calls and eager fallbacks.

In: a Graph after the cleanup passes (ember/passes/manager.py).  Out: a `Program`
(ember/passes/program.py): steps in execution order, each a `Kernel` (a fused loop nest), an
`ExternKernel` (matmul through BLAS, with a fused epilogue kernel) or an `EagerStep` (an op the
kernel IR cannot express, run by its eager kernel), plus FusionRecords saying what was fused,
what was not and why.

    program = fuse(graph)            # usually through ember.passes.compile_graph

How groups form
---------------
Every node is either REALIZED (its value lives in a buffer: graph inputs, graph outputs, matmul
results, extern / eager operands, values several kernels need) or INLINED (recomputed inside each
kernel that reads it).  A kernel ("group") has a domain outer + inner and a list of realized nodes
it stores; everything it computes is the composition of the stored nodes' producers, evaluated at
the index each one is requested at.  Movement ops (reshape, permute, expand, slice, flip, pad,
windows, cat) are never copies: they map a request index to an input index
(ember/passes/fusion_index.py), so a fused kernel loads through the composed index map.

Nodes are decided in reverse topological order, so when a node is decided every group that needs
it is known, with the index it is needed at:
  * a pointwise / movement / constant node needed by one kernel is inlined there; needed by
    several, it is recomputed in each while that stays cheap (RECOMPUTE_BUDGET), else realized;
  * a reduction is inlined when exactly one kernel needs it, once per outer point, over the
    kernel's inner axes (a kernel without inner axes takes the reduction's axes: the axes of its
    elementwise domain that the reduction's result is broadcast over become inner axes -- this is
    how softmax / layer_norm / their backward become one kernel with several reduction passes);
    otherwise it is realized ("not fused: would recompute a reduction", "different reduction
    domain");
  * a realized node is stored by one of the kernels that need it when its index there is a plain
    one-to-one map of the kernel's loop variables and doing so creates no cycle between groups
    (checked with networkx reachability on the group graph), else it gets a kernel of its own;
  * matmul is an extern; its operands may be free views of a buffer (a reshape of a contiguous
    array, a transpose of the last two dims -> transpose_a/_b, broadcast batch dims);
  * ops the kernel IR cannot express (cumsum, sort, scatter, index_add, fold, random, bool sums)
    are eager steps, recorded as fallbacks with the reason.
Then kernels over the same domain that read a common buffer and do not depend on each other merge
(horizontal fusion), and a kernel that is the only consumer of a matmul result becomes that
extern's epilogue (bias, activation, softmax ...).
"""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx

from ember.ir import dtypes as dt
from ember.ir.graph import Graph, Node
from ember.ir.kernel import (Binary, Buf, Cast, Const, ExternKernel, IConst, IGather, IndexValue, Kernel,
                             Load, Reduce, Store, Unary, Var, Where, UNARY_OPS, BINARY_OPS)
from ember.ir.ops import OPS

from . import fusion_index as fi
from .program import EagerStep, ExternStep, FusionRecord, KernelStep, Program, Value

__all__ = ["fuse", "classify", "FusionOptions", "RECOMPUTE_BUDGET"]

# A pointwise value needed by k kernels is recomputed in each when (k - 1) * cost <= this, where
# cost is the weighted size of its inlinable producer cone (transcendentals weigh 4).
RECOMPUTE_BUDGET = 24
MAX_FANOUT = 4            # ... and never in more than this many kernels
MAX_HORIZONTAL_STORES = 8  # horizontal fusion stops growing a kernel past this many outputs

_POINTWISE_KINDS = ("unary", "binary", "ternary", "cast")
_VIEW_OPS = ("reshape", "permute", "expand", "slice", "flip", "pad", "windows", "cat")
_EXPENSIVE = {"exp", "log", "tanh", "erf", "sigmoid", "pow", "sin", "cos", "log1p", "expm1", "sqrt",
              "rsqrt", "div"}


class FusionOptions:
    """horizontal / epilogues: enable those merges.  alias_outputs: positions of graph outputs the
    caller does not hand to the user (values saved for backward): such an output that is a reshape
    of a graph input is returned as a view of the input array instead of a fresh copy."""

    def __init__(self, horizontal: bool = True, epilogues: bool = True,
                 recompute_budget: int = RECOMPUTE_BUDGET, alias_outputs=()):
        self.horizontal = horizontal
        self.epilogues = epilogues
        self.recompute_budget = recompute_budget
        self.alias_outputs = set(alias_outputs)


class _Unsupported(Exception):
    pass


# ===================================================================== op classification
def classify(n: Node) -> tuple[str, str]:
    """(kind, reason): kind in placeholder, const, pointwise, movement, reduce, gather, extern, eager;
    reason says why an op is eager."""
    if n.is_placeholder:
        return "placeholder", ""
    op = n.op
    d = OPS.get(op)
    if op in ("full", "arange"):
        return "const", ""
    if op == "stop_gradient":
        return "pointwise", ""
    if d is None:
        return "eager", f"unknown op {op}"
    if d.kind in _POINTWISE_KINDS:
        try:
            _check_pointwise(n)
        except _Unsupported as e:
            return "eager", str(e)
        return "pointwise", ""
    if op in _VIEW_OPS:
        return "movement", ""
    if d.kind == "reduce":
        x = n.inputs[0]
        dims = n.attrs["dims"]
        if dims is not None and len(tuple(dims)) == 0:
            return "eager", f"{op} over an empty dim list"
        if op in ("sum", "prod") and x.dtype is dt.bool_:
            return "eager", f"{op} of bool values (kernel IR reductions need a numeric dtype)"
        if op in ("argmax", "argmin") and dims is not None and len(tuple(dims)) != 1:
            return "eager", f"{op} over several dims"
        return "reduce", ""
    if op in ("take", "gather"):
        return "gather", ""
    if op == "matmul":
        return "extern", ""
    if op == "random":
        return "eager", "random numbers: the kernel IR has no counter-based RNG op"
    reasons = {"cumsum": "scan (cumsum): the kernel IR has no scan loops",
               "argsort": "sorting (argsort) is not expressible in the kernel IR",
               "topk": "sorting (topk) is not expressible in the kernel IR",
               "scatter": "scatter writes through an index (the kernel IR stores by loop index only)",
               "scatter_add": "scatter_add accumulates through an index (no atomic stores in the kernel IR)",
               "index_add": "index_add accumulates through an index (no atomic stores in the kernel IR)",
               "fold": "fold (the adjoint of windows) sums overlapping windows: not a gather"}
    return "eager", reasons.get(op, f"{op} has no kernel IR lowering")


def _check_pointwise(n: Node) -> None:
    op = n.op
    if op in ("where", "cast"):
        return
    x = n.inputs[0]
    if OPS[op].kind == "unary":
        if op not in UNARY_OPS:
            raise _Unsupported(f"{op} has no kernel IR op")
        if x.dtype is dt.bool_ and op in ("neg",):
            raise _Unsupported("neg of bool (an error in eager mode)")
        if x.dtype.category != 2 and op in ("floor", "ceil", "round", "trunc", "sign", "abs"):
            return
        return
    if op not in BINARY_OPS:
        raise _Unsupported(f"{op} has no kernel IR op")
    if x.dtype is dt.bool_ and op in ("sub", "div", "pow", "remainder", "floor_divide"):
        raise _Unsupported(f"{op} of bool values")


def _pointwise_expr(n: Node, args: list):
    op = n.op
    if op == "stop_gradient":
        return args[0]
    if op == "cast":
        return args[0] if args[0].dtype is n.dtype else Cast(args[0], n.dtype)
    if op == "where":
        return Where(*args)
    if OPS[op].kind == "unary":
        x = args[0]
        if x.dtype.category != 2 and op in ("floor", "ceil", "round", "trunc"):
            return x
        if x.dtype is dt.bool_ and op in ("sign", "abs"):
            return x
        return Unary(op, x)
    a, b = args
    if a.dtype is dt.bool_:
        if op == "add":
            op = "logical_or"
        elif op == "mul":
            op = "logical_and"
    return Binary(op, a, b)


def _const_expr(n: Node, idx):
    if n.op == "full":
        return Const(n.attrs["value"], n.dtype)
    a = n.attrs
    i = fi.as_index(idx[0]) if idx else IConst(0)
    start, step = a["start"], a["step"]
    if n.dtype.category != 2 and float(start).is_integer() and float(step).is_integer():
        v = IndexValue(i * int(step) + int(start), dt.int64)
        return v if n.dtype is dt.int64 else Cast(v, n.dtype)
    v = Binary("add", Binary("mul", IndexValue(i, dt.float64), Const(float(step), dt.float64)),
               Const(float(start), dt.float64))
    return v if n.dtype is dt.float64 else Cast(v, n.dtype)


def _reduce_dims(n: Node) -> tuple:
    x = n.inputs[0]
    nd = len(x.shape)
    dims = n.attrs["dims"]
    if dims is None:
        return tuple(range(nd))
    return tuple(sorted({d % max(nd, 1) for d in dims}))


def _in_bounds(e, size):
    v = IndexValue(e, dt.int64)
    return Binary("logical_and", Binary("ge", v, Const(0, dt.int64)), Binary("lt", v, Const(size, dt.int64)))


# ============================================================================== groups
class _Group:
    def __init__(self, gid: int, kind: str, outer=(1,), inner=(), node=None):
        self.id = gid
        self.kind = kind              # kernel | extern | eager
        self.outer = tuple(outer)
        self.inner = tuple(inner)
        self.node = node              # extern / eager node
        self.stores: dict = {}        # Node -> index tuple (realized nodes this kernel writes)
        self.requested: set = set()   # nodes with requests in this group (decision phase)
        self.operands = []            # extern: [(base node, view shape, transpose)]
        self.epilogue = None          # extern: the kernel group fused as epilogue
        self.epilogue_of = None       # kernel: the extern group it is the epilogue of
        self.merged_from = []

    @property
    def ranges(self) -> dict:
        return fi.domain_ranges(self.outer, self.inner)

    def __repr__(self) -> str:
        return f"<group {self.id} {self.kind} outer={list(self.outer)} inner={list(self.inner)}>"


def _outer_vars(g: _Group) -> dict:
    return {f"o{k}": n for k, n in enumerate(g.outer) if n != 1}


def _inner_vars(g: _Group) -> dict:
    return {f"r{k}": n for k, n in enumerate(g.inner) if n != 1}


def _one_to_one(shape, idx, g: _Group, allow_inner: bool) -> bool:
    """idx writes each element of `shape` exactly once as the kernel's loop variables run:
    every element is a bare variable with the dim's extent or 0 on a size-1 dim, and the
    variables used are all outer ones (and, when allowed, all inner ones)."""
    if len(idx) != len(shape):
        return False
    used = {}
    for e, n in zip(idx, shape):
        if isinstance(e, IConst):
            if e.value != 0 or n != 1:
                return False
        elif isinstance(e, Var):
            if e.name in used:
                return False
            used[e.name] = n
        else:
            return False
    ranges = g.ranges
    for name, n in used.items():
        lo, hi = ranges.get(name, (0, -1))
        if hi - lo + 1 != n:
            return False
    outer, inner = _outer_vars(g), _inner_vars(g)
    names = set(used)
    if names == set(outer):
        return True
    return allow_inner and names == set(outer) | set(inner)


# ============================================================================== fuser
class _Fuser:
    def __init__(self, graph: Graph, options: FusionOptions):
        self.g = graph
        self.opt = options
        self.order = graph.nodes()
        self.pos = {n: i for i, n in enumerate(self.order)}
        self.kind = {}
        self.reason = {}
        for n in self.order:
            self.kind[n], self.reason[n] = classify(n)
        self.outputs = list(graph.outputs) + [v for _, v in graph.mutations]
        self.is_output = set(self.outputs)
        self.groups: list[_Group] = []
        self.dag = nx.DiGraph()
        self.home: dict = {}                        # realized node -> producing group (None: input)
        self.req: dict = defaultdict(dict)          # node -> {group: {key: idx}}
        self.buf_need: dict = defaultdict(dict)     # node -> {group: True}: groups loading it as a buffer
        self.inlined: dict = defaultdict(list)      # node -> groups computing it inline
        self.records: list[FusionRecord] = []
        self.cost = self._cone_costs()
        self.views: dict = {}                       # output node -> graph input it is a reshape of
        aliasable = set()
        for i, o in enumerate(graph.outputs):
            if i in options.alias_outputs:
                aliasable.add(o)
        for i, o in enumerate(graph.outputs):
            if i not in options.alias_outputs:
                aliasable.discard(o)
        aliasable -= {v for _, v in graph.mutations}
        self.must: set = set()                      # realized because a view output needs them
        for o in sorted(aliasable, key=lambda n: n.id):
            b = o
            while b.op == "reshape":
                b = b.inputs[0]
            if b is not o and self.kind[b] not in ("const",):
                self.views[o] = b
                if not b.is_placeholder:
                    self.must.add(b)

    # ------------------------------------------------------------------------ bookkeeping
    def _new_group(self, kind, outer=(1,), inner=(), node=None) -> _Group:
        grp = _Group(len(self.groups), kind, outer, inner, node)
        self.groups.append(grp)
        self.dag.add_node(grp)
        return grp

    def _record(self, kind, message, nodes=()):
        nodes = list(nodes)
        src = next((n.meta.get("source", "") for n in nodes if n.meta.get("source")), "")
        self.records.append(FusionRecord(kind, message, [n.name for n in nodes], src))

    def _cone_costs(self) -> dict:
        cost = {}
        for n in self.order:
            k = self.kind[n]
            if k in ("pointwise", "movement", "gather"):
                own = 4 if n.op in _EXPENSIVE else (0 if k == "movement" else 1)
                cost[n] = min(100, own + sum(cost.get(i, 0) for i in n.inputs))
            else:
                cost[n] = 0
        return cost

    def _add_request(self, n: Node, grp: _Group, idx) -> None:
        idx = tuple(idx)
        self.req[n].setdefault(grp, {})[fi.key_of(idx)] = idx
        grp.requested.add(n)

    def _consumers(self, n: Node) -> list:
        cons = list(self.req.get(n, {}).keys())
        for grp in self.buf_need.get(n, {}):
            if grp not in cons:
                cons.append(grp)
        return cons

    # ---------------------------------------------------------------------- index maps
    def input_requests(self, n: Node, idx, ranges: dict, is_leaf=None):
        """[(input node, index)] that computing n at idx reads (pad / cat inputs that are buffer
        leaves are loaded directly with a fill, so they are not requested: is_leaf says which)."""
        op = n.op
        k = self.kind[n]
        ins = n.inputs
        S = lambda e: fi.simplify_all(e, ranges)  # noqa: E731
        if k == "pointwise":
            return [(i, S(fi.map_broadcast(i.shape, n.shape, idx))) for i in ins]
        if k == "reduce":
            return [(ins[0], S(self._reduce_input_index(n, idx)))]
        if k == "gather" or k == "const":
            return []
        x = ins[0] if ins else None
        a = n.attrs
        if op == "reshape":
            return [(x, S(fi.map_reshape(x.shape, n.shape, idx)))]
        if op == "expand":
            return [(x, S(fi.map_broadcast(x.shape, n.shape, idx)))]
        if op == "permute":
            return [(x, S(fi.map_permute(a["dims"], idx)))]
        if op == "slice":
            return [(x, S(fi.map_slice(a["starts"], a["steps"], idx)))]
        if op == "flip":
            return [(x, S(fi.map_flip(x.shape, a["dims"], idx)))]
        if op == "windows":
            return [(x, S(fi.map_windows(x.shape, a["kernel"], a["stride"], a["dilation"], idx)))]
        if op == "pad":
            if is_leaf is not None and is_leaf(x):
                return []
            raw = S(fi.map_pad(a["pads"], idx))
            return [(x, S([e if not self._may_leave(e, m, ranges) else e % m for e, m in zip(raw, x.shape)]))]
        if op == "cat":
            d = a["dim"] % len(n.shape)
            res, off = [], 0
            for i in ins:
                m = i.shape[d]
                if not (is_leaf is not None and is_leaf(i)) and m > 0:
                    e = fi.simplify(fi.as_index(idx[d]) - off, ranges)
                    if self._may_leave(e, m, ranges):
                        e = e % m
                    j = list(idx)
                    j[d] = e
                    res.append((i, S(j)))
                off += m
            return res
        raise AssertionError(f"no index map for {op}")

    # gathers read an integer index buffer and a source buffer; both may be free views of one
    _INDEX_VIEWS = ("reshape", "permute", "expand", "slice", "flip")

    def _gather_bases(self, n: Node) -> list:
        x, ix = n.inputs
        return [self._source_view(x, None)[0], self._index_view(ix, None, None)[0]]

    def _index_view(self, ix: Node, idx, ranges):
        """(base node, index into it) for reading ix at idx through movement ops (values only:
        no bounds semantics attach to how the index tensor is laid out)."""
        while ix.op in self._INDEX_VIEWS and self.kind[ix] == "movement" and ix not in self.is_output:
            if idx is not None:
                (ix_in, idx), = self.input_requests(ix, idx, ranges)
            ix = ix.inputs[0]
        return ix, idx

    def _source_view(self, x: Node, idx):
        """Permutes between a gather and its source buffer are index swaps (the gathered dim
        keeps its size, so the bounds check stays exact)."""
        while x.op == "permute" and x not in self.is_output:
            if idx is not None:
                idx = fi.map_permute(x.attrs["dims"], idx)
            x = x.inputs[0]
        return x, idx

    @staticmethod
    def _may_leave(e, m, ranges) -> bool:
        lo, hi = fi.index_range(e, ranges)
        return not (lo >= 0 and hi < m)

    def _reduce_input_index(self, n: Node, idx) -> list:
        x = n.inputs[0]
        dims = _reduce_dims(n)
        keep = n.attrs["keepdim"]
        res, j, r = [], 0, 0
        for d in range(len(x.shape)):
            if d in dims:
                res.append(Var("r", r))
                r += 1
                if keep:
                    j += 1
            else:
                res.append(fi.as_index(idx[j]))
                j += 1
        return res

    # -------------------------------------------------------------------- decision phase
    def decide(self) -> None:
        for n in reversed(self.order):
            k = self.kind[n]
            if k == "placeholder" or n in self.views:
                self.home[n] = None
                if n in self.views:
                    self._record("fused", f"saved value {n.name} is a view of {self.views[n].name}", [n])
                continue
            if k == "extern":
                self._decide_extern(n)
            elif k == "eager":
                self._decide_eager(n)
            else:
                self._decide_kernelable(n)

    def _link(self, n: Node, producer: _Group) -> None:
        for c in self._consumers(n):
            if c is not producer:
                self.dag.add_edge(producer, c)
        # groups that read a saved view of n read n's buffer: they depend on n's producer too
        for v, base in self.views.items():
            if base is n:
                for c in self._consumers(v):
                    if c is not producer:
                        self.dag.add_edge(producer, c)

    def _decide_extern(self, n: Node) -> None:
        grp = self._new_group("extern", node=n)
        self.home[n] = grp
        self._link(n, grp)
        for i, x in enumerate(n.inputs):
            base, view_shape, transpose = self._extern_operand(x)
            grp.operands.append((base, view_shape, transpose))
            self.buf_need[base][grp] = True
            if base is not x:
                self._record("fused", f"matmul operand {i} read as a free view of {base.name}"
                             + (" (transposed)" if transpose else ""), [x, n])

    def _extern_operand(self, x: Node):
        """(base node, shape the extern sees it as, transpose flag): the movement ops between x and
        a buffer that cost nothing for numpy/BLAS matmul."""
        n = x
        if (n.op == "expand" and len(n.shape) >= 2 and len(n.inputs[0].shape) >= 2
                and n.inputs[0].shape[-2:] == n.shape[-2:]):
            n = n.inputs[0]                  # broadcast batch dims: matmul broadcasts them itself
        transpose = False
        nd = len(n.shape)
        if n.op == "permute" and tuple(n.attrs["dims"]) == tuple(range(nd - 2)) + (nd - 1, nd - 2):
            transpose = True
            n = n.inputs[0]
        view = n
        while n.op == "reshape":
            n = n.inputs[0]                  # a reshape of a contiguous buffer is free
        if n is not view and self.kind[n] in ("const",):
            n = view
        return n, tuple(view.shape), transpose

    def _decide_eager(self, n: Node) -> None:
        grp = self._new_group("eager", node=n)
        self.home[n] = grp
        self._link(n, grp)
        for x in n.inputs:
            self.buf_need[x][grp] = True
        self._record("fallback", f"{n.op} runs eagerly: {self.reason[n]}", [n])

    def _decide_kernelable(self, n: Node) -> None:
        k = self.kind[n]
        reqs = self.req.get(n, {})
        needs_buf = self.buf_need.get(n, {})
        must = n in self.is_output or n in self.must or bool(needs_buf)
        if not must:
            if k in ("const", "movement", "gather"):
                return self._inline(n, list(reqs))
            if k == "pointwise":
                fan = len(reqs)
                if fan <= 1 or (fan <= MAX_FANOUT and (fan - 1) * self.cost[n] <= self.opt.recompute_budget):
                    if fan > 1:
                        self._record("fused", f"recomputed in {fan} kernels (cost {self.cost[n]})", [n])
                    return self._inline(n, list(reqs))
                self._record("not_fused", f"realized: needed by {fan} kernels, recomputing costs "
                             f"{self.cost[n]} ops each", [n])
            elif k == "reduce":
                if len(reqs) == 1:
                    grp = next(iter(reqs))
                    why = self._reduce_fit_reason(n, grp)
                    if why is None:
                        self._apply_fit(n, grp)
                        return self._inline(n, [grp])
                    self._record("not_fused", f"not fused: {why}", [n])
                else:
                    self._record("not_fused", f"not fused: would recompute a reduction in {len(reqs)} kernels", [n])
        self._realize(n)

    def _inline(self, n: Node, groups: list) -> None:
        for grp in groups:
            self.inlined[n].append(grp)
            self._compute_in(n, grp)

    def _compute_in(self, n: Node, grp: _Group) -> None:
        """Propagate n's requests in grp to its inputs."""
        ranges = grp.ranges
        idxs = list(self.req.get(n, {}).get(grp, {}).values())
        if n in grp.stores:
            idxs.append(grp.stores[n])
        seen = set()
        for idx in idxs:
            key = fi.key_of(idx)
            if key in seen:
                continue
            seen.add(key)
            if self.kind[n] == "gather":
                for x in self._gather_bases(n):
                    self.buf_need[x][grp] = True
                continue
            for x, xi in self.input_requests(n, idx, ranges):
                self._add_request(x, grp, xi)

    def _realize(self, n: Node) -> None:
        reqs = self.req.get(n, {})
        needs_buf = self.buf_need.get(n, {})
        placed = None
        cands = sorted((grp for grp in reqs if grp.kind == "kernel" and grp not in needs_buf),
                       key=lambda grp: (-len(reqs[grp]), grp.id))
        if self.kind[n] == "const":
            cands = []
        for grp in cands:
            if self._try_store(n, grp):
                placed = grp
                break
        if placed is None and self.kind[n] == "const":
            # a constant handed out as a buffer: np.full / np.arange, no kernel needed
            grp = self._new_group("eager", node=n)
            self.reason[n] = "constant output (filled by numpy)"
            self.home[n] = grp
            self._link(n, grp)
            return
        if placed is None:
            placed = self._group_for(n)
            if cands:
                self._record("not_fused", f"{n.op} gets its own kernel: no consumer kernel can store it "
                             "(index is not one-to-one, domain differs, or a cycle)", [n])
        self.home[n] = placed
        self._link(n, placed)
        self._compute_in(n, placed)

    def _group_for(self, n: Node) -> _Group:
        if self.kind[n] == "reduce":
            x = n.inputs[0]
            dims = _reduce_dims(n)
            outer = tuple(x.shape[d] for d in range(len(x.shape)) if d not in dims and x.shape[d] != 1)
            inner = tuple(x.shape[d] for d in dims)
            grp = self._new_group("kernel", outer or (1,), inner)
            idx, k = [], 0
            for d in range(len(x.shape)):
                if d in dims:
                    if n.attrs["keepdim"]:
                        idx.append(IConst(0))
                elif x.shape[d] != 1:
                    idx.append(Var("o", k))
                    k += 1
                else:
                    idx.append(IConst(0))
        else:
            outer = tuple(s for s in n.shape if s != 1)
            grp = self._new_group("kernel", outer or (1,))
            idx, k = [], 0
            for s in n.shape:
                if s != 1:
                    idx.append(Var("o", k))
                    k += 1
                else:
                    idx.append(IConst(0))
        grp.stores[n] = tuple(idx)
        return grp

    def _acyclic(self, n: Node, grp: _Group) -> bool:
        for c in self._consumers(n):
            if c is not grp and nx.has_path(self.dag, c, grp):
                return False
        return True

    def _try_store(self, n: Node, grp: _Group) -> bool:
        reqs = self.req[n].get(grp, {})
        if self.kind[n] == "reduce":
            if self._reduce_fit_reason(n, grp) is not None or not self._acyclic(n, grp):
                return False
            self._apply_fit(n, grp)
            grp.stores[n] = next(iter(self.req[n][grp].values()))
            return True
        for idx in reqs.values():
            if _one_to_one(n.shape, idx, grp, allow_inner=True):
                if not self._acyclic(n, grp):
                    return False
                grp.stores[n] = idx
                return True
        # read broadcast over some axes of grp: those axes become inner ones, n an outer store
        if len(reqs) == 1 and self._plan_fit(n, grp, broadcast=True) is not None and self._acyclic(n, grp):
            self._apply_fit(n, grp, broadcast=True)
            grp.stores[n] = next(iter(self.req[n][grp].values()))
            return True
        return False

    # ------------------------------------------------------------- reductions in a group
    def _reduce_fit_reason(self, n: Node, grp: _Group):
        """None when n can be computed in grp once per outer point (grp may need new inner axes:
        see _plan_fit); else the reason it cannot."""
        if grp.kind != "kernel":
            return "consumer is not a kernel"
        reqs = self.req[n].get(grp, {})
        if len(reqs) != 1:
            return f"needed at {len(reqs)} different indices in one kernel"
        if self._plan_fit(n, grp) is None:
            return "different reduction domain"
        return None

    def _plan_fit(self, n: Node, grp: _Group, broadcast: bool = False):
        """How grp's domain must change so that n is computed once per outer point:
        (outer, inner, var substitution) or None.  For a reduction the inner axes must be its
        reduced axes; with broadcast=True (a realized elementwise value that grp reads broadcast)
        they are whatever outer axes n's index does not use."""
        idx = next(iter(self.req[n][grp].values()))
        if any(v.kind == "r" for e in idx for v in fi.vars_of(e)):
            return None
        used = {v.name for e in idx for v in fi.vars_of(e)}
        ovars = [(f"o{k}", s) for k, s in enumerate(grp.outer) if s != 1]
        unused = [(name, s) for name, s in ovars if name not in used]
        if broadcast:
            # keep at least one outer axis: a kernel whose outer domain is [1] runs on one thread
            if grp.inner or not unused or len(unused) == len(ovars):
                return None
            red = tuple(s for _, s in unused)
        else:
            red = tuple(n.inputs[0].shape[d] for d in _reduce_dims(n))
        if grp.inner:
            if grp.inner == red and _one_to_one(n.shape, idx, grp, allow_inner=False):
                return (grp.outer, grp.inner, {})
            return None
        red_big = [s for s in red if s != 1]
        # (a) the reduced axes are axes of the elementwise domain the result is broadcast over
        if unused and [s for _, s in unused] == red_big:
            mapping = {}
            r_of_big = [j for j, s in enumerate(red) if s != 1]
            for (name, _), j in zip(unused, r_of_big):
                mapping[name] = Var("r", j)
            new_outer = []
            for name, s in ovars:
                if name not in mapping:
                    mapping[name] = Var("o", len(new_outer))
                    new_outer.append(s)
            plan = (tuple(new_outer) or (1,), red, mapping)
            probe = _Group(-1, "kernel", plan[0], plan[1])
            new_idx = fi.simplify_all([fi.subst(e, mapping) for e in idx], probe.ranges)
            if _one_to_one(n.shape, new_idx, probe, allow_inner=False):
                return plan
        # (b) new inner axes for the reduction; the elementwise stores stay outer stores
        if not broadcast and _one_to_one(n.shape, idx, grp, allow_inner=False):
            return (grp.outer, red, {})
        return None

    def _apply_fit(self, n: Node, grp: _Group, broadcast: bool = False) -> None:
        outer, inner, mapping = self._plan_fit(n, grp, broadcast)
        if (outer, inner) == (grp.outer, grp.inner) and not mapping:
            return
        grp.outer, grp.inner = outer, inner
        if not mapping:
            return
        ranges = grp.ranges
        sub = lambda idx: fi.simplify_all([fi.subst(e, mapping) for e in idx], ranges)  # noqa: E731
        for m in list(grp.stores):
            grp.stores[m] = sub(grp.stores[m])
        for m in grp.requested:
            old = self.req[m].get(grp)
            if old:
                new = {}
                for idx in old.values():
                    s = sub(idx)
                    new[fi.key_of(s)] = s
                self.req[m][grp] = new
        self._record("fused", f"a kernel takes the axes {list(inner)} of {n.op} as its inner (reduction) axes",
                     [n])

    # ---------------------------------------------------------------- group merges
    def loads_of(self, grp: _Group) -> set:
        return set(self._build_requests(grp)[1])

    def merge_horizontal(self) -> None:
        buckets = defaultdict(list)
        for grp in self.groups:
            if grp.kind == "kernel":
                buckets[(grp.outer, grp.inner)].append(grp)
        for members in buckets.values():
            if len(members) < 2:
                continue
            loads = {grp: self.loads_of(grp) for grp in members}
            alive = list(members)
            merged = True
            while merged:
                merged = False
                for i, a in enumerate(alive):
                    for b in alive[i + 1:]:
                        if len(a.stores) + len(b.stores) > MAX_HORIZONTAL_STORES:
                            continue
                        if not (loads[a] & loads[b]):
                            continue
                        if nx.has_path(self.dag, a, b) or nx.has_path(self.dag, b, a):
                            continue
                        self._merge(a, b)
                        loads[a] |= loads[b]
                        alive.remove(b)
                        self._record("fused", f"horizontal: kernels over [{','.join(map(str, a.outer))}]"
                                     f"{'x' + str(list(a.inner)) if a.inner else ''} reading the same inputs merged",
                                     list(a.stores)[:4])
                        merged = True
                        break
                    if merged:
                        break

    def _merge(self, a: _Group, b: _Group) -> None:
        """Fold group b into a (same domain)."""
        for n, idx in b.stores.items():
            a.stores[n] = idx
            self.home[n] = a
        a.merged_from.append(b.id)
        for p in list(self.dag.predecessors(b)):
            if p is not a:
                self.dag.add_edge(p, a)
        for s in list(self.dag.successors(b)):
            if s is not a:
                self.dag.add_edge(a, s)
        self.dag.remove_node(b)
        self.groups.remove(b)

    def fuse_epilogues(self) -> None:
        for x in list(self.groups):
            # an epilogue makes the matmul result the extern's private scratch: a result the caller
            # reads (an output, or the base of a saved view output) must stay a real buffer
            if x.kind != "extern" or x.node in self.is_output or x.node in self.must:
                continue
            succ = list(self.dag.successors(x))
            if len(succ) != 1 or succ[0].kind != "kernel" or succ[0].epilogue_of is not None:
                if len(succ) > 1:
                    self._record("not_fused", f"matmul result {x.node.name} feeds {len(succ)} steps: no epilogue",
                                 [x.node])
                continue
            grp = succ[0]
            x.epilogue = grp
            grp.epilogue_of = x
            for p in list(self.dag.predecessors(grp)):
                if p is not x:
                    self.dag.add_edge(p, x)
            for s in list(self.dag.successors(grp)):
                self.dag.add_edge(x, s)
            self.dag.remove_node(grp)
            self._record("fused", f"epilogue: kernel over [{','.join(map(str, grp.outer))}] fused into matmul "
                         f"{x.node.name}", [x.node] + list(grp.stores)[:3])

    # ------------------------------------------------------------------- build phase
    def _is_leaf(self, n: Node, grp: _Group) -> bool:
        """n is read from a buffer in grp (not computed there)."""
        if self.kind[n] == "const":
            return False
        if self.kind[n] == "placeholder" or n in self.views:
            return True
        return n in self.home and self.home[n] is not grp and n not in grp.stores

    def _build_requests(self, grp: _Group):
        ranges = grp.ranges
        req: dict = defaultdict(dict)
        for n, idx in grp.stores.items():
            req[n][fi.key_of(idx)] = tuple(idx)
        leaves = {}
        for n in reversed(self.order):
            if n not in req:
                continue
            if self._is_leaf(n, grp):
                leaves[n] = True
                continue
            if self.kind[n] == "gather":
                for x in self._gather_bases(n):
                    leaves[x] = True
                continue
            if n.op in ("pad", "cat"):
                for x in n.inputs:
                    if self._is_leaf(x, grp):
                        leaves[x] = True
            for idx in list(req[n].values()):
                for x, xi in self.input_requests(n, idx, ranges, lambda v: self._is_leaf(v, grp)):
                    req[x][fi.key_of(xi)] = xi
        return req, list(leaves)

    def build_kernel(self, grp: _Group, kid: int, names: dict, first_input=None, first_buf=None) -> tuple:
        req, leaves = self._build_requests(grp)
        ranges = grp.ranges
        bufs: dict = {}
        inputs: list = []

        def buf_of(n: Node) -> Buf:
            b = bufs.get(n)
            if b is None:
                b = Buf(names[n], n.shape, n.dtype)
                bufs[n] = b
                inputs.append(b)
            return b

        if first_input is not None:
            if first_buf is not None:      # an epilogue reads the extern's own output Buf object
                bufs[first_input] = first_buf
                inputs.append(first_buf)
            else:
                buf_of(first_input)
        exprs: dict = {}

        def get(n, idx):
            return exprs[(n, fi.key_of(idx))]

        for n in self.order:
            if n not in req:
                continue
            for key, idx in req[n].items():
                exprs[(n, key)] = self._expr(n, idx, grp, ranges, get, buf_of)
        outs, stores = [], []
        for n, idx in grp.stores.items():
            b = Buf(names[n], n.shape, n.dtype)
            outs.append(b)
            stores.append(Store(b, idx, exprs[(n, fi.key_of(idx))]))
        computed = [n for n in self.order if n in req and not self._is_leaf(n, grp) and self.kind[n] != "const"]
        kernel = Kernel(inputs, outs, grp.outer, grp.inner, stores, id=kid)
        return kernel, [names[n] for n in bufs] + [names[n] for n in grp.stores], computed

    def _expr(self, n: Node, idx, grp: _Group, ranges, get, buf_of):
        k = self.kind[n]
        if k == "const":
            return _const_expr(n, idx)
        if self._is_leaf(n, grp):
            return Load(buf_of(n), idx)
        if k == "pointwise":
            args = [get(i, fi.simplify_all(fi.map_broadcast(i.shape, n.shape, idx), ranges)) for i in n.inputs]
            return _pointwise_expr(n, args)
        if k == "reduce":
            x = n.inputs[0]
            v = get(x, fi.simplify_all(self._reduce_input_index(n, idx), ranges))
            if n.op == "sum" and x.dtype is dt.float16:
                return Cast(Reduce("sum", Cast(v, dt.float32)), dt.float16)
            return Reduce(n.op, v)
        if k == "gather":
            x, ix = n.inputs
            d = n.attrs["dim"] % len(x.shape)
            if n.op == "take":
                m = len(ix.shape)
                ib, iidx = self._index_view(ix, list(idx[d:d + m]), ranges)
                full = list(idx[:d]) + [IGather(buf_of(ib), iidx)] + list(idx[d + m:])
            else:
                ib, iidx = self._index_view(ix, list(idx), ranges)
                full = list(idx[:d]) + [IGather(buf_of(ib), iidx)] + list(idx[d + 1:])
            xb, xidx = self._source_view(x, full)
            return Load(buf_of(xb), xidx)
        op = n.op
        if op == "pad":
            x = n.inputs[0]
            pads = n.attrs["pads"]
            value = n.attrs["value"]
            raw = fi.simplify_all(fi.map_pad(pads, idx), ranges)
            masked = [d for d, (e, m) in enumerate(zip(raw, x.shape)) if self._may_leave(e, m, ranges)]
            if self._is_leaf(x, grp):
                if not masked:
                    return Load(buf_of(x), raw)
                return Load(buf_of(x), raw, fill=value, masked=masked)
            inner = [e % m if d in masked else e for d, (e, m) in enumerate(zip(raw, x.shape))]
            v = get(x, fi.simplify_all(inner, ranges))
            if not masked:
                return v
            cond = None
            for d in masked:
                c = _in_bounds(raw[d], x.shape[d])
                cond = c if cond is None else Binary("logical_and", cond, c)
            return Where(cond, v, Const(value, n.dtype))
        if op == "cat":
            d = n.attrs["dim"] % len(n.shape)
            parts, off = [], 0
            for x in n.inputs:
                m = x.shape[d]
                if m == 0:
                    continue
                e = fi.simplify(fi.as_index(idx[d]) - off, ranges)
                j = list(idx)
                if self._is_leaf(x, grp):
                    j[d] = e
                    lo, hi = fi.index_range(e, ranges)
                    v = Load(buf_of(x), j) if lo >= 0 and hi < m else Load(buf_of(x), j, fill=0, masked=[d])
                else:
                    j[d] = e % m if self._may_leave(e, m, ranges) else e
                    v = get(x, fi.simplify_all(j, ranges))
                parts.append((off, m, v))
                off += m
            lo_i, hi_i = fi.index_range(fi.as_index(idx[d]), ranges)
            live = [p for p in parts if p[0] <= hi_i and p[0] + p[1] > lo_i]
            v = live[-1][2]
            for off, m, pv in reversed(live[:-1]):
                v = Where(Binary("lt", IndexValue(idx[d], dt.int64), Const(off + m, dt.int64)), pv, v)
            return v
        xi = self.input_requests(n, idx, ranges)[0]
        return get(*xi)


# ================================================================================ fuse()
def fuse(graph: Graph, options: FusionOptions | None = None) -> Program:
    """Group `graph` into kernels, externs and eager steps (see the module docstring)."""
    f = _Fuser(graph, options or FusionOptions())
    f.decide()
    if f.opt.horizontal:
        f.merge_horizontal()
    if f.opt.epilogues:
        f.fuse_epilogues()
    return _schedule(f)


def _group_key(f: _Fuser, grp: _Group):
    nodes = list(grp.stores) or ([grp.node] if grp.node is not None else [])
    if grp.epilogue is not None:
        nodes += list(grp.epilogue.stores)
    return min((f.pos[n] for n in nodes), default=0)


def _schedule(f: _Fuser) -> Program:
    g = f.g
    order = list(nx.lexicographical_topological_sort(f.dag, key=lambda grp: (_group_key(f, grp), grp.id)))
    names: dict = {}
    values: dict = {}
    for ph in g.inputs:
        name = ph.name[1:]
        names[ph] = name
        values[name] = Value(name, ph.shape, ph.dtype, "input", ph)

    def define(n, kind):
        if n in names:
            return
        name = f"buf{sum(1 for v in values.values() if v.kind != 'input')}"
        names[n] = name
        if n in f.is_output or n in f.must:
            kind = "output"          # (a value a saved view points into must be fresh too)
        values[name] = Value(name, n.shape, n.dtype, kind, n)
        for v, base in f.views.items():
            if base is n:
                define_view(v, n)

    def define_view(v, base):
        name = f"buf{sum(1 for x in values.values() if x.kind != 'input')}"
        names[v] = name
        values[name] = Value(name, v.shape, v.dtype, "view", v, base=names[base])

    for v, base in f.views.items():
        if base.is_placeholder:
            define_view(v, base)

    for grp in order:
        if grp.kind == "extern":
            define(grp.node, "scratch" if grp.epilogue is not None else "internal")
            if grp.epilogue is not None:
                for n in grp.epilogue.stores:
                    define(n, "internal")
        elif grp.kind == "eager":
            define(grp.node, "eager")
        else:
            for n in grp.stores:
                define(n, "internal")

    steps = []
    kid = 0
    for grp in order:
        if grp.kind == "kernel":
            kernel, args, computed = f.build_kernel(grp, kid, names)
            steps.append(KernelStep(kernel, args, computed))
            kid += 1
        elif grp.kind == "extern":
            n = grp.node
            bufs, views, args = [], {}, []
            for i, (base, shape, _) in enumerate(grp.operands):
                bname = names[base]
                b = Buf(bname, shape, base.dtype)
                bufs.append(b)
                args.append(bname)
                if tuple(shape) != tuple(base.shape):
                    views[i] = tuple(shape)
            attrs = {}
            if grp.operands[0][2]:
                attrs["transpose_a"] = True
            if grp.operands[1][2]:
                attrs["transpose_b"] = True
            out = Buf(names[n], n.shape, n.dtype)
            epilogue = None
            computed = [n]
            if grp.epilogue is not None:
                epilogue, ep_args, computed_ep = f.build_kernel(grp.epilogue, kid, names, first_input=n,
                                                                first_buf=out)
                args += ep_args[1:]
                computed += computed_ep
            else:
                args.append(names[n])
            ext = ExternKernel("matmul", bufs, out, attrs, epilogue, id=kid)
            steps.append(ExternStep(ext, args, names[n] if epilogue is not None else None, views, computed))
            kid += 1
        else:
            n = grp.node
            steps.append(EagerStep(n, n.op, dict(n.attrs), [names[x] for x in n.inputs], names[n],
                                   f.reason[n], id=kid))
            kid += 1
    steps = _order_by_dataflow(steps, values)
    results = [names[n] for n in g.outputs] + [names[v] for _, v in g.mutations]
    prog = Program(g, values, [names[p] for p in g.inputs], results, steps, f.records, len(g.outputs))
    return prog


def _order_by_dataflow(steps, values):
    """Steps in an order where every value is written before it is read (a saved view counts as a
    read of its base). The group order is kept wherever the data allows (stable Kahn's sort): the
    group DAG has no edge for reads through a view, so this is the safety net that makes it exact."""
    def base(name):
        v = values.get(name)
        while v is not None and v.kind == "view" and v.base in values:
            name = v.base
            v = values[name]
        return name

    writer = {}
    for i, st in enumerate(steps):
        for w in st.writes:
            writer[base(w)] = i
    deps = [set() for _ in steps]
    for i, st in enumerate(steps):
        for r in st.reads:
            j = writer.get(base(r))
            if j is not None and j != i:
                deps[i].add(j)
    users = [[] for _ in steps]
    for i, ds in enumerate(deps):
        for j in ds:
            users[j].append(i)
    indeg = [len(ds) for ds in deps]
    import heapq
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(steps[i])
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(out) != len(steps):
        raise RuntimeError("fusion scheduled a cycle between steps (an ember bug)")
    return out
