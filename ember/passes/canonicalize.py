"""canonicalize: algebraic simplification and identity movement ops.

In: a Graph.  Out: the same Graph (in place), rewritten to a fixed point by these rules (x is any
value, c a `full` constant; a rule fires only when the result keeps the node's exact type):

    x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1, x ** 1  ->  x
    neg(neg(x)), logical_not(logical_not(x))            ->  x
    x - x                                               ->  0      (integer dtypes only: for floats
                                                                    inf - inf and nan - nan are nan)
    x * 0                                               NOT folded for floats (nan * 0, inf * 0)
    where(c, a, b) with a constant condition            ->  a or b
    where(c, a, a)                                      ->  a
    reshape(reshape(x)), expand(expand(x))              ->  one reshape / expand
    permute(permute(x))                                 ->  one permute (identity permute -> x)
    reshape / expand to the same shape, identity permute, slice of the full range, pad by zeros  ->  x
    sum/max/min/prod over no dims                       ->  x
    sum/max/min/prod over size-1 dims only              ->  reshape(x)

`x + 0 -> x` turns -0.0 + 0.0 (= +0.0) into -0.0: the one float rule that is not bit-exact,
kept because every compiler makes it and no comparison can tell the two zeros apart.
"""
from __future__ import annotations

import math

from ember.ir.graph import Graph, Node

from .manager import register_pass, replace_node

__all__ = ["canonicalize", "const_value"]

_MAX_ROUNDS = 20


def const_value(n: Node):
    """The scalar held by a `full` node (None for anything else)."""
    if n.op == "full":
        return n.attrs["value"]
    return None


def _is(n: Node, value) -> bool:
    v = const_value(n)
    if v is None or isinstance(v, bool) != isinstance(value, bool):
        return False
    try:
        return float(v) == float(value) and not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def _rewrite(g: Graph, n: Node) -> bool:
    op = n.op
    ins = n.inputs
    if op in ("add", "sub", "mul", "div", "pow"):
        a, b = ins
        if op == "add" and _is(b, 0):
            return replace_node(g, n, a)
        if op == "add" and _is(a, 0):
            return replace_node(g, n, b)
        if op == "sub" and _is(b, 0):
            return replace_node(g, n, a)
        if op in ("mul",) and _is(b, 1):
            return replace_node(g, n, a)
        if op in ("mul",) and _is(a, 1):
            return replace_node(g, n, b)
        if op in ("div", "pow") and _is(b, 1):
            return replace_node(g, n, a)
        if op == "sub" and a is b and not n.dtype.is_floating_point and n.dtype.category == 1:
            z = g.add("full", [], {"shape": n.shape, "value": 0, "dtype": n.dtype}, device=n.device,
                      meta=dict(n.meta))
            return replace_node(g, n, z)
        return False
    if op in ("neg", "logical_not"):
        x = ins[0]
        if x.op == op:
            return replace_node(g, n, x.inputs[0])
        return False
    if op == "where":
        c, a, b = ins
        if a is b:
            return replace_node(g, n, a)
        v = const_value(c)
        if v is not None:
            return replace_node(g, n, a if v else b)
        return False
    if op == "reshape":
        x = ins[0]
        if tuple(n.attrs["shape"]) == x.shape:
            return replace_node(g, n, x)
        if x.op == "reshape":
            g.set_input(n, 0, x.inputs[0])
            return True
        return False
    if op == "expand":
        x = ins[0]
        if tuple(n.attrs["shape"]) == x.shape:
            return replace_node(g, n, x)
        if x.op == "expand":
            g.set_input(n, 0, x.inputs[0])
            return True
        return False
    if op == "permute":
        x = ins[0]
        dims = tuple(n.attrs["dims"])
        if dims == tuple(range(len(dims))):
            return replace_node(g, n, x)
        if x.op == "permute":
            inner = tuple(x.attrs["dims"])
            n.attrs["dims"] = tuple(inner[d] for d in dims)
            g.set_input(n, 0, x.inputs[0])
            return True
        return False
    if op == "slice":
        x = ins[0]
        a = n.attrs
        if all(s0 == 0 and s1 == m and st == 1 for s0, s1, st, m in zip(a["starts"], a["stops"], a["steps"], x.shape)):
            return replace_node(g, n, x)
        return False
    if op == "pad":
        if all(lo == 0 and hi == 0 for lo, hi in n.attrs["pads"]):
            return replace_node(g, n, ins[0])
        return False
    if op in ("sum", "max", "min", "prod"):
        x = ins[0]
        dims = n.attrs["dims"]
        if dims is not None and len(tuple(dims)) == 0:
            return replace_node(g, n, x)
        nd = len(x.shape)
        dl = range(nd) if dims is None else [d % max(nd, 1) for d in dims]
        if nd and all(x.shape[d] == 1 for d in dl):
            if x.shape == n.shape:
                return replace_node(g, n, x)
            r = g.add("reshape", [x], {"shape": n.shape}, device=n.device, meta=dict(n.meta))
            return replace_node(g, n, r)
        return False
    return False


@register_pass("canonicalize")
def canonicalize(g: Graph) -> bool:
    """Algebraic identities and identity / chained movement ops (see the module docstring)."""
    changed_any = False
    for _ in range(_MAX_ROUNDS):
        changed = False
        for n in g.nodes():
            if n.is_placeholder or n not in g:
                continue
            if _rewrite(g, n):
                changed = True
        if changed:
            from .dce import dce
            dce(g)
            changed_any = True
        else:
            break
    return changed_any
