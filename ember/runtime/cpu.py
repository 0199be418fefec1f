"""The CPU device: kernel IR -> LLVM (ember/codegen/llvm/) -> object code -> callables on numpy arrays.

In: `Kernel` / `ExternKernel` objects (ember/ir/kernel.py).  Out: a `CpuModule` whose kernels run on
contiguous numpy arrays in `kernel.args` order (inputs, then outputs, written in place).

    mod = compile_kernels([k0, k1, x2])         # CPU.compile: one LLVM module, one engine, cached
    mod.run("k0_max_sub_exp_sum_div", [x, y])   # or: mod["k0_..."](x, y)
    mod.run(x2.name, [a, b, bias, out])         # an ExternKernel: numpy GEMM + compiled epilogue

`CPU` is the Device (ember/runtime/device.py): `LLVMCompiler` optimises the module text with the O3
new-PM pipeline (loop + SLP vectorisation, host CPU) into object code, cached through
ember/runtime/cache.py; `CpuModule` loads the object into a fresh MCJIT engine that it owns: the
engine (and so the machine code) lives exactly as long as that object, and every callable holds a
reference to it.  There is no global engine.

Calls go through ctypes (which releases the GIL).  Buffer pointers are read with
`__array_interface__['data'][0]` (reading `arr.ctypes.data` costs ~5 us), and remembered per array
object (`data_pointer`): the interface costs ~1.7 us an array on a busy machine, and a step's kernels
read the same slots, parameters and optimizer state every call (the AdamW bias-correction kernel of
the GPT step takes 63 zero-dimensional arrays: 111 us of pointer reads for nanoseconds of work).  When a kernel moves at
least `PARALLEL_MIN_BYTES` (or runs `PARALLEL_MIN_FLOPS` scalar ops) and the first outer axis has
more than one iteration, the outer range is cut into more chunks than threads (about
CHUNK_BYTES each, at most CHUNKS_PER_THREAD per thread) and run by ember/kernels/workers.py on
EMBER_NUM_THREADS threads (default os.cpu_count()): the calling thread starts on the chunks at
once and the workers, woken from their sleep, claim the rest one at a time -- so a worker that
wakes late or is descheduled on a busy machine costs at most its current chunk, and nothing spins.
Smaller kernels stay on the calling thread: waking a worker costs more than they take.

A kernel that hits an out-of-range gather index returns status 1 with (value, dim, size) in its
error slot; the call raises IndexError("index 7 is out of bounds for dimension 0 with size 5").
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import hashlib
import threading
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from ember.codegen import llvm as cg
from ember.codegen.llvm.math import LIBM_F64
from ember.ir.kernel import Kernel
from ember.ir.sizes import evaluate
from ember.kernels import blas, workers
from ember.runtime import cache, gemm_operands
from ember.runtime.device import Build, BoundKernel, Compiler, Device, Module

llvm = cg.llvm

__all__ = ["CPU", "compile_kernels", "CpuModule", "KernelCallable", "LLVMCompiler", "num_threads", "optimize_ir",
           "compile_ir_to_object", "PARALLEL_MIN_BYTES", "host_target", "assembly", "data_pointer",
           "NativeLibrary"]

# Below this much work a kernel runs on the calling thread only: the pool handoff (~45-55 us) costs
# more than the second core saves.  Measured with benchmarks/fusion_kernels.py --threshold on the
# 2-core EPYC: a cheap 10-op pointwise kernel breaks even between 6 and 12 MB moved (its data is
# cache-resident below that); kernels with more arithmetic per byte break even earlier, hence the
# flop criterion.
PARALLEL_MIN_BYTES = 4 << 20
PARALLEL_MIN_FLOPS = 4 << 20
CHUNK_BYTES = 512 << 10    # about this much data per chunk of a parallel kernel ...
CHUNKS_PER_THREAD = workers.CHUNKS_PER_THREAD   # ... and at most this many chunks per thread

_TARGET = None
_SYMBOLS_READY = False


def host_target() -> cg.TargetInfo:
    global _TARGET
    if _TARGET is None:
        _TARGET = cg.host_target()
    return _TARGET


def _register_symbols() -> None:
    """Make libm/libc functions that generated code may call resolvable by the JIT linker."""
    global _SYMBOLS_READY
    if _SYMBOLS_READY:
        return
    cg.init_native()
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # the float64 ops ember/codegen/llvm/math.py lowers to libm, and what LLVM itself may call (frem -> fmod)
    libm_names = sorted(set(LIBM_F64.values()) | {"fmod", "fmodf", "expf", "exp", "logf", "log"})
    for lib, names in ((libm, libm_names), (libc, ("memset", "memcpy", "memmove"))):
        for name in names:
            llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    _SYMBOLS_READY = True


num_threads = workers.num_threads

# data_pointer's memory: id(array) -> (weak reference, address).  An entry is used only while its
# array is alive (the reference answers with the same object), so a reused id never hits.
_POINTERS: dict[int, tuple] = {}
_POINTERS_MAX = 4096
_LOCAL = threading.local()    # one error slot per thread for single-threaded calls


def data_pointer(a: np.ndarray) -> int:
    """The address of a's data (a numpy array's never moves while the object lives)."""
    e = _POINTERS.get(id(a))
    if e is not None and e[0]() is a:
        return e[1]
    p = gemm_operands.ptr(a)
    if len(_POINTERS) >= _POINTERS_MAX:
        _POINTERS.clear()
    try:
        _POINTERS[id(a)] = (weakref.ref(a), p)
    except TypeError:           # an object without weak references is simply not remembered
        pass
    return p


def _error_slot() -> tuple:
    """(int64[3] array, its address) of this thread, where a kernel reports a bad gather index."""
    slot = getattr(_LOCAL, "err", None)
    if slot is None:
        a = np.zeros(3, dtype=np.int64)
        slot = _LOCAL.err = (a, a.__array_interface__["data"][0])
    return slot


# ================================================================================ compilation
def optimize_ir(ir_text: str, tm=None):
    """Parse, verify and run the O3 pipeline (loop + SLP vectorisation); returns the llvm module."""
    cg.init_native()
    tm = tm or cg.host_target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def compile_ir_to_object(ir_text: str) -> bytes:
    tm = cg.host_target_machine()
    return tm.emit_object(optimize_ir(ir_text, tm))


def assembly(ir_text: str) -> str:
    """Host assembly of an LLVM IR module (for the inspect tools and vectorisation tests)."""
    tm = cg.host_target_machine()
    return tm.emit_assembly(optimize_ir(ir_text, tm))


class LLVMCompiler(Compiler):
    """LLVM IR text -> host object code."""

    name = "llvm"

    def cache_key(self, key_text: str) -> str:
        return cache.cache_key(key_text, host_target(), extra=cache.codegen_fingerprint())

    def compile(self, ir_text: str) -> bytes:
        return compile_ir_to_object(ir_text)


class NativeLibrary:
    """A module of C-callable functions from hand-written LLVM IR text (the GEMMs: ember/runtime/gemm_bf16.py,
    gemm_f32.py), compiled once through the disk cache and kept loaded.  `source` (the emitting module's file)
    is part of the cache key, so an edit to the generator never meets a stale object.  Keep the library as
    long as any of its functions is called: its engine owns the machine code."""

    def __init__(self, text: str, tag: str, source: str):
        target = host_target()
        fingerprint = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        key = cache.cache_key(text, target, extra=f"{tag}:{fingerprint}")
        obj = cache.load(key)
        if obj is None:
            obj = compile_ir_to_object(text)
            cache.store(key, obj)
        cg.init_native()
        backing = cg.llvm.parse_assembly(f'target triple = "{target.triple}"\n'
                                         f'target datalayout = "{target.data_layout}"\n')
        self._engine = cg.llvm.create_mcjit_compiler(backing, cg.host_target_machine())
        self._engine.add_object_file(cg.llvm.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()
        self.tag = tag

    def function(self, name: str, *argtypes):
        """The ctypes callable of `name` (void result, these argument types)."""
        addr = self._engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"{self.tag}: no function {name} in the compiled module")
        return ctypes.CFUNCTYPE(None, *argtypes)(addr)


# ==================================================================================== runtime
class CpuModule(Module):
    """Owns one MCJIT engine and the callables of its kernels (see ember/runtime/device.py Module);
    llvm_ir is the module's text, generated again on demand after a cache hit."""

    language = "llvm"

    def __init__(self, device: Device, build: Build, kernels: Sequence):
        super().__init__(device, build, kernels)
        _register_symbols()
        self._ir_text = build.source
        target = host_target()
        backing = llvm.parse_assembly(f'target triple = "{target.triple}"\n'
                                      f'target datalayout = "{target.data_layout}"\n')
        # MCJIT owns this target machine and frees the code with the engine: keep self._engine
        # alive for as long as any callable exists (each callable references this object).
        self._engine = llvm.create_mcjit_compiler(backing, cg.host_target_machine())
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(build.binary))
        self._engine.finalize_object()
        self._bind()

    def kernel_callable(self, kernel: Kernel) -> "KernelCallable":
        return KernelCallable(self, kernel)

    @property
    def llvm_ir(self) -> str:
        if self._ir_text is None:
            self._ir_text = _render(list(self.kernels.values()))
        return self._ir_text

    text = llvm_ir

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name} in compiled module")
        return addr


def _render(kernels: Sequence) -> str:
    return cg.emit_module(kernels, host_target())


CPU = Device("cpu", np, _render, LLVMCompiler(), CpuModule, blas.run_extern)


def compile_kernels(kernels: Sequence, use_cache: bool = True) -> CpuModule:
    """Compile kernels (and extern epilogues) into one module: CPU.compile."""
    return CPU.compile(kernels, use_cache)


class KernelCallable(BoundKernel):
    """Calls one compiled kernel; `fn(*arrays, threads=None)`."""

    def __init__(self, module: CpuModule, kernel: Kernel):
        super().__init__(module, kernel)   # the module keeps the engine (and the machine code) alive
        nargs = len(kernel.args)
        self.symbols = kernel.symbols
        proto = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_void_p] * (nargs + 1)),
                                 ctypes.c_int64, ctypes.c_int64, *([ctypes.c_int64] * len(self.symbols)))
        self._fn = proto(module.address(kernel.name))
        claimed = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_void_p] * (nargs + 1)), ctypes.c_int64, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_void_p, *([ctypes.c_int64] * len(self.symbols)))
        self._claimed = claimed(module.address(kernel.name + "_claimed"))
        if not self.symbols:
            self._sizes({})

    def _sizes(self, values: dict) -> None:
        """Launch facts for the kernel at these symbol values (a static kernel: at its sizes)."""
        k = self.kernel
        self._extra = tuple(values[s] for s in self.symbols)
        self.n0 = evaluate(k.outer[0], values) if self.symbols else k.outer[0]
        moved = evaluate(k.bytes_moved, values) if self.symbols else k.bytes_moved
        work = evaluate(k.work, values) if self.symbols else k.work
        big = moved >= PARALLEL_MIN_BYTES or work >= PARALLEL_MIN_FLOPS
        self.parallel_ok = big and self.n0 > 1
        self.max_chunks = max(1, min(self.n0, moved // CHUNK_BYTES))

    def at(self, values: dict) -> "KernelCallable":
        if not self.symbols:
            return self
        bound = copy.copy(self)
        bound._sizes(values)
        return bound

    def launch(self, arrays: Sequence[np.ndarray], threads: int | None = None) -> None:
        """Run without argument checks: the executor's path (it passes contiguous arrays of the planned
        shapes and dtypes; ~4 us a kernel saved); the kernel still bounds-checks its gathers."""
        self.call_ptrs([data_pointer(a) for a in arrays], threads)

    def call_ptrs(self, ptrs: list[int], threads: int | None = None) -> None:
        """Run on raw buffer addresses (caller guarantees shapes/dtypes): the executor's fast path."""
        n = self.n0
        nt = num_threads() if threads is None else max(1, threads)
        if nt > 1 and self.parallel_ok and not workers.backing_off():
            # one call per thread, the pieces claimed in native code (`<name>_claimed`): a Python call per
            # piece cost ~5 us each and let a late thread hold a piece the others could have run
            nch = max(min(nt, n), min(self.max_chunks, CHUNKS_PER_THREAD * nt))
            piece = -(-n // nch)
            nt = min(nt, -(-n // piece))
            slots = np.zeros((nt + 1, 3), dtype=np.int64)     # an error slot per call, then the counter
            base = slots.__array_interface__["data"][0]
            share = base + 24 * nt
            statuses = [0] * nt
            fn, extra = self._claimed, self._extra

            def call(i):
                statuses[i] = fn(*ptrs, base + 24 * i, 0, n, piece, share, *extra)

            workers.parallel_for(call, nt, nt)
            for st, err in zip(statuses, slots):
                if st:
                    self._raise(st, err)
            return
        err, err_ptr = _error_slot()
        st = self._fn(*ptrs, err_ptr, 0, n, *self._extra)
        if st:
            self._raise(st, err)

    def _raise(self, status: int, err: np.ndarray):
        if status == 1:
            raise IndexError(f"index {int(err[0])} is out of bounds for dimension {int(err[1])} "
                             f"with size {int(err[2])}")
        raise RuntimeError(f"kernel {self.kernel.name} failed with status {status}")
