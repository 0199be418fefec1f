"""Attention written out as ops, found in a forward graph and replaced by one `attention` node.

In: a forward Graph, before its backward graph is built (ember/compiler/compiled.py).  Out: the same
Graph, each match of

    scores = matmul(q, permute(k, last two dims swapped))     q may be q * c (the scale applied first)
    scores = scores * c, or scores / c                          optional
    scores = where(masked, fill, scores)                        optional (masked_fill, fill -inf or finite, before or
                                                                after the scale); or where(keep, scores, fill)
    p      = softmax(scores) along the last dim                 max (through stop_gradient), sub, exp, sum, div
    p      = p * (cast(random(key) >= d) * keep)                optional: F.dropout(p, d) in training
    out    = matmul(p, v)

replaced by `attention(q, k, v, masked, scale=c, fill=...)` (ember/ir/ops.py), whose gradient is one
`attention_grad` node; both run the fused kernels of ember/runtime/attention.py.  Under autocast the same
pattern has bf16 (or float16) products around a float32 softmax -- q, k, v low, `cast` to float32 before
the softmax and back before the second product: the match is then
`cast(attention(cast(q), cast(k), cast(v), ...), low)`, the kernels computing in float32 on upcast copies
and the result rounded once (the scores and probabilities are no longer rounded to bf16 in between -- what
PyTorch's fused CPU attention does with bf16 inputs too).  Written by hand the
pattern cost six batched products and four kernels a layer with the [L, S] scores, the probabilities and
their gradients each written to memory and read back.  A match needs every intermediate value used only
inside the pattern (attention weights a model returns keep the ops), float32 values on the CPU (the
fused kernels' dtype; or the autocast form above) and equal batch dims of q, k and v.

    replaced = fuse_attention(graph)     # {the pattern's last matmul: its attention node}
    run_passes(graph, "attention")       # the same as a registered pass (IR text tests)
"""
from __future__ import annotations

import math

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.graph import Graph, Node

from .dce import dce
from .registry import register_pass

__all__ = ["fuse_attention", "attention_pass"]


@register_pass("attention")
def attention_pass(g: Graph) -> bool:
    """Attention written out as ops -> one attention node (the compile driver runs it on forward graphs)."""
    return bool(fuse_attention(g))


def fuse_attention(g: Graph) -> dict:
    found = {}
    for n in g.nodes():
        if n.op == "matmul" and n in g:
            m = _match(g, n)
            if m is not None:
                q, k, v, masked, negate, scale, fill, (key, p, keep), low = m
                if low is not None:
                    q, k, v = (g.add("cast", [x], {"dtype": dt.float32}, device=x.device, meta=dict(n.meta))
                               for x in (q, k, v))
                if negate:
                    masked = g.add("logical_not", [masked], device=masked.device)
                if masked is None:
                    masked = g.add("full", [], {"shape": (), "value": False, "dtype": dt.bool_}, device=n.device)
                if key is None:         # no dropout: the key is never read
                    key = g.add("full", [], {"shape": (2,), "value": 0, "dtype": dt.int64}, device=n.device)
                attrs = {"scale": scale, "fill": fill, "p": p, "keep": keep}
                node = g.add("attention", [q, k, v, masked, key], attrs, device=n.device, meta=dict(n.meta))
                if low is not None:
                    node = g.add("cast", [node], {"dtype": low}, device=n.device, meta=dict(n.meta))
                g.replace_all_uses(n, node)
                found[n] = node
    if found:
        dce(g)
    return found


def _match(g: Graph, out: Node):
    """(q, k, v, mask node or None, whether the mask keeps rather than masks, scale, fill, (dropout key node
    or None, p, keep), the autocast dtype or None) when `out` ends an attention pattern, else None."""
    p, v = out.inputs
    inner: list[Node] = []
    low = None
    if p.op == "cast" and p.dtype in (dt.bfloat16, dt.float16) and v.dtype is p.dtype:   # autocast's form
        inner.append(p)
        low, p = p.dtype, p.inputs[0]
    if p.dtype is not dt.float32 or out.device != "cpu" or len(p.shape) < 2:
        return None
    last = len(p.shape) - 1
    p, dropout = _dropout(p, inner)
    inner.append(p)
    if p.op != "div":
        return None
    e, s = p.inputs
    if s.op != "sum" or s.inputs[0] is not e or not _last_dim(s, last) or e.op != "exp":
        return None
    d = e.inputs[0]
    if d.op != "sub":
        return None
    w, mx = d.inputs
    if mx.op != "max" or not _last_dim(mx, last):
        return None
    src = mx.inputs[0]
    if src.op == "stop_gradient":
        inner.append(src)
        src = src.inputs[0]
    if src is not w:
        return None
    inner += [s, e, d, mx]
    if low is not None:     # the low scores cast up for the softmax
        if w.op != "cast" or w.inputs[0].dtype is not low:
            return None
        inner.append(w)
        w = w.inputs[0]
    # from the softmax's input down to the product: a masked_fill (where with a constant) and a scale (mul or
    # div by a constant), each optional, in either order; under autocast a scale bf16 cannot hold is applied
    # in float32 between casts (compiler/reduced_numbers.py): the casts are peeled too
    masked, negate, fill, scale, x = None, False, -math.inf, 1.0, w
    for _ in range(4):
        if (low is not None and x.op == "cast" and x.dtype in (low, dt.float32)
                and x.inputs[0].dtype in (low, dt.float32)):
            below = x.inputs[0]
        elif x.op == "where" and masked is None:
            cond, a, b = x.inputs
            if _scalar(a) is not None and _scalar(b) is None:
                masked, c, below = cond, _scalar(a), b
            elif _scalar(b) is not None and _scalar(a) is None:
                masked, negate, c, below = cond, True, _scalar(b), a
            else:
                return None
            if masked.dtype is not dt.bool_ or tuple(below.shape) != tuple(x.shape):
                return None
            # a scale peeled above it applies to the fill too (float32, as the unfused ops round it)
            fill = float(np.float32(c) * np.float32(scale)) if scale != 1.0 else c
        elif x.op in ("mul", "div") and scale == 1.0:
            a, b = x.inputs
            if x.op == "mul" and _scalar(b) is not None:
                scale, below = _scalar(b), a
            elif x.op == "mul" and _scalar(a) is not None:
                scale, below = _scalar(a), b
            elif x.op == "div" and _scalar(b):
                scale, below = float(np.float32(1.0) / np.float32(_scalar(b))), a
            else:
                return None
        else:
            break
        inner.append(x)
        x = below
    mm = x
    if mm.op != "matmul":
        return None
    q, kt = mm.inputs
    inner.append(mm)
    if kt.op != "permute" or tuple(kt.attrs["dims"]) != tuple(range(last - 1)) + (last, last - 1):
        return None
    k = kt.inputs[0]
    if q.op == "mul" and scale == 1.0:          # the scale on q, before the product (multi-head attention's)
        a, b = q.inputs
        c, q0 = (_scalar(b), a) if _scalar(b) is not None else (_scalar(a), b)
        if c is not None:
            inner.append(q)
            q, scale = q0, c
    want = low or dt.float32
    if (tuple(q.shape[:-2]) != tuple(k.shape[:-2]) or tuple(q.shape[:-2]) != tuple(v.shape[:-2])
            or q.dtype is not want or k.dtype is not want or v.dtype is not want):
        return None
    outputs = set(g.outputs) | {val for _, val in g.mutations}
    members = set(inner) | {out}
    for x in inner:
        if x in outputs or any(u not in members for u in g.users(x)):
            return None
    return q, k, v, masked, negate, scale, fill, dropout, low


def _dropout(x: Node, inner: list):
    """(the probabilities, (key, p, keep)) when x is F.dropout of them -- x * (cast(random(key) >= p) * keep),
    the uniform draw shaped like them -- else (x, (None, 0.0, 1.0)); the dropout's nodes join `inner`."""
    none = (x, (None, 0.0, 1.0))
    if x.op != "mul":
        return none
    for probs, factor in (x.inputs, x.inputs[::-1]):
        if factor.op != "mul":
            continue
        mask, keep = factor.inputs
        if _scalar(keep) is None:
            mask, keep = keep, mask
        cast = mask
        if _scalar(keep) is None or cast.op != "cast" or cast.dtype is not dt.float32:
            continue
        ge = cast.inputs[0]
        if ge.op != "ge" or _scalar(ge.inputs[1]) is None:
            continue
        draw = ge.inputs[0]
        if (draw.op != "random" or draw.attrs.get("dist") != "uniform" or draw.dtype is not dt.float32
                or tuple(draw.shape) != tuple(probs.shape)):
            continue
        p = float(np.float32(_scalar(ge.inputs[1])))
        if not 0.0 < p < 1.0:
            continue
        inner += [x, factor, cast, ge, draw]
        return probs, (draw.inputs[0], p, float(np.float32(_scalar(keep))))
    return none


def _last_dim(n: Node, last: int) -> bool:
    dims = n.attrs.get("dims")
    return bool(n.attrs.get("keepdim")) and dims is not None and [d % (last + 1) for d in dims] == [last]


def _scalar(n: Node):
    """The value of a scalar constant (full, maybe expanded or reshaped), else None."""
    while n.op in ("expand", "reshape") and n.inputs:
        n = n.inputs[0]
    if n.op == "full" and math.prod(n.attrs["shape"]) == 1:
        v = n.attrs["value"]
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return None
