"""The scheduled program: what fusion produces and the executor runs.

In: built by ember/passes/fusion from an optimised Graph.  Out: a `Program` -- an ordered list
of steps over named values -- that ember/passes/memory.py annotates with a buffer plan and
ember/runtime/executor.py turns into Python source.

    Program
      graph        the optimised Graph it was built from
      values       {name: Value}: every array the program touches (graph inputs keep their input
                   names; computed values are buf0, buf1, ... in definition order)
      inputs       value names, one per graph input (in graph input order)
      results      value names: graph outputs, then mutation values (Interpreter.run's convention)
      steps        KernelStep | ExternStep | EagerStep, in execution order
      records      FusionRecord: decisions taken and not taken, with reasons (for the inspect tool)
      memory       a MemoryPlan once memory planning ran (None before)

A step names the values it reads and writes in the order of its kernel's arguments (`args`).
An extern operand may show a value under another shape of the same size (a free reshape of a
contiguous array); ExternStep.views maps such an operand position to that shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ember.ir.dtypes import DType
from ember.ir.kernel import ExternKernel, Kernel

__all__ = ["Value", "ValueKind", "KernelStep", "ExternStep", "EagerStep", "FusionRecord", "FusionKind",
           "Program"]


class _TextEnum(str, Enum):
    """An Enum whose members print as their value (the dump format) and compare equal to it."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class ValueKind(_TextEnum):
    """Who owns a program value's memory (see Value)."""
    INPUT = "input"
    INTERNAL = "internal"
    OUTPUT = "output"
    SCRATCH = "scratch"
    EAGER = "eager"
    VIEW = "view"


class FusionKind(_TextEnum):
    """What a FusionRecord reports."""
    FUSED = "fused"
    NOT_FUSED = "not_fused"
    FALLBACK = "fallback"
    REALIZED = "realized"


@dataclass
class Value:
    """One array of the program.

    kind: INPUT (a graph input, owned by the caller), INTERNAL (lives between steps only:
    planned into reusable slots), OUTPUT (a graph result: allocated fresh on every call),
    SCRATCH (an extern's result consumed only by its fused epilogue: owned by the extern call),
    EAGER (returned by an eager fallback kernel, which allocates it), VIEW (a reshape of the
    graph input named by `base`: an output the caller allowed to alias its input)."""
    name: str
    shape: tuple
    dtype: DType
    kind: ValueKind = ValueKind.INTERNAL
    node: Any = None            # the graph Node it holds (for messages)
    base: str | None = None     # kind VIEW: the input value it is a reshape of

    def __post_init__(self):
        self.kind = ValueKind(self.kind)

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype.short}[{','.join(map(str, self.shape))}] ({self.kind})"


@dataclass
class KernelStep:
    kernel: Kernel
    args: list                  # value names in kernel.args order (inputs, then outputs)
    nodes: list = field(default_factory=list)   # graph nodes computed (stored or inlined) here

    @property
    def name(self) -> str:
        return self.kernel.name

    @property
    def reads(self) -> list:
        return self.args[:len(self.kernel.inputs)]

    @property
    def writes(self) -> list:
        return self.args[len(self.kernel.inputs):]

    def __str__(self) -> str:
        return str(self.kernel)


@dataclass
class ExternStep:
    kernel: ExternKernel
    args: list                  # value names in kernel.args order (inputs, epilogue extras, outputs)
    scratch: str | None = None  # the extern result value when an epilogue consumes it
    views: dict = field(default_factory=dict)   # operand position -> shape it is read as (free reshape)
    nodes: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.kernel.name

    @property
    def reads(self) -> list:
        return self.args[:len(self.args) - len(self.kernel.final_outputs)]

    @property
    def writes(self) -> list:
        return self.args[len(self.args) - len(self.kernel.final_outputs):]

    def __str__(self) -> str:
        return str(self.kernel)


@dataclass
class EagerStep:
    """An op the kernel IR cannot express, run by the eager kernel registered for it
    (ember.frontend.dispatch.KERNELS[op]) at run time."""
    node: Any
    op: str
    attrs: dict
    args: list                  # input value names
    output: str
    reason: str
    id: int = 0

    @property
    def name(self) -> str:
        return f"e{self.id}_{self.op}"

    @property
    def reads(self) -> list:
        return list(self.args)

    @property
    def writes(self) -> list:
        return [self.output]

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return (f"eager {self.name}: {self.output} = {self.op}({', '.join(self.args)}"
                f"{', ' if attrs and self.args else ''}{attrs})   # fallback: {self.reason}")


@dataclass
class FusionRecord:
    """A fusion decision for the inspect tool."""
    kind: FusionKind
    message: str
    nodes: list = field(default_factory=list)     # printed node names (%3, ...)
    source: str = ""                               # user source line of the first node

    def __post_init__(self):
        self.kind = FusionKind(self.kind)

    def __str__(self) -> str:
        where = f"  [{self.source}]" if self.source else ""
        names = f" ({', '.join(self.nodes)})" if self.nodes else ""
        return f"{self.kind}: {self.message}{names}{where}"


class Program:
    def __init__(self, graph, values: dict, inputs: list, results: list, steps: list,
                 records: list, n_outputs: int):
        self.graph = graph
        self.values = values
        self.inputs = inputs
        self.results = results
        self.n_outputs = n_outputs
        self.steps = steps
        self.records = records
        self.memory = None

    # ------------------------------------------------------------------------ statistics
    @property
    def kernels(self) -> list:
        return [s for s in self.steps if isinstance(s, KernelStep)]

    @property
    def externs(self) -> list:
        return [s for s in self.steps if isinstance(s, ExternStep)]

    @property
    def eager_steps(self) -> list:
        return [s for s in self.steps if isinstance(s, EagerStep)]

    def compiled_objects(self) -> list:
        """The Kernel / ExternKernel objects to hand to a code generator, in step order."""
        return [s.kernel for s in self.steps if not isinstance(s, EagerStep)]

    def stats(self) -> dict:
        """Step counts and cost estimates (bytes moved counts each kernel argument once)."""
        kb = sum(s.kernel.bytes_moved for s in self.steps if not isinstance(s, EagerStep))
        eb = 0
        for s in self.eager_steps:
            eb += sum(self.values[a].nbytes for a in s.args) + self.values[s.output].nbytes
        unfused_ops, unfused_bytes = unfused_cost(self.graph)
        return {
            "kernels": len(self.kernels), "externs": len(self.externs), "epilogues":
            sum(1 for s in self.externs if s.kernel.epilogue is not None), "eager": len(self.eager_steps),
            "steps": len(self.steps), "bytes": kb + eb,
            "flops": sum(s.kernel.flops for s in self.steps if not isinstance(s, EagerStep)),
            "unfused_ops": unfused_ops, "unfused_bytes": unfused_bytes,
        }

    def summary(self) -> str:
        st = self.stats()
        return (f"{st['kernels']} kernels + {st['externs']} externs ({st['epilogues']} with epilogue) "
                f"+ {st['eager']} eager; ~{_mb(st['bytes'])} moved "
                f"(unfused: {st['unfused_ops']} ops, ~{_mb(st['unfused_bytes'])})")

    def __str__(self) -> str:
        lines = [f"program {self.graph.name}({', '.join(self.inputs)}) -> ({', '.join(self.results)})",
                 f"# {self.summary()}"]
        for v in self.values.values():
            if v.kind is not ValueKind.INPUT:
                lines.append(f"#   {v}")
        for s in self.steps:
            lines.append(str(s))
        if self.memory is not None:
            lines.append(str(self.memory))
        if self.records:
            lines.append("# decisions:")
            lines.extend(f"#   {r}" for r in self.records)
        return "\n".join(lines)

    def dump(self, directory, prefix: str = "") -> None:
        from pathlib import Path
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{prefix}fusion.kir").write_text(str(self) + "\n")


def unfused_cost(graph) -> tuple:
    """(ops, bytes) of running the graph one op per kernel: each compute node reads its inputs and
    writes its output (placeholders and constants cost nothing; views cost a copy)."""
    ops = 0
    nbytes = 0
    for n in graph.nodes():
        if n.is_placeholder or n.op in ("full", "arange"):
            continue
        ops += 1
        for x in [n] + n.inputs:
            k = x.dtype.itemsize
            for s in x.shape:
                k *= s
            nbytes += k
    return ops, nbytes


def _mb(n) -> str:
    """Bytes as MB; a symbolic count (a dynamic program) as its polynomial in bytes."""
    return f"{n / 1e6:.3f} MB" if isinstance(n, (int, float)) else f"({n}) B"
