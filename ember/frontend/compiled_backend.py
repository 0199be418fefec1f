"""The compiling backends: captured graphs -> passes -> fused kernel IR -> LLVM (CPU) or CUDA C (GPU).

`build(cg, choice, cf)` gives a CompiledGraph executors for its forward (and backward) graph:
  graph --ember.passes.compile_graph--> Program (kernels, externs, eager steps, memory plan)
        --ember.runtime.executor.Executor(program, runner)--> generated Python that calls the kernels.
If the compiler cannot take a graph (an error in a pass or in code generation), that graph runs on
the reference interpreter instead, and an F002 record says why: results stay correct, and visible.
"""
from __future__ import annotations

from . import records
from .interpreter import Interpreter
from .records import Record


def _runner(choice, device):
    if choice == "cuda" or device.type == "cuda":
        from ..runtime import cuda as cuda_rt
        return cuda_rt.runner()
    return "llvm"


def _build_one(cg, which, graph, choice, cf, alias_outputs=()):
    from ..passes import compile_graph
    from ..runtime.executor import Executor
    dump = getattr(cg, "dump", None)
    try:
        program = compile_graph(graph, dump_dir=dump if dump is not None else "", alias_outputs=alias_outputs)
        ex = Executor(program, runner=_runner(choice, cg.device))
    except Exception as e:  # the compiler could not take this graph: interpret it, and say so
        records.emit(Record("fallbacks", "F002", f"{which} graph runs on the reference interpreter: "
                            f"{type(e).__name__}: {e}", "?", fn=cf.name,
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


def build(cg, choice, cf):
    bw = cg.backward
    # outputs saved only for backward never reach the user: they may alias inputs
    alias = tuple(range(bw["n_user"], len(cg.graph.outputs))) if bw else ()
    cg.forward_exec = _build_one(cg, "forward", cg.graph, choice, cf, alias)
    if bw:
        cg.backward_exec = _build_one(cg, "backward", bw["graph"], choice, cf)
    cg.backend = choice
