"""Scheduling for fusion: decided groups -> a Program (named values, steps in execution order).

In: a `Fuser` after its decisions and merges (ember/passes/fusion/decide.py).  Out: a `Program`
(ember/ir/program.py).  Steps:
  1. order the groups: a topological order of the group DAG in which each group runs as soon as
     its inputs are made (the group whose last input came earliest first; ties: graph position);
  2. name the values: graph inputs keep their names, every other value is buf0, buf1, ... in the
     order the groups define them (graph outputs and the bases of saved views are OUTPUT values,
     allocated fresh on every call);
  3. build one step per group: a KernelStep (lowered by ember/passes/fusion/lower.py), an
     ExternStep (matmul, with its epilogue kernel) or an EagerStep;
  4. re-sort the steps by dataflow (the safety net for reads through saved views).
"""
from __future__ import annotations

import heapq
import itertools

from ember.ir.graph import Node
from ember.ir.kernel import Buf, ExternKernel
from ember.ir.program import EagerStep, ExternStep, KernelStep, Program, Value, ValueKind

from .decide import Fuser, Group, GroupKind
from .lower import build_kernel

__all__ = ["schedule"]


def schedule(f: Fuser) -> Program:
    g = f.g
    order = _order_groups(f)
    names = _ValueNames(f)
    for grp in order:
        names.define_group(grp)
    steps = []
    for kid, grp in enumerate(order):
        if grp.kind is GroupKind.KERNEL:
            kernel, args, computed = build_kernel(f, grp, kid, names.of)
            steps.append(KernelStep(kernel, args, computed))
        elif grp.kind is GroupKind.EXTERN:
            steps.append(_extern_step(f, grp, kid, names.of))
        else:
            n = grp.node
            steps.append(EagerStep(n, n.op, dict(n.attrs), [names.of[x] for x in n.inputs], names.of[n],
                                   f.reason[n], id=kid))
    steps = _order_by_dataflow(steps, names.values)
    results = [names.of[n] for n in g.outputs] + [names.of[v] for _, v in g.mutations]
    return Program(g, names.values, [names.of[p] for p in g.inputs], results, steps, f.records, len(g.outputs))


def _order_groups(f: Fuser) -> list[Group]:
    """Topological order of the group DAG; ties broken by the earliest graph node a group holds."""
    def first_node(grp: Group) -> int:
        nodes = list(grp.stores) or ([grp.node] if grp.node is not None else [])
        if grp.epilogue is not None:
            nodes += list(grp.epilogue.stores)
        return min((f.pos[n] for n in nodes), default=0)

    # list scheduling: groups run in the order their inputs became ready (the group whose last input
    # was made earliest first), so every consumer of a value runs soon after it is made, while the
    # value is still in the cache -- a bias gradient's column sum right after the gradient, not after
    # the rest of the backward has evicted it; ties: the earliest graph position
    dag = f.dag
    indeg = {grp: dag.in_degree(grp) for grp in dag}
    done: dict = {}
    ready = [(0, first_node(grp), grp.id, grp) for grp in dag if indeg[grp] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        *_, grp = heapq.heappop(ready)
        done[grp] = len(order)
        order.append(grp)
        for u in dag.successors(grp):
            indeg[u] -= 1
            if indeg[u] == 0:
                latest = max(done[p] for p in dag.predecessors(u))
                heapq.heappush(ready, (latest, first_node(u), u.id, u))
    return order


class _ValueNames:
    """The program's values and the name of each graph node's value (`of`): graph inputs keep
    their names, computed values are buf0, buf1, ... in definition order."""

    def __init__(self, f: Fuser):
        self.f = f
        self.of: dict[Node, str] = {}
        self.values: dict[str, Value] = {}
        self._count = itertools.count()
        for ph in f.g.inputs:
            name = ph.name[1:]
            self.of[ph] = name
            self.values[name] = Value(name, ph.shape, ph.dtype, ValueKind.INPUT, ph)
        for v, base in f.views.items():
            if base.is_placeholder:
                self._define_view(v, base)

    def define_group(self, grp: Group) -> None:
        """Name what grp writes (an extern with an epilogue: its scratch result and the epilogue's)."""
        if grp.kind is GroupKind.EXTERN:
            self._define(grp.node, ValueKind.SCRATCH if grp.epilogue is not None else ValueKind.INTERNAL)
            if grp.epilogue is not None:
                for n in grp.epilogue.stores:
                    self._define(n, ValueKind.INTERNAL)
        elif grp.kind is GroupKind.EAGER:
            self._define(grp.node, ValueKind.EAGER)
        else:
            for n in grp.stores:
                self._define(n, ValueKind.INTERNAL)

    def _define(self, n: Node, kind: ValueKind) -> None:
        if n in self.of:
            return
        if n in self.f.is_output or n in self.f.must:
            kind = ValueKind.OUTPUT          # (a value a saved view points into must be fresh too)
        self._add(n, kind)
        for v, base in self.f.views.items():
            if base is n:
                self._define_view(v, n)

    def _define_view(self, v: Node, base: Node) -> None:
        self._add(v, ValueKind.VIEW, base=self.of[base])

    def _add(self, n: Node, kind: ValueKind, base: str | None = None) -> str:
        name = f"buf{next(self._count)}"
        self.of[n] = name
        self.values[name] = Value(name, n.shape, n.dtype, kind, n, base=base)
        return name


def _extern_step(f: Fuser, grp: Group, kid: int, names: dict) -> ExternStep:
    """The matmul call: operands read as free views, transposes as BLAS flags, and the epilogue."""
    n = grp.node
    bufs, views, args = [], {}, []
    for i, (base, shape, _, _) in enumerate(grp.operands):
        bname = names[base]
        bufs.append(Buf(bname, shape, base.dtype))
        args.append(bname)
        if tuple(shape) != tuple(base.shape):
            views[i] = tuple(shape)
    attrs = {}
    if grp.operands[0][2]:
        attrs["transpose_a"] = True
    if grp.operands[1][2]:
        attrs["transpose_b"] = True
    for (_, _, _, cast), name in zip(grp.operands, ("cast_a", "cast_b")):
        if cast is not None:
            attrs[name] = cast           # a float32 operand the GEMM rounds as it packs (decide._folds_cast)
    if n.op == "addmm":
        attrs["bias"] = True             # input 2, [N]: added before the one rounding (the bf16 GEMM's epilogue)
    out = Buf(names[n], n.shape, n.dtype)
    epilogue = None
    computed = [n]
    if grp.epilogue is not None:
        epilogue, ep_args, computed_ep = build_kernel(f, grp.epilogue, kid, names, first_input=n, first_buf=out)
        args += ep_args[1:]
        computed += computed_ep
    else:
        args.append(names[n])
    ext = ExternKernel("matmul", bufs, out, attrs, epilogue, id=kid)
    return ExternStep(ext, args, names[n] if epilogue is not None else None, views, computed)


def _order_by_dataflow(steps: list, values: dict) -> list:
    """Steps in an order where every value is written before it is read (a saved view counts as a
    read of its base). The group order is kept wherever the data allows (stable Kahn's sort): the
    group DAG has no edge for reads through a view, so this is the safety net that makes it exact."""
    def base(name):
        v = values.get(name)
        while v is not None and v.kind is ValueKind.VIEW and v.base in values:
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
