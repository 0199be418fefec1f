"""CPU runtime: turns kernel IR into callables on numpy arrays (LLVM JIT, object cache, thread pool).

In: `Kernel` / `ExternKernel` objects (ember/ir/kernel.py).  Out: a `CompiledModule` whose kernels
run on contiguous numpy arrays in `kernel.args` order (inputs, then outputs, written in place).

    mod = compile_kernels([k0, k1, x2])         # one LLVM module, one engine, cached on disk
    mod.run("k0_max_sub_exp_sum_div", [x, y])   # or: mod["k0_..."](x, y)
    mod.run(x2.name, [a, b, bias, out])         # an ExternKernel: numpy GEMM + compiled epilogue

Pipeline (compile_kernels):  kernel text -> cache key -> disk cache hit?  else codegen
(ember/codegen/llvm/) -> parse -> O3 new-PM pipeline with loop+SLP vectorisation for the host CPU
-> object code -> cache.  The object is loaded into a fresh MCJIT engine owned by the
CompiledModule: the engine (and so the machine code) lives exactly as long as that object, and
every callable holds a reference to it.  There is no global engine.

Calls go through ctypes (which releases the GIL).  Buffer pointers are read with
`__array_interface__['data'][0]` (reading `arr.ctypes.data` costs ~5 us).  When a kernel moves at
least `PARALLEL_MIN_BYTES` (or runs `PARALLEL_MIN_FLOPS` scalar ops) and the first outer axis has
more than one iteration, the outer range is split into equal chunks over a thread pool of
EMBER_NUM_THREADS threads (default os.cpu_count()); the calling thread runs the first chunk.  Handing a chunk to the pool costs ~55 us here, which is
why small kernels stay on one thread (threshold measured in benchmarks/fusion_kernels.py).

A kernel that hits an out-of-range gather index returns status 1 with (value, dim, size) in its
error slot; the call raises IndexError("index 7 is out of bounds for dimension 0 with size 5").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from ember.codegen import llvm as cg
from ember.ir.kernel import ExternKernel, Kernel
from ember.kernels import blas
from ember.runtime import cache

llvm = cg.llvm

__all__ = ["compile_kernels", "CompiledModule", "KernelCallable", "num_threads", "optimize_ir",
           "compile_ir_to_object", "PARALLEL_MIN_BYTES", "host_target", "assembly"]

# Below this much work a kernel runs on the calling thread only: the pool handoff (~45-55 us) costs
# more than the second core saves.  Measured with benchmarks/fusion_kernels.py --threshold on the
# 2-core EPYC: a cheap 10-op pointwise kernel breaks even between 6 and 12 MB moved (its data is
# cache-resident below that); kernels with more arithmetic per byte break even earlier, hence the
# flop criterion.
PARALLEL_MIN_BYTES = 4 << 20
PARALLEL_MIN_FLOPS = 4 << 20

_TARGET = None
_SYMBOLS_READY = False
_MEMORY_CACHE: dict[str, bytes] = {}   # key -> object bytes (bytes only: no engines live here)


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
    for lib, names in ((libm, ("erf", "sin", "cos", "pow", "fmod", "fmodf", "expf", "exp", "logf", "log")),
                       (libc, ("memset", "memcpy", "memmove"))):
        for name in names:
            llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
    _SYMBOLS_READY = True


_CPU_COUNT = os.cpu_count() or 1   # os.cpu_count() costs ~0.1 ms on some kernels: read it once


def num_threads() -> int:
    env = os.environ.get("EMBER_NUM_THREADS")
    if env:
        return max(1, int(env))
    return _CPU_COUNT


_POOL = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """Shared worker threads (a pool of threads, not of engines: safe to keep globally)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n:
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="ember-cpu")
            _POOL_SIZE = n
        return _POOL


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


def _source_text(kernels) -> str:
    return "\n\n".join(str(k) for k in kernels)


def compile_kernels(kernels: Sequence, use_cache: bool = True) -> "CompiledModule":
    """Compile kernels (and extern epilogues) into one module; see the module docstring."""
    kernels = list(kernels)
    target = host_target()
    times = {}
    t0 = time.perf_counter()
    key = cache.cache_key(_source_text(kernels), target, extra=cache.codegen_fingerprint())
    obj = _MEMORY_CACHE.get(key) if use_cache else None
    source = "memory" if obj is not None else None
    if obj is None and use_cache:
        obj = cache.load(key)
        source = "disk" if obj is not None else None
    ir_text = None
    if obj is None:
        t1 = time.perf_counter()
        ir_text = cg.emit_module(kernels, target)
        t2 = time.perf_counter()
        obj = compile_ir_to_object(ir_text)
        times["codegen_s"], times["llvm_s"] = t2 - t1, time.perf_counter() - t2
        source = "compiled"
        if use_cache:
            cache.store(key, obj)
    if use_cache:
        _MEMORY_CACHE[key] = obj
    times["total_s"] = time.perf_counter() - t0
    return CompiledModule(kernels, obj, key=key, ir_text=ir_text, source=source, times=times)


# ==================================================================================== runtime
class CompiledModule:
    """Owns one MCJIT engine and the callables of its kernels.

    Attributes: names (kernel names in order), source ('compiled' | 'disk' | 'memory'), key (cache
    key), times (compile seconds per stage), llvm_ir (text, generated on demand)."""

    def __init__(self, kernels, obj: bytes, key: str = "", ir_text: str | None = None,
                 source: str = "compiled", times: dict | None = None):
        _register_symbols()
        self.kernels = {k.name: k for k in kernels}
        self.names = list(self.kernels)
        self.key, self.source, self.times = key, source, times or {}
        self._ir_text = ir_text
        target = host_target()
        backing = llvm.parse_assembly(f'target triple = "{target.triple}"\n'
                                      f'target datalayout = "{target.data_layout}"\n')
        # MCJIT owns this target machine and frees the code with the engine: keep self._engine
        # alive for as long as any callable exists (each callable references this object).
        self._engine = llvm.create_mcjit_compiler(backing, cg.host_target_machine())
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()
        self._callables: dict[str, object] = {}
        for k in kernels:
            if isinstance(k, ExternKernel):
                ep = KernelCallable(self, k.epilogue) if k.epilogue is not None else None
                self._callables[k.name] = ExternCallable(self, k, ep)
            else:
                self._callables[k.name] = KernelCallable(self, k)

    @property
    def llvm_ir(self) -> str:
        if self._ir_text is None:
            self._ir_text = cg.emit_module(list(self.kernels.values()), host_target())
        return self._ir_text

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name} in compiled module")
        return addr

    def __getitem__(self, name: str):
        return self._callables[name]

    def __contains__(self, name: str) -> bool:
        return name in self._callables

    def run(self, name: str, arrays: Sequence[np.ndarray], threads: int | None = None) -> None:
        """Run kernel `name` on arrays in its args order; outputs are written in place."""
        self._callables[name](*arrays, threads=threads)


def _check_arrays(kernel, arrays, args) -> list[int]:
    if len(arrays) != len(args):
        raise TypeError(f"{kernel.name} takes {len(args)} arrays ({', '.join(b.name for b in args)}), "
                        f"got {len(arrays)}")
    ptrs = []
    n_in = len(args) - len(kernel.outputs if isinstance(kernel, Kernel) else kernel.final_outputs)
    for i, (a, b) in enumerate(zip(arrays, args)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{kernel.name}: argument {b.name} must be a numpy array, got {type(a).__name__}")
        if a.dtype != b.dtype.np or a.shape != b.shape:
            raise TypeError(f"{kernel.name}: argument {b.name} expects {b.dtype.name}{list(b.shape)}, "
                            f"got {a.dtype}{list(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: argument {b.name} must be C-contiguous")
        if i >= n_in and not a.flags.writeable:
            raise ValueError(f"{kernel.name}: output {b.name} is read-only")
        ptrs.append(a.__array_interface__["data"][0])
    return ptrs


class KernelCallable:
    """Calls one compiled kernel; `fn(*arrays, threads=None)`."""

    def __init__(self, module: CompiledModule, kernel: Kernel):
        self.module = module              # keeps the engine (and the machine code) alive
        self.kernel = kernel
        nargs = len(kernel.args)
        proto = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_void_p] * (nargs + 1)),
                                 ctypes.c_int64, ctypes.c_int64)
        self._fn = proto(module.address(kernel.name))
        self.n0 = kernel.outer[0]
        big = kernel.bytes_moved >= PARALLEL_MIN_BYTES or kernel.flops >= PARALLEL_MIN_FLOPS
        self.parallel_ok = big and self.n0 > 1

    def __call__(self, *arrays, threads: int | None = None) -> None:
        ptrs = _check_arrays(self.kernel, arrays, self.kernel.args)
        self.call_ptrs(ptrs, threads)

    def call_ptrs(self, ptrs: list[int], threads: int | None = None) -> None:
        """Run on raw buffer addresses (caller guarantees shapes/dtypes): the executor's fast path."""
        n = self.n0
        nt = num_threads() if threads is None else max(1, threads)
        if nt > 1 and self.parallel_ok:
            nt = min(nt, n)
            bounds = [n * i // nt for i in range(nt + 1)]
            errs = [np.zeros(3, dtype=np.int64) for _ in range(nt)]
            pool = _pool(nt - 1)
            futs = [pool.submit(self._fn, *ptrs, errs[i].ctypes.data, bounds[i], bounds[i + 1])
                    for i in range(1, nt)]
            statuses = [self._fn(*ptrs, errs[0].ctypes.data, bounds[0], bounds[1])]
            statuses += [f.result() for f in futs]
            for st, err in zip(statuses, errs):
                if st:
                    self._raise(st, err)
            return
        err = np.zeros(3, dtype=np.int64)
        st = self._fn(*ptrs, err.__array_interface__["data"][0], 0, n)
        if st:
            self._raise(st, err)

    def _raise(self, status: int, err: np.ndarray):
        if status == 1:
            raise IndexError(f"index {int(err[0])} is out of bounds for dimension {int(err[1])} "
                             f"with size {int(err[2])}")
        raise RuntimeError(f"kernel {self.kernel.name} failed with status {status}")


class ExternCallable:
    """numpy library call (ember/kernels/blas.py) followed by the compiled epilogue, if any."""

    def __init__(self, module: CompiledModule, ext: ExternKernel, epilogue: KernelCallable | None):
        self.module, self.ext, self.epilogue = module, ext, epilogue
        self._scratch = None   # the extern's result buffer, reused across calls (page faults cost)

    def __call__(self, *arrays, threads: int | None = None) -> None:
        ext = self.ext
        _check_arrays(ext, arrays, ext.args)
        ins = arrays[:len(ext.inputs)]
        if self.epilogue is None:
            blas.run_extern(ext.op, ins, arrays[-1], ext.attrs)
            return
        if self._scratch is None:
            self._scratch = np.empty(ext.output.shape, dtype=ext.output.dtype.np)
        blas.run_extern(ext.op, ins, self._scratch, ext.attrs)
        self.epilogue(self._scratch, *arrays[len(ext.inputs):], threads=threads)
