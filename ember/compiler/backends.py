"""Backends: turn a CompiledGraph's graphs into executors.

"eager"/"interpreter": the reference interpreter over the captured graph (the eager kernels).
"llvm" / "cuda": captured graphs -> passes -> fused kernel IR -> LLVM (CPU) or CUDA C (GPU).
"auto" (and "inductor", torch.compile's default name): cuda for CUDA tensors, llvm otherwise.

`build(cg, backend, fn_name, dump)` returns (forward executor, backward executor or None, backend name):
  graph --ember.passes.compile_graph--> Program (kernels, externs, eager steps, memory plan)
        --ember.runtime.executor.Executor(program, runner)--> generated Python that calls the kernels.
If the compiler cannot take a graph (an error in a pass or in code generation), that graph runs on
the reference interpreter instead, and an F002 record says why: results stay correct, and visible.
"""
from __future__ import annotations

from .. import diagnostics as records
from ..diagnostics import Record
from ..passes import compile_graph
from ..runtime.executor import Executor
from .interpreter import Interpreter


def _runner(choice, device):
    if choice == "cuda" or device.type == "cuda":
        from ..runtime import cuda as cuda_rt
        return cuda_rt.runner()
    return "llvm"


def _build_one(cg, which, graph, choice, fn_name, dump, alias_outputs=()):
    try:
        program = compile_graph(graph, dump_dir=dump if dump is not None else "", alias_outputs=alias_outputs)
        ex = Executor(program, runner=_runner(choice, cg.device))
    except Exception as e:  # the compiler could not take this graph: interpret it, and say so
        records.emit(Record("fallbacks", "F002", f"{which} graph runs on the reference interpreter: "
                            f"{type(e).__name__}: {e}", "?", fn=fn_name,
                            hint="report this as an ember compiler bug; results are still correct"))
        if dump is not None:
            dump.missing(f"{which} program", f"{type(e).__name__}: {e}")
        return Interpreter(graph, cg.device.xp)
    if dump is not None:
        dump.program(program, which)
        dump.executor(ex.source, which)
        module = getattr(ex.runner, "module", None)
        if module is not None and getattr(module, "llvm_ir", None):
            dump.llvm(module.llvm_ir, which=which)
        src = getattr(ex.runner, "cuda_source", None)
        if src:
            dump.cuda(src, which)
    return ex


def build(cg, backend: str, fn_name: str, dump=None) -> tuple:
    """Executors for cg's forward and backward graphs, and the name of the backend that built them."""
    choice = backend
    if backend in ("auto", "inductor"):
        choice = "cuda" if cg.device.type == "cuda" else "llvm"
    bw = cg.backward
    if choice in ("eager", "interpreter"):
        xp = cg.device.xp
        return Interpreter(cg.graph, xp), (Interpreter(bw.graph, xp) if bw else None), "eager"
    # outputs saved only for backward never reach the user: they may alias inputs
    alias = tuple(range(bw.n_user, len(cg.graph.outputs))) if bw else ()
    fwd = _build_one(cg, "forward", cg.graph, choice, fn_name, dump, alias)
    bwd = _build_one(cg, "backward", bw.graph, choice, fn_name, dump) if bw else None
    return fwd, bwd, choice
