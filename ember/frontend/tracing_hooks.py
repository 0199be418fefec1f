"""The few places where eager code must ask "is this a traced (value-less) tensor?".

Reading a value (item, bool, numpy, tolist, printing) from a traced tensor, or from a tensor the
trace has written in place, is a graph break; an in-place write while a tracer is active is recorded
functionally by the tracer (also into concrete tensors: parameters, optimizer state, `.grad`s).
`set_grad` is how library code assigns `.grad` (zero_grad), so that a compiled training step
replays it; `eager_now` runs a block for real while tracing (optimizer state created on the first step).
"""
from __future__ import annotations

from . import dispatch


def active() -> bool:
    """A tracer is recording on this thread."""
    return dispatch.tracer is not None


def tracing(*tensors) -> bool:
    tr = dispatch.tracer
    return tr is not None and any(tr.is_symbolic(t) for t in tensors)


def value_needed(t, what: str):
    """Called before reading t's values; a traced tensor has none, so this breaks the graph."""
    tr = dispatch.tracer
    if tr is not None and tr.pending(t):
        tr.graph_break(what, t)


def inplace(dst, result):
    return dispatch.tracer.inplace(dst, result)


def set_grad(t, value) -> None:
    """t.grad = value; an active tracer notes the assignment (the compiled call replays it)."""
    tr = dispatch.tracer
    if tr is not None:
        tr.note_grad(t)
    t.grad = value


class eager_now:
    """with eager_now(): ...  runs tensor code for real even while tracing (no tracer on this thread
    inside). For state that must exist as real tensors before the traced code writes it in place."""

    def __enter__(self):
        self._tr = dispatch.tracer
        if self._tr is not None:
            dispatch.tracer = None
        return self

    def __exit__(self, *exc):
        if self._tr is not None:
            dispatch.tracer = self._tr
        return False
