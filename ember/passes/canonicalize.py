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

from ember.ir.symbolic import SymInt

import math

from ember.ir.graph import Graph, Node

from .registry import register_pass
from .rewrite import Rules, replace_node, rewrite_to_fixpoint

__all__ = ["canonicalize", "const_value", "RULES"]

RULES = Rules()     # op -> rules, tried in registration order (ember/passes/rewrite.py)


def const_value(n: Node):
    """The scalar held by a `full` node (None for anything else)."""
    if n.op == "full" and not isinstance(n.attrs["value"], SymInt):    # (a size read at run time is no constant)
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


# ------------------------------------------------------------------------- arithmetic
_RIGHT_IDENTITY = {"add": 0, "sub": 0, "mul": 1, "div": 1, "pow": 1}
_LEFT_IDENTITY = {"add": 0, "mul": 1}


@RULES(*_RIGHT_IDENTITY)
def _right_identity(g: Graph, n: Node):
    """x + 0, x - 0, x * 1, x / 1, x ** 1 -> x"""
    a, b = n.inputs
    return replace_node(g, n, a) if _is(b, _RIGHT_IDENTITY[n.op]) else None


@RULES(*_LEFT_IDENTITY)
def _left_identity(g: Graph, n: Node):
    """0 + x, 1 * x -> x"""
    a, b = n.inputs
    return replace_node(g, n, b) if _is(a, _LEFT_IDENTITY[n.op]) else None


@RULES("sub")
def _sub_self(g: Graph, n: Node):
    """x - x -> 0 for integers (for floats inf - inf and nan - nan are nan)"""
    a, b = n.inputs
    if a is not b or not n.dtype.is_integer:
        return None
    z = g.add("full", [], {"shape": n.shape, "value": 0, "dtype": n.dtype}, device=n.device, meta=dict(n.meta))
    return replace_node(g, n, z)


@RULES("neg", "logical_not")
def _double_negation(g: Graph, n: Node):
    x = n.inputs[0]
    return replace_node(g, n, x.inputs[0]) if x.op == n.op else None


@RULES("where")
def _where_same_branches(g: Graph, n: Node):
    _, a, b = n.inputs
    return replace_node(g, n, a) if a is b else None


@RULES("where")
def _where_constant_condition(g: Graph, n: Node):
    c, a, b = n.inputs
    v = const_value(c)
    return replace_node(g, n, a if v else b) if v is not None else None


# ---------------------------------------------------------------------- movement ops
@RULES("reshape", "expand")
def _to_same_shape(g: Graph, n: Node):
    x = n.inputs[0]
    return replace_node(g, n, x) if tuple(n.attrs["shape"]) == x.shape else None


@RULES("reshape", "expand")
def _chain(g: Graph, n: Node):
    """reshape(reshape(x)) -> reshape(x), expand(expand(x)) -> expand(x)"""
    x = n.inputs[0]
    if x.op != n.op:
        return None
    g.set_input(n, 0, x.inputs[0])
    return True


@RULES("permute")
def _identity_permute(g: Graph, n: Node):
    dims = tuple(n.attrs["dims"])
    return replace_node(g, n, n.inputs[0]) if dims == tuple(range(len(dims))) else None


@RULES("permute")
def _permute_of_permute(g: Graph, n: Node):
    x = n.inputs[0]
    if x.op != "permute":
        return None
    inner = tuple(x.attrs["dims"])
    n.attrs["dims"] = tuple(inner[d] for d in n.attrs["dims"])
    g.set_input(n, 0, x.inputs[0])
    return True


@RULES("slice")
def _full_slice(g: Graph, n: Node):
    x, a = n.inputs[0], n.attrs
    full = all(s0 == 0 and s1 == m and st == 1 for s0, s1, st, m in zip(a["starts"], a["stops"], a["steps"], x.shape))
    return replace_node(g, n, x) if full else None


@RULES("pad")
def _zero_pad(g: Graph, n: Node):
    return replace_node(g, n, n.inputs[0]) if all(lo == 0 and hi == 0 for lo, hi in n.attrs["pads"]) else None


# ------------------------------------------------------------------------ reductions
_REDUCTIONS = ("sum", "max", "min", "prod")


@RULES(*_REDUCTIONS)
def _reduce_over_no_dims(g: Graph, n: Node):
    dims = n.attrs["dims"]
    return replace_node(g, n, n.inputs[0]) if dims is not None and len(tuple(dims)) == 0 else None


@RULES(*_REDUCTIONS)
def _reduce_over_unit_dims(g: Graph, n: Node):
    """a reduction over size-1 dims only -> reshape(x) (or x itself)"""
    x = n.inputs[0]
    dims = n.attrs["dims"]
    nd = len(x.shape)
    dl = range(nd) if dims is None else [d % max(nd, 1) for d in dims]
    if not (nd and all(x.shape[d] == 1 for d in dl)):
        return None
    if x.shape == n.shape:
        return replace_node(g, n, x)
    r = g.add("reshape", [x], {"shape": n.shape}, device=n.device, meta=dict(n.meta))
    return replace_node(g, n, r)


@register_pass("canonicalize")
def canonicalize(g: Graph) -> bool:
    """Algebraic identities and identity / chained movement ops (see the module docstring)."""
    return rewrite_to_fixpoint(g, RULES)
