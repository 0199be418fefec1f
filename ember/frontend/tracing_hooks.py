"""The few places where eager code must ask "is this a traced (value-less) tensor?".

Reading a value (item, bool, numpy, tolist, printing) from a traced tensor is a graph break; an
in-place write into a traced tensor is recorded functionally by the tracer.
"""
from __future__ import annotations

from . import dispatch


def tracing(*tensors) -> bool:
    tr = dispatch.tracer
    return tr is not None and any(tr.is_symbolic(t) for t in tensors)


def value_needed(t, what: str):
    """Called before reading t's values; a traced tensor has none, so this breaks the graph."""
    tr = dispatch.tracer
    if tr is not None and tr.is_symbolic(t):
        tr.graph_break(what, t)


def inplace(dst, result):
    return dispatch.tracer.inplace(dst, result)
