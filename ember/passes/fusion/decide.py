"""Fusion decisions: which nodes each kernel computes, which become buffers, which kernels merge.

In: an optimised Graph and FusionOptions.  Out: a `Fuser` whose `groups` (kernels, externs, eager
steps), `dag` (group dependencies), `home` (realized node -> producing group), `views` (outputs
returned as views of another buffer) and `records` (FusionRecords) ember/passes/fusion/schedule.py
turns into a Program.  The rules are in the package docstring (ember/passes/fusion/__init__.py).

Stages: `decide()` walks the nodes in reverse topological order, propagating the index every
consumer group requests each node at; ember/passes/fusion/merge.py then merges groups.
"""
from __future__ import annotations


from collections import defaultdict
from enum import Enum

import networkx as nx

from ember.diagnostics import CONSTANT_FILL
from ember.ir import index as ix
from ember.ir.graph import Graph, Node
from ember.ir.kernel import IConst, Var
from ember.ir.ops import OPS
from ember.ir.program import FusionKind, FusionRecord

from . import operands
from .classify import NodeClass, classify, code_size, reduce_dims
from .lower import IndexMaps

__all__ = ["FusionOptions", "Fuser", "Group", "GroupKind", "RECOMPUTE_BUDGET"]

# A pointwise value needed by k kernels is recomputed in each when (k - 1) * cost <= this, where
# cost is the weighted size of its inlinable producer cone (OPS[op].cost: transcendentals weigh 4,
# movement ops nothing).
RECOMPUTE_BUDGET = 24
MAX_FANOUT = 4            # ... and never in more than this many kernels
# A kernel stops growing at this code size (classify.code_size: an op 1, a math function 16): LLVM's
# O3 time grows quadratically with one loop body's length (2000 adds in one kernel: ~3 s of O3; 1000
# exps: ~25 s), so a longer chain is split into kernels of bounded size -- compile time linear in
# the ops -- at the price of one buffer written and read per split.
MAX_KERNEL_SIZE = 512


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


# ============================================================================== groups
class GroupKind(str, Enum):
    KERNEL = "kernel"     # a fused loop nest
    EXTERN = "extern"     # a library call (matmul), maybe with a kernel as epilogue
    EAGER = "eager"       # one op run by its eager kernel (or a constant filled by numpy)

    def __str__(self) -> str:
        return self.value


class Group:
    """A future step.  A kernel group has a domain outer + inner and stores realized nodes."""

    def __init__(self, gid: int, kind: GroupKind, outer=(1,), inner=(), node=None):
        self.id = gid
        self.kind = kind
        self.outer = tuple(outer)
        self.inner = tuple(inner)
        self.node = node              # extern / eager node
        self.stores: dict = {}        # Node -> index tuple (realized nodes this kernel writes)
        self.requested: set = set()   # nodes with requests in this group (decision phase)
        self.operands = []            # extern: [(base node, view shape, transpose, cast dtype name or None)]
        self.epilogue = None          # extern: the kernel group fused as epilogue
        self.epilogue_of = None       # kernel: the extern group it is the epilogue of
        self.merged_from = []
        self.size = 0                 # code size of what is computed here (stored or inlined): MAX_KERNEL_SIZE

    @property
    def ranges(self) -> dict:
        return ix.domain_ranges(self.outer, self.inner)

    def __repr__(self) -> str:
        return f"<group {self.id} {self.kind} outer={list(self.outer)} inner={list(self.inner)}>"


def _outer_vars(g: Group) -> dict:
    return {f"o{k}": n for k, n in enumerate(g.outer) if n != 1}


def _inner_vars(g: Group) -> dict:
    return {f"r{k}": n for k, n in enumerate(g.inner) if n != 1}


def _one_to_one(shape, idx, g: Group, allow_inner: bool) -> bool:
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
class Fuser:
    def __init__(self, graph: Graph, options: FusionOptions):
        self.g = graph
        self.opt = options
        self.order = graph.nodes()
        self.pos = {n: i for i, n in enumerate(self.order)}
        self.cls: dict = {}
        self.reason: dict = {}
        for n in self.order:
            self.cls[n], self.reason[n] = classify(n)
        self.outputs = list(graph.outputs) + [v for _, v in graph.mutations]
        self.is_output = set(self.outputs)
        self.maps = IndexMaps(self.cls, self.is_output)
        self.groups: list[Group] = []
        self.dag = nx.DiGraph()
        self.home: dict = {}                        # realized node -> producing group (None: input)
        self.cursor = len(self.order)               # decide(): position of the node being decided
        self.req: dict = defaultdict(dict)          # node -> {group: {key: idx}}
        self.buf_need: dict = defaultdict(dict)     # node -> {group: True}: groups loading it as a buffer
        self.inlined: dict = defaultdict(list)      # node -> groups computing it inline
        self.records: list[FusionRecord] = []
        self.cost = self._cone_costs()
        self.views: dict = {}                       # output node -> graph input it is a reshape of
        self.must: set = set()                      # realized because a view output needs them
        self._find_views()
        self._find_window_bases()

    def _find_views(self) -> None:
        """Outputs the caller lets alias (saved for backward) that are reshapes of a buffer."""
        aliasable = {o for i, o in enumerate(self.g.outputs) if i in self.opt.alias_outputs}
        aliasable -= {o for i, o in enumerate(self.g.outputs) if i not in self.opt.alias_outputs}
        aliasable -= {v for _, v in self.g.mutations}
        for o in sorted(aliasable, key=lambda n: n.id):
            b = o
            while b.op == "reshape":
                b = b.inputs[0]
            if b is not o and self.cls[b] is not NodeClass.CONST:
                self.views[o] = b
                if not b.is_placeholder:
                    self.must.add(b)

    def _find_window_bases(self) -> None:
        """A computed value whose windows (a convolution's columns) feed CPU products is stored (a padded
        input too), so that the column kernel is a plain copy the products can gather in place instead of
        storing the columns (ember/passes/implicit_gemm.py): conv2's input (0.4 MB), not 4 MB of columns."""
        for n in self.order:
            if n.op != "matmul" or n.device != "cpu" or len(n.inputs) != 2:
                continue
            b = n.inputs[1]
            while b.op in ("reshape", "permute", "cat") and b.inputs:
                b = next((i for i in b.inputs if i.op != "full"), b.inputs[0])
            if b.op != "windows":
                continue
            base = b.inputs[0]
            while base.op in ("reshape", "permute") and base.inputs:
                base = base.inputs[0]
            # a padding is stored too: its zero borders, fused into the column kernel, would be masks
            # that are no plain copy (the padded input costs one input-sized write)
            if not base.is_placeholder and (self.cls[base] is NodeClass.POINTWISE or base.op == "pad"):
                self.must.add(base)

    # ------------------------------------------------------------------------ bookkeeping
    def _new_group(self, kind: GroupKind, outer=(1,), inner=(), node=None) -> Group:
        grp = Group(len(self.groups), kind, outer, inner, node)
        self.groups.append(grp)
        self.dag.add_node(grp)
        return grp

    def _record(self, kind: FusionKind, message: str, nodes=()) -> None:
        nodes = list(nodes)
        src = next((n.meta.get("source", "") for n in nodes if n.meta.get("source")), "")
        self.records.append(FusionRecord(kind, message, [n.name for n in nodes], src))

    def _cone_costs(self) -> dict:
        cost = {}
        for n in self.order:
            k = self.cls[n]
            if k in (NodeClass.POINTWISE, NodeClass.MOVEMENT, NodeClass.GATHER, NodeClass.RANDOM):
                cost[n] = min(100, OPS[n.op].cost + sum(cost.get(i, 0) for i in n.inputs))
            else:
                cost[n] = 0
        return cost

    def _add_request(self, n: Node, grp: Group, idx) -> None:
        idx = tuple(idx)
        self.req[n].setdefault(grp, {})[ix.key_of(idx)] = idx
        grp.requested.add(n)

    def _consumers(self, n: Node) -> list:
        cons = list(self.req.get(n, {}).keys())
        for grp in self.buf_need.get(n, {}):
            if grp not in cons:
                cons.append(grp)
        return cons

    # -------------------------------------------------------------------- decision phase
    def decide(self) -> None:
        for n in reversed(self.order):
            self.cursor = self.pos[n]     # nodes before this position are not decided yet
            k = self.cls[n]
            if k is NodeClass.PLACEHOLDER or n in self.views:
                self.home[n] = None
                if n in self.views:
                    self._record(FusionKind.FUSED, f"saved value {n.name} is a view of {self.views[n].name}", [n])
                continue
            if k is NodeClass.EXTERN:
                self._decide_extern(n)
            elif k is NodeClass.EAGER:
                self._decide_eager(n)
            else:
                self._decide_kernelable(n)

    def _link(self, n: Node, producer: Group) -> None:
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
        grp = self._new_group(GroupKind.EXTERN, node=n)
        self.home[n] = grp
        self._link(n, grp)
        for i, x in enumerate(n.inputs):
            base, view_shape, transpose = operands.extern_operand(self, x)
            prod = self.home.get(base)
            if prod is not None:           # a sibling stored by a group decided before this product
                if nx.has_path(self.dag, grp, prod):
                    base, view_shape, transpose = operands.extern_operand(self, x, siblings=False)
                else:
                    self.dag.add_edge(prod, grp)
            if base is not x:
                self._record(FusionKind.FUSED, f"matmul operand {i} read as a free view of {base.name}"
                             + (" (transposed)" if transpose else ""), [x, n])
            cast = None
            if i < 2 and operands.folds_cast(self, base):      # (an addmm's bias, input 2, is read as stored)
                cast_node, base = base, operands.unreshaped(self, base.inputs[0])
                cast = cast_node.dtype.name
                self._record(FusionKind.FUSED, f"cast of matmul operand {i} to {cast} folded into the product "
                             f"(the GEMM rounds {base.name} as it packs it)", [cast_node, n])
            grp.operands.append((base, view_shape, transpose, cast))
            self.buf_need[base][grp] = True

    def _decide_eager(self, n: Node) -> None:
        grp = self._new_group(GroupKind.EAGER, node=n)
        self.home[n] = grp
        self._link(n, grp)
        for x in n.inputs:
            self.buf_need[x][grp] = True
        self._record(FusionKind.FALLBACK, f"{n.op} runs eagerly: {self.reason[n]}", [n])

    def _decide_kernelable(self, n: Node) -> None:
        k = self.cls[n]
        reqs = self.req.get(n, {})
        must = n in self.is_output or n in self.must or bool(self.buf_need.get(n))
        if not must:
            if k in (NodeClass.CONST, NodeClass.MOVEMENT, NodeClass.GATHER):
                return self._inline(n, list(reqs))
            if k in (NodeClass.POINTWISE, NodeClass.RANDOM):
                fan = len(reqs)
                if any(grp.size + code_size(n, k) > MAX_KERNEL_SIZE for grp in reqs):
                    self._record(FusionKind.NOT_FUSED, f"realized: its consumer kernel reached the size limit "
                                 f"(code size {MAX_KERNEL_SIZE}: compile time grows faster than the kernel)", [n])
                    return self._realize(n, fresh=True)
                if fan <= 1 or (fan <= MAX_FANOUT and (fan - 1) * self.cost[n] <= self.opt.recompute_budget):
                    if fan > 1:
                        self._record(FusionKind.FUSED, f"recomputed in {fan} kernels (cost {self.cost[n]})", [n])
                    return self._inline(n, list(reqs))
                self._record(FusionKind.NOT_FUSED, f"realized: needed by {fan} kernels, recomputing costs "
                             f"{self.cost[n]} ops each", [n])
            elif k is NodeClass.REDUCE:
                if len(reqs) == 1:
                    grp = next(iter(reqs))
                    why = self._reduce_fit_reason(n, grp)
                    if why is None:
                        self._apply_fit(n, grp)
                        return self._inline(n, [grp])
                    self._record(FusionKind.NOT_FUSED, f"not fused: {why}", [n])
                else:
                    self._record(FusionKind.NOT_FUSED,
                                 f"not fused: would recompute a reduction in {len(reqs)} kernels", [n])
        self._realize(n)

    def _inline(self, n: Node, groups: list) -> None:
        for grp in groups:
            self.inlined[n].append(grp)
            grp.size += code_size(n, self.cls[n])
            self._compute_in(n, grp)

    def _compute_in(self, n: Node, grp: Group) -> None:
        """Propagate n's requests in grp to its inputs."""
        ranges = grp.ranges
        idxs = list(self.req.get(n, {}).get(grp, {}).values())
        if n in grp.stores:
            idxs.append(grp.stores[n])
        seen = set()
        for idx in idxs:
            key = ix.key_of(idx)
            if key in seen:
                continue
            seen.add(key)
            if self.cls[n] is NodeClass.GATHER:
                for x in self.maps.gather_bases(n):
                    self.buf_need[x][grp] = True
                continue
            for x, xi in self.maps.input_requests(n, idx, ranges):
                self._add_request(x, grp, xi)

    def _realize(self, n: Node, fresh: bool = False) -> None:
        """Give n a buffer: stored by a kernel that reads it when possible (never with `fresh`:
        the readers are full), else by a kernel of its own."""
        reqs = self.req.get(n, {})
        needs_buf = self.buf_need.get(n, {})
        placed = None
        is_const = self.cls[n] is NodeClass.CONST
        cands = [] if is_const or fresh else sorted(
            (grp for grp in reqs if grp.kind is GroupKind.KERNEL and grp not in needs_buf),
            key=lambda grp: (-len(reqs[grp]), grp.id))
        for grp in cands:
            if self._try_store(n, grp):
                placed = grp
                break
        if placed is None and is_const:
            # a constant handed out as a buffer: np.full / np.arange, no kernel needed
            grp = self._new_group(GroupKind.EAGER, node=n)
            self.reason[n] = CONSTANT_FILL
            self.home[n] = grp
            self._link(n, grp)
            return
        if placed is None:
            placed = self._group_for(n)
            if cands:
                self._record(FusionKind.NOT_FUSED, f"{n.op} gets its own kernel: no consumer kernel can store it "
                             "(index is not one-to-one, domain differs, or a cycle)", [n])
        self.home[n] = placed
        placed.size += code_size(n, self.cls[n])
        self._link(n, placed)
        self._compute_in(n, placed)

    def _group_for(self, n: Node) -> Group:
        """A kernel of n's own: over its non-unit dims (a reduction: kept dims outer, reduced inner)."""
        if self.cls[n] is NodeClass.REDUCE:
            x = n.inputs[0]
            dims = reduce_dims(n)
            outer = tuple(x.shape[d] for d in range(len(x.shape)) if d not in dims and x.shape[d] != 1)
            inner = tuple(x.shape[d] for d in dims)
            grp = self._new_group(GroupKind.KERNEL, outer or (1,), inner)
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
            grp = self._new_group(GroupKind.KERNEL, outer or (1,))
            idx, k = [], 0
            for s in n.shape:
                if s != 1:
                    idx.append(Var("o", k))
                    k += 1
                else:
                    idx.append(IConst(0))
        grp.stores[n] = tuple(idx)
        return grp

    def _acyclic(self, n: Node, grp: Group) -> bool:
        for c in self._consumers(n):
            if c is not grp and nx.has_path(self.dag, c, grp):
                return False
        return True

    def _try_store(self, n: Node, grp: Group) -> bool:
        reqs = self.req[n].get(grp, {})
        if self.cls[n] is NodeClass.REDUCE:
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
    def _reduce_fit_reason(self, n: Node, grp: Group):
        """None when n can be computed in grp once per outer point (grp may need new inner axes:
        see _plan_fit); else the reason it cannot."""
        if grp.kind is not GroupKind.KERNEL:
            return "consumer is not a kernel"
        reqs = self.req[n].get(grp, {})
        if len(reqs) != 1:
            return f"needed at {len(reqs)} different indices in one kernel"
        if self._plan_fit(n, grp) is None:
            return "different reduction domain"
        return None

    def _plan_fit(self, n: Node, grp: Group, broadcast: bool = False):
        """How grp's domain must change so that n is computed once per outer point:
        (outer, inner, var substitution) or None.  For a reduction the inner axes must be its
        reduced axes; with broadcast=True (a realized elementwise value that grp reads broadcast)
        they are whatever outer axes n's index does not use."""
        idx = next(iter(self.req[n][grp].values()))
        if any(v.kind == "r" for e in idx for v in ix.index_vars(e)):
            return None
        used = {v.name for e in idx for v in ix.index_vars(e)}
        ovars = [(f"o{k}", s) for k, s in enumerate(grp.outer) if s != 1]
        unused = [(name, s) for name, s in ovars if name not in used]
        if broadcast:
            # keep at least one outer axis: a kernel whose outer domain is [1] runs on one thread
            if grp.inner or not unused or len(unused) == len(ovars):
                return None
            red = tuple(s for _, s in unused)
        else:
            red = tuple(n.inputs[0].shape[d] for d in reduce_dims(n))
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
            probe = Group(-1, GroupKind.KERNEL, plan[0], plan[1])
            new_idx = ix.simplify_all([ix.subst(e, mapping) for e in idx], probe.ranges)
            if _one_to_one(n.shape, new_idx, probe, allow_inner=False):
                return plan
        # (b) new inner axes for the reduction; the elementwise stores stay outer stores
        if not broadcast and _one_to_one(n.shape, idx, grp, allow_inner=False):
            return (grp.outer, red, {})
        return None

    def _apply_fit(self, n: Node, grp: Group, broadcast: bool = False) -> None:
        outer, inner, mapping = self._plan_fit(n, grp, broadcast)
        if (outer, inner) == (grp.outer, grp.inner) and not mapping:
            return
        grp.outer, grp.inner = outer, inner
        if not mapping:
            return
        ranges = grp.ranges
        sub = lambda idx: ix.simplify_all([ix.subst(e, mapping) for e in idx], ranges)  # noqa: E731
        for m in list(grp.stores):
            grp.stores[m] = sub(grp.stores[m])
        for m in grp.requested:
            old = self.req[m].get(grp)
            if old:
                new = {}
                for idx in old.values():
                    s = sub(idx)
                    new[ix.key_of(s)] = s
                self.req[m][grp] = new
        self._record(FusionKind.FUSED, f"a kernel takes the axes {list(inner)} of {n.op} as its inner "
                     "(reduction) axes", [n])
