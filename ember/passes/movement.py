"""movement: compose chains of movement ops into one op each.

In: a Graph.  Out: the same Graph (in place) where
    slice(slice(x))                -> one slice      (start/step arithmetic)
    flip(flip(x))                  -> flip over the symmetric difference of the dims (none: x)
    pad(pad(x)), same fill value, no crops   -> one pad
    permute(x) that keeps the order of the dims larger than 1  -> reshape(x)
    movement ops of a `full` constant          -> a `full` of the new shape (no copy at all)
    take(x, arange) in range                   -> slice(x)
    index_add(x, arange (step 1), src)         -> x + pad(src)
    permute(a @ b) reading its rows innermost (its only use) -> permute(b^T @ a^T)  (transposed
                                               operands are free for BLAS)

Most movement folding happens inside fusion, not here: a fused kernel reads its inputs through the
composed index map of the movement chain (ember/ir/index.py), so no movement op costs a
copy unless its result is materialised (a graph output, an extern operand that is not a free view).
This pass only shortens chains so that the maps (and the printed graph) stay small.
"""
from __future__ import annotations

from ember.ir.graph import Graph, Node

from .registry import register_pass
from .rewrite import Rules, replace_node, rewrite_to_fixpoint

__all__ = ["movement", "RULES"]

RULES = Rules()     # op -> rules, tried in registration order (ember/passes/rewrite.py)

_VIEW_OPS = ("reshape", "permute", "expand", "slice", "flip", "windows")


def _is_result(g: Graph, n: Node) -> bool:
    return any(o is n for o in g.outputs) or any(v is n for _, v in g.mutations)


@RULES(*_VIEW_OPS)
def _view_of_constant(g: Graph, n: Node):
    """movement of a `full` -> a `full` of the new shape"""
    x = n.inputs[0]
    if x.op != "full":
        return None
    f = g.add("full", [], {"shape": n.shape, "value": x.attrs["value"], "dtype": n.dtype},
              device=n.device, meta=dict(n.meta))
    return replace_node(g, n, f)


@RULES("slice")
def _slice_of_slice(g: Graph, n: Node):
    x = n.inputs[0]
    if x.op != "slice":
        return None
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


@RULES("flip")
def _flip_of_flip(g: Graph, n: Node):
    x = n.inputs[0]
    if x.op != "flip":
        return None
    nd = len(n.shape)
    d1 = {d % max(nd, 1) for d in x.attrs["dims"]}
    d2 = {d % max(nd, 1) for d in n.attrs["dims"]}
    dims = tuple(sorted(d1 ^ d2))
    if not dims:
        return replace_node(g, n, x.inputs[0])
    n.attrs["dims"] = dims
    g.set_input(n, 0, x.inputs[0])
    return True


def _same_fill(a, b) -> bool:
    return a == b or (a != a and b != b)     # nan == nan here


@RULES("pad")
def _pad_of_pad(g: Graph, n: Node):
    x = n.inputs[0]
    if x.op != "pad":
        return None
    p1, p2 = x.attrs["pads"], n.attrs["pads"]
    if _same_fill(x.attrs["value"], n.attrs["value"]) and all(lo >= 0 and hi >= 0 for lo, hi in list(p1) + list(p2)):
        n.attrs["pads"] = tuple((a0 + b0, a1 + b1) for (a0, a1), (b0, b1) in zip(p1, p2))
        g.set_input(n, 0, x.inputs[0])
        return True
    return False


@RULES("permute")
def _transpose_of_matmul(g: Graph, n: Node):
    """permute(a @ b) whose innermost dim is the product's row dim (its only use) -> a permute of
    b^T @ a^T: the transposes become free operand flags, and the permute then reads the product
    along its rows (GPT's key gradient, q^T @ dS read as [B,T,H,D]: its epilogue read the product
    with a stride of T floats)."""
    x = n.inputs[0]
    if x.op != "matmul" or len(g.users(x)) != 1 or _is_result(g, x):
        return None
    nd = len(n.shape)
    dims = tuple(n.attrs["dims"])
    a, b = x.inputs
    if nd < 2 or dims[-1] != nd - 2 or len(a.shape) != nd or len(b.shape) != nd:
        return None
    swap = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    bt = g.add("permute", [b], {"dims": swap}, device=n.device, meta=dict(n.meta))
    at = g.add("permute", [a], {"dims": swap}, device=n.device, meta=dict(n.meta))
    m = g.add("matmul", [bt, at], {}, device=n.device, meta=dict(x.meta))
    rest = tuple(swap[d] for d in dims)             # n reads m = x^T through these dims
    if rest == tuple(range(nd)):
        return replace_node(g, n, m)
    return replace_node(g, n, g.add("permute", [m], {"dims": rest}, device=n.device, meta=dict(n.meta)))


def _arange_run(n: Node, idx: Node, size) -> tuple | None:
    """(start, count, step) of an index that is an in-range arange along a dim of `size`, or None."""
    if idx.op != "arange":
        return None
    a = idx.attrs
    s, k, cnt = a["start"], a["step"], a["n"]
    if not all(isinstance(v, int) for v in (s, k, cnt, size)) or k < 1 or cnt < 1:
        return None
    if s < 0 or s + (cnt - 1) * k >= size:
        return None                 # out of range: the op's own IndexError stays
    return s, cnt, k


@RULES("take")
def _take_of_arange(g: Graph, n: Node):
    """take(x, arange(s, s + k*n, k), dim) -> slice (positional embeddings: no gather)"""
    x, idx = n.inputs
    d = n.attrs["dim"] % len(x.shape)
    run = _arange_run(n, idx, x.shape[d])
    if run is None:
        return None
    s, cnt, k = run
    nd = len(x.shape)
    starts = tuple(s if i == d else 0 for i in range(nd))
    stops = tuple(s + (cnt - 1) * k + 1 if i == d else x.shape[i] for i in range(nd))
    steps = tuple(k if i == d else 1 for i in range(nd))
    sl = g.add("slice", [x], {"starts": starts, "stops": stops, "steps": steps}, device=n.device, meta=dict(n.meta))
    return replace_node(g, n, sl)


@RULES("index_add")
def _index_add_of_arange(g: Graph, n: Node):
    """index_add(x, arange(s, s + n), src, dim) -> x + pad(src): the positional embedding's gradient
    fuses into a kernel instead of an eager scatter (110 us in the GPT step)"""
    x, idx, src = n.inputs
    d = n.attrs["dim"] % len(x.shape)
    run = _arange_run(n, idx, x.shape[d])
    if run is None or run[2] != 1:
        return None
    s, cnt, _ = run
    pads = tuple((s, x.shape[d] - s - cnt) if i == d else (0, 0) for i in range(len(x.shape)))
    zero = False if x.dtype.name == "bool" else (0.0 if x.dtype.is_floating_point else 0)
    padded = g.add("pad", [src], {"pads": pads, "value": zero}, device=n.device, meta=dict(n.meta))
    return replace_node(g, n, g.add("add", [x, padded], {}, device=n.device, meta=dict(n.meta)))


@RULES("permute")
def _permute_of_unit_dims(g: Graph, n: Node):
    """a permute that keeps the order of the dims larger than 1 only inserts/drops 1s: a reshape"""
    x = n.inputs[0]
    big = [d for d in n.attrs["dims"] if x.shape[d] != 1]
    if big != sorted(big):
        return None
    r = g.add("reshape", [x], {"shape": n.shape}, device=n.device, meta=dict(n.meta))
    return replace_node(g, n, r)


@register_pass("movement")
def movement(g: Graph) -> bool:
    """Compose slice/flip/pad chains, permutes of size-1 dims, movement of constants."""
    return rewrite_to_fixpoint(g, RULES)
