"""constant_fold: evaluate ops whose inputs are all constants.

In: a Graph.  Out: the same Graph (in place) where an elementwise op, cast or reduction whose
inputs are all uniform `full` constants (or a 1-element `arange`) is replaced by a `full` holding
the result, evaluated with numpy by the op's reference semantics (`ref` in ember/ir/ops.py: the
definition eager mode and the kernel-IR evaluator use too).  A result that is not uniform (an op on
an `arange` of several elements) is left as it is: it costs nothing inside a fused kernel, where an
arange is an index.
Movement ops of constants are folded by the `movement` pass.
"""
from __future__ import annotations

from ember.ir.symbolic import SymInt

import math

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.graph import Graph, Node
from ember.ir.ops import OPS

from .dce import dce
from .registry import register_pass
from .rewrite import replace_node

_MAX_REDUCE_NUMEL = 1 << 16


def _scalar(n: Node):
    """numpy 0-d array of a uniform constant node, else None."""
    if any(isinstance(v, SymInt) for v in n.attrs.values()):    # a size read at run time
        return None
    if n.op == "full":
        return np.array(n.attrs["value"]).astype(n.dtype.np)
    if n.op == "arange" and n.attrs["n"] == 1:
        return np.array(n.attrs["start"]).astype(n.dtype.np)
    return None


def _python(v: np.ndarray, dtype):
    v = v.item()
    if dtype is dt.bool_:
        return bool(v)
    if dtype.is_floating_point:
        return float(v)
    return int(v)


def _evaluate(n: Node, vals):
    d = OPS[n.op]
    if not d.kernel_op:
        return None
    with np.errstate(all="ignore"):
        if d.kind == "binary":
            a, b = vals
            if n.dtype.is_integer and n.op in ("floor_divide", "remainder") and b == 0:
                return None   # eager raises ZeroDivisionError: keep it for run time
            if n.op == "pow" and n.dtype.is_integer and b < 0:
                return None
        if d.kind == "reduce":
            return _reduce(n, d, vals[0])
        return d.ref(np, *vals, **n.attrs)


def _reduce(n: Node, d, v):
    x = n.inputs[0]
    if n.op not in ("sum", "max", "min", "prod") or (n.op in ("sum", "prod") and x.dtype is dt.bool_):
        return None
    if math.prod(x.shape) > _MAX_REDUCE_NUMEL or math.prod(x.shape) == 0:
        return None
    arr = np.full(x.shape, v, dtype=x.dtype.np)
    r = np.asarray(d.ref(np, arr, **n.attrs)).astype(n.dtype.np)
    flat = r.reshape(-1)
    if flat.size and not np.all((flat == flat[0]) | (np.isnan(flat) & np.isnan(flat[0]))):
        return None
    return flat[0] if flat.size else None


@register_pass("constant_fold")
def constant_fold(g: Graph) -> bool:
    """Replace ops on uniform constants by a `full` of the result."""
    changed = False
    for n in g.nodes():
        if n.is_placeholder or not n.inputs or n.op == "random":
            continue
        vals = [_scalar(i) for i in n.inputs]
        if any(v is None for v in vals):
            continue
        try:
            r = _evaluate(n, vals)
        except (TypeError, ValueError):
            r = None
        if r is None:
            continue
        value = _python(np.asarray(r).astype(n.dtype.np), n.dtype)
        f = g.add("full", [], {"shape": n.shape, "value": value, "dtype": n.dtype}, device=n.device,
                  meta=dict(n.meta))
        if replace_node(g, n, f):
            changed = True
        else:
            g.erase(f)
    if changed:
        dce(g)
    return changed
