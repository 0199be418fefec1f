"""The compiled-graph executor: a Program becomes generated Python source that calls kernels in order.

In: a `Program` (ember/ir/program.py) with its memory plan (planned here if missing), and a
kernel runner.  Out: an `Executor` whose `run(arrays)` takes one array per graph input and returns
the graph outputs followed by the mutation values (the convention of
ember.compiler.interpreter.Interpreter.run), and whose `.source` is the readable function it runs:

    def run_forward(x, w):
        x = _c(x, _t0)                                  # contiguous, right dtype
        buf3 = _empty((64, 10), _f32)                   # a graph output: fresh every call
        _s0(x, w, buf1)                                 # k0_mul_add: kernel over [64,10]
        _s1(buf1, w.reshape((10, 50)), buf2, buf3)      # x1_matmul_add_maximum: matmul + epilogue
        return [buf3]

Internal values are views of the slots of the memory plan, allocated once when the executor is
built and reused by every call (so an executor is not re-entrant: one call at a time).  Outputs
are allocated on every call and never written again by a later call.

Runners (`runner=`):
  "numpy"  kernels through the kernel-IR reference evaluator (ember/ir/kernel_eval.py), externs
           through ember/kernels/blas.py; always available, slow, the oracle in tests
  "llvm"   ember/runtime/cpu.py's compile_kernels(): one LLVM module for the program's kernels
  any object with `callables(program) -> {step name: fn(*arrays)}`
Eager fallback steps call `eager_kernels[op](np, *arrays, **attrs)`; the frontend passes its
dispatch.KERNELS table (by default it is imported lazily from ember.frontend.dispatch: the runtime
layer does not import the frontend at module load).
"""
from __future__ import annotations

import sys
import traceback
from typing import Sequence

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.kernel_eval import evaluate
from ember.passes.memory import plan_memory
from ember.ir.program import EagerStep, ExternStep, KernelStep, Program

from ..kernels import blas

__all__ = ["Executor", "NumpyRunner", "LLVMRunner", "generate_source", "get_runner", "identifiers"]


# ==================================================================================== runners
class NumpyRunner:
    """Reference runner: kernel IR evaluated with numpy (ember/ir/kernel_eval.py)."""

    name = "numpy"

    def callables(self, program: Program) -> dict:
        out = {}
        for s in program.steps:
            if isinstance(s, KernelStep):
                out[s.name] = _eval_kernel(s.kernel)
            elif isinstance(s, ExternStep):
                out[s.name] = _numpy_extern(s.kernel)
        return out


def _eval_kernel(k):
    def call(*arrays):
        evaluate(k, arrays)
    call.__name__ = k.name
    return call


def _numpy_extern(ext):
    n_in = len(ext.inputs)
    scratch = []

    def call(*arrays):
        ins = arrays[:n_in]
        if ext.epilogue is None:
            blas.run_extern(ext.op, ins, arrays[-1], ext.attrs)
            return
        if not scratch:
            scratch.append(np.empty(ext.output.shape, dtype=ext.output.dtype.np))
        blas.run_extern(ext.op, ins, scratch[0], ext.attrs)
        evaluate(ext.epilogue, (scratch[0],) + tuple(arrays[n_in:]))
    call.__name__ = ext.name
    return call


class LLVMRunner:
    """Compiled runner: the program's kernels and externs in one LLVM module (ember/runtime/cpu.py)."""

    name = "llvm"

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.module = None

    def callables(self, program: Program) -> dict:
        from .cpu import compile_kernels
        objs = program.compiled_objects()
        if not objs:
            return {}
        self.module = compile_kernels(objs)
        threads = self.threads
        out = {}
        for s in program.steps:
            if isinstance(s, (KernelStep, ExternStep)):
                fn = self.module[s.name]
                if isinstance(s, KernelStep) and hasattr(fn, "call_ptrs"):
                    fn = _unchecked(fn, threads)
                out[s.name] = fn if threads is None else (lambda f: lambda *a: f(*a, threads=threads))(fn)
        return out


def _unchecked(fn, threads):
    """The executor's fast path into a kernel: it passes contiguous arrays of the planned shapes
    and dtypes (inputs go through _c, buffers are allocated from the plan), so the per-call
    argument checks (~4 us a kernel) are skipped; the kernel still bounds-checks its gathers."""
    call = fn.call_ptrs

    def run(*arrays, threads=threads):
        call([a.__array_interface__["data"][0] for a in arrays], threads)
    run.__name__ = getattr(fn, "__name__", "kernel")
    return run


def get_runner(runner):
    if runner is None or runner == "numpy":
        return NumpyRunner()
    if runner == "llvm":
        return LLVMRunner()
    if hasattr(runner, "callables"):
        return runner
    raise ValueError(f"unknown kernel runner {runner!r} (expected 'numpy', 'llvm' or a runner object)")


# ============================================================================ source generation
def identifiers(program: Program) -> dict:
    """Value name -> Python identifier: computed values keep their bufN names, inputs become
    in_<name> (input names may hold '.': fc1.weight), made unique."""
    ids, used = {}, set()
    for name, v in program.values.items():
        if v.kind == "input":
            base = "in_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)
            ident, k = base, 0
            while ident in used:
                k += 1
                ident = f"{base}_{k}"
        else:
            ident = name
        used.add(ident)
        ids[name] = ident
    return ids


def _shape(shape) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"


def generate_source(program: Program, fn_name: str | None = None) -> tuple[str, dict]:
    """(source, line -> step name) of the function that runs `program` (see the module docstring)."""
    fn_name = fn_name or f"run_{program.graph.name}"
    vals = program.values
    ids = identifiers(program)
    _py = ids.__getitem__
    lines = [f"def {fn_name}({', '.join(_py(n) for n in program.inputs)}):"]
    line_step: dict = {}
    for i, name in enumerate(program.inputs):
        v = vals[name]
        lines.append(f"    {_py(name)} = _c({_py(name)}, _dt_{v.dtype.short})")
    views: dict = {}
    for name, v in vals.items():
        if v.kind == "view":
            views.setdefault(v.base, []).append(name)

    def emit_views(base):
        for name in views.get(base, []):
            lines.append(f"    {_py(name)} = {_py(base)}.reshape({_shape(vals[name].shape)})  # saved value: a view")

    for name in program.inputs:
        emit_views(name)
    for s in program.steps:
        for name in s.writes:
            v = vals[name]
            if v.kind == "output" and not isinstance(s, EagerStep):
                lines.append(f"    {_py(name)} = _empty({_shape(v.shape)}, _dt_{v.dtype.short})")
        if isinstance(s, KernelStep):
            k = s.kernel
            args = ", ".join(_py(a) for a in s.args)
            where = f"outer={list(k.outer)}" + (f" inner={list(k.inner)}" if k.inner else "")
            lines.append(f"    _{s.name}({args})  # kernel {where}")
        elif isinstance(s, ExternStep):
            args = []
            for j, a in enumerate(s.args):
                if j in s.views:
                    args.append(f"{_py(a)}.reshape({_shape(s.views[j])})")
                else:
                    args.append(_py(a))
            ep = " + epilogue" if s.kernel.epilogue is not None else ""
            lines.append(f"    _{s.name}({', '.join(args)})  # {s.kernel.op}{ep}")
        else:
            args = ", ".join(_py(a) for a in s.args)
            lines.append(f"    {_py(s.output)} = _{s.name}({args})  # eager fallback: {s.reason}")
        line_step[len(lines)] = s.name
        for name in s.writes:
            emit_views(name)
    lines.append(f"    return [{', '.join(_py(n) for n in program.results)}]")
    return "\n".join(lines) + "\n", line_step


# ==================================================================================== executor
def _contiguous_for(xp):
    """Inputs as contiguous arrays of the runner's array module (numpy, or cupy for CUDA)."""
    def contiguous(a, dtype):
        a = xp.asarray(a)
        if a.dtype != dtype:
            a = a.astype(dtype)
        if not a.flags.c_contiguous:
            a = a.copy()
        return a
    return contiguous


_contiguous = _contiguous_for(np)


def _eager_call(fn, attrs, dtype, shape, xp=np):
    def call(*arrays):
        r = xp.asarray(fn(xp, *arrays, **attrs))
        if r.dtype != dtype:
            r = r.astype(dtype)
        if not r.flags.c_contiguous or not getattr(r.flags, "writeable", True):
            r = r.copy()
        return r.reshape(shape)
    return call


class OutputPool:
    """Arrays for graph outputs, recycled once nobody holds them any more.

    Outputs must be fresh for the caller (never overwritten while in use), but allocating them anew
    each call costs page faults (a fresh 4 MB buffer costs more than the kernel that fills it). An
    array is handed out again only when its reference count shows that only this pool holds it: the
    user dropped the tensor, and the backward pass that saved it has run and released it. Views
    keep their base alive (`.base`), so a live view also blocks reuse.
    """

    def __init__(self, xp=np):
        self.free: dict = {}
        self.xp = xp

    def empty(self, shape, dtype):
        arrays = self.free.get((shape, dtype))
        if arrays is None:
            arrays = self.free[(shape, dtype)] = []
        for a in arrays:
            # references: the list, the loop variable, getrefcount's argument
            if sys.getrefcount(a) <= 3:
                return a
        a = self.xp.empty(shape, dtype)
        if len(arrays) < 8:     # bound what the pool keeps alive
            arrays.append(a)
        return a


class Executor:
    """Runs a Program: `run(arrays) -> [outputs..., mutation values...]`; `.source` is the code."""

    def __init__(self, program: Program, runner="numpy", eager_kernels: dict | None = None):
        self.program = program
        if program.memory is None:
            plan_memory(program)
        self.runner = get_runner(runner)
        xp = getattr(self.runner, "xp", np)     # cupy for the CUDA runner
        self.slots = [xp.empty(max(n, 1), dtype=np.uint8) for n in program.memory.slots]
        self.source, self._line_step = generate_source(program)
        self.pool = OutputPool(xp)
        env = {"_c": _contiguous if xp is np else _contiguous_for(xp), "_empty": self.pool.empty}
        for d in dt.ALL:
            env[f"_dt_{d.short}"] = d.np
        ids = identifiers(program)
        for name, slot in program.memory.assign.items():
            v = program.values[name]
            env[ids[name]] = self.slots[slot][:v.nbytes].view(v.dtype.np).reshape(v.shape)
        fns = self.runner.callables(program)
        eager = None
        for s in program.steps:
            if isinstance(s, EagerStep):
                if eager is None:
                    eager = eager_kernels if eager_kernels is not None else _default_eager_kernels()
                v = program.values[s.output]
                env["_" + s.name] = _eager_call(eager[s.op], s.attrs, v.dtype.np, v.shape, xp)
            else:
                env["_" + s.name] = fns[s.name]
        self._filename = f"<ember program {program.graph.name} {id(self):x}>"
        code = compile(self.source, self._filename, "exec")
        exec(code, env)
        self._fn = env[f"run_{program.graph.name}"]
        self._steps = {s.name: s for s in program.steps}

    @property
    def memory_bytes(self) -> int:
        return sum(s.nbytes for s in self.slots)

    def run(self, arrays: Sequence) -> list:
        if len(arrays) != len(self.program.inputs):
            raise TypeError(f"program {self.program.graph.name} takes {len(self.program.inputs)} inputs, "
                            f"got {len(arrays)}")
        try:
            return self._fn(*arrays)
        except Exception as e:
            step = self._failing_step(e)
            if step is None:
                raise
            nodes = ", ".join(n.name for n in getattr(step, "nodes", [])[:6]) or getattr(step, "node", "")
            src = next((n.meta.get("source") for n in getattr(step, "nodes", []) if n.meta.get("source")), None)
            msg = f"{e}\n  while executing step {step.name} (graph nodes {nodes})" + (f" at {src}" if src else "")
            try:
                err = type(e)(msg)
            except Exception:
                raise e
            raise err.with_traceback(e.__traceback__) from e

    __call__ = run

    def _failing_step(self, e):
        for fr in reversed(traceback.extract_tb(e.__traceback__)):
            if fr.filename == self._filename:
                name = self._line_step.get(fr.lineno)
                return self._steps.get(name)
        return None


def _default_eager_kernels() -> dict:
    mod = sys.modules.get("ember.frontend.dispatch")
    if mod is None:
        import importlib
        mod = importlib.import_module("ember.frontend.dispatch")
        importlib.import_module("ember.frontend.prims")
    return mod.KERNELS
