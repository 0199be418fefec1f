"""Backends: turn a CompiledGraph's graphs into executors.

"eager"/"interpreter": the reference interpreter over the captured graph (the eager kernels).
"llvm" / "cuda": captured graphs -> passes -> fused kernel IR -> LLVM (CPU) or CUDA C (GPU).
"auto" (and "inductor", torch.compile's default name): cuda for CUDA tensors, llvm otherwise.

`build(cg, backend, fn_name, dump)` returns (forward executor, backward executor or None, backend name):
  graph --ember.passes.compile_graph--> Program (kernels, externs, eager steps, memory plan)
        --ember.runtime.executor.Executor(program, device, eager kernels)--> generated Python that
        calls the kernels.
If the compiler cannot take a graph (an error in a pass or in code generation), that graph runs on
the reference interpreter instead, and an F002 record says why: results stay correct, and visible.

On CUDA every executor is wrapped in a CudaProgramRunner (ember/runtime/cuda_graph.py): launch
accounting into the compiled function's stats, gather errors read without a host sync, and with
`cuda_graphs` (mode="reduce-overhead") one CUDA graph replay per call.  Graph inputs bound to
parameters and buffers are static (read in place); the backward graph's saved values are too.  What
the runner reports (not capturable, captured, recaptured, ...) becomes C00x records.
"""
from __future__ import annotations

from .. import diagnostics as records
from ..diagnostics import Record
from ..frontend import dispatch
from ..passes import compile_graph
from ..runtime.executor import Executor
from .capture import user_source
from .interpreter import Interpreter


def _device(choice, device):
    if choice == "cuda" or device.type == "cuda":
        from ..runtime import cuda as cuda_rt
        return cuda_rt.device()
    return "llvm"


def _build_one(cg, which, graph, choice, fn_name, dump, alias_outputs=()):
    try:
        program = compile_graph(graph, dump_dir=dump if dump is not None else "", alias_outputs=alias_outputs)
        ex = Executor(program, _device(choice, cg.device), eager_kernels=dispatch.KERNELS)
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
        module = ex.module
        if module is not None:
            (dump.llvm if module.language == "llvm" else dump.cuda)(module.text, which=which)
    return ex


def build(cg, backend: str, fn_name: str, dump=None, *, cuda_graphs: bool | None = False,
          stats: dict | None = None) -> tuple:
    """Executors for cg's forward and backward graphs, and the name of the backend that built them.
    cuda_graphs: replay CUDA programs as CUDA graphs (None: for whole training steps only, see
    ember/compiler/modes.py); stats: the compiled function's stats dict, where CUDA runners add
    their launch counts (cg.stats gets them too)."""
    if cuda_graphs is None:
        cuda_graphs = bool(getattr(cg, "opt_guards", ()) or getattr(cg, "grads", None) is not None) \
            and cg.device.type == "cuda"
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
    if choice == "cuda" or cg.device.type == "cuda":
        sinks = (cg.stats,) + ((stats,) if stats is not None else ())
        fwd = _on_cuda(fwd, cg.static_inputs(), cuda_graphs, fn_name, "forward", sinks,
                       immutable=cg.immutable_inputs())
        if bwd is not None:
            # saved values the forward's graphs own (or parameters) keep their addresses: read in
            # place; saved inputs of the call and gradients are copied
            stable = fwd.plan.stable_results() if getattr(fwd, "graphs", False) else set()
            saved = tuple(i for i, (kind, k) in enumerate(bw.plan) if kind == "saved" and bw.n_user + k in stable)
            bwd = _on_cuda(bwd, saved, cuda_graphs, fn_name, "backward", sinks, persistent=())
    elif cuda_graphs:
        _note(fn_name, "forward")("C004", "skipping cudagraphs due to cpu device: the compiled graph runs on the CPU")
    return fwd, bwd, choice


def _note(fn_name: str, which: str):
    """How a CUDA runner reports (code, reason): as a diagnostics record of this function."""
    def note(code: str, reason: str) -> None:
        records.emit(Record("cudagraphs", code, reason, user_source(), fn=fn_name, extra={"graph": which}))
    return note


def _on_cuda(ex, static, cuda_graphs: bool, fn_name: str, which: str, sinks, persistent=None, immutable=()):
    """ex as a CudaProgramRunner (an executor the compiler built; the interpreter fallback stays)."""
    if not isinstance(ex, Executor):
        if cuda_graphs:
            _note(fn_name, which)("C001", f"{which} graph runs on the reference interpreter: no CUDA graph")
        return ex
    from ..runtime.cuda_graph import CudaProgramRunner
    return CudaProgramRunner(ex, static, cuda_graphs, name=fn_name, which=which, stats=sinks,
                             notify=_note(fn_name, which), persistent=persistent, immutable=immutable)
