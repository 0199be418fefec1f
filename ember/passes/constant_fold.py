"""constant_fold: evaluate ops whose inputs are all constants.

In: a Graph.  Out: the same Graph (in place) where an elementwise op, cast or reduction whose
inputs are all uniform `full` constants (or a 1-element `arange`) is replaced by a `full` holding
the result, evaluated with numpy under the semantics of ember/ir/kernel_eval.py (the same numpy
functions the eager kernels use).  A result that is not uniform (an op on an `arange` of several
elements) is left as it is: it costs nothing inside a fused kernel, where an arange is an index.
Movement ops of constants are folded by the `movement` pass.
"""
from __future__ import annotations

import math

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.graph import Graph, Node
from ember.ir.kernel_eval import BINARY_NP, UNARY_NP
from ember.ir.ops import OPS

from .dce import dce
from .registry import register_pass
from .rewrite import replace_node

_MAX_REDUCE_NUMEL = 1 << 16


def _scalar(n: Node):
    """numpy 0-d array of a uniform constant node, else None."""
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
    kind = OPS[n.op].kind
    with np.errstate(all="ignore"):
        if kind == "unary" and n.op in UNARY_NP:
            return np.asarray(UNARY_NP[n.op](vals[0]))
        if kind == "binary" and n.op in BINARY_NP:
            a, b = vals
            if n.dtype.category == 1 and n.op in ("floor_divide", "remainder") and b == 0:
                return None   # eager raises ZeroDivisionError: keep it for run time
            if n.op == "pow" and n.dtype.category == 1 and b < 0:
                return None
            return np.asarray(BINARY_NP[n.op](a, b))
        if kind == "ternary":
            return vals[1] if bool(vals[0]) else vals[2]
        if kind == "cast":
            return vals[0].astype(n.dtype.np)
        if kind == "reduce" and n.op in ("sum", "max", "min", "prod"):
            x = n.inputs[0]
            if math.prod(x.shape) > _MAX_REDUCE_NUMEL or math.prod(x.shape) == 0:
                return None
            arr = np.full(x.shape, vals[0], dtype=x.dtype.np)
            dims = n.attrs["dims"]
            axis = None if dims is None else tuple(d % max(len(x.shape), 1) for d in dims)
            if n.op == "sum":
                acc = np.float32 if x.dtype is dt.float16 else x.dtype.np
                if x.dtype is dt.bool_:
                    return None
                r = np.sum(arr, axis=axis, keepdims=n.attrs["keepdim"], dtype=acc)
            elif n.op == "prod":
                if x.dtype is dt.bool_:
                    return None
                r = np.prod(arr, axis=axis, keepdims=n.attrs["keepdim"], dtype=x.dtype.np)
            else:
                r = (np.max if n.op == "max" else np.min)(arr, axis=axis, keepdims=n.attrs["keepdim"])
            r = np.asarray(r).astype(n.dtype.np)
            flat = r.reshape(-1)
            if flat.size and not np.all((flat == flat[0]) | (np.isnan(flat) & np.isnan(flat[0]))):
                return None
            return flat[0] if flat.size else None
    return None


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
