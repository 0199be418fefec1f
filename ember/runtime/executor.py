"""The compiled-graph executor: a Program becomes generated Python source that calls kernels in order.

In: a `Program` (ember/ir/program.py) with its memory plan (ember/passes/memory.py, planned by the
compile driver), a Device (ember/runtime/device.py), and the eager kernel table when the program has
eager fallback steps.  Out: an `Executor` whose `run(arrays)` takes one array per graph input and returns
the graph outputs followed by the mutation values (the convention of
ember.compiler.interpreter.Interpreter.run), and whose `.source` is the readable function it runs:

    def run_forward(x, w):
        x = _c(x, _t0)                                  # contiguous, right dtype
        buf3 = _empty((64, 10), _f32)                   # a graph output: fresh every call
        _s0(x, w, buf1)                                 # k0_mul_add: kernel over [64,10]
        _s1(buf1, w.reshape((10, 50)), buf2, buf3)      # x1_matmul_add_maximum: matmul + epilogue
        return [buf3]

Internal values are views of the slots of the memory plan, allocated once per thread that runs
the executor and reused by that thread's calls (threads never share them; a call is not
re-entrant within one thread).  Outputs are fresh for every call and never written again by a
later call.

Devices (`device=`, also accepted as `runner=`), see ember/runtime/device.py get_device:
  "numpy"  kernels through the kernel-IR reference evaluator (ember/ir/kernel_eval.py), externs
           through ember/kernels/blas.py; always available, slow, the oracle in tests
  "llvm"   the CPU device (ember/runtime/cpu.py): one LLVM module for the program's kernels
  "cuda"   the CUDA device (ember/runtime/cuda.py): one CUDA module, arrays are CuPy arrays
  a Device
The program's kernels become one module (`.module`, for dumps); the generated function calls each
kernel's unchecked `launch` (it allocates every array itself).  Eager fallback steps call
`eager_kernels[op](xp, *arrays, **attrs)` (the compile driver passes ember.frontend.dispatch.KERNELS).
"""
from __future__ import annotations

import sys
import threading
import traceback
import weakref
from typing import Sequence

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.kernel import ExternKernel
from ember.ir.program import EagerStep, ExternStep, KernelStep, Program
from ember.ir.sizes import evaluate as size_at, free_symbols, py_size, size_readers, substitute

from .device import Device, get_device

__all__ = ["Executor", "generate_source", "identifiers"]

# For ember.profiler: every live Executor, and callbacks run on each new one.  The profiler swaps the
# step functions in an executor's `env` (its generated code's globals) while it records, so the
# hot path never checks for it.
LIVE: "weakref.WeakSet[Executor]" = weakref.WeakSet()
ON_CREATE: list = []


# A dynamic program keeps the scratch slots of this many recent (thread, sizes) pairs.
MAX_SIZED_STATES = 8


def _symbol_reads(program: Program) -> tuple:
    """(symbols, readers): the program's size symbols and how each is read from the input arrays.
    Every symbol a kernel or value uses must be readable from an input's shape."""
    syms: set = set()
    for v in program.values.values():
        syms |= free_symbols(v.shape)
    for s in program.steps:
        k = getattr(s, "kernel", None)
        if k is not None:
            syms |= set(getattr(k.epilogue, "symbols", ()) if isinstance(k, ExternKernel) else k.symbols)
    if not syms:
        return (), ()
    shapes = [program.values[name].shape for name in program.inputs]
    order, readers = size_readers(shapes)
    missing = syms - set(order)
    if missing:
        raise ValueError(f"program {program.graph.name}: size symbols {sorted(missing)} are not the size of "
                         "any input dimension (a dynamic program reads its sizes from its inputs)")
    return order, readers


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
    return f"({py_size(shape[0])},)" if len(shape) == 1 else "(" + ", ".join(map(py_size, shape)) + ")"


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
    """Inputs as contiguous arrays of the device's array module (numpy, or cupy for CUDA)."""
    ndarray = xp.ndarray

    def contiguous(a, dtype):
        if a.__class__ is ndarray and a.dtype is dtype and a.flags.c_contiguous:
            return a                  # the common case, without asarray (a training step has ~100 inputs)
        a = xp.asarray(a)
        if a.dtype != dtype:
            a = a.astype(dtype)
        if not a.flags.c_contiguous:
            a = a.copy()
        return a
    return contiguous


_contiguous = _contiguous_for(np)


def _launcher(fn):
    """The generated code's entry into a kernel or extern: its unchecked launch."""
    launch = fn.launch

    def run(*arrays):
        launch(arrays)
    return run


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

    `keep` bounds how many arrays of one (shape, dtype) the pool holds: two calls' worth of what one
    call of the program allocates, and at least DEFAULT_KEEP (a training step's forward saves ~20
    activations of one shape for its backward: a bound of 8 made most of them fresh, page-faulting
    memory every step; and `y = f(x)` in a loop holds the previous call's result while the next call
    runs: a bound of one call's worth then made every large result fresh -- softmax over 64 MB
    took 2x as long).
    """

    DEFAULT_KEEP = 8

    def __init__(self, xp=np, keep: dict | None = None):
        self.free: dict = {}
        self.xp = xp
        self.keep = keep or {}

    def empty(self, shape, dtype):
        arrays = self.free.get((shape, dtype))
        if arrays is None:
            arrays = self.free[(shape, dtype)] = []
        for a in arrays:
            # references: the list, the loop variable, getrefcount's argument
            if sys.getrefcount(a) <= 3:
                return a
        a = self.xp.empty(shape, dtype)
        if len(arrays) < max(self.DEFAULT_KEEP, 2 * self.keep.get((shape, dtype), 0)):   # bound what it keeps alive
            arrays.append(a)
        return a


def output_counts(program: Program, sizes: dict | None = None) -> dict:
    """{(shape, numpy dtype): how many outputs of that kind one call allocates} (OutputPool's keep)."""
    counts: dict = {}
    for s in program.steps:
        if isinstance(s, EagerStep):
            continue
        for name in s.writes:
            v = program.values[name]
            if v.kind == "output":
                key = (tuple(size_at(n, sizes or {}) for n in v.shape), v.dtype.np)
                counts[key] = counts.get(key, 0) + 1
    return counts


class Executor:
    """Runs a Program: `run(arrays) -> [outputs..., mutation values...]`; `.source` is the code."""

    def __init__(self, program: Program, device: Device | str | None = None, eager_kernels: dict | None = None,
                 *, runner: Device | str | None = None):
        self.program = program
        if program.memory is None:
            raise ValueError(f"program {program.graph.name} has no memory plan: build it with "
                             "ember.passes.compile_graph (or run ember.passes.plan_memory on it)")
        eager_ops = sorted({s.op for s in program.steps if isinstance(s, EagerStep)})
        if eager_ops and eager_kernels is None:
            raise TypeError(f"program {program.graph.name} has eager fallback steps ({', '.join(eager_ops)}): "
                            "pass their kernels as eager_kernels= (ember.frontend.dispatch.KERNELS)")
        self._eager_kernels = eager_kernels
        self.device = get_device(device if device is not None else runner)
        xp = self.device.xp
        self.source, self._line_step = generate_source(program)
        env = {"_c": _contiguous if xp is np else _contiguous_for(xp)}
        for d in dt.ALL:
            env[f"_dt_{d.short}"] = d.np
        objs = program.compiled_objects()
        self.module = self.device.compile(objs) if objs else None
        for s in program.steps:
            if isinstance(s, EagerStep):
                v = program.values[s.output]
                env["_" + s.name] = _eager_call(eager_kernels[s.op], s.attrs, v.dtype.np, v.shape, xp)
            else:
                env["_" + s.name] = _launcher(self.module[s.name])
        self._env = env
        # a dynamic program (ember/ir/symbolic.py): each size symbol is read from an input's shape
        # per call, and the thread state (slots, views, kernels) is made per distinct set of sizes
        self.symbols, self._sym_reads = _symbol_reads(program)
        self._filename = f"<ember program {program.graph.name} {id(self):x}>"
        self._code = compile(self.source, self._filename, "exec")
        self._steps = {s.name: s for s in program.steps}
        # Scratch slots and the output pool are per thread: two threads running one compiled
        # function at once must not share buffers. The building thread's state is made now.
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._sized: dict = {}      # (thread, symbol values) -> thread state, for a dynamic program
        self.sizes: dict = {}
        if self.symbols:            # made by the first call, which knows the sizes
            self._fn, self.slots, self.pool, self.env = None, [], None, dict(self._env)
        else:
            self._fn, self.slots, self.pool, self.env = self._thread_state()
        LIVE.add(self)              # the profiler swaps the steps of `env` (the building thread's globals)
        for hook in ON_CREATE:
            hook(self)

    def _thread_state(self, sizes: dict | None = None) -> tuple:
        """(function, slots, output pool, globals) for the calling thread: the generated code bound
        to its own scratch slots and output pool (and, for a dynamic program, to these sizes)."""
        program, xp = self.program, self.device.xp
        sizes = sizes or {}
        slots = [xp.empty(max(size_at(n, sizes), 1), dtype=np.uint8) for n in program.memory.slots]
        pool = OutputPool(xp, output_counts(program, sizes))
        env = dict(self._env)
        env.update(sizes)           # the generated code spells symbolic shapes with the symbols' names
        if sizes:
            for s in program.steps:
                if not isinstance(s, EagerStep):
                    env["_" + s.name] = _launcher(self.module[s.name].at(sizes))
                else:                   # attributes and result shape at these sizes
                    v = program.values[s.output]
                    env["_" + s.name] = _eager_call(self._eager_kernels[s.op], substitute(s.attrs, sizes), v.dtype.np,
                                                    substitute(v.shape, sizes), xp)
        env["_empty"] = pool.empty
        ids = identifiers(program)
        for name, slot in program.memory.assign.items():
            v = program.values[name]
            shape = tuple(size_at(n, sizes) for n in v.shape)
            env[ids[name]] = slots[slot][:size_at(v.nbytes, sizes)].view(v.dtype.np).reshape(shape)
        exec(self._code, env)
        return env[f"run_{program.graph.name}"], slots, pool, env

    def _function(self, arrays=()):
        if self.symbols:
            return self._function_at(arrays)
        if threading.get_ident() == self._owner:
            return self._fn
        fn = getattr(self._local, "fn", None)
        if fn is None:
            fn = self._local.fn = self._thread_state()[0]
        return fn

    def _function_at(self, arrays):
        """The generated function bound to the sizes these inputs have (made on first use)."""
        values = tuple(r(arrays) for r in self._sym_reads)
        key = (threading.get_ident(), values)
        state = self._sized.get(key)
        if state is None:
            if len(self._sized) >= MAX_SIZED_STATES:     # bound the memory kept for past sizes
                self._sized.pop(next(iter(self._sized)))
            self.sizes = dict(zip(self.symbols, values))    # (the latest sizes: what tools bind to)
            state = self._sized[key] = self._thread_state(self.sizes)
            self._fn, self.slots, self.pool, self.env = state
        return state[0]

    def run_values(self, arrays: Sequence) -> dict:
        """Run the program step by step keeping every value ({value name: array}, nothing reused):
        how a checker compares a compiled program value by value (ember/compiler/check.py)."""
        prog, env, xp = self.program, self._env, self.device.xp
        vals = {name: env["_c"](a, prog.values[name].dtype.np) for name, a in zip(prog.inputs, arrays)}

        def define_views():
            for name, v in prog.values.items():
                if v.kind == "view" and name not in vals and v.base in vals:
                    vals[name] = vals[v.base].reshape(v.shape)

        define_views()
        for s in prog.steps:
            if isinstance(s, EagerStep):
                vals[s.output] = env["_" + s.name](*[vals[a] for a in s.args])
            else:
                for w in s.writes:
                    v = prog.values[w]
                    vals[w] = xp.empty(v.shape, v.dtype.np)
                views = getattr(s, "views", {})
                args = [vals[a].reshape(views[j]) if j in views else vals[a] for j, a in enumerate(s.args)]
                env["_" + s.name](*args)
            define_views()
        return vals

    @property
    def memory_bytes(self) -> int:
        return sum(s.nbytes for s in self.slots)

    def run(self, arrays: Sequence) -> list:
        if len(arrays) != len(self.program.inputs):
            raise TypeError(f"program {self.program.graph.name} takes {len(self.program.inputs)} inputs, "
                            f"got {len(arrays)}")
        try:
            return self._function(arrays)(*arrays)
        except Exception as e:
            step = self._failing_step(e)
            if step is None:
                raise
            nodes = (", ".join(n.name for n in getattr(step, "nodes", [])[:6])
                     or getattr(getattr(step, "node", None), "name", ""))
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
