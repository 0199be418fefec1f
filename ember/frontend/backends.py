"""Backend selection: turns a CompiledGraph's graphs into executors.

"eager"/"interpreter": the reference interpreter over the captured graph (eager kernels).
"auto": the best available — the LLVM pipeline on the CPU and the CUDA one for cuda tensors when
they are built; the interpreter otherwise.
"""
from __future__ import annotations

from .interpreter import Interpreter


def build(cg, backend, cf):
    xp = cg.device.xp
    choice = backend
    if backend in ("auto", "inductor"):
        choice = _best(cg)
    if choice in ("eager", "interpreter"):
        cg.forward_exec = Interpreter(cg.graph, xp)
        if cg.backward:
            cg.backward_exec = Interpreter(cg.backward["graph"], xp)
        cg.backend = "eager"
        return
    from . import compiled_backend
    compiled_backend.build(cg, choice, cf)


def _best(cg):
    try:
        from . import compiled_backend  # noqa: F401
    except ImportError:
        return "eager"
    return "cuda" if cg.device.type == "cuda" else "llvm"
