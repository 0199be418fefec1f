"""ember.passes: Graph -> Graph cleanup passes, the pass manager, fusion into kernel IR, memory planning.

    from ember.passes import compile_graph
    program = compile_graph(graph)            # copy -> cleanup pipeline -> fusion -> memory plan
    print(program)                            # kernels, externs, fallbacks, buffers, decisions

    from ember.runtime.executor import Executor
    outs = Executor(program, "numpy").run(arrays)   # or the device "llvm", "cuda"

Pieces (one module each): registry (Pass, PASSES, register_pass), manager (Pipeline: run, verify,
time, dump), rewrite (rule tables, the fixed-point driver, replace_node), decompose, canonicalize,
movement, constant_fold, cse, dce, attention (graph passes, in place), fusion (a package: Graph -> Program of
kernel IR), then on the Program: loop_order (contiguous innermost loops), layout (buffers in their
producer's loop order, transposed copies for strided window reads), unroll (short shared axes
written once per point), memory (liveness-based buffer reuse).  Importing this package imports every pass
module, which is what fills PASSES.  The Program data structure is ember.ir.program,
the index algebra fusion uses ember.ir.index.
"""
from __future__ import annotations

import time

from .registry import PASSES, Pass, get_pass, register_pass
from .manager import DEFAULT_PASSES, PassError, PassTiming, Pipeline, dump_dir_from_env, run_passes
# the built-in passes: importing a pass module registers its pass (the one place they are loaded)
from . import attention, canonicalize, constant_fold, cse, dce, decompose, movement  # noqa: F401
from .fusion import FusionOptions, classify, fuse
from .layout import relayout_program, transpose_gathers
from .loop_order import reorder_program
from .implicit_gemm import implicit_gathers
from .unroll import unroll_program
from .memory import MemoryPlan, plan_memory
from ember.ir.program import EagerStep, ExternStep, FusionRecord, KernelStep, Program, Value

__all__ = ["compile_graph", "optimize", "Pipeline", "Pass", "PASSES", "DEFAULT_PASSES", "register_pass",
           "get_pass", "run_passes", "PassError", "PassTiming", "fuse", "classify", "FusionOptions",
           "plan_memory", "MemoryPlan", "Program", "KernelStep", "ExternStep", "EagerStep", "FusionRecord",
           "Value"]


def optimize(graph, passes=DEFAULT_PASSES, verify: bool = False, dump_dir=None, copy: bool = True):
    """Run the cleanup pipeline on (a copy of) graph; returns (graph, pipeline) -- the pipeline
    keeps per-pass timings."""
    g = graph.copy()[0] if copy else graph
    pipe = Pipeline(passes)
    pipe.run(g, verify=verify, dump_dir=dump_dir)
    return g, pipe


def compile_graph(graph, passes=DEFAULT_PASSES, verify: bool = False, dump_dir=None,
                  fusion: FusionOptions | None = None, inplace: bool = True,
                  alias_outputs=()) -> Program:
    """Captured Graph -> scheduled Program with a memory plan (the graph itself is not changed).

    alias_outputs: positions of outputs the caller never hands to the user (saved for backward):
    those may be returned as views of input arrays.
    Timings per stage are in program.timings ({"passes": [PassTiming], "fusion_s", "memory_s"});
    with dump_dir (or EMBER_DUMP) the graph after each pass, the program and its plan are written."""
    dump_dir = dump_dir if dump_dir is not None else dump_dir_from_env()
    prefix = f"{graph.name}." if dump_dir else ""
    g = graph.copy()[0]
    pipe = Pipeline(passes)
    pipe.run(g, verify=verify, dump_dir=dump_dir, dump_prefix=prefix)
    t0 = time.perf_counter()
    if fusion is None:
        fusion = FusionOptions(alias_outputs=alias_outputs)
    program = fuse(g, fusion)
    reorder_program(program)     # contiguous innermost loops (ember/passes/loop_order.py)
    # buffers in their producer's loop order, strided window reads from a transposed copy
    # (ember/passes/layout.py)
    if relayout_program(program) + transpose_gathers(program):
        reorder_program(program)
    unroll_program(program)      # short shared axes written once per point (ember/passes/unroll.py)
    implicit_gathers(program)    # an im2col only products read is gathered by them (passes/implicit_gemm.py)
    t1 = time.perf_counter()
    plan_memory(program, inplace=inplace)
    t2 = time.perf_counter()
    program.timings = {"passes": pipe.timings, "fusion_s": t1 - t0, "memory_s": t2 - t1}
    if dump_dir:
        program.dump(dump_dir, prefix=f"{prefix}{len(pipe.passes) + 1:02d}_")
    return program
