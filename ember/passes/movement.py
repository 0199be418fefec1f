"""movement: compose chains of movement ops into one op each.

In: a Graph.  Out: the same Graph (in place) where
    slice(slice(x))                -> one slice      (start/step arithmetic)
    flip(flip(x))                  -> flip over the symmetric difference of the dims (none: x)
    pad(pad(x)), same fill value, no crops   -> one pad
    permute(x) that keeps the order of the dims larger than 1  -> reshape(x)
    movement ops of a `full` constant          -> a `full` of the new shape (no copy at all)
    transpose(a @ b) (its only use)            -> b^T @ a^T  (transposed operands are free for BLAS)

Most movement folding happens inside fusion, not here: a fused kernel reads its inputs through the
composed index map of the movement chain (ember/ir/index.py), so no movement op costs a
copy unless its result is materialised (a graph output, an extern operand that is not a free view).
This pass only shortens chains so that the maps (and the printed graph) stay small.
"""
from __future__ import annotations

from ember.ir.graph import Graph, Node

from .manager import register_pass, replace_node

_VIEW_OPS = ("reshape", "permute", "expand", "slice", "flip", "windows")


def _is_result(g: Graph, n: Node) -> bool:
    return any(o is n for o in g.outputs) or any(v is n for _, v in g.mutations)


def _rewrite(g: Graph, n: Node) -> bool:
    op = n.op
    if op not in _VIEW_OPS and op != "pad":
        return False
    x = n.inputs[0]
    if x.op == "full" and op in _VIEW_OPS:
        f = g.add("full", [], {"shape": n.shape, "value": x.attrs["value"], "dtype": n.dtype},
                  device=n.device, meta=dict(n.meta))
        return replace_node(g, n, f)
    if op == "slice" and x.op == "slice":
        a, b = x.attrs, n.attrs   # n = slice_b(slice_a(y)): index i -> a0 + as*(b0 + bs*i)
        starts = tuple(s0 + st * t0 for s0, st, t0 in zip(a["starts"], a["steps"], b["starts"]))
        steps = tuple(st * t for st, t in zip(a["steps"], b["steps"]))
        stops = []
        y = x.inputs[0]
        for d, (s0, stp, m) in enumerate(zip(starts, steps, n.shape)):
            stops.append(min(y.shape[d], s0 + stp * (m - 1) + 1) if m > 0 else s0)
        n.attrs["starts"], n.attrs["stops"], n.attrs["steps"] = starts, tuple(stops), steps
        g.set_input(n, 0, y)
        return True
    if op == "flip" and x.op == "flip":
        nd = len(n.shape)
        d1 = {d % max(nd, 1) for d in x.attrs["dims"]}
        d2 = {d % max(nd, 1) for d in n.attrs["dims"]}
        dims = tuple(sorted(d1 ^ d2))
        if not dims:
            return replace_node(g, n, x.inputs[0])
        n.attrs["dims"] = dims
        g.set_input(n, 0, x.inputs[0])
        return True
    if op == "pad" and x.op == "pad":
        p1, p2 = x.attrs["pads"], n.attrs["pads"]
        same = x.attrs["value"] == n.attrs["value"] or (x.attrs["value"] != x.attrs["value"] and n.attrs["value"] != n.attrs["value"])
        if same and all(lo >= 0 and hi >= 0 for lo, hi in list(p1) + list(p2)):
            n.attrs["pads"] = tuple((a0 + b0, a1 + b1) for (a0, a1), (b0, b1) in zip(p1, p2))
            g.set_input(n, 0, x.inputs[0])
            return True
        return False
    if op == "permute" and x.op == "matmul" and len(g.users(x)) == 1 and not _is_result(g, x):
        nd = len(n.shape)
        swap = tuple(range(nd - 2)) + (nd - 1, nd - 2)
        a, b = x.inputs
        if tuple(n.attrs["dims"]) == swap and len(a.shape) == nd and len(b.shape) == nd:
            # (a @ b)^T == b^T @ a^T: the transposes become free operand flags of the extern
            bt = g.add("permute", [b], {"dims": swap}, device=n.device, meta=dict(n.meta))
            at = g.add("permute", [a], {"dims": swap}, device=n.device, meta=dict(n.meta))
            m = g.add("matmul", [bt, at], {}, device=n.device, meta=dict(x.meta))
            return replace_node(g, n, m)
    if op == "permute":
        dims = tuple(n.attrs["dims"])
        big = [d for d in dims if x.shape[d] != 1]   # a permute that keeps the order of the
        if big == sorted(big):                       # non-size-1 dims only inserts/drops 1s
            r = g.add("reshape", [x], {"shape": n.shape}, device=n.device, meta=dict(n.meta))
            return replace_node(g, n, r)
    return False


@register_pass("movement")
def movement(g: Graph) -> bool:
    """Compose slice/flip/pad chains, permutes of size-1 dims, movement of constants."""
    changed_any = False
    for _ in range(20):
        changed = False
        for n in g.nodes():
            if n.is_placeholder or n not in g:
                continue
            if _rewrite(g, n):
                changed = True
        if not changed:
            break
        from .dce import dce
        dce(g)
        changed_any = True
    return changed_any
