"""The capture plan of a compiled program on CUDA: can it become one CUDA graph, and where does every
input and result live when the graph replays.  A pure function of the Program (ember/ir/program.py)
and of which inputs keep their addresses between calls; tested without a GPU.

    plan = plan_capture(program, static=(1, 2))   # inputs 1 and 2: parameters, read in place
    plan.capturable, plan.reasons                 # False, ["eager step e39_index_add (index_add: ...) ..."]
    plan.inputs                                   # ["copied", "static", "static"]
    plan.results                                  # [("output", 0), ("view", 0, (4, 6)), ("input", 2)]

The runner that acts on a plan -- capture, replay, staging, launch accounting -- is
ember/runtime/cuda_graph.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ember.codegen.cuda.strategy import has_gather
from ember.ir.kernel import IndexValue, Kernel, Load
from ember.ir.program import EagerStep, ExternStep, KernelStep, Program, ValueKind

__all__ = ["CapturePlan", "plan_capture", "CAPTURABLE_EXTERNS", "CAPTURABLE_EAGER"]

# Library calls of externs that stream capture accepts (ember/kernels/gpu.py): only device work on
# the current stream, temporaries from the current allocator, no host reads of device values.
CAPTURABLE_EXTERNS = {
    "matmul": "one cuBLAS GEMM into the output",
    "bmm": "one cuBLAS GEMM into the output",
    "conv2d": "padding and im2col copies (temporaries from the graph's private pool), one cuBLAS GEMM",
}

# Eager fallback steps whose CuPy kernels capture: they fill a new array from Python scalars (no
# host read of device values); the array comes from the graph's private pool.  Other eager kernels
# may read device values on the host (index checks, sorting), which a capture cannot hold.
CAPTURABLE_EAGER = {
    "full": "a CuPy fill of a new array",
    "arange": "a CuPy arange into a new array",
}


@dataclass
class CapturePlan:
    """Whether a program can be captured into a CUDA graph, and where its values live in a replay.

    inputs:   per program input, "static" (read in place; its address keys the graph) or "copied"
              (copied into a static buffer before each replay)
    results:  per program result, ("output", k): the instance's k-th output buffer (an array the
              program allocates, or a view of one); ("static_in", i): the static buffer of copied
              input i, which the program wrote in place (a mutation: the caller writes it back into
              its tensor); ("static_in_copy", i): the same handed to the user, as a copy;
              ("view", i, shape): a reshape of input i, made from the caller's array;
              ("input", i): input i itself, the caller's array
    outputs:  value names of the buffers each graph instance owns (in `results` order, no repeats)
    slots:    internal value -> memory-plan slot (shared by every instance and the warm-up)
    deferred_checks: steps whose gather errors are read after the call, not by a sync
    written:  copied inputs the program writes in place (in their static buffers)
    allocating: steps that allocate while they run (library temporaries, capturable eager steps'
              results): in a graph that memory comes from the instance's private pool
    reasons:  why the program cannot be captured (empty when capturable)
    """
    capturable: bool
    reasons: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    results: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    slots: dict = field(default_factory=dict)
    deferred_checks: list = field(default_factory=list)
    allocating: list = field(default_factory=list)
    written: set = field(default_factory=set)

    def stable_results(self) -> set:
        """Positions of results whose arrays a replay does not move: graph-owned outputs, and static
        inputs (or views of them) handed back.  A program fed by these (backward, by the values
        forward saved) may read them in place."""
        return {j for j, (kind, *where) in enumerate(self.results)
                if kind == "output" or (kind in ("input", "view") and self.inputs[where[0]] == "static")}

    def __str__(self) -> str:
        head = "capturable" if self.capturable else "not capturable: " + "; ".join(self.reasons)
        lines = [f"# CUDA graph: {head}",
                 f"#   inputs: {', '.join(self.inputs) or '-'}",
                 f"#   graph-owned outputs: {', '.join(self.outputs) or '-'}"]
        if self.deferred_checks:
            lines.append(f"#   index checks read after the call: {', '.join(self.deferred_checks)}")
        if self.allocating:
            lines.append(f"#   temporaries from the private pool: {', '.join(self.allocating)}")
        return "\n".join(lines)


def _gathers(k: Kernel) -> bool:
    """Does the kernel index through a gather (so the generated code checks indices into `err`)?
    The test the CUDA code generator makes (ember/codegen/cuda/render.py)."""
    for node in k.nodes:
        exprs = node.index if isinstance(node, Load) else (node.index,) if isinstance(node, IndexValue) else ()
        if any(has_gather(e) for e in exprs):
            return True
    return any(has_gather(e) for st in k.stores for e in st.index)


def plan_capture(program: Program, static: Sequence[int] = ()) -> CapturePlan:
    """The capture plan of `program` when the inputs at positions `static` keep their addresses."""
    static = set(static)
    n_in = len(program.inputs)
    bad = sorted(i for i in static if not 0 <= i < n_in)
    if bad:
        raise ValueError(f"program {program.graph.name} has {n_in} inputs: static input positions {bad} "
                         "do not exist")
    reasons, deferred, allocating = [], [], []
    for s in program.steps:
        if isinstance(s, EagerStep):
            if s.op in CAPTURABLE_EAGER:
                allocating.append(s.name)
            else:
                reasons.append(f"eager step {s.name} ({s.op}: {s.reason}) runs an eager kernel, which may read "
                               "device values on the host")
        elif isinstance(s, ExternStep):
            if s.kernel.op not in CAPTURABLE_EXTERNS:
                reasons.append(f"library call {s.name} ({s.kernel.op}) is not known to be capturable")
            elif s.kernel.op == "conv2d":
                allocating.append(s.name)
            ep = s.kernel.epilogue
            if ep is not None and _gathers(ep):
                deferred.append(s.name)
        elif isinstance(s, KernelStep) and _gathers(s.kernel):
            deferred.append(s.name)
    if not program.steps:
        reasons.append("the program launches nothing")
    index = {name: i for i, name in enumerate(program.inputs)}
    # inputs the program writes in place: a copied one is written in its static buffer
    written = {index[w] for st in program.steps for w in st.writes if w in index and index[w] not in static}
    results, outputs = [], []
    for j, name in enumerate(program.results):
        v = program.values[name]
        if name in index:
            i = index[name]
            if i not in written:
                results.append(("input", i))
            elif j >= program.n_outputs:        # a mutation: the caller writes it back at once
                results.append(("static_in", i))
            else:                               # handed to the user: a copy of the static buffer
                results.append(("static_in_copy", i))
        elif v.kind is ValueKind.VIEW and v.base in index:
            if index[v.base] in written:
                reasons.append(f"result {name} is a view of input {v.base}, which the program writes in place")
            results.append(("view", index[v.base], tuple(v.shape)))
        elif v.kind in (ValueKind.OUTPUT, ValueKind.EAGER) or v.kind is ValueKind.VIEW:
            # a fresh array per call, or a view of one (a saved reshape): the instance keeps the
            # array the capture returned and hands the same one out on every replay
            if name not in outputs:
                outputs.append(name)
            results.append(("output", outputs.index(name)))
        else:
            results.append(("other", name))
            reasons.append(f"result {name} is a {v.kind} value, not a buffer a graph can own")
    inputs = ["static" if i in static else "copied" for i in range(n_in)]
    slots = dict(program.memory.assign) if program.memory is not None else {}
    return CapturePlan(not reasons, reasons, inputs, results, outputs, slots, deferred, allocating, written)
