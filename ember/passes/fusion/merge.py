"""Fusion's group merges: horizontal (kernels over one domain reading the same buffers), pointwise kernels
into the reduction kernels over the same points, and epilogues (a kernel that is a product's only
consumer runs as its epilogue).

In: a `Fuser` after its decisions (ember/passes/fusion/decide.py).  Out: the same Fuser, its groups,
group DAG, `home` and records updated; ember/passes/fusion/schedule.py then orders the groups.
"""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx

from ember.ir import index as ix
from ember.ir.kernel import Var
from ember.ir.program import FusionKind
from ember.ir.sizes import hint
from ember.passes.loop_order import flat_address

from .decide import MAX_KERNEL_SIZE, Fuser, Group, GroupKind
from .lower import group_requests

__all__ = ["horizontal", "into_reductions", "epilogues", "MAX_HORIZONTAL_STORES"]

MAX_HORIZONTAL_STORES = 8  # horizontal fusion stops growing a kernel past this many outputs
# Kernels whose whole domain is at most this many points merge even without a common input, up to
# MAX_TINY_STORES outputs: launching one costs more than its work (an optimizer's `step += 1` per
# parameter, the bias corrections of a captured training step).
TINY_DOMAIN = 4096
MAX_TINY_STORES = 64


def _walks_along(shape, idx, ranges: dict, var: Var) -> bool:
    """Reading `shape` at idx steps by one element (or stays put: a broadcast) as `var` advances."""
    flat = flat_address(shape, idx, ranges)
    return flat is not None and ix.linear_coeff(flat, var) in (0, 1)


def horizontal(f: Fuser) -> None:
    """Kernels over the same domain that load a common buffer and do not depend on each other
    become one kernel (up to MAX_HORIZONTAL_STORES stores)."""
    buckets = defaultdict(list)
    for grp in f.groups:
        if grp.kind is GroupKind.KERNEL:
            buckets[(grp.outer, grp.inner)].append(grp)
    for members in buckets.values():
        if len(members) < 2:
            continue
        loads = {grp: set(group_requests(f, grp)[1]) for grp in members}
        alive = list(members)
        tiny = hint(math.prod(members[0].outer) * math.prod(members[0].inner)) <= TINY_DOMAIN
        while (pair := _mergeable_pair(f, alive, loads, tiny)) is not None:
            a, b = pair
            _merge(f, a, b)
            loads[a] |= loads[b]
            alive.remove(b)
            f._record(FusionKind.FUSED, f"horizontal: kernels over [{','.join(map(str, a.outer))}]"
                         f"{'x' + str(list(a.inner)) if a.inner else ''} "
                         f"{'(small)' if tiny else 'reading the same inputs'} merged", list(a.stores)[:4])

def into_reductions(f: Fuser) -> None:
    """A pointwise kernel over the outer + inner axes of a reduction kernel that loads a buffer the
    reduction kernel loads too, and does not depend on it or feed it, becomes part of it: its stores
    index the inner axes, the inputs they share are read once (a layer norm's weight-gradient
    product g * x_hat beside the layer norm's backward, which reads g and x_hat already).  Only
    where both walk those shared buffers contiguously along the innermost inner axis: the merged
    kernel's loops must suit both."""
    for red in [grp for grp in f.groups if grp.kind is GroupKind.KERNEL and grp.inner and grp.outer != (1,)]:
        full = red.outer + red.inner
        cands = [grp for grp in f.groups if grp.kind is GroupKind.KERNEL and not grp.inner
                 and grp.outer == full and grp is not red]
        if not cands:
            continue
        ranges, k = red.ranges, len(red.outer)
        mapping = {f"o{k + j}": Var("r", j) for j in range(len(red.inner))}
        last = Var("r", len(red.inner) - 1)
        for pw in cands:
            if (len(red.stores) + len(pw.stores) > MAX_HORIZONTAL_STORES or red.size + pw.size > MAX_KERNEL_SIZE
                    or nx.has_path(f.dag, red, pw) or nx.has_path(f.dag, pw, red)):
                continue
            red_req, red_loads = group_requests(f, red)
            stores = {n: ix.simplify_all([ix.subst(e, mapping) for e in idx], ranges)
                      for n, idx in pw.stores.items()}
            probe = Group(-1, GroupKind.KERNEL, red.outer, red.inner)
            probe.stores = stores
            pw_req, pw_loads = group_requests(f, probe)
            shared = set(red_loads) & set(pw_loads)
            if not shared or not all(_walks_along(n.shape, idx, ranges, last)
                                     for n in shared for req in (red_req, pw_req) for idx in req[n].values()):
                continue
            pw.stores = stores
            _merge(f, red, pw)
            f._record(FusionKind.FUSED, f"pointwise kernel over [{','.join(map(str, full))}] merged into the "
                         f"reduction kernel over [{','.join(map(str, red.outer))}]x{list(red.inner)} "
                         "reading the same inputs", list(red.stores)[:4])

def _mergeable_pair(f: Fuser, alive: list, loads: dict, tiny: bool = False):
    limit = MAX_TINY_STORES if tiny else MAX_HORIZONTAL_STORES
    for i, a in enumerate(alive):
        for b in alive[i + 1:]:
            if len(a.stores) + len(b.stores) > limit or a.size + b.size > MAX_KERNEL_SIZE:
                continue
            if not tiny and not (loads[a] & loads[b]):
                continue
            if nx.has_path(f.dag, a, b) or nx.has_path(f.dag, b, a):
                continue
            return a, b
    return None

def _merge(f: Fuser, a: Group, b: Group) -> None:
    """Fold group b into a (same domain)."""
    a.size += b.size
    for n, idx in b.stores.items():
        a.stores[n] = idx
        f.home[n] = a
    a.merged_from.append(b.id)
    for p in list(f.dag.predecessors(b)):
        if p is not a:
            f.dag.add_edge(p, a)
    for s in list(f.dag.successors(b)):
        if s is not a:
            f.dag.add_edge(a, s)
    f.dag.remove_node(b)
    f.groups.remove(b)

def epilogues(f: Fuser) -> None:
    """A kernel that is the only consumer of a matmul result runs as that extern's epilogue."""
    for x in list(f.groups):
        # an epilogue makes the matmul result the extern's private scratch: a result the caller
        # reads (an output, or the base of a saved view output) must stay a real buffer
        if x.kind is not GroupKind.EXTERN or x.node in f.is_output or x.node in f.must:
            continue
        succ = list(f.dag.successors(x))
        if len(succ) != 1 or succ[0].kind is not GroupKind.KERNEL or succ[0].epilogue_of is not None:
            if len(succ) > 1:
                f._record(FusionKind.NOT_FUSED,
                             f"matmul result {x.node.name} feeds {len(succ)} steps: no epilogue", [x.node])
            continue
        grp = succ[0]
        x.epilogue = grp
        grp.epilogue_of = x
        for p in list(f.dag.predecessors(grp)):
            if p is not x:
                f.dag.add_edge(p, x)
        for s in list(f.dag.successors(grp)):
            f.dag.add_edge(x, s)
        f.dag.remove_node(grp)
        f._record(FusionKind.FUSED, f"epilogue: kernel over [{','.join(map(str, grp.outer))}] fused into "
                     f"matmul {x.node.name}", [x.node] + list(grp.stores)[:3])
