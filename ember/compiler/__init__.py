"""ember.compiler: the compile driver. It sits on top of the stack and may import every layer below.

    capture.py      Tracer: records the primitives a function runs into an ir.Graph; graph breaks
    joint.py        backward graphs traced from the same VJPs eager autograd uses
    grads.py        loss.backward() / autograd.grad inside a trace: gradients in the same graph
    training.py     what a captured training step adds: .grad replay, optimizer hyper-parameter
                    inputs, optimizer and .grad guards
    compiled.py     ember.compile: CompiledFunction (guards, variant cache, recompiles),
                    CompiledGraph (one traced variant), OptimizedModule
    dynamic.py      dynamic sizes: dynamic=True / mark_dynamic / automatic dynamic, shape guards
    split.py        functions that break run in pieces: record once, replay against the pieces
    interpreter.py  the reference backend: runs a graph node by node with the eager kernels
    backends.py     "eager" | "llvm" | "cuda" -> executors (passes, codegen, runtime)
    dump/           dump folders: writer (the hook object), report.json, index.html pictures
    explain.py      ember.explain: ExplainReport

torch.compiler's helpers live here too: is_compiling(), disable(fn).
"""
from __future__ import annotations

from ..frontend import dispatch as _dispatch
from .compiled import CompileError, CompiledFunction, GraphBreakError, compile  # noqa: F401
from .dynamic import mark_dynamic, mark_static, maybe_mark_dynamic  # noqa: F401
from .explain import ExplainReport, explain  # noqa: F401

__all__ = ["compile", "explain", "CompileError", "GraphBreakError", "CompiledFunction", "ExplainReport",
           "is_compiling", "disable", "reset", "mark_dynamic", "maybe_mark_dynamic", "mark_static",
           "cudagraph_mark_step_begin"]


def reset() -> None:
    """Forget every compiled function's variants (torch.compiler.reset / torch._dynamo.reset): the next
    call of each traces and compiles again. Generated code stays in the kernel cache."""
    from .compiled import LIVE
    for cf in list(LIVE):
        cf.reset()


def cudagraph_mark_step_begin() -> None:
    """torch.compiler.cudagraph_mark_step_begin: nothing to mark here -- ember's CUDA graph replays never
    overwrite outputs a caller still holds (ember/runtime/cuda_graph.py captures another instance)."""


def is_compiling() -> bool:
    """True while ember.compile is tracing (torch.compiler.is_compiling)."""
    return _dispatch.tracer is not None


def disable(fn=None, recursive: bool = True):
    """Run `fn` eagerly even when called from compiled code (torch.compiler.disable): its tensor
    values are needed, so calling it while tracing is a graph break."""
    if fn is None:
        return lambda f: disable(f, recursive)
    import functools

    @functools.wraps(fn)
    def eager(*args, **kwargs):
        tracer = _dispatch.tracer
        if tracer is not None:     # raises, or (a call running in pieces) runs the graph so far
            tracer.graph_break(f"call to ember.compiler.disable'd {getattr(fn, '__qualname__', fn)!r}", None)
            from ..frontend.tracing_hooks import eager_now
            with eager_now():
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)
    return eager
